//! What an agent may claim: the ranges the collector checks at ingest, so that one report
//! can never account for more than its own interval, and text the databases cannot store
//! is refused before it reaches them.
//!
//! - `probes.interval_secs` is 1..=[`MAX_PROBE_INTERVAL_SECS`] (the most an agent's
//!   `schedule.probe_interval_secs` allows); scoring also clamps it (for reports stored
//!   before this check), so a sample stands for at most `sample_tolerance` × one hour.
//! - A report is not dated more than [`MAX_CLOCK_AHEAD`] after it arrives; the times of
//!   what it observed (samples, isolation rounds, checks, findings, the end of outages, the
//!   last sighting of a device) lie within [`MAX_BATCH_SPAN`] before its `created_at` and
//!   [`MAX_EVENT_AHEAD`] after it; an outage ends after it starts, a device is last seen
//!   after it is first seen.
//! - Round-trip times and latencies are finite, 0..=1 hour; a daily check's `failed` is at
//!   most its `checked`.
//! - No string (nor key) holds U+0000, which PostgreSQL cannot store in text.

use chrono::{DateTime, Duration, Utc};

use crate::evidence::{EvidenceError, Report};

/// The longest probe interval an agent may report, seconds.
pub const MAX_PROBE_INTERVAL_SECS: u32 = 3600;

/// How far ahead of the collector's clock a report may be dated.
pub const MAX_CLOCK_AHEAD: Duration = Duration::hours(1);

/// How long before its `created_at` a report's observations may lie (a batch covers one
/// report interval, at most an hour; a day leaves room for a stalled agent).
pub const MAX_BATCH_SPAN: Duration = Duration::days(1);

/// How long after its `created_at` an observation may lie (clock steps while a batch is
/// put together).
pub const MAX_EVENT_AHEAD: Duration = Duration::minutes(10);

/// The longest round trip or latency taken as real, milliseconds.
const MAX_RTT_MS: f64 = 3_600_000.0;

/// A probe interval as scoring may use it: 1..=[`MAX_PROBE_INTERVAL_SECS`].
pub fn clamp_interval(secs: u32) -> u32 {
    secs.clamp(1, MAX_PROBE_INTERVAL_SECS)
}

fn invalid(path: impl Into<String>, message: impl Into<String>) -> EvidenceError {
    EvidenceError::Invalid {
        path: path.into(),
        message: message.into(),
    }
}

impl Report {
    /// Checks every duration, count and time the agent sent against what an agent's
    /// schedule allows; the error names the field. `received_at` is the collector's clock.
    pub fn check_bounds(&self, received_at: DateTime<Utc>) -> Result<(), EvidenceError> {
        let i = self.probes.interval_secs;
        // A report without samples (a listener's, an agent without targets) may leave it 0.
        let lowest = u32::from(!self.probes.samples.is_empty());
        if !(lowest..=MAX_PROBE_INTERVAL_SECS).contains(&i) {
            return Err(invalid(
                "probes.interval_secs",
                format!(
                    "{i} 超出范围 {lowest}..={MAX_PROBE_INTERVAL_SECS} 秒 (out of range {lowest}..={MAX_PROBE_INTERVAL_SECS} s)"
                ),
            ));
        }
        if self.created_at > received_at + MAX_CLOCK_AHEAD {
            return Err(invalid(
                "created_at",
                format!(
                    "{} 晚于采集中心时间 {} 超过 1 小时, 请检查代理主机时钟 (more than an hour ahead of the collector's clock: check the agent host's clock)",
                    self.created_at.to_rfc3339(),
                    received_at.to_rfc3339()
                ),
            ));
        }
        let earliest = self.created_at - MAX_BATCH_SPAN;
        let latest = self.created_at + MAX_EVENT_AHEAD;
        let at = |path: String, t: DateTime<Utc>| -> Result<(), EvidenceError> {
            if t < earliest || t > latest {
                return Err(invalid(
                    path,
                    format!(
                        "时间 {} 不在报告时间 {} 之前 1 天至之后 10 分钟内 (not within a day before and 10 minutes after the report's created_at)",
                        t.to_rfc3339(),
                        self.created_at.to_rfc3339()
                    ),
                ));
            }
            Ok(())
        };
        let ms = |path: String, v: Option<f64>| -> Result<(), EvidenceError> {
            match v {
                Some(x) if !(x.is_finite() && (0.0..=MAX_RTT_MS).contains(&x)) => Err(invalid(
                    path,
                    format!("{x} 毫秒超出范围 0..=3600000 (milliseconds out of range)"),
                )),
                _ => Ok(()),
            }
        };
        for (n, s) in self.probes.samples.iter().enumerate() {
            at(format!("probes.samples[{n}].at"), s.at)?;
            ms(format!("probes.samples[{n}].rtt_ms"), s.rtt_ms)?;
        }
        for (n, o) in self.outages.iter().enumerate() {
            if o.start > latest {
                at(format!("outages[{n}].start"), o.start)?;
            }
            if let Some(end) = o.end {
                at(format!("outages[{n}].end"), end)?;
                if end < o.start {
                    return Err(invalid(
                        format!("outages[{n}].end"),
                        "结束早于开始 (ends before it starts)",
                    ));
                }
            }
        }
        for (n, r) in self.isolation.iter().enumerate() {
            at(format!("isolation[{n}].at"), r.at)?;
        }
        if let Some(c) = &self.self_check {
            at("self_check.at".into(), c.at)?;
        }
        for (n, o) in self.inventory.iter().enumerate() {
            at(format!("inventory[{n}].last_seen"), o.last_seen)?;
            if o.first_seen > o.last_seen {
                return Err(invalid(
                    format!("inventory[{n}].first_seen"),
                    "晚于 last_seen (after last_seen)",
                ));
            }
        }
        for (n, s) in self.services.iter().enumerate() {
            at(format!("services[{n}].at"), s.at)?;
            ms(format!("services[{n}].latency_ms"), s.latency_ms)?;
        }
        for (n, d) in self.daily_checks.iter().enumerate() {
            at(format!("daily_checks[{n}].at"), d.at)?;
            for (name, c) in [
                ("network", Some(&d.network)),
                ("devices", d.devices.as_ref()),
                ("apps", d.apps.as_ref()),
                ("portals", d.portals.as_ref()),
            ] {
                if let Some(c) = c
                    && c.failed > c.checked
                {
                    return Err(invalid(
                        format!("daily_checks[{n}].{name}.failed"),
                        format!("{} 大于 checked {} (more failed than checked)", c.failed, c.checked),
                    ));
                }
            }
        }
        for (n, l) in self.leaks.iter().enumerate() {
            at(format!("leaks[{n}].at"), l.at)?;
        }
        Ok(())
    }
}

