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
use kaohe_rubric::evidence::{Observation, ProbeSample, Report, ServiceCheck};
use tokio::sync::{Notify, watch};

use crate::config::Config;
use crate::cycle;
use crate::delivery::{self, Backoff, DeliveryError};
use crate::reachability::{OutageTracker, Prober};
use crate::report::{self, Evidence, Outcome};
use crate::spool::{Options, Spool};
use crate::{dual_homed, inventory, isolation, platform, services};

/// File names in the state directory.
pub const CREDENTIAL_FILE: &str = "credential";
pub const CA_FILE: &str = "collector-ca.pem";
/// The report sequence of agents before the spool's state file; taken over by the spool.
const LEGACY_SEQUENCE_FILE: &str = "sequence";
/// While reports are held in memory, writing them to the spool is retried this often.
const SPOOL_RETRY: Duration = Duration::from_secs(5);

/// Why the daemon cannot start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Spool(#[from] crate::spool::SpoolError),
    #[error("无法创建状态目录 {} (cannot create the state directory): {source}", path.display())]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("配置中没有 [listener] 段 (no [listener] section in the config)")]
    NoListener,
    #[error(transparent)]
    Listener(#[from] crate::listener::ListenerError),
    #[error("泄漏监听端的所有抓包都已停止 (every capture stopped): {}", join(.0))]
    Deaf(Vec<crate::listener::ListenerError>),
}

fn join(errors: &[crate::listener::ListenerError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Results gathered since the last report.
#[derive(Debug, Default)]
struct Batch {
    evidence: Evidence,
    /// The latest observation of each address.
    inventory: BTreeMap<String, Observation>,
    /// ICMP could not be used (no CAP_NET_RAW): ICMP results are no evidence.
    icmp_broken: bool,
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
        let batch = std::mem::take(&mut *lock(&self.batch));
        let mut e = batch.evidence;
        e.outages = lock(&self.memory).tracker.take_report();
        e.inventory = batch.inventory.into_values().collect();
        if batch.icmp_broken {
            e.outcomes.reachability = Outcome::Failed;
            e.outcomes.isolation = Outcome::Failed;
        }
        let mut r = report::assemble(&self.config, self.started_at, e);
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
    std::fs::create_dir_all(&config.state_dir).map_err(|source| DaemonError::StateDir {
        path: config.state_dir.clone(),
        source,
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
        b.evidence.samples.extend(samples);
        b.evidence.outcomes.reachability = Outcome::Ran;
        if let Some(e) = prober.icmp_error()
            && s.config
                .targets
                .iter()
                .any(|t| matches!(t.probe, crate::config::Probe::Icmp(_)))
        {
            b.icmp_broken = true;
            if !b.evidence.problems.iter().any(|p| p.check == "reachability") {
                b.evidence.problem("reachability", e);
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
        b.evidence.isolation.extend(results);
        b.evidence.outcomes.isolation = Outcome::Ran;
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
        let mut b = lock(&s.batch);
        b.evidence.self_check = Some(sc);
        b.evidence.outcomes.self_check = Outcome::Ran;
    }
}

async fn inventory_loop(s: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut timer = tokio::time::interval(s.config.schedule.inventory_interval);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while tick(&mut timer, &mut shutdown).await {
        let leak_due = s.config.leak.as_ref().is_some_and(|l| {
            lock(&s.memory)
                .last_leak
                .is_none_or(|t| t.elapsed() + Duration::from_secs(1) >= l.interval)
        });
        let config = s.config.clone();
        let Ok(swept) = tokio::task::spawn_blocking(move || cycle::sweep_blocking(&config, leak_due)).await else {
            continue;
        };
        if let Some(round) = swept.leaks {
            lock(&s.memory).last_leak = Some(std::time::Instant::now());
            cycle::add_leaks(&mut lock(&s.batch).evidence, round);
        }
        let now = Utc::now();
        let mut observations = inventory::observations(&swept.found, now);
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
        // The latest sweep says whether the inventory works.
        b.evidence.outcomes.inventory = Outcome::of(!swept.errors.is_empty());
        for e in swept.errors {
            b.evidence.problem("inventory", e);
        }
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
        b.evidence.services.extend(results);
        b.evidence.outcomes.services = Outcome::Ran;
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
        if let Some(d) = cycle::daily_record(&m.last_round, &m.last_services) {
            m.last_daily = Some(today);
            let mut b = lock(&s.batch);
            b.evidence.daily.push(d);
            b.evidence.outcomes.daily = Outcome::Ran;
        }
    }
}

/// The credential and a client trusting the collector's CA, from the state directory.
fn connect(dir: &std::path::Path, pin: Option<&str>) -> Result<(reqwest::Client, String), DeliveryError> {
    let (Ok(credential), Ok(ca)) = (
        std::fs::read_to_string(dir.join(CREDENTIAL_FILE)),
        std::fs::read(dir.join(CA_FILE)),
    ) else {
        return Err(DeliveryError::NotEnrolled);
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
                Err(delivery::Paused {
                    delivered: n,
                    reason: why,
                }) => {
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
        return Err(DaemonError::NoListener);
    };
    let shared = setup(config)?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ifaces = crate::listener::interfaces(&listener.interfaces)?;
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
        return Err(DaemonError::Deaf(errors));
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
        let mut r = report::heard(&s.config, s.started_at, &unit, leaks);
        if let Err(e) = s.spool(&mut r) {
            tracing::error!(error = %e, "cannot spool the listener's report");
        }
    }
}
