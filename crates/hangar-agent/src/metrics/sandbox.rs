//! Per-sandbox figures from the sandbox's own cgroup and network namespace.
//!
//! The cgroup is found through `/proc/<init pid>/cgroup`, never a fixed path: runc nests a
//! container's cgroups under its caller's, and hosts mount cgroups differently (v1
//! controllers under `/sys/fs/cgroup/<controller>`, a cgroup2 hierarchy at `/sys/fs/cgroup`
//! or, on hybrid hosts, `/sys/fs/cgroup/unified`). The mount points come from
//! `/proc/self/mountinfo` ([`CgroupMounts`]). For each figure a v1 controller is used when
//! the sandbox is in one (hybrid hosts enforce limits there), else the cgroup2 file:
//!
//! | figure | cgroup v1 | cgroup v2 |
//! |---|---|---|
//! | CPU time | `cpuacct.usage` (ns) | `cpu.stat` `usage_usec` |
//! | memory | `memory.usage_in_bytes`, `memory.limit_in_bytes` | `memory.current`, `memory.max` |
//! | processes | `pids.current` | `pids.current` |
//!
//! Network bytes come from `/proc/<pid>/net/dev`, which shows the interfaces of the pid's
//! network namespace (summed without `lo`). Disk is the size of the writable layer.

use std::path::{Path, PathBuf};

use super::MetricsError;

/// A v1 memory limit at or above this (the kernel's "no limit" is `PAGE_COUNTER_MAX` pages,
/// about 2^63) means unlimited.
const V1_UNLIMITED: u64 = 1 << 62;

/// Where the cgroup hierarchies are mounted in this process's mount namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupMounts {
    /// v1 hierarchies: the controllers bound to each (`cpu`, `cpuacct`, `memory`, `pids`,
    /// ...), the mount point, and the hierarchy path mounted there (`root`, usually `/`).
    pub v1: Vec<(Vec<String>, PathBuf, String)>,
    /// The cgroup2 mount point and its root, if cgroup2 is mounted.
    pub v2: Option<(PathBuf, String)>,
}

impl CgroupMounts {
    /// Reads `/proc/self/mountinfo`. Errors: [`MetricsError::Proc`].
    pub fn read() -> Result<CgroupMounts, MetricsError> {
        let infos = procfs::process::Process::myself()
            .and_then(|p| p.mountinfo())
            .map_err(MetricsError::proc("/proc/self/mountinfo"))?;
        let mut mounts = CgroupMounts::default();
        for m in infos.iter() {
            match m.fs_type.as_str() {
                "cgroup" => {
                    let controllers = m
                        .super_options
                        .keys()
                        .filter(|k| !matches!(k.as_str(), "rw" | "ro"))
                        .cloned()
                        .collect();
                    mounts
                        .v1
                        .push((controllers, m.mount_point.clone(), m.root.clone()));
                }
                "cgroup2" if mounts.v2.is_none() => {
                    mounts.v2 = Some((m.mount_point.clone(), m.root.clone()));
                }
                _ => {}
            }
        }
        Ok(mounts)
    }

    /// The directory of the v1 cgroup `path` of the hierarchy holding `controller`.
    fn v1_dir(&self, controller: &str, path: &str) -> Option<PathBuf> {
        self.v1
            .iter()
            .find(|(controllers, _, _)| controllers.iter().any(|c| c == controller))
            .map(|(_, mount, root)| join_cgroup(mount, root, path))
    }

    fn v2_dir(&self, path: &str) -> Option<PathBuf> {
        self.v2
            .as_ref()
            .map(|(mount, root)| join_cgroup(mount, root, path))
    }
}

/// `mount` + (`path` relative to the mounted `root`).
fn join_cgroup(mount: &Path, root: &str, path: &str) -> PathBuf {
    let relative = if root == "/" {
        path
    } else {
        path.strip_prefix(root).unwrap_or(path)
    };
    mount.join(relative.trim_start_matches('/'))
}

/// The files a sandbox's figures are read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxCgroup {
    /// CPU time: the file and whether it is v1 (`cpuacct.usage`, ns) or v2 (`cpu.stat`).
    pub cpu: Option<(PathBuf, CgroupVersion)>,
    /// The memory cgroup's directory and its version.
    pub memory: Option<(PathBuf, CgroupVersion)>,
    /// `pids.current`.
    pub pids: Option<PathBuf>,
}

