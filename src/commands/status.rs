//! `mlyexport status`: wiring only. Reads a fetch's output folder (every
//! shard's run record, or the one record of a whole fetch), asks
//! `shard::status` what stands, checks a shard whose record says running
//! against its lock, and prints it through [`Reporter`]:
//! `key: value` lines, or one JSON object with `--json`.

use std::path::Path;

use anyhow::bail;

use crate::ExitStatus;
use crate::cli::StatusArgs;
use crate::lock::{self, LOCK_FILE};
use crate::report::Reporter;
use crate::runrecord::RUN_RECORD_FILE;
use crate::shard::folder::{self, SPLIT_FILE};
use crate::shard::status::{FolderStatus, ShardState, ShardStatus, status, whole};

/// Cell ids named on one line before the rest are counted.
const SHOWN_GRIDS: usize = 10;

pub(crate) fn run(args: &StatusArgs) -> anyhow::Result<ExitStatus> {
    let dir = &args.input;
    let (mut st, sharded) = read_status(dir)?;
    st.shards = std::mem::take(&mut st.shards)
        .into_iter()
        .map(|s| probe(dir, sharded, s))
        .collect();
    if st.shards.iter().any(|s| s.state == ShardState::Killed) {
        // A run that ended between the reading of its record and the test of
        // its lock looks killed: read the records again, test those again.
        let (again, _) = read_status(dir)?;
        for (s, fresh) in st.shards.iter_mut().zip(again.shards) {
            if s.state == ShardState::Killed {
                *s = probe(dir, sharded, fresh);
            }
        }
        st.settle();
    }
    let reporter = Reporter::new(false);
    if args.json {
        reporter.json(&serde_json::to_string_pretty(&st)?);
    } else {
        reporter.summary(&lines(&st));
    }
    Ok(if st.done {
        ExitStatus::Success
    } else {
        ExitStatus::Partial
    })
}

/// Every shard's status from the records (one whole fetch is shard 0/1),
/// and whether the folder is sharded.
fn read_status(dir: &Path) -> anyhow::Result<(FolderStatus, bool)> {
    Ok(match folder::read(dir)? {
        Some(f) => (status(&f.split.split, &f.records), true),
        None => match folder::read_record(&dir.join(RUN_RECORD_FILE))? {
            Some(r) => (whole(&r), false),
            None => bail!(
                "`{}` holds no fetch (neither `{SPLIT_FILE}` nor `{RUN_RECORD_FILE}`); pass the --output folder of `mlyexport fetch` with --input",
                dir.display()
            ),
        },
    })
}

/// A shard whose record says running, checked against its lock file.
fn probe(dir: &Path, sharded: bool, s: ShardStatus) -> ShardStatus {
    if s.state != ShardState::Running {
        return s;
    }
    let file = if sharded {
        s.shard.lock_file()
    } else {
        LOCK_FILE.to_string()
    };
    s.checked(lock::liveness(dir, &file, "fetch"))
}

fn lines(st: &FolderStatus) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = st
        .shards
        .iter()
        .map(|s| (format!("shard {}", s.shard), line(s)))
        .collect();
    let finished = st.shards.iter().filter(|s| s.state.is_finished()).count();
    let done = if st.done { "yes" } else { "no" };
    out.push((
        "done".into(),
        format!("{done} ({finished} of {} shards finished)", st.shards.len()),
    ));
    out
}

fn line(s: &ShardStatus) -> String {
    let mut l = s.state.label().to_string();
    if let Some(h) = &s.holder {
        l.push_str(&format!(" [{}]", h.describe()));
    }
    if let Some(why) = &s.unverified {
        l.push_str(&format!(" [{why}]"));
    }
    l.push_str(&format!("; {} cells or parts", s.units));
    if s.listed > 0 || s.downloaded > 0 {
        l.push_str(&format!("; {} listed, {} on disk", s.listed, s.downloaded));
    }
    if s.failed_images > 0 {
        l.push_str(&format!("; {} images failed", s.failed_images));
    }
    if !s.incomplete_grids.is_empty() {
        let shown: Vec<&str> = s
            .incomplete_grids
            .iter()
            .take(SHOWN_GRIDS)
            .map(String::as_str)
            .collect();
        let more = s.incomplete_grids.len().saturating_sub(SHOWN_GRIDS);
        l.push_str(&format!(
            "; grids not listed completely: {}",
            shown.join(", ")
        ));
        if more > 0 {
            l.push_str(&format!(" and {more} more"));
        }
    }
    l
}
