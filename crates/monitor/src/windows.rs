//! Time windows: which window of a granularity a timestamp falls in, and the one before it.

use chrono::{Datelike, TimeZone, Utc};
use tarn_core::monitors::Granularity;

/// A window's bounds in microseconds since the epoch, start inclusive, end exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

/// The window of `granularity` holding `micros`.
pub fn window_of(granularity: Granularity, micros: i64) -> Window {
    match granularity {
        Granularity::Fixed { micros: length } => {
            let start = micros.div_euclid(length) * length;
            Window {
                start,
                end: start + length,
            }
        }
        Granularity::Months(months) => {
            let at = Utc.timestamp_micros(micros).single().unwrap_or_default();
            let index = at.year() as i64 * 12 + at.month0() as i64;
            let first = index - index.rem_euclid(months as i64);
            Window {
                start: month_start(first),
                end: month_start(first + months as i64),
            }
        }
    }
}

/// The window just before `window`.
pub fn previous(granularity: Granularity, window: Window) -> Window {
    match granularity {
        Granularity::Fixed { micros: length } => Window {
            start: window.start - length,
            end: window.start,
        },
        Granularity::Months(_) => {
            let before = window_of(granularity, window.start - 1);
            Window {
                start: before.start,
                end: window.start,
            }
        }
    }
}

/// Microseconds at the start of month `index` (year * 12 + zero-based month).
fn month_start(index: i64) -> i64 {
    let (year, month0) = (index.div_euclid(12), index.rem_euclid(12));
    Utc.with_ymd_and_hms(year as i32, month0 as u32 + 1, 1, 0, 0, 0)
        .single()
        .map(|at| at.timestamp_micros())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000_000;

    #[test]
    fn fixed_windows_start_at_multiples_from_the_epoch() {
        let day = Granularity::Fixed { micros: DAY };
        let at = 3 * DAY + 5;
        assert_eq!(
            window_of(day, at),
            Window {
                start: 3 * DAY,
                end: 4 * DAY
            }
        );
        assert_eq!(
            window_of(day, -5),
            Window {
                start: -DAY,
                end: 0
            }
        );
        assert_eq!(
            previous(day, window_of(day, at)),
            Window {
                start: 2 * DAY,
                end: 3 * DAY
            }
        );
    }

    #[test]
    fn calendar_windows_follow_months_and_years() {
        let month = Granularity::Months(1);
        let at = Utc
            .with_ymd_and_hms(2026, 3, 15, 12, 0, 0)
            .single()
            .expect("date")
            .timestamp_micros();
        let window = window_of(month, at);
        assert_eq!(window.start, month_start(2026 * 12 + 2));
        assert_eq!(window.end, month_start(2026 * 12 + 3));
        assert_eq!(previous(month, window).start, month_start(2026 * 12 + 1));
        let year = window_of(Granularity::Months(12), at);
        assert_eq!(year.start, month_start(2026 * 12));
        assert_eq!(year.end, month_start(2027 * 12));
    }
}
