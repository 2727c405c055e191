//! Quartz cron expressions, as Databricks job schedules write them
//! (`quartz_cron_expression` with `timezone_id`): six or seven fields, seconds first,
//! `?`, `L`, `W`, `#` and names, and the next time one fires in a time zone.
//!
//! Daylight-saving changes follow Quartz: a time the clock skips (02:30 on a spring-forward
//! night) fires when the clock resumes, shifted by the gap (03:30); a time the clock passes
//! twice (01:30 on a fall-back night) fires once, at its first occurrence.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, Duration, MappedLocalTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone,
    Utc,
};
use chrono_tz::Tz;

/// The last year Quartz schedules in.
const LAST_YEAR: i32 = 2099;

/// Why an expression or a time zone was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid Quartz cron expression '{expression}': {reason}")]
pub struct CronError {
    pub expression: String,
    pub reason: String,
}

/// A parsed Quartz expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    text: String,
    seconds: BTreeSet<u32>,
    minutes: BTreeSet<u32>,
    hours: BTreeSet<u32>,
    day_of_month: DayOfMonth,
    months: BTreeSet<u32>,
    day_of_week: DayOfWeek,
    /// None: every year.
    years: Option<BTreeSet<i32>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DayOfMonth {
    /// `?`: the day of the week decides.
    Unspecified,
    Days(BTreeSet<u32>),
    /// `L` or `L-n`: the last day of the month, or n days before it.
    Last {
        before: u32,
    },
    /// `LW`: the last weekday (Monday to Friday) of the month.
    LastWeekday,
    /// `nW`: the weekday nearest day n, never leaving the month.
    NearestWeekday(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DayOfWeek {
    /// `?`: the day of the month decides.
    Unspecified,
    /// Quartz numbers: 1 = Sunday ... 7 = Saturday.
    Days(BTreeSet<u32>),
    /// `nL`: the last such weekday of the month.
    Last(u32),
    /// `n#k`: the k-th such weekday of the month.
    Nth { day: u32, nth: u32 },
}

const MONTH_NAMES: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl FromStr for Cron {
    type Err = CronError;

    fn from_str(text: &str) -> Result<Self, CronError> {
        let refuse = |reason: String| CronError {
            expression: text.to_string(),
            reason,
        };
        let fields: Vec<&str> = text.split_whitespace().collect();
        if !(6..=7).contains(&fields.len()) {
            return Err(refuse(format!(
                "it has {} fields; Quartz takes 6 or 7 (seconds minutes hours day-of-month \
                 month day-of-week [year])",
                fields.len()
            )));
        }
        let field = |index: usize, name: &str, min: u32, max: u32, names: &[&str]| {
            numbers(fields[index], min, max, names)
                .map_err(|reason| refuse(format!("{name} '{}': {reason}", fields[index])))
        };
        let seconds = field(0, "seconds", 0, 59, &[])?;
        let minutes = field(1, "minutes", 0, 59, &[])?;
        let hours = field(2, "hours", 0, 23, &[])?;
        let months = field(4, "month", 1, 12, &MONTH_NAMES)?;
        let day_of_month = day_of_month(fields[3])
            .map_err(|reason| refuse(format!("day-of-month '{}': {reason}", fields[3])))?;
        let day_of_week = day_of_week(fields[5])
            .map_err(|reason| refuse(format!("day-of-week '{}': {reason}", fields[5])))?;
        match (&day_of_month, &day_of_week) {
            (DayOfMonth::Unspecified, DayOfWeek::Unspecified) => {
                return Err(refuse(
                    "day-of-month and day-of-week are both '?'; one of them must say which days"
                        .into(),
                ));
            }
            (DayOfMonth::Unspecified, _) | (_, DayOfWeek::Unspecified) => {}
            _ => {
                return Err(refuse(
                    "give either a day-of-month or a day-of-week and '?' in the other \
                     (Quartz does not combine them)"
                        .into(),
                ));
            }
        }
        let years = match fields.get(6) {
            None => None,
            Some(years) => Some(
                numbers(years, 1970, LAST_YEAR as u32, &[])
                    .map_err(|reason| refuse(format!("year '{years}': {reason}")))?
                    .into_iter()
                    .map(|year| year as i32)
                    .collect(),
            ),
        };
        Ok(Self {
            text: text.to_string(),
            seconds,
            minutes,
            hours,
            day_of_month,
            months,
            day_of_week,
            years,
        })
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A list of values, ranges (wrapping past the end, as `FRI-MON`) and steps (`*/5`, `10/15`,
/// `1-30/2`) within `min..=max`; `names` are the values from `min` on, by name.
fn numbers(field: &str, min: u32, max: u32, names: &[&str]) -> Result<BTreeSet<u32>, String> {
    let mut values = BTreeSet::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .ok()
                    .filter(|step| *step > 0)
                    .ok_or_else(|| format!("the step '{step}' is not a positive number"))?;
                (range, step)
            }
            None => (item, 1),
        };
        let (start, end) = match range {
            "*" => (min, max),
            _ => match range.split_once('-') {
                Some((start, end)) => {
                    (value(start, min, max, names)?, value(end, min, max, names)?)
                }
                // `10/15` runs from 10 to the end of the field.
                None if step > 1 || item.contains('/') => (value(range, min, max, names)?, max),
                None => {
                    let single = value(range, min, max, names)?;
                    (single, single)
                }
            },
        };
        let span = if end >= start {
            end - start
        } else {
            max - start + 1 + end - min
        };
        let width = max - min + 1;
        for offset in (0..=span).step_by(step as usize) {
            values.insert(min + (start - min + offset) % width);
        }
    }
    Ok(values)
}

fn value(text: &str, min: u32, max: u32, names: &[&str]) -> Result<u32, String> {
    let upper = text.to_ascii_uppercase();
    if let Some(index) = names.iter().position(|name| *name == upper) {
        return Ok(min + index as u32);
    }
    let number: u32 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a number{}", named(names)))?;
    if !(min..=max).contains(&number) {
        return Err(format!("{number} is outside {min}-{max}"));
    }
    Ok(number)
}

fn named(names: &[&str]) -> String {
    if names.is_empty() {
        String::new()
    } else {
        format!(" or one of {}", names.join(", "))
    }
}

fn day_of_month(field: &str) -> Result<DayOfMonth, String> {
    let upper = field.to_ascii_uppercase();
    Ok(match upper.as_str() {
        "?" => DayOfMonth::Unspecified,
        "L" => DayOfMonth::Last { before: 0 },
        "LW" => DayOfMonth::LastWeekday,
        _ if upper.starts_with("L-") => {
            let before = value(&upper[2..], 0, 30, &[])?;
            DayOfMonth::Last { before }
        }
        _ if upper.ends_with('W') => {
            DayOfMonth::NearestWeekday(value(&upper[..upper.len() - 1], 1, 31, &[])?)
        }
        _ if upper.contains(['L', 'W', '#']) => {
            return Err("'L' and 'W' stand alone ('L', 'L-3', 'LW', '15W')".into());
        }
        _ => DayOfMonth::Days(numbers(field, 1, 31, &[])?),
    })
}

fn day_of_week(field: &str) -> Result<DayOfWeek, String> {
    let upper = field.to_ascii_uppercase();
    if upper == "?" {
        return Ok(DayOfWeek::Unspecified);
    }
    if let Some((day, nth)) = upper.split_once('#') {
        let day = value(day, 1, 7, &DAY_NAMES)?;
        let nth = value(nth, 1, 5, &[])?;
        return Ok(DayOfWeek::Nth { day, nth });
    }
    if upper == "L" {
        // Alone, `L` in the day of the week is Saturday, the week's last day.
        return Ok(DayOfWeek::Days(BTreeSet::from([7])));
    }
    if let Some(day) = upper.strip_suffix('L') {
        return Ok(DayOfWeek::Last(value(day, 1, 7, &DAY_NAMES)?));
    }
    if upper.contains(['L', '#', 'W']) && !DAY_NAMES.iter().any(|name| upper.contains(name)) {
        return Err("'L' and '#' stand alone ('6L', '2#1')".into());
    }
    Ok(DayOfWeek::Days(numbers(field, 1, 7, &DAY_NAMES)?))
}

/// Quartz's day number: 1 = Sunday ... 7 = Saturday.
fn quartz_weekday(date: NaiveDate) -> u32 {
    date.weekday().num_days_from_sunday() + 1
}

fn last_day_of_month(year: i32, month: u32) -> u32 {
    let (next_year, next_month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    NaiveDate::from_ymd_opt(next_year, next_month, 1)
        .and_then(|first| first.pred_opt())
        .map_or(28, |last| last.day())
}

fn is_weekday(date: NaiveDate) -> bool {
    (2..=6).contains(&quartz_weekday(date))
}

impl Cron {
    fn runs_on(&self, date: NaiveDate) -> bool {
        if !self.months.contains(&date.month()) {
            return false;
        }
        if let Some(years) = &self.years
            && !years.contains(&date.year())
        {
            return false;
        }
        let last = last_day_of_month(date.year(), date.month());
        let day_matches = match &self.day_of_month {
            DayOfMonth::Unspecified => true,
            DayOfMonth::Days(days) => days.contains(&date.day()),
            DayOfMonth::Last { before } => last.checked_sub(*before) == Some(date.day()),
            DayOfMonth::LastWeekday => {
                let mut day = last;
                while let Some(candidate) = date.with_day(day)
                    && !is_weekday(candidate)
                {
                    day -= 1;
                }
                day == date.day()
            }
            DayOfMonth::NearestWeekday(target) => nearest_weekday(date, *target, last),
        };
        let week_matches = match &self.day_of_week {
            DayOfWeek::Unspecified => true,
            DayOfWeek::Days(days) => days.contains(&quartz_weekday(date)),
            DayOfWeek::Last(day) => quartz_weekday(date) == *day && date.day() + 7 > last,
            DayOfWeek::Nth { day, nth } => {
                quartz_weekday(date) == *day && (date.day() - 1) / 7 + 1 == *nth
            }
        };
        day_matches && week_matches
    }

    /// The first time strictly after `after` that the expression fires in `zone`; none if it
    /// never fires again (a date that does not exist, or only past years).
    pub fn next_after(&self, after: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
        let local_start = after.with_timezone(&zone).naive_local();
        // A skipped local time fires up to a gap's length later: start a day early so such a
        // fire just before `after` in local terms is still found.
        let mut date = local_start.date().pred_opt()?;
        let last_year = self
            .years
            .as_ref()
            .and_then(|years| years.last().copied())
            .unwrap_or(LAST_YEAR);
        // The earliest fire found so far, and its local time. A time moved past a gap can
        // fire after a real one named later (Lord Howe's half-hour gap: 02:10 fires at 02:40,
        // after 02:35), so the search goes on until no later time could fire sooner.
        let mut earliest: Option<(DateTime<Utc>, NaiveDateTime)> = None;
        let beyond = |local: NaiveDateTime, earliest: &Option<(_, NaiveDateTime)>| {
            earliest.is_some_and(|(_, fire_local)| local > fire_local + Duration::hours(GAP_HOURS))
        };
        'days: while date.year() <= last_year {
            if beyond(date.and_time(NaiveTime::MIN), &earliest) {
                break;
            }
            if self.runs_on(date) {
                for &hour in &self.hours {
                    for &minute in &self.minutes {
                        for &second in &self.seconds {
                            let Some(local) = date.and_hms_opt(hour, minute, second) else {
                                continue;
                            };
                            // Hours before `after` cannot fire after it, gap or not.
                            if local + Duration::hours(GAP_HOURS) <= local_start {
                                continue;
                            }
                            if beyond(local, &earliest) {
                                break 'days;
                            }
                            if let Some(fire) = instant(local, zone)
                                && fire > after
                                && earliest.is_none_or(|(found, _)| fire < found)
                            {
                                earliest = Some((fire, fire.with_timezone(&zone).naive_local()));
                            }
                        }
                    }
                }
            }
            date = date.succ_opt()?;
        }
        earliest.map(|(fire, _)| fire)
    }
}

/// The longest a clock change moves a local time, with room to spare (changes are an hour
/// or less, Lord Howe's half an hour).
const GAP_HOURS: i64 = 3;

/// Day `target` if it is a weekday; else the nearest weekday to it within the month.
fn nearest_weekday(date: NaiveDate, target: u32, last: u32) -> bool {
    let Some(target_date) = date.with_day(target.min(last)) else {
        return false;
    };
    let chosen = match quartz_weekday(target_date) {
        // Saturday: Friday before, or Monday after when the 1st is a Saturday.
        7 if target_date.day() == 1 => target_date + Duration::days(2),
        7 => target_date - Duration::days(1),
        // Sunday: Monday after, or Friday before when it is the month's last day.
        1 if target_date.day() == last => target_date - Duration::days(2),
        1 => target_date + Duration::days(1),
        _ => target_date,
    };
    chosen == date
}

/// The instant a local time names in `zone`: the first of two on a fall-back night; on a
/// spring-forward night a skipped time is read with the offset in force before the gap, so it
/// lands as far past the gap as it was into it (02:30 -> 03:30).
fn instant(local: NaiveDateTime, zone: Tz) -> Option<DateTime<Utc>> {
    match zone.from_local_datetime(&local) {
        MappedLocalTime::Single(at) => Some(at.with_timezone(&Utc)),
        MappedLocalTime::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
        MappedLocalTime::None => {
            let before = zone
                .from_local_datetime(&(local - Duration::hours(GAP_HOURS)))
                .earliest()?;
            let offset = chrono::Offset::fix(before.offset()).local_minus_utc();
            Some(Utc.from_utc_datetime(&(local - Duration::seconds(i64::from(offset)))))
        }
    }
}

/// An IANA time zone name, as `timezone_id` gives it.
pub fn time_zone(id: &str) -> Result<Tz, String> {
    id.parse::<Tz>().map_err(|_| {
        format!("Unknown timezone_id '{id}': use an IANA name such as 'UTC' or 'Europe/Amsterdam'")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("a time")
            .with_timezone(&Utc)
    }

    fn next(expression: &str, zone: &str, after: &str) -> Option<String> {
        let cron: Cron = expression.parse().expect("an expression");
        let zone = time_zone(zone).expect("a zone");
        cron.next_after(utc(after), zone)
            .map(|at| at.with_timezone(&zone).to_rfc3339())
    }

    #[test]
    fn plain_schedules_fire_at_their_next_time() {
        assert_eq!(
            next("0 0 12 * * ?", "UTC", "2026-12-06T10:00:00Z").as_deref(),
            Some("2026-12-06T12:00:00+00:00")
        );
        assert_eq!(
            next("0 0 12 * * ?", "UTC", "2026-12-06T12:00:00Z").as_deref(),
            Some("2026-12-07T12:00:00+00:00"),
            "strictly after"
        );
        assert_eq!(
            next("0 */15 * * * ?", "UTC", "2026-12-06T10:07:30Z").as_deref(),
            Some("2026-12-06T10:15:00+00:00")
        );
        assert_eq!(
            next(
                "30 10/20 9-17 ? * MON-FRI",
                "Europe/Amsterdam",
                "2026-12-05T12:00:00Z"
            )
            .as_deref(),
            Some("2026-12-07T09:10:30+01:00"),
            "Saturday noon: Monday 09:10:30"
        );
        assert_eq!(
            next("0 0 0 1 JAN ? 2027", "UTC", "2026-06-01T00:00:00Z").as_deref(),
            Some("2027-01-01T00:00:00+00:00")
        );
        assert_eq!(
            next("0 0 0 1 JAN ? 2025", "UTC", "2026-06-01T00:00:00Z"),
            None
        );
        assert_eq!(next("0 0 0 30 FEB ?", "UTC", "2026-06-01T00:00:00Z"), None);
    }

    #[test]
    fn last_nearest_and_nth_days() {
        assert_eq!(
            next("0 0 8 L * ?", "UTC", "2027-02-01T00:00:00Z").as_deref(),
            Some("2027-02-28T08:00:00+00:00")
        );
        assert_eq!(
            next("0 0 8 L-2 * ?", "UTC", "2028-02-01T00:00:00Z").as_deref(),
            Some("2028-02-27T08:00:00+00:00"),
            "leap year: 29 - 2"
        );
        // 2026-05-31 is a Sunday: the last weekday is Friday the 29th.
        assert_eq!(
            next("0 0 8 LW * ?", "UTC", "2026-05-01T00:00:00Z").as_deref(),
            Some("2026-05-29T08:00:00+00:00")
        );
        // 2026-08-15 is a Saturday: 15W is Friday the 14th; 2026-08-01 is a Saturday, and 1W
        // stays in the month: Monday the 3rd.
        assert_eq!(
            next("0 0 8 15W * ?", "UTC", "2026-08-01T00:00:00Z").as_deref(),
            Some("2026-08-14T08:00:00+00:00")
        );
        assert_eq!(
            next("0 0 8 1W * ?", "UTC", "2026-07-31T00:00:00Z").as_deref(),
            Some("2026-08-03T08:00:00+00:00")
        );
        // The third Friday of December 2026 is the 18th; the last Thursday the 31st.
        assert_eq!(
            next("0 0 8 ? * 6#3", "UTC", "2026-12-01T00:00:00Z").as_deref(),
            Some("2026-12-18T08:00:00+00:00")
        );
        assert_eq!(
            next("0 0 8 ? * THUL", "UTC", "2026-12-01T00:00:00Z"),
            next("0 0 8 ? * 5L", "UTC", "2026-12-01T00:00:00Z"),
            "names and numbers alike"
        );
        assert_eq!(
            next("0 0 8 ? * 5L", "UTC", "2026-12-01T00:00:00Z").as_deref(),
            Some("2026-12-31T08:00:00+00:00")
        );
        assert_eq!(
            next("0 0 22 ? * FRI-MON", "UTC", "2026-12-08T00:00:00Z").as_deref(),
            Some("2026-12-11T22:00:00+00:00"),
            "a range wrapping past Saturday"
        );
    }

    #[test]
    fn daylight_saving_changes_fire_once_and_never_skip_a_day() {
        // Europe/Amsterdam springs forward 2027-03-28 at 02:00 -> 03:00.
        assert_eq!(
            next("0 30 2 * * ?", "Europe/Amsterdam", "2027-03-27T12:00:00Z").as_deref(),
            Some("2027-03-28T03:30:00+02:00"),
            "the skipped 02:30 fires when the clock resumes, shifted by the gap"
        );
        assert_eq!(
            next("0 30 2 * * ?", "Europe/Amsterdam", "2027-03-28T01:30:00Z").as_deref(),
            Some("2027-03-29T02:30:00+02:00"),
            "and once only"
        );
        // It falls back 2026-10-25 at 03:00 -> 02:00: 02:30 happens twice and fires once.
        let first = next("0 30 2 * * ?", "Europe/Amsterdam", "2026-10-24T12:00:00Z");
        assert_eq!(first.as_deref(), Some("2026-10-25T02:30:00+02:00"));
        assert_eq!(
            next("0 30 2 * * ?", "Europe/Amsterdam", "2026-10-25T00:30:00Z").as_deref(),
            Some("2026-10-26T02:30:00+01:00"),
            "the second 02:30 (00:30 UTC is the first) does not fire again"
        );
        // New York springs forward 2027-03-14 at 02:00.
        assert_eq!(
            next("0 0 9 * * ?", "America/New_York", "2027-03-13T15:00:00Z").as_deref(),
            Some("2027-03-14T09:00:00-04:00")
        );
    }

    #[test]
    fn malformed_expressions_are_refused_with_the_reason() {
        for (expression, reason) in [
            ("0 0 12 * *", "5 fields"),
            ("0 0 12 * * ? 2027 x", "8 fields"),
            ("60 0 12 * * ?", "seconds '60': 60 is outside 0-59"),
            ("0 0 24 * * ?", "hours '24'"),
            ("0 0 12 * * *", "either a day-of-month or a day-of-week"),
            ("0 0 12 ? * ?", "both '?'"),
            ("0 0 12 * FOO ?", "month 'FOO'"),
            ("0 0 12 ? * MON#6", "day-of-week 'MON#6'"),
            ("0 0 12 1,L * ?", "day-of-month '1,L'"),
            ("0 */0 12 * * ?", "not a positive number"),
            ("0 0 12 * * ? 1969", "year '1969'"),
        ] {
            let err = expression.parse::<Cron>().expect_err(expression);
            assert!(
                err.to_string().contains(reason),
                "{expression}: {err} (wanted {reason})"
            );
        }
        assert!(time_zone("Mars/Olympus").is_err());
        assert!(time_zone("America/Los_Angeles").is_ok());
    }
}