/// The path of the first string or key in a JSON text that holds U+0000, e.g.
/// `isolation[0].canary`; `None` when there is none (or the text is not JSON).
pub fn nul_in_json(text: &str) -> Option<String> {
    // U+0000 can only be written as the escape \u0000: most texts are done here.
    if !text.contains("\\u0000") {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    nul_in_value(&value, String::new())
}

fn nul_in_value(v: &serde_json::Value, path: String) -> Option<String> {
    match v {
        serde_json::Value::String(s) if s.contains('\0') => Some(if path.is_empty() { "(root)".into() } else { path }),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, x)| nul_in_value(x, format!("{path}[{i}]"))),
        serde_json::Value::Object(map) => map.iter().find_map(|(k, x)| {
            let shown = k.replace('\0', "\\u0000");
            let here = if path.is_empty() {
                shown
            } else {
                format!("{path}.{shown}")
            };
            if k.contains('\0') {
                Some(here)
            } else {
                nul_in_value(x, here)
            }
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::{HostFacts, ProbeKind, ProbeRole, ProbeSample};

    fn report(at: DateTime<Utc>) -> Report {
        let host = HostFacts {
            hostname: "h".into(),
            os: "linux".into(),
            boot_time: None,
            agent_version: "0".into(),
            agent_started_at: None,
        };
        let mut r = Report::empty(uuid::Uuid::nil(), "a", "u", 1, at, host);
        r.probes.interval_secs = 30;
        r.probes.samples.push(ProbeSample {
            target: "10.0.0.1".into(),
            kind: ProbeKind::Icmp,
            role: ProbeRole::Upstream,
            at,
            ok: true,
            rtt_ms: Some(1.0),
            error: None,
            run: None,
        });
        r
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z")
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn an_interval_no_schedule_allows_is_refused_naming_the_field() {
        let mut r = report(now());
        r.probes.interval_secs = u32::MAX;
        let e = r.check_bounds(now()).expect_err("out of range").to_string();
        assert!(e.contains("probes.interval_secs") && e.contains("4294967295"), "{e}");
        r.probes.interval_secs = 0;
        assert!(r.check_bounds(now()).is_err());
        r.probes.interval_secs = 3600;
        assert!(r.check_bounds(now()).is_ok());
        r.probes.samples.clear();
        r.probes.interval_secs = 0;
        assert!(r.check_bounds(now()).is_ok(), "no samples: no interval needed");
    }

    #[test]
    fn times_outside_the_report_and_a_clock_far_ahead_are_refused() {
        let mut r = report(now());
        r.probes.samples[0].at = now() - Duration::days(30);
        let e = r.check_bounds(now()).expect_err("a month before").to_string();
        assert!(e.contains("probes.samples[0].at"), "{e}");
        let r = report(now() + Duration::hours(2));
        let e = r.check_bounds(now()).expect_err("ahead").to_string();
        assert!(e.contains("created_at"), "{e}");
        // An old report delivered late (the spool) is fine.
        assert!(report(now() - Duration::days(20)).check_bounds(now()).is_ok());
    }

    #[test]
    fn odd_numbers_are_refused() {
        let mut r = report(now());
        r.probes.samples[0].rtt_ms = Some(f64::NAN);
        assert!(r.check_bounds(now()).is_err());
        r.probes.samples[0].rtt_ms = Some(-1.0);
        assert!(r.check_bounds(now()).is_err());
    }

    #[test]
    fn a_nul_anywhere_is_found_with_its_path() {
        assert_eq!(nul_in_json(r#"{"a":[{"b":"x\u0000y"}]}"#).as_deref(), Some("a[0].b"));
        assert_eq!(nul_in_json(r#"{"k\u0000":1}"#).as_deref(), Some("k\\u0000"));
        assert_eq!(nul_in_json(r#"{"a":"\\u0000 is text"}"#), None, "an escaped backslash");
        assert_eq!(nul_in_json(r#"{"a":"fine"}"#), None);
    }
}
