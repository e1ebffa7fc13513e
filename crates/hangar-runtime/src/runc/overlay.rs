//! The overlayfs root of a runc sandbox: the image read-only below, the sandbox's own
//! writable layer above (`upper/` + `work/`), merged at `rootfs/`.

use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::driver::DriverError;

/// Is something mounted exactly at `path`? Reads `/proc/self/mountinfo` (field 5 is the mount
/// point, with spaces escaped as `\040`).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let wanted = path.to_string_lossy().replace(' ', "\\040");
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|mount_point| mount_point == wanted)
}

/// Mounts the overlay at `merged` unless it already is. All directories must exist.
pub fn mount_overlay(
    lower: &Path,
    upper: &Path,
    work: &Path,
    merged: &Path,
) -> Result<(), DriverError> {
    if is_mounted(merged) {
        return Ok(());
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        merged,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|errno| DriverError::Io {
        op: "mount overlay on",
        path: merged.to_owned(),
        source: errno.into(),
    })
}

/// Unmounts `merged` if mounted (detaching lazily if busy).
pub fn unmount(merged: &Path) -> Result<(), DriverError> {
    if !is_mounted(merged) {
        return Ok(());
    }
    match umount2(merged, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EBUSY) => {
            umount2(merged, MntFlags::MNT_DETACH).map_err(|errno| DriverError::Io {
                op: "unmount",
                path: merged.to_owned(),
                source: errno.into(),
            })
        }
        Err(errno) => Err(DriverError::Io {
            op: "unmount",
            path: merged.to_owned(),
            source: errno.into(),
        }),
    }
}
