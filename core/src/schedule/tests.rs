//! The public behaviour of [`Schedule`], checked against fire times written out by hand.

use super::*;

fn at(rfc3339: &str) -> Timestamp {
    Timestamp::parse_rfc3339(rfc3339).unwrap()
}

fn zone(name: &str) -> Tz {
    parse_zone(name).unwrap()
}

/// The first `n` fires strictly after `after`, as RFC 3339 in UTC.
fn fires(expr: &str, zone: Tz, after: &str, n: usize) -> Vec<String> {
    let schedule = Schedule::parse(expr).unwrap();
    let mut t = at(after);
    let mut out = Vec::new();
    for _ in 0..n {
        match schedule.next_after(t, zone, Timestamp::EPOCH) {
            Some(next) => {
                assert!(next > t, "{expr}: {next} is not after {t}");
                out.push(next.to_string());
                t = next;
            }
            None => break,
        }
    }
    out
}

fn next(expr: &str, zone: Tz, after: &str) -> Option<String> {
    Schedule::parse(expr)
        .unwrap()
        .next_after(at(after), zone, Timestamp::EPOCH)
        .map(|t| t.to_string())
}

fn err(expr: &str) -> ScheduleError {
    Schedule::parse(expr).unwrap_err()
}

// 2026-03-01 is a Sunday.

#[test]
fn weekdays_at_nine_skip_the_weekend() {
    assert_eq!(
        fires("0 9 * * 1-5", Tz::UTC, "2026-03-05T09:00:00Z", 6),
        [
            "2026-03-06T09:00:00Z",
            "2026-03-09T09:00:00Z",
            "2026-03-10T09:00:00Z",
            "2026-03-11T09:00:00Z",
            "2026-03-12T09:00:00Z",
            "2026-03-13T09:00:00Z",
        ]
    );
    assert_eq!(
        fires("0 9 * * MON-fri", Tz::UTC, "2026-03-05T09:00:00Z", 6),
        fires("0 9 * * 1-5", Tz::UTC, "2026-03-05T09:00:00Z", 6)
    );
}

#[test]
fn both_day_fields_restricted_means_either_day() {
    // The 1st and the 15th are Sundays in March 2026; its Fridays are the 6th, 13th,
    // 20th and 27th; April 1st is a Wednesday and April 3rd a Friday.
    assert_eq!(
        fires("0 0 1,15 * 5", Tz::UTC, "2026-02-28T00:00:00Z", 8),
        [
            "2026-03-01T00:00:00Z",
            "2026-03-06T00:00:00Z",
            "2026-03-13T00:00:00Z",
            "2026-03-15T00:00:00Z",
            "2026-03-20T00:00:00Z",
            "2026-03-27T00:00:00Z",
            "2026-04-01T00:00:00Z",
            "2026-04-03T00:00:00Z",
        ]
    );
    // A full range that does not start with `*` still counts as restricted.
    assert_eq!(
        fires("0 0 1-31 * 5", Tz::UTC, "2026-03-01T00:00:00Z", 3),
        [
            "2026-03-02T00:00:00Z",
            "2026-03-03T00:00:00Z",
            "2026-03-04T00:00:00Z",
        ]
    );
}

#[test]
fn a_day_field_starting_with_star_means_both_days() {
    assert_eq!(
        fires("0 0 1,15 * *", Tz::UTC, "2026-02-28T00:00:00Z", 3),
        [
            "2026-03-01T00:00:00Z",
            "2026-03-15T00:00:00Z",
            "2026-04-01T00:00:00Z",
        ]
    );
    assert_eq!(
        fires("0 0 * * 5", Tz::UTC, "2026-02-28T00:00:00Z", 2),
        ["2026-03-06T00:00:00Z", "2026-03-13T00:00:00Z"]
    );
    // Odd days that are Fridays: the 13th and the 27th, not the 6th or the 20th.
    assert_eq!(
        fires("0 0 */2 * 5", Tz::UTC, "2026-02-28T00:00:00Z", 2),
        ["2026-03-13T00:00:00Z", "2026-03-27T00:00:00Z"]
    );
    // With `*/2` in day-of-week, the days must be among the 1st-7th and also a Sunday,
    // Tuesday, Thursday or Saturday.
    assert_eq!(
        fires("0 0 1-7 * */2", Tz::UTC, "2026-02-28T00:00:00Z", 4),
        [
            "2026-03-01T00:00:00Z",
            "2026-03-03T00:00:00Z",
            "2026-03-05T00:00:00Z",
            "2026-03-07T00:00:00Z",
        ]
    );
}

