//! Health figures as the domain sees them: one sample of a node ([`NodeSample`]) and of a
//! sandbox ([`SandboxSample`]), the heartbeat that carries them ([`Heartbeat`]), the node
//! health rule ([`NodeState::of`]), rates from counter deltas ([`rate_per_second`]), and the
//! history tiers and query windows ([`Resolution`], [`Since`], [`pick_step`]).
//!
//! The serde shapes are the wire contract of issue 6 (the dashboard and the live stream read
//! exactly these field names). Rates and CPU percentages come from the difference of two
//! readings, so the **first sample of a node or sandbox has no rate: those fields are `null`**.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::SandboxId;
use crate::time::Timestamp;

/// One reading of a node's host figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeSample {
    /// When it was taken (the node's clock).
    pub at: Timestamp,
    /// Busy share of all CPUs since the previous reading, 0..=100 (from `/proc/stat`:
    /// everything but idle and iowait). `null` on the first reading.
    pub cpu_percent: Option<f64>,
    /// Online CPUs.
    pub cpu_count: u32,
    /// `MemTotal - MemAvailable` from `/proc/meminfo`, bytes.
    pub memory_used_bytes: u64,
    /// `MemTotal`, bytes.
    pub memory_total_bytes: u64,
    /// Used bytes of the filesystem holding the data directory (statvfs: `(blocks - bfree) *
    /// frsize`).
    pub disk_used_bytes: u64,
    /// Size of that filesystem, bytes (`blocks * frsize`).
    pub disk_total_bytes: u64,
    /// Bytes per second received over the host's own interfaces (not `lo`, not hangar's
    /// bridge or sandbox veths). `null` on the first reading.
    pub net_rx_bytes_per_second: Option<f64>,
    /// Bytes per second sent over the same interfaces. `null` on the first reading.
    pub net_tx_bytes_per_second: Option<f64>,
    /// Sandboxes whose first process runs on this node.
    pub sandboxes_running: u32,
}

/// One reading of a sandbox's own figures, from its cgroup and network namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SandboxSample {
    /// When it was taken (the node's clock).
    pub at: Timestamp,
    /// CPU used since the previous reading, in percent of ONE core (two busy cores show 200).
    /// `null` on the first reading.
    pub cpu_percent: Option<f64>,
    /// Memory charged to its cgroup (v1 `memory.usage_in_bytes`, v2 `memory.current`), bytes.
    pub memory_bytes: u64,
    /// Its cgroup's memory limit, bytes; `null` when unlimited.
    pub memory_limit_bytes: Option<u64>,
    /// Bytes in its writable layer (for runc: the overlay's upper directory; refreshed less
    /// often than the other figures, see the collector).
    pub disk_bytes: u64,
    /// Bytes per second received on its network namespace's interfaces (not `lo`). `null` on
    /// the first reading.
    pub net_rx_bytes_per_second: Option<f64>,
    /// Bytes per second sent on the same interfaces. `null` on the first reading.
    pub net_tx_bytes_per_second: Option<f64>,
    /// Processes in its cgroup (`pids.current`).
    pub pids: u32,
}

/// What a node agent sends the control plane every interval.
#[derive(Clone, Debug, PartialEq)]
pub struct Heartbeat {
    /// The node's name (usually its host name).
    pub name: String,
    /// Where the control plane reaches the agent (`host:port`), if at all.
    pub address: Option<String>,
    /// Drivers it offers (`runc`, ...).
    pub drivers: Vec<String>,
    /// The host reading.
    pub node: NodeSample,
    /// One reading per running sandbox.
    pub sandboxes: Vec<(SandboxId, SandboxSample)>,
}

/// A node's health as the control plane judges it from heartbeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Its last heartbeat is recent.
    Ready,
    /// No heartbeat for longer than the allowed silence.
    Unreachable,
}

impl NodeState {
    /// The rule: a node is `unreachable` when `now - last_heartbeat_at` is longer than
    /// `silence`, else `ready` (a heartbeat stamped in the future counts as fresh).
    pub fn of(last_heartbeat_at: Timestamp, now: Timestamp, silence: Duration) -> NodeState {
        let silence_ms = i64::try_from(silence.as_millis()).unwrap_or(i64::MAX);
        if now.unix_ms().saturating_sub(last_heartbeat_at.unix_ms()) > silence_ms {
            NodeState::Unreachable
        } else {
            NodeState::Ready
        }
    }

    /// `ready` or `unreachable`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Unreachable => "unreachable",
        }
    }
}

