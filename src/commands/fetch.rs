//! `mlyexport fetch`: wiring only (config, tokio runtime, Ctrl-C, engine, report).

use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::ExitStatus;
use crate::api::Client;
use crate::cli::FetchArgs;
use crate::config::FetchConfig;
use crate::fetch::{self, Progress};
use crate::lock::FolderLock;
use crate::report::Reporter;

/// An environment variable as text. A value that is not UTF-8 comes through
/// with U+FFFD in place of its bad bytes, so the check of that variable
/// refuses it and quotes it, rather than taking it for unset (a Slurm task
/// with a garbled `SLURM_ARRAY_TASK_ID` would fetch the whole area).
fn env_text(name: &str) -> Option<String> {
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}

pub(crate) fn run(args: FetchArgs) -> anyhow::Result<ExitStatus> {
    // Lossy: a non-UTF-8 argument (a path) must not panic; the run record
    // keeps a readable form of it.
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let cwd = std::env::current_dir().context("cannot read the current folder")?;
    let cfg = FetchConfig::from_args(args, &env_text, &cwd, argv)?;
    let reporter = Reporter::new(cfg.quiet);
    // Held until the run ends; refused at once when another run holds it.
    // A shard holds its own lock: the shards of one fetch share the folder.
    let _lock = match &cfg.shard {
        Some(s) => FolderLock::acquire_named(&cfg.output, &s.shard.lock_file(), "fetch")?,
        None => FolderLock::acquire(&cfg.output, "fetch")?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let client = Arc::new(Client::new(&cfg.api)?);
        let progress = Arc::new(Progress::default());
        let cancel = CancellationToken::new();
        let on_signal = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                on_signal.cancel();
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        });
        let display = reporter.fetch_progress(Arc::clone(&progress));
        let result = fetch::run(&cfg, client, progress, cancel).await;
        display.finish();
        let report =
            result.with_context(|| format!("fetch into `{}` failed", cfg.output.display()))?;
        reporter.fetch_summary(&report, &cfg.output);
        Ok(report.status)
    })
}
