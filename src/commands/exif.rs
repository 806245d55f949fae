//! `mlyexport exif`: wiring only. Validates the flags ([`ExifConfig`]),
//! locks the folder, scans it (naming what it does not read), runs the EXIF pass ([`crate::exif::pass`]) and prints
//! its summary on stdout. Exit 0 when every image was handled, 1 when some
//! files were skipped or not read.

use anyhow::Context;

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
    let scan = crate::downloads::scan(&cfg.input)
        .with_context(|| format!("cannot list the images in `{}`", cfg.input.display()))?;
    for w in scan.unread_warnings() {
        reporter.warn(&w);
    }
    let summary = embed_folder(&lock, &scan, cfg.position, &reporter)?;
    let mut lines = summary.lines();
    lines.extend(scan.unread_line());
    reporter.summary(&lines);
    Ok(if scan.unread_count > 0 {
        ExitStatus::Partial
    } else {
        summary.status()
    })
}
