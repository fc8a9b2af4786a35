//! [`Schedule::next_after`] checked against a brute-force reference, over random crontab
//! lines, zones and instants.
//!
//! The reference is written from first principles and shares nothing with the code under
//! test but chrono's calendar and chrono-tz's offsets: it walks real instants one step at
//! a time (a second, or a minute for lines without a seconds field), reads each one's
//! wall-clock time from the zone's UTC offset, matches every field itself, and applies
//! the daylight-saving rules of the module documentation by remembering which wall-clock
//! times it has already passed. It never calls the `cron` crate.

use std::sync::LazyLock;

use chrono::{DateTime, Datelike, Offset, TimeZone, Timelike};
use proptest::prelude::*;
use proptest::test_runner::Config;

use super::{Schedule, Tz};
use crate::time::Timestamp;

const ZONES: [&str; 13] = [
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "America/Santiago",
    "America/Havana",
    "Africa/Casablanca",
    "Pacific/Chatham",
    "America/St_Johns",
    "Europe/London",
    "Asia/Kolkata",
    "Asia/Kathmandu",
];

/// 2024-01-01T00:00:00Z and 2031-01-01T00:00:00Z: the years whose transitions we aim at.
const YEARS_START_S: i64 = 1_704_067_200;
const YEARS_END_S: i64 = 1_924_992_000;

const DAY_S: i64 = 86_400;
const HOUR_S: i64 = 3_600;

/// One item of a field's comma-separated list.
#[derive(Clone, Copy, Debug)]
enum Item {
    Star,
    Value(u32),
    Range(u32, u32),
    StarStep(u32),
    RangeStep(u32, u32, u32),
}

#[derive(Clone, Debug)]
struct Field {
    items: Vec<Item>,
    /// The field's first value, where `*/n` starts (day-of-week runs 0-7, 7 being Sunday
    /// again).
    min: u32,
}

impl Field {
    fn render(&self) -> String {
        let items: Vec<String> = self
            .items
            .iter()
            .map(|item| match *item {
                Item::Star => "*".to_owned(),
                Item::Value(v) => v.to_string(),
                Item::Range(a, b) => format!("{a}-{b}"),
                Item::StarStep(s) => format!("*/{s}"),
                Item::RangeStep(a, b, s) => format!("{a}-{b}/{s}"),
            })
            .collect();
        items.join(",")
    }

    /// Whether the list holds `v`, read as crontab does.
    fn holds(&self, v: u32) -> bool {
        self.items.iter().any(|item| match *item {
            Item::Star => true,
            Item::Value(a) => v == a,
            Item::Range(a, b) => (a..=b).contains(&v),
            Item::StarStep(s) => v >= self.min && (v - self.min).is_multiple_of(s),
            Item::RangeStep(a, b, s) => (a..=b).contains(&v) && (v - a).is_multiple_of(s),
        })
    }

    fn starts_with_star(&self) -> bool {
        matches!(self.items.first(), Some(Item::Star | Item::StarStep(_)))
    }
}

#[derive(Clone, Debug)]
struct Line {
    /// `None` for a five-field line (seconds are then 0).
    second: Option<Field>,
    minute: Field,
    hour: Field,
    day_of_month: Field,
    month: Field,
    day_of_week: Field,
}

impl Line {
    fn render(&self) -> String {
        let mut fields = Vec::new();
        if let Some(second) = &self.second {
            fields.push(second.render());
        }
        for field in [
            &self.minute,
            &self.hour,
            &self.day_of_month,
            &self.month,
            &self.day_of_week,
        ] {
            fields.push(field.render());
        }
        fields.join(" ")
    }

    /// Interval-like lines (hour field starting with `*` and holding every hour) fire at
    /// every instant whose wall-clock time matches.
    fn interval_like(&self) -> bool {
        self.hour.starts_with_star() && (0..=23).all(|h| self.hour.holds(h))
    }

    /// Whether a wall-clock time (seconds since 1970-01-01 00:00 on that clock) matches.
    fn matches(&self, local: i64) -> bool {
        let t = DateTime::from_timestamp(local, 0).unwrap().naive_utc();
        let second_ok = match &self.second {
            Some(field) => field.holds(t.second()),
            None => t.second() == 0,
        };
        let weekday = t.weekday().num_days_from_sunday();
        let dom_ok = self.day_of_month.holds(t.day());
        let dow_ok = self.day_of_week.holds(weekday) || (weekday == 0 && self.day_of_week.holds(7));
        let day_ok = if self.day_of_month.starts_with_star() || self.day_of_week.starts_with_star()
        {
            dom_ok && dow_ok
        } else {
            dom_ok || dow_ok
        };
        second_ok
            && self.minute.holds(t.minute())
            && self.hour.holds(t.hour())
            && self.month.holds(t.month())
            && day_ok
    }
}

fn offset_s(zone: Tz, instant: i64) -> i64 {
    let utc = DateTime::from_timestamp(instant, 0).unwrap().naive_utc();
    i64::from(zone.offset_from_utc_datetime(&utc).fix().local_minus_utc())
}

