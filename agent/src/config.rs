//! The agent's configuration (`agent.toml`), parsed and validated in one step.
//!
//! Every option is documented in `deploy/agent.example.toml`. An empty file is valid:
//! the agent then probes nothing and says so. Errors name the key and the line.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use chrono::NaiveTime;
use ipnet::{IpNet, Ipv4Net};
use serde::Deserialize;
use toml::Spanned;

/// A config file that cannot be used. `kaohe-agent` exits 64 on it.
#[derive(Debug, thiserror::Error)]
#[error("配置文件 {file}{} 键 `{key}`: {message}", line.map(|l| format!(" 第 {l} 行 (line {l}),")).unwrap_or_default())]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

/// What a probe target is for (see the evidence schema's `ProbeRole`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Private-network upstream: hub router, collector (三.2).
    Upstream,
    /// A registered device of the unit, e.g. in the machine room (三.1).
    Device,
}

/// How a target is probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Icmp(IpAddr),
    Tcp(SocketAddr),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub probe: Probe,
    pub role: Role,
}

impl Target {
    /// The target as reports name it: "10.0.0.1" or "10.0.0.10:8443".
    pub fn address(&self) -> String {
        match self.probe {
            Probe::Icmp(ip) => ip.to_string(),
            Probe::Tcp(sa) => sa.to_string(),
        }
    }
}

/// A protocol used to try an internet canary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CanaryProtocol {
    /// ICMP echo.
    Icmp,
    /// TCP connect to port 443.
    Tcp443,
    /// A DNS query on UDP 53.
    Dns,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canary {
    pub name: String,
    pub ip: IpAddr,
    pub protocols: Vec<CanaryProtocol>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    App,
    Portal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub kind: ServiceKind,
    pub name: String,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collector {
    pub url: String,
    /// "sha256:…" of the collector's CA certificate; the agent pins it.
    pub ca_fingerprint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub probe_interval: Duration,
    pub report_interval: Duration,
    pub isolation_interval: Duration,
    pub self_check_interval: Duration,
    pub inventory_interval: Duration,
    pub services_interval: Duration,
    /// Local time of day of the daily check record (日常检测).
    pub daily_check_at: NaiveTime,
}

/// The typed configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub unit_id: Option<String>,
    pub agent_id: Option<String>,
    pub state_dir: PathBuf,
    pub collector: Option<Collector>,
    pub schedule: Schedule,
    pub probe_timeout: Duration,
    pub down_after_misses: u32,
    pub targets: Vec<Target>,
    pub isolation_timeout: Duration,
    pub canaries: Vec<Canary>,
    /// The private network's address space; the self-check runs when this is set.
    pub private_prefixes: Vec<IpNet>,
    pub inventory_prefixes: Vec<Ipv4Net>,
    pub inventory_interface: Option<String>,
    pub inventory_max_pps: u32,
    pub services: Vec<Service>,
    pub spool_max_bytes: u64,
    /// Reports held in memory while the spool cannot be written (e.g. a full disk), in bytes.
    pub spool_memory_bytes: u64,
    /// Time zone of `schedule.daily_check_at` and of calendar days (the unit's).
    pub timezone: chrono_tz::Tz,
    /// Agentless leak detection (`[leak]`); off unless configured.
    pub leak: Option<Leak>,
    /// The leak listener's side (`[listener]`, for `kaohe-agent listen`).
    pub listener: Option<Listener>,
}

/// `[listener]`: the internet-side leak listener that receives the answers to the agents'
/// spoofed-source probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// The listener's address: the spoofed source of the agents' probes.
    pub address: Ipv4Addr,
    /// The department's leak key (the agents' `[leak] key`).
    pub key: Vec<u8>,
    /// Units whose TCP probes to recognise (a SYN-ACK carries no unit); ICMP and UDP
    /// answers name their unit themselves.
    pub units: Vec<String>,
    /// Interfaces to capture on; empty: every interface that is up, except loopback.
    pub interfaces: Vec<String>,
}

