//! Wall-clock fire times mapped onto real instants, across daylight-saving transitions.
//!
//! The crontab fields are matched against the zone's wall clock, but a wall-clock time can
//! name no instant (in the gap when clocks spring forward) or two (in the fold when they
//! fall back). This file decides which instants fire, as the module documentation of
//! [`super`] describes; the search for matching wall-clock times is someone else's,
//! passed in as a function.
//!
//! Instants and wall-clock times are both whole seconds here: an instant counts seconds
//! since the Unix epoch, and a wall-clock time counts seconds since 1970-01-01 00:00 on
//! the zone's wall clock (as if that clock were UTC).

use chrono::{DateTime, MappedLocalTime, Offset, TimeZone};
use chrono_tz::Tz;

/// How a cron schedule treats the gaps and folds of its zone's wall clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum WallClockRule {
    /// Fires once per matching wall-clock time: a time in a gap fires at the first
    /// instant after the gap, and a time in a fold fires at its first occurrence only.
    Fixed,
    /// Fires at every instant whose wall-clock time matches: twice for a time in a fold,
    /// never for a time in a gap.
    Interval,
}

/// The most wall-clock times looked at for one fire. One is enough unless a match falls
/// in a gap or a fold; the bound keeps absurd zone data from looping forever.
const CANDIDATES_MAX: usize = 64;

/// Chrono requires UTC offsets to be smaller than a day, so a transition that skips or
/// repeats a given wall-clock time lies within a day of that time read as UTC.
const SECS_PER_DAY: i64 = 86_400;

/// The first instant after `after` at which a schedule fires, in `zone`, under `rule`.
///
/// `next_local(l)` must return the first wall-clock time strictly after `l` that the
/// schedule's fields match, or `None` if there is none.
pub(super) fn next_fire(
    zone: Tz,
    after: i64,
    rule: WallClockRule,
    next_local: impl Fn(i64) -> Option<i64>,
) -> Option<i64> {
    let now_local = local_at(zone, after)?;
    match rule {
        WallClockRule::Fixed => next_fixed(zone, after, now_local, next_local),
        WallClockRule::Interval => next_interval(zone, after, now_local, next_local),
    }
}

fn next_fixed(
    zone: Tz,
    after: i64,
    now_local: i64,
    next_local: impl Fn(i64) -> Option<i64>,
) -> Option<i64> {
    let mut bound = now_local;
    if let Some(Resolved::Twice(first, second)) = resolve(zone, now_local)
        && second == after
    {
        // We are in the second pass through a fold. Every wall-clock time up to the end of
        // the fold fired (or not) in the first pass, so the search starts after the fold.
        let first_offset = offset_at(zone, first)?;
        let fold = fold_instant(zone, first, second)?;
        bound = fold.checked_add(first_offset)?.checked_sub(1)?;
    }
    for _ in 0..CANDIDATES_MAX {
        let local = next_local(bound)?;
        let instant = match resolve(zone, local)? {
            Resolved::Once(instant) | Resolved::Twice(instant, _) => instant,
            Resolved::Never => gap_end(zone, local)?,
        };
        if instant > after {
            return Some(instant);
        }
        bound = local;
    }
    None
}

fn next_interval(
    zone: Tz,
    after: i64,
    now_local: i64,
    next_local: impl Fn(i64) -> Option<i64>,
) -> Option<i64> {
    let mut bound = now_local;
    if let Some(Resolved::Twice(first, second)) = resolve(zone, now_local)
        && first == after
    {
        // We are in the first pass through a fold: the rest of this pass comes first,
        // then the clock goes back and the fold's wall-clock times happen again.
        let first_offset = offset_at(zone, first)?;
        let fold = fold_instant(zone, first, second)?;
        let fold_end_local = fold.checked_add(first_offset)?;
        if let Some(local) = next_local(now_local)
            && local < fold_end_local
        {
            return local.checked_sub(first_offset);
        }
        bound = local_at(zone, fold)?.checked_sub(1)?;
    }
    for _ in 0..CANDIDATES_MAX {
        let local = next_local(bound)?;
        match resolve(zone, local)? {
            Resolved::Once(instant) if instant > after => return Some(instant),
            Resolved::Twice(first, _) if first > after => return Some(first),
            Resolved::Twice(_, second) if second > after => return Some(second),
            Resolved::Never => {
                // Nothing in a gap fires; go on from the first wall-clock time after it.
                bound = local_at(zone, gap_end(zone, local)?)?.checked_sub(1)?;
                continue;
            }
            Resolved::Once(_) | Resolved::Twice(..) => {}
        }
        bound = local;
    }
    None
}

/// The instants a wall-clock time names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resolved {
    /// Exactly one.
    Once(i64),
    /// Two, in a fold: the earlier, then the later.
    Twice(i64, i64),
    /// None, in a gap.
    Never,
}

