//! The image store with real trees: content addressing, refs, the step cache, step kinds and
//! deadlines. Needs root (ownership in the busybox tree, chroot) and the host's
//! `/bin/busybox` (Debian busybox-static).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use hangar_runtime::image::testing::{busybox_image, busybox_rootfs};
use hangar_runtime::image::{
    BuildProgress, ImageConfig, ImageError, ImageStore, NoProgress, Recipe,
};

fn store() -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path().join("images")).expect("open store");
    (dir, store)
}

fn blob_count(store: &ImageStore) -> usize {
    std::fs::read_dir(store.root().join("blobs/sha256"))
        .expect("blobs dir")
        .count()
}

fn tmp_is_empty(store: &ImageStore) -> bool {
    std::fs::read_dir(store.root().join("tmp"))
        .expect("tmp dir")
        .next()
        .is_none()
}

#[test]
fn import_then_resolve_by_name_and_digest() {
    let (dir, store) = store();
    let tree = dir.path().join("tree");
    busybox_rootfs(&tree).expect("busybox tree");
    let image = store
        .import_dir("tiny", &tree, ImageConfig::default())
        .expect("import");

    assert!(
        image.digest.starts_with("sha256:") && image.digest.len() == 7 + 64,
        "{}",
        image.digest
    );
    assert!(image.rootfs.join("bin/busybox").is_file());
    assert!(
        image.size_bytes > 100_000,
        "busybox alone is bigger: {}",
        image.size_bytes
    );
    assert!(image.created_at_ms > 1_600_000_000_000);

    let by_name = store.resolve("tiny").expect("by name");
    assert_eq!(by_name, image);
    let by_digest = store.resolve(&image.digest).expect("by digest");
    assert_eq!(by_digest.rootfs, image.rootfs);
    assert_eq!(by_digest.name, "tiny");

    // The source is left alone; the blob is a separate tree.
    assert!(tree.join("bin/busybox").is_file());
    assert_ne!(
        std::fs::metadata(tree.join("bin/busybox"))
            .expect("stat")
            .ino(),
        std::fs::metadata(image.rootfs.join("bin/busybox"))
            .expect("stat")
            .ino()
    );
    // The blob directory is read-only; ownership and modes of the tree are kept.
    let blob = image.rootfs.parent().expect("blob dir");
    assert_eq!(std::fs::metadata(blob).expect("stat").mode() & 0o777, 0o555);
    let home = std::fs::metadata(image.rootfs.join("home/hangar")).expect("stat");
    assert_eq!((home.uid(), home.gid()), (1000, 1000));
    assert_eq!(
        std::fs::metadata(image.rootfs.join("tmp"))
            .expect("stat")
            .mode()
            & 0o7777,
        0o1777
    );

    let listed = store.list().expect("list");
    assert_eq!(listed, vec![image]);
    assert!(tmp_is_empty(&store));
}

#[test]
fn same_tree_twice_is_one_blob_and_one_byte_changes_the_digest() {
    let (dir, store) = store();
    let tree = dir.path().join("tree");
    busybox_rootfs(&tree).expect("busybox tree");
    let a = store
        .import_dir("a", &tree, ImageConfig::default())
        .expect("import a");
    let again = store
        .import_dir("a", &tree, ImageConfig::default())
        .expect("import a again");
    let other_name = store
        .import_dir("b", &tree, ImageConfig::default())
        .expect("import as b");
    assert_eq!(a.digest, again.digest);
    assert_eq!(
        a.digest, other_name.digest,
        "the name is not part of the digest"
    );
    assert_eq!(blob_count(&store), 1);

    // One byte of one file.
    let passwd = tree.join("etc/passwd");
    let mut bytes = std::fs::read(&passwd).expect("read");
    bytes[0] = b'R';
    std::fs::write(&passwd, bytes).expect("write");
    let changed = store
        .import_dir("a", &tree, ImageConfig::default())
        .expect("import changed");
    assert_ne!(changed.digest, a.digest);
    assert_eq!(blob_count(&store), 2);

    // The config is part of the digest too.
    let config = ImageConfig {
        init: Some(vec!["/bin/sh".into()]),
        ..ImageConfig::default()
    };
    let with_init = store
        .import_dir("a", &tree, config)
        .expect("import with init");
    assert_ne!(with_init.digest, changed.digest);
}

