//! The browser image (`images/browser`): the default image plus Xvfb, Chromium and x11vnc. The
//! test builds `default` and `browser` with the real recipes, then runs the image's
//! `hangar-browser-session` as the image user in a throwaway overlay of the blob, inside private
//! mount, network and pid namespaces (nothing can stay mounted, nothing binds the host's
//! display :99 or port 5900), and checks that
//! - Xvfb and x11vnc come up (the session's progress lines);
//! - `xdg-open URL` (the CLIs' way to open a page) starts Chromium;
//! - 127.0.0.1:5900 speaks RFB 3.8 and its framebuffer shows a rendered page: an RFB client
//!   written for the test in the image's own Node.js reads the screen and finds a light window
//!   (Chromium) where Xvfb alone is black;
//! - the blob is unchanged afterwards (`ImageStore::verify`).
//!
//! Ignored by default: a cold build downloads Debian packages and takes minutes. Needs root,
//! debootstrap, npm, overlayfs and the Debian mirror. Reuses the store named by
//! `$HANGAR_TEST_IMAGES` (as `cargo xtask test` sets it) when there is one:
//!
//! ```sh
//! cargo test -p hangar-runtime --test image_browser -- --ignored --nocapture
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hangar_runtime::image::{BuildProgress, ImageStore, Recipe};

struct Print;

impl BuildProgress for Print {
    fn step_started(&self, index: usize, total: usize, name: &str, cached: bool) {
        eprintln!(
            "step {}/{total}: {name}{}",
            index + 1,
            if cached { " (cached)" } else { "" }
        );
    }
    fn step_message(&self, line: &str) {
        eprintln!("  {line}");
    }
    fn step_finished(&self, _index: usize, elapsed: Duration) {
        eprintln!("  done in {:.1} s", elapsed.as_secs_f64());
    }
}

fn images_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../images")
}

/// An RFB 3.8 client: handshake with security type None, one full framebuffer update in raw
/// encoding at 32 bpp, then prints `RFB <version> <w>x<h> light=<fraction of light pixels>`.
const RFB_PROBE: &str = r#"
const net = require('net');
const s = net.connect(5900, '127.0.0.1');
let buf = Buffer.alloc(0), stage = 'version', version = '', w = 0, h = 0;
const need = (n) => buf.length >= n;
const take = (n) => { const b = buf.subarray(0, n); buf = buf.subarray(n); return b; };
const fail = (m) => { console.log('FAIL ' + m); process.exit(1); };
setTimeout(() => fail('timeout in ' + stage), 10000);
s.on('error', (e) => fail(e.message));
s.on('data', (d) => {
  buf = Buffer.concat([buf, d]);
  for (;;) {
    if (stage === 'version') {
      if (!need(12)) return;
      version = take(12).toString().trim();
      s.write('RFB 003.008\n'); stage = 'sectypes';
    } else if (stage === 'sectypes') {
      if (!need(1)) return; const n = buf[0]; if (n === 0) fail('no security types');
      if (!need(1 + n)) return; const types = [...take(1 + n).subarray(1)];
      if (!types.includes(1)) fail('no security type None: ' + types);
      s.write(Buffer.from([1])); stage = 'secresult';
    } else if (stage === 'secresult') {
      if (!need(4)) return; if (take(4).readUInt32BE(0) !== 0) fail('security failed');
      s.write(Buffer.from([1])); stage = 'init';
    } else if (stage === 'init') {
      if (!need(24)) return; const namelen = buf.readUInt32BE(20);
      if (!need(24 + namelen)) return; const init = take(24 + namelen);
      w = init.readUInt16BE(0); h = init.readUInt16BE(2);
      const pf = Buffer.from([0, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0]);
      s.write(pf);
      s.write(Buffer.from([2, 0, 0, 1, 0, 0, 0, 0])); // SetEncodings: raw
      const req = Buffer.alloc(10); req[0] = 3; req[1] = 0; req.writeUInt16BE(w, 6); req.writeUInt16BE(h, 8);
      s.write(req); stage = 'update';
    } else if (stage === 'update') {
      if (!need(4)) return; if (buf[0] !== 0) fail('unexpected message ' + buf[0]);
      const rects = buf.readUInt16BE(2); let off = 4, light = 0, total = 0;
      for (let i = 0; i < rects; i++) {
        if (buf.length < off + 12) return;
        const rw = buf.readUInt16BE(off + 4), rh = buf.readUInt16BE(off + 6), enc = buf.readInt32BE(off + 8);
        if (enc !== 0) fail('encoding ' + enc);
        const len = rw * rh * 4; if (buf.length < off + 12 + len) return;
        for (let p = off + 12; p < off + 12 + len; p += 4) {
          total++; if (buf[p] + buf[p + 1] + buf[p + 2] > 600) light++;
        }
        off += 12 + len;
      }
      console.log(`${version} ${w}x${h} light=${(light / Math.max(total, 1)).toFixed(3)}`);
      process.exit(0);
    }
  }
});
"#;