fn resolve(zone: Tz, local: i64) -> Option<Resolved> {
    let naive = DateTime::from_timestamp(local, 0)?.naive_utc();
    Some(match zone.from_local_datetime(&naive) {
        MappedLocalTime::Single(at) => Resolved::Once(at.timestamp()),
        MappedLocalTime::Ambiguous(earlier, later) => {
            Resolved::Twice(earlier.timestamp(), later.timestamp())
        }
        MappedLocalTime::None => Resolved::Never,
    })
}

/// The zone's UTC offset at `instant`, in seconds east of UTC.
fn offset_at(zone: Tz, instant: i64) -> Option<i64> {
    let utc = DateTime::from_timestamp(instant, 0)?.naive_utc();
    Some(i64::from(
        zone.offset_from_utc_datetime(&utc).fix().local_minus_utc(),
    ))
}

/// The wall-clock time at `instant`.
fn local_at(zone: Tz, instant: i64) -> Option<i64> {
    instant.checked_add(offset_at(zone, instant)?)
}

/// The instant the clock jumps over `local`, a wall-clock time inside a gap: the first
/// instant whose wall-clock time is later than `local`.
fn gap_end(zone: Tz, local: i64) -> Option<i64> {
    let low = local.checked_sub(SECS_PER_DAY)?;
    let high = local.checked_add(SECS_PER_DAY)?;
    Some(first_true(low, high, |instant| {
        local_at(zone, instant).is_none_or(|l| l > local)
    }))
}

/// The instant a fold begins (the clock goes back), given the two instants `first` and
/// `second` that share a wall-clock time inside it.
fn fold_instant(zone: Tz, first: i64, second: i64) -> Option<i64> {
    let before = offset_at(zone, first)?;
    Some(first_true(first, second, |instant| {
        offset_at(zone, instant).is_none_or(|offset| offset < before)
    }))
}

/// The smallest instant in `(low, high]` where `pred` holds, for a `pred` false at `low`,
/// true at `high` and changing once between (a binary search, so about 17 steps a day).
fn first_true(mut low: i64, mut high: i64, pred: impl Fn(i64) -> bool) -> i64 {
    while high.saturating_sub(low) > 1 {
        let mid = low + (high - low) / 2;
        if pred(mid) {
            high = mid;
        } else {
            low = mid;
        }
    }
    high
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instant(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp()
    }

    fn wall(naive: &str) -> i64 {
        chrono::NaiveDateTime::parse_from_str(naive, "%Y-%m-%d %H:%M:%S")
            .unwrap()
            .and_utc()
            .timestamp()
    }

    #[test]
    fn gaps_end_at_the_transition_instant() {
        let ny: Tz = "America/New_York".parse().unwrap();
        assert_eq!(
            resolve(ny, wall("2026-03-08 02:30:00")),
            Some(Resolved::Never)
        );
        assert_eq!(
            gap_end(ny, wall("2026-03-08 02:30:00")),
            Some(instant("2026-03-08T07:00:00Z"))
        );
        let santiago: Tz = "America/Santiago".parse().unwrap();
        assert_eq!(
            gap_end(santiago, wall("2026-09-06 00:00:00")),
            Some(instant("2026-09-06T04:00:00Z"))
        );
    }

    #[test]
    fn folds_begin_at_the_transition_instant() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let Some(Resolved::Twice(first, second)) = resolve(ny, wall("2026-11-01 01:30:00")) else {
            panic!("01:30 happens twice on 2026-11-01 in New York");
        };
        assert_eq!(first, instant("2026-11-01T05:30:00Z"));
        assert_eq!(second, instant("2026-11-01T06:30:00Z"));
        assert_eq!(
            fold_instant(ny, first, second),
            Some(instant("2026-11-01T06:00:00Z"))
        );
    }

    #[test]
    fn a_wall_clock_match_inside_a_long_gap_is_passed_over_in_one_step() {
        // Samoa skipped 2011-12-30 entirely. An interval-like schedule matching only
        // that day finds nothing there, and must look at only a few candidates.
        let apia: Tz = "Pacific/Apia".parse().unwrap();
        let skipped_day = wall("2011-12-30 00:00:00")..wall("2011-12-31 00:00:00");
        let calls = core::cell::Cell::new(0);
        let next_local = |l: i64| {
            calls.set(calls.get() + 1);
            let next = l + 1;
            if next < skipped_day.start {
                Some(skipped_day.start)
            } else if skipped_day.contains(&next) {
                Some(next)
            } else {
                None
            }
        };
        let after = instant("2011-12-29T00:00:00Z");
        assert_eq!(
            next_fire(apia, after, WallClockRule::Interval, next_local),
            None
        );
        assert!(calls.get() <= 3, "took {} calls", calls.get());
    }
}
