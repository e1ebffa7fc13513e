//! `cargo xtask`: the project's entry points, so set-up lives in the repository.
//!
//! - `cargo xtask up [ARGS]`  installs system packages, builds hangar and the static guest
//!   agent, builds the default image if missing, then runs `hangar up ARGS`.
//! - `cargo xtask test`       installs system packages, builds the guest agent and the default
//!   image (cached), then runs the whole test suite with nextest.
//! - `cargo xtask bench`      builds in release and runs `hangar bench`.
//! - `cargo xtask bench-oauth` installs wrk, PostgreSQL and the benchmark's npm packages, then
//!   runs `cargo bench -p hangar --bench oauth` (hangar's authorization server against
//!   `oidc-provider`, on SQLite and PostgreSQL).
//! - `cargo xtask guest`      builds only the static guest agent.
//! - `cargo xtask web`        builds the browser pages (`web/`, npm + Vite) that the binary embeds.
//! - `cargo xtask deps`       installs only the system packages.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// Debian packages hangar needs on a node (and its tests need on CI).
const PACKAGES: &[&str] = &[
    "runc",
    "debootstrap",
    "busybox-static",
    "postgresql",
    "util-linux",
    "iproute2",
    "nftables",
    "ca-certificates",
];

/// Debian packages only the tests need (the viewer test drives a real Chromium).
const TEST_PACKAGES: &[&str] = &["chromium"];

/// Target triple of the static guest agent.
const GUEST_TARGET: &str = "x86_64-unknown-linux-gnu";

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let cmd = args.next().unwrap_or_default();
    let mut rest: Vec<String> = args.collect();
    // `cargo xtask up -- --listen ADDR` and `cargo xtask up --listen ADDR` mean the same.
    if rest.first().is_some_and(|a| a == "--") {
        rest.remove(0);
    }
    let root = project_root();
    match cmd.as_str() {
        "deps" => deps(PACKAGES),
        "web" => web(&root),
        "guest" => guest(&root).map(|_| ()),
        "build" => build(&root).map(|_| ()),
        "up" => up(&root, &rest),
        "test" => test(&root, &rest),
        "bench" => bench(&root, &rest),
        "bench-oauth" => bench_oauth(&root, &rest),
        _ => {
            eprintln!("usage: cargo xtask <up|test|bench|bench-oauth|build|guest|deps> [ARGS]");
            bail!("unknown command {cmd:?}")
        }
    }
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("$ {cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Installs the missing Debian packages (apt-get update only when something is missing).
fn deps(packages: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!("missing packages {missing:?}: run as root (hangar's runc node needs root)");
    }
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing))
}

/// Builds the browser pages: `npm ci` (from the lockfile), then `npm run build` (Vite: the
/// dashboard and the viewer into `web/dist/`, precompressed), which `hangar-server` embeds.
fn web(root: &Path) -> anyhow::Result<()> {
    let dir = root.join("web");
    // `npm install` from the lockfile rather than `npm ci`: the lockfile cannot list rollup's
    // optional binaries for other platforms (the registry here does not serve them), and
    // `npm ci` refuses such a lockfile. The versions installed are still the locked ones.
    run(Command::new("npm")
        .current_dir(&dir)
        .args(["install", "--no-audit", "--no-fund"]))?;
    run(Command::new("npm").current_dir(&dir).args(["run", "build"]))
}

/// Builds the static guest agent; returns its path.
fn guest(root: &Path) -> anyhow::Result<PathBuf> {
    let target_dir = root.join("target/guest");
    run(Command::new(env!("CARGO"))
        .current_dir(root)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env("CARGO_TARGET_DIR", &target_dir)
        .args([
            "build",
            "--release",
            "-p",
            "hangar-guest",
            "--bin",
            "hangar-guest",
            "--target",
            GUEST_TARGET,
        ]))?;
    Ok(target_dir.join(GUEST_TARGET).join("release/hangar-guest"))
}

/// Builds `hangar` (release) and places the guest agent beside it; returns the hangar path.
fn build(root: &Path) -> anyhow::Result<PathBuf> {
    web(root)?;
    let guest = guest(root)?;
    run(Command::new(env!("CARGO")).current_dir(root).args([
        "build",
        "--release",
        "-p",
        "hangar",
        "--bin",
        "hangar",
    ]))?;
    let bin = root.join("target/release/hangar");
    let beside = root.join("target/release/hangar-guest");
    std::fs::copy(&guest, &beside).with_context(|| format!("copying {}", guest.display()))?;
    Ok(bin)
}