#[test]
fn sunday_is_zero_and_seven_and_ranges_can_end_on_it() {
    let sundays = [
        "2026-03-01T00:00:00Z",
        "2026-03-08T00:00:00Z",
        "2026-03-15T00:00:00Z",
    ];
    for expr in [
        "0 0 * * 0",
        "0 0 * * 7",
        "0 0 * * sun",
        "0 0 * * SUN",
        "@weekly",
    ] {
        assert_eq!(
            fires(expr, Tz::UTC, "2026-02-28T12:00:00Z", 3),
            sundays,
            "{expr}"
        );
    }
    assert_eq!(
        fires("0 12 * * 5-7", Tz::UTC, "2026-03-02T00:00:00Z", 4),
        [
            "2026-03-06T12:00:00Z",
            "2026-03-07T12:00:00Z",
            "2026-03-08T12:00:00Z",
            "2026-03-13T12:00:00Z",
        ]
    );
    assert_eq!(
        fires("0 12 * * mon,Wed", Tz::UTC, "2026-03-01T00:00:00Z", 3),
        [
            "2026-03-02T12:00:00Z",
            "2026-03-04T12:00:00Z",
            "2026-03-09T12:00:00Z",
        ]
    );
}

#[test]
fn months_take_numbers_and_names() {
    assert_eq!(
        fires("0 0 1 jan,JUL *", Tz::UTC, "2026-03-01T00:00:00Z", 2),
        ["2026-07-01T00:00:00Z", "2027-01-01T00:00:00Z"]
    );
    assert_eq!(
        fires("0 0 1 1,7 *", Tz::UTC, "2026-03-01T00:00:00Z", 2),
        ["2026-07-01T00:00:00Z", "2027-01-01T00:00:00Z"]
    );
}

#[test]
fn six_fields_put_seconds_first() {
    assert_eq!(
        fires("*/20 * * * * *", Tz::UTC, "2026-03-01T12:00:05Z", 3),
        [
            "2026-03-01T12:00:20Z",
            "2026-03-01T12:00:40Z",
            "2026-03-01T12:01:00Z",
        ]
    );
    assert_eq!(
        fires("30 0 9 * * 1-5", Tz::UTC, "2026-03-01T00:00:00Z", 2),
        ["2026-03-02T09:00:30Z", "2026-03-03T09:00:30Z"]
    );
    // A fraction of a second after a fire is still after it.
    assert_eq!(
        next("* * * * * *", Tz::UTC, "2026-03-01T12:00:05.999Z"),
        Some("2026-03-01T12:00:06Z".to_owned())
    );
}

#[test]
fn seven_fields_add_a_year() {
    assert_eq!(
        fires("0 0 12 1 1 * 2027", Tz::UTC, "2026-03-01T00:00:00Z", 3),
        ["2027-01-01T12:00:00Z"]
    );
    assert_eq!(
        next("0 0 12 1 1 * 2020", Tz::UTC, "2026-03-01T00:00:00Z"),
        None
    );
    assert_eq!(
        next("0 0 0 * * * 2020-2025", Tz::UTC, "2026-03-01T00:00:00Z"),
        None
    );
    assert_eq!(
        next("0 0 0 * * * *", Tz::UTC, "2026-03-01T00:00:00Z"),
        Some("2026-03-02T00:00:00Z".to_owned())
    );
}

#[test]
fn macros_stand_for_crontab_lines() {
    let after = "2026-03-04T10:20:00Z";
    let cases = [
        ("@yearly", "2027-01-01T00:00:00Z"),
        ("@annually", "2027-01-01T00:00:00Z"),
        ("@monthly", "2026-04-01T00:00:00Z"),
        ("@weekly", "2026-03-08T00:00:00Z"),
        ("@daily", "2026-03-05T00:00:00Z"),
        ("@midnight", "2026-03-05T00:00:00Z"),
        ("@hourly", "2026-03-04T11:00:00Z"),
        ("@HOURLY", "2026-03-04T11:00:00Z"),
    ];
    for (expr, expected) in cases {
        assert_eq!(
            next(expr, Tz::UTC, after).as_deref(),
            Some(expected),
            "{expr}"
        );
    }
}

