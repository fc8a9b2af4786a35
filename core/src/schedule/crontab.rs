//! Crontab lines: their fields parsed with crontab's meaning, then translated onto the
//! `cron` crate, which does the search for matching wall-clock times.
//!
//! The crate reads its own dialect: seconds always first, days of the week numbered 1-7
//! from Sunday, and day-of-month ANDed with day-of-week. So each field is parsed here into
//! a set of values (which also gives errors that say what to fix), and the crate is handed
//! explicit lists in its own numbering. Crontab's "either day" rule becomes two crate
//! schedules whose earliest match wins.

use core::str::FromStr;

use chrono::{DateTime, Datelike, Utc};
use chrono_tz::Tz;

use super::error::{CronField, FieldProblem, ScheduleError};
use super::wall_clock::{self, WallClockRule};
use crate::time::Timestamp;

/// The last year the `cron` crate searches.
const YEAR_LAST: i32 = 2100;

const MONTH_NAMES: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// A crontab schedule, ready to search.
#[derive(Clone, Debug)]
pub(super) struct CronRule {
    /// Matches the line's wall-clock times (when both day fields are restricted, only
    /// those whose day matches the day-of-month field).
    primary: cron::Schedule,
    /// When both day fields are restricted, matches the times whose day matches the
    /// day-of-week field. It is boxed because it is usually absent, and a crate schedule
    /// takes some 200 bytes inline.
    by_weekday: Option<Box<cron::Schedule>>,
    /// How gaps and folds of the zone's wall clock are treated.
    rule: WallClockRule,
}

impl CronRule {
    /// Parses a 5-, 6- or 7-field crontab line (already trimmed).
    pub(super) fn parse(line: &str) -> Result<CronRule, ScheduleError> {
        let mut fields: [&str; 7] = [""; 7];
        let mut count = 0usize;
        for field in line.split([' ', '\t']).filter(|f| !f.is_empty()) {
            if let Some(slot) = fields.get_mut(count) {
                *slot = field;
            }
            count = count.saturating_add(1);
        }
        // Five fields are crontab's own; six put seconds first; seven add a year last.
        let (second, rest) = match count {
            5 => (None, fields.get(..5).unwrap_or_default()),
            6 | 7 => (
                fields.first().copied(),
                fields.get(1..count).unwrap_or_default(),
            ),
            found => return Err(ScheduleError::FieldCount { found }),
        };
        let [minute, hour, day_of_month, month, day_of_week, year @ ..] = rest else {
            return Err(ScheduleError::FieldCount { found: count });
        };
        let second = match second {
            Some(text) => parse_field(CronField::Second, text)?,
            None => ParsedField::single(CronField::Second, 0),
        };
        let minute = parse_field(CronField::Minute, minute)?;
        let hour = parse_field(CronField::Hour, hour)?;
        let day_of_month = parse_field(CronField::DayOfMonth, day_of_month)?;
        let month = parse_field(CronField::Month, month)?;
        let day_of_week = parse_field(CronField::DayOfWeek, day_of_week)?;
        let year = match year.first() {
            Some(text) => Some(parse_field(CronField::Year, text)?),
            None => None,
        };
        // An hour field such as `*` or `*/1` makes the line interval-like; see the module
        // documentation of `schedule`.
        let every_hour = (0..=23).all(|h| hour.values.contains(h));
        let rule = if hour.starts_with_star && every_hour {
            WallClockRule::Interval
        } else {
            WallClockRule::Fixed
        };
        CronRule::from_fields(
            &second,
            &minute,
            &hour,
            &day_of_month,
            &month,
            &day_of_week,
            year.as_ref(),
            rule,
        )
    }

