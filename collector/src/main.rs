use std::process::ExitCode;

use clap::Parser;
use kaohe_collector::cli::{Cli, Command, run};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // Usage errors exit 64 (EX_USAGE); --help and --version exit 0.
            return if e.use_stderr() {
                ExitCode::from(64)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    kaohe_collector::logging::init(cli.log_format, matches!(cli.command, Command::Serve(_)));
    let mut stdout = std::io::stdout().lock();
    match run(cli, chrono::Utc::now(), &mut stdout) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("错误 (error): {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