/// The per-second rate of a monotonic counter between two readings `(value, at)`.
/// `None` when there is no earlier reading, when no time passed, or when the counter went
/// backwards (reset, such as an interface re-created): a rate is never made up.
pub fn rate_per_second(
    previous: Option<(u64, Timestamp)>,
    current: (u64, Timestamp),
) -> Option<f64> {
    let (before, before_at) = previous?;
    let (now, now_at) = current;
    let elapsed_ms = now_at.unix_ms() - before_at.unix_ms();
    if elapsed_ms <= 0 || now < before {
        return None;
    }
    Some((now - before) as f64 * 1000.0 / elapsed_ms as f64)
}

/// The stored resolutions of the history, finest first. Raw samples are kept as they came
/// (one per collector interval); the others are aggregates over aligned buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resolution {
    /// As collected (every collector interval, 10 s by default).
    Raw,
    /// One aggregate per minute (bucket start aligned to the minute).
    Minute,
    /// One aggregate per 10 minutes (aligned to 10 minutes since the epoch).
    TenMinutes,
}

impl Resolution {
    /// All, finest first.
    pub const ALL: [Resolution; 3] = [Resolution::Raw, Resolution::Minute, Resolution::TenMinutes];

    /// The bucket width in seconds, as stored in `resolution_s` (0 for raw).
    pub const fn seconds(self) -> i64 {
        match self {
            Self::Raw => 0,
            Self::Minute => 60,
            Self::TenMinutes => 600,
        }
    }

    /// The resolution stored as `resolution_s`, if it is one.
    pub fn from_seconds(seconds: i64) -> Option<Resolution> {
        Self::ALL.into_iter().find(|r| r.seconds() == seconds)
    }

    /// The resolution this one is aggregated from (`None` for raw).
    pub const fn source(self) -> Option<Resolution> {
        match self {
            Self::Raw => None,
            Self::Minute => Some(Self::Raw),
            Self::TenMinutes => Some(Self::Minute),
        }
    }
}

/// How long each resolution is kept. Defaults: raw 1 h, 1-minute 1 day, 10-minute 30 days.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Raw samples.
    pub raw: Duration,
    /// 1-minute aggregates.
    pub minute: Duration,
    /// 10-minute aggregates.
    pub ten_minutes: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            raw: Duration::from_secs(3600),
            minute: Duration::from_secs(86_400),
            ten_minutes: Duration::from_secs(30 * 86_400),
        }
    }
}

impl Retention {
    /// How long `resolution` is kept.
    pub const fn of(&self, resolution: Resolution) -> Duration {
        match resolution {
            Resolution::Raw => self.raw,
            Resolution::Minute => self.minute,
            Resolution::TenMinutes => self.ten_minutes,
        }
    }
}

/// The start of a history window: an instant, or a duration before now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Since {
    /// An RFC 3339 instant.
    At(Timestamp),
    /// This long before now (`90s`, `15m`, `1h`, `24h`, `7d`).
    Ago(Duration),
}

/// A `since` that is neither RFC 3339 nor `<digits><s|m|h|d>`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("since must be an RFC 3339 time or a duration such as 1h, 24h, 7d: {text:?}")]
pub struct InvalidSince {
    /// What was given (at most 64 characters).
    pub text: String,
}

impl Since {
    /// Parses `since`: RFC 3339 (any offset) or a positive whole number followed by `s`, `m`,
    /// `h` or `d`.
    pub fn parse(text: &str) -> Result<Since, InvalidSince> {
        let invalid = || InvalidSince {
            text: text.chars().take(64).collect(),
        };
        if let Some(at) = Timestamp::parse_rfc3339(text) {
            return Ok(Since::At(at));
        }
        let unit = text.chars().last().ok_or_else(invalid)?;
        let digits = &text[..text.len() - unit.len_utf8()];
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let n: u64 = digits.parse().map_err(|_| invalid())?;
        let seconds = match unit {
            's' => Some(n),
            'm' => n.checked_mul(60),
            'h' => n.checked_mul(3600),
            'd' => n.checked_mul(86_400),
            _ => None,
        }
        .ok_or_else(invalid)?;
        if seconds == 0 {
            return Err(invalid());
        }
        Ok(Since::Ago(Duration::from_secs(seconds)))
    }

