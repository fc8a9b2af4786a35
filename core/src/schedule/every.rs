//! The `@every` schedule: a fixed period in absolute time, counted from an anchor.

use super::error::{DurationProblem, ScheduleError, quoted};
use crate::time::Timestamp;

/// The shortest period accepted, in seconds.
const PERIOD_S_MIN: u64 = 1;
/// The longest period accepted, in seconds (365 days).
pub(super) const PERIOD_S_MAX: u64 = 365 * SECS_PER_DAY;

const SECS_PER_DAY: u64 = 86_400;

/// Parses a Go-like duration made of whole numbers with the units d, h, m and s, each
/// unit at most once, in any order (`90s`, `1h30m`, `2d`, `1h0m30s`). Returns seconds.
pub(super) fn parse_period(text: &str) -> Result<u64, ScheduleError> {
    if text.is_empty() {
        return Err(ScheduleError::MissingDuration);
    }
    let fail = |problem| ScheduleError::Duration {
        text: quoted(text),
        problem,
    };
    if text.starts_with('-') {
        return Err(fail(DurationProblem::Negative));
    }
    let mut total_s: u64 = 0;
    let mut seen_units = [false; 4];
    let mut rest = text;
    while !rest.is_empty() {
        let digits_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (digits, after_digits) = rest.split_at_checked(digits_len).unwrap_or((rest, ""));
        if digits.is_empty() {
            return Err(fail(DurationProblem::Malformed));
        }
        let unit_len = after_digits
            .bytes()
            .take_while(u8::is_ascii_alphabetic)
            .count();
        let (unit, after_unit) = after_digits
            .split_at_checked(unit_len)
            .unwrap_or((after_digits, ""));
        if unit.is_empty() {
            // A number at the very end lacks its unit; anything else (a dot, a space) is
            // not part of the syntax at all.
            return Err(fail(if after_digits.is_empty() {
                DurationProblem::MissingUnit
            } else {
                DurationProblem::Malformed
            }));
        }
        let (slot, unit_s) = match unit {
            "d" => (0, SECS_PER_DAY),
            "h" => (1, 3_600),
            "m" => (2, 60),
            "s" => (3, 1),
            _ => return Err(fail(DurationProblem::UnknownUnit)),
        };
        if seen_units[slot] {
            return Err(fail(DurationProblem::DuplicateUnit));
        }
        seen_units[slot] = true;
        // A number too large to count is certainly longer than the limit.
        let amount: u64 = digits.parse().map_err(|_| fail(DurationProblem::TooLong))?;
        total_s = amount
            .checked_mul(unit_s)
            .and_then(|s| total_s.checked_add(s))
            .ok_or_else(|| fail(DurationProblem::TooLong))?;
        rest = after_unit;
    }
    if total_s < PERIOD_S_MIN {
        return Err(fail(DurationProblem::Zero));
    }
    if total_s > PERIOD_S_MAX {
        return Err(fail(DurationProblem::TooLong));
    }
    Ok(total_s)
}

