//! `mlyexport adopt`: wiring only. Takes the folder lock, runs
//! [`crate::adopt::adopt`] and prints its summary.

use anyhow::bail;

use crate::ExitStatus;
use crate::adopt::{self, AdoptReport, REPORT_FILE};
use crate::cli::AdoptArgs;
use crate::lock::FolderLock;
use crate::report::Reporter;

/// Broken or left files printed one by one before the rest are only counted.
const SHOWN: usize = 20;

pub(crate) fn run(args: AdoptArgs) -> anyhow::Result<ExitStatus> {
    let reporter = Reporter::new(args.quiet);
    let root = args.input;
    if !root.is_dir() {
        bail!(
            "input folder `{}` does not exist or is not a folder; pass the old tool's downloads folder with --input",
            root.display()
        );
    }
    let _lock = FolderLock::acquire(&root, "adopt")?;
    let report = adopt::adopt(&root, args.dry_run)?;
    print_report(&reporter, &report);
    if report.adopted == 0 && report.segments.is_empty() {
        bail!(
            "nothing to adopt in `{}`: no `jsons/`/`images/` folders of the old tool found, at the top or in segment folders",
            root.display()
        );
    }
    Ok(if report.broken.is_empty() && report.left.is_empty() {
        ExitStatus::Success
    } else {
        ExitStatus::Partial
    })
}

fn print_report(reporter: &Reporter, r: &AdoptReport) {
    for b in r.broken.iter().take(SHOWN) {
        reporter.warn(&format!("broken, left in place: {}: {}", b.path, b.reason));
    }
    for l in r.left.iter().take(SHOWN) {
        reporter.warn(&format!("left in place: {}: {}", l.path, l.reason));
    }
    let hidden = (r.broken.len() + r.left.len()).saturating_sub(2 * SHOWN);
    if hidden > 0 {
        reporter.warn(&format!("{hidden} more not shown; see {REPORT_FILE}"));
    }
    if let Some(why) = &r.no_run_record {
        reporter.warn(why);
    }
    let verb = if r.dry_run { "would adopt" } else { "adopted" };
    let per_grid: Vec<String> = r
        .segments
        .iter()
        .map(|s| format!("{}: {}", s.grid, s.adopted))
        .collect();
    let mut lines = vec![
        (verb.to_string(), r.adopted.to_string()),
        ("per grid".to_string(), per_grid.join(", ")),
        (
            "broken (left in place)".to_string(),
            r.broken.len().to_string(),
        ),
        (
            "not understood (left in place)".to_string(),
            r.left.len().to_string(),
        ),
    ];
    if r.already_done > 0 {
        lines.push(("already adopted".into(), r.already_done.to_string()));
    }
    if r.dry_run {
        lines.push(("dry run".into(), "nothing was changed".into()));
    } else {
        lines.push(("report".into(), REPORT_FILE.to_string()));
        if r.run_record.is_some() {
            lines.push((
                "next".into(),
                "mlyexport fetch --grid-file <folder>/study_area_segments.txt --output <folder> \
                 (downloads what the old tool missed or broke)"
                    .into(),
            ));
        }
    }
    reporter.summary(&lines);
}