#[test]
fn rebuild_moves_the_ref_and_keeps_the_old_blob() {
    let (_dir, store) = store();
    let old = busybox_image(&store, "box", None).expect("first");
    let new = busybox_image(
        &store,
        "box",
        Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            "exec \"$HANGAR_GUEST_AGENT\"".into(),
        ]),
    )
    .expect("second");
    assert_ne!(old.digest, new.digest);
    assert_eq!(store.resolve("box").expect("by name").digest, new.digest);
    let old_again = store.resolve(&old.digest).expect("old by digest");
    assert_eq!(old_again.rootfs, old.rootfs);
    assert!(old_again.rootfs.join("bin/busybox").is_file());
    assert_eq!(
        store.resolve("box").expect("by name").config.init,
        new.config.init
    );
    // The ref file holds just the digest.
    let text = std::fs::read_to_string(store.root().join("refs/box")).expect("ref");
    assert_eq!(text.trim(), new.digest);
}

#[test]
fn unknown_names_and_digests_are_not_found() {
    let (_dir, store) = store();
    assert!(matches!(store.resolve("nope"), Err(ImageError::NotFound { name }) if name == "nope"));
    let digest = format!("sha256:{}", "0".repeat(64));
    assert!(matches!(
        store.resolve(&digest),
        Err(ImageError::NotFound { .. })
    ));
    assert!(matches!(
        store.resolve("../etc"),
        Err(ImageError::InvalidReference { .. })
    ));
    assert!(matches!(
        store.resolve("sha256:xyz"),
        Err(ImageError::InvalidReference { .. })
    ));
}

#[test]
fn busybox_image_runs_as_the_unprivileged_user() {
    let (_dir, store) = store();
    let image = busybox_image(&store, "box", None).expect("image");
    let out = std::process::Command::new("/usr/sbin/chroot")
        .arg("--userspec=1000:1000")
        .arg(&image.rootfs)
        .args(["/bin/sh", "-c", "id -u; id -g; echo $0"])
        .env("PATH", "/bin")
        .output()
        .expect("chroot");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1000\n1000\n/bin/sh\n"
    );
}

#[test]
fn open_removes_abandoned_work() {
    let (dir, store) = store();
    let stale = store.root().join("tmp/work-from-a-crash");
    std::fs::create_dir_all(stale.join("rootfs/etc")).expect("mkdir");
    drop(store);
    let store = ImageStore::open(dir.path().join("images")).expect("reopen");
    assert!(!stale.exists());
    assert!(tmp_is_empty(&store));
}

/// Records what a build reports.
#[derive(Default)]
struct Recorder {
    started: Mutex<Vec<(usize, usize, String, bool)>>,
    lines: Mutex<Vec<String>>,
    finished: Mutex<Vec<usize>>,
}

impl BuildProgress for Recorder {
    fn step_started(&self, index: usize, total: usize, name: &str, cached: bool) {
        self.started
            .lock()
            .expect("lock")
            .push((index, total, name.to_owned(), cached));
    }
    fn step_message(&self, line: &str) {
        self.lines.lock().expect("lock").push(line.to_owned());
    }
    fn step_finished(&self, index: usize, _elapsed: Duration) {
        self.finished.lock().expect("lock").push(index);
    }
}

impl Recorder {
    fn cached_flags(&self) -> Vec<bool> {
        self.started
            .lock()
            .expect("lock")
            .iter()
            .map(|s| s.3)
            .collect()
    }
}

fn write_recipe(dir: &Path, text: &str) -> Recipe {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join("recipe.toml"), text).expect("write recipe");
    Recipe::load(dir).expect("load recipe")
}

