//! Tiny images for tests, made from the host's static busybox (Debian `busybox-static`).

use std::os::unix::fs::{lchown, symlink, PermissionsExt};
use std::path::Path;

use super::build::HOST_BUSYBOX;
use super::fsutil::create_dirs;
use super::{Image, ImageConfig, ImageError, ImageStore, ImageUser};

/// The applets linked in `/bin`.
pub const APPLETS: &[&str] = &[
    "sh", "true", "false", "echo", "cat", "sleep", "ls", "id", "env", "stty", "yes", "head", "dd",
    "mkdir", "rm", "ps", "kill", "wc", "nc", "ip", "printf", "mv", "test", "stat", "sed", "date",
];

/// Assembles a minimal root filesystem in `dir` (created if missing; must be empty):
/// `/bin/busybox` (copied from the host's `/bin/busybox`) and a symlink per [`APPLETS`] entry,
/// `/etc/passwd` and `/etc/group` with `root` and `hangar` (1000:1000, home `/home/hangar`,
/// shell `/bin/sh`), `/home/hangar` owned 1000:1000 (0750), `/root` (0700), `/tmp` (1777), and
/// empty `/proc`, `/dev`, `/sys`, `/run`. Modes are set explicitly, so the umask does not
/// change the digest. Needs root for the ownership of `/home/hangar`.
pub fn busybox_rootfs(dir: &Path) -> Result<(), ImageError> {
    let mode = |path: &Path, m: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(m))
            .map_err(ImageError::io("chmod", path))
    };
    create_dirs(dir, 0o755)?;
    mode(dir, 0o755)?;
    for (sub, m) in [
        ("bin", 0o755),
        ("etc", 0o755),
        ("home", 0o755),
        ("home/hangar", 0o750),
        ("root", 0o700),
        ("tmp", 0o1777),
        ("proc", 0o555),
        ("dev", 0o755),
        ("sys", 0o555),
        ("run", 0o755),
    ] {
        let path = dir.join(sub);
        create_dirs(&path, 0o755)?;
        mode(&path, m)?;
    }
    let home = dir.join("home/hangar");
    lchown(&home, Some(1000), Some(1000)).map_err(ImageError::io("chown", &home))?;

    let busybox = dir.join("bin/busybox");
    std::fs::copy(HOST_BUSYBOX, &busybox).map_err(ImageError::io("copy", HOST_BUSYBOX))?;
    mode(&busybox, 0o755)?;
    for applet in APPLETS {
        let link = dir.join("bin").join(applet);
        symlink("busybox", &link).map_err(ImageError::io("symlink", &link))?;
    }
    for (file, text) in [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nhangar:x:1000:1000:hangar:/home/hangar:/bin/sh\n",
        ),
        ("etc/group", "root:x:0:\nhangar:x:1000:\n"),
    ] {
        let path = dir.join(file);
        std::fs::write(&path, text).map_err(ImageError::io("write", &path))?;
        mode(&path, 0o644)?;
    }
    Ok(())
}

/// Imports a [`busybox_rootfs`] tree as `name`: user `hangar` (1000:1000, `/home/hangar`),
/// `PATH=/bin`, the given `init` (see [`ImageConfig::init`]) and the label `base = "busybox"`.
pub fn busybox_image(
    store: &ImageStore,
    name: &str,
    init: Option<Vec<String>>,
) -> Result<Image, ImageError> {
    let work = store.workdir()?;
    let rootfs = work.path().join("rootfs");
    busybox_rootfs(&rootfs)?;
    let config = ImageConfig {
        user: ImageUser::default(),
        env: vec!["PATH=/bin".into()],
        init,
        labels: [("base".to_owned(), "busybox".to_owned())].into(),
    };
    store.import_staged(name, &work, &rootfs, config, None)
}
