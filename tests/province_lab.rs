//! The whole chain in the lab, as a province runs it: the real
//! collector on the lab's collector host with a test rubric, each bureau's registry
//! imported and its maintainer and responder on record, an agent per bureau enrolled with
//! a one-time token and running as a daemon on a quickened schedule, reports delivered
//! over TLS into the collector's database — while bureau 3's uplink goes down and the
//! collector itself is stopped for several agent batches — and each bureau scored from
//! what was stored. Unit-staff logins see their own unit only.
//!
//! Needs root (it skips, saying why, otherwise; with `CI=true` it fails). The binaries
//! are built from the current sources on first use (`kaohe_lab::testing::built_binary`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use kaohe_collector::scores::FullSheet;
use kaohe_collector::store::Store;
use kaohe_lab::{self as lab, Lab, Options};
use kaohe_rubric::evidence::{CheckStatus, Checks};
use kaohe_rubric::registry::Registry;
use kaohe_rubric::scoring::{ScoreInput, Sheet};
use kaohe_rubric::{Period, Report, Rubric};

/// How long bureau 3's uplink stays down, and the test rubric's `restore_within_hours`
/// (三.5): an outage of the private network longer than this costs a point.
const UPLINK_DOWN: Duration = Duration::from_secs(10);
const RESTORE_WITHIN_HOURS: f64 = 0.001; // 3.6 s
/// The agents' report interval (quickened), and how long the collector stays stopped:
/// more than three batches.
const REPORT_INTERVAL: Duration = Duration::from_secs(2);
const COLLECTOR_DOWN: Duration = Duration::from_secs(7);
/// The unit-staff logins' password (CLI `user add` reads `KAOHE_PASSWORD`).
const PASSWORD: &str = "lab-password-1234";

fn bin(name: &str) -> PathBuf {
    lab::testing::built_binary(name)
}

/// A child process that is stopped with SIGTERM (its graceful path) and reaped when the
/// test is done with it.
struct Reaped(Option<Child>);

