//! What can be wrong with a schedule expression or a zone name, said so that the user
//! knows which part to fix.

use core::fmt;

/// The longest schedule expression accepted, in bytes (after trimming).
pub const EXPRESSION_LEN_MAX: usize = 256;

/// The longest piece of user text repeated inside an error message, in characters, so
/// that a huge input does not make a huge error.
const QUOTED_LEN_MAX: usize = 64;

/// One field of a crontab expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CronField {
    /// Seconds (0-59), first of six or seven fields.
    Second,
    /// Minutes (0-59).
    Minute,
    /// Hours (0-23).
    Hour,
    /// Day of the month (1-31).
    DayOfMonth,
    /// Month (1-12 or JAN-DEC).
    Month,
    /// Day of the week (0-7, where 0 and 7 are Sunday, or SUN-SAT).
    DayOfWeek,
    /// Year (1970-2100), last of seven fields.
    Year,
}

impl CronField {
    /// The field's short name, as [`ScheduleError::field`] reports it.
    pub const fn name(self) -> &'static str {
        match self {
            CronField::Second => "second",
            CronField::Minute => "minute",
            CronField::Hour => "hour",
            CronField::DayOfMonth => "day-of-month",
            CronField::Month => "month",
            CronField::DayOfWeek => "day-of-week",
            CronField::Year => "year",
        }
    }

    /// The smallest value the field accepts.
    pub const fn min(self) -> u32 {
        match self {
            CronField::Second | CronField::Minute | CronField::Hour | CronField::DayOfWeek => 0,
            CronField::DayOfMonth | CronField::Month => 1,
            CronField::Year => 1970,
        }
    }

    /// The largest value the field accepts. Years stop at 2100 because the `cron` crate
    /// that searches fire times knows no later year.
    pub const fn max(self) -> u32 {
        match self {
            CronField::Second | CronField::Minute => 59,
            CronField::Hour => 23,
            CronField::DayOfMonth => 31,
            CronField::Month => 12,
            CronField::DayOfWeek => 7,
            CronField::Year => 2100,
        }
    }
}

impl fmt::Display for CronField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What is wrong with one item of a crontab field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldProblem {
    /// An empty item, as in `1,,2` or `1,`.
    Empty,
    /// Something that is neither a number, a name, `*`, a range nor a step.
    NotAValue,
    /// A name the field does not know (only months and days of the week have names).
    UnknownName,
    /// A number outside the field's range.
    OutOfRange,
    /// A range whose start is after its end, such as `5-1`.
    ReversedRange,
    /// A step of zero, or longer than the field's whole range.
    BadStep,
    /// A step after a single value, such as `5/10`, which crontab does not accept.
    StepWithoutRange,
    /// Quartz-style `?`, `L`, `W` or `#`, which rota does not support.
    Unsupported,
}

impl FieldProblem {
    /// Says what is wrong in the terms of the field it was found in.
    fn explain(self, field: CronField) -> String {
        let (min, max) = (field.min(), field.max());
        match self {
            FieldProblem::Empty => "empty value; look for a doubled or trailing comma".to_owned(),
            FieldProblem::NotAValue => match field {
                CronField::Month => "expected a number, a name like JAN, a range like 1-6, `*`, \
                                     or a step like `*/3`"
                    .to_owned(),
                CronField::DayOfWeek => "expected a number, a name like MON, a range like 1-5, \
                                         `*`, or a step like `*/2`"
                    .to_owned(),
                _ => "expected a number, a range like 1-5, `*`, or a step like `*/15`".to_owned(),
            },
            FieldProblem::UnknownName => match field {
                CronField::Month => "unknown name; months are JAN-DEC (three letters)".to_owned(),
                CronField::DayOfWeek => "unknown name; days are SUN-SAT (three letters)".to_owned(),
                _ => format!("names are not allowed here; use numbers {min}-{max}"),
            },
            FieldProblem::OutOfRange => match field {
                CronField::Month => format!("values are {min}-{max}, or JAN-DEC"),
                CronField::DayOfWeek => {
                    format!("values are {min}-{max} (0 and 7 are Sunday), or SUN-SAT")
                }
                _ => format!("values are {min}-{max}"),
            },
            FieldProblem::ReversedRange => match field {
                CronField::DayOfWeek => "range runs backwards; write the smaller value first \
                                         (a range ending on Sunday ends in 7, like 5-7)"
                    .to_owned(),
                _ => "range runs backwards; write the smaller value first".to_owned(),
            },
            FieldProblem::BadStep => {
                format!("steps are 1-{}", max.saturating_sub(min).saturating_add(1))
            }
            FieldProblem::StepWithoutRange => {
                "a step needs `*` or a range before the `/`, like `*/15` or `5-59/10`".to_owned()
            }
            FieldProblem::Unsupported => {
                "`?`, `L`, `W` and `#` are not supported; list the values instead".to_owned()
            }
        }
    }
}

/// What is wrong with the duration of an `@every` schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationProblem {
    /// Something other than digits followed by a unit.
    #[error("expected whole numbers each followed by a unit (d, h, m or s), like 1h30m")]
    Malformed,
    /// A number with no unit after it.
    #[error("a number needs a unit after it: d, h, m or s")]
    MissingUnit,
    /// A unit other than d, h, m or s.
    #[error("unknown unit; the units are d, h, m and s")]
    UnknownUnit,
    /// The same unit twice, as in `1h2h`.
    #[error("a unit appears twice")]
    DuplicateUnit,
    /// A leading minus sign.
    #[error("a period cannot be negative")]
    Negative,
    /// A total of zero.
    #[error("a period cannot be zero; the shortest is 1s")]
    Zero,
    /// A total above 365 days, or too large to count.
    #[error("the longest period is 365d")]
    TooLong,
}