    #[expect(clippy::too_many_arguments, reason = "one argument per crontab field")]
    fn from_fields(
        second: &ParsedField,
        minute: &ParsedField,
        hour: &ParsedField,
        day_of_month: &ParsedField,
        month: &ParsedField,
        day_of_week: &ParsedField,
        year: Option<&ParsedField>,
        rule: WallClockRule,
    ) -> Result<CronRule, ScheduleError> {
        let head = format!(
            "{} {} {}",
            second.for_crate(CronField::Second),
            minute.for_crate(CronField::Minute),
            hour.for_crate(CronField::Hour),
        );
        let month = month.for_crate(CronField::Month);
        let year = year.map_or_else(|| "*".to_owned(), |y| y.for_crate(CronField::Year));
        let days = day_of_month.for_crate(CronField::DayOfMonth);
        let weekdays = day_of_week.weekdays_for_crate();
        let build = |days: &str, weekdays: &str| {
            let line = format!("{head} {days} {month} {weekdays} {year}");
            cron::Schedule::from_str(&line).map_err(|e| ScheduleError::Translation {
                detail: format!("`{line}`: {e}"),
            })
        };
        // Vixie cron and cronie: when either day field starts with `*`, a day must match
        // both (so just the other one); when both are restricted, either one will do.
        if day_of_month.starts_with_star || day_of_week.starts_with_star {
            Ok(CronRule {
                primary: build(&days, &weekdays)?,
                by_weekday: None,
                rule,
            })
        } else {
            Ok(CronRule {
                primary: build(&days, "*")?,
                by_weekday: Some(Box::new(build("*", &weekdays)?)),
                rule,
            })
        }
    }

    /// The first fire strictly after `after` in `zone`.
    pub(super) fn next_after(&self, after: Timestamp, zone: Tz) -> Option<Timestamp> {
        // Nothing fires before 1970, so earlier instants all have the same next fire.
        let after_s = after.as_secs_floor().max(Timestamp::MIN.as_secs_floor());
        let fire_s = wall_clock::next_fire(zone, after_s, self.rule, |l| self.next_local_after(l))?;
        let fire = Timestamp::from_millis(fire_s.checked_mul(1000)?);
        (fire <= Timestamp::MAX).then_some(fire)
    }

    /// The first matching wall-clock time strictly after `local` (both in seconds since
    /// 1970-01-01 00:00 on the wall clock).
    fn next_local_after(&self, local: i64) -> Option<i64> {
        // The crate knows no zone here: given UTC, it searches wall-clock times with no
        // gaps or folds, which is what it is good at; the zone is handled by the caller.
        let start = DateTime::<Utc>::from_timestamp(local, 0)?;
        if start.year() > YEAR_LAST {
            return None;
        }
        let first = self.primary.after(&start).next().map(|t| t.timestamp());
        let by_weekday = self
            .by_weekday
            .as_ref()
            .and_then(|s| s.after(&start).next())
            .map(|t| t.timestamp());
        match (first, by_weekday) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The values one field accepts, as bits counted from the field's minimum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ValueSet([u64; 3]);

impl ValueSet {
    fn insert(&mut self, index: u32) {
        if let Some(word) = self.0.get_mut((index / 64) as usize) {
            *word |= 1 << (index % 64);
        }
    }

    fn remove(&mut self, index: u32) {
        if let Some(word) = self.0.get_mut((index / 64) as usize) {
            *word &= !(1 << (index % 64));
        }
    }

    fn contains(&self, index: u32) -> bool {
        self.0
            .get((index / 64) as usize)
            .is_some_and(|word| word & (1 << (index % 64)) != 0)
    }
}

/// One parsed field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ParsedField {
    values: ValueSet,
    /// Whether the text began with `*`, which decides crontab's day rule.
    starts_with_star: bool,
}

impl ParsedField {
    fn single(field: CronField, value: u32) -> ParsedField {
        let mut values = ValueSet::default();
        values.insert(value.saturating_sub(field.min()));
        ParsedField {
            values,
            starts_with_star: false,
        }
    }

    /// The field for the crate: `*` when every value is in, else a list of runs.
    fn for_crate(self, field: CronField) -> String {
        let (min, max) = (field.min(), field.max());
        list_for_crate(|v| self.values.contains(v - min), min, max, 0)
    }