fn local_s(zone: Tz, instant: i64) -> i64 {
    instant + offset_s(zone, instant)
}

/// The first fire strictly after `after_ms` within `window_s` seconds of it, found by
/// walking instants `step_s` apart (1, or 60 for lines that only fire on whole minutes;
/// every offset change in the zones and years tested falls on a whole minute).
fn reference_next(line: &Line, zone: Tz, after_ms: i64, window_s: i64, step_s: i64) -> Option<i64> {
    // The first instant on the step grid that is strictly after `after_ms`.
    let next_second = after_ms.div_euclid(1000) + 1;
    let first = next_second.div_euclid(step_s) * step_s;
    let first = if first < next_second {
        first + step_s
    } else {
        first
    };
    // The latest wall-clock time passed before `first`: later instants whose wall-clock
    // time is not beyond it are the second pass through a fold. Folds last hours, so a
    // day of history is plenty. Offsets only change on whole minutes, so within a minute
    // the wall clock runs with real time.
    let mut seen_max = i64::MIN;
    let mut minute = (first - DAY_S).div_euclid(60) * 60;
    while minute < first {
        let last = (minute + 59).min(first - 1);
        seen_max = seen_max.max(local_s(zone, minute) + (last - minute));
        minute += 60;
    }
    let fixed = !line.interval_like();
    let mut previous_local = local_s(zone, first - step_s);
    let mut instant = first;
    while instant <= first + window_s {
        let local = local_s(zone, instant);
        let mut fires = line.matches(local) && (!fixed || local > seen_max);
        if fixed && local - previous_local > step_s {
            // The clock jumped over (previous_local, local): wall-clock times in there
            // fire now, at the first instant after the gap.
            let mut skipped = previous_local + step_s;
            while skipped < local {
                fires |= line.matches(skipped);
                skipped += step_s;
            }
        }
        if fires {
            return Some(instant);
        }
        seen_max = seen_max.max(local + step_s - 1);
        previous_local = local;
        instant += step_s;
    }
    None
}

/// Each zone's offset changes in 2024-2030, to the second.
static TRANSITIONS: LazyLock<Vec<Vec<i64>>> = LazyLock::new(|| {
    ZONES
        .iter()
        .map(|name| {
            let zone: Tz = name.parse().unwrap();
            let mut found = Vec::new();
            let mut day = YEARS_START_S;
            while day < YEARS_END_S {
                if offset_s(zone, day) != offset_s(zone, day + DAY_S) {
                    let (mut low, mut high) = (day, day + DAY_S);
                    while high - low > 1 {
                        let mid = low + (high - low) / 2;
                        if offset_s(zone, mid) == offset_s(zone, day) {
                            low = mid;
                        } else {
                            high = mid;
                        }
                    }
                    found.push(high);
                }
                day += DAY_S;
            }
            found
        })
        .collect()
});

fn item(min: u32, max: u32) -> impl Strategy<Value = Item> {
    let span = max - min + 1;
    prop_oneof![
        1 => Just(Item::Star),
        4 => (min..=max).prop_map(Item::Value),
        2 => (min..=max, min..=max).prop_map(|(a, b)| Item::Range(a.min(b), a.max(b))),
        2 => (1..=span.min(12)).prop_map(Item::StarStep),
        1 => (1..=span).prop_map(Item::StarStep),
        2 => (min..=max, min..=max, 1..=span)
            .prop_map(|(a, b, s)| Item::RangeStep(a.min(b), a.max(b), s)),
    ]
}

fn field(min: u32, max: u32, star_weight: u32) -> impl Strategy<Value = Field> {
    prop_oneof![
        star_weight => Just(vec![Item::Star]),
        10 => prop::collection::vec(item(min, max), 1..=3),
    ]
    .prop_map(move |items| Field { items, min })
}

/// Hours: often a wildcard (interval-like), otherwise biased to the hours transitions
/// happen in (0-3, and 23 for zones that change at midnight).
fn hour() -> impl Strategy<Value = Field> {
    let near_transitions = prop_oneof![
        3 => prop_oneof![0u32..=3, Just(23)].prop_map(Item::Value),
        1 => (0u32..=3, 0u32..=3).prop_map(|(a, b)| Item::Range(a.min(b), a.max(b))),
        2 => item(0, 23),
    ];
    prop_oneof![
        3 => Just(vec![Item::Star]),
        1 => Just(vec![Item::StarStep(1)]),
        6 => prop::collection::vec(near_transitions, 1..=3),
    ]
    .prop_map(|items| Field { items, min: 0 })
}

fn line(with_seconds: bool) -> impl Strategy<Value = Line> {
    let second = if with_seconds {
        field(0, 59, 2).prop_map(Some).boxed()
    } else {
        Just(None).boxed()
    };
    (
        second,
        field(0, 59, 3),
        hour(),
        field(1, 31, 12),
        field(1, 12, 30),
        field(0, 7, 8),
    )
        .prop_map(
            |(second, minute, hour, day_of_month, month, day_of_week)| Line {
                second,
                minute,
                hour,
                day_of_month,
                month,
                day_of_week,
            },
        )
}

