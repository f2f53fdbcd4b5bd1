use std::process::ExitCode;

use clap::Parser;
use kaohe_collector::cli::{Cli, CliError, Command, run};

fn main() -> ExitCode {
    let result = Cli::try_parse().map_err(CliError::from).and_then(|cli| {
        kaohe_collector::logging::init(cli.log_format, matches!(cli.command, Command::Serve(_)));
        run(cli, chrono::Utc::now(), &mut std::io::stdout().lock())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            e.report();
            ExitCode::from(e.exit_code())
        }
    }
}
