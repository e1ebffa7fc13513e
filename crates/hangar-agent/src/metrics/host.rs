//! Host figures: CPU time from `/proc/stat`, memory from `/proc/meminfo`, the data
//! directory's filesystem from statvfs(3), network bytes from `/proc/net/dev` over the host's
//! physical interfaces. [`HostCounters::read`] does the I/O; the rest is arithmetic.

use std::path::Path;

use procfs::{Current, CurrentSI};

use super::MetricsError;

/// One reading of the host's counters and gauges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostCounters {
    /// Clock ticks all CPUs spent busy since boot: user, nice, system, irq, softirq, steal
    /// (guest time is already inside user).
    pub cpu_busy_ticks: u64,
    /// Busy plus idle plus iowait ticks since boot.
    pub cpu_total_ticks: u64,
    /// Online CPUs (`cpuN` lines of `/proc/stat`).
    pub cpu_count: u32,
    /// `MemTotal - MemAvailable`, bytes.
    pub memory_used_bytes: u64,
    /// `MemTotal`, bytes.
    pub memory_total_bytes: u64,
    /// Used bytes of the filesystem holding the data directory.
    pub disk_used_bytes: u64,
    /// Size of that filesystem, bytes.
    pub disk_total_bytes: u64,
    /// Bytes received since boot over physical interfaces.
    pub net_rx_bytes: u64,
    /// Bytes sent since boot over physical interfaces.
    pub net_tx_bytes: u64,
}

impl HostCounters {
    /// Reads `/proc/stat`, `/proc/meminfo`, `/proc/net/dev`, `/sys/class/net` and statvfs of
    /// `data_dir`. Errors: [`MetricsError::Proc`], [`MetricsError::Io`].
    pub fn read(data_dir: &Path) -> Result<HostCounters, MetricsError> {
        let stat = procfs::KernelStats::current().map_err(MetricsError::proc("/proc/stat"))?;
        let t = &stat.total;
        let busy = t.user
            + t.nice
            + t.system
            + t.irq.unwrap_or(0)
            + t.softirq.unwrap_or(0)
            + t.steal.unwrap_or(0);
        let total = busy + t.idle + t.iowait.unwrap_or(0);
        let mem = procfs::Meminfo::current().map_err(MetricsError::proc("/proc/meminfo"))?;
        let available = mem.mem_available.unwrap_or(mem.mem_free);
        let fs = nix::sys::statvfs::statvfs(data_dir).map_err(|errno| MetricsError::Io {
            op: "statvfs",
            path: data_dir.to_owned(),
            source: errno.into(),
        })?;
        let frsize = fs.fragment_size() as u64;
        let blocks = fs.blocks() as u64;
        let free = fs.blocks_free() as u64;
        let (mut rx, mut tx) = (0, 0);
        let devices = procfs::net::dev_status().map_err(MetricsError::proc("/proc/net/dev"))?;
        for (name, dev) in devices {
            if is_physical(&name) {
                rx += dev.recv_bytes;
                tx += dev.sent_bytes;
            }
        }
        Ok(HostCounters {
            cpu_busy_ticks: busy,
            cpu_total_ticks: total,
            cpu_count: u32::try_from(stat.cpu_time.len()).unwrap_or(u32::MAX),
            memory_used_bytes: mem.mem_total.saturating_sub(available),
            memory_total_bytes: mem.mem_total,
            disk_used_bytes: blocks.saturating_sub(free) * frsize,
            disk_total_bytes: blocks * frsize,
            net_rx_bytes: rx,
            net_tx_bytes: tx,
        })
    }
}

/// Is `name` a physical interface: one whose `/sys/class/net/<name>` link does not lead
/// under `/sys/devices/virtual/` (so never `lo`, a bridge such as `hangar0`, a sandbox veth
/// `hgv...`, a tun or an ifb)? On a host whose only uplink is virtual (a container) nothing
/// is counted and the host rates read 0.
pub fn is_physical(name: &str) -> bool {
    if name.is_empty() || name.contains('/') {
        return false;
    }
    match std::fs::read_link(Path::new("/sys/class/net").join(name)) {
        Ok(target) => !target.to_string_lossy().contains("/devices/virtual/"),
        Err(_) => false,
    }
}

/// Busy share of all CPUs between two readings, in percent (0..=100). `None` when the
/// counters did not move forward (same reading, or a reset).
pub fn cpu_percent(before: &HostCounters, after: &HostCounters) -> Option<f64> {
    let total = after.cpu_total_ticks.checked_sub(before.cpu_total_ticks)?;
    let busy = after.cpu_busy_ticks.checked_sub(before.cpu_busy_ticks)?;
    if total == 0 {
        return None;
    }
    Some((busy as f64 * 100.0 / total as f64).clamp(0.0, 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(busy: u64, total: u64) -> HostCounters {
        HostCounters {
            cpu_busy_ticks: busy,
            cpu_total_ticks: total,
            cpu_count: 2,
            memory_used_bytes: 0,
            memory_total_bytes: 0,
            disk_used_bytes: 0,
            disk_total_bytes: 0,
            net_rx_bytes: 0,
            net_tx_bytes: 0,
        }
    }

    #[test]
    fn cpu_percent_is_the_busy_share_of_the_delta() {
        assert_eq!(
            cpu_percent(&counters(100, 1000), &counters(150, 1200)),
            Some(25.0)
        );
        assert_eq!(
            cpu_percent(&counters(100, 1000), &counters(100, 1000)),
            None
        );
        assert_eq!(cpu_percent(&counters(100, 1000), &counters(50, 500)), None);
    }

    #[test]
    fn reads_this_host() {
        let a = HostCounters::read(Path::new("/")).expect("read");
        assert!(a.cpu_count >= 1);
        assert!(a.memory_total_bytes > a.memory_used_bytes && a.memory_used_bytes > 0);
        assert!(a.disk_total_bytes >= a.disk_used_bytes && a.disk_used_bytes > 0);
        assert!(!is_physical("lo"));
    }
}
