//! The wall clock, passed in (the domain never reads it).

use std::time::{SystemTime, UNIX_EPOCH};

use hangar_core::Timestamp;

/// Where "now" comes from. Tests substitute a manual clock to move time for TTLs.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The system's real-time clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one edge that reads the wall clock
    fn now(&self) -> Timestamp {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Timestamp::from_unix_ms(ms)
    }
}
