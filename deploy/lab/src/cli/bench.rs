//! `kaohe-lab bench`: the agent's benchmarks (`docs/benchmarks.md`), printed as
//! Markdown tables. `deploy/bench/run` installs the other tools, builds the release
//! agent and runs it. The logic lives in [`crate::bench`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;

use crate::bench::{self, BenchError, RssOptions, SweepOptions, Tool};

const AFTER_HELP: &str = "\
--agent defaults to the release build beside this binary's target dir
(TARGET/release/kaohe-agent); --lab-helper to this kaohe-lab.
Needs root (network namespaces).";

#[derive(Debug, Subcommand)]
#[command(after_help = AFTER_HELP)]
pub enum BenchCommand {
    /// /24 ARP sweep of kaohe-agent beside arp-scan and nmap -sn, on a LAN of
    /// namespaces built for it (and torn down after)
    Sweep {
        /// Live hosts on the LAN
        #[arg(long, default_value_t = 45)]
        hosts: usize,
        /// Runs per tool (1-100)
        #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=100))]
        runs: u32,
        /// Comma-separated: agent, agent-5000, agent-leak, arp-scan, nmap, nmap-t5
        /// [default: agent,agent-5000,arp-scan,nmap,nmap-t5]
        #[arg(long, value_delimiter = ',')]
        tools: Option<Vec<Tool>>,
        /// Namespace prefix of the sweep's LAN
        #[arg(long, default_value = "kb")]
        prefix: String,
        /// The agent under test
        #[arg(long, value_name = "PATH")]
        agent: Option<PathBuf>,
    },
    /// kaohe-agent run in a lab bureau: peak RSS and CPU time
    AgentRss {
        /// How long (0 < M <= 1440)
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        /// Time between samples (0.1 to 600)
        #[arg(long, default_value_t = 5.0)]
        interval_secs: f64,
        /// The bureau the agent runs in
        #[arg(long, default_value_t = 1)]
        bureau: u8,
        /// Namespace prefix of the lab
        #[arg(long, default_value = "kr")]
        prefix: String,
        #[arg(long, value_name = "PATH")]
        agent: Option<PathBuf>,
        /// The kaohe-lab that runs the lab's helpers
        #[arg(long, value_name = "PATH")]
        lab_helper: Option<PathBuf>,
    },
    /// Remove what an interrupted run left behind
    Clean {
        #[arg(long, default_value = "kb")]
        prefix: String,
        #[arg(long, default_value = "kr")]
        lab_prefix: String,
    },
}

fn exe() -> PathBuf {
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from("kaohe-lab"))
}

/// `TARGET/release/kaohe-agent`, beside this binary's `TARGET/PROFILE`.
fn default_agent() -> PathBuf {
    let exe = exe();
    let dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    dir.parent().unwrap_or(&dir).join("release").join("kaohe-agent")
}

/// Runs a bench command.
pub(super) fn run(cmd: BenchCommand) -> Result<(), BenchError> {
    if !crate::is_root() {
        return Err(BenchError::NotRoot);
    }
    match cmd {
        BenchCommand::Sweep {
            hosts,
            runs,
            tools,
            prefix,
            agent,
        } => {
            let opts = SweepOptions {
                prefix,
                hosts,
                runs: runs as usize,
                agent: agent.unwrap_or_else(default_agent),
                tools: tools.unwrap_or_else(bench::default_tools),
                work_dir: PathBuf::from(bench::WORK_DIR),
            };
            eprintln!(
                "kaohe-lab bench: sweep, {} hosts, {} runs per tool, agent {}",
                opts.hosts,
                opts.runs,
                opts.agent.display()
            );
            let result = bench::sweep(&opts)?;
            println!("{}\n\n{}", bench::machine(), result.render());
        }
        BenchCommand::AgentRss {
            minutes,
            interval_secs,
            bureau,
            prefix,
            agent,
            lab_helper,
        } => {
            // Written so that NaN is refused too.
            let in_range = minutes > 0.0 && minutes <= 24.0 * 60.0 && (0.1..=600.0).contains(&interval_secs);
            if !in_range {
                return Err(BenchError::Usage(
                    "--minutes must be in (0, 1440], --interval-secs in [0.1, 600]".into(),
                ));
            }
            let opts = RssOptions {
                prefix,
                duration: Duration::from_secs_f64(minutes * 60.0),
                interval: Duration::from_secs_f64(interval_secs),
                agent: agent.unwrap_or_else(default_agent),
                helper: lab_helper.unwrap_or_else(exe),
                bureau,
                work_dir: PathBuf::from(bench::WORK_DIR),
            };
            eprintln!(
                "kaohe-lab bench: agent-rss, {minutes} min in bureau {} of lab {}, agent {}",
                opts.bureau,
                opts.prefix,
                opts.agent.display()
            );
            let result = bench::agent_rss(&opts)?;
            println!("{}\n\n{}", bench::machine(), result.render());
        }
        BenchCommand::Clean { prefix, lab_prefix } => {
            let n = bench::clean_sweep(&prefix)?;
            let c = crate::cleanup(&lab_prefix, &crate::default_state_dir(&lab_prefix))?;
            eprintln!(
                "kaohe-lab bench: removed {n} namespaces of {prefix}-*, {} of lab {lab_prefix}",
                c.namespaces
            );
        }
    }
    Ok(())
}
