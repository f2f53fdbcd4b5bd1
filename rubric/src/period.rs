//! Assessment periods (year, quarter, month, a range of days) and their bounds in a
//! unit's time zone.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Days, LocalResult, Months, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// A period as users name it. Bounds are calendar days in a time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Period {
    Year {
        year: i32,
    },
    Quarter {
        year: i32,
        quarter: u32,
    },
    Month {
        year: i32,
        month: u32,
    },
    /// Inclusive range of days.
    Days {
        first: NaiveDate,
        last: NaiveDate,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "无效的期间 `{0}`; 应为 2026、2026-Q4、2026-11、2026-11-02 或 2026-11-01..2026-11-07, 年份 1970–2200, 日期范围最长 366 天 (invalid period: expected YEAR, YEAR-Qn, YEAR-MM, DAY or DAY..DAY; years 1970-2200, a range of at most 366 days)"
)]
pub struct PeriodError(pub String);

impl FromStr for Period {
    type Err = PeriodError;

    fn from_str(s: &str) -> Result<Period, PeriodError> {
        let bad = || PeriodError(s.to_string());
        let t = s.trim();
        // Four-digit years in a sane range only: a period comes from users (URLs, CLI), and
        // chrono alone would take "+262143-12-31".
        let year_ok = |y: &str| {
            y.len() == 4
                && y.chars().all(|c| c.is_ascii_digit())
                && y.parse::<i32>().is_ok_and(|y| (1970..=2200).contains(&y))
        };
        // Byte positions are only sliced after checking the text is ASCII: a period comes
        // from URLs and the command line, and "202é-1-01" is ten bytes too.
        let date = |d: &str| {
            let d = d.trim();
            let b = d.as_bytes();
            let shape = b.len() == 10
                && d.is_ascii()
                && b[4] == b'-'
                && b[7] == b'-'
                && d.get(..4).is_some_and(year_ok)
                && b[5..7].iter().chain(&b[8..10]).all(u8::is_ascii_digit);
            if !shape {
                return None;
            }
            NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()
        };
        if let Some((a, b)) = t.split_once("..") {
            let first = date(a).ok_or_else(bad)?;
            let last = date(b).ok_or_else(bad)?;
            if last < first || (last - first).num_days() > 365 {
                return Err(bad());
            }
            return Ok(Period::Days { first, last });
        }
        if t.len() == 10
            && let Some(day) = date(t)
        {
            return Ok(Period::Days { first: day, last: day });
        }
        match t.split_once('-') {
            None if year_ok(t) => Ok(Period::Year {
                year: t.parse().map_err(|_| bad())?,
            }),
            Some((y, q)) if year_ok(y) && (q.starts_with('Q') || q.starts_with('q')) => {
                let digits = q
                    .get(1..)
                    .filter(|d| !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit()));
                let quarter: u32 = digits.ok_or_else(bad)?.parse().map_err(|_| bad())?;
                if !(1..=4).contains(&quarter) {
                    return Err(bad());
                }
                Ok(Period::Quarter {
                    year: y.parse().map_err(|_| bad())?,
                    quarter,
                })
            }
            Some((y, m)) if year_ok(y) && m.len() == 2 && m.bytes().all(|c| c.is_ascii_digit()) => {
                let month: u32 = m.parse().map_err(|_| bad())?;
                if !(1..=12).contains(&month) {
                    return Err(bad());
                }
                Ok(Period::Month {
                    year: y.parse().map_err(|_| bad())?,
                    month,
                })
            }
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Period::Year { year } => write!(f, "{year}"),
            Period::Quarter { year, quarter } => write!(f, "{year}-Q{quarter}"),
            Period::Month { year, month } => write!(f, "{year}-{month:02}"),
            Period::Days { first, last } => write!(f, "{first}..{last}"),
        }
    }
}

impl Period {
    /// First day and the day after the last, as calendar dates.
    ///
    /// Total for any value, including one deserialized from elsewhere: a quarter or month
    /// out of range, or a year at the end of the calendar, gives an empty or clamped range,
    /// never a panic.
    pub fn days(&self) -> (NaiveDate, NaiveDate) {
        let ymd = |y: i32, m: u32| NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(NaiveDate::MIN);
        let months_after = |start: NaiveDate, n: u32| start.checked_add_months(Months::new(n)).unwrap_or(start);
        match *self {
            Period::Year { year } => {
                let start = ymd(year, 1);
                (start, months_after(start, 12))
            }
            Period::Quarter { year, quarter } => {
                let month = quarter
                    .checked_sub(1)
                    .and_then(|q| q.checked_mul(3))
                    .and_then(|m| m.checked_add(1))
                    .unwrap_or(0);
                let start = ymd(year, month);
                (start, months_after(start, 3))
            }
            Period::Month { year, month } => {
                let start = ymd(year, month);
                (start, months_after(start, 1))
            }
            Period::Days { first, last } => (first, last.checked_add_days(Days::new(1)).unwrap_or(last)),
        }
    }

    /// The period's bounds as instants: local midnight of the first day to local
    /// midnight after the last.
    pub fn bounds(&self, tz: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
        let (a, b) = self.days();
        (local_midnight(a, tz), local_midnight(b, tz))
    }