/// A zone and an instant in it: anywhere in 2024-2030, or near one of the zone's
/// transitions (mostly within 90 minutes, where the gaps and folds are, otherwise within
/// `near_s` before it and a third of that after), at a random millisecond or on a whole
/// second or minute.
fn zone_and_instant(near_s: i64) -> impl Strategy<Value = (usize, i64)> {
    (
        0..ZONES.len(),
        prop::bool::weighted(0.7),
        YEARS_START_S * 1000..YEARS_END_S * 1000,
        any::<prop::sample::Index>(),
        prop_oneof![
            3 => -90 * 60_000..90 * 60_000i64,
            1 => -near_s * 1000..near_s * 1000 / 3,
        ],
        0u8..3,
    )
        .prop_map(|(zone, near, uniform_ms, pick, delta_ms, align)| {
            let transitions = &TRANSITIONS[zone];
            let ms = if near && !transitions.is_empty() {
                transitions[pick.index(transitions.len())] * 1000 + delta_ms
            } else {
                uniform_ms
            };
            let ms = match align {
                0 => ms,
                1 => ms.div_euclid(1000) * 1000,
                _ => ms.div_euclid(60_000) * 60_000,
            };
            (zone, ms)
        })
}

fn check(line: &Line, zone_index: usize, after_ms: i64, window_s: i64, step_s: i64) {
    let expr = line.render();
    let zone: Tz = ZONES[zone_index].parse().unwrap();
    let schedule = Schedule::parse(&expr).unwrap();
    let after = Timestamp::from_millis(after_ms);
    let got = schedule.next_after(after, zone, Timestamp::EPOCH);
    match reference_next(line, zone, after_ms, window_s, step_s) {
        Some(expected_s) => assert_eq!(
            got,
            Some(Timestamp::from_secs(expected_s)),
            "`{expr}` in {} after {after}",
            ZONES[zone_index]
        ),
        None => {
            let window_end = Timestamp::from_millis(after_ms + window_s * 1000);
            assert!(
                got.is_none_or(|t| t > window_end),
                "`{expr}` in {} after {after}: got {got:?}, but nothing fires before {window_end}",
                ZONES[zone_index]
            );
        }
    }
}

fn config() -> Config {
    Config {
        // Each case takes well under a millisecond, and the daylight-saving corners are
        // a small share of the inputs, so many cases are cheap and worth it.
        cases: 2048,
        // Failures print their (shrunk) input; nothing is written next to the sources.
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn minute_lines_agree_with_the_reference_over_three_days(
        line in line(false),
        (zone, after_ms) in zone_and_instant(2 * DAY_S),
    ) {
        check(&line, zone, after_ms, 3 * DAY_S, 60);
    }

    #[test]
    fn second_lines_agree_with_the_reference_over_two_hours(
        line in line(true),
        (zone, after_ms) in zone_and_instant(3 * HOUR_S),
    ) {
        check(&line, zone, after_ms, 2 * HOUR_S, 1);
    }
}

/// The reference itself, on the cases written out by hand in the other tests.
#[test]
fn the_reference_agrees_with_hand_written_cases() {
    let star = |min| Field {
        items: vec![Item::Star],
        min,
    };
    let value = |v, min| Field {
        items: vec![Item::Value(v)],
        min,
    };
    let half_past_two = Line {
        second: None,
        minute: value(30, 0),
        hour: value(2, 0),
        day_of_month: star(1),
        month: star(1),
        day_of_week: star(0),
    };
    let ny: Tz = "America/New_York".parse().unwrap();
    let at = |s: &str| Timestamp::parse_rfc3339(s).unwrap();
    let next = |line: &Line, after: &str| {
        reference_next(line, ny, at(after).as_millis(), 3 * DAY_S, 60)
            .map(|s| Timestamp::from_secs(s).to_string())
    };
    assert_eq!(
        next(&half_past_two, "2026-03-07T08:00:00Z").as_deref(),
        Some("2026-03-08T07:00:00Z")
    );
    let half_past_one = Line {
        hour: value(1, 0),
        ..half_past_two.clone()
    };
    assert_eq!(
        next(&half_past_one, "2026-11-01T05:30:00Z").as_deref(),
        Some("2026-11-02T06:30:00Z")
    );
    let every_half_hour = Line {
        minute: Field {
            items: vec![Item::StarStep(30)],
            min: 0,
        },
        hour: star(0),
        ..half_past_two
    };
    assert_eq!(
        next(&every_half_hour, "2026-11-01T05:30:00Z").as_deref(),
        Some("2026-11-01T06:00:00Z")
    );
    assert_eq!(
        next(&every_half_hour, "2026-03-08T06:30:00Z").as_deref(),
        Some("2026-03-08T07:00:00Z")
    );
}