#[test]
fn expressions_that_never_match_give_none() {
    for expr in [
        "0 0 30 2 *",
        "0 0 31 4,6,9,11 *",
        "0 0 0 30 2 * *",
        "0 0 0 1 1 * 2100",
    ] {
        assert_eq!(next(expr, Tz::UTC, "2100-06-01T00:00:00Z"), None, "{expr}");
        assert_eq!(
            next(expr, zone("Europe/Berlin"), "2100-06-01T00:00:00Z"),
            None,
            "{expr}"
        );
    }
    assert_eq!(next("0 0 30 2 *", Tz::UTC, "1970-01-01T00:00:00Z"), None);
    // An impossible day of the month still leaves the day of the week: the Mondays of
    // February.
    assert_eq!(
        next("0 0 30 2 1", Tz::UTC, "2026-03-01T00:00:00Z"),
        Some("2027-02-01T00:00:00Z".to_owned())
    );
    assert_eq!(
        next("0 0 29 2 *", Tz::UTC, "2026-03-01T00:00:00Z"),
        Some("2028-02-29T00:00:00Z".to_owned())
    );
}

#[test]
fn every_counts_whole_periods_from_the_anchor_in_absolute_time() {
    let schedule = Schedule::parse("@every 1h30m").unwrap();
    assert_eq!(schedule.every(), Some(Duration::from_secs(5_400)));
    let anchor = at("2026-03-08T05:10:00Z");
    let period = Duration::from_secs(5_400);
    for zone in [Tz::UTC, zone("America/New_York")] {
        let next = |after| schedule.next_after(after, zone, anchor);
        assert_eq!(next(at("2020-01-01T00:00:00Z")), Some(anchor + period));
        assert_eq!(next(anchor), Some(anchor + period));
        assert_eq!(next(anchor + period), Some(anchor + period * 2));
        assert_eq!(next(anchor + period * 2), Some(anchor + period * 3));
        // Across the spring-forward gap, the period stays 90 real minutes.
        assert_eq!(
            next(at("2026-03-08T07:00:00Z"))
                .map(|t| t.to_string())
                .as_deref(),
            Some("2026-03-08T08:10:00Z")
        );
    }
    assert_eq!(
        Schedule::parse("@every 2d").unwrap().every(),
        Some(Duration::from_secs(172_800))
    );
    assert_eq!(Schedule::parse("@daily").unwrap().every(), None);
}

#[test]
fn at_fires_once() {
    let schedule = Schedule::parse("@at 2026-03-08T02:30:00-05:00").unwrap();
    assert!(schedule.is_one_shot());
    assert!(!schedule.is_manual());
    let instant = at("2026-03-08T07:30:00Z");
    assert_eq!(
        schedule.next_after(at("2026-03-01T00:00:00Z"), Tz::UTC, Timestamp::EPOCH),
        Some(instant)
    );
    assert_eq!(
        schedule.next_after(
            instant - Duration::from_millis(1),
            Tz::UTC,
            Timestamp::EPOCH
        ),
        Some(instant)
    );
    assert_eq!(
        schedule.next_after(instant, Tz::UTC, Timestamp::EPOCH),
        None
    );
    assert_eq!(
        schedule.next_after(at("2027-01-01T00:00:00Z"), Tz::UTC, Timestamp::EPOCH),
        None
    );
}

#[test]
fn manually_never_fires_by_schedule() {
    let schedule = Schedule::parse("@manually").unwrap();
    assert!(schedule.is_manual());
    assert!(!schedule.is_one_shot());
    assert_eq!(schedule.every(), None);
    for t in [Timestamp::MIN, Timestamp::EPOCH, Timestamp::MAX] {
        assert_eq!(schedule.next_after(t, Tz::UTC, Timestamp::EPOCH), None);
    }
}

#[test]
fn whitespace_is_trimmed_and_fields_split_on_runs_of_blanks() {
    let schedule = Schedule::parse(" \t0\t 9  * *   1-5 \n").unwrap();
    assert_eq!(schedule.source(), "0\t 9  * *   1-5");
    assert_eq!(
        schedule.next_after(at("2026-03-01T00:00:00Z"), Tz::UTC, Timestamp::EPOCH),
        Some(at("2026-03-02T09:00:00Z"))
    );
    assert_eq!(
        Schedule::parse("  @every\t 15m ").unwrap().every(),
        Some(Duration::from_secs(900))
    );
}