impl Reaped {
    /// SIGTERM, then waits up to `limit` for it to exit (SIGKILL after that); whether it
    /// exited by itself.
    fn stop(&mut self, limit: Duration) -> bool {
        let Some(mut child) = self.0.take() else {
            return true;
        };
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let done = lab::wait_until(limit, || matches!(child.try_wait(), Ok(Some(_))));
        if !done {
            let _ = child.kill();
        }
        let _ = child.wait();
        done
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// The collector's files: its data dir and the config naming the test rubric.
struct Collector {
    data: PathBuf,
    config: PathBuf,
    ns: String,
    listen: String,
    public: String,
    logs: PathBuf,
}

impl Collector {
    /// Runs a CLI command against the collector's data dir; its standard output.
    fn cli(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = Command::new(bin("kaohe-collector"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .envs(env.iter().copied())
            .output()
            .expect("collector runs");
        assert!(
            out.status.success(),
            "kaohe-collector {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Starts `serve` in the collector's namespace and waits until it answers.
    fn serve(&self, run: usize) -> Reaped {
        let log = std::fs::File::create(self.logs.join(format!("collector-{run}.log"))).expect("log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(bin("kaohe-collector"))
            .args(["serve", "--config"])
            .arg(&self.config)
            .args(["--listen", &self.listen, "--public-url", &self.public])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("collector starts");
        let server = Reaped(Some(child));
        let ca = self.data.join("tls/ca.pem");
        let ready = lab::wait_until(Duration::from_secs(20), || {
            std::thread::sleep(Duration::from_millis(50));
            ca.exists() && self.curl(&["/healthz", "-o", "/dev/null"]).0 == 200
        });
        assert!(
            ready,
            "collector run {run} did not answer /healthz; see {}",
            self.logs.display()
        );
        server
    }

    /// `curl` inside the collector's namespace, trusting only the collector's CA: the
    /// status code and the body.
    fn curl(&self, args: &[&str]) -> (u16, String) {
        let (path, rest) = args.split_first().expect("a path");
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "curl", "-sS", "--max-time", "10", "--cacert"])
            .arg(self.data.join("tls/ca.pem"))
            .args(["-w", "\n%{http_code}"])
            .args(rest)
            .arg(format!("{}{path}", self.public))
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }
}

/// The `state_dir` a generated agent config names.
fn agent_state_dir(config: &str) -> PathBuf {
    config
        .lines()
        .find_map(|l| l.strip_prefix("state_dir = "))
        .map(|v| PathBuf::from(v.trim().trim_matches('"')))
        .expect("state_dir in config")
}

/// The last report sequence an agent made (its `sequence` file), 0 before the first.
fn made(state: &Path) -> i64 {
    let out = std::process::Command::new(lab::testing::built_binary("kaohe-agent"))
        .args(["status", "--json", "--state-dir"])
        .arg(state)
        .output()
        .expect("kaohe-agent status");
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|v| v["spool"]["sequence"].as_i64())
        .unwrap_or(0)
}

/// Every stored report sequence of an agent, in order, straight from the table.
fn stored_sequences(rt: &tokio::runtime::Runtime, store: &Store, agent: &str) -> Vec<i64> {
    rt.block_on(
        sqlx::query_scalar::<_, i64>("SELECT sequence FROM reports WHERE agent_id = $1 ORDER BY sequence")
            .bind(agent)
            .fetch_all(store.pool()),
    )
    .expect("sequences")
}

/// The newest stored report of an agent: sequence, created_at and received_at (Unix ms).
fn latest_report(rt: &tokio::runtime::Runtime, store: &Store, agent: &str) -> Option<(i64, i64, i64)> {
    rt.block_on(
        sqlx::query_as::<_, (i64, i64, i64)>(
            "SELECT sequence, created_at, received_at FROM reports WHERE agent_id = $1 ORDER BY sequence DESC LIMIT 1",
        )
        .bind(agent)
        .fetch_optional(store.pool()),
    )
    .expect("latest report")
}

/// What an item lost and why, for assertion messages.
fn deductions(sheet: &Sheet, id: &str) -> String {
    let item = sheet.items.iter().find(|i| i.id == id).expect("item");
    format!(
        "{id}: {:?} of {}; deductions {:#?}; warnings {:#?}",
        item.score, item.points, item.deductions, item.warnings
    )
}

fn score_of(sheet: &Sheet, id: &str) -> f64 {
    sheet
        .items
        .iter()
        .find(|i| i.id == id)
        .and_then(|i| i.score)
        .unwrap_or(0.0)
}

/// Every automatic item of 二 and 三 that lost points, with its deductions.
fn losses(full: &FullSheet) -> String {
    full.items
        .iter()
        .filter(|i| (i.section == "二" || i.section == "三") && i.auto_score.is_some_and(|s| s < i.auto_max))
        .map(|i| format!("{} {:?}/{}: {:#?}", i.id, i.auto_score, i.auto_max, i.deductions))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Which checks ran in at least one report.
fn checks_ran(reports: &[Report]) -> BTreeMap<&'static str, bool> {
    let ran = |f: fn(&Checks) -> CheckStatus| reports.iter().any(|r| f(&r.checks) == CheckStatus::Ran);
    BTreeMap::from([
        ("reachability", ran(|c| c.reachability)),
        ("isolation", ran(|c| c.isolation)),
        ("self_check", ran(|c| c.self_check)),
        ("inventory", ran(|c| c.inventory)),
        ("services", ran(|c| c.services)),
        ("daily", reports.iter().any(|r| !r.daily_checks.is_empty())),
    ])
}

#[test]
fn a_province_scores_its_bureaus_from_the_database_through_an_outage_and_a_collector_restart() {
    if !lab::testing::require_root(
        "a_province_scores_its_bureaus_from_the_database_through_an_outage_and_a_collector_restart",
    ) {
        return;
    }
    let began = Instant::now();
    let test_start = Utc::now();
    let lab = Lab::up(Options::new("kp", lab::testing::built_binary("kaohe-lab"))).expect("lab comes up");
    let desc = lab.description().clone();
    let coll_host = desc
        .hosts
        .iter()
        .find(|h| h.name == "collector")
        .expect("collector host");
    let listen = format!("{}:{}", coll_host.address(), desc.collector.port);
    let data = lab.state_dir().join("collector-data");
    let _ = std::fs::remove_dir_all(&data);

    // The test rubric: the shipped one with an outage to be restored within seconds.
    let shipped = "restore_within_hours = 4.0";
    assert!(kaohe_rubric::rubric::DEFAULT_RUBRIC_TOML.contains(shipped));
    let rubric_path = lab.state_dir().join("test-rubric.toml");
    std::fs::write(
        &rubric_path,
        kaohe_rubric::rubric::DEFAULT_RUBRIC_TOML.replacen(
            shipped,
            &format!("restore_within_hours = {RESTORE_WITHIN_HOURS}"),
            1,
        ),
    )
    .expect("rubric");
    let rubric: Rubric = kaohe_collector::offline::load_rubric(Some(&rubric_path)).expect("the test rubric is valid");
    let config = lab.state_dir().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nrubric = {:?}\n",
            data.display().to_string(),
            rubric_path.display().to_string()
        ),
    )
    .expect("collector.toml");
    let coll = Collector {
        data: data.clone(),
        config,
        ns: lab.namespace("collector").expect("ns"),
        public: format!("https://{listen}"),
        listen,
        logs: lab.state_dir().to_path_buf(),
    };

    // The province's setup: units, each bureau's registry, maintainer and responder, and
    // a unit-staff login for bureaus 1 and 2.
    for b in &desc.bureaus {
        coll.cli(&["unit", "add", &b.unit_id, "--name", &b.name], &[]);
        let csv = std::fs::read(lab.registry_path(b.id)).expect("registry");
        Registry::from_csv(&csv, "registry.csv").expect("lab registry is valid");
        let path = lab.registry_path(b.id);
        coll.cli(
            &["registry", "import", "--unit", &b.unit_id, path.to_str().expect("utf8")],
            &[],
        );
        coll.cli(
            &["unit", "set", &b.unit_id, "--maintainer", "孙涛", "--responder", "黄强"],
            &[],
        );
    }
    for (name, unit) in [
        ("staff1", &desc.bureaus[0].unit_id),
        ("staff2", &desc.bureaus[1].unit_id),
    ] {
        coll.cli(
            &["user", "add", name, "--role", "unit", "--unit", unit],
            &[("KAOHE_PASSWORD", PASSWORD)],
        );
    }
    let setup = began.elapsed();
    let mut server = coll.serve(1);

    // Enrol and start an agent per bureau, quickened: probes every second, a report every
    // 2 s, isolation and the self-check every 2 s, services every 5 s, the inventory every
    // 10 s, the daily check as soon as the daemon has a round of results.
    let mut agents = Vec::new();
    let mut states = Vec::new();
    for b in &desc.bureaus {
        let token = coll.cli(
            &["token", "create", "--unit", &b.unit_id, "--public-url", &coll.public],
            &[],
        );
        let generated = std::fs::read_to_string(lab.agent_config_path(b.id)).expect("config");
        let quick = generated.replacen(
            "[schedule]\nprobe_interval_secs = 30",
            &format!(
                "[schedule]\nprobe_interval_secs = 1\nreport_interval_secs = {}\nisolation_interval_secs = 2\n\
                 self_check_interval_secs = 2\nservices_interval_secs = 5\ninventory_interval_secs = 10\n\
                 daily_check_at = \"00:00\"",
                REPORT_INTERVAL.as_secs()
            ),
            1,
        );
        assert_ne!(quick, generated, "the generated config has the expected schedule line");
        let state = agent_state_dir(&quick);
        let _ = std::fs::remove_dir_all(&state);
        let config = lab.state_dir().join(format!("b{}-province.toml", b.id));
        std::fs::write(&config, quick).expect("config");
        let agent_ns = lab.namespace(&format!("b{}-agent", b.id)).expect("ns");
        let out = Command::new("ip")
            .args(["netns", "exec", &agent_ns])
            .arg(bin("kaohe-agent"))
            .args(["enroll", &token, "--config"])
            .arg(&config)
            .output()
            .expect("enrol");
        assert!(
            out.status.success(),
            "bureau {} enrol: {}",
            b.id,
            String::from_utf8_lossy(&out.stderr)
        );
        let log = std::fs::File::create(lab.state_dir().join(format!("b{}-agent.log", b.id))).expect("log");
        agents.push(Reaped(Some(
            Command::new("ip")
                .args(["netns", "exec", &agent_ns])
                .arg(bin("kaohe-agent"))
                .args(["run", "--config"])
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("agent starts"),
        )));
        states.push(state);
    }
    let agents_started = Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let store = rt
        .block_on(Store::open_with(
            &format!("sqlite://{}", data.join("kaohe.db").display()),
            rubric.timezone,
        ))
        .expect("store");
    let agent_of: BTreeMap<String, String> = rt
        .block_on(store.agents(None))
        .expect("agents")
        .into_iter()
        .map(|a| (a.unit_id, a.id))
        .collect();
    assert_eq!(agent_of.len(), desc.bureaus.len(), "one agent per bureau: {agent_of:?}");

    // Unit staff of bureau 1 see bureau 1, and nothing of bureau 2 (page, API, export).
    let jar = lab.state_dir().join("staff1.cookies");
    let (code, body) = coll.curl(&[
        "/login",
        "-c",
        jar.to_str().expect("utf8"),
        "--data-urlencode",
        "user=staff1",
        "--data-urlencode",
        &format!("password={PASSWORD}"),
    ]);
    assert_eq!(code, 303, "staff1 logs in: {body}");
    let as_staff1 = |path: &str| coll.curl(&[path, "-b", jar.to_str().expect("utf8")]);
    let (b1, b2) = (&desc.bureaus[0].unit_id, &desc.bureaus[1].unit_id);
    for (path, want) in [
        (format!("/units/{b1}"), 200),
        (format!("/api/v1/dashboard/units/{b1}/sheet"), 200),
        (format!("/units/{b2}"), 403),
        (format!("/api/v1/dashboard/units/{b2}/sheet"), 403),
        (format!("/units/{b2}/export.csv"), 403),
    ] {
        let (code, body) = as_staff1(&path);
        assert_eq!(
            code,
            want,
            "unit staff of bureau 1 GET {path}: {}",
            body.chars().take(300).collect::<String>()
        );
    }
    // And staff of bureau 2 the other way round.
    let jar2 = lab.state_dir().join("staff2.cookies");
    let jar2 = jar2.to_str().expect("utf8");
    let login = format!("password={PASSWORD}");
    let (code, body) = coll.curl(&[
        "/login",
        "-c",
        jar2,
        "--data-urlencode",
        "user=staff2",
        "--data-urlencode",
        &login,
    ]);
    assert_eq!(code, 303, "staff2 logs in: {body}");
    for (path, want) in [(format!("/units/{b2}"), 200), (format!("/units/{b1}"), 403)] {
        let (code, _) = coll.curl(&[&path, "-b", jar2, "-o", "/dev/null"]);
        assert_eq!(code, want, "unit staff of bureau 2 GET {path}");
    }
    let (code, _) = coll.curl(&[&format!("/units/{b2}"), "-o", "/dev/null"]);
    assert_eq!(code, 303, "without a login the unit page sends to /login");

    // Bureau 3's uplink goes down (the switch port of its gateway: a carrier loss) for
    // longer than the test rubric allows.
    std::thread::sleep(Duration::from_secs(3).saturating_sub(agents_started.elapsed()));
    lab.set_port("bb3", "b3-gw", false).expect("uplink down");
    let down_at = Utc::now();
    std::thread::sleep(UPLINK_DOWN);
    lab.set_port("bb3", "b3-gw", true).expect("uplink up");
    let up_at = Utc::now();
    std::thread::sleep(Duration::from_secs(2));

    // The collector stops (SIGTERM) for more than three batches, and restarts on the same
    // data dir; the agents keep their reports in the spool meanwhile.
    let before: Vec<i64> = states.iter().map(|s| made(s)).collect();
    assert!(server.stop(Duration::from_secs(10)), "the collector stops on SIGTERM");
    std::thread::sleep(COLLECTOR_DOWN);
    let during: Vec<i64> = states.iter().map(|s| made(s)).collect();
    let mut server = coll.serve(2);
    for (b, (x, y)) in desc.bureaus.iter().zip(before.iter().zip(&during)) {
        assert!(
            y - x >= 3,
            "bureau {}: the agent made {} batches while the collector was down",
            b.id,
            y - x
        );
    }
    // Catch-up: every report made while the collector was down is stored, and each unit's
    // checks (the daily check after ~20 s) have run.
    let caught_up = lab::wait_until(Duration::from_secs(40), || {
        std::thread::sleep(Duration::from_millis(100));
        desc.bureaus.iter().zip(&during).all(|(b, made_by)| {
            let seqs = stored_sequences(&rt, &store, &agent_of[&b.unit_id]);
            let reports = rt
                .block_on(store.reports(&b.unit_id, test_start, Utc::now() + chrono::Duration::hours(1)))
                .unwrap_or_default();
            seqs.last().is_some_and(|l| l >= made_by) && checks_ran(&reports).values().all(|r| *r)
        })
    });
    let catch_up = agents_started.elapsed();
    assert!(
        caught_up,
        "the agents did not catch up within 40 s of the restart: {:?}",
        desc.bureaus
            .iter()
            .map(|b| (
                b.id,
                stored_sequences(&rt, &store, &agent_of[&b.unit_id]).last().copied(),
                checks_ran(
                    &rt.block_on(store.reports(&b.unit_id, test_start, Utc::now() + chrono::Duration::hours(1)))
                        .unwrap_or_default()
                )
            ))
            .collect::<Vec<_>>()
    );

    // Bureau 1, scored from the roll-ups as of a moment its evidence covers. Two things in
    // the engine make "as of now" in a short run lose 三.2 without any outage (see the
    // report of this test): the seconds since the agent's last batch are "no data", which
    // 三.2 counts as down; and availability is computed from whole seconds (up and window
    // both truncated by `num_seconds`), so 0.1 s without data at the start (enrolment to the
    // first probe) can cost a whole second of a 30 s window. So the moment is: at least
    // 35 s after the enrolment, within 0.4 s after the agent made a report that came in at
    // once (its samples stand for 1.5 probe intervals: they cover that), and at a
    // fraction of a second after the enrolment that the truncation does not turn into a
    // lost second.
    let b1_agent = &agent_of[b1];
    let enrolled = rt.block_on(store.first_enrolments()).expect("enrolments")[b1.as_str()];
    let settle = enrolled + chrono::Duration::seconds(35) - Utc::now();
    std::thread::sleep(settle.to_std().unwrap_or_default());
    let last = latest_report(&rt, &store, b1_agent).map_or(0, |r| r.0);
    let mut fresh = None;
    assert!(
        lab::wait_until(Duration::from_secs(10), || {
            std::thread::sleep(Duration::from_millis(10));
            fresh = latest_report(&rt, &store, b1_agent).filter(|r| r.0 > last && r.2 - r.1 < 250);
            fresh.is_some()
        }),
        "bureau 1: no report came in at once after the catch-up"
    );
    let made_at = fresh.map_or(0, |r| r.1);
    let since = |t: i64| (t - enrolled.timestamp_millis()).rem_euclid(1000);
    let delta = (50..=400)
        .step_by(10)
        .filter(|d| since(made_at + d) <= 980)
        .max_by_key(|d| since(made_at + d))
        .unwrap_or(50);
    let now = kaohe_collector::store::from_millis(made_at + delta);
    std::thread::sleep((now - Utc::now()).to_std().unwrap_or_default());
    let period = Period::covering(test_start, now, rubric.timezone);
    let full1 = rt
        .block_on(kaohe_collector::scores::unit_sheet(&store, &rubric, b1, period, now))
        .expect("bureau 1 scored");
    let auto1 = full1.section("二") + full1.section("三");
    // How long after the enrolment the first probe went out: time without data for 三.2.
    let first_probe = rt
        .block_on(store.reports(b1, enrolled, now))
        .expect("reports")
        .iter()
        .flat_map(|r| r.probes.samples.iter().map(|s| s.at))
        .min()
        .map(|t| (t - enrolled).num_milliseconds());
    println!(
        "bureau 1 as of {now}: 二 {} 三 {} (pending {}), window {}..{}, first probe {first_probe:?} ms after enrolment",
        full1.section("二"),
        full1.section("三"),
        full1.pending_points,
        full1.auto.period.window_start,
        full1.auto.period.window_end
    );
    assert_eq!(
        auto1,
        26.0,
        "bureau 1 gets every automatic point of 二 and 三 (first probe {first_probe:?} ms after enrolment); it lost:\n{}",
        losses(&full1)
    );
    let room = full1.items.iter().find(|i| i.id == "三.1").expect("三.1");
    assert_eq!(
        (room.pending_points, room.score),
        (1.0, 2.0),
        "bureau 1 三.1: the reviewer's point is pending: {room:#?}"
    );

    // Stop the agents: what is stored no longer changes (their last batch stays spooled).
    for mut a in agents {
        assert!(a.stop(Duration::from_secs(10)), "an agent stops on SIGTERM");
    }
    std::thread::sleep(Duration::from_millis(300));
    let now = Utc::now();
    let period = Period::covering(test_start, now, rubric.timezone);

    // No report lost or stored twice: per agent, the sequences stored are 1..=n without a
    // gap or a repeat, and the spool holds exactly the rest of what the agent made.
    for (b, state) in desc.bureaus.iter().zip(&states) {
        let seqs = stored_sequences(&rt, &store, &agent_of[&b.unit_id]);
        let n = seqs.len() as i64;
        assert_eq!(
            seqs,
            (1..=n).collect::<Vec<_>>(),
            "bureau {}: stored sequences are contiguous from 1",
            b.id
        );
        let mut spooled: Vec<i64> = std::fs::read_dir(state.join("spool"))
            .expect("spool")
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                name.strip_suffix(".json")?.split('-').next()?.parse().ok()
            })
            .collect();
        spooled.sort_unstable();
        assert_eq!(
            spooled,
            (n + 1..=made(state)).collect::<Vec<_>>(),
            "bureau {}: the spool holds exactly the reports not yet stored (stored 1..={n})",
            b.id
        );
    }

