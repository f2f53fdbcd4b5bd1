//! `kaohe-lab`, the one command of this crate (`deploy/lab/lab`, `deploy/demo`,
//! `deploy/bench/run` run it): builds, inspects and tears down the lab ([`lab`]), runs
//! the demo ([`crate::demo`]) and the agent's benchmarks ([`bench`]), and, inside the
//! lab's namespaces, its helper processes ([`crate::helper`]).
//!
//! Exit codes, all decided here: 0 done; 1 failed; 3 `status` of a lab that is down;
//! 64 bad usage; 77 not root. The demo adds 69 (a service failed), 70 (internal) and 130
//! (interrupted before the table). A probe exits 0 when answered, 1 when not, 2 on any
//! error (bad use included).

mod bench;
mod lab;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::LabError;
use crate::bench::BenchError;
use crate::demo::{DemoArgs, DemoFailure};
use crate::helper::{FlapArgs, HelperError, ProbeArgs, ServeArgs};

pub use bench::BenchCommand;
pub use lab::{FlapCommand, OnOff, UpDown};

/// Bad arguments (sysexits' EX_USAGE).
pub const EX_USAGE: i32 = 64;
/// A service the demo runs failed (EX_UNAVAILABLE).
pub const EX_UNAVAILABLE: i32 = 69;
/// Internal (EX_SOFTWARE).
pub const EX_SOFTWARE: i32 = 70;
/// Not root (sysexits' EX_NOPERM).
pub const EX_NOPERM: i32 = 77;
/// Interrupted (128 + SIGINT).
pub const EX_INTERRUPTED: i32 = 130;
/// A probe's bad use or error.
const PROBE_ERROR: i32 = 2;

const AFTER_HELP: &str = "\
The prefix defaults to $KAOHE_LAB_PREFIX, then lab.toml's default_prefix; the state
dir to $KAOHE_LAB_STATE, then /run/kaohe-lab/PREFIX. Needs root for everything but
`gen`, `demo --help` and `help`. See deploy/lab/README.md.";

/// The Kaohe network lab: a small province in Linux network namespaces, the demo, and
/// the agent's benchmarks.
#[derive(Debug, Parser)]
#[command(name = "kaohe-lab", after_help = AFTER_HELP, arg_required_else_help = true)]
pub struct Cli {
    /// Namespace prefix of the lab (1-8 of a-z, 0-9)
    #[arg(long, value_name = "P")]
    pub prefix: Option<String>,
    /// The lab description [default: deploy/lab/lab.toml]
    #[arg(long, value_name = "lab.toml")]
    pub file: Option<PathBuf>,
    /// Where the lab keeps its state
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build the lab (removing a stale one of the same prefix)
    Up {
        /// Bureau 3's uplink does not flap
        #[arg(long)]
        no_flap: bool,
    },
    /// Tear it down: no namespace, veth, bridge or process left
    Down,
    /// What is up, where, and the root link to the collector
    Status,
    /// Write registries, agent configs, expected.json only
    Gen {
        /// [default: target/kaohe-lab/gen]
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Run CMD inside HOST (or sw-SEGMENT, a switch)
    Exec {
        host: String,
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Take a host's interface down or up (routes restored)
    Link { host: String, dev: String, state: UpDown },
    /// Take the switch port facing HOST down or up
    Port {
        segment: String,
        host: String,
        state: UpDown,
    },
    /// Netem on a host's interface, e.g. netem b1-agent eth0 loss 20%; "off" removes it
    Netem {
        host: String,
        dev: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "SPEC|off")]
        spec: Vec<String>,
    },
    /// IP forwarding of a host
    Forwarding { host: String, state: OnOff },
    /// Bureau 3's flapping uplink (defaults from lab.toml)
    #[command(subcommand)]
    Flap(FlapCommand),
    /// The demo: lab, collector, agents, score table (demo --help)
    Demo(DemoArgs),
    /// The agent's benchmarks, as Markdown tables (docs/benchmarks.md)
    #[command(subcommand)]
    Bench(BenchCommand),
    /// A probe from inside a lab host (run by the lab)
    #[command(hide = true)]
    Probe(ProbeArgs),
    /// The canaries' listeners (run by the lab)
    #[command(hide = true)]
    Serve(ServeArgs),
    /// The uplink flapper (run by the lab)
    #[command(hide = true, name = "flap-run")]
    FlapRun(FlapArgs),
}

/// Runs `kaohe-lab` with the process's arguments; returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    match cli.command {
        Command::Probe(args) => match crate::helper::probe(&args) {
            Ok((answered, line)) => {
                println!("{line}");
                if answered { 0 } else { 1 }
            }
            Err(e) => {
                eprintln!("kaohe-lab probe: {e}");
                PROBE_ERROR
            }
        },
        Command::Serve(args) => helper_exit("serve", crate::helper::serve(&args)),
        Command::FlapRun(args) => helper_exit("flap-run", crate::helper::flap(&args)),
        // The demo has said what went wrong, in Chinese first.
        Command::Demo(args) => crate::demo::main(&args).map_or_else(|e| demo_exit(e.kind()), |()| 0),
        Command::Bench(cmd) => bench_exit(bench::run(cmd)),
        command => lab_exit(lab::run(cli.prefix, cli.file, cli.state, command)),
    }
}

fn helper_exit(name: &str, result: Result<(), HelperError>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("kaohe-lab {name}: {e}");
            1
        }
    }
}

fn demo_exit(failure: DemoFailure) -> i32 {
    match failure {
        DemoFailure::Usage => EX_USAGE,
        DemoFailure::Unavailable => EX_UNAVAILABLE,
        DemoFailure::Internal => EX_SOFTWARE,
        DemoFailure::NotRoot => EX_NOPERM,
        DemoFailure::Interrupted => EX_INTERRUPTED,
    }
}

fn bench_exit(result: Result<(), BenchError>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("kaohe-lab bench: {e}");
            match e {
                BenchError::Usage(_) => EX_USAGE,
                _ => 1,
            }
        }
    }
}

/// Prints a clap error or help; help exits 0, bad usage 64 (a probe's 2).
fn usage_error(e: &clap::Error) -> i32 {
    let _ = e.print();
    if !e.use_stderr() {
        return 0;
    }
    let probe = std::env::args().nth(1).as_deref() == Some("probe");
    if probe { PROBE_ERROR } else { EX_USAGE }
}

/// The exit code of a lab command.
fn lab_exit(result: Result<i32, LabError>) -> i32 {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kaohe-lab: {e}");
            match e {
                LabError::Usage(_) | LabError::Prefix(_) | LabError::Description { .. } => EX_USAGE,
                LabError::NotRoot => EX_NOPERM,
                _ => 1,
            }
        }
    }
}
