//! `mlyexport fetch`: wiring only (config, tokio runtime, engine, report).

use crate::ExitStatus;
use crate::cli::FetchArgs;

pub fn run(_args: FetchArgs) -> anyhow::Result<ExitStatus> {
    anyhow::bail!("`mlyexport fetch` is not implemented yet")
}
