//! The lab's own commands: `up`, `down`, `status`, `gen`, `exec`, `link`, `port`,
//! `netem`, `forwarding`, `flap`.

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::Command as Process;
use std::time::{Duration, Instant};

use clap::{Subcommand, ValueEnum};

use super::Command;
use crate::{Description, Facts, FlapMode, Lab, LabError, Options, check_prefix, cleanup, generate, leftovers, sys};

/// `up` or `down`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UpDown {
    Up,
    Down,
}

/// `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Debug, Subcommand)]
pub enum FlapCommand {
    /// Start flapping (restarting it if it runs)
    Start {
        /// Seconds from one outage to the next
        #[arg(long, value_name = "S")]
        period: Option<f64>,
        /// Seconds the uplink stays down
        #[arg(long, value_name = "S")]
        down: Option<f64>,
    },
    /// Stop flapping; the uplink is left up
    Stop,
    /// What the flapper did
    Log,
}

/// Runs a lab command with the global options; returns the exit code.
pub(super) fn run(
    prefix: Option<String>,
    file: Option<PathBuf>,
    state: Option<PathBuf>,
    command: Command,
) -> Result<i32, LabError> {
    let file = file
        .or_else(|| std::env::var_os("KAOHE_LAB_FILE").map(PathBuf::from))
        .unwrap_or_else(crate::default_description);
    let desc = Description::load(&file)?;
    let prefix = prefix
        .or_else(|| std::env::var("KAOHE_LAB_PREFIX").ok().filter(|p| !p.is_empty()))
        .unwrap_or_else(|| desc.default_prefix.clone());
    check_prefix(&prefix)?;
    let state = state
        .or_else(|| std::env::var_os("KAOHE_LAB_STATE").map(PathBuf::from))
        .unwrap_or_else(|| crate::default_state_dir(&prefix));
    let helper = std::env::current_exe().map_err(|e| LabError::io("finding kaohe-lab itself", e))?;
    let mut opts = Options::new(&prefix, helper);
    opts.description = file;
    opts.state_dir = state;
    match command {
        Command::Up { no_flap } => up(opts, !no_flap),
        Command::Down => down(&opts),
        Command::Status => status(opts),
        Command::Gen { out } => gen_files(&desc, out),
        Command::Exec { host, command } => exec(opts, &host, &command),
        Command::Link { host, dev, state } => {
            Lab::attach(opts)?.set_link(&host, &dev, state == UpDown::Up)?;
            println!("link {host} {dev}: {}", up_down(state));
            Ok(0)
        }
        Command::Port { segment, host, state } => {
            Lab::attach(opts)?.set_port(&segment, &host, state == UpDown::Up)?;
            println!("port {segment} {host}: {}", up_down(state));
            Ok(0)
        }
        Command::Netem { host, dev, spec } => netem(opts, &host, &dev, &spec),
        Command::Forwarding { host, state } => {
            let on = state == OnOff::On;
            Lab::attach(opts)?.set_forwarding(&host, on)?;
            println!("forwarding {host}: {}", if on { "on" } else { "off" });
            Ok(0)
        }
        Command::Flap(cmd) => flap(opts, cmd),
        Command::Demo(_) | Command::Bench(_) | Command::Probe(_) | Command::Serve(_) | Command::FlapRun(_) => {
            Err(LabError::Usage("not a lab command".into()))
        }
    }
}

fn up_down(state: UpDown) -> &'static str {
    match state {
        UpDown::Up => "up",
        UpDown::Down => "down",
    }
}

fn gen_files(desc: &Description, out: Option<PathBuf>) -> Result<i32, LabError> {
    let out = out.unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/kaohe-lab/gen"));
    let facts = Facts::derive(desc);
    for p in generate::write_all(desc, &facts, &out)? {
        println!("{}", p.display());
    }
    Ok(0)
}

fn exec(opts: Options, host: &str, command: &[String]) -> Result<i32, LabError> {
    let lab = Lab::attach(opts)?;
    let ns = lab.namespace(host)?;
    let Some(program) = command.first() else {
        return Err(LabError::Usage("exec HOST -- CMD...: no command".into()));
    };
    let err = Process::new("ip").args(["netns", "exec", &ns]).args(command).exec();
    Err(LabError::io(format!("running {program} in {ns}"), err))
}

fn netem(opts: Options, host: &str, dev: &str, spec: &[String]) -> Result<i32, LabError> {
    let spec: Vec<&str> = spec.iter().map(String::as_str).collect();
    let lab = Lab::attach(opts)?;
    if spec.is_empty() || spec == ["off"] {
        lab.netem(host, dev, None)?;
        println!("netem {host} {dev}: off");
    } else {
        lab.netem(host, dev, Some(&spec))?;
        println!("netem {host} {dev}: {}", spec.join(" "));
    }
    Ok(0)
}