    // For every bureau, the sheet from the roll-ups equals the engine's on every raw report.
    let first = rt.block_on(store.first_enrolments()).expect("enrolments");
    let mut sheets = BTreeMap::new();
    for b in &desc.bureaus {
        let rolled = rt
            .block_on(kaohe_collector::rollup::score_unit(
                &store, &rubric, &b.unit_id, period, now,
            ))
            .expect("scored from the roll-ups");
        let unit = rt.block_on(store.unit(&b.unit_id)).expect("unit").expect("unit");
        let mut profile = kaohe_collector::rollup::profile_of(&unit);
        profile.enrolled_at = first.get(&b.unit_id).copied();
        assert!(profile.enrolled_at.is_some(), "bureau {}: enrolled_at", b.id);
        let registry = rt.block_on(store.registry(&b.unit_id)).expect("registry");
        let (start, _) = period.bounds(rubric.timezone);
        let raw = rt
            .block_on(store.reports(&b.unit_id, start, now + chrono::Duration::hours(1)))
            .expect("reports");
        let direct = kaohe_rubric::score(&ScoreInput {
            rubric: &rubric,
            profile: &profile,
            registry: &registry,
            reports: &raw,
            period,
            as_of: Some(now),
        });
        assert_eq!(
            rolled.reports,
            raw.len(),
            "bureau {}: every stored report is in the roll-ups",
            b.id
        );
        assert_eq!(
            rolled, direct,
            "bureau {}: the roll-ups score exactly like the raw reports",
            b.id
        );
        sheets.insert(b.id, rolled);
    }
    let s = |id: u8| &sheets[&id];
    for (id, sheet) in &sheets {
        let items: Vec<String> = sheet
            .items
            .iter()
            .filter_map(|i| Some(format!("{} {}", i.id, i.score?)))
            .collect();
        println!("bureau {id} as of {now} (agents stopped): {}", items.join(", "));
    }

