//! The one report assembler: what a round (`kaohe-agent once`) or a batch (the daemon)
//! gathered, with how each check went, becomes an evidence report (schema v1). The
//! status of each check follows from whether it is configured and how it went, the same
//! way for both. The leak listener's per-unit reports are made here too ([`heard`]).

use chrono::{DateTime, Utc};
use kaohe_rubric::evidence::{
    CheckProblem, CheckStatus, Checks, DailyCheck, IsolationResult, LeakFinding, Observation, Outage, ProbeSample,
    Report, SelfCheck, ServiceCheck,
};

use crate::config::Config;
use crate::platform;

/// Placeholder ids of an agent that has not enrolled yet.
pub const UNENROLLED: &str = "unenrolled";

/// How one kind of check went within a round or a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Outcome {
    /// No round of it fell within the batch.
    #[default]
    NotRun,
    /// It ran; its results are evidence.
    Ran,
    /// It could not do its job (say, no CAP_NET_RAW): its results are no evidence.
    Failed,
}

impl Outcome {
    /// `Failed` if `failed`, else `Ran`.
    pub fn of(failed: bool) -> Outcome {
        if failed { Outcome::Failed } else { Outcome::Ran }
    }

    /// Both outcomes of one batch: a failure stays a failure.
    pub fn and(self, other: Outcome) -> Outcome {
        match (self, other) {
            (Outcome::Failed, _) | (_, Outcome::Failed) => Outcome::Failed,
            (Outcome::Ran, _) | (_, Outcome::Ran) => Outcome::Ran,
            _ => Outcome::NotRun,
        }
    }

    fn status(self, configured: bool) -> CheckStatus {
        match (configured, self) {
            (false, _) => CheckStatus::NotConfigured,
            (true, Outcome::Failed) => CheckStatus::Failed,
            (true, Outcome::Ran) => CheckStatus::Ran,
            (true, Outcome::NotRun) => CheckStatus::NotDue,
        }
    }
}

/// How each check went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcomes {
    pub reachability: Outcome,
    pub isolation: Outcome,
    pub self_check: Outcome,
    pub inventory: Outcome,
    pub services: Outcome,
    pub daily: Outcome,
    pub leak_detection: Outcome,
}

/// What a round or a batch gathered: everything a report carries besides its header.
#[derive(Debug, Default)]
pub struct Evidence {
    pub outcomes: Outcomes,
    pub samples: Vec<ProbeSample>,
    pub outages: Vec<Outage>,
    pub isolation: Vec<IsolationResult>,
    pub self_check: Option<SelfCheck>,
    pub inventory: Vec<Observation>,
    pub services: Vec<ServiceCheck>,
    pub daily: Vec<DailyCheck>,
    pub leaks: Vec<LeakFinding>,
    pub problems: Vec<CheckProblem>,
}

impl Evidence {
    /// Records that `check` could not do its job, and why.
    pub fn problem(&mut self, check: &str, message: impl ToString) {
        self.problems.push(CheckProblem {
            check: check.into(),
            message: message.to_string(),
        });
    }
}

/// The report of `evidence`, gathered under `config` by an agent started at `started_at`.
/// Its sequence number is 0 until the spool gives it one.
pub fn assemble(config: &Config, started_at: DateTime<Utc>, evidence: Evidence) -> Report {
    let c = config;
    let o = evidence.outcomes;
    let mut r = Report::empty(
        uuid::Uuid::new_v4(),
        c.agent_id.as_deref().unwrap_or(UNENROLLED),
        c.unit_id.as_deref().unwrap_or(UNENROLLED),
        0,
        Utc::now(),
        platform::host_facts(started_at),
    );
    r.checks = Checks {
        reachability: o.reachability.status(!c.targets.is_empty()),
        isolation: o.isolation.status(!c.canaries.is_empty()),
        self_check: o.self_check.status(!c.private_prefixes.is_empty()),
        inventory: o.inventory.status(!c.inventory_prefixes.is_empty()),
        services: o.services.status(!c.services.is_empty()),
        daily: o.daily.status(!c.targets.is_empty()),
        leak_detection: o.leak_detection.status(c.leak.is_some()),
    };
    r.probes.interval_secs = c.schedule.probe_interval.as_secs().try_into().unwrap_or(u32::MAX);
    r.probes.samples = evidence.samples;
    r.outages = evidence.outages;
    r.isolation = evidence.isolation;
    r.self_check = evidence.self_check;
    r.inventory = evidence.inventory;
    r.services = evidence.services;
    r.daily_checks = evidence.daily;
    r.problems = evidence.problems;
    r.leaks = evidence.leaks;
    r
}

/// The leak listener's report for `unit`, whose agents' probes were answered by `leaks`:
/// leak detection ran, nothing else is the listener's to check.
pub fn heard(config: &Config, started_at: DateTime<Utc>, unit: &str, leaks: Vec<LeakFinding>) -> Report {
    let mut r = Report::empty(
        uuid::Uuid::new_v4(),
        config.agent_id.as_deref().unwrap_or(UNENROLLED),
        unit,
        0,
        Utc::now(),
        platform::host_facts(started_at),
    );
    r.checks.leak_detection = CheckStatus::Ran;
    r.leaks = leaks;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_follows_from_the_config_and_the_outcome() {
        for (configured, outcome, want) in [
            (false, Outcome::Ran, CheckStatus::NotConfigured),
            (false, Outcome::Failed, CheckStatus::NotConfigured),
            (true, Outcome::NotRun, CheckStatus::NotDue),
            (true, Outcome::Ran, CheckStatus::Ran),
            (true, Outcome::Failed, CheckStatus::Failed),
        ] {
            assert_eq!(outcome.status(configured), want, "{configured} {outcome:?}");
        }
        assert_eq!(Outcome::Ran.and(Outcome::Failed), Outcome::Failed);
        assert_eq!(Outcome::NotRun.and(Outcome::Ran), Outcome::Ran);
        assert_eq!(Outcome::default().and(Outcome::NotRun), Outcome::NotRun);
    }

    #[test]
    fn an_empty_config_reports_every_check_not_configured() {
        let c = Config::from_toml("", "(test)").expect("empty config");
        let r = assemble(&c, Utc::now(), Evidence::default());
        assert_eq!(r.checks, Checks::none_configured());
        assert_eq!(r.agent_id, UNENROLLED);
    }
}
