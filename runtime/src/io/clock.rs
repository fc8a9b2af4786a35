//! Reading the two clocks the core takes as arguments.

use std::time::{SystemTime, UNIX_EPOCH};

use rota_core::time::{Mono, Now, Timestamp};

/// Reads monotonic and wall time together.
pub trait Clock: Send + Sync + 'static {
    /// The present on both clocks.
    fn now(&self) -> Now;
}

/// Monotonic time from tokio's clock (which a simulator can drive), wall time from the
/// operating system.
#[derive(Debug)]
pub struct SystemClock {
    origin: tokio::time::Instant,
}

impl SystemClock {
    /// A clock whose monotonic origin is now.
    pub fn new() -> Self {
        SystemClock {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Now {
        let mono = Mono::from_millis(self.origin.elapsed().as_millis() as u64);
        Now::new(mono, system_wall_now())
    }
}

/// The operating system's wall clock, for the production executors, which stamp what
/// really happened to real processes.
pub fn system_wall_now() -> Timestamp {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(Timestamp::EPOCH, |d| {
            Timestamp::from_millis(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        })
}