    /// The day-of-week field for the crate, which numbers Sunday 1 and Saturday 7.
    fn weekdays_for_crate(self) -> String {
        // Day 7 was folded onto day 0 when parsing, so days 0-6 are the whole week.
        list_for_crate(|v| self.values.contains(v), 0, 6, 1)
    }
}

/// `*` if `contains` holds for all of `min..=max`, else the values (plus `shift`) as a
/// comma-separated list of runs such as `0,15-17,30`, or as a step such as `0-58/2` when
/// that is shorter (each crate schedule keeps its text, so shorter is smaller).
fn list_for_crate(contains: impl Fn(u32) -> bool, min: u32, max: u32, shift: u32) -> String {
    if (min..=max).all(&contains) {
        return "*".to_owned();
    }
    let values: Vec<u32> = (min..=max).filter(|&v| contains(v)).collect();
    let mut runs = String::new();
    let mut rest = values.as_slice();
    while let [start, ..] = rest {
        let len = rest
            .iter()
            .zip(*start..)
            .take_while(|(v, expected)| **v == *expected)
            .count();
        let end = start + (len as u32 - 1);
        if !runs.is_empty() {
            runs.push(',');
        }
        if len == 1 {
            runs.push_str(&format!("{}", start + shift));
        } else {
            runs.push_str(&format!("{}-{}", start + shift, end + shift));
        }
        rest = rest.get(len..).unwrap_or_default();
    }
    if let [first, second, .., last] = values.as_slice() {
        let step = second - first;
        let is_progression = values.windows(2).all(|pair| pair[1] - pair[0] == step);
        let stepped = format!("{}-{}/{step}", first + shift, last + shift);
        if is_progression && step > 1 && stepped.len() < runs.len() {
            return stepped;
        }
    }
    runs
}

/// Parses a field: a comma-separated list of `*`, values, ranges `a-b`, and steps `*/n`
/// or `a-b/n`.
fn parse_field(field: CronField, text: &str) -> Result<ParsedField, ScheduleError> {
    let mut values = ValueSet::default();
    for item in text.split(',') {
        parse_item(field, item, &mut values)?;
    }
    if field == CronField::DayOfWeek && values.contains(7) {
        // Crontab accepts 7 for Sunday, as well as 0.
        values.insert(0);
        values.remove(7);
    }
    Ok(ParsedField {
        values,
        starts_with_star: text.starts_with('*'),
    })
}

fn parse_item(field: CronField, item: &str, values: &mut ValueSet) -> Result<(), ScheduleError> {
    let fail = |problem| ScheduleError::Field {
        field,
        text: item.to_owned(),
        problem,
    };
    if item.is_empty() {
        return Err(fail(FieldProblem::Empty));
    }
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => (range, Some(step)),
        None => (item, None),
    };
    if item.contains(['?', '#']) || is_quartz_special(range) {
        return Err(fail(FieldProblem::Unsupported));
    }
    let (min, max) = (field.min(), field.max());
    let (start, end, is_range) = if range == "*" {
        (min, max, true)
    } else if let Some((a, b)) = range.split_once('-') {
        let a = parse_value(field, a).map_err(fail)?;
        let b = parse_value(field, b).map_err(fail)?;
        (a, b, true)
    } else {
        let v = parse_value(field, range).map_err(fail)?;
        (v, v, false)
    };
    if start > end {
        return Err(fail(FieldProblem::ReversedRange));
    }
    let step = match step {
        None => 1,
        Some(text) => {
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(fail(FieldProblem::NotAValue));
            }
            if !is_range {
                return Err(fail(FieldProblem::StepWithoutRange));
            }
            let step: u32 = text.parse().map_err(|_| fail(FieldProblem::BadStep))?;
            if step == 0 || step > max - min + 1 {
                return Err(fail(FieldProblem::BadStep));
            }
            step
        }
    };
    for v in (start..=end).step_by(step as usize) {
        values.insert(v - min);
    }
    Ok(())
}

