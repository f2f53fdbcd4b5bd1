//! The daemon (`kaohe-agent run`): every check on its own schedule, reports batched every
//! `report_interval` into the spool, and an uploader that drains the spool to the
//! collector. The spool numbers the reports; while it cannot be written it holds them in
//! memory, and a task retries writing them every few seconds. One shutdown signal stops
//! every task; the batch under way is spooled first.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use kaohe_rubric::evidence::{
    CheckProblem, CheckStatus, Checks, DailyCheck, IsolationResult, Observation, ProbeSample, Report, SelfCheck,
    ServiceCheck,
};
use tokio::sync::{Notify, watch};

use crate::config::Config;
use crate::cycle::{self, UNENROLLED};
use crate::delivery::{self, Backoff};
use crate::reachability::{OutageTracker, Prober};
use crate::spool::{Options, Spool};
use crate::{dual_homed, inventory, isolation, platform, services};

/// File names in the state directory.
pub const CREDENTIAL_FILE: &str = "credential";
pub const CA_FILE: &str = "collector-ca.pem";
/// The report sequence of agents before the spool's state file; taken over by the spool.
const LEGACY_SEQUENCE_FILE: &str = "sequence";
/// While reports are held in memory, writing them to the spool is retried this often.
const SPOOL_RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Spool(#[from] crate::spool::SpoolError),
    #[error("{0}")]
    Setup(String),
}

/// Results gathered since the last report.
#[derive(Debug, Default)]
struct Batch {
    samples: Vec<ProbeSample>,
    isolation: Vec<IsolationResult>,
    self_check: Option<SelfCheck>,
    inventory: BTreeMap<String, Observation>,
    services: Vec<ServiceCheck>,
    daily: Vec<DailyCheck>,
    problems: Vec<CheckProblem>,
    ran_reachability: bool,
    ran_isolation: bool,
    /// ICMP could not be used (no CAP_NET_RAW): ICMP results are no evidence.
    icmp_broken: bool,
    ran_inventory: bool,
    ran_services: bool,
    failed_inventory: bool,
    leaks: Vec<kaohe_rubric::evidence::LeakFinding>,
    ran_leak: bool,
    failed_leak: bool,
}

/// State that outlives batches.
#[derive(Debug)]
struct Memory {
    tracker: OutageTracker,
    first_seen: BTreeMap<(String, Option<String>), DateTime<Utc>>,
    last_round: Vec<ProbeSample>,
    last_services: Vec<ServiceCheck>,
    last_daily: Option<NaiveDate>,
    /// When leak probes last ran (they follow an inventory sweep, every `leak.interval`).
    last_leak: Option<std::time::Instant>,
}

#[derive(Debug)]
struct Shared {
    config: Config,
    started_at: DateTime<Utc>,
    batch: Mutex<Batch>,
    memory: Mutex<Memory>,
    spool: Spool,
    spooled: Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn status(configured: bool, ran: bool, failed: bool) -> CheckStatus {
    match (configured, ran, failed) {
        (false, _, _) => CheckStatus::NotConfigured,
        (true, _, true) => CheckStatus::Failed,
        (true, true, false) => CheckStatus::Ran,
        (true, false, false) => CheckStatus::NotDue,
    }
}

impl Shared {
    /// Spools a report: the spool gives it its sequence number and counts.
    fn spool(&self, r: &mut Report) -> Result<(), DaemonError> {
        let pushed = self.spool.push(r)?;
        tracing::debug!(
            sequence = pushed.sequence,
            held_in_memory = pushed.held,
            "report spooled"
        );
        self.spooled.notify_one();
        Ok(())
    }