/// Which cgroup interface a file belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupVersion {
    /// cgroup v1 (one hierarchy per controller group).
    V1,
    /// cgroup v2 (the unified hierarchy).
    V2,
}

impl SandboxCgroup {
    /// Where the figures of a process with these `/proc/<pid>/cgroup` lines
    /// (`(hierarchy id, controllers, path)`) are, given the mounts. Pure: files are not
    /// checked here, except that a v2 path is used only if no v1 hierarchy has the
    /// controller.
    pub fn locate(mounts: &CgroupMounts, lines: &[(u32, Vec<String>, String)]) -> SandboxCgroup {
        let v1 = |controller: &str| {
            lines
                .iter()
                .filter(|(h, _, _)| *h != 0)
                .find(|(_, cs, _)| cs.iter().any(|c| c == controller))
                .and_then(|(_, _, path)| mounts.v1_dir(controller, path))
        };
        let v2 = lines
            .iter()
            .find(|(h, cs, _)| *h == 0 && cs.is_empty())
            .and_then(|(_, _, path)| mounts.v2_dir(path));
        SandboxCgroup {
            cpu: v1("cpuacct")
                .map(|d| (d.join("cpuacct.usage"), CgroupVersion::V1))
                .or_else(|| v2.as_ref().map(|d| (d.join("cpu.stat"), CgroupVersion::V2))),
            memory: v1("memory")
                .map(|d| (d, CgroupVersion::V1))
                .or_else(|| v2.clone().map(|d| (d, CgroupVersion::V2))),
            pids: v1("pids")
                .or_else(|| v2.clone())
                .map(|d| d.join("pids.current")),
        }
    }

    /// Finds the cgroup of process `pid`. Errors: [`MetricsError::Proc`] (the process is
    /// gone, for instance).
    pub fn of_pid(mounts: &CgroupMounts, pid: u32) -> Result<SandboxCgroup, MetricsError> {
        let lines = procfs::process::Process::new(pid as i32)
            .and_then(|p| p.cgroups())
            .map_err(MetricsError::proc("/proc/<pid>/cgroup"))?;
        let lines: Vec<_> = lines
            .0
            .into_iter()
            .map(|l| (l.hierarchy, l.controllers, l.pathname))
            .collect();
        Ok(Self::locate(mounts, &lines))
    }

    /// Reads the counters. A missing file leaves its figure at 0 (or no limit).
    pub fn read(&self) -> CgroupCounters {
        let cpu_usage_ns = self.cpu.as_ref().and_then(|(file, version)| {
            let text = std::fs::read_to_string(file).ok()?;
            match version {
                CgroupVersion::V1 => text.trim().parse().ok(),
                CgroupVersion::V2 => parse_usage_usec(&text).map(|us| us.saturating_mul(1000)),
            }
        });
        let (memory_bytes, memory_limit_bytes) = match &self.memory {
            Some((dir, CgroupVersion::V1)) => (
                read_u64(&dir.join("memory.usage_in_bytes")),
                read_u64(&dir.join("memory.limit_in_bytes")).filter(|l| *l < V1_UNLIMITED),
            ),
            Some((dir, CgroupVersion::V2)) => (
                read_u64(&dir.join("memory.current")),
                // "max" does not parse: no limit.
                read_u64(&dir.join("memory.max")),
            ),
            None => (None, None),
        };
        CgroupCounters {
            cpu_usage_ns,
            memory_bytes: memory_bytes.unwrap_or(0),
            memory_limit_bytes,
            pids: self
                .pids
                .as_ref()
                .and_then(|p| read_u64(p))
                .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
        }
    }
}

/// What a sandbox's cgroup says at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CgroupCounters {
    /// CPU time used since the cgroup was made, ns (`None` if unreadable).
    pub cpu_usage_ns: Option<u64>,
    /// Memory charged, bytes.
    pub memory_bytes: u64,
    /// Memory limit, bytes (`None`: unlimited).
    pub memory_limit_bytes: Option<u64>,
    /// Processes.
    pub pids: u32,
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `usage_usec` of a cgroup2 `cpu.stat` (`key value` lines).
pub fn parse_usage_usec(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == "usage_usec").then(|| value.trim().parse().ok())?
    })
}

