//! `kaohe-lab`, the command behind `deploy/lab/lab`. See `deploy/lab/README.md`.

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::Command;
use std::str::FromStr;
use std::time::{Duration, Instant};

use super::{FlapMode, Lab, LabError, Options, cleanup, helper, leftovers, sys};

const USAGE: &str = "\
usage: kaohe-lab [--prefix P] [--file lab.toml] [--state DIR] COMMAND

  up [--no-flap]                 build the lab (removing a stale one of the same prefix)
  down                           tear it down: no namespace, veth, bridge or process left
  status                         what is up, where, and the root link to the collector
  gen [--out DIR]                write registries, agent configs, expected.json only
  exec HOST -- CMD...            run CMD inside HOST (or sw-SEGMENT, a switch)
  link HOST DEV up|down          take a host's interface down or up (routes restored)
  port SEGMENT HOST up|down      take the switch port facing HOST down or up
  netem HOST DEV SPEC...|off     e.g. netem b1-agent eth0 loss 20%
  forwarding HOST on|off         IP forwarding of a host
  flap start [--period S] [--down S] | stop | log
                                 bureau 3's flapping uplink (defaults from lab.toml)

The prefix defaults to $KAOHE_LAB_PREFIX, then lab.toml's default_prefix; the state
dir to $KAOHE_LAB_STATE, then /run/kaohe-lab/PREFIX.";

/// Parsed arguments: positionals, `--flag value` pairs, and bare switches.
/// Everything after `--` is positional.
#[derive(Debug, Default)]
pub struct ArgList {
    positional: Vec<String>,
    flags: Vec<(String, String)>,
    switches: Vec<String>,
}

impl ArgList {
    /// `switches` are the flags that take no value.
    pub fn parse(args: &[String], switches: &[&str]) -> Result<ArgList, String> {
        let mut out = ArgList::default();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if a == "--" {
                out.positional.extend(it.by_ref().cloned());
                break;
            }
            if let Some(flag) = a.strip_prefix("--").filter(|f| !f.is_empty()) {
                if let Some((k, v)) = flag.split_once('=') {
                    out.flags.push((format!("--{k}"), v.to_string()));
                } else if switches.contains(&a.as_str()) {
                    out.switches.push(a.clone());
                } else {
                    let v = it.next().ok_or_else(|| format!("{a} needs a value"))?;
                    out.flags.push((a.clone(), v.clone()));
                }
            } else {
                out.positional.push(a.clone());
            }
        }
        Ok(out)
    }

    pub fn positional(&self, i: usize) -> Option<&str> {
        self.positional.get(i).map(String::as_str)
    }

    pub fn positionals(&self) -> &[String] {
        &self.positional
    }

    /// The last value of a flag.
    pub fn value(&self, flag: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(k, _)| k == flag)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, flag: &str) -> Vec<&str> {
        self.flags
            .iter()
            .filter(|(k, _)| k == flag)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn number<T: FromStr>(&self, flag: &str) -> Result<Option<T>, String> {
        self.value(flag)
            .map(|v| v.parse().map_err(|_| format!("{flag} {v:?} is not a number")))
            .transpose()
    }

    pub fn switch(&self, s: &str) -> bool {
        self.switches.iter().any(|x| x == s)
    }

    fn unknown_flags(&self, known: &[&str]) -> Result<(), LabError> {
        let bad: Vec<&str> = self
            .flags
            .iter()
            .map(|(k, _)| k.as_str())
            .chain(self.switches.iter().map(String::as_str))
            .filter(|k| !known.contains(k))
            .collect();
        if bad.is_empty() {
            Ok(())
        } else {
            Err(LabError::Usage(format!("unknown option {}", bad.join(", "))))
        }
    }
}

/// Runs the CLI; returns the process exit code.
pub fn main() -> i32 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The helper subcommands run inside namespaces and take their own flags.
    if let Some((cmd, rest)) = args.split_first() {
        let internal: Option<fn(&ArgList) -> i32> = match cmd.as_str() {
            "probe" => Some(helper::probe_main),
            "serve" => Some(helper::serve_main),
            "flap-run" => Some(helper::flap_main),
            _ => None,
        };
        if let Some(run) = internal {
            return match ArgList::parse(rest, &[]) {
                Ok(a) => run(&a),
                Err(e) => {
                    eprintln!("kaohe-lab {cmd}: {e}");
                    64
                }
            };
        }
    }
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kaohe-lab: {e}");
            match e {
                LabError::Usage(_) | LabError::Description { .. } => 64,
                LabError::NotRoot => 77,
                _ => 1,
            }
        }
    }
}

fn take_global<'a>(args: &mut &'a [String], name: &str) -> Result<Option<&'a str>, LabError> {
    if args.first().map(String::as_str) == Some(name) {
        let v = args
            .get(1)
            .ok_or_else(|| LabError::Usage(format!("{name} needs a value")))?;
        *args = &args[2..];
        return Ok(Some(v));
    }
    Ok(None)
}