fn runs(counter: &Path) -> usize {
    std::fs::read_to_string(counter)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_cached_step_runs_once() {
    let (dir, store) = store();
    let counter = dir.path().join("runs");
    let recipe_text = format!(
        r#"
name = "hello"
base = "busybox"
[[step]]
name = "say hello"
run = "echo ran >> {counter}; echo hello from the step; echo hello > \"$ROOTFS/hello\""
"#,
        counter = counter.display()
    );
    let recipe = write_recipe(&dir.path().join("recipe"), &recipe_text);

    let first = Recorder::default();
    let image = store.build(&recipe, &first).await.expect("first build");
    assert_eq!(runs(&counter), 1);
    assert_eq!(
        std::fs::read_to_string(image.rootfs.join("hello")).expect("hello"),
        "hello\n"
    );
    assert!(first
        .lines
        .lock()
        .expect("lock")
        .contains(&"hello from the step".to_owned()));
    // base, the step, image.toml, import; none cached; each finished in order.
    assert_eq!(first.cached_flags(), [false, false, false, false]);
    assert_eq!(*first.finished.lock().expect("lock"), [0, 1, 2, 3]);
    let totals: Vec<usize> = first
        .started
        .lock()
        .expect("lock")
        .iter()
        .map(|s| s.1)
        .collect();
    assert_eq!(totals, [4, 4, 4, 4]);
    let info =
        std::fs::read_to_string(image.rootfs.join("etc/hangar/image.toml")).expect("image.toml");
    assert!(info.contains("name = \"hello\""), "{info}");

    let second = Recorder::default();
    let again = store.build(&recipe, &second).await.expect("second build");
    assert_eq!(runs(&counter), 1, "the step was not run again");
    assert_eq!(again.digest, image.digest);
    assert_eq!(second.cached_flags(), [true, true, true, true]);
    assert_eq!(blob_count(&store), 1);

    // With the blob gone, the build re-imports from the cached tree without running the step.
    let blob = image.rootfs.parent().expect("blob").to_owned();
    std::fs::remove_dir_all(&blob).expect("remove blob");
    let third = store
        .build(&recipe, &NoProgress)
        .await
        .expect("third build");
    assert_eq!(runs(&counter), 1);
    assert_eq!(third.digest, image.digest);
    assert!(third.rootfs.join("hello").is_file());
    assert!(tmp_is_empty(&store));
}

#[tokio::test]
async fn changing_a_step_reruns_it_and_what_follows_only() {
    let (dir, store) = store();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let recipe_dir = dir.path().join("recipe");
    std::fs::create_dir_all(&recipe_dir).expect("mkdir");
    std::fs::write(recipe_dir.join("motd"), "v1\n").expect("write");
    let text = format!(
        r#"
base = "busybox"
[[step]]
run = "echo ran >> {one}; mkdir -p \"$ROOTFS/etc\"; echo one > \"$ROOTFS/etc/one\""
[[step]]
run = "echo ran >> {two}; cp \"$RECIPE_DIR/motd\" \"$ROOTFS/etc/motd\""
inputs = ["motd"]
"#,
        one = one.display(),
        two = two.display()
    );
    let recipe = write_recipe(&recipe_dir, &text);
    assert_eq!(
        recipe.name, "recipe",
        "the name defaults to the directory's"
    );
    let first = store.build(&recipe, &NoProgress).await.expect("first");
    assert_eq!((runs(&one), runs(&two)), (1, 1));

    // An input file of step 2 changes: step 1 comes from the cache.
    std::fs::write(recipe_dir.join("motd"), "v2\n").expect("write");
    let progress = Recorder::default();
    let second = store.build(&recipe, &progress).await.expect("second");
    assert_eq!((runs(&one), runs(&two)), (1, 2));
    assert_eq!(progress.cached_flags(), [true, true, false, false, false]);
    assert_ne!(first.digest, second.digest);
    assert_eq!(
        std::fs::read_to_string(second.rootfs.join("etc/motd")).expect("motd"),
        "v2\n"
    );
    assert_eq!(
        std::fs::read_to_string(second.rootfs.join("etc/one")).expect("one"),
        "one\n"
    );
    // The old image is still there by digest; the ref moved.
    assert!(store
        .resolve(&first.digest)
        .expect("old")
        .rootfs
        .join("etc/motd")
        .is_file());
    assert_eq!(store.resolve("recipe").expect("ref").digest, second.digest);

    // Cached files are shared with the image rather than copied (same inode).
    let cached_busybox: Vec<u64> = std::fs::read_dir(store.root().join("cache"))
        .expect("cache")
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::metadata(e.path().join("rootfs/bin/busybox")).ok())
        .map(|m| m.ino())
        .collect();
    let image_busybox = std::fs::metadata(second.rootfs.join("bin/busybox"))
        .expect("stat")
        .ino();
    assert!(cached_busybox.contains(&image_busybox));
}

