//! The config file as written: serde's view of `agent.toml`, with spans for messages.

use serde::Deserialize;
use toml::Spanned;

use super::{CanaryProtocol, Role, ServiceKind};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) unit_id: Option<String>,
    pub(super) agent_id: Option<String>,
    pub(super) state_dir: Option<String>,
    pub(super) collector: Option<RawCollector>,
    #[serde(default)]
    pub(super) schedule: RawSchedule,
    #[serde(default)]
    pub(super) reachability: RawReachability,
    #[serde(default)]
    pub(super) isolation: RawIsolation,
    #[serde(default)]
    pub(super) self_check: RawSelfCheck,
    #[serde(default)]
    pub(super) inventory: RawInventory,
    #[serde(default)]
    pub(super) services: Vec<RawService>,
    #[serde(default)]
    pub(super) spool: RawSpool,
    pub(super) timezone: Option<Spanned<String>>,
    pub(super) leak: Option<RawLeak>,
    pub(super) listener: Option<RawListener>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
    pub(super) address: Spanned<String>,
    pub(super) key: Spanned<String>,
    #[serde(default)]
    pub(super) units: Vec<String>,
    #[serde(default)]
    pub(super) interfaces: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLeak {
    pub(super) listener: Option<Spanned<String>>,
    pub(super) key: Spanned<String>,
    pub(super) tcp_port: Option<u16>,
    pub(super) udp_port: Option<u16>,
    pub(super) forward_to: Option<Vec<Spanned<String>>>,
    pub(super) max_pps: Option<Spanned<u32>>,
    pub(super) wait_ms: Option<Spanned<u64>>,
    pub(super) interval_secs: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCollector {
    pub(super) url: Spanned<String>,
    pub(super) ca_fingerprint: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSchedule {
    pub(super) probe_interval_secs: Option<Spanned<u64>>,
    pub(super) report_interval_secs: Option<Spanned<u64>>,
    pub(super) isolation_interval_secs: Option<Spanned<u64>>,
    pub(super) self_check_interval_secs: Option<Spanned<u64>>,
    pub(super) inventory_interval_secs: Option<Spanned<u64>>,
    pub(super) services_interval_secs: Option<Spanned<u64>>,
    pub(super) daily_check_at: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReachability {
    pub(super) timeout_ms: Option<Spanned<u64>>,
    pub(super) down_after_misses: Option<Spanned<u32>>,
    #[serde(default)]
    pub(super) targets: Vec<RawTarget>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    pub(super) name: Option<String>,
    pub(super) address: Spanned<String>,
    pub(super) kind: Spanned<String>,
    #[serde(default = "default_role")]
    pub(super) role: Role,
}

fn default_role() -> Role {
    Role::Upstream
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIsolation {
    pub(super) timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub(super) canaries: Vec<RawCanary>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCanary {
    pub(super) name: Option<String>,
    pub(super) address: Spanned<String>,
    #[serde(default = "all_protocols")]
    pub(super) protocols: Vec<CanaryProtocol>,
}

fn all_protocols() -> Vec<CanaryProtocol> {
    vec![CanaryProtocol::Icmp, CanaryProtocol::Tcp443, CanaryProtocol::Dns]
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSelfCheck {
    #[serde(default)]
    pub(super) private_prefixes: Vec<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInventory {
    #[serde(default)]
    pub(super) prefixes: Vec<Spanned<String>>,
    pub(super) interface: Option<String>,
    pub(super) max_pps: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    pub(super) kind: ServiceKind,
    pub(super) name: String,
    pub(super) url: Spanned<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSpool {
    pub(super) max_mib: Option<Spanned<u64>>,
    pub(super) memory_kib: Option<Spanned<u64>>,
}
