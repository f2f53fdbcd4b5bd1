//! `kaohe-bench`: the agent's benchmarks (`docs/benchmarks.md`), printed as Markdown
//! tables. `deploy/bench/run` installs the other tools, builds the release agent and
//! runs it. The logic lives in `kaohe_tests::bench`.

use std::path::PathBuf;
use std::time::Duration;

use kaohe_tests::bench::{self, BenchError, RssOptions, SweepOptions, Tool};
use kaohe_tests::lab::cli::ArgList;

const USAGE: &str = "\
usage: kaohe-bench COMMAND [OPTIONS]

  sweep [--hosts 45] [--runs 7] [--tools agent,agent-5000,agent-leak,arp-scan,nmap,nmap-t5]
        [--prefix kb] [--agent PATH]
      /24 ARP sweep of kaohe-agent beside arp-scan and nmap -sn, on a LAN of
      namespaces built for it (and torn down after)
  agent-rss [--minutes 10] [--interval-secs 5] [--bureau 1] [--prefix kr]
            [--agent PATH] [--lab-helper PATH]
      kaohe-agent run in a lab bureau: peak RSS and CPU time
  clean [--prefix kb] [--lab-prefix kr]
      remove what an interrupted run left behind

--agent defaults to the release build beside this binary's target dir
(TARGET/release/kaohe-agent); --lab-helper to kaohe-lab beside this binary.
Needs root (network namespaces).";

fn exe_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(PathBuf::from))
        .unwrap_or_default()
}

fn default_agent() -> PathBuf {
    let dir = exe_dir();
    dir.parent().unwrap_or(&dir).join("release").join("kaohe-agent")
}

fn check_known(args: &ArgList, raw: &[String], known: &[&str]) -> Result<(), BenchError> {
    if let Some(p) = args.positional(0) {
        return Err(BenchError(format!("unexpected argument {p:?}")));
    }
    for a in raw.iter().filter(|a| a.starts_with("--")) {
        let flag = a.split_once('=').map_or(a.as_str(), |(k, _)| k);
        if !known.contains(&flag) {
            return Err(BenchError(format!("unknown option {flag}")));
        }
    }
    Ok(())
}

fn usage(e: String) -> BenchError {
    BenchError(e)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match run(&args) {
        Ok(()) => 0,
        Err(Failure::Usage(e)) => {
            eprintln!("kaohe-bench: {e}\n\n{USAGE}");
            64
        }
        Err(Failure::Bench(e)) => {
            eprintln!("kaohe-bench: {e}");
            1
        }
    };
    std::process::exit(code);
}

enum Failure {
    Usage(BenchError),
    Bench(BenchError),
}

fn run(args: &[String]) -> Result<(), Failure> {
    let Some((cmd, rest)) = args.split_first() else {
        println!("{USAGE}");
        return Ok(());
    };
    let parsed = ArgList::parse(rest, &[]).map_err(|e| Failure::Usage(usage(e)))?;
    let u = |e: String| Failure::Usage(usage(e));
    if matches!(cmd.as_str(), "sweep" | "agent-rss" | "clean") && !kaohe_tests::lab::is_root() {
        return Err(Failure::Bench(BenchError(
            "needs root: it builds network namespaces".into(),
        )));
    }
    match cmd.as_str() {
        "sweep" => {
            check_known(&parsed, rest, &["--hosts", "--runs", "--tools", "--prefix", "--agent"])
                .map_err(Failure::Usage)?;
            let tools = match parsed.value("--tools") {
                Some(list) => list
                    .split(',')
                    .map(Tool::parse)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(u)?,
                None => bench::default_tools(),
            };
            let opts = SweepOptions {
                prefix: parsed.value("--prefix").unwrap_or("kb").to_string(),
                hosts: parsed.number("--hosts").map_err(u)?.unwrap_or(45),
                runs: parsed.number("--runs").map_err(u)?.unwrap_or(7),
                agent: parsed.value("--agent").map_or_else(default_agent, PathBuf::from),
                tools,
                work_dir: PathBuf::from(bench::WORK_DIR),
            };
            if !(1..=100).contains(&opts.runs) {
                return Err(u(format!("--runs {}: use 1 to 100", opts.runs)));
            }
            eprintln!(
                "kaohe-bench: sweep, {} hosts, {} runs per tool, agent {}",
                opts.hosts,
                opts.runs,
                opts.agent.display()
            );
            let result = bench::sweep(&opts).map_err(Failure::Bench)?;
            println!("{}\n\n{}", bench::machine(), result.render());
            Ok(())
        }
        "agent-rss" => {
            check_known(
                &parsed,
                rest,
                &[
                    "--minutes",
                    "--interval-secs",
                    "--bureau",
                    "--prefix",
                    "--agent",
                    "--lab-helper",
                ],
            )
            .map_err(Failure::Usage)?;
            let minutes: f64 = parsed.number("--minutes").map_err(u)?.unwrap_or(10.0);
            let interval: f64 = parsed.number("--interval-secs").map_err(u)?.unwrap_or(5.0);
            // Written so that NaN is refused too.
            let in_range = minutes > 0.0 && minutes <= 24.0 * 60.0 && (0.1..=600.0).contains(&interval);
            if !in_range {
                return Err(u("--minutes must be in (0, 1440], --interval-secs in [0.1, 600]".into()));
            }
            let opts = RssOptions {
                prefix: parsed.value("--prefix").unwrap_or("kr").to_string(),
                duration: Duration::from_secs_f64(minutes * 60.0),
                interval: Duration::from_secs_f64(interval),
                agent: parsed.value("--agent").map_or_else(default_agent, PathBuf::from),
                helper: parsed
                    .value("--lab-helper")
                    .map_or_else(|| exe_dir().join("kaohe-lab"), PathBuf::from),
                bureau: parsed.number("--bureau").map_err(u)?.unwrap_or(1),
                work_dir: PathBuf::from(bench::WORK_DIR),
            };
            eprintln!(
                "kaohe-bench: agent-rss, {minutes} min in bureau {} of lab {}, agent {}",
                opts.bureau,
                opts.prefix,
                opts.agent.display()
            );
            let result = bench::agent_rss(&opts).map_err(Failure::Bench)?;
            println!("{}\n\n{}", bench::machine(), result.render());
            Ok(())
        }
        "clean" => {
            check_known(&parsed, rest, &["--prefix", "--lab-prefix"]).map_err(Failure::Usage)?;
            let prefix = parsed.value("--prefix").unwrap_or("kb");
            let lab_prefix = parsed.value("--lab-prefix").unwrap_or("kr");
            let n = bench::clean_sweep(prefix).map_err(Failure::Bench)?;
            let c = kaohe_tests::lab::cleanup(lab_prefix, &kaohe_tests::lab::default_state_dir(lab_prefix))
                .map_err(|e| Failure::Bench(e.into()))?;
            eprintln!(
                "kaohe-bench: removed {n} namespaces of {prefix}-*, {} of lab {lab_prefix}",
                c.namespaces
            );
            Ok(())
        }
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(u(format!("unknown command {other:?}"))),
    }
}