#[test]
fn each_error_names_what_to_fix() {
    let cases: [(&str, &str); 30] = [
        ("", "expression"),
        ("   ", "expression"),
        ("* * * *", "expression"),
        ("* * * * * * * *", "expression"),
        ("@fortnightly", "expression"),
        ("@daily at noon", "expression"),
        ("@manually now", "expression"),
        ("61 * * * *", "minute"),
        ("*/0 * * * *", "minute"),
        ("5/10 * * * *", "minute"),
        ("0 24 * * *", "hour"),
        ("0 5-1 * * *", "hour"),
        ("0 0 32 * *", "day-of-month"),
        ("0 0 L * *", "day-of-month"),
        ("0 0 ? * 1", "day-of-month"),
        ("0 0 1,,2 * *", "day-of-month"),
        ("0 0 * 13 *", "month"),
        ("0 0 * foo *", "month"),
        ("0 0 * * 8", "day-of-week"),
        ("0 0 * * 5#3", "day-of-week"),
        ("60 0 0 * * *", "second"),
        ("0 0 0 * * * 1969", "year"),
        ("@every", "duration"),
        ("@every 0s", "duration"),
        ("@every 10", "duration"),
        ("@every 1y", "duration"),
        ("@every 400d", "duration"),
        ("@at", "instant"),
        ("@at tomorrow", "instant"),
        ("@at 2026-02-30T00:00:00Z", "instant"),
    ];
    for (expr, field) in cases {
        let e = err(expr);
        assert_eq!(e.field(), field, "{expr}: {e}");
        assert!(e.to_string().contains(field), "{expr}: {e}");
    }
    let long = format!("0 0 * * {}", "1,".repeat(200));
    assert_eq!(err(&long).field(), "expression");
    assert!(matches!(err(&long), ScheduleError::TooLong { .. }));
    let zone_err = parse_zone("Mars/Olympus_Mons").unwrap_err();
    assert_eq!(zone_err.field(), "timezone");
    assert!(zone_err.to_string().contains("Mars/Olympus_Mons"));
    assert_eq!(
        err("0 0 * * 8").to_string(),
        "day-of-week field `8`: values are 0-7 (0 and 7 are Sunday), or SUN-SAT"
    );
    assert_eq!(
        err("0 9 * * 1,2-9").to_string(),
        "day-of-week field `2-9`: values are 0-7 (0 and 7 are Sunday), or SUN-SAT"
    );
    assert_eq!(
        err("@every 1h2h").to_string(),
        "duration `1h2h`: a unit appears twice"
    );
}

#[test]
fn zones_are_iana_names() {
    assert_eq!(parse_zone("Europe/Berlin"), Ok(Tz::Europe__Berlin));
    assert_eq!(parse_zone(" UTC "), Ok(Tz::UTC));
    assert!(parse_zone("").is_err());
    assert!(parse_zone("CEST").is_err());
    let huge = "x".repeat(10_000);
    assert!(parse_zone(&huge).unwrap_err().to_string().len() < 200);
}

#[test]
fn extreme_instants_do_not_panic() {
    let zones = [
        Tz::UTC,
        zone("Pacific/Kiritimati"),
        zone("Etc/GMT+12"),
        zone("America/New_York"),
    ];
    let instants = [
        Timestamp::from_millis(i64::MIN),
        Timestamp::MIN,
        Timestamp::EPOCH,
        at("2100-12-31T23:59:59Z"),
        Timestamp::MAX,
        Timestamp::from_millis(i64::MAX),
    ];
    let exprs = [
        "* * * * * *",
        "0 9 * * 1-5",
        "0 0 1,15 * 5",
        "@every 1s",
        "@every 365d",
        "@at 9999-12-31T23:59:59Z",
        "@at 0001-01-01T00:00:00Z",
        "@manually",
    ];
    for expr in exprs {
        let schedule = Schedule::parse(expr).unwrap();
        for zone in zones {
            for after in instants {
                for anchor in instants {
                    if let Some(next) = schedule.next_after(after, zone, anchor) {
                        assert!(next > after && next <= Timestamp::MAX, "{expr} {after}");
                    }
                }
            }
        }
    }
    // The earliest cron fire is in 1970 local time, however early the question.
    assert_eq!(
        Schedule::parse("0 0 1 1 *").unwrap().next_after(
            Timestamp::from_millis(i64::MIN),
            Tz::UTC,
            Timestamp::EPOCH
        ),
        Some(Timestamp::EPOCH)
    );
}

