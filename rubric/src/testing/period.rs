//! What parsing a period must hold for any text, shared by the seeded mutation test
//! (`tests/hostile_periods.rs`) and the cargo-fuzz target (`fuzz/`): no panic, and a
//! period that parses prints back to the same period and has days and bounds in order.

use crate::period::{Period, days_in};
use chrono_tz::Tz;

/// Parses `s` as a period; panics if a period that parses breaks a rule. True if it parsed.
pub fn check_period(s: &str) -> bool {
    let Ok(p) = s.parse::<Period>() else {
        return false;
    };
    let (first, after) = p.days();
    assert!(first < after, "{s:?} gives {first}..{after}");
    assert_eq!(p.to_string().parse::<Period>(), Ok(p), "{s:?} prints back to itself");
    let tz: Tz = chrono_tz::Asia::Shanghai;
    let (a, b) = p.bounds(tz);
    assert!(a < b, "{s:?}");
    let days = days_in(a, b, tz).len();
    assert!((1..=366).contains(&days), "{s:?}: {days} days");
    true
}
