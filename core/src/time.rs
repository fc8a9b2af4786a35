//! Time as the core sees it: an argument, never a reading.
//!
//! Two clocks travel side by side in [`Now`]. [`Mono`] is monotonic time on this host
//! (timers, leases, deadlines); it never jumps, and it means nothing on another host.
//! [`Timestamp`] is wall time in UTC (cron fire times, and every time stored in the
//! replicated state); it can be stepped or skewed, and the simulator does both.

use core::fmt;
use core::ops::{Add, Sub};
use core::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// A point on this host's monotonic clock, in milliseconds since an origin the runtime
/// chooses (usually its own start). Only differences between two `Mono`s of the same
/// host mean anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mono(u64);

impl Mono {
    /// The origin of the clock.
    pub const ZERO: Mono = Mono(0);

    /// A point `ms` milliseconds after the origin.
    pub const fn from_millis(ms: u64) -> Self {
        Mono(ms)
    }

    /// Milliseconds since the origin.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Mono) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// The point `d` before this one, or the origin if that is earlier.
    pub fn saturating_sub(self, d: Duration) -> Mono {
        Mono(self.0.saturating_sub(duration_millis(d)))
    }
}

impl Add<Duration> for Mono {
    type Output = Mono;
    fn add(self, rhs: Duration) -> Mono {
        Mono(self.0.saturating_add(duration_millis(rhs)))
    }
}

/// A wall-clock instant in UTC, in milliseconds since the Unix epoch.
///
/// Every time stored in the replicated state is a `Timestamp` carried by a command,
/// so all replicas store the same value whatever their own clocks say.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);
    /// The earliest instant rota accepts anywhere (0001-01-01T00:00:00Z).
    pub const MIN: Timestamp = Timestamp(-62_135_596_800_000);
    /// The latest instant rota accepts anywhere (9999-12-31T23:59:59.999Z).
    pub const MAX: Timestamp = Timestamp(253_402_300_799_999);

    /// The instant `ms` milliseconds after the Unix epoch.
    pub const fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    /// The instant `s` seconds after the Unix epoch.
    pub const fn from_secs(s: i64) -> Self {
        Timestamp(s.saturating_mul(1000))
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// Whole seconds since the Unix epoch, rounded towards negative infinity.
    pub const fn as_secs_floor(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// This instant as a chrono `DateTime`.
    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.0).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// A chrono `DateTime` as a `Timestamp` (sub-millisecond precision is dropped).
    pub fn from_datetime<Z: chrono::TimeZone>(dt: &DateTime<Z>) -> Self {
        Timestamp(dt.timestamp_millis())
    }

    /// Parses an RFC 3339 instant such as `2026-03-08T02:30:00-05:00`.
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|dt| Self::from_datetime(&dt))
            .filter(|t| (Self::MIN..=Self::MAX).contains(t))
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }

    /// `self` moved back by `d`, saturating at [`Timestamp::MIN`].
    pub fn saturating_sub(self, d: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_sub(duration_millis_i64(d))
                .max(Self::MIN.0),
        )
    }

    /// `self` moved forward by `d`, saturating at [`Timestamp::MAX`].
    pub fn saturating_add(self, d: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(duration_millis_i64(d))
                .min(Self::MAX.0),
        )
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, rhs: Duration) -> Timestamp {
        self.saturating_add(rhs)
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Timestamp;
    fn sub(self, rhs: Duration) -> Timestamp {
        self.saturating_sub(rhs)
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC, with milliseconds only when they are not zero.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let format = if self.0.rem_euclid(1000) == 0 {
            SecondsFormat::Secs
        } else {
            SecondsFormat::Millis
        };
        f.write_str(&self.to_datetime().to_rfc3339_opts(format, true))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The present, as the runtime hands it to the core: both clocks, read together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// This host's monotonic clock (timers, leases, deadlines).
    pub mono: Mono,
    /// Wall time in UTC (fire times, and times written to the replicated state).
    pub wall: Timestamp,
}

impl Now {
    /// Both clocks at once.
    pub const fn new(mono: Mono, wall: Timestamp) -> Self {
        Now { mono, wall }
    }

    /// The present moved forward by `d` on both clocks (for tests and the simulator).
    pub fn advanced(self, d: Duration) -> Self {
        Now {
            mono: self.mono + d,
            wall: self.wall + d,
        }
    }
}

fn duration_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn duration_millis_i64(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_as_rfc3339_utc() {
        assert_eq!(Timestamp::from_secs(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(
            Timestamp::from_millis(1_500).to_string(),
            "1970-01-01T00:00:01.500Z"
        );
    }

    #[test]
    fn rfc3339_parsing_keeps_the_instant_and_rejects_garbage() {
        let t = Timestamp::parse_rfc3339("2026-03-08T02:30:00-05:00").unwrap();
        assert_eq!(t.to_string(), "2026-03-08T07:30:00Z");
        assert_eq!(Timestamp::parse_rfc3339("tomorrow"), None);
        assert_eq!(Timestamp::parse_rfc3339("2026-02-30T00:00:00Z"), None);
    }

    #[test]
    fn arithmetic_saturates_instead_of_overflowing() {
        assert_eq!(Timestamp::MAX + Duration::from_secs(10), Timestamp::MAX);
        assert_eq!(Timestamp::MIN - Duration::from_secs(10), Timestamp::MIN);
        assert_eq!(
            Timestamp::from_secs(5).saturating_since(Timestamp::from_secs(9)),
            Duration::ZERO
        );
        assert_eq!(
            Mono::ZERO.saturating_since(Mono::from_millis(5)),
            Duration::ZERO
        );
    }
}