    // Bureau 1 after the agents stopped: everything but availability (whose last seconds
    // are now "no data") is still full.
    for id in ["二.1", "二.2", "三.3", "三.4", "三.5"] {
        let item = s(1).items.iter().find(|i| i.id == id).expect("item");
        assert_eq!(
            item.score,
            Some(f64::from(item.points)),
            "bureau 1 {}",
            deductions(s(1), id)
        );
    }

    // Bureau 2: the unregistered device costs under 二.1, with its address as evidence.
    let unregistered = &lab.facts().bureaus[1].unregistered;
    assert!(!unregistered.is_empty());
    assert!(score_of(s(2), "二.1") < 3.0, "bureau 2 {}", deductions(s(2), "二.1"));
    let b21 = s(2).items.iter().find(|i| i.id == "二.1").expect("二.1");
    let evidence = serde_json::to_string(&b21.deductions).expect("json");
    for d in unregistered {
        assert!(
            evidence.contains(&d.ip.to_string()),
            "bureau 2 二.1 names the unregistered {}: {}",
            d.ip,
            deductions(s(2), "二.1")
        );
    }

    // Bureau 3: the breach through the rogue router (三.3), and the outage of its uplink:
    // availability (三.2) and a private-network outage not restored in time (三.5).
    assert!(score_of(s(3), "三.3") < 5.0, "bureau 3 {}", deductions(s(3), "三.3"));
    assert!(score_of(s(3), "三.2") < 5.0, "bureau 3 {}", deductions(s(3), "三.2"));
    assert!(score_of(s(3), "三.5") < 3.0, "bureau 3 {}", deductions(s(3), "三.5"));
    let b35 = s(3).items.iter().find(|i| i.id == "三.5").expect("三.5");
    let slow: Vec<DateTime<Utc>> = b35
        .deductions
        .iter()
        .flat_map(|d| &d.evidence)
        .filter_map(|e| match e {
            kaohe_rubric::scoring::Evidence::Outage { start, .. } => Some(*start),
            _ => None,
        })
        .collect();
    let tolerance = chrono::Duration::seconds(3);
    let b32 = s(3).items.iter().find(|i| i.id == "三.2").expect("三.2");
    assert!(
        b32.deductions.iter().flat_map(|d| &d.evidence).any(|e| matches!(e,
            kaohe_rubric::scoring::Evidence::Downtime { start, end, .. }
                if *start <= up_at && *end >= down_at && *end - *start >= chrono::Duration::seconds(5))),
        "bureau 3 三.2: the uplink's downtime {down_at}..{up_at} is the evidence: {}",
        deductions(s(3), "三.2")
    );
    assert!(
        slow.iter().any(|t| *t >= down_at - tolerance && *t <= up_at),
        "bureau 3 三.5: the outage from {down_at} to {up_at} is the evidence: {}",
        deductions(s(3), "三.5")
    );

    // Staff of bureau 2 get the list of devices to register, ready to complete and import.
    let list = coll.cli(&["registry", "unregistered", "--unit", b2, "--csv"], &[]);
    for d in unregistered {
        assert!(list.contains(&d.ip.to_string()), "{list}");
    }
    assert_eq!(
        list.lines().count(),
        1 + unregistered.len(),
        "header + one row per unregistered device: {list}"
    );
    assert!(server.stop(Duration::from_secs(10)), "the collector stops on SIGTERM");
    println!(
        "province: setup {setup:?}, agents caught up {catch_up:?} after start, whole test {:?}",
        began.elapsed()
    );
    // The lab removes what it made; this test's own files go too.
    for f in [
        "collector-1.log",
        "collector-2.log",
        "collector.toml",
        "test-rubric.toml",
        "staff1.cookies",
        "staff2.cookies",
    ] {
        let _ = std::fs::remove_file(lab.state_dir().join(f));
    }
    for b in &desc.bureaus {
        for f in [format!("b{}-province.toml", b.id), format!("b{}-agent.log", b.id)] {
            let _ = std::fs::remove_file(lab.state_dir().join(f));
        }
    }
    let _ = std::fs::remove_dir_all(&data);
    let _ = lab.down();
}
