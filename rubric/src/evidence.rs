//! Evidence schema v1: what an agent reports, as JSON on the wire.
//!
//! A wire type is a contract. Timestamps are UTC (RFC 3339). Unknown extra fields are
//! accepted (a newer agent may add some); a report of another schema version is
//! rejected with a message that says which version was expected. Every report says
//! which checks ran and which were not configured, so missing evidence is never
//! mistaken for a passing check.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// One batch of evidence from one agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    /// Unique per report; the collector drops duplicates by this id.
    pub report_id: Uuid,
    pub agent_id: String,
    /// The unit (单位) the agent is enrolled for, e.g. "ningxia/yinchuan/xingqing".
    pub unit_id: String,
    /// Increases by one per report of the same agent.
    pub sequence: u64,
    pub created_at: DateTime<Utc>,
    pub host: HostFacts,
    /// Which checks ran in this batch and which are not configured.
    pub checks: Checks,
    #[serde(default)]
    pub probes: Probes,
    /// Outages of probe targets: down after consecutive misses, up on the first success.
    #[serde(default)]
    pub outages: Vec<Outage>,
    #[serde(default)]
    pub isolation: Vec<IsolationResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_check: Option<SelfCheck>,
    #[serde(default)]
    pub inventory: Vec<Observation>,
    #[serde(default)]
    pub services: Vec<ServiceCheck>,
    #[serde(default)]
    pub daily_checks: Vec<DailyCheck>,
    /// Hosts found bridging the private network without an agent on them.
    #[serde(default)]
    pub leaks: Vec<LeakFinding>,
    /// Why a check `failed`, for the bureau's IT staff.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<CheckProblem>,
    /// Reports of this agent with a lower `sequence` that were lost before delivery: pushed
    /// out of a full spool (oldest first), or held in memory while the disk could not be
    /// written and lost beyond its bound or at a crash. Cumulative, so that losing a report
    /// cannot hide a drop.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub spool_dropped: u64,
    /// Reports of this agent the collector refused for good (a 4xx other than 401/403/408/429)
    /// before this one; the agent keeps them aside in `spool/rejected/`. Cumulative like
    /// `spool_dropped`: between two reports, the gap in `sequence` is the increase of the two.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub spool_rejected: u64,
    /// Set only in the collector's daily roll-ups: how many reports this digest merges.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rollup_of: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A check that could not run as configured, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckProblem {
    /// The check, as named in `checks`: "reachability", "inventory", …
    pub check: String,
    pub message: String,
}

/// Facts about the agent's own host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostFacts {
    pub hostname: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_time: Option<DateTime<Utc>>,
    pub agent_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_started_at: Option<DateTime<Utc>>,
}

/// What happened to one kind of check in a report's batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// The check ran; its results are in the report.
    Ran,
    /// The agent's config does not enable it.
    NotConfigured,
    /// It should have run but could not (e.g. no CAP_NET_RAW); `problems` says why.
    Failed,
    /// Configured, but no round of it fell within this report's batch (a check that runs
    /// every five minutes is absent from most one-minute batches).
    NotDue,
}

/// The status of every check kind. All fields are required in v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checks {
    pub reachability: CheckStatus,
    pub isolation: CheckStatus,
    pub self_check: CheckStatus,
    pub inventory: CheckStatus,
    pub services: CheckStatus,
    pub daily: CheckStatus,
    pub leak_detection: CheckStatus,
}

impl Checks {
    /// Every check not configured: what an agent with an empty config reports.
    pub fn none_configured() -> Checks {
        Checks {
            reachability: CheckStatus::NotConfigured,
            isolation: CheckStatus::NotConfigured,
            self_check: CheckStatus::NotConfigured,
            inventory: CheckStatus::NotConfigured,
            services: CheckStatus::NotConfigured,
            daily: CheckStatus::NotConfigured,
            leak_detection: CheckStatus::NotConfigured,
        }
    }
}

/// Probe samples of one batch, with the schedule they were taken on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Probes {
    /// Seconds between rounds (default 30). A sample stands for the time until the
    /// next one; the rubric decides how long a gap may be before it counts as no data.
    #[serde(default = "default_interval")]
    pub interval_secs: u32,
    #[serde(default)]
    pub samples: Vec<ProbeSample>,
}

fn default_interval() -> u32 {
    30
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    Icmp,
    Tcp,
    Http,
}

/// What a probe target is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeRole {
    /// The private-network upstream (hub router, collector): 三.2 availability.
    Upstream,
    /// A registered device of the unit (三.1 machine-room availability).
    Device,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeSample {
    /// Address as configured: "10.1.0.1", "10.1.0.1:443", or a URL for http.
    pub target: String,
    pub kind: ProbeKind,
    pub role: ProbeRole,
    pub at: DateTime<Utc>,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Set only in the collector's daily roll-ups: this entry stands for a run of
    /// consecutive samples of the target with the same result, from `at` to `run.last`.
    /// Agents send single samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<SampleRun>,
}

