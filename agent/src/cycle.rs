//! One full cycle of every configured check, as `kaohe-agent once` runs it, assembled
//! into an evidence report (schema v1). A check that is not configured says so; one that
//! cannot run says why in `problems`.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use kaohe_rubric::evidence::{
    CategoryResult, CheckFailure, CheckProblem, CheckStatus, DailyCheck, ProbeRole, ProbeSample, Report, ServiceKind,
};

use crate::config::{CanaryProtocol, Config, Probe};
use crate::reachability::Prober;
use crate::{dual_homed, inventory, isolation, platform, services};

/// Placeholder ids of an agent that has not enrolled yet.
pub const UNENROLLED: &str = "unenrolled";

fn category(samples: &[&ProbeSample]) -> CategoryResult {
    CategoryResult {
        checked: samples.len() as u32,
        failed: samples.iter().filter(|s| !s.ok).count() as u32,
        failures: samples
            .iter()
            .filter(|s| !s.ok)
            .map(|s| CheckFailure {
                target: s.target.clone(),
                error: s.error.clone().unwrap_or_else(|| "failed".into()),
            })
            .collect(),
    }
}

/// The daily check record (日常检测) from a report's results: the network (upstream
/// probes), registered devices (device probes), application systems and portals. A
/// category the report has no results for stays absent. `None` when the network was
/// not checked: a record without the network is no daily check.
pub fn daily_record(report: &Report) -> Option<DailyCheck> {
    if report.checks.reachability != CheckStatus::Ran {
        return None;
    }
    let by_role =
        |role: ProbeRole| -> Vec<&ProbeSample> { report.probes.samples.iter().filter(|s| s.role == role).collect() };
    let upstream = by_role(ProbeRole::Upstream);
    if upstream.is_empty() {
        return None;
    }
    let devices = by_role(ProbeRole::Device);
    let services = |kind: ServiceKind| -> Option<CategoryResult> {
        let checks: Vec<_> = report.services.iter().filter(|s| s.kind == kind).collect();
        (!checks.is_empty()).then(|| CategoryResult {
            checked: checks.len() as u32,
            failed: checks.iter().filter(|c| !c.ok).count() as u32,
            failures: checks
                .iter()
                .filter(|c| !c.ok)
                .map(|c| CheckFailure {
                    target: c.url.clone(),
                    error: c.error.clone().unwrap_or_else(|| "failed".into()),
                })
                .collect(),
        })
    };
    Some(DailyCheck {
        at: Utc::now(),
        network: category(&upstream),
        devices: (!devices.is_empty()).then(|| category(&devices)),
        apps: services(ServiceKind::App),
        portals: services(ServiceKind::Portal),
    })
}

/// Runs every configured check once and returns the report.
pub async fn once(config: &Config, started_at: DateTime<Utc>, sequence: u64) -> Report {
    let mut report = Report::empty(
        uuid::Uuid::new_v4(),
        config.agent_id.as_deref().unwrap_or(UNENROLLED),
        config.unit_id.as_deref().unwrap_or(UNENROLLED),
        sequence,
        Utc::now(),
        platform::host_facts(started_at),
    );
    if config.is_empty() {
        report.created_at = Utc::now();
        return report;
    }
    let prober = Prober::new(config.probe_timeout);
    let needs_icmp = config
        .targets
        .iter()
        .any(|t| matches!(t.probe, Probe::Icmp(IpAddr::V4(_))))
        || config
            .canaries
            .iter()
            .any(|c| c.protocols.contains(&CanaryProtocol::Icmp));
    if let (true, Some(e)) = (needs_icmp, prober.icmp_error()) {
        report.problems.push(CheckProblem {
            check: "reachability".into(),
            message: e.to_string(),
        });
    }
    let net = platform::host_net();

    if !config.targets.is_empty() {
        let samples = prober.round(&config.targets, 1).await;
        report.checks.reachability = if prober.icmp_error().is_some() && needs_icmp {
            CheckStatus::Failed
        } else {
            CheckStatus::Ran
        };
        report.probes.interval_secs = config.schedule.probe_interval.as_secs().try_into().unwrap_or(u32::MAX);
        report.probes.samples = samples;
    }
    if !config.canaries.is_empty() {
        let isolation_prober = Prober::new(config.isolation_timeout);
        let results = isolation::check(
            &isolation_prober,
            &config.canaries,
            &net.routes,
            config.isolation_timeout,
        )
        .await;
        let icmp_broken = prober.icmp_error().is_some();
        report.checks.isolation = if icmp_broken {
            CheckStatus::Failed
        } else {
            CheckStatus::Ran
        };
        report.isolation = results;
    }
    if !config.private_prefixes.is_empty() {
        let canaries: Vec<IpAddr> = config.canaries.iter().map(|c| c.ip).collect();
        report.self_check = Some(dual_homed::analyse(
            &net,
            &config.private_prefixes,
            &canaries,
            Utc::now(),
        ));
        report.checks.self_check = CheckStatus::Ran;
    }
    if !config.inventory_prefixes.is_empty() {
        let (prefixes, iface, pps) = (
            config.inventory_prefixes.clone(),
            config.inventory_interface.clone(),
            config.inventory_max_pps,
        );
        let leak_config = config.clone();
        let swept = tokio::task::spawn_blocking(move || {
            let mut found = inventory::Found::default();
            let mut errors = Vec::new();
            for p in &prefixes {
                if let Err(e) = inventory::sweep(p, iface.as_deref(), pps, &mut found) {
                    errors.push(e);
                }
            }
            inventory::add_neighbours(&prefixes, &mut found);
            // Leak probes go only to the hosts this sweep found live.
            let leaks = leak_config
                .leak
                .is_some()
                .then(|| crate::leak::detect(&leak_config, &found, false));
            (found, errors, leaks)
        })
        .await;
        match swept {
            Ok((found, errors, leaks)) => {
                if let Some(round) = leaks {
                    report.checks.leak_detection = if round.errors.is_empty() {
                        CheckStatus::Ran
                    } else {
                        CheckStatus::Failed
                    };
                    report
                        .problems
                        .extend(round.errors.into_iter().map(|message| CheckProblem {
                            check: "leak_detection".into(),
                            message,
                        }));
                    report.leaks = round.findings;
                }
                tracing::info!(
                    requests = found.stats.requests,
                    replies = found.stats.replies,
                    elapsed_ms = found.stats.elapsed.as_millis() as u64,
                    "ARP sweep done"
                );
                report.checks.inventory = if errors.is_empty() {
                    CheckStatus::Ran
                } else {
                    CheckStatus::Failed
                };
                report.problems.extend(errors.into_iter().map(|message| CheckProblem {
                    check: "inventory".into(),
                    message,
                }));
                report.inventory = inventory::observations(&found, Utc::now());
            }
            Err(e) => {
                report.checks.inventory = CheckStatus::Failed;
                report.problems.push(CheckProblem {
                    check: "inventory".into(),
                    message: e.to_string(),
                });
            }
        }
    }
    if !config.services.is_empty() {
        match services::client() {
            Ok(client) => {
                report.services = services::check_all(&client, &config.services).await;
                report.checks.services = CheckStatus::Ran;
            }
            Err(message) => {
                report.checks.services = CheckStatus::Failed;
                report.problems.push(CheckProblem {
                    check: "services".into(),
                    message,
                });
            }
        }
    }
    if let Some(d) = daily_record(&report) {
        report.daily_checks.push(d);
        report.checks.daily = CheckStatus::Ran;
    }
    report.created_at = Utc::now();
    report
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