fn run(all: &[String]) -> Result<i32, LabError> {
    let mut args = all;
    let (mut prefix, mut file, mut state) = (None, None, None);
    loop {
        if let Some(v) = take_global(&mut args, "--prefix")? {
            prefix = Some(v.to_string());
        } else if let Some(v) = take_global(&mut args, "--file")? {
            file = Some(PathBuf::from(v));
        } else if let Some(v) = take_global(&mut args, "--state")? {
            state = Some(PathBuf::from(v));
        } else {
            break;
        }
    }
    let Some((cmd, rest)) = args.split_first() else {
        println!("{USAGE}");
        return Ok(64);
    };
    if matches!(cmd.as_str(), "help" | "--help" | "-h") {
        println!("{USAGE}");
        return Ok(0);
    }
    let file = file
        .or_else(|| std::env::var_os("KAOHE_LAB_FILE").map(PathBuf::from))
        .unwrap_or_else(super::default_description);
    let desc = super::Description::load(&file)?;
    let prefix = prefix
        .or_else(|| std::env::var("KAOHE_LAB_PREFIX").ok().filter(|p| !p.is_empty()))
        .unwrap_or_else(|| desc.default_prefix.clone());
    super::check_prefix(&prefix).map_err(LabError::Usage)?;
    let state = state
        .or_else(|| std::env::var_os("KAOHE_LAB_STATE").map(PathBuf::from))
        .unwrap_or_else(|| super::default_state_dir(&prefix));
    let helper = std::env::current_exe().map_err(|e| LabError::io("finding kaohe-lab itself", e))?;
    let mut opts = Options::new(&prefix, helper);
    opts.description = file;
    opts.state_dir = state;

    let switches: &[&str] = match cmd.as_str() {
        "up" => &["--no-flap"],
        _ => &[],
    };
    let a = ArgList::parse(rest, switches).map_err(LabError::Usage)?;
    match cmd.as_str() {
        "up" => {
            a.unknown_flags(&["--no-flap"])?;
            up(opts, !a.switch("--no-flap"))
        }
        "down" => {
            a.unknown_flags(&[])?;
            down(&opts)
        }
        "status" => {
            a.unknown_flags(&[])?;
            status(opts)
        }
        "gen" => {
            a.unknown_flags(&["--out"])?;
            let out = a
                .value("--out")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/kaohe-lab/gen"));
            let facts = super::Facts::derive(&desc);
            for p in super::generate::write_all(&desc, &facts, &out)? {
                println!("{}", p.display());
            }
            Ok(0)
        }
        "exec" => {
            let host = a
                .positional(0)
                .ok_or_else(|| LabError::Usage("exec HOST -- CMD...".into()))?;
            let lab = Lab::attach(opts)?;
            let ns = lab.namespace(host)?;
            let cmd = &a.positionals()[1..];
            if cmd.is_empty() {
                return Err(LabError::Usage("exec HOST -- CMD...: no command".into()));
            }
            let err = Command::new("ip").args(["netns", "exec", &ns]).args(cmd).exec();
            Err(LabError::io(format!("running {} in {ns}", cmd[0]), err))
        }
        "link" | "port" => {
            let (what, host, dev, state) = match (a.positional(0), a.positional(1), a.positional(2)) {
                (Some(x), Some(y), Some(s @ ("up" | "down"))) => (x, y, s, s == "up"),
                _ => {
                    return Err(LabError::Usage(format!(
                        "{cmd} {} up|down",
                        if cmd == "link" { "HOST DEV" } else { "SEGMENT HOST" }
                    )));
                }
            };
            let lab = Lab::attach(opts)?;
            if cmd == "link" {
                lab.set_link(what, host, state)?
            } else {
                lab.set_port(what, host, state)?
            }
            println!("{cmd} {what} {host}: {dev}");
            Ok(0)
        }
        "netem" => {
            let (Some(host), Some(dev)) = (a.positional(0), a.positional(1)) else {
                return Err(LabError::Usage("netem HOST DEV SPEC...|off".into()));
            };
            let spec: Vec<&str> = a.positionals()[2..].iter().map(String::as_str).collect();
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
        "forwarding" => {
            let (host, on) = match (a.positional(0), a.positional(1)) {
                (Some(h), Some("on")) => (h, true),
                (Some(h), Some("off")) => (h, false),
                _ => return Err(LabError::Usage("forwarding HOST on|off".into())),
            };
            Lab::attach(opts)?.set_forwarding(host, on)?;
            println!("forwarding {host}: {}", if on { "on" } else { "off" });
            Ok(0)
        }
        "flap" => flap(opts, &a),
        other => Err(LabError::Usage(format!("unknown command {other:?}\n\n{USAGE}"))),
    }
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

fn flap(opts: Options, a: &ArgList) -> Result<i32, LabError> {
    a.unknown_flags(&["--period", "--down"])?;
    let mut lab = Lab::attach(opts)?;
    match a.positional(0) {
        Some("start") => {
            let f = lab.description().flap.clone();
            let secs = |flag: &str, default: Duration| -> Result<Duration, LabError> {
                Ok(a.number::<f64>(flag)
                    .map_err(LabError::Usage)?
                    .map(Duration::from_secs_f64)
                    .unwrap_or(default))
            };
            let period = secs("--period", f.period)?;
            let down = secs("--down", f.down)?;
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
        Some("stop") => {
            lab.flap_stop()?;
            println!("flapping stopped; the uplink is up");
            Ok(0)
        }
        Some("log") => {
            for e in lab.flap_events() {
                println!("{} {}", e.t_unix_ms, e.state);
            }
            Ok(0)
        }
        _ => Err(LabError::Usage(
            "flap start [--period S] [--down S] | stop | log".into(),
        )),
    }
}
