//! `mlyexport layers`: wiring only. Validates the flags ([`LayersConfig`]),
//! runs the engine ([`crate::layers::run`]) reporting on the terminal, and
//! prints its summary on stdout.

use crate::ExitStatus;
use crate::cli::LayersArgs;
use crate::config::LayersConfig;
use crate::layers::run::run_with;
use crate::report::Reporter;

/// Runs `mlyexport layers`.
pub(crate) fn run(args: LayersArgs) -> anyhow::Result<ExitStatus> {
    let cfg = LayersConfig::from_args(&args)?;
    let reporter = Reporter::new(cfg.quiet);
    let report = run_with(&cfg, &reporter)?;
    reporter.summary(&report.lines);
    Ok(report.status)
}
