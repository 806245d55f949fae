//! `mlyexport exif`: wiring only. Validates the flags ([`ExifConfig`]),
//! locks the folder, runs the EXIF pass ([`crate::exif::pass`]) and prints
//! its summary on stdout. Exit 0 when every image was handled, 1 when some
//! files were skipped.

use crate::ExitStatus;
use crate::cli::ExifArgs;
use crate::config::ExifConfig;
use crate::exif::pass::embed_folder;
use crate::lock::FolderLock;
use crate::report::Reporter;

/// Runs `mlyexport exif`.
pub(crate) fn run(args: ExifArgs) -> anyhow::Result<ExitStatus> {
    let cfg = ExifConfig::from_args(&args)?;
    let reporter = Reporter::new(cfg.quiet);
    let lock = FolderLock::acquire(&cfg.input, "exif")?;
    let summary = embed_folder(&lock, cfg.position, &reporter)?;
    reporter.summary(&summary.lines());
    Ok(summary.status())
}
