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
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(Timestamp::EPOCH, |d| {
                Timestamp::from_millis(d.as_millis() as i64)
            });
        Now::new(mono, wall)
    }
}