fn data_dir_arg(args: &[String]) -> Option<String> {
    args.iter()
        .position(|a| a == "--data-dir")
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| {
            args.iter()
                .find_map(|a| a.strip_prefix("--data-dir=").map(str::to_owned))
        })
}

fn up(root: &Path, args: &[String]) -> anyhow::Result<()> {
    deps(PACKAGES)?;
    let hangar = build(root)?;
    // Build the default image if it is missing (finished steps are reused).
    let mut image = Command::new(&hangar);
    image.args(["image", "build", "default"]);
    if let Some(dir) = data_dir_arg(args) {
        image.args(["--data-dir", &dir]);
    }
    run(&mut image)?;
    let mut up = Command::new(&hangar);
    up.arg("up").args(args);
    eprintln!("$ {up:?}");
    let status = up.status().context("starting hangar up")?;
    if !status.success() {
        bail!("hangar up exited with {status}");
    }
    Ok(())
}

fn test(root: &Path, args: &[String]) -> anyhow::Result<()> {
    deps(PACKAGES)?;
    deps(TEST_PACKAGES)?;
    web(root)?;
    // The sign-in tests run a real OpenID provider (oidc-provider from npm).
    run(Command::new("npm")
        .current_dir(root.join("crates/hangar/tests/support/oidc"))
        .args(["ci", "--no-audit", "--no-fund"]))?;
    let python = test_clients(root)?;
    let guest = guest(root)?;
    // The end-to-end tests run the real CLIs from the default image; build it once (cached).
    let images = root.join("target/test-images");
    run(Command::new(env!("CARGO"))
        .current_dir(root)
        .args(["build", "-p", "hangar", "--bin", "hangar"]))?;
    // The connect tests also run the browser image (built on top of default).
    for image in ["default", "browser"] {
        run(Command::new(root.join("target/debug/hangar"))
            .args(["image", "build", image, "--data-dir"])
            .arg(&images)
            .env("HANGAR_GUEST_AGENT", &guest))?;
    }
    let nextest = Command::new(env!("CARGO"))
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(root)
        .env("HANGAR_GUEST_AGENT", &guest)
        .env("HANGAR_TEST_IMAGES", images.join("images"))
        .env("HANGAR_TEST_PYTHON", &python);
    if nextest {
        cmd.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
    } else {
        cmd.args(["test", "--workspace", "--no-fail-fast"]);
    }
    cmd.args(args);
    run(&mut cmd)
}

/// The real third-party OAuth clients the authorization-server tests drive: oauth4webapi
/// (`npm ci` from its lockfile) and Authlib (a virtualenv under `target/test-clients` with
/// the pinned `requirements.txt`). Returns the virtualenv's python.
fn test_clients(root: &Path) -> anyhow::Result<PathBuf> {
    let clients = root.join("crates/hangar/tests/clients");
    run(Command::new("npm")
        .current_dir(clients.join("oauth4webapi"))
        .args(["ci", "--no-audit", "--no-fund"]))?;
    let venv = root.join("target/test-clients/venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    }
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(clients.join("authlib/requirements.txt")))?;
    Ok(python)
}

/// The OAuth benchmark: `wrk` (Debian), oidc-provider with its SQLite and PostgreSQL drivers
/// (`npm ci` from the benchmark's lockfile), the guest agent (the plane runs a node), then
/// `cargo bench -p hangar --bench oauth ARGS`.
fn bench_oauth(root: &Path, args: &[String]) -> anyhow::Result<()> {
    deps(PACKAGES)?;
    deps(&["wrk"])?;
    web(root)?;
    run(Command::new("npm")
        .current_dir(root.join("crates/hangar/benches/oidc-provider"))
        .args(["ci", "--no-audit", "--no-fund"]))?;
    let guest = guest(root)?;
    run(Command::new(env!("CARGO"))
        .current_dir(root)
        .env("HANGAR_GUEST_AGENT", &guest)
        .args(["bench", "-p", "hangar", "--bench", "oauth", "--"])
        .args(args))
}

fn bench(root: &Path, args: &[String]) -> anyhow::Result<()> {
    deps(PACKAGES)?;
    let hangar = build(root)?;
    // From the repository root: `hangar bench --dashboard` finds `web/` there.
    run(Command::new(hangar)
        .current_dir(root)
        .arg("bench")
        .args(args))
}