#[tokio::test]
async fn user_and_symlink_steps() {
    let (dir, store) = store();
    let recipe = write_recipe(
        &dir.path().join("people"),
        r#"
base = "busybox"
[[step]]
user = { name = "dev", uid = 1001, gid = 1001, home = "/home/dev", shell = "/bin/sh" }
[[step]]
symlinks = { "/usr/bin/echo" = "/bin/echo", "/usr/bin/rel" = "../../bin/cat" }
[config]
user = { uid = 1001, gid = 1001, name = "dev", home = "/home/dev" }
"#,
    );
    let image = store.build(&recipe, &NoProgress).await.expect("build");
    let passwd = std::fs::read_to_string(image.rootfs.join("etc/passwd")).expect("passwd");
    assert!(
        passwd.contains("dev:x:1001:1001:dev:/home/dev:/bin/sh\n"),
        "{passwd}"
    );
    assert!(
        passwd.contains("hangar:x:1000:"),
        "other users stay: {passwd}"
    );
    let group = std::fs::read_to_string(image.rootfs.join("etc/group")).expect("group");
    assert!(group.contains("dev:x:1001:\n"), "{group}");
    let home = std::fs::metadata(image.rootfs.join("home/dev")).expect("home");
    assert_eq!(
        (home.uid(), home.gid(), home.mode() & 0o777),
        (1001, 1001, 0o750)
    );
    assert_eq!(
        std::fs::read_link(image.rootfs.join("usr/bin/echo")).expect("link"),
        Path::new("/bin/echo")
    );

    let out = std::process::Command::new("/usr/sbin/chroot")
        .arg("--userspec=1001:1001")
        .arg(&image.rootfs)
        .args(["/usr/bin/echo", "hi"])
        .output()
        .expect("chroot");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");

    // A link to something the image does not have is refused.
    let broken = write_recipe(
        &dir.path().join("broken"),
        "base = \"busybox\"\n[[step]]\nsymlinks = { \"/bin/x\" = \"/nowhere\" }\n",
    );
    assert!(matches!(
        store.build(&broken, &NoProgress).await,
        Err(ImageError::Recipe { .. })
    ));
    assert!(tmp_is_empty(&store));
}

#[tokio::test]
async fn failing_and_hanging_steps_end_the_build_with_their_output() {
    let (dir, store) = store();
    let failing = write_recipe(
        &dir.path().join("failing"),
        "base = \"busybox\"\n[[step]]\nrun = \"echo about to fail; exit 7\"\n",
    );
    match store.build(&failing, &NoProgress).await {
        Err(ImageError::CommandFailed {
            last_lines, status, ..
        }) => {
            assert_eq!(last_lines, ["about to fail"]);
            assert!(status.contains('7'), "{status}");
        }
        other => panic!("expected CommandFailed, got {other:?}"),
    }

    let hanging = write_recipe(
        &dir.path().join("hanging"),
        "base = \"busybox\"\n[[step]]\ntimeout_s = 1\nrun = \"echo waiting; sleep 60\"\n",
    );
    let started = std::time::Instant::now();
    match store.build(&hanging, &NoProgress).await {
        Err(ImageError::Timeout {
            deadline,
            last_lines,
            ..
        }) => {
            assert_eq!(deadline, Duration::from_secs(1));
            assert_eq!(last_lines, ["waiting"]);
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(
        store.resolve("hanging"),
        Err(ImageError::NotFound { .. })
    ));
    assert!(tmp_is_empty(&store));
}

#[test]
fn verify_catches_a_blob_written_to() {
    let (_dir, store) = store();
    let image = busybox_image(&store, "box", None).expect("image");
    store.verify(&image).expect("fresh blob verifies");
    std::fs::write(image.rootfs.join("tmp/left-behind"), b"x").expect("write");
    assert!(matches!(
        store.verify(&image),
        Err(ImageError::Corrupt { .. })
    ));
}