    /// The instant this names, given `now`.
    pub fn resolve(self, now: Timestamp) -> Timestamp {
        match self {
            Since::At(at) => at,
            Since::Ago(d) => now.plus_ms(-i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        }
    }
}

/// The resolution and step (seconds) a window of `span` starting `age` ago is answered with:
/// - with no `step`: raw at `raw_step_s` for a span up to 1 h, 1-minute up to 1 day, 10-minute
///   beyond;
/// - with a `step`: the coarsest resolution not coarser than `step`;
///
/// and in both cases never a resolution whose retention ends before the window starts (a
/// coarser one is taken; the step grows to at least its bucket width).
pub fn pick_step(
    span: Duration,
    age: Duration,
    step: Option<u32>,
    raw_step_s: u32,
    retention: &Retention,
) -> (Resolution, u32) {
    let wanted = match step {
        None if span <= Duration::from_secs(3600) => Resolution::Raw,
        None if span <= Duration::from_secs(86_400) => Resolution::Minute,
        None => Resolution::TenMinutes,
        Some(s) => Resolution::ALL
            .into_iter()
            .rev()
            .find(|r| i64::from(s) >= r.seconds().max(i64::from(raw_step_s)))
            .unwrap_or(Resolution::Raw),
    };
    let kept = Resolution::ALL
        .into_iter()
        .filter(|r| *r >= wanted)
        .find(|r| retention.of(*r) >= age)
        .unwrap_or(Resolution::TenMinutes);
    let width = match kept {
        Resolution::Raw => raw_step_s.max(1),
        other => u32::try_from(other.seconds()).unwrap_or(600),
    };
    (kept, step.unwrap_or(width).max(width))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp::from_unix_ms(1_800_000_000_000);

    #[test]
    fn unreachable_only_after_the_silence() {
        let silence = Duration::from_secs(30);
        assert_eq!(NodeState::of(T0, T0, silence), NodeState::Ready);
        assert_eq!(
            NodeState::of(T0, T0.plus_ms(30_000), silence),
            NodeState::Ready
        );
        assert_eq!(
            NodeState::of(T0, T0.plus_ms(30_001), silence),
            NodeState::Unreachable
        );
        assert_eq!(
            NodeState::of(T0.plus_ms(5_000), T0, silence),
            NodeState::Ready
        );
    }

    #[test]
    fn rates_come_from_deltas_only() {
        assert_eq!(rate_per_second(None, (100, T0)), None);
        assert_eq!(
            rate_per_second(Some((100, T0)), (1100, T0.plus_ms(2_000))),
            Some(500.0)
        );
        assert_eq!(rate_per_second(Some((100, T0)), (200, T0)), None);
        assert_eq!(
            rate_per_second(Some((500, T0)), (100, T0.plus_ms(1_000))),
            None,
            "a counter reset gives no rate"
        );
    }

    #[test]
    fn since_parses_times_and_durations() {
        assert_eq!(
            Since::parse("1h"),
            Ok(Since::Ago(Duration::from_secs(3600)))
        );
        assert_eq!(
            Since::parse("7d"),
            Ok(Since::Ago(Duration::from_secs(7 * 86_400)))
        );
        assert_eq!(Since::parse("90s"), Ok(Since::Ago(Duration::from_secs(90))));
        assert_eq!(
            Since::parse("2026-11-23T11:20:18.123Z"),
            Ok(Since::At(Timestamp::from_unix_ms(1_795_432_818_123)))
        );
        for bad in [
            "",
            "h",
            "1",
            "1w",
            "-1h",
            "0h",
            "1.5h",
            "yesterday",
            "99999999999999999999d",
        ] {
            assert!(Since::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Since::Ago(Duration::from_secs(60)).resolve(T0),
            T0.plus_ms(-60_000)
        );
    }

    #[test]
    fn step_follows_span_and_retention() {
        let r = Retention::default();
        let h = Duration::from_secs(3600);
        assert_eq!(pick_step(h, h, None, 10, &r), (Resolution::Raw, 10));
        assert_eq!(
            pick_step(h * 24, h * 24, None, 10, &r),
            (Resolution::Minute, 60)
        );
        assert_eq!(
            pick_step(h * 24 * 7, h * 24 * 7, None, 10, &r),
            (Resolution::TenMinutes, 600)
        );
        // An explicit step picks the coarsest tier not coarser than it.
        assert_eq!(pick_step(h, h, Some(30), 10, &r), (Resolution::Raw, 30));
        assert_eq!(
            pick_step(h, h, Some(120), 10, &r),
            (Resolution::Minute, 120)
        );
        assert_eq!(
            pick_step(h, h, Some(3600), 10, &r),
            (Resolution::TenMinutes, 3600)
        );
        // A step finer than the raw interval is raised to it.
        assert_eq!(pick_step(h, h, Some(1), 10, &r), (Resolution::Raw, 10));
        // A window older than a tier's retention goes to a coarser tier.
        assert_eq!(
            pick_step(Duration::from_secs(600), h * 2, None, 10, &r),
            (Resolution::Minute, 60)
        );
        assert_eq!(
            pick_step(h, h * 48, Some(10), 10, &r),
            (Resolution::TenMinutes, 600)
        );
    }
}