    /// Turns the batch into a report and spools it.
    fn flush(&self) -> Result<(), DaemonError> {
        let c = &self.config;
        let batch = std::mem::take(&mut *lock(&self.batch));
        let outages = lock(&self.memory).tracker.take_report();
        let mut r = Report::empty(
            uuid::Uuid::new_v4(),
            c.agent_id.as_deref().unwrap_or(UNENROLLED),
            c.unit_id.as_deref().unwrap_or(UNENROLLED),
            0,
            Utc::now(),
            platform::host_facts(self.started_at),
        );
        r.checks = Checks {
            reachability: status(!c.targets.is_empty(), batch.ran_reachability, batch.icmp_broken),
            isolation: status(!c.canaries.is_empty(), batch.ran_isolation, batch.icmp_broken),
            self_check: status(!c.private_prefixes.is_empty(), batch.self_check.is_some(), false),
            inventory: status(
                !c.inventory_prefixes.is_empty(),
                batch.ran_inventory,
                batch.failed_inventory,
            ),
            services: status(!c.services.is_empty(), batch.ran_services, false),
            daily: status(!c.targets.is_empty(), !batch.daily.is_empty(), false),
            leak_detection: status(c.leak.is_some(), batch.ran_leak, batch.failed_leak),
        };
        r.probes.interval_secs = c.schedule.probe_interval.as_secs().try_into().unwrap_or(u32::MAX);
        r.probes.samples = batch.samples;
        r.outages = outages;
        r.isolation = batch.isolation;
        r.self_check = batch.self_check;
        r.inventory = batch.inventory.into_values().collect();
        r.services = batch.services;
        r.daily_checks = batch.daily;
        r.problems = batch.problems;
        r.leaks = batch.leaks;
        self.spool(&mut r)
    }
}

/// What `run` and `listen` share: the enrolment filled in, the state directory and the
/// spool (which keeps the report sequence).
fn setup(mut config: Config) -> Result<Arc<Shared>, DaemonError> {
    // What `kaohe-agent enroll` stored fills in what the config file leaves out.
    if let Some(e) = crate::enroll::Enrollment::load(&config.state_dir) {
        config.agent_id.get_or_insert(e.agent_id);
        config.unit_id.get_or_insert(e.unit_id);
        if config.collector.is_none() {
            config.collector = Some(crate::config::Collector {
                url: e.collector_url,
                ca_fingerprint: Some(e.ca_fingerprint),
            });
        }
    }
    std::fs::create_dir_all(&config.state_dir).map_err(|e| {
        DaemonError::Setup(format!(
            "无法创建状态目录 {} (cannot create the state directory): {e}",
            config.state_dir.display()
        ))
    })?;
    let spool = Spool::open(
        &config.state_dir.join("spool"),
        Options {
            memory_bytes: config.spool_memory_bytes,
            legacy_sequence: Some(config.state_dir.join(LEGACY_SEQUENCE_FILE)),
            ..Options::new(config.spool_max_bytes)
        },
    )?;
    Ok(Arc::new(Shared {
        memory: Mutex::new(Memory {
            tracker: OutageTracker::new(config.down_after_misses),
            first_seen: BTreeMap::new(),
            last_round: Vec::new(),
            last_services: Vec::new(),
            last_daily: None,
            last_leak: None,
        }),
        config,
        started_at: Utc::now(),
        batch: Mutex::new(Batch::default()),
        spool,
        spooled: Notify::new(),
    }))
}

/// Runs until `shutdown` turns true.
pub async fn run(config: Config, mut shutdown: watch::Receiver<bool>) -> Result<(), DaemonError> {
    if config.is_empty() {
        tracing::warn!("配置为空: 不探测任何目标, 只发送心跳报告 (empty config: nothing is probed)");
    }
    let shared = setup(config)?;
    let prober = Prober::new(shared.config.probe_timeout);
    let mut tasks = tokio::task::JoinSet::new();
    let c = &shared.config;
    if !c.targets.is_empty() {
        tasks.spawn(probe_loop(shared.clone(), prober.clone(), shutdown.clone()));
        tasks.spawn(daily_loop(shared.clone(), shutdown.clone()));
    }
    if !c.canaries.is_empty() {
        let isolation_prober = Prober::new(shared.config.isolation_timeout);
        tasks.spawn(isolation_loop(shared.clone(), isolation_prober, shutdown.clone()));
    }
    if !c.private_prefixes.is_empty() {
        tasks.spawn(self_check_loop(shared.clone(), shutdown.clone()));
    }
    if !c.inventory_prefixes.is_empty() {
        tasks.spawn(inventory_loop(shared.clone(), shutdown.clone()));
    }
    if !c.services.is_empty() {
        tasks.spawn(services_loop(shared.clone(), shutdown.clone()));
    }
    tasks.spawn(upload_loop(shared.clone(), shutdown.clone()));
    tasks.spawn(spool_retry_loop(shared.clone(), shutdown.clone()));

    let mut batch_timer = tokio::time::interval(shared.config.schedule.report_interval);
    batch_timer.tick().await;
    let result = loop {
        tokio::select! {
            _ = batch_timer.tick() => {
                if let Err(e) = shared.flush() {
                    tracing::error!(error = %e, "cannot spool the report");
                }
            }
            _ = shutdown.changed() => {
                // The batch under way is spooled before the agent stops.
                break shared.flush();
            }
        }
    };
    while tasks.join_next().await.is_some() {}
    // What could not be written by now is counted as dropped.
    shared.spool.close();
    result
}

/// Retries writing the reports the spool holds in memory (a full disk), so they reach the
/// disk soon after space returns, not only at the next report.
async fn spool_retry_loop(s: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut timer = tokio::time::interval(SPOOL_RETRY);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while tick(&mut timer, &mut shutdown).await {
        if s.spool.counts().held > 0 && s.spool.retry() > 0 {
            s.spooled.notify_one();
        }
    }
}

/// Waits for the next tick or shutdown; false on shutdown.
async fn tick(timer: &mut tokio::time::Interval, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = timer.tick() => true,
        _ = shutdown.changed() => false,
    }
}