/// A run of consecutive samples with the same result (roll-ups only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleRun {
    /// The time of the run's last sample.
    pub last: DateTime<Utc>,
    /// How many samples the run holds (at least 2).
    pub count: u32,
    /// The probe interval of the reports the samples came from, seconds.
    pub interval_secs: u32,
}

impl ProbeSample {
    /// The host part of the target (no port, no URL scheme or path).
    pub fn host(&self) -> &str {
        target_host(&self.target)
    }

    /// The time of the last sample this entry stands for.
    pub fn last_at(&self) -> DateTime<Utc> {
        self.run.map_or(self.at, |r| r.last)
    }

    /// How many samples this entry stands for.
    pub fn count(&self) -> u64 {
        self.run.map_or(1, |r| u64::from(r.count))
    }
}

/// The host part of a probe target: "10.0.0.1:443" → "10.0.0.1", "https://h:8443/x" → "h",
/// "[fd00::1]:443" → "fd00::1".
pub fn target_host(target: &str) -> &str {
    let t = target.split_once("://").map_or(target, |(_, rest)| rest);
    let t = t.split(['/', '?', '#']).next().unwrap_or(t);
    if let Some(rest) = t.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match t.rsplit_once(':') {
        // One colon: host:port. Several colons without brackets: a bare IPv6 address.
        Some((h, _)) if !h.contains(':') => h,
        _ => t,
    }
}

/// A target that was down: from the third consecutive miss (start = first miss) to the
/// first success. `end` is absent while the outage goes on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outage {
    pub target: String,
    pub start: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IsolationProtocol {
    Icmp,
    Tcp,
    Dns,
}

/// One attempt to reach an internet canary from the private LAN. All results of one
/// round share the same `at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsolationResult {
    pub at: DateTime<Utc>,
    pub canary: String,
    pub protocol: IsolationProtocol,
    /// True when the canary answered: an isolation breach.
    pub reached: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via_interface: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The dual-homed self-check of the agent's own host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelfCheck {
    pub at: DateTime<Utc>,
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub routes: Vec<Route>,
    pub ip_forwarding: bool,
    #[serde(default)]
    pub findings: Vec<SelfCheckFinding>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InterfaceKind {
    Ethernet,
    Wireless,
    Mobile,
    Ppp,
    Tun,
    Bridge,
    Veth,
    Loopback,
    Other,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    pub kind: InterfaceKind,
    pub up: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Addresses in CIDR form, e.g. "10.1.1.10/24".
    #[serde(default)]
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    /// "default" or a CIDR prefix.
    pub destination: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    pub interface: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The host bridges the private network and another network (三.4).
    Violation,
    /// Worth a look, not a violation by itself (e.g. a wireless NIC that is down).
    Warning,
    Info,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelfCheckFinding {
    /// Stable machine-readable code, e.g. "default_route_not_private", "ip_forwarding_on".
    pub code: String,
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    pub detail: String,
    /// Why it matters, for the bureau's IT staff.
    pub why_zh: String,
    pub why_en: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HowSeen {
    /// Answered the agent's ARP request.
    ArpSweep,
    /// Heard in ARP traffic of other hosts.
    PassiveArp,
    /// In the kernel's neighbour table.
    NeighbourTable,
    /// The agent's own host.
    Local,
}

/// A device seen on the LAN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub ip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    #[serde(default)]
    pub how: Vec<HowSeen>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    /// 应用系统
    App,
    /// 门户网站
    Portal,
}

/// An HTTP(S) check of an application system or portal site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceCheck {
    pub kind: ServiceKind,
    pub name: String,
    pub url: String,
    pub at: DateTime<Utc>,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_error: Option<String>,
}

/// The daily check record (日常检测记录) that 二.2 scores. A category that was not
/// checked is absent (`null`), which is different from checked with failures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DailyCheck {
    pub at: DateTime<Utc>,
    pub network: CategoryResult,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<CategoryResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apps: Option<CategoryResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portals: Option<CategoryResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryResult {
    pub checked: u32,
    pub failed: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<CheckFailure>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckFailure {
    pub target: String,
    pub error: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeakMethod {
    /// A spoofed-source probe's reply reached the internet-side listener.
    SpoofedSource,
    /// The host forwarded a frame addressed to it towards an internet canary.
    Forwarding,
}

/// A LAN host (without an agent) found bridging the private network and the internet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeakFinding {
    pub at: DateTime<Utc>,
    pub ip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    pub method: LeakMethod,
    /// "icmp", "tcp", "udp".
    pub protocol: String,
    pub detail: String,
}

/// A report that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("报告不是有效的 JSON (report is not valid JSON): {0}")]
    Json(String),
    #[error("报告缺少 schema_version 字段 (report has no schema_version; expected {expected})")]
    MissingVersion { expected: u32 },
    #[error(
        "不支持的报告格式版本 schema_version = {found}, 本程序需要 {expected} (unsupported schema_version {found}: expected {expected})"
    )]
    WrongVersion { found: String, expected: u32 },
    #[error("报告字段错误 (invalid report) at {path}: {message}")]
    Invalid { path: String, message: String },
}