    /// The smallest range of whole days that covers `from..=to` in `tz`.
    pub fn covering(from: DateTime<Utc>, to: DateTime<Utc>, tz: Tz) -> Period {
        let first = from.with_timezone(&tz).date_naive();
        let last = to.with_timezone(&tz).date_naive().max(first);
        Period::Days { first, last }
    }
}

/// The instant a calendar day starts in `tz` (the first valid instant on a DST gap).
pub fn local_midnight(day: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let mut t = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    for _ in 0..4 {
        match tz.from_local_datetime(&t) {
            LocalResult::Single(x) | LocalResult::Ambiguous(x, _) => return x.with_timezone(&Utc),
            LocalResult::None => t += chrono::Duration::minutes(30),
        }
    }
    Utc.from_utc_datetime(&t)
}

/// The calendar day of an instant in `tz`.
pub fn local_day(t: DateTime<Utc>, tz: Tz) -> NaiveDate {
    t.with_timezone(&tz).date_naive()
}

/// Calendar days touched by `start..end` (end exclusive) in `tz`.
pub fn days_in(start: DateTime<Utc>, end: DateTime<Utc>, tz: Tz) -> Vec<NaiveDate> {
    if end <= start {
        return Vec::new();
    }
    let first = local_day(start, tz);
    let last = local_day(end - chrono::Duration::nanoseconds(1), tz);
    first.iter_days().take_while(|d| *d <= last).collect()
}

/// Year, month and day helpers for display.
pub fn ymd(d: NaiveDate) -> (i32, u32, u32) {
    (d.year(), d.month(), d.day())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_and_rejects_nonsense() {
        assert_eq!("2026".parse(), Ok(Period::Year { year: 2026 }));
        assert_eq!("2026-Q4".parse(), Ok(Period::Quarter { year: 2026, quarter: 4 }));
        assert_eq!("2026-11".parse(), Ok(Period::Month { year: 2026, month: 11 }));
        assert!(matches!("2026-11-01..2026-11-07".parse(), Ok(Period::Days { .. })));
        let day: Period = "2026-11-02".parse().expect("a single day");
        assert_eq!(day.to_string(), "2026-11-02..2026-11-02");
        assert!("2025-12-01..2026-11-30".parse::<Period>().is_ok(), "a year's range");
        for bad in [
            "26",
            "2026-Q5",
            "2026-13",
            "2026-11-07..2026-11-01",
            "last year",
            // From a URL: huge or far-off dates must not reach the calendar arithmetic.
            "+262143-12-31",
            "+262143-12-31..+262143-12-31",
            "0001-01-01..9999-12-31",
            "2024-01-01..2026-01-01",
            "1969",
            "9999-12",
        ] {
            assert!(bad.parse::<Period>().is_err(), "{bad}");
        }
    }

    #[test]
    fn non_ascii_and_odd_periods_are_rejected_without_panicking() {
        // F10: `é` is two bytes, so this is ten bytes long; slicing it at byte 4 panicked.
        for bad in [
            "202é-1-01",
            "202é-1-01..2026-11-01",
            "2026-11-01..202é-1-01",
            "é",
            "2026-é",
            "2026-Qé",
            "2026-Q",
            "2026-Q+4",
            "2026-+1",
            "2026-1é",
            "２０２６-11-01",
            "2026-11-0１",
            "2026-1-011",
            "\u{0}\u{0}\u{0}\u{0}-\u{0}\u{0}-\u{0}\u{0}",
            "",
            "..",
            "2026-11-01..",
        ] {
            assert!(bad.parse::<Period>().is_err(), "{bad:?}");
        }
        assert_eq!("2026-Q04".parse(), Ok(Period::Quarter { year: 2026, quarter: 4 }));
    }

    #[test]
    fn any_period_value_has_days_and_bounds_without_panicking() {
        let tz: Tz = "Asia/Shanghai".parse().expect("tz");
        let odd = [
            Period::Year { year: i32::MAX },
            Period::Year { year: i32::MIN },
            Period::Year { year: 262_143 },
            Period::Quarter { year: 2026, quarter: 0 },
            Period::Quarter {
                year: 2026,
                quarter: u32::MAX,
            },
            Period::Quarter {
                year: 2026,
                quarter: 1_431_655_766,
            },
            Period::Month {
                year: 262_143,
                month: 12,
            },
            Period::Month { year: 2026, month: 0 },
            Period::Month { year: 2026, month: 13 },
            Period::Days {
                first: NaiveDate::MIN,
                last: NaiveDate::MAX,
            },
            Period::Days {
                first: NaiveDate::MAX,
                last: NaiveDate::MAX,
            },
        ];
        for p in odd {
            let (a, b) = p.days();
            assert!(a <= b, "{p:?}");
            let _ = p.bounds(tz);
            let _ = p.to_string();
        }
    }

    #[test]
    fn bounds_are_local_midnights() {
        let tz: Tz = "Asia/Shanghai".parse().expect("tz");
        let (a, b) = "2026-11".parse::<Period>().expect("p").bounds(tz);
        assert_eq!(a.to_rfc3339(), "2026-10-31T16:00:00+00:00");
        assert_eq!(b.to_rfc3339(), "2026-11-30T16:00:00+00:00");
        assert_eq!(days_in(a, b, tz).len(), 30);
        let (a, b) = "2026-Q4".parse::<Period>().expect("p").bounds(tz);
        assert_eq!(days_in(a, b, tz).len(), 92);
    }
}