/// `[leak]`: probes of the LAN hosts the inventory found, for paths to the internet that
/// bypass the private network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    /// The internet-side leak listener: the spoofed source of the spoofed-source probes.
    /// None: forwarding probes only.
    pub listener: Option<Ipv4Addr>,
    /// The department's leak key, shared with the listener (at least 16 bytes).
    pub key: Vec<u8>,
    pub tcp_port: u16,
    pub udp_port: u16,
    /// Internet addresses the forwarding probes are addressed to (default: the isolation
    /// canaries' IPv4 addresses).
    pub forward_to: Vec<Ipv4Addr>,
    /// Probe frames per second at most.
    pub max_pps: u32,
    /// How long to wait for answers after the last probe.
    pub wait: Duration,
    pub interval: Duration,
}

impl Config {
    /// Whether the config asks for any check at all.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
            && self.canaries.is_empty()
            && self.private_prefixes.is_empty()
            && self.inventory_prefixes.is_empty()
            && self.services.is_empty()
    }
}

// ---- the file as written -------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    unit_id: Option<String>,
    agent_id: Option<String>,
    state_dir: Option<String>,
    collector: Option<RawCollector>,
    #[serde(default)]
    schedule: RawSchedule,
    #[serde(default)]
    reachability: RawReachability,
    #[serde(default)]
    isolation: RawIsolation,
    #[serde(default)]
    self_check: RawSelfCheck,
    #[serde(default)]
    inventory: RawInventory,
    #[serde(default)]
    services: Vec<RawService>,
    #[serde(default)]
    spool: RawSpool,
    timezone: Option<Spanned<String>>,
    leak: Option<RawLeak>,
    listener: Option<RawListener>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    address: Spanned<String>,
    key: Spanned<String>,
    #[serde(default)]
    units: Vec<String>,
    #[serde(default)]
    interfaces: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLeak {
    listener: Option<Spanned<String>>,
    key: Spanned<String>,
    tcp_port: Option<u16>,
    udp_port: Option<u16>,
    forward_to: Option<Vec<Spanned<String>>>,
    max_pps: Option<Spanned<u32>>,
    wait_ms: Option<Spanned<u64>>,
    interval_secs: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCollector {
    url: Spanned<String>,
    ca_fingerprint: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    probe_interval_secs: Option<Spanned<u64>>,
    report_interval_secs: Option<Spanned<u64>>,
    isolation_interval_secs: Option<Spanned<u64>>,
    self_check_interval_secs: Option<Spanned<u64>>,
    inventory_interval_secs: Option<Spanned<u64>>,
    services_interval_secs: Option<Spanned<u64>>,
    daily_check_at: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawReachability {
    timeout_ms: Option<Spanned<u64>>,
    down_after_misses: Option<Spanned<u32>>,
    #[serde(default)]
    targets: Vec<RawTarget>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: Option<String>,
    address: Spanned<String>,
    kind: Spanned<String>,
    #[serde(default = "default_role")]
    role: Role,
}

fn default_role() -> Role {
    Role::Upstream
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawIsolation {
    timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    canaries: Vec<RawCanary>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCanary {
    name: Option<String>,
    address: Spanned<String>,
    #[serde(default = "all_protocols")]
    protocols: Vec<CanaryProtocol>,
}

fn all_protocols() -> Vec<CanaryProtocol> {
    vec![CanaryProtocol::Icmp, CanaryProtocol::Tcp443, CanaryProtocol::Dns]
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSelfCheck {
    #[serde(default)]
    private_prefixes: Vec<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    #[serde(default)]
    prefixes: Vec<Spanned<String>>,
    interface: Option<String>,
    max_pps: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    kind: ServiceKind,
    name: String,
    url: Spanned<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSpool {
    max_mib: Option<Spanned<u64>>,
    memory_kib: Option<Spanned<u64>>,
}

/// Checks `[leak]`. Addresses come from the config only; nothing is probed by default.
fn leak_section(
    ctx: &Ctx<'_>,
    l: &RawLeak,
    canaries: &[Canary],
    lan: &[Ipv4Net],
    private: &[IpNet],
) -> Result<Leak, ConfigError> {
    // The listener and the forwarding destinations are internet addresses: never the LAN,
    // the private network, or an address every host would take as its own.
    let ipv4 = |v: &Spanned<String>, key: &str| {
        let ip = v.get_ref().trim().parse::<Ipv4Addr>().map_err(|_| {
            ctx.err(
                v.span(),
                key,
                format!("“{}” 不是 IPv4 地址 (not an IPv4 address)", v.get_ref()),
            )
        })?;
        let special = ip.is_loopback() || ip.is_multicast() || ip.is_unspecified() || ip.is_broadcast();
        let inside = lan.iter().any(|n| n.contains(&ip)) || private.iter().any(|n| n.contains(&IpAddr::V4(ip)));
        if special || inside {
            return Err(ctx.err(
                v.span(),
                key,
                format!("{ip} 应为互联网侧地址, 不能是局域网、专网或特殊地址 (must be an internet address)"),
            ));
        }
        Ok(ip)
    };
    let listener = l.listener.as_ref().map(|v| ipv4(v, "leak.listener")).transpose()?;
    if l.key.get_ref().len() < 16 {
        return Err(ctx.err(
            l.key.span(),
            "leak.key",
            "密钥至少 16 个字符, 与泄漏监听端相同 (at least 16 characters, the same as the listener's)",
        ));
    }
    let forward_to = match &l.forward_to {
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, v)| ipv4(v, &format!("leak.forward_to[{i}]")))
            .collect::<Result<Vec<_>, _>>()?,
        None => canaries
            .iter()
            .filter_map(|c| match c.ip {
                IpAddr::V4(v) => Some(v),
                IpAddr::V6(_) => None,
            })
            .collect(),
    };
    let max_pps = match &l.max_pps {
        None => 100,
        Some(v) if (1..=10_000).contains(v.get_ref()) => *v.get_ref(),
        Some(v) => return Err(ctx.err(v.span(), "leak.max_pps", "应在 1 到 10000 之间 (must be 1..=10000)")),
    };
    Ok(Leak {
        listener,
        key: l.key.get_ref().as_bytes().to_vec(),
        tcp_port: l.tcp_port.unwrap_or(443),
        udp_port: l.udp_port.unwrap_or(33434),
        forward_to,
        max_pps,
        wait: ctx.millis(&l.wait_ms, "leak.wait_ms", 2000)?,
        interval: ctx.secs(&l.interval_secs, "leak.interval_secs", 3600, (1, DAY))?,
    })
}

/// Default state directory (spool, credential).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/kaohe-agent";

/// The longest probe and report interval: what the collector accepts
/// (`kaohe_rubric::bounds::MAX_PROBE_INTERVAL_SECS`).
const HOUR: u64 = kaohe_rubric::bounds::MAX_PROBE_INTERVAL_SECS as u64;

/// The longest interval of the other schedules.
const DAY: u64 = 86_400;

struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    fn line(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())].matches('\n').count() + 1
    }

    fn err(&self, span: std::ops::Range<usize>, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            line: Some(self.line(span.start)),
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// Seconds in `min..=max`.
    fn secs(
        &self,
        v: &Option<Spanned<u64>>,
        key: &str,
        default: u64,
        (min, max): (u64, u64),
    ) -> Result<Duration, ConfigError> {
        match v {
            None => Ok(Duration::from_secs(default)),
            Some(s) if (min..=max).contains(s.get_ref()) => Ok(Duration::from_secs(*s.get_ref())),
            Some(s) => Err(self.err(
                s.span(),
                key,
                format!("应在 {min} 到 {max} 秒之间 (must be {min}..={max} s)"),
            )),
        }
    }

    fn millis(&self, v: &Option<Spanned<u64>>, key: &str, default: u64) -> Result<Duration, ConfigError> {
        match v {
            None => Ok(Duration::from_millis(default)),
            Some(s) if (10..=60_000).contains(s.get_ref()) => Ok(Duration::from_millis(*s.get_ref())),
            Some(s) => Err(self.err(s.span(), key, "应在 10 到 60000 毫秒之间 (must be 10..=60000 ms)")),
        }
    }
}

impl Config {
    /// Parses `text`; `file` names it in errors.
    pub fn from_toml(text: &str, file: &str) -> Result<Config, ConfigError> {
        let ctx = Ctx { file, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let message = e.message().trim().to_string();
            // The key: named by serde (unknown field), or written on the line the error
            // points at (a value of the wrong type).
            let key_on_line = e.span().and_then(|sp| {
                let start = text[..sp.start.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
                let line = text[start..].lines().next()?;
                let (k, _) = line.split_once('=')?;
                let k = k.trim();
                (!k.is_empty() && !k.starts_with('#') && !k.starts_with('[')).then(|| k.to_string())
            });
            let key = message
                .split_once("field `")
                .and_then(|(_, r)| r.split_once('`'))
                .map(|(f, _)| f.to_string())
                .or(key_on_line)
                .unwrap_or_else(|| "-".into());
            let line = e.span().map(|s| {
                // Point at the offending key's own line when serde names it.
                let from = s.start.min(text.len());
                text[from..]
                    .lines()
                    .position(|l| {
                        let t = l.trim_start();
                        t.starts_with(key.as_str()) && t[key.len()..].trim_start().starts_with('=')
                    })
                    .map_or(ctx.line(s.start), |i| ctx.line(s.start) + i)
            });
            ConfigError {
                file: file.to_string(),
                line,
                key,
                message,
            }
        })?;

        let collector = match raw.collector {
            None => None,
            Some(c) => {
                let url = c.url.get_ref().trim().to_string();
                if !url.starts_with("https://") {
                    return Err(ctx.err(
                        c.url.span(),
                        "collector.url",
                        "采集中心地址必须是 https:// (the collector is reached over TLS only)",
                    ));
                }
                let ca_fingerprint = match c.ca_fingerprint {
                    None => None,
                    Some(f) => {
                        let hex = f.get_ref().trim().trim_start_matches("sha256:").replace(':', "");
                        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                            return Err(ctx.err(
                                f.span(),
                                "collector.ca_fingerprint",
                                "应为 sha256:后跟 64 位十六进制 (expected sha256:<64 hex digits>)",
                            ));
                        }
                        Some(format!("sha256:{}", hex.to_lowercase()))
                    }
                };
                Some(Collector { url, ca_fingerprint })
            }
        };

        let s = &raw.schedule;
        let daily_check_at = match &s.daily_check_at {
            None => NaiveTime::from_hms_opt(9, 0, 0).unwrap_or_default(),
            Some(t) => NaiveTime::parse_from_str(t.get_ref().trim(), "%H:%M").map_err(|_| {
                ctx.err(
                    t.span(),
                    "schedule.daily_check_at",
                    "应为 HH:MM, 如 \"09:00\" (expected HH:MM)",
                )
            })?,
        };
        let schedule = Schedule {
            probe_interval: ctx.secs(&s.probe_interval_secs, "schedule.probe_interval_secs", 30, (1, HOUR))?,
            report_interval: ctx.secs(&s.report_interval_secs, "schedule.report_interval_secs", 60, (1, HOUR))?,
            isolation_interval: ctx.secs(
                &s.isolation_interval_secs,
                "schedule.isolation_interval_secs",
                300,
                (1, DAY),
            )?,
            self_check_interval: ctx.secs(
                &s.self_check_interval_secs,
                "schedule.self_check_interval_secs",
                300,
                (1, DAY),
            )?,
            inventory_interval: ctx.secs(
                &s.inventory_interval_secs,
                "schedule.inventory_interval_secs",
                600,
                (1, DAY),
            )?,
            services_interval: ctx.secs(
                &s.services_interval_secs,
                "schedule.services_interval_secs",
                300,
                (1, DAY),
            )?,
            daily_check_at,
        };

        let mut targets = Vec::new();
        for (i, t) in raw.reachability.targets.iter().enumerate() {
            let key = format!("reachability.targets[{i}]");
            let addr = t.address.get_ref().trim();
            let probe = match t.kind.get_ref().as_str() {
                "icmp" => Probe::Icmp(addr.parse().map_err(|_| {
                    ctx.err(
                        t.address.span(),
                        &format!("{key}.address"),
                        format!("“{addr}” 不是 IP 地址 (icmp targets are IP addresses)"),
                    )
                })?),
                "tcp" => Probe::Tcp(addr.parse().map_err(|_| {
                    ctx.err(
                        t.address.span(),
                        &format!("{key}.address"),
                        format!("“{addr}” 应为 IP:端口, 如 10.0.0.10:8443 (tcp targets are IP:port)"),
                    )
                })?),
                other => {
                    return Err(ctx.err(
                        t.kind.span(),
                        &format!("{key}.kind"),
                        format!("未知探测方式 “{other}”, 应为 icmp 或 tcp (expected icmp or tcp)"),
                    ));
                }
            };
            targets.push(Target {
                name: t.name.clone().unwrap_or_else(|| addr.to_string()),
                probe,
                role: t.role,
            });
        }
        let down_after_misses = match &raw.reachability.down_after_misses {
            None => 3,
            Some(v) if (1..=100).contains(v.get_ref()) => *v.get_ref(),
            Some(v) => {
                return Err(ctx.err(
                    v.span(),
                    "reachability.down_after_misses",
                    "应在 1 到 100 之间 (must be 1..=100)",
                ));
            }
        };

        let mut canaries = Vec::new();
        for (i, c) in raw.isolation.canaries.iter().enumerate() {
            let addr = c.address.get_ref().trim();
            let ip: IpAddr = addr.parse().map_err(|_| {
                ctx.err(
                    c.address.span(),
                    &format!("isolation.canaries[{i}].address"),
                    format!("“{addr}” 不是 IP 地址 (a canary is an IP address)"),
                )
            })?;
            if c.protocols.is_empty() {
                return Err(ctx.err(
                    c.address.span(),
                    &format!("isolation.canaries[{i}].protocols"),
                    "至少需要一种协议 (at least one protocol)",
                ));
            }
            canaries.push(Canary {
                name: c.name.clone().unwrap_or_else(|| addr.to_string()),
                ip,
                protocols: c.protocols.clone(),
            });
        }

        let private_prefixes = raw
            .self_check
            .private_prefixes
            .iter()
            .enumerate()
            .map(|(i, p)| {
                p.get_ref().trim().parse::<IpNet>().map_err(|_| {
                    ctx.err(
                        p.span(),
                        &format!("self_check.private_prefixes[{i}]"),
                        format!("“{}” 不是网段, 应如 10.0.0.0/8 (expected a CIDR prefix)", p.get_ref()),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut inventory_prefixes = Vec::new();
        for (i, p) in raw.inventory.prefixes.iter().enumerate() {
            let key = format!("inventory.prefixes[{i}]");
            let net: Ipv4Net = p.get_ref().trim().parse().map_err(|_| {
                ctx.err(
                    p.span(),
                    &key,
                    format!(
                        "“{}” 不是 IPv4 网段, 应如 10.1.0.0/24 (expected an IPv4 CIDR prefix)",
                        p.get_ref()
                    ),
                )
            })?;
            if net.prefix_len() < 16 {
                return Err(ctx.err(
                    p.span(),
                    &key,
                    "网段过大: 最大 /16 (at most a /16, 65536 addresses, per prefix)",
                ));
            }
            inventory_prefixes.push(net.trunc());
        }
        let inventory_max_pps = match &raw.inventory.max_pps {
            None => 500,
            Some(v) if (1..=100_000).contains(v.get_ref()) => *v.get_ref(),
            Some(v) => {
                return Err(ctx.err(
                    v.span(),
                    "inventory.max_pps",
                    "应在 1 到 100000 之间 (must be 1..=100000)",
                ));
            }
        };

        let mut services = Vec::new();
        for (i, s) in raw.services.iter().enumerate() {
            let url = s.url.get_ref().trim();
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ctx.err(
                    s.url.span(),
                    &format!("services[{i}].url"),
                    format!("“{url}” 应以 http:// 或 https:// 开头 (must be an http(s) URL)"),
                ));
            }
            services.push(Service {
                kind: s.kind,
                name: s.name.clone(),
                url: url.to_string(),
            });
        }
        let spool_max_bytes = match &raw.spool.max_mib {
            None => 256 << 20,
            Some(v) if (1..=1_048_576).contains(v.get_ref()) => v.get_ref() << 20,
            Some(v) => {
                return Err(ctx.err(
                    v.span(),
                    "spool.max_mib",
                    "应在 1 到 1048576 (1 TiB) 之间 (must be 1..=1048576)",
                ));
            }
        };
        let spool_memory_bytes = match &raw.spool.memory_kib {
            None => crate::spool::DEFAULT_MEMORY_BYTES,
            Some(v) if (1..=1_048_576).contains(v.get_ref()) => v.get_ref() << 10,
            Some(v) => {
                return Err(ctx.err(
                    v.span(),
                    "spool.memory_kib",
                    "应在 1 到 1048576 (1 GiB) 之间 (must be 1..=1048576)",
                ));
            }
        };

        let timezone = match &raw.timezone {
            None => chrono_tz::Asia::Shanghai,
            Some(t) => t.get_ref().trim().parse().map_err(|_| {
                ctx.err(
                    t.span(),
                    "timezone",
                    format!(
                        "未知时区 “{}”, 应如 Asia/Shanghai (unknown IANA time zone)",
                        t.get_ref()
                    ),
                )
            })?,
        };
        let leak = match &raw.leak {
            None => None,
            Some(l) => Some(leak_section(
                &ctx,
                l,
                &canaries,
                &inventory_prefixes,
                &private_prefixes,
            )?),
        };
        let listener = match &raw.listener {
            None => None,
            Some(l) => {
                let address = l.address.get_ref().trim().parse::<Ipv4Addr>().map_err(|_| {
                    ctx.err(
                        l.address.span(),
                        "listener.address",
                        format!("“{}” 不是 IPv4 地址 (not an IPv4 address)", l.address.get_ref()),
                    )
                })?;
                if l.key.get_ref().len() < 16 {
                    return Err(ctx.err(
                        l.key.span(),
                        "listener.key",
                        "密钥至少 16 个字符, 与各代理 [leak] key 相同 (at least 16 characters, the agents' key)",
                    ));
                }
                Some(Listener {
                    address,
                    key: l.key.get_ref().as_bytes().to_vec(),
                    units: l.units.clone(),
                    interfaces: l.interfaces.clone(),
                })
            }
        };
        Ok(Config {
            listener,
            leak,
            timezone,
            unit_id: raw.unit_id,
            agent_id: raw.agent_id,
            state_dir: PathBuf::from(raw.state_dir.unwrap_or_else(|| DEFAULT_STATE_DIR.into())),
            collector,
            schedule,
            probe_timeout: ctx.millis(&raw.reachability.timeout_ms, "reachability.timeout_ms", 1000)?,
            down_after_misses,
            targets,
            isolation_timeout: ctx.millis(&raw.isolation.timeout_ms, "isolation.timeout_ms", 1000)?,
            canaries,
            private_prefixes,
            inventory_prefixes,
            inventory_interface: raw.inventory.interface,
            inventory_max_pps,
            services,
            spool_max_bytes,
            spool_memory_bytes,
        })
    }
}

/// What a config will check, in Chinese, for `check-config`.
pub fn describe_zh(c: &Config) -> String {
    if c.is_empty() {
        return "未配置任何检测: 代理不会探测任何目标 (empty config: nothing will be probed)".into();
    }
    let mut l = Vec::new();
    l.push(format!(
        "单位 unit_id: {}  代理 agent_id: {}",
        c.unit_id.as_deref().unwrap_or("(未注册)"),
        c.agent_id.as_deref().unwrap_or("(未注册)")
    ));
    match &c.collector {
        Some(col) => l.push(format!("采集中心: {}", col.url)),
        None => l.push("采集中心: 未配置 (报告只保存在本地队列)".into()),
    }
    l.push(format!(
        "专网探测: {} 个目标, 每 {} 秒一次, 连续 {} 次失败判定中断",
        c.targets.len(),
        c.schedule.probe_interval.as_secs(),
        c.down_after_misses
    ));
    for t in &c.targets {
        let role = match t.role {
            Role::Upstream => "专网上游",
            Role::Device => "设备",
        };
        let how = match t.probe {
            Probe::Icmp(_) => "ICMP",
            Probe::Tcp(_) => "TCP",
        };
        l.push(format!("  {} {} ({role}, {how})", t.name, t.address()));
    }
    l.push(format!(
        "互联网隔离: {} 个探针, 每 {} 秒一次",
        c.canaries.len(),
        c.schedule.isolation_interval.as_secs()
    ));
    l.push(if c.private_prefixes.is_empty() {
        "本机双网卡自检: 未配置 (需要 self_check.private_prefixes)".into()
    } else {
        format!(
            "本机双网卡自检: 专网地址 {:?}",
            c.private_prefixes.iter().map(ToString::to_string).collect::<Vec<_>>()
        )
    });
    l.push(format!(
        "设备清点: {} 个网段, 每秒至多 {} 个 ARP 请求",
        c.inventory_prefixes.len(),
        c.inventory_max_pps
    ));
    l.push(match &c.leak {
        None => "无代理泄漏检测: 未启用 ([leak])".to_string(),
        Some(k) => format!(
            "无代理泄漏检测: 每 {} 秒 (随设备清点), 伪造源地址探测{}, 转发探测目标 {} 个, 最多每秒 {} 帧",
            k.interval.as_secs(),
            k.listener.map_or(" 未启用 (未配置 listener)".to_string(), |l| format!(
                " 以 {l} 为源"
            )),
            k.forward_to.len(),
            k.max_pps
        ),
    });
    if c.leak.is_some() && c.inventory_prefixes.is_empty() {
        l.push("提示: 泄漏检测只探测清点到的在线主机, 需要 [inventory] prefixes, 否则不会发送任何探测 (leak detection needs inventory prefixes)".into());
    }
    l.push(format!("应用系统与门户网站: {} 个", c.services.len()));
    l.push(format!(
        "日常检测时间: 每天 {} ({})",
        c.schedule.daily_check_at.format("%H:%M"),
        c.timezone.name()
    ));
    if !c.targets.iter().any(|t| t.role == Role::Device) {
        l.push("提示: 未配置 role = \"device\" 的目标 (如机房设备), 日常检测记录中没有\"设备\"一项; 若单位备案了设备, 二.2 会因此失分, 三.1 也无法检测机房设备 (no device targets: the daily record will lack devices)".into());
    }
    if c.services.is_empty() {
        l.push(
            "提示: 未配置应用系统或门户网站; 若单位备案了它们, 二.2 会因缺少检测失分 (no services configured)".into(),
        );
    }
    l.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_a_config_that_probes_nothing() {
        let c = Config::from_toml("", "agent.toml").expect("valid");
        assert!(c.is_empty());
        assert_eq!(c.schedule.probe_interval, Duration::from_secs(30));
        assert_eq!(c.down_after_misses, 3);
        assert_eq!(c.spool_max_bytes, 256 << 20);
        assert_eq!(c.spool_memory_bytes, 1 << 20);
    }

    #[test]
    fn shipped_example_is_valid_and_uses_only_documentation_or_lab_addresses() {
        let text = include_str!("../../deploy/agent.example.toml");
        let c = Config::from_toml(text, "agent.example.toml").expect("example is valid");
        assert!(!c.is_empty());
        for t in &c.targets {
            let ip = match t.probe {
                Probe::Icmp(ip) => ip,
                Probe::Tcp(sa) => sa.ip(),
            };
            assert!(ip.to_string().starts_with("192.0.2."), "{ip}");
        }
        for k in &c.canaries {
            let s = k.ip.to_string();
            assert!(s.starts_with("198.51.100.") || s.starts_with("203.0.113."), "{s}");
        }
        let leak = c.leak.expect("the example documents [leak]");
        assert_eq!(leak.listener.map(|l| l.to_string()).as_deref(), Some("203.0.113.99"));
        assert_eq!(leak.forward_to.len(), 2, "defaults to the isolation canaries");
        assert_eq!((leak.tcp_port, leak.udp_port, leak.max_pps), (443, 33434, 100));
    }

    #[test]
    fn a_leak_section_is_checked_by_key_and_line() {
        let e = Config::from_toml("[leak]\nkey = \"short\"\n", "a.toml").expect_err("short key");
        assert_eq!((e.line, e.key.as_str()), (Some(2), "leak.key"), "{e}");
        let e = Config::from_toml(
            "[leak]\nkey = \"0123456789abcdef\"\nlistener = \"not-an-ip\"\n",
            "a.toml",
        )
        .expect_err("bad listener");
        assert_eq!((e.line, e.key.as_str()), (Some(3), "leak.listener"), "{e}");
        let e = Config::from_toml(
            "[inventory]\nprefixes = [\"10.1.0.0/24\"]\n[leak]\nkey = \"0123456789abcdef\"\nlistener = \"10.1.0.99\"\n",
            "a.toml",
        )
        .expect_err("a LAN address as the listener");
        assert_eq!(e.key, "leak.listener", "{e}");
        let c = Config::from_toml("", "a.toml").expect("empty");
        assert!(c.leak.is_none(), "an empty config probes nothing");
    }

    #[test]
    fn errors_name_the_key_and_line() {
        let e = Config::from_toml(
            "[reachability]\ntimeout_ms = 100\n\n[[reachability.targets]]\naddress = \"10.0.0.300\"\nkind = \"icmp\"\n",
            "a.toml",
        )
        .expect_err("bad ip");
        assert_eq!(
            (e.line, e.key.as_str()),
            (Some(5), "reachability.targets[0].address"),
            "{e}"
        );
        let e =
            Config::from_toml("[inventory]\nprefixes = [\"10.1.0.0/24\"]\nmax_ppss = 3\n", "a.toml").expect_err("typo");
        assert_eq!((e.line, e.key.as_str()), (Some(3), "max_ppss"), "{e}");
        let e = Config::from_toml("[collector]\nurl = \"http://192.0.2.1\"\n", "a.toml").expect_err("plaintext");
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.to_string().contains("https://"), "{e}");
        let e = Config::from_toml("[schedule]\nprobe_interval_secs = \"30\"\n", "a.toml").expect_err("type");
        assert_eq!((e.line, e.key.as_str()), (Some(2), "probe_interval_secs"), "{e}");
        let e = Config::from_toml(
            "[[reachability.targets]]\naddress = \"10.0.0.1\"\nkind = \"icmp\"\nrole = \"router\"\n",
            "a.toml",
        )
        .expect_err("enum");
        assert_eq!((e.line, e.key.as_str()), (Some(4), "role"), "{e}");
        let e = Config::from_toml("[spool]\nmax_mib = 17592186044416\n", "a.toml").expect_err("too big");
        assert_eq!(e.key, "spool.max_mib", "{e}");
        let e = Config::from_toml("timezone = \"Mars/Base\"\n", "a.toml").expect_err("tz");
        assert_eq!((e.line, e.key.as_str()), (Some(1), "timezone"), "{e}");
    }
}