impl Report {
    /// Reads one report, checking the schema version before anything else.
    pub fn from_json(text: &str) -> Result<Report, EvidenceError> {
        // The common case in one pass: a well-formed report of this schema version.
        if let Ok(r) = serde_json::from_str::<Report>(text)
            && r.schema_version == SCHEMA_VERSION
        {
            return Ok(r);
        }
        // Otherwise say precisely what is wrong: JSON, version, then field.
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| EvidenceError::Json(e.to_string()))?;
        check_version(&value)?;
        // Parsed again from the text so that an error names its line and column.
        serde_json::from_str(text).map_err(|e| EvidenceError::Invalid {
            path: format!("line {} column {}", e.line(), e.column()),
            message: e.to_string(),
        })
    }

    /// Reads one report from an already parsed JSON value.
    pub fn from_value(value: serde_json::Value) -> Result<Report, EvidenceError> {
        check_version(&value)?;
        serde_json::from_value(value).map_err(|e| EvidenceError::Invalid {
            path: String::from("report"),
            message: e.to_string(),
        })
    }

    /// Fields only the collector's roll-ups carry (`rollup_of`, a sample's `run`): an
    /// agent's report with them is refused, so that no agent can pass off a digest.
    pub fn rollup_fields(&self) -> Option<&'static str> {
        if self.rollup_of != 0 {
            return Some("rollup_of");
        }
        self.probes
            .samples
            .iter()
            .any(|s| s.run.is_some())
            .then_some("probes.samples[].run")
    }

    /// Whether the report carries nothing but spoofed-source leak findings (a leak
    /// listener's report, which may name any unit below the listener's own).
    pub fn is_leak_only(&self) -> bool {
        let c = &self.checks;
        let only_leak = [
            c.reachability,
            c.isolation,
            c.self_check,
            c.inventory,
            c.services,
            c.daily,
        ]
        .iter()
        .all(|s| *s == CheckStatus::NotConfigured);
        only_leak
            && self.problems.is_empty()
            && self.leaks.iter().all(|l| l.method == LeakMethod::SpoofedSource)
            && self.probes.samples.is_empty()
            && self.outages.is_empty()
            && self.isolation.is_empty()
            && self.self_check.is_none()
            && self.inventory.is_empty()
            && self.services.is_empty()
            && self.daily_checks.is_empty()
    }

    /// Reads a file's worth of reports: one report object, or an array of them.
    pub fn many_from_json(text: &str) -> Result<Vec<Report>, EvidenceError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| EvidenceError::Json(e.to_string()))?;
        match value {
            serde_json::Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    Report::from_value(v).map_err(|e| match e {
                        EvidenceError::Invalid { message, .. } => EvidenceError::Invalid {
                            path: format!("[{i}]"),
                            message,
                        },
                        other => EvidenceError::Invalid {
                            path: format!("[{i}]"),
                            message: other.to_string(),
                        },
                    })
                })
                .collect(),
            other => Ok(vec![Report::from_value(other)?]),
        }
    }

    /// Empty report of the current schema: every check not configured.
    pub fn empty(
        report_id: Uuid,
        agent_id: &str,
        unit_id: &str,
        sequence: u64,
        created_at: DateTime<Utc>,
        host: HostFacts,
    ) -> Report {
        Report {
            schema_version: SCHEMA_VERSION,
            report_id,
            agent_id: agent_id.to_string(),
            unit_id: unit_id.to_string(),
            sequence,
            created_at,
            host,
            checks: Checks::none_configured(),
            probes: Probes::default(),
            outages: Vec::new(),
            isolation: Vec::new(),
            self_check: None,
            inventory: Vec::new(),
            services: Vec::new(),
            daily_checks: Vec::new(),
            leaks: Vec::new(),
            problems: Vec::new(),
            spool_dropped: 0,
            spool_rejected: 0,
            rollup_of: 0,
        }
    }
}

fn check_version(value: &serde_json::Value) -> Result<(), EvidenceError> {
    match value.get("schema_version") {
        None => Err(EvidenceError::MissingVersion {
            expected: SCHEMA_VERSION,
        }),
        Some(v) if v.as_u64() == Some(u64::from(SCHEMA_VERSION)) => Ok(()),
        Some(v) => Err(EvidenceError::WrongVersion {
            found: v.to_string(),
            expected: SCHEMA_VERSION,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_host_strips_ports_schemes_and_paths() {
        assert_eq!(target_host("10.0.0.1"), "10.0.0.1");
        assert_eq!(target_host("10.0.0.1:443"), "10.0.0.1");
        assert_eq!(target_host("https://oa.example:8443/login?x=1"), "oa.example");
        assert_eq!(target_host("[fd00::1]:443"), "fd00::1");
        assert_eq!(target_host("fd00::1"), "fd00::1");
    }
}
