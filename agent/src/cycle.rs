//! One full cycle of every configured check, as `kaohe-agent once` runs it, assembled
//! into an evidence report (schema v1) by [`crate::report`]. A check that is not
//! configured says so; one that cannot run says why in `problems`.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use kaohe_rubric::evidence::{
    CategoryResult, CheckFailure, CheckStatus, DailyCheck, ProbeRole, ProbeSample, Report, ServiceCheck, ServiceKind,
};

use crate::config::{CanaryProtocol, Config, Probe};
use crate::reachability::Prober;
use crate::report::{self, Evidence, Outcome};
use crate::{dual_homed, inventory, isolation, platform, services};

pub use crate::report::UNENROLLED;

/// The results of one category; `None` when there are none.
fn category<'a>(results: impl Iterator<Item = (&'a str, bool, Option<&'a str>)>) -> Option<CategoryResult> {
    let mut c = CategoryResult {
        checked: 0,
        failed: 0,
        failures: Vec::new(),
    };
    for (target, ok, error) in results {
        c.checked += 1;
        if !ok {
            c.failed += 1;
            c.failures.push(CheckFailure {
                target: target.to_string(),
                error: error.unwrap_or("failed").to_string(),
            });
        }
    }
    (c.checked > 0).then_some(c)
}

/// The daily check record (日常检测) from the results of a round whose reachability
/// check ran: the network (upstream probes), registered devices (device probes),
/// application systems and portals. A category without results stays absent. `None`
/// without upstream probes: a record without the network is no daily check.
pub fn daily_record(samples: &[ProbeSample], services: &[ServiceCheck]) -> Option<DailyCheck> {
    let by_role = |role: ProbeRole| {
        category(
            samples
                .iter()
                .filter(|s| s.role == role)
                .map(|s| (s.target.as_str(), s.ok, s.error.as_deref())),
        )
    };
    let services = |kind: ServiceKind| {
        category(
            services
                .iter()
                .filter(|c| c.kind == kind)
                .map(|c| (c.url.as_str(), c.ok, c.error.as_deref())),
        )
    };
    Some(DailyCheck {
        at: Utc::now(),
        network: by_role(ProbeRole::Upstream)?,
        devices: by_role(ProbeRole::Device),
        apps: services(ServiceKind::App),
        portals: services(ServiceKind::Portal),
    })
}

/// Runs every configured check once and returns the report.
pub async fn once(config: &Config, started_at: DateTime<Utc>, sequence: u64) -> Report {
    let mut e = Evidence::default();
    if !config.is_empty() {
        gather(config, &mut e).await;
    }
    let mut report = report::assemble(config, started_at, e);
    report.sequence = sequence;
    report
}

/// Every configured check, one round each.
async fn gather(config: &Config, e: &mut Evidence) {
    let prober = Prober::new(config.probe_timeout);
    let needs_icmp = config
        .targets
        .iter()
        .any(|t| matches!(t.probe, Probe::Icmp(IpAddr::V4(_))))
        || config
            .canaries
            .iter()
            .any(|c| c.protocols.contains(&CanaryProtocol::Icmp));
    if let (true, Some(err)) = (needs_icmp, prober.icmp_error()) {
        e.problem("reachability", err);
    }
    let net = platform::host_net();
    if !config.targets.is_empty() {
        e.samples = prober.round(&config.targets, 1).await;
        e.outcomes.reachability = Outcome::of(prober.icmp_error().is_some() && needs_icmp);
    }
    if !config.canaries.is_empty() {
        let isolation_prober = Prober::new(config.isolation_timeout);
        e.isolation = isolation::check(
            &isolation_prober,
            &config.canaries,
            &net.routes,
            config.isolation_timeout,
        )
        .await;
        e.outcomes.isolation = Outcome::of(prober.icmp_error().is_some());
    }
    if !config.private_prefixes.is_empty() {
        let canaries: Vec<IpAddr> = config.canaries.iter().map(|c| c.ip).collect();
        e.self_check = Some(dual_homed::analyse(
            &net,
            &config.private_prefixes,
            &canaries,
            Utc::now(),
        ));
        e.outcomes.self_check = Outcome::Ran;
    }
    if !config.inventory_prefixes.is_empty() {
        sweep(config, e).await;
    }
    if !config.services.is_empty() {
        match services::client() {
            Ok(client) => {
                e.services = services::check_all(&client, &config.services).await;
                e.outcomes.services = Outcome::Ran;
            }
            Err(err) => {
                e.outcomes.services = Outcome::Failed;
                e.problem("services", err);
            }
        }
    }
    if e.outcomes.reachability == Outcome::Ran
        && let Some(d) = daily_record(&e.samples, &e.services)
    {
        e.daily.push(d);
        e.outcomes.daily = Outcome::Ran;
    }
}

/// What an inventory sweep found, and the leak round that followed it.
#[derive(Debug)]
pub struct Swept {
    pub found: inventory::Found,
    pub errors: Vec<inventory::InventoryError>,
    pub leaks: Option<crate::leak::Round>,
}

