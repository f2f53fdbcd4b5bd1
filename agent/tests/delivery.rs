//! Delivery end to end over real HTTPS: a fake collector on loopback (`common`: a private
//! CA, real acknowledgements, duplicate detection by report id) and the real agent daemon,
//! which is stopped and restarted while the collector is down, or has a report refused.

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    Mode, Received, Shared, agent_config, assert_gaps_accounted, enrol_files, free_port, pki, spooled, start_agent,
    start_collector, stop_agent, wait_for,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_made_while_the_collector_is_down_all_arrive_once_across_an_agent_restart() {
    let dir = std::env::temp_dir().join(format!("kaohe-delivery-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let state = dir.join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    let pki = pki();
    enrol_files(&state, &pki);
    // A free loopback port for the collector, closed while it is "down".
    let addr = free_port();
    let config = agent_config(&dir, &state, addr, "");

    // Collector down: the agent spools, is restarted, and spools more.
    let agent = start_agent(&config);
    wait_for(Duration::from_secs(20), "3 spooled reports", || {
        spooled(&state).len() >= 3
    })
    .await;
    stop_agent(agent);
    let before_restart = spooled(&state).len();
    let agent = start_agent(&config);
    wait_for(Duration::from_secs(20), "3 more spooled reports", || {
        spooled(&state).len() >= before_restart + 3
    })
    .await;
    let made_while_down: HashSet<String> = spooled(&state)
        .iter()
        .filter_map(|p| p.file_stem()?.to_str()?.split_once('-').map(|(_, id)| id.to_string()))
        .collect();
    assert!(made_while_down.len() >= 6);

    // The collector returns: everything arrives, nothing twice.
    let rx: Shared = Arc::default();
    let handle = start_collector(addr, &pki, rx.clone()).await;
    wait_for(Duration::from_secs(90), "the spool to drain", || {
        let got = &rx.lock().expect("lock").stored;
        made_while_down.iter().all(|id| got.contains(id))
    })
    .await;
    stop_agent(agent);
    let r = rx.lock().expect("lock");
    let dups = r.arrivals.len() - r.stored.len();
    assert_eq!(dups, 0, "no report sent twice");
    // Delivered plus still spooled (the batch spooled at the final shutdown) = 1..=N.
    let mut seqs = r.sequences.clone();
    seqs.extend(
        spooled(&state)
            .iter()
            .filter_map(|p| p.file_stem()?.to_str()?.split_once('-')?.0.parse::<u64>().ok()),
    );
    seqs.sort_unstable();
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "no sequence number lost or repeated across the restart");
    handle.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolling_with_a_one_time_token_pins_the_ca_and_reports_then_flow() {
    let dir = std::env::temp_dir().join(format!("kaohe-enroll-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let state = dir.join("state");
    let pki = pki();
    let addr = free_port();
    let rx: Shared = Arc::new(Mutex::new(Received {
        secret: Some("one-time-secret".into()),
        ca_pem: pki.ca_pem.clone(),
        ..Received::default()
    }));
    let handle = start_collector(addr, &pki, rx.clone()).await;
    let token = |fingerprint: &str, expires: i64| {
        kaohe_rubric::enrolment::Token {
            url: format!("https://{addr}"),
            ca_fingerprint: fingerprint.to_string(),
            secret: "one-time-secret".into(),
            expires,
            unit: "lab/enrolled".into(),
        }
        .encode()
    };
    let config = dir.join("agent.toml");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        &config,
        format!(
            "state_dir = {:?}\n\n[schedule]\nprobe_interval_secs = 1\nreport_interval_secs = 1\n\n\
             [[reachability.targets]]\naddress = \"{addr}\"\nkind = \"tcp\"\n",
            state.display().to_string()
        ),
    )
    .expect("config");
    let enroll = |token: &str| {
        Command::new(env!("CARGO_BIN_EXE_kaohe-agent"))
            .args(["enroll", token, "--config"])
            .arg(&config)
            .output()
            .expect("runs")
    };
    let now = chrono_now();

    // A token whose pin does not match the collector's CA is refused before anything is sent.
    let wrong = format!("sha256:{}", "00".repeat(32));
    let out = enroll(&token(&wrong, now + 3600));
    assert_eq!(out.status.code(), Some(69));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pinned CA"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        rx.lock().expect("lock").secret.is_some(),
        "the secret was not spent on a wrong collector"
    );
    // An expired token is refused by the agent itself.
    let out = enroll(&token(&pki.ca_fingerprint, now - 60));
    assert_eq!(out.status.code(), Some(69));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expired"));

    // The right token enrols once.
    let good = token(&pki.ca_fingerprint, now + 3600);
    let out = enroll(&good);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("lab/enrolled"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(state.join("credential"))
        .expect("credential")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the credential is readable by the agent only");
    let out = enroll(&good);
    assert_eq!(out.status.code(), Some(69), "a token works once");
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));

    // The daemon, with no [collector] in its config, reports with what enrolment stored.
    let agent = start_agent(&config);
    wait_for(Duration::from_secs(30), "2 reports from the enrolled agent", || {
        rx.lock().expect("lock").stored.len() >= 2
    })
    .await;
    stop_agent(agent);
    handle.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_refused_for_good_is_counted_in_the_next_one_and_an_upgraded_agent_keeps_its_sequence() {
    let dir = std::env::temp_dir().join(format!("kaohe-refused-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let state = dir.join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    let pki = pki();
    enrol_files(&state, &pki);
    // What an agent before the spool's state file left: its sequence file.
    std::fs::write(state.join("sequence"), "41").expect("old sequence");
    let addr = free_port();
    let config = agent_config(&dir, &state, addr, "");
    let rx: Shared = Arc::new(Mutex::new(Received {
        mode: Mode::Refuse(vec![43]),
        ..Received::default()
    }));
    let handle = start_collector(addr, &pki, rx.clone()).await;
    let agent = start_agent(&config);
    wait_for(Duration::from_secs(30), "reports up to sequence 45", || {
        rx.lock().expect("lock").sequences.iter().any(|s| *s >= 45)
    })
    .await;
    stop_agent(agent);
    handle.shutdown();
    let r = rx.lock().expect("lock");
    let mut seqs = r.sequences.clone();
    seqs.sort_unstable();
    assert_eq!(
        seqs.first(),
        Some(&42),
        "the upgraded agent goes on from its old sequence 41"
    );
    assert!(!seqs.contains(&43), "43 was refused");
    let after = r.reports.iter().find(|x| x.sequence == 44).expect("report 44 arrived");
    assert_eq!(
        (after.spool_rejected, after.spool_dropped),
        (1, 0),
        "44 says one was refused"
    );
    assert_eq!(
        assert_gaps_accounted(&r.reports),
        1,
        "the one gap is the refused report"
    );
    let rejected: Vec<String> = std::fs::read_dir(state.join("spool/rejected"))
        .expect("rejected/")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(rejected[0].starts_with("00000000000000000043-"), "{rejected:?}");
    assert!(!state.join("sequence").exists(), "the old sequence file is taken over");
    let _ = std::fs::remove_dir_all(&dir);
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