async fn probe_loop(s: Arc<Shared>, prober: Prober, mut shutdown: watch::Receiver<bool>) {
    let mut timer = tokio::time::interval(s.config.schedule.probe_interval);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq: u16 = 0;
    while tick(&mut timer, &mut shutdown).await {
        seq = seq.wrapping_add(1);
        let samples = prober.round(&s.config.targets, seq).await;
        {
            let mut m = lock(&s.memory);
            for x in &samples {
                m.tracker.observe(x);
            }
            m.last_round = samples.clone();
        }
        let mut b = lock(&s.batch);
        b.samples.extend(samples);
        b.ran_reachability = true;
        if let Some(e) = prober.icmp_error()
            && s.config
                .targets
                .iter()
                .any(|t| matches!(t.probe, crate::config::Probe::Icmp(_)))
        {
            b.icmp_broken = true;
            if !b.problems.iter().any(|p| p.check == "reachability") {
                b.problems.push(CheckProblem {
                    check: "reachability".into(),
                    message: e.to_string(),
                });
            }
        }
    }
}

async fn isolation_loop(s: Arc<Shared>, prober: Prober, mut shutdown: watch::Receiver<bool>) {
    let mut timer = tokio::time::interval(s.config.schedule.isolation_interval);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while tick(&mut timer, &mut shutdown).await {
        let routes = platform::routes();
        let results = isolation::check(&prober, &s.config.canaries, &routes, s.config.isolation_timeout).await;
        let mut b = lock(&s.batch);
        b.isolation.extend(results);
        b.ran_isolation = true;
        if prober.icmp_error().is_some()
            && s.config
                .canaries
                .iter()
                .any(|c| c.protocols.contains(&crate::config::CanaryProtocol::Icmp))
        {
            b.icmp_broken = true;
        }
    }
}

async fn self_check_loop(s: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut timer = tokio::time::interval(s.config.schedule.self_check_interval);
    let canaries: Vec<IpAddr> = s.config.canaries.iter().map(|c| c.ip).collect();
    while tick(&mut timer, &mut shutdown).await {
        let sc = dual_homed::analyse(&platform::host_net(), &s.config.private_prefixes, &canaries, Utc::now());
        lock(&s.batch).self_check = Some(sc);
    }
}

