//! When a job fires: schedule expressions, parsed once and asked for their next fire time.
//!
//! # Syntax
//!
//! - A crontab line: `min hour dom month dow` (5 fields), `sec min hour dom month dow`
//!   (6 fields) or `sec min hour dom month dow year` (7 fields). Fields hold `*`, values,
//!   ranges `a-b`, steps `*/n` and `a-b/n`, and comma-separated lists of those. Days of
//!   the week are 0-7 (0 and 7 are Sunday) or SUN-SAT, months 1-12 or JAN-DEC, names in
//!   any case; years 1970-2100. As in Vixie cron and cronie, when the day-of-month field
//!   or the day-of-week field starts with `*` a day must match both; when both are
//!   restricted a day matching either one will do (`0 0 1,15 * 5` fires on the 1st, the
//!   15th and every Friday). Quartz's `?`, `L`, `W` and `#` are refused.
//! - Macros: `@yearly` and `@annually` (`0 0 1 1 *`), `@monthly` (`0 0 1 * *`), `@weekly`
//!   (`0 0 * * 0`), `@daily` and `@midnight` (`0 0 * * *`), `@hourly` (`0 * * * *`).
//! - `@every <duration>`: whole numbers with the units d, h, m and s, each at most once
//!   (`90s`, `1h30m`, `2d`), from 1s to 365d. It fires at `anchor + k * period` for
//!   k = 1, 2, ..., in absolute time: the zone plays no part.
//! - `@at <instant>`: once, at an RFC 3339 instant such as `2026-03-08T09:00:00Z`.
//! - `@manually`: never by schedule; runs are only started by hand.
//!
//! Leading and trailing whitespace is ignored, fields are separated by runs of spaces or
//! tabs, and expressions longer than 256 bytes are refused.
//!
//! # Zones and daylight saving
//!
//! Crontab fields are matched against the wall clock of the job's zone. Where daylight
//! saving (or any other change of UTC offset) makes the wall clock skip a stretch of time
//! (a gap) or repeat one (a fold), the schedule falls in one of two kinds:
//!
//! - **Interval-like** schedules, whose hour field starts with `*` and covers every hour
//!   (`*` or `*/1`, and `@hourly`), fire at every real instant whose wall-clock time
//!   matches. In a fold they fire in both passes; wall-clock times in a gap do not exist
//!   and nothing is made up for them. An every-15-minutes job thus keeps running every
//!   15 minutes of real time across both transitions. This follows Vixie cron and cronie,
//!   which run wildcard jobs by real time (they also count a `*` minute field as a
//!   wildcard; rota looks at the hour field only).
//! - **Fixed** schedules, all the others, fire once per matching wall-clock time. A time
//!   inside a gap fires once, at the first instant after the gap (02:30 on 2026-03-08 in
//!   America/New_York fires at 03:00 EDT, 07:00Z), and several times inside the same gap
//!   make that one fire. A time inside a fold fires once, at its first occurrence (01:30
//!   on 2026-11-01 in America/New_York fires at 01:30 EDT, 05:30Z, and not again at 01:30
//!   EST).
//!
//! Fire times are whole seconds. The `cron` crate does the search for matching wall-clock
//! times (it knows years up to 2100 only, so no crontab schedule fires later than that);
//! this module maps them onto instants.

mod crontab;
mod error;
mod every;
mod wall_clock;

#[cfg(test)]
mod brute_force_tests;

use core::fmt;
use core::time::Duration;
use std::sync::Arc;

pub use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use self::crontab::CronRule;
use self::error::quoted;
pub use self::error::{
    CronField, DurationProblem, EXPRESSION_LEN_MAX, FieldProblem, ScheduleError,
};
use crate::time::Timestamp;

/// A parsed schedule expression (without its zone, which the job holds beside it).
///
/// Cloning is cheap: the parsed form is shared. The simple kinds (`@every`, `@at`,
/// `@manually`) are held beside the shared part, so that their fire times are computed
/// without reading it: in a state of many jobs that read is a cache miss, and most
/// schedules are simple. Two schedules are equal when their
/// expressions are written the same (after trimming). With serde, a schedule is its
/// expression as a string, and deserializing parses it.
///
/// Methods: [`Schedule::parse`] builds one; [`Schedule::next_after`] computes fire times;
/// [`Schedule::source`], [`Schedule::is_one_shot`], [`Schedule::is_manual`] and
/// [`Schedule::every`] describe it.
#[derive(Clone)]
pub struct Schedule {
    kind: Kind,
    shared: Arc<Shared>,
}

impl Schedule {
    /// Reads what computing a fire time will read (the shared part's first bytes, for
    /// a crontab line), so that it is in cache when it is next needed.
    pub(crate) fn touch(&self) -> usize {
        match self.kind {
            Kind::Cron => Arc::strong_count(&self.shared),
            _ => 0,
        }
    }
}