#[test]
fn serde_round_trips_the_expression() {
    let schedule = Schedule::parse(" 0 9 * * 1-5 ").unwrap();
    let json = serde_json::to_string(&schedule).unwrap();
    assert_eq!(json, r#""0 9 * * 1-5""#);
    assert_eq!(serde_json::from_str::<Schedule>(&json).unwrap(), schedule);
    let bytes = postcard::to_stdvec(&schedule).unwrap();
    assert_eq!(postcard::from_bytes::<Schedule>(&bytes).unwrap(), schedule);
    for expr in [
        "@every 90s",
        "@at 2026-03-08T09:00:00Z",
        "@manually",
        "0 0 0 1 1 * 2030",
    ] {
        let schedule = Schedule::parse(expr).unwrap();
        let bytes = postcard::to_stdvec(&schedule).unwrap();
        assert_eq!(postcard::from_bytes::<Schedule>(&bytes).unwrap(), schedule);
    }

    let bad = serde_json::from_str::<Schedule>(r#""61 * * * *""#).unwrap_err();
    assert!(bad.to_string().contains("minute field `61`"), "{bad}");
    assert!(serde_json::from_str::<Schedule>("42").is_err());
    let bad_bytes = postcard::to_stdvec("@every 0s").unwrap();
    assert!(postcard::from_bytes::<Schedule>(&bad_bytes).is_err());
}

#[test]
fn clones_share_and_print_their_source() {
    let schedule = Schedule::parse("@daily").unwrap();
    let clone = schedule.clone();
    assert!(Arc::ptr_eq(&schedule.shared, &clone.shared));
    assert_eq!(format!("{schedule:?}"), r#"Schedule("@daily")"#);
    assert_eq!(schedule.to_string(), "@daily");
    assert_ne!(schedule, Schedule::parse("@midnight").unwrap());
    // The simple kinds beside one pointer.
    assert_eq!(
        core::mem::size_of::<Schedule>(),
        3 * core::mem::size_of::<usize>()
    );
}

mod daylight_saving {
    use super::*;

    #[test]
    fn new_york_spring_forward() {
        let ny = zone("America/New_York");
        // Fixed: 02:30 does not exist on 2026-03-08; it fires as the clock reaches 03:00.
        assert_eq!(
            fires("30 2 * * *", ny, "2026-03-07T00:00:00Z", 3),
            [
                "2026-03-07T07:30:00Z",
                "2026-03-08T07:00:00Z",
                "2026-03-09T06:30:00Z",
            ]
        );
        // Two missing times make one fire, and so does a missing time with 03:00 itself.
        assert_eq!(
            fires("0,30 2 * * *", ny, "2026-03-08T05:00:00Z", 3),
            [
                "2026-03-08T07:00:00Z",
                "2026-03-09T06:00:00Z",
                "2026-03-09T06:30:00Z",
            ]
        );
        assert_eq!(
            fires("30 2,3 * * *", ny, "2026-03-08T05:00:00Z", 3),
            [
                "2026-03-08T07:00:00Z",
                "2026-03-08T07:30:00Z",
                "2026-03-09T06:30:00Z",
            ]
        );
        // Interval-like: nothing is made up for the missing hour.
        assert_eq!(
            fires("*/30 * * * *", ny, "2026-03-08T06:15:00Z", 3),
            [
                "2026-03-08T06:30:00Z",
                "2026-03-08T07:00:00Z",
                "2026-03-08T07:30:00Z",
            ]
        );
        assert_eq!(
            fires("@hourly", ny, "2026-03-08T05:30:00Z", 3),
            [
                "2026-03-08T06:00:00Z",
                "2026-03-08T07:00:00Z",
                "2026-03-08T08:00:00Z",
            ]
        );
    }

    #[test]
    fn new_york_fall_back() {
        let ny = zone("America/New_York");
        // Fixed: 01:30 happens twice on 2026-11-01; it fires at the first (EDT) only.
        assert_eq!(
            fires("30 1 * * *", ny, "2026-10-31T12:00:00Z", 2),
            ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]
        );
        assert_eq!(
            next("30 1 * * *", ny, "2026-11-01T06:15:00Z").as_deref(),
            Some("2026-11-02T06:30:00Z")
        );
        assert_eq!(
            fires("*/20 1 * * *", ny, "2026-11-01T04:50:00Z", 4),
            [
                "2026-11-01T05:00:00Z",
                "2026-11-01T05:20:00Z",
                "2026-11-01T05:40:00Z",
                "2026-11-02T06:00:00Z",
            ]
        );
        // Interval-like: both passes through the repeated hour fire.
        assert_eq!(
            fires("*/30 * * * *", ny, "2026-11-01T04:45:00Z", 5),
            [
                "2026-11-01T05:00:00Z",
                "2026-11-01T05:30:00Z",
                "2026-11-01T06:00:00Z",
                "2026-11-01T06:30:00Z",
                "2026-11-01T07:00:00Z",
            ]
        );
        // Asked from inside either pass.
        assert_eq!(
            next("*/30 * * * *", ny, "2026-11-01T05:40:00Z").as_deref(),
            Some("2026-11-01T06:00:00Z")
        );
        assert_eq!(
            next("*/30 * * * *", ny, "2026-11-01T06:10:00Z").as_deref(),
            Some("2026-11-01T06:30:00Z")
        );
        assert_eq!(
            fires("@hourly", ny, "2026-11-01T04:30:00Z", 3),
            [
                "2026-11-01T05:00:00Z",
                "2026-11-01T06:00:00Z",
                "2026-11-01T07:00:00Z",
            ]
        );
    }

    #[test]
    fn only_an_hour_field_covering_every_hour_from_a_star_is_interval_like() {
        let ny = zone("America/New_York");
        // Interval-like: 01:00 fires in both passes through the fold.
        for expr in ["0 * * * *", "0 */1 * * *", "0 *,5 * * *", "0 0 * * * *"] {
            assert_eq!(
                fires(expr, ny, "2026-11-01T04:30:00Z", 2),
                ["2026-11-01T05:00:00Z", "2026-11-01T06:00:00Z"],
                "{expr}"
            );
        }
        // Fixed: 01:00 fires once, and 02:00 (01:00 EST, 07:00Z) follows.
        for expr in ["0 0-23 * * *", "0 */2,1 * * *", "0 1,2 * * *"] {
            assert_eq!(
                fires(expr, ny, "2026-11-01T04:30:00Z", 2),
                ["2026-11-01T05:00:00Z", "2026-11-01T07:00:00Z"],
                "{expr}"
            );
        }
        // Fixed with a step: 02:00 on 2026-03-08 does not exist and fires at 03:00 EDT.
        assert_eq!(
            fires("0 */2 * * *", ny, "2026-03-08T05:30:00Z", 2),
            ["2026-03-08T07:00:00Z", "2026-03-08T08:00:00Z"]
        );
    }

    #[test]
    fn berlin_both_ways() {
        let berlin = zone("Europe/Berlin");
        assert_eq!(
            fires("30 2 * * *", berlin, "2026-03-27T12:00:00Z", 3),
            [
                "2026-03-28T01:30:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-30T00:30:00Z",
            ]
        );
        assert_eq!(
            fires("30 2 * * *", berlin, "2026-10-23T12:00:00Z", 3),
            [
                "2026-10-24T00:30:00Z",
                "2026-10-25T00:30:00Z",
                "2026-10-26T01:30:00Z",
            ]
        );
        assert_eq!(
            fires("*/30 * * * *", berlin, "2026-10-25T00:15:00Z", 4),
            [
                "2026-10-25T00:30:00Z",
                "2026-10-25T01:00:00Z",
                "2026-10-25T01:30:00Z",
                "2026-10-25T02:00:00Z",
            ]
        );
        assert_eq!(
            fires("*/30 * * * *", berlin, "2026-03-29T00:15:00Z", 3),
            [
                "2026-03-29T00:30:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-29T01:30:00Z",
            ]
        );
    }

    #[test]
    fn sydney_springs_forward_in_october_and_falls_back_in_april() {
        let sydney = zone("Australia/Sydney");
        // 02:30 on 2026-04-05 happens first at +11 (15:30Z) and again at +10 (16:30Z).
        assert_eq!(
            fires("30 2 * * *", sydney, "2026-04-04T00:00:00Z", 2),
            ["2026-04-04T15:30:00Z", "2026-04-05T16:30:00Z"]
        );
        // 02:30 on 2026-10-04 does not exist; the clock jumps from 02:00 to 03:00 at 16:00Z.
        assert_eq!(
            fires("30 2 * * *", sydney, "2026-10-02T00:00:00Z", 3),
            [
                "2026-10-02T16:30:00Z",
                "2026-10-03T16:00:00Z",
                "2026-10-04T15:30:00Z",
            ]
        );
        assert_eq!(
            fires("0 * * * *", sydney, "2026-04-04T14:30:00Z", 3),
            [
                "2026-04-04T15:00:00Z",
                "2026-04-04T16:00:00Z",
                "2026-04-04T17:00:00Z",
            ]
        );
    }

    #[test]
    fn lord_howe_shifts_by_half_an_hour() {
        let lord_howe = zone("Australia/Lord_Howe");
        // 02:00-02:29 is skipped on 2026-10-04 (at 15:30Z, from +10:30 to +11).
        assert_eq!(
            fires("15 2 * * *", lord_howe, "2026-10-02T00:00:00Z", 3),
            [
                "2026-10-02T15:45:00Z",
                "2026-10-03T15:30:00Z",
                "2026-10-04T15:15:00Z",
            ]
        );
        // 01:30-01:59 happens twice on 2026-04-05 (at 15:00Z, from +11 to +10:30).
        assert_eq!(
            fires("45 1 * * *", lord_howe, "2026-04-03T00:00:00Z", 3),
            [
                "2026-04-03T14:45:00Z",
                "2026-04-04T14:45:00Z",
                "2026-04-05T15:15:00Z",
            ]
        );
        assert_eq!(
            fires("*/15 * * * *", lord_howe, "2026-04-04T14:40:00Z", 4),
            [
                "2026-04-04T14:45:00Z",
                "2026-04-04T15:00:00Z",
                "2026-04-04T15:15:00Z",
                "2026-04-04T15:30:00Z",
            ]
        );
    }

    #[test]
    fn transitions_at_midnight() {
        // Havana: midnight on 2026-03-08 does not exist (00:00 becomes 01:00 at 05:00Z),
        // and 00:00-00:59 on 2026-11-01 happens twice (01:00 becomes 00:00 at 05:00Z).
        let havana = zone("America/Havana");
        assert_eq!(
            fires("@daily", havana, "2026-03-06T12:00:00Z", 3),
            [
                "2026-03-07T05:00:00Z",
                "2026-03-08T05:00:00Z",
                "2026-03-09T04:00:00Z",
            ]
        );
        assert_eq!(
            fires("@daily", havana, "2026-10-30T12:00:00Z", 3),
            [
                "2026-10-31T04:00:00Z",
                "2026-11-01T04:00:00Z",
                "2026-11-02T05:00:00Z",
            ]
        );
        // Santiago: 00:00-00:59 on 2026-09-06 does not exist, and 23:00-23:59 on
        // 2026-04-04 happens twice (midnight becomes 23:00 at 03:00Z on the 5th).
        let santiago = zone("America/Santiago");
        assert_eq!(
            fires("0 0 * * *", santiago, "2026-09-04T12:00:00Z", 3),
            [
                "2026-09-05T04:00:00Z",
                "2026-09-06T04:00:00Z",
                "2026-09-07T03:00:00Z",
            ]
        );
        assert_eq!(
            fires("30 23 * * *", santiago, "2026-04-04T12:00:00Z", 2),
            ["2026-04-05T02:30:00Z", "2026-04-06T03:30:00Z"]
        );
        assert_eq!(
            fires("0 * * * *", santiago, "2026-04-05T01:30:00Z", 3),
            [
                "2026-04-05T02:00:00Z",
                "2026-04-05T03:00:00Z",
                "2026-04-05T04:00:00Z",
            ]
        );
        // A weekday rule across the skipped midnight: Sunday 2026-09-06 still has its
        // 00:00, at the first instant of the day.
        assert_eq!(
            next("0 0 * * 0", santiago, "2026-09-01T00:00:00Z").as_deref(),
            Some("2026-09-06T04:00:00Z")
        );
    }
}