/// A number or (for months and days of the week) a three-letter name, checked against
/// the field's range.
fn parse_value(field: CronField, text: &str) -> Result<u32, FieldProblem> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let value: u32 = text.parse().map_err(|_| FieldProblem::OutOfRange)?;
        return if (field.min()..=field.max()).contains(&value) {
            Ok(value)
        } else {
            Err(FieldProblem::OutOfRange)
        };
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(FieldProblem::NotAValue);
    }
    let (names, first): (&[&str], u32) = match field {
        CronField::Month => (&MONTH_NAMES, 1),
        CronField::DayOfWeek => (&WEEKDAY_NAMES, 0),
        _ => return Err(FieldProblem::UnknownName),
    };
    names
        .iter()
        .zip(first..)
        .find(|(name, _)| name.eq_ignore_ascii_case(text))
        .map(|(_, value)| value)
        .ok_or(FieldProblem::UnknownName)
}

/// Whether `text` is Quartz's `L` (last), `W` (weekday) or their forms such as `5L`,
/// `15W`, `LW` and `L-3`, which crontab does not have.
fn is_quartz_special(text: &str) -> bool {
    let upper = text.to_ascii_uppercase();
    if upper == "L" || upper == "LW" || upper.starts_with("L-") {
        return true;
    }
    upper
        .strip_suffix(['L', 'W'])
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_values(field: CronField, text: &str) -> Vec<u32> {
        let parsed = parse_field(field, text).unwrap();
        (field.min()..=field.max())
            .filter(|v| parsed.values.contains(v - field.min()))
            .collect()
    }

    fn problem(field: CronField, text: &str) -> Option<FieldProblem> {
        match parse_field(field, text) {
            Err(ScheduleError::Field {
                field: f, problem, ..
            }) if f == field => Some(problem),
            _ => None,
        }
    }

    #[test]
    fn fields_accept_values_ranges_steps_and_lists() {
        use CronField::*;
        assert_eq!(field_values(Minute, "5"), [5]);
        assert_eq!(field_values(Minute, "05"), [5]);
        assert_eq!(field_values(Minute, "*/15"), [0, 15, 30, 45]);
        assert_eq!(field_values(Minute, "10-20/5"), [10, 15, 20]);
        assert_eq!(field_values(Minute, "1,3,5-6"), [1, 3, 5, 6]);
        assert_eq!(field_values(Minute, "*/60"), [0]);
        assert_eq!(field_values(Hour, "*/1").len(), 24);
        assert_eq!(field_values(DayOfMonth, "*/10"), [1, 11, 21, 31]);
        assert_eq!(field_values(Month, "jan,Jun-AUG"), [1, 6, 7, 8]);
        assert_eq!(field_values(Year, "2025-2030/2"), [2025, 2027, 2029]);
    }

    #[test]
    fn days_of_week_count_sunday_as_zero_and_seven() {
        use CronField::DayOfWeek;
        assert_eq!(field_values(DayOfWeek, "0"), [0]);
        assert_eq!(field_values(DayOfWeek, "7"), [0]);
        assert_eq!(field_values(DayOfWeek, "5-7"), [0, 5, 6]);
        assert_eq!(field_values(DayOfWeek, "mon-FRI"), [1, 2, 3, 4, 5]);
        assert_eq!(field_values(DayOfWeek, "SUN,sat"), [0, 6]);
        // As in Vixie cron, `*` spans 0-7 before stepping: Sunday, Tuesday, Thursday, Saturday.
        assert_eq!(field_values(DayOfWeek, "*/2"), [0, 2, 4, 6]);
        assert_eq!(field_values(DayOfWeek, "1-7/2"), [0, 1, 3, 5]);
        assert_eq!(field_values(DayOfWeek, "0-7").len(), 7);
    }

    #[test]
    fn bad_items_are_refused_with_what_is_wrong() {
        use CronField::*;
        use FieldProblem::*;
        assert_eq!(problem(Minute, "60"), Some(OutOfRange));
        assert_eq!(problem(Minute, "99999999999999"), Some(OutOfRange));
        assert_eq!(problem(Hour, "24"), Some(OutOfRange));
        assert_eq!(problem(DayOfMonth, "0"), Some(OutOfRange));
        assert_eq!(problem(DayOfMonth, "32"), Some(OutOfRange));
        assert_eq!(problem(Month, "13"), Some(OutOfRange));
        assert_eq!(problem(DayOfWeek, "8"), Some(OutOfRange));
        assert_eq!(problem(Year, "1969"), Some(OutOfRange));
        assert_eq!(problem(Year, "2101"), Some(OutOfRange));
        assert_eq!(problem(Minute, "1,,2"), Some(Empty));
        assert_eq!(problem(Minute, "1,"), Some(Empty));
        assert_eq!(problem(Minute, "*/0"), Some(BadStep));
        assert_eq!(problem(Minute, "*/61"), Some(BadStep));
        assert_eq!(problem(Minute, "*/99999999999"), Some(BadStep));
        assert_eq!(problem(Minute, "*/"), Some(NotAValue));
        assert_eq!(problem(Minute, "*/x"), Some(NotAValue));
        assert_eq!(problem(Minute, "5/10"), Some(StepWithoutRange));
        assert_eq!(problem(Minute, "5-1"), Some(ReversedRange));
        assert_eq!(problem(DayOfWeek, "FRI-SUN"), Some(ReversedRange));
        assert_eq!(problem(Minute, "-5"), Some(NotAValue));
        assert_eq!(problem(Minute, "1-2-3"), Some(NotAValue));
        assert_eq!(problem(Minute, "**"), Some(NotAValue));
        assert_eq!(problem(Minute, "1/2/3"), Some(NotAValue));
        assert_eq!(problem(Minute, "é"), Some(NotAValue));
        assert_eq!(problem(Minute, "MON"), Some(UnknownName));
        assert_eq!(problem(Month, "JANUARY"), Some(UnknownName));
        assert_eq!(problem(DayOfWeek, "Funday"), Some(UnknownName));
        assert_eq!(problem(DayOfWeek, "?"), Some(Unsupported));
        assert_eq!(problem(DayOfMonth, "L"), Some(Unsupported));
        assert_eq!(problem(DayOfMonth, "15W"), Some(Unsupported));
        assert_eq!(problem(DayOfMonth, "LW"), Some(Unsupported));
        assert_eq!(problem(DayOfWeek, "5L"), Some(Unsupported));
        assert_eq!(problem(DayOfWeek, "5#3"), Some(Unsupported));
    }

    #[test]
    fn the_crate_gets_lists_in_its_own_numbering() {
        let weekdays = parse_field(CronField::DayOfWeek, "1-5").unwrap();
        assert_eq!(weekdays.weekdays_for_crate(), "2-6");
        let weekend = parse_field(CronField::DayOfWeek, "6,7").unwrap();
        assert_eq!(weekend.weekdays_for_crate(), "1,7");
        let all = parse_field(CronField::DayOfWeek, "0-6").unwrap();
        assert_eq!(all.weekdays_for_crate(), "*");
        let minutes = parse_field(CronField::Minute, "0,15-17,59").unwrap();
        assert_eq!(minutes.for_crate(CronField::Minute), "0,15-17,59");
        let evens = parse_field(CronField::Minute, "*/2").unwrap();
        assert_eq!(evens.for_crate(CronField::Minute), "0-58/2");
        let pair = parse_field(CronField::Hour, "3,9").unwrap();
        assert_eq!(pair.for_crate(CronField::Hour), "3,9");
        let every_other_day = parse_field(CronField::DayOfWeek, "*/2").unwrap();
        assert_eq!(every_other_day.weekdays_for_crate(), "1-7/2");
        let every = parse_field(CronField::Minute, "0-59").unwrap();
        assert_eq!(every.for_crate(CronField::Minute), "*");
    }

    #[test]
    fn field_counts_other_than_five_to_seven_are_refused() {
        for line in ["*", "* * * *", "* * * * * * * *", "0 0 0 0 0 0 0 0 0"] {
            let found = line.split(' ').count();
            assert_eq!(
                CronRule::parse(line).unwrap_err(),
                ScheduleError::FieldCount { found },
                "{line}"
            );
        }
        let many = "* ".repeat(100);
        assert_eq!(
            CronRule::parse(many.trim()).unwrap_err(),
            ScheduleError::FieldCount { found: 100 }
        );
    }
}