/// Bytes `(received, sent)` on the interfaces of `pid`'s network namespace, `lo` excluded.
/// Errors: [`MetricsError::Proc`].
pub fn net_bytes(pid: u32) -> Result<(u64, u64), MetricsError> {
    let devices = procfs::process::Process::new(pid as i32)
        .and_then(|p| p.dev_status())
        .map_err(MetricsError::proc("/proc/<pid>/net/dev"))?;
    Ok(devices
        .values()
        .filter(|d| d.name != "lo")
        .fold((0, 0), |(rx, tx), d| (rx + d.recv_bytes, tx + d.sent_bytes)))
}

/// Bytes allocated to the files under `dir` (st_blocks * 512, so sparse files count what they
/// use; hard links inside count once per link), not following symlinks. A missing directory
/// is 0 bytes; unreadable entries are skipped.
pub fn dir_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.blocks() * 512)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hybrid() -> CgroupMounts {
        CgroupMounts {
            v1: vec![
                (
                    vec!["cpuacct".into()],
                    "/sys/fs/cgroup/cpuacct".into(),
                    "/".into(),
                ),
                (
                    vec!["memory".into()],
                    "/sys/fs/cgroup/memory".into(),
                    "/".into(),
                ),
                (
                    vec!["pids".into()],
                    "/sys/fs/cgroup/pids".into(),
                    "/".into(),
                ),
            ],
            v2: Some(("/sys/fs/cgroup/unified".into(), "/".into())),
        }
    }

    #[test]
    fn hybrid_hosts_use_the_v1_controllers() {
        let lines = vec![
            (4, vec!["memory".to_owned()], "/api/abc/sb".to_owned()),
            (2, vec!["cpuacct".to_owned()], "/sb".to_owned()),
            (8, vec!["pids".to_owned()], "/sb".to_owned()),
            (0, vec![], "/sb".to_owned()),
        ];
        let cg = SandboxCgroup::locate(&hybrid(), &lines);
        assert_eq!(
            cg.cpu,
            Some((
                PathBuf::from("/sys/fs/cgroup/cpuacct/sb/cpuacct.usage"),
                CgroupVersion::V1
            ))
        );
        assert_eq!(
            cg.memory,
            Some((
                PathBuf::from("/sys/fs/cgroup/memory/api/abc/sb"),
                CgroupVersion::V1
            ))
        );
        assert_eq!(
            cg.pids,
            Some(PathBuf::from("/sys/fs/cgroup/pids/sb/pids.current"))
        );
    }

    #[test]
    fn pure_v2_hosts_use_the_unified_files() {
        let mounts = CgroupMounts {
            v1: vec![],
            v2: Some(("/sys/fs/cgroup".into(), "/".into())),
        };
        let cg = SandboxCgroup::locate(&mounts, &[(0, vec![], "/hangar/sb".to_owned())]);
        assert_eq!(
            cg.cpu,
            Some((
                PathBuf::from("/sys/fs/cgroup/hangar/sb/cpu.stat"),
                CgroupVersion::V2
            ))
        );
        assert_eq!(
            cg.memory,
            Some((PathBuf::from("/sys/fs/cgroup/hangar/sb"), CgroupVersion::V2))
        );
        assert_eq!(
            cg.pids,
            Some(PathBuf::from("/sys/fs/cgroup/hangar/sb/pids.current"))
        );
        // A cgroup namespace's mount shows a sub-tree: its root is stripped.
        let nested = CgroupMounts {
            v1: vec![],
            v2: Some(("/sys/fs/cgroup".into(), "/outer".into())),
        };
        let cg = SandboxCgroup::locate(&nested, &[(0, vec![], "/outer/sb".to_owned())]);
        assert_eq!(
            cg.pids,
            Some(PathBuf::from("/sys/fs/cgroup/sb/pids.current"))
        );
    }

    #[test]
    fn cpu_stat_usage() {
        assert_eq!(
            parse_usage_usec("usage_usec 1234\nuser_usec 1000\nsystem_usec 234\n"),
            Some(1234)
        );
        assert_eq!(parse_usage_usec("user_usec 1\n"), None);
    }

    #[test]
    fn this_process_has_a_readable_cgroup() {
        let mounts = CgroupMounts::read().expect("mountinfo");
        let cg = SandboxCgroup::of_pid(&mounts, std::process::id()).expect("cgroup");
        let counters = cg.read();
        // (This process may sit in a root cgroup, which has no pids.current: the pids figure
        // is checked against real sandboxes in crates/hangar/tests/metrics.rs.)
        assert!(counters.memory_bytes > 0, "{cg:?}");
        assert!(counters.cpu_usage_ns.is_some_and(|ns| ns > 0), "{cg:?}");
    }
}
