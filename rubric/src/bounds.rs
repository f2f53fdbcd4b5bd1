//! What an agent may claim: the ranges the collector checks at ingest, so that no report
//! buys time it did not observe, and text the databases cannot store is refused before it
//! reaches them. Nothing here refuses what a working agent may send: a report is refused
//! for good only for values no agent produces.
//!
//! - `probes.interval_secs` is clamped, not refused: scoring and roll-ups take it as at
//!   most [`MAX_PROBE_INTERVAL_SECS`] (what an agent's `schedule.probe_interval_secs` may
//!   be), so a sample stands for at most `sample_tolerance` × one hour, whatever it says.
//! - Nothing may be dated more than [`MAX_CLOCK_AHEAD`] after the collector's clock: such a
//!   report is not refused for good but asked to come back later ([`Bounds::ClockAhead`]),
//!   since it will be acceptable once its time has come (an agent host whose clock is
//!   ahead, e.g. local time taken as UTC). Times in the past are the agent's to report (a
//!   spool delivers days late; a host resumed from suspend reports what it saw before).
//! - Round-trip times and latencies are 0..=1 hour; a daily check's `failed` is at most
//!   its `checked`.
//! - No string (nor key) holds U+0000, which PostgreSQL cannot store in text.

use chrono::{DateTime, Duration, Utc};

use crate::evidence::Report;

/// The longest probe interval scoring takes, seconds.
pub const MAX_PROBE_INTERVAL_SECS: u32 = 3600;

/// How far ahead of the collector's clock anything in a report may be dated.
pub const MAX_CLOCK_AHEAD: Duration = Duration::hours(1);

/// The longest round trip or latency taken as real, milliseconds.
const MAX_RTT_MS: f64 = 3_600_000.0;

/// A probe interval as scoring takes it: 1..=[`MAX_PROBE_INTERVAL_SECS`].
pub fn clamp_interval(secs: u32) -> u32 {
    secs.clamp(1, MAX_PROBE_INTERVAL_SECS)
}

/// What is wrong with a report's numbers.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Bounds {
    /// A value no agent produces: refuse the report for good.
    #[error("报告字段 {path} 超出范围 (out of range): {message}")]
    Invalid { path: String, message: String },
    /// Dated ahead of the collector's clock: acceptable later, not now.
    #[error(
        "报告字段 {path} 的时间 {at} 比采集中心时间超前 {ahead_secs} 秒, 请检查代理主机时钟 (dated {ahead_secs} s ahead of the collector's clock: check the agent host's clock)"
    )]
    ClockAhead { path: String, at: String, ahead_secs: i64 },
}

fn invalid(path: impl Into<String>, message: impl Into<String>) -> Bounds {
    Bounds::Invalid {
        path: path.into(),
        message: message.into(),
    }
}

impl Report {
    /// Checks the numbers the agent sent; the error names the field. `received_at` is the
    /// collector's clock.
    pub fn check_bounds(&self, received_at: DateTime<Utc>) -> Result<(), Bounds> {
        let latest = received_at + MAX_CLOCK_AHEAD;
        let at = |path: String, t: DateTime<Utc>| -> Result<(), Bounds> {
            if t > latest {
                return Err(Bounds::ClockAhead {
                    path,
                    at: t.to_rfc3339(),
                    ahead_secs: (t - received_at).num_seconds(),
                });
            }
            Ok(())
        };
        let ms = |path: String, v: Option<f64>| -> Result<(), Bounds> {
            match v {
                Some(x) if !(x.is_finite() && (0.0..=MAX_RTT_MS).contains(&x)) => Err(invalid(
                    path,
                    format!("{x} 毫秒, 应在 0..=3600000 (milliseconds, must be 0..=3600000)"),
                )),
                _ => Ok(()),
            }
        };
        at("created_at".into(), self.created_at)?;
        for (n, s) in self.probes.samples.iter().enumerate() {
            at(format!("probes.samples[{n}].at"), s.at)?;
            ms(format!("probes.samples[{n}].rtt_ms"), s.rtt_ms)?;
        }
        for (n, o) in self.outages.iter().enumerate() {
            at(format!("outages[{n}].start"), o.start)?;
            if let Some(end) = o.end {
                at(format!("outages[{n}].end"), end)?;
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
    fn an_interval_is_clamped_not_refused() {
        let mut r = report(now());
        r.probes.interval_secs = u32::MAX;
        assert!(r.check_bounds(now()).is_ok(), "scoring clamps it");
        assert_eq!(clamp_interval(u32::MAX), MAX_PROBE_INTERVAL_SECS);
        assert_eq!(clamp_interval(0), 1);
        assert_eq!(clamp_interval(30), 30);
    }

    #[test]
    fn a_report_from_the_future_is_asked_to_come_back_and_the_past_is_fine() {
        let r = report(now() + Duration::hours(8));
        match r.check_bounds(now()) {
            Err(Bounds::ClockAhead { path, ahead_secs, .. }) => {
                assert_eq!((path.as_str(), ahead_secs), ("created_at", 8 * 3600));
            }
            other => panic!("{other:?}"),
        }
        let mut r = report(now());
        r.probes.samples[0].at = now() + Duration::hours(2);
        let e = r.check_bounds(now()).expect_err("a sample from the future").to_string();
        assert!(e.contains("probes.samples[0].at"), "{e}");
        // A spool delivering a month late, a host resumed after a week: fine.
        assert!(report(now() - Duration::days(30)).check_bounds(now()).is_ok());
        let mut r = report(now());
        r.probes.samples[0].at = now() - Duration::days(7);
        assert!(r.check_bounds(now()).is_ok());
    }

    #[test]
    fn numbers_no_agent_produces_are_refused_naming_the_field() {
        let mut r = report(now());
        r.probes.samples[0].rtt_ms = Some(f64::NAN);
        assert!(matches!(r.check_bounds(now()), Err(Bounds::Invalid { .. })));
        r.probes.samples[0].rtt_ms = Some(-1.0);
        let e = r.check_bounds(now()).expect_err("negative").to_string();
        assert!(e.contains("probes.samples[0].rtt_ms"), "{e}");
    }

    #[test]
    fn a_nul_anywhere_is_found_with_its_path() {
        assert_eq!(nul_in_json(r#"{"a":[{"b":"x\u0000y"}]}"#).as_deref(), Some("a[0].b"));
        assert_eq!(nul_in_json(r#"{"k\u0000":1}"#).as_deref(), Some("k\\u0000"));
        assert_eq!(nul_in_json(r#"{"a":"\\u0000 is text"}"#), None, "an escaped backslash");
        assert_eq!(nul_in_json(r#"{"a":"fine"}"#), None);
    }
}