/// Sweeps the inventory prefixes and, when `leak` is due, probes the live hosts found
/// for leaks. Blocking: run it on a blocking thread.
pub fn sweep_blocking(config: &Config, leak: bool) -> Swept {
    let mut found = inventory::Found::default();
    let errors = config
        .inventory_prefixes
        .iter()
        .filter_map(|p| {
            inventory::sweep(
                p,
                config.inventory_interface.as_deref(),
                config.inventory_max_pps,
                &mut found,
            )
            .err()
        })
        .collect();
    inventory::add_neighbours(&config.inventory_prefixes, &mut found);
    // Leak probes go only to the hosts this sweep found live.
    let leaks = (leak && config.leak.is_some()).then(|| crate::leak::detect(config, &found, false));
    tracing::info!(
        requests = found.stats.requests,
        replies = found.stats.replies,
        elapsed_ms = found.stats.elapsed.as_millis() as u64,
        "ARP sweep done"
    );
    Swept { found, errors, leaks }
}

/// The leak round of a sweep, into `e`.
pub fn add_leaks(e: &mut Evidence, round: crate::leak::Round) {
    e.outcomes.leak_detection = e.outcomes.leak_detection.and(Outcome::of(!round.errors.is_empty()));
    e.leaks.extend(round.findings);
    for err in round.errors {
        e.problem("leak_detection", err);
    }
}

async fn sweep(config: &Config, e: &mut Evidence) {
    let c = config.clone();
    match tokio::task::spawn_blocking(move || sweep_blocking(&c, true)).await {
        Ok(swept) => {
            if let Some(round) = swept.leaks {
                add_leaks(e, round);
            }
            e.outcomes.inventory = Outcome::of(!swept.errors.is_empty());
            for err in swept.errors {
                e.problem("inventory", err);
            }
            e.inventory = inventory::observations(&swept.found, Utc::now());
        }
        Err(err) => {
            e.outcomes.inventory = Outcome::Failed;
            e.problem("inventory", err);
        }
    }
}

/// A few lines of Chinese for the person at the terminal.
pub fn summary_zh(config: &Config, report: &Report) -> String {
    if config.is_empty() {
        return "配置为空: 未配置任何检测, 本次不探测任何目标 (empty config: nothing is probed)".into();
    }
    let mut lines = Vec::new();
    let s = &report.probes.samples;
    if !s.is_empty() {
        let ok = s.iter().filter(|x| x.ok).count();
        lines.push(format!("专网连通性: {ok}/{} 个目标可达", s.len()));
        for x in s.iter().filter(|x| !x.ok) {
            lines.push(format!("  不可达: {} ({})", x.target, x.error.as_deref().unwrap_or("")));
        }
    }
    if !report.isolation.is_empty() {
        let reached: Vec<_> = report.isolation.iter().filter(|r| r.reached).collect();
        if reached.is_empty() {
            lines.push(format!("互联网隔离: 正常, {} 项探测均不可达", report.isolation.len()));
        } else {
            lines.push(format!("互联网隔离: 发现 {} 项可访问互联网!", reached.len()));
            for r in reached {
                lines.push(format!(
                    "  {} {:?} 经 {}",
                    r.canary,
                    r.protocol,
                    r.via_interface.as_deref().unwrap_or("-")
                ));
            }
        }
    }
    if let Some(sc) = &report.self_check {
        let v: Vec<_> = sc
            .findings
            .iter()
            .filter(|f| f.severity == kaohe_rubric::evidence::Severity::Violation)
            .collect();
        if v.is_empty() {
            lines.push("本机自检: 未发现串联".into());
        } else {
            lines.push(format!("本机自检: 发现 {} 项串联问题!", v.len()));
            for f in v {
                lines.push(format!("  {}: {}", f.detail, f.why_zh));
            }
        }
    }
    if !report.services.is_empty() {
        let ok = report.services.iter().filter(|x| x.ok).count();
        lines.push(format!("应用系统与门户网站: {ok}/{} 正常", report.services.len()));
        for x in report.services.iter().filter(|x| !x.ok) {
            lines.push(format!(
                "  异常: {} {} ({})",
                x.name,
                x.url,
                x.error.as_deref().unwrap_or("")
            ));
        }
    }
    if report.checks.inventory != CheckStatus::NotConfigured {
        lines.push(format!("设备清点: 发现 {} 台设备", report.inventory.len()));
    }
    if report.checks.leak_detection != CheckStatus::NotConfigured {
        let hosts: std::collections::BTreeSet<&str> = report.leaks.iter().map(|l| l.ip.as_str()).collect();
        if hosts.is_empty() {
            lines.push("无代理泄漏检测: 未发现跨网主机".into());
        } else {
            lines.push(format!(
                "无代理泄漏检测: 发现 {} 台跨网主机: {}",
                hosts.len(),
                hosts.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    for p in &report.problems {
        lines.push(format!("无法完成 {}: {}", p.check, p.message));
    }
    lines.join("\n")
}