/// Run inside `unshare --mount --net --pid --fork` as root on the host: overlay of the blob,
/// the session as uid 1000 in a chroot, probes, then everything goes with the namespaces.
const HARNESS: &str = r#"
set -eu
blob=$1 scratch=$2
mkdir -p "$scratch/upper" "$scratch/work" "$scratch/merged"
m=$scratch/merged
mount -t overlay overlay -o "lowerdir=$blob,upperdir=$scratch/upper,workdir=$scratch/work" "$m"
mount -t proc proc "$m/proc"
mount --bind /dev "$m/dev"
mount -t tmpfs -o size=64m tmpfs "$m/dev/shm"
ip link set lo up
cp "$scratch/rfb-probe.js" "$m/tmp/rfb-probe.js"
exec chroot --userspec=1000:1000 "$m" /usr/bin/env -i HOME=/home/hangar USER=hangar \
  LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  /usr/local/bin/hangar-browser-session /bin/bash -c '
    echo "BROWSER=$BROWSER DISPLAY=$DISPLAY"
    xdg-open "data:text/html,<body style=background:white><h1>hangar</h1>" &
    for i in $(seq 1 100); do
      node /tmp/rfb-probe.js > /tmp/probe.out 2>&1 || true
      if grep -q "light=0\.[1-9]\|light=1" /tmp/probe.out; then break; fi
      sleep 0.1
    done
    echo "chromium processes: $(pgrep -c -u hangar chromium || true)"
    echo "probe: $(cat /tmp/probe.out)"
  '
"#;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "builds the default and browser images (minutes, network); run with --ignored as root"]
async fn browser_image_desktop_comes_up_and_renders_chromium() {
    let (_tmp, store_root) = match std::env::var_os("HANGAR_TEST_IMAGES") {
        Some(p) => (None, PathBuf::from(p)),
        None => {
            let t = tempfile::tempdir().expect("tempdir");
            let root = t.path().join("images");
            (Some(t), root)
        }
    };
    let store = ImageStore::open(&store_root).expect("open store");
    let began = Instant::now();
    let default = Recipe::builtin("default", &images_dir()).expect("default recipe");
    let default_image = store.build(&default, &Print).await.expect("build default");
    let default_done = began.elapsed();
    let browser = Recipe::load(&images_dir().join("browser")).expect("browser recipe");
    assert_eq!(browser.name, "browser");
    let image = store.build(&browser, &Print).await.expect("build browser");
    eprintln!(
        "default in {:.1} s, browser in {:.1} s, {} MiB",
        default_done.as_secs_f64(),
        (began.elapsed() - default_done).as_secs_f64(),
        image.size_bytes >> 20
    );

    // What the recipe promises, in the tree.
    let root = &image.rootfs;
    for bin in [
        "usr/bin/Xvfb",
        "usr/bin/x11vnc",
        "usr/bin/chromium",
        "usr/bin/xdg-mime",
        "usr/local/bin/claude",
        "usr/local/bin/codex",
        "usr/local/bin/gemini",
    ] {
        // symlink_metadata: the CLI links are absolute, meaningful inside the image only.
        assert!(
            std::fs::symlink_metadata(root.join(bin)).is_ok(),
            "{bin} missing"
        );
    }
    for script in ["hangar-browser-session", "hangar-browser", "xdg-open"] {
        let meta = std::fs::metadata(root.join("usr/local/bin").join(script)).expect(script);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o7777, 0o755, "{script}");
    }
    assert!(
        std::fs::read_dir(root.join("var/lib/apt/lists"))
            .expect("lists dir")
            .next()
            .is_none(),
        "apt lists are not part of the image"
    );
    assert!(!root.join("usr/sbin/policy-rc.d").exists());
    assert_eq!(image.config.user.uid, 1000);
    assert!(image
        .config
        .env
        .iter()
        .any(|e| e == "BROWSER=/usr/local/bin/hangar-browser"));

    // The desktop, for real.
    let scratch = tempfile::tempdir().expect("scratch");
    std::fs::write(scratch.path().join("rfb-probe.js"), RFB_PROBE).expect("probe");
    let run_began = Instant::now();
    let out = Command::new("unshare")
        .args([
            "--mount",
            "--net",
            "--pid",
            "--fork",
            "--kill-child",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            HARNESS,
            "harness",
        ])
        .arg(root)
        .arg(scratch.path())
        .output()
        .expect("run unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "session in {:.1} s\n{stdout}\n{stderr}",
        run_began.elapsed().as_secs_f64()
    );
    assert!(out.status.success(), "harness failed: {}", out.status);
    for stage in [
        "xvfb ready",
        "vnc ready",
        "command exited with status 0",
        "stopped",
    ] {
        assert!(stderr.contains(&format!(" {stage}")), "no '{stage}' line");
    }
    assert!(
        stdout.contains("BROWSER=/usr/local/bin/hangar-browser DISPLAY=:99"),
        "{stdout}"
    );
    let chromium: usize = stdout
        .lines()
        .find_map(|l| l.strip_prefix("chromium processes: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(chromium > 0, "xdg-open started no chromium: {stdout}");
    let probe = stdout
        .lines()
        .find_map(|l| l.strip_prefix("probe: "))
        .unwrap_or_default();
    assert!(probe.starts_with("RFB 003.008 1280x800 "), "{probe}");
    let light: f64 = probe
        .rsplit("light=")
        .next()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(
        light > 0.1,
        "the screen shows no light Chromium window: {probe}"
    );

    // The overlay kept every write away from the browser blob, and the apt step (which edits
    // files of its copy in place) away from the default image's blob.
    let store2 = store.clone();
    tokio::task::spawn_blocking(move || {
        store2
            .verify(&image)
            .expect("the browser blob is unchanged");
        store2
            .verify(&default_image)
            .expect("the default blob is unchanged");
    })
    .await
    .expect("join");
}
