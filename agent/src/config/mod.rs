//! The agent's configuration (`agent.toml`), parsed and validated in one step: the typed
//! form here, the file as written in `raw`, the checks that turn one into the other in
//! `validate`.
//!
//! Every option is documented in `deploy/agent.example.toml`. An empty file is valid:
//! the agent then probes nothing and says so. Errors name the key and the line.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use chrono::NaiveTime;
use ipnet::{IpNet, Ipv4Net};
use serde::Deserialize;

mod raw;
mod validate;

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

/// Default state directory (spool, credential).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/kaohe-agent";

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
        let text = include_str!("../../../deploy/agent.example.toml");
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