fn up(mut opts: Options, flap: bool) -> Result<i32, LabError> {
    opts.flap = if flap { FlapMode::Description } else { FlapMode::Off };
    let lab = Lab::up(opts)?;
    let state = lab.state_dir().display().to_string();
    println!(
        "lab {} is up ({} namespaces); state in {state}",
        lab.prefix(),
        lab.facts().hosts.len() + lab.description().segments.len()
    );
    if let Some(r) = lab.root_link() {
        println!(
            "root link {} {}/30 -> {} {} on {}",
            r.root_dev,
            r.root_addr,
            r.lab_dev,
            r.lab_addr,
            lab.description().hosts[lab.description().root_host].name
        );
        if !r.collector_url.is_empty() {
            println!("collector from this machine: {}", r.collector_url);
        }
    }
    for b in &lab.description().bureaus {
        println!(
            "bureau {} ({}): {} and {}",
            b.id,
            b.unit_id,
            lab.registry_path(b.id).display(),
            lab.agent_config_path(b.id).display()
        );
    }
    println!("expected facts: {}", lab.expected_path().display());
    if lab.flapping() {
        let f = &lab.description().flap;
        println!(
            "flapping: {} on {} is down {} s of every {} s (flap stop to end it)",
            lab.description().hosts[f.host].name,
            lab.description().segments[f.segment].name,
            f.down.as_secs(),
            f.period.as_secs()
        );
    }
    lab.detach();
    Ok(0)
}

fn down(opts: &Options) -> Result<i32, LabError> {
    let start = Instant::now();
    let c = cleanup(&opts.prefix, &opts.state_dir)?;
    let took = start.elapsed();
    let left = leftovers(&opts.prefix)?;
    println!(
        "lab {} is down in {} ms: removed {} namespaces, {} root link(s), ended {} process(es)",
        opts.prefix,
        took.as_millis(),
        c.namespaces,
        c.root_links,
        c.processes
    );
    if left.is_empty() {
        Ok(0)
    } else {
        Err(LabError::State(format!("still there: {}", left.join(", "))))
    }
}

fn status(opts: Options) -> Result<i32, LabError> {
    let prefix = opts.prefix.clone();
    let lab = match Lab::attach(opts) {
        Ok(lab) => lab,
        Err(LabError::State(_)) => {
            let left = leftovers(&prefix)?;
            if left.is_empty() {
                println!("lab {prefix}: down");
            } else {
                println!("lab {prefix}: down, but left over: {}", left.join(", "));
            }
            return Ok(3);
        }
        Err(e) => return Err(e),
    };
    let d = lab.description();
    let netns = sys::netns_list()?;
    let mut missing = Vec::new();
    println!("lab {}: up; state in {}", lab.prefix(), lab.state_dir().display());
    if let Some(r) = lab.root_link() {
        println!(
            "  root link   {} {}/30 -> {} {}  {}",
            r.root_dev, r.root_addr, r.lab_dev, r.lab_addr, r.collector_url
        );
    }
    println!("  {:<10} {:<12} {:<14} addresses", "host", "role", "namespace");
    for h in &d.hosts {
        let ns = lab.namespace(&h.name)?;
        if !netns.contains(&ns) {
            missing.push(ns.clone());
        }
        let addrs: Vec<String> = lab.facts().hosts[&h.name].addresses.clone();
        let procs = sys::netns_pids(&ns).len();
        let procs = if procs > 0 {
            format!("  ({procs} process(es))")
        } else {
            String::new()
        };
        println!("  {:<10} {:<12} {:<14} {}{procs}", h.name, h.role, ns, addrs.join(" "));
    }
    for s in &d.segments {
        let ns = lab.namespace(&format!("sw-{}", s.name))?;
        if !netns.contains(&ns) {
            missing.push(ns);
        }
    }
    let f = &d.flap;
    let gw = &d.hosts[f.host];
    let uplink = gw.nic_on(f.segment).map(|n| n.dev.clone()).unwrap_or_default();
    let state = lab.link_state(&gw.name, &uplink)?;
    println!(
        "  flap        {} {} on {}: {}, carrier {}",
        gw.name,
        uplink,
        d.segments[f.segment].name,
        if lab.flapping() { "flapping" } else { "not flapping" },
        if state.carrier { "up" } else { "DOWN" }
    );
    if missing.is_empty() {
        Ok(0)
    } else {
        println!("  MISSING namespaces: {}", missing.join(", "));
        Ok(1)
    }
}

fn flap(opts: Options, cmd: FlapCommand) -> Result<i32, LabError> {
    let mut lab = Lab::attach(opts)?;
    match cmd {
        FlapCommand::Start { period, down } => {
            let f = lab.description().flap.clone();
            let secs = |s: Option<f64>, default: Duration| -> Result<Duration, LabError> {
                s.map_or(Ok(default), |s| {
                    Duration::try_from_secs_f64(s)
                        .map_err(|_| LabError::Usage(format!("{s} is not a number of seconds")))
                })
            };
            let period = secs(period, f.period)?;
            let down = secs(down, f.down)?;
            lab.flap_start(period, down)?;
            println!(
                "flapping: down {:.1} s of every {:.1} s",
                down.as_secs_f64(),
                period.as_secs_f64()
            );
            // The flapper runs on without us.
            lab.detach();
            Ok(0)
        }
        FlapCommand::Stop => {
            lab.flap_stop()?;
            println!("flapping stopped; the uplink is up");
            Ok(0)
        }
        FlapCommand::Log => {
            for e in lab.flap_events() {
                println!("{} {}", e.t_unix_ms, e.state);
            }
            Ok(0)
        }
    }
}
