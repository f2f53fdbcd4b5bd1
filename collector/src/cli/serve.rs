//! `kaohe-collector serve`: the collector until SIGTERM or Ctrl-C.

use super::{CliError, ServerArgs, block_on};
use crate::logging::LogFormat;

pub(super) fn run(server: &ServerArgs, log_format: LogFormat) -> Result<(), CliError> {
    let config = server.config()?;
    config.check()?;
    // In JSON mode standard output stays free of the human banner.
    let banner = log_format == LogFormat::Text;
    block_on(async move {
        crate::serve::serve_with(config, kaohe_process::stop_signal(), banner).await?;
        Ok(())
    })
}