async fn inventory_loop(s: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut timer = tokio::time::interval(s.config.schedule.inventory_interval);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while tick(&mut timer, &mut shutdown).await {
        let (prefixes, iface, pps) = (
            s.config.inventory_prefixes.clone(),
            s.config.inventory_interface.clone(),
            s.config.inventory_max_pps,
        );
        let leak_due = s.config.leak.as_ref().is_some_and(|l| {
            lock(&s.memory)
                .last_leak
                .is_none_or(|t| t.elapsed() + Duration::from_secs(1) >= l.interval)
        });
        let config = s.config.clone();
        let swept = tokio::task::spawn_blocking(move || {
            let mut found = inventory::Found::default();
            let errors: Vec<String> = prefixes
                .iter()
                .filter_map(|p| inventory::sweep(p, iface.as_deref(), pps, &mut found).err())
                .collect();
            inventory::add_neighbours(&prefixes, &mut found);
            // Leak probes go only to the hosts this sweep found live.
            let leaks = leak_due.then(|| crate::leak::detect(&config, &found, false));
            (found, errors, leaks)
        })
        .await;
        let Ok((found, errors, leaks)) = swept else { continue };
        if let Some(round) = leaks {
            lock(&s.memory).last_leak = Some(std::time::Instant::now());
            let mut b = lock(&s.batch);
            b.ran_leak = true;
            b.failed_leak |= !round.errors.is_empty();
            b.leaks.extend(round.findings);
            b.problems.extend(round.errors.into_iter().map(|message| CheckProblem {
                check: "leak_detection".into(),
                message,
            }));
        }
        let now = Utc::now();
        let mut observations = inventory::observations(&found, now);
        {
            let mut m = lock(&s.memory);
            for o in &mut observations {
                let first = *m.first_seen.entry((o.ip.clone(), o.mac.clone())).or_insert(now);
                o.first_seen = first;
            }
        }
        let mut b = lock(&s.batch);
        for o in observations {
            b.inventory.insert(o.ip.clone(), o);
        }
        b.ran_inventory = true;
        b.failed_inventory = !errors.is_empty();
        b.problems.extend(errors.into_iter().map(|message| CheckProblem {
            check: "inventory".into(),
            message,
        }));
    }
}

async fn services_loop(s: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let client = match services::client() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "service checks disabled");
            return;
        }
    };
    let mut timer = tokio::time::interval(s.config.schedule.services_interval);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while tick(&mut timer, &mut shutdown).await {
        let results = services::check_all(&client, &s.config.services).await;
        lock(&s.memory).last_services = results.clone();
        let mut b = lock(&s.batch);
        b.services.extend(results);
        b.ran_services = true;
    }
}

/// Once a day, at `daily_check_at` local time (or at start if that time has passed
/// and today has no record yet), records the daily check from the latest results.
async fn daily_loop(s: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut timer = tokio::time::interval(Duration::from_secs(20));
    while tick(&mut timer, &mut shutdown).await {
        let now = Utc::now().with_timezone(&s.config.timezone);
        let today = now.date_naive();
        let mut m = lock(&s.memory);
        if now.time() < s.config.schedule.daily_check_at || m.last_daily == Some(today) || m.last_round.is_empty() {
            continue;
        }
        let mut report = Report::empty(
            uuid::Uuid::nil(),
            "",
            "",
            0,
            Utc::now(),
            platform::host_facts(s.started_at),
        );
        report.checks.reachability = CheckStatus::Ran;
        report.probes.samples = m.last_round.clone();
        report.services = m.last_services.clone();
        if let Some(d) = cycle::daily_record(&report) {
            m.last_daily = Some(today);
            lock(&s.batch).daily.push(d);
        }
    }
}

/// The credential and a client trusting the collector's CA, from the state directory.
fn connect(dir: &std::path::Path, pin: Option<&str>) -> Result<(reqwest::Client, String), String> {
    let (Ok(credential), Ok(ca)) = (
        std::fs::read_to_string(dir.join(CREDENTIAL_FILE)),
        std::fs::read(dir.join(CA_FILE)),
    ) else {
        return Err("尚未注册: 缺少凭据或采集中心证书, 请运行 kaohe-agent enroll (not enrolled yet)".into());
    };
    Ok((delivery::client(&ca, pin)?, credential.trim().to_string()))
}

async fn upload_loop(s: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let Some(collector) = s.config.collector.clone() else {
        tracing::warn!("未配置采集中心: 报告只保存在本地队列 (no collector configured; reports stay in the spool)");
        return;
    };
    let dir: PathBuf = s.config.state_dir.clone();
    let mut backoff = Backoff::default();
    // Built once and kept while delivery works (connections are reused); after a failure it
    // is built again from the files, so a re-enrolment is picked up.
    let mut connection: Option<(reqwest::Client, String)> = None;
    loop {
        if connection.is_none() {
            match connect(&dir, collector.ca_fingerprint.as_deref()) {
                Ok(c) => connection = Some(c),
                Err(e) => tracing::warn!(error = %e, "cannot deliver yet"),
            }
        }
        let wait = match &connection {
            None => Some(backoff.next_wait()),
            Some((client, credential)) => match tokio::select! {
                r = delivery::drain(&s.spool, client, &collector.url, credential) => r,
                // Stop at once: what was not acknowledged stays in the spool.
                _ = shutdown.changed() => return,
            } {
                Ok(n) => {
                    if n > 0 {
                        tracing::info!(delivered = n, "reports delivered");
                    }
                    backoff.reset();
                    None
                }
                Err((n, why)) => {
                    let w = backoff.next_wait();
                    tracing::warn!(delivered = n, reason = %why, retry_in_ms = w.as_millis() as u64, "delivery paused");
                    connection = None;
                    Some(w)
                }
            },
        };
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = s.spooled.notified(), if wait.is_none() => {}
            _ = tokio::time::sleep(wait.unwrap_or(Duration::MAX)), if wait.is_some() => {}
        }
    }
}