/// The part of a schedule its clones share.
struct Shared {
    source: Box<str>,
    /// The rule of a crontab line (or macro); `None` for the other kinds.
    cron: Option<CronRule>,
}

#[derive(Clone, Copy)]
enum Kind {
    /// A crontab line; its rule is in [`Shared::cron`].
    Cron,
    Every {
        period_s: u64,
    },
    At(Timestamp),
    Manual,
}

/// The crontab line each argument-less macro stands for.
const MACROS: [(&str, &str); 7] = [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

impl Schedule {
    /// Parses an expression (see the [module documentation](self) for the syntax).
    pub fn parse(expr: &str) -> Result<Schedule, ScheduleError> {
        let source = expr.trim();
        if source.is_empty() {
            return Err(ScheduleError::Empty);
        }
        if source.len() > EXPRESSION_LEN_MAX {
            return Err(ScheduleError::TooLong {
                len_bytes: source.len(),
            });
        }
        let (kind, cron) = if source.starts_with('@') {
            parse_macro(source)?
        } else {
            (Kind::Cron, Some(CronRule::parse(source)?))
        };
        Ok(Schedule {
            kind,
            shared: Arc::new(Shared {
                source: source.into(),
                cron,
            }),
        })
    }

    /// The expression as given, without leading and trailing whitespace.
    pub fn source(&self) -> &str {
        &self.shared.source
    }

    /// The first fire strictly after `after`, with wall-clock fields read in `zone`;
    /// `anchor` is the instant `@every` counts from (the job's creation, or the last
    /// change of its schedule). `None` if it never fires again, or not before
    /// [`Timestamp::MAX`].
    ///
    /// It takes bounded time for every input: a crontab line that can never match (such
    /// as `0 0 30 2 *`) gives `None` after searching up to 2100.
    pub fn next_after(&self, after: Timestamp, zone: Tz, anchor: Timestamp) -> Option<Timestamp> {
        match self.kind {
            Kind::Cron => self.shared.cron.as_ref()?.next_after(after, zone),
            Kind::Every { period_s } => every::next_after(period_s, anchor, after),
            Kind::At(at) => (at > after).then_some(at),
            Kind::Manual => None,
        }
    }

    /// Whether this is an `@at` schedule, which fires once.
    pub fn is_one_shot(&self) -> bool {
        matches!(self.kind, Kind::At(_))
    }

    /// Whether this is `@manually`, which never fires by schedule.
    pub fn is_manual(&self) -> bool {
        matches!(self.kind, Kind::Manual)
    }

    /// For `@every`, its period; `None` for any other schedule.
    pub fn every(&self) -> Option<Duration> {
        match self.kind {
            Kind::Every { period_s } => Some(Duration::from_secs(period_s)),
            _ => None,
        }
    }
}

/// Parses a macro: its kind, and its rule if it stands for a crontab line.
fn parse_macro(source: &str) -> Result<(Kind, Option<CronRule>), ScheduleError> {
    let (name, argument) = source
        .split_once([' ', '\t'])
        .map_or((source, ""), |(name, rest)| (name, rest.trim()));
    if name.eq_ignore_ascii_case("@every") {
        return Ok((
            Kind::Every {
                period_s: every::parse_period(argument)?,
            },
            None,
        ));
    }
    if name.eq_ignore_ascii_case("@at") {
        if argument.is_empty() {
            return Err(ScheduleError::MissingInstant);
        }
        return Timestamp::parse_rfc3339(argument)
            .map(|at| (Kind::At(at), None))
            .ok_or_else(|| ScheduleError::Instant {
                text: quoted(argument),
            });
    }
    let parsed = if name.eq_ignore_ascii_case("@manually") {
        (Kind::Manual, None)
    } else {
        let line = MACROS
            .iter()
            .find(|(macro_name, _)| macro_name.eq_ignore_ascii_case(name))
            .map(|(_, line)| *line)
            .ok_or_else(|| ScheduleError::UnknownMacro { text: quoted(name) })?;
        (Kind::Cron, Some(CronRule::parse(line)?))
    };
    if !argument.is_empty() {
        return Err(ScheduleError::UnexpectedArgument {
            macro_name: name.to_owned(),
            text: quoted(argument),
        });
    }
    Ok(parsed)
}

/// Parses an IANA zone name such as `Europe/Berlin` or `UTC`.
pub fn parse_zone(name: &str) -> Result<Tz, ScheduleError> {
    name.trim()
        .parse()
        .map_err(|_| ScheduleError::Zone { name: quoted(name) })
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Schedule) -> bool {
        self.source() == other.source()
    }
}

impl Eq for Schedule {}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Schedule").field(&self.source()).finish()
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.source())
    }
}

impl Serialize for Schedule {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.source())
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Schedule::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