/// Why a schedule expression or a zone name was refused.
///
/// Every variant names the part to fix; [`ScheduleError::field`] gives that part's short
/// name for programs that want to point at it.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ScheduleError {
    /// Nothing but whitespace.
    #[error(
        "expression is empty; write a crontab line such as `0 9 * * 1-5`, or a macro such as `@daily`"
    )]
    Empty,
    /// Longer than [`EXPRESSION_LEN_MAX`].
    #[error("expression is {len_bytes} bytes long; the limit is {EXPRESSION_LEN_MAX}")]
    TooLong {
        /// The length of the trimmed expression.
        len_bytes: usize,
    },
    /// A crontab line with the wrong number of fields.
    #[error(
        "expression has {found} fields; crontab expressions have 5 (minute hour day-of-month \
         month day-of-week), 6 (seconds first) or 7 (seconds first, year last)"
    )]
    FieldCount {
        /// How many whitespace-separated fields there were.
        found: usize,
    },
    /// A word starting with `@` that is not a known macro.
    #[error(
        "expression `{text}`: unknown macro; the macros are @yearly, @annually, @monthly, \
         @weekly, @daily, @midnight, @hourly, @every <duration>, @at <instant> and @manually"
    )]
    UnknownMacro {
        /// The unknown word.
        text: String,
    },
    /// A macro that takes no argument, followed by something.
    #[error("expression `{macro_name}`: takes no argument, but `{text}` follows it")]
    UnexpectedArgument {
        /// The macro as written.
        macro_name: String,
        /// What followed it.
        text: String,
    },
    /// A crontab field with a bad item.
    #[error("{field} field `{text}`: {}", problem.explain(*field))]
    Field {
        /// The field the item is in.
        field: CronField,
        /// The offending item (one element of a comma-separated list).
        text: String,
        /// What is wrong with it.
        problem: FieldProblem,
    },
    /// `@every` without a duration.
    #[error("duration missing: `@every` needs a period such as 90s, 15m or 1h30m")]
    MissingDuration,
    /// `@every` with a bad duration.
    #[error("duration `{text}`: {problem}")]
    Duration {
        /// The duration as written.
        text: String,
        /// What is wrong with it.
        problem: DurationProblem,
    },
    /// `@at` without an instant.
    #[error("instant missing: `@at` needs an RFC 3339 instant such as 2026-03-08T09:00:00Z")]
    MissingInstant,
    /// `@at` with something that is not an RFC 3339 instant in years 1-9999.
    #[error(
        "instant `{text}`: expected an RFC 3339 instant with a UTC offset, such as \
         2026-03-08T09:00:00Z or 2026-03-08T09:00:00+01:00, in years 1-9999"
    )]
    Instant {
        /// The instant as written.
        text: String,
    },
    /// A zone name that is not in the IANA time zone database.
    #[error("timezone `{name}`: not an IANA time zone name such as `Europe/Berlin` or `UTC`")]
    Zone {
        /// The name as written.
        name: String,
    },
    /// A crontab line that parsed but that the `cron` crate refused. This is a bug in
    /// rota's translation, reported rather than hidden.
    #[error("expression could not be translated for the cron engine ({detail}); this is a bug")]
    Translation {
        /// The crate's complaint.
        detail: String,
    },
}

impl ScheduleError {
    /// The short name of the part of the input that is wrong: `"minute"`, `"hour"`,
    /// `"day-of-month"`, `"month"`, `"day-of-week"`, `"second"`, `"year"`, `"expression"`,
    /// `"duration"`, `"instant"` or `"timezone"`.
    pub fn field(&self) -> &'static str {
        match self {
            ScheduleError::Empty
            | ScheduleError::TooLong { .. }
            | ScheduleError::FieldCount { .. }
            | ScheduleError::UnknownMacro { .. }
            | ScheduleError::UnexpectedArgument { .. }
            | ScheduleError::Translation { .. } => "expression",
            ScheduleError::Field { field, .. } => field.name(),
            ScheduleError::MissingDuration | ScheduleError::Duration { .. } => "duration",
            ScheduleError::MissingInstant | ScheduleError::Instant { .. } => "instant",
            ScheduleError::Zone { .. } => "timezone",
        }
    }
}

/// `text` cut to a length fit to repeat in a message.
pub(super) fn quoted(text: &str) -> String {
    match text.char_indices().nth(QUOTED_LEN_MAX) {
        Some((end, _)) => format!("{}…", text.get(..end).unwrap_or_default()),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_errors_name_the_field_and_the_item() {
        let err = ScheduleError::Field {
            field: CronField::DayOfWeek,
            text: "8".to_owned(),
            problem: FieldProblem::OutOfRange,
        };
        assert_eq!(
            err.to_string(),
            "day-of-week field `8`: values are 0-7 (0 and 7 are Sunday), or SUN-SAT"
        );
        assert_eq!(err.field(), "day-of-week");
        let step = ScheduleError::Field {
            field: CronField::Minute,
            text: "*/0".to_owned(),
            problem: FieldProblem::BadStep,
        };
        assert_eq!(step.to_string(), "minute field `*/0`: steps are 1-60");
    }

    #[test]
    fn long_text_is_cut_before_it_is_quoted() {
        let long = "x".repeat(1000);
        let cut = quoted(&long);
        assert_eq!(cut.chars().count(), QUOTED_LEN_MAX + 1);
        assert_eq!(quoted("Europe/Berlin"), "Europe/Berlin");
        // Cutting must respect character boundaries, whatever the input.
        let wide = "é".repeat(100);
        assert!(quoted(&wide).starts_with("éé"));
    }
}