/// `kaohe-agent listen`: the leak listener. Captures the answers to the agents'
/// spoofed-source probes on every interface (or the configured ones), keeps those whose
/// signature verifies, and every report interval spools one report per unit with its
/// findings, delivered like the agent's reports. Runs until `shutdown` turns true.
pub async fn listen(config: Config, mut shutdown: watch::Receiver<bool>) -> Result<(), DaemonError> {
    let Some(listener) = config.listener.clone() else {
        return Err(DaemonError::Setup(
            "配置中没有 [listener] 段 (no [listener] section in the config)".into(),
        ));
    };
    let shared = setup(config)?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ifaces = crate::listener::interfaces(&listener.interfaces).map_err(DaemonError::Setup)?;
    let mut threads = Vec::new();
    for iface in ifaces {
        tracing::info!(interface = %iface.name, address = %listener.address, "leak listener capturing");
        let (l, tx, stop) = (listener.clone(), tx.clone(), stop.clone());
        threads.push(tokio::task::spawn_blocking(move || {
            crate::listener::capture(&iface, &l, &tx, &stop)
        }));
    }
    drop(tx);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(upload_loop(shared.clone(), shutdown.clone()));
    tasks.spawn(spool_retry_loop(shared.clone(), shutdown.clone()));
    let mut heard: Vec<crate::listener::Heard> = Vec::new();
    let mut timer = tokio::time::interval(shared.config.schedule.report_interval);
    timer.tick().await;
    let deaf = loop {
        tokio::select! {
            h = rx.recv() => match h {
                Some(h) => {
                    tracing::warn!(unit = %h.unit, host = %h.finding.ip, protocol = %h.finding.protocol, "leak found: a host answered by a path to the internet");
                    heard.push(h);
                }
                // Every capture ended: a listener that hears nothing must not look alive.
                None => break true,
            },
            _ = timer.tick() => spool_heard(&shared, &mut heard),
            _ = shutdown.changed() => break false,
        }
    };
    // Stop the captures, keep what they heard until then, then spool it.
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut errors = Vec::new();
    for t in threads {
        if let Ok(Err(e)) = t.await {
            tracing::error!(error = %e, "capture stopped");
            errors.push(e);
        }
    }
    while let Ok(h) = rx.try_recv() {
        heard.push(h);
    }
    spool_heard(&shared, &mut heard);
    shared.spool.close();
    if deaf {
        return Err(DaemonError::Setup(format!(
            "泄漏监听端的所有抓包都已停止 (every capture stopped): {}",
            errors.join("; ")
        )));
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// One report per unit with what was heard since the last, spooled.
fn spool_heard(s: &Shared, heard: &mut Vec<crate::listener::Heard>) {
    let mut by_unit: BTreeMap<String, Vec<kaohe_rubric::evidence::LeakFinding>> = BTreeMap::new();
    for h in heard.drain(..) {
        let list = by_unit.entry(h.unit).or_default();
        let dup = list
            .iter()
            .any(|f| f.ip == h.finding.ip && f.protocol == h.finding.protocol);
        if !dup {
            list.push(h.finding);
        }
    }
    for (unit, leaks) in by_unit {
        let mut r = Report::empty(
            uuid::Uuid::new_v4(),
            s.config.agent_id.as_deref().unwrap_or(UNENROLLED),
            &unit,
            0,
            Utc::now(),
            platform::host_facts(s.started_at),
        );
        r.checks.leak_detection = CheckStatus::Ran;
        r.leaks = leaks;
        if let Err(e) = s.spool(&mut r) {
            tracing::error!(error = %e, "cannot spool the listener's report");
        }
    }
}
