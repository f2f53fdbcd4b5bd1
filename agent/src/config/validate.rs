//! From the file as written to the typed config: every value checked, every error naming
//! its key and line.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use chrono::NaiveTime;
use ipnet::{IpNet, Ipv4Net};
use toml::Spanned;

use super::raw::*;
use super::*;

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
    fn err(&self, span: std::ops::Range<usize>, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            line: Some(kaohe_rubric::toml_error::line_of(self.text, span.start)),
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

    /// A number in `range`, or `default` when absent.
    fn within<T: Copy + PartialOrd>(
        &self,
        v: &Option<Spanned<T>>,
        key: &str,
        default: T,
        range: std::ops::RangeInclusive<T>,
        message: &str,
    ) -> Result<T, ConfigError> {
        match v {
            None => Ok(default),
            Some(s) if range.contains(s.get_ref()) => Ok(*s.get_ref()),
            Some(s) => Err(self.err(s.span(), key, message)),
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
            let at = kaohe_rubric::toml_error::locate(text, &e);
            ConfigError {
                file: file.to_string(),
                line: at.line,
                key: at.key.unwrap_or_else(|| "-".into()),
                message: at.message,
            }
        })?;
        // In the order of the file's sections, so the first mistake is the one named.
        let collector = raw.collector.as_ref().map(|c| collector(&ctx, c)).transpose()?;
        let schedule = schedule(&ctx, &raw.schedule)?;
        let targets = targets(&ctx, &raw.reachability.targets)?;
        let down_after_misses = ctx.within(
            &raw.reachability.down_after_misses,
            "reachability.down_after_misses",
            3,
            1..=100,
            "应在 1 到 100 之间 (must be 1..=100)",
        )?;
        let canaries = canaries(&ctx, &raw.isolation)?;
        let private_prefixes = private_prefixes(&ctx, &raw.self_check)?;
        let inventory_prefixes = inventory_prefixes(&ctx, &raw.inventory)?;
        let inventory_max_pps = ctx.within(
            &raw.inventory.max_pps,
            "inventory.max_pps",
            500,
            1..=100_000,
            "应在 1 到 100000 之间 (must be 1..=100000)",
        )?;
        let services = services(&ctx, &raw.services)?;
        let (spool_max_bytes, spool_memory_bytes) = spool(&ctx, &raw.spool)?;
        let timezone = timezone(&ctx, raw.timezone.as_ref())?;
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
        let listener = raw.listener.as_ref().map(|l| listener(&ctx, l)).transpose()?;
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

fn collector(ctx: &Ctx<'_>, c: &RawCollector) -> Result<Collector, ConfigError> {
    let url = c.url.get_ref().trim().to_string();
    if !url.starts_with("https://") {
        return Err(ctx.err(
            c.url.span(),
            "collector.url",
            "采集中心地址必须是 https:// (the collector is reached over TLS only)",
        ));
    }
    let ca_fingerprint = match &c.ca_fingerprint {
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
    Ok(Collector { url, ca_fingerprint })
}

fn schedule(ctx: &Ctx<'_>, s: &RawSchedule) -> Result<Schedule, ConfigError> {
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
    let secs = |v, key, default, range| ctx.secs(v, key, default, range);
    Ok(Schedule {
        probe_interval: secs(&s.probe_interval_secs, "schedule.probe_interval_secs", 30, (1, HOUR))?,
        report_interval: secs(&s.report_interval_secs, "schedule.report_interval_secs", 60, (1, HOUR))?,
        isolation_interval: secs(
            &s.isolation_interval_secs,
            "schedule.isolation_interval_secs",
            300,
            (1, DAY),
        )?,
        self_check_interval: secs(
            &s.self_check_interval_secs,
            "schedule.self_check_interval_secs",
            300,
            (1, DAY),
        )?,
        inventory_interval: secs(
            &s.inventory_interval_secs,
            "schedule.inventory_interval_secs",
            600,
            (1, DAY),
        )?,
        services_interval: secs(
            &s.services_interval_secs,
            "schedule.services_interval_secs",
            300,
            (1, DAY),
        )?,
        daily_check_at,
    })
}

fn targets(ctx: &Ctx<'_>, raw: &[RawTarget]) -> Result<Vec<Target>, ConfigError> {
    let mut targets = Vec::new();
    for (i, t) in raw.iter().enumerate() {
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
    Ok(targets)
}

fn canaries(ctx: &Ctx<'_>, raw: &RawIsolation) -> Result<Vec<Canary>, ConfigError> {
    let mut canaries = Vec::new();
    for (i, c) in raw.canaries.iter().enumerate() {
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
    Ok(canaries)
}

fn private_prefixes(ctx: &Ctx<'_>, raw: &RawSelfCheck) -> Result<Vec<IpNet>, ConfigError> {
    raw.private_prefixes
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
        .collect()
}

fn inventory_prefixes(ctx: &Ctx<'_>, raw: &RawInventory) -> Result<Vec<Ipv4Net>, ConfigError> {
    let mut out = Vec::new();
    for (i, p) in raw.prefixes.iter().enumerate() {
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
        out.push(net.trunc());
    }
    Ok(out)
}

fn services(ctx: &Ctx<'_>, raw: &[RawService]) -> Result<Vec<Service>, ConfigError> {
    let mut services = Vec::new();
    for (i, s) in raw.iter().enumerate() {
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
    Ok(services)
}

/// The spool's size on disk and in memory, in bytes.
fn spool(ctx: &Ctx<'_>, raw: &RawSpool) -> Result<(u64, u64), ConfigError> {
    let max_mib = ctx.within(
        &raw.max_mib,
        "spool.max_mib",
        256,
        1..=1_048_576,
        "应在 1 到 1048576 (1 TiB) 之间 (must be 1..=1048576)",
    )?;
    let memory_bytes = match &raw.memory_kib {
        None => crate::spool::DEFAULT_MEMORY_BYTES,
        Some(_) => {
            ctx.within(
                &raw.memory_kib,
                "spool.memory_kib",
                0,
                1..=1_048_576,
                "应在 1 到 1048576 (1 GiB) 之间 (must be 1..=1048576)",
            )? << 10
        }
    };
    Ok((max_mib << 20, memory_bytes))
}

fn timezone(ctx: &Ctx<'_>, raw: Option<&Spanned<String>>) -> Result<chrono_tz::Tz, ConfigError> {
    match raw {
        None => Ok(chrono_tz::Asia::Shanghai),
        Some(t) => t.get_ref().trim().parse().map_err(|_| {
            ctx.err(
                t.span(),
                "timezone",
                format!(
                    "未知时区 “{}”, 应如 Asia/Shanghai (unknown IANA time zone)",
                    t.get_ref()
                ),
            )
        }),
    }
}

fn listener(ctx: &Ctx<'_>, l: &RawListener) -> Result<Listener, ConfigError> {
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
    Ok(Listener {
        address,
        key: l.key.get_ref().as_bytes().to_vec(),
        units: l.units.clone(),
        interfaces: l.interfaces.clone(),
    })
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
    let max_pps = ctx.within(
        &l.max_pps,
        "leak.max_pps",
        100,
        1..=10_000,
        "应在 1 到 10000 之间 (must be 1..=10000)",
    )?;
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