/// The first of `anchor + k * period` (k >= 1) strictly after `after`, or `None` past
/// [`Timestamp::MAX`].
pub(super) fn next_after(period_s: u64, anchor: Timestamp, after: Timestamp) -> Option<Timestamp> {
    // i128 holds every product here: periods are at most 365 days in milliseconds and
    // timestamps are i64, so no sum or product can overflow.
    let period_ms = i128::from(period_s) * 1000;
    let anchor_ms = i128::from(anchor.as_millis());
    let after_ms = i128::from(after.as_millis());
    let k = if after_ms < anchor_ms + period_ms {
        1
    } else {
        (after_ms - anchor_ms) / period_ms + 1
    };
    let fire_ms = anchor_ms + k * period_ms;
    if fire_ms > i128::from(Timestamp::MAX.as_millis()) {
        return None;
    }
    i64::try_from(fire_ms).ok().map(Timestamp::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_combine_units() {
        assert_eq!(parse_period("90s"), Ok(90));
        assert_eq!(parse_period("1h30m"), Ok(5_400));
        assert_eq!(parse_period("2d"), Ok(172_800));
        assert_eq!(parse_period("1h0m30s"), Ok(3_630));
        assert_eq!(parse_period("30s1h"), Ok(3_630));
        assert_eq!(parse_period("1s"), Ok(1));
        assert_eq!(parse_period("365d"), Ok(PERIOD_S_MAX));
        assert_eq!(parse_period("364d23h59m60s"), Ok(PERIOD_S_MAX));
    }

    #[test]
    fn bad_periods_say_what_is_wrong() {
        let problem = |text| match parse_period(text) {
            Err(ScheduleError::Duration { problem, .. }) => Some(problem),
            _ => None,
        };
        assert_eq!(parse_period(""), Err(ScheduleError::MissingDuration));
        assert_eq!(problem("0s"), Some(DurationProblem::Zero));
        assert_eq!(problem("0h0m"), Some(DurationProblem::Zero));
        assert_eq!(problem("-5m"), Some(DurationProblem::Negative));
        assert_eq!(problem("90"), Some(DurationProblem::MissingUnit));
        assert_eq!(problem("1h30"), Some(DurationProblem::MissingUnit));
        assert_eq!(problem("5w"), Some(DurationProblem::UnknownUnit));
        assert_eq!(problem("500ms"), Some(DurationProblem::UnknownUnit));
        assert_eq!(problem("1H"), Some(DurationProblem::UnknownUnit));
        assert_eq!(problem("1h2h"), Some(DurationProblem::DuplicateUnit));
        assert_eq!(problem("366d"), Some(DurationProblem::TooLong));
        assert_eq!(problem("365d1s"), Some(DurationProblem::TooLong));
        assert_eq!(
            problem("99999999999999999999999s"),
            Some(DurationProblem::TooLong)
        );
        assert_eq!(
            problem("18446744073709551615d"),
            Some(DurationProblem::TooLong)
        );
        assert_eq!(problem("1.5h"), Some(DurationProblem::Malformed));
        assert_eq!(problem("h"), Some(DurationProblem::Malformed));
        assert_eq!(problem("1h 30m"), Some(DurationProblem::Malformed));
        assert_eq!(problem("+1h"), Some(DurationProblem::Malformed));
        assert_eq!(problem("1é"), Some(DurationProblem::Malformed));
    }

    #[test]
    fn fires_count_whole_periods_from_the_anchor() {
        let anchor = Timestamp::from_millis(1_000_500);
        let p = 60;
        let at = |k: i64| Timestamp::from_millis(1_000_500 + k * 60_000);
        // Before the anchor, and anywhere in the first period, the first fire is one
        // period after the anchor: the anchor itself never fires.
        assert_eq!(next_after(p, anchor, Timestamp::EPOCH), Some(at(1)));
        assert_eq!(next_after(p, anchor, Timestamp::MIN), Some(at(1)));
        assert_eq!(next_after(p, anchor, anchor), Some(at(1)));
        assert_eq!(
            next_after(p, anchor, at(1) - core::time::Duration::from_millis(1)),
            Some(at(1))
        );
        assert_eq!(next_after(p, anchor, at(1)), Some(at(2)));
        assert_eq!(next_after(p, anchor, at(2)), Some(at(3)));
        assert_eq!(
            next_after(p, anchor, at(1000) + core::time::Duration::from_millis(1)),
            Some(at(1001))
        );
    }

    #[test]
    fn fires_beyond_the_last_instant_do_not_exist() {
        let anchor = Timestamp::MAX - core::time::Duration::from_secs(90);
        assert_eq!(
            next_after(60, anchor, Timestamp::EPOCH),
            Some(anchor + core::time::Duration::from_secs(60))
        );
        assert_eq!(
            next_after(60, anchor, anchor + core::time::Duration::from_secs(60)),
            None
        );
        assert_eq!(
            next_after(
                PERIOD_S_MAX,
                Timestamp::from_millis(i64::MAX),
                Timestamp::from_millis(i64::MIN)
            ),
            None
        );
        assert_eq!(
            next_after(
                1,
                Timestamp::from_millis(i64::MIN),
                Timestamp::from_millis(i64::MAX)
            ),
            None
        );
    }
}
