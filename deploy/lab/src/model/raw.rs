//! The lab file as TOML says it, before any reference is resolved ([`super::resolve`]
//! turns it into a [`super::Description`]).

use std::net::Ipv4Addr;

use serde::Deserialize;

use super::{AppKind, CanaryProtocol, TargetProbe, VirtualKind};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) version: u32,
    pub(super) lab: RawLab,
    pub(super) collector: RawCollector,
    pub(super) agent: RawAgent,
    pub(super) flap: RawFlap,
    #[serde(default)]
    pub(super) canary: Vec<RawCanary>,
    #[serde(default)]
    pub(super) segment: Vec<RawSegment>,
    #[serde(default)]
    pub(super) bureau: Vec<RawBureau>,
    #[serde(default)]
    pub(super) host: Vec<RawHost>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLab {
    pub(super) default_prefix: String,
    pub(super) root_host: String,
    pub(super) root_pool: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCollector {
    pub(super) host: String,
    pub(super) scheme: String,
    pub(super) port: u16,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAgent {
    pub(super) interval_secs: u32,
    pub(super) private_prefixes: Vec<String>,
    #[serde(default)]
    pub(super) targets: Vec<RawTarget>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    pub(super) name: String,
    pub(super) host: String,
    pub(super) probes: Vec<TargetProbe>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFlap {
    pub(super) segment: String,
    pub(super) host: String,
    pub(super) period_secs: u32,
    pub(super) down_secs: u32,
    #[serde(default)]
    pub(super) autostart: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCanary {
    pub(super) name: String,
    pub(super) host: String,
    pub(super) ip: Ipv4Addr,
    pub(super) protocols: Vec<CanaryProtocol>,
    #[serde(default)]
    pub(super) leak: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSegment {
    pub(super) name: String,
    #[serde(default)]
    pub(super) internet: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBureau {
    pub(super) id: u8,
    pub(super) unit_id: String,
    pub(super) name: String,
    pub(super) lan: String,
    pub(super) gateway: String,
    pub(super) agent: String,
    #[serde(default)]
    pub(super) app: Vec<RawApp>,
    #[serde(default)]
    pub(super) stale: Vec<RawStale>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApp {
    pub(super) kind: AppKind,
    pub(super) name: String,
    pub(super) url: String,
    pub(super) user: String,
    pub(super) location: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStale {
    pub(super) name: String,
    pub(super) ip: Ipv4Addr,
    pub(super) mac: String,
    pub(super) user: String,
    pub(super) location: String,
    #[serde(default)]
    pub(super) room: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHost {
    pub(super) name: String,
    #[serde(default)]
    pub(super) bureau: Option<u8>,
    pub(super) role: String,
    pub(super) nics: Vec<RawNic>,
    #[serde(default)]
    pub(super) gateway: Option<Ipv4Addr>,
    #[serde(default)]
    pub(super) routes: Vec<String>,
    #[serde(default)]
    pub(super) forwarding: bool,
    #[serde(default, rename = "virtual")]
    pub(super) virtuals: Vec<RawVirtual>,
    #[serde(default)]
    pub(super) serve: Vec<String>,
    #[serde(default)]
    pub(super) registry: Option<RawRegistry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNic {
    pub(super) seg: String,
    pub(super) ip: String,
    #[serde(default)]
    pub(super) dev: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVirtual {
    pub(super) kind: VirtualKind,
    pub(super) dev: String,
    pub(super) ip: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRegistry {
    pub(super) name: String,
    pub(super) user: String,
    pub(super) location: String,
    #[serde(default)]
    pub(super) room: bool,
}
