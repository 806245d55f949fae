//! The run record's life during one fetch: loaded (or started for the grid
//! plan) and compared with what this run asks, a run entry opened, then the
//! entry closed as finished, interrupted or failed. Every change is written
//! at once, atomically (through `store`). The file's path is a parameter, so
//! a caller may keep several records in one folder.

use std::path::{Path, PathBuf};

use chrono::Utc;

use super::{
    Completeness, Counts, Failure, GridState, Outcome, RUN_SCHEMA_VERSION, Request, RunEntry,
    RunRecord,
};
use crate::model::Bbox;
use crate::plan::Plan;
use crate::store::{self, StoreError};

/// Largest run record read, in bytes (one of a city-wide run with thousands
/// of grids and failures is a few megabytes).
pub(crate) const MAX_RUN_RECORD_BYTES: u64 = 256 << 20;

/// Why the run record cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The folder holds a fetch that asked for something else.
    #[error(
        "`{dir}` holds a fetch with other settings; use another --output folder or the same flags:\n  {differences}"
    )]
    RequestChanged {
        /// The output folder.
        dir: String,
        /// One line per difference.
        differences: String,
    },
    /// The record exists but cannot be read or parsed.
    #[error("the run record `{path}` is unreadable ({message}); move it away to start afresh")]
    BadRunRecord {
        /// The record's path.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The record cannot be written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RunEntry {
    /// The entry of a run starting now, by this version of the tool.
    pub(crate) fn starting(command_line: Vec<String>, api_url: String, dry_run: bool) -> Self {
        RunEntry {
            tool_version: env!("CARGO_PKG_VERSION").into(),
            command_line,
            api_url,
            started_at: Utc::now(),
            finished_at: None,
            outcome: Outcome::Running,
            dry_run,
            counts: Counts::default(),
            shard: None,
        }
    }
}

/// A run record open for one run: what is on disk is always what this
/// holds.
#[derive(Debug)]
pub(crate) struct RecordFile {
    path: PathBuf,
    record: RunRecord,
}

impl RecordFile {
    /// Loads the record at `path`, or starts one for `plan`; refuses a
    /// folder whose record asked for something else; opens `entry` and
    /// writes the record.
    pub(crate) fn open(
        path: PathBuf,
        request: &Request,
        plan: &Plan,
        entry: RunEntry,
    ) -> Result<Self, RecordError> {
        let mut record = if path.is_file() {
            reopen(load(&path)?, &path, request, plan)?
        } else {
            fresh(request, plan)
        };
        // Recorded as used last: a later run may list another way.
        record.request.enumerate = request.enumerate;
        record.runs.push(entry);
        let file = RecordFile { path, record };
        file.write()?;
        Ok(file)
    }

    /// The grids as the record held them before this run.
    pub(crate) fn grids(&self) -> &[GridState] {
        &self.record.grids
    }

    /// Closes this run's entry as failed, keeping everything else.
    pub(crate) fn fail(&mut self) -> Result<(), RecordError> {
        self.close(Outcome::Failed, Counts::default())
    }

    /// Closes this run's entry as interrupted while listing, keeping the
    /// grids and totals of earlier runs.
    pub(crate) fn interrupt(&mut self, counts: Counts) -> Result<(), RecordError> {
        self.close(Outcome::Interrupted, counts)
    }

    /// Closes this run's entry with the grids, totals and failures it ends with.
    pub(crate) fn finish(
        &mut self,
        outcome: Outcome,
        counts: Counts,
        grids: Vec<GridState>,
        failures: Vec<Failure>,
    ) -> Result<(), RecordError> {
        self.record.grids = grids;
        if !self.record.grids.is_empty() {
            self.record.totals = Counts {
                downloaded: self.record.grids.iter().map(|g| g.downloaded).sum(),
                ..counts.clone()
            };
            self.record.failures = failures;
        }
        self.close(outcome, counts)
    }

    fn close(&mut self, outcome: Outcome, counts: Counts) -> Result<(), RecordError> {
        if let Some(run) = self.record.runs.last_mut() {
            run.finished_at = Some(Utc::now());
            run.outcome = outcome;
            run.counts = counts;
        }
        self.write()
    }

    fn write(&self) -> Result<(), RecordError> {
        let mut bytes = serde_json::to_vec_pretty(&self.record).map_err(|e| StoreError::Write {
            path: self.path.clone(),
            source: e.into(),
        })?;
        bytes.push(b'\n');
        store::atomic_write(&self.path, &bytes)?;
        Ok(())
    }
}

fn load(path: &Path) -> Result<RunRecord, RecordError> {
    let bad = |message: String| RecordError::BadRunRecord {
        path: path.display().to_string(),
        message,
    };
    let mut text = Vec::new();
    crate::input::read_bounded_into(path, MAX_RUN_RECORD_BYTES, &mut text)
        .map_err(|e| bad(e.to_string()))?;
    serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))
}

/// The record of an earlier run, if this run asks the same (grid cells
/// included). A folder adopted from the old tool: its record's request is a
/// guess, so the first real fetch's request replaces it (same cells).
fn reopen(
    old: RunRecord,
    path: &Path,
    request: &Request,
    plan: &Plan,
) -> Result<RunRecord, RecordError> {
    let mut diffs = old.request.differences(request);
    let old_cells: Vec<(String, Bbox)> =
        old.grids.iter().map(|g| (g.grid.clone(), g.bbox)).collect();
    let new_cells: Vec<(String, Bbox)> = plan
        .grids()
        .iter()
        .map(|g| (g.id.to_string(), g.bbox))
        .collect();
    if old_cells != new_cells {
        diffs.push(format!(
            "grid cells: was {} cells ({}), now {} cells ({}); the grid file or the grid changed",
            old_cells.len(),
            summary(&old_cells),
            new_cells.len(),
            summary(&new_cells)
        ));
    }
    let imported = !old.runs.is_empty() && old.runs.iter().all(|r| r.outcome == Outcome::Imported);
    if imported && old_cells == new_cells {
        return Ok(RunRecord {
            request: request.clone(),
            ..old
        });
    }
    if !diffs.is_empty() {
        return Err(RecordError::RequestChanged {
            dir: path.parent().unwrap_or(path).display().to_string(),
            differences: diffs.join("\n  "),
        });
    }
    Ok(old)
}

/// A record for a folder's first fetch: every grid pending.
fn fresh(request: &Request, plan: &Plan) -> RunRecord {
    RunRecord {
        schema_version: RUN_SCHEMA_VERSION,
        tool: "mlyexport".into(),
        request: request.clone(),
        grids: plan
            .grids()
            .iter()
            .map(|g| pending(g.id.to_string(), g.bbox))
            .collect(),
        totals: Counts::default(),
        failures: Vec::new(),
        runs: Vec::new(),
    }
}

fn pending(grid: String, bbox: Bbox) -> GridState {
    GridState::untouched(grid, bbox, Completeness::Pending)
}

/// The first cells' ids and boxes, for a message.
fn summary(cells: &[(String, Bbox)]) -> String {
    let mut s: Vec<String> = cells
        .iter()
        .take(3)
        .map(|(id, b)| format!("{id} {b}"))
        .collect();
    if cells.len() > 3 {
        s.push("...".into());
    }
    s.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ThumbSize;
    use crate::runrecord::RUN_RECORD_FILE;
    use crate::runrecord::testing::{entry, request};

    fn on_disk(path: &Path) -> RunRecord {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn a_record_is_started_reopened_and_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RUN_RECORD_FILE);
        let req = request(ThumbSize::S1024);
        let plan = Plan::single(req.area.bbox);
        let mut f = RecordFile::open(path.clone(), &req, &plan, entry()).unwrap();
        assert_eq!(f.grids().len(), 1);
        assert_eq!(f.grids()[0].listing, Completeness::Pending);
        let rec = on_disk(&path);
        assert_eq!(rec.runs.len(), 1);
        assert_eq!(rec.runs[0].outcome, Outcome::Running);
        f.interrupt(Counts {
            listed: 3,
            ..Counts::default()
        })
        .unwrap();
        let rec = on_disk(&path);
        assert_eq!(rec.runs[0].outcome, Outcome::Interrupted);
        assert_eq!(rec.runs[0].counts.listed, 3);
        assert_eq!(
            rec.totals,
            Counts::default(),
            "totals kept while interrupted"
        );

        let mut f = RecordFile::open(path.clone(), &req, &plan, entry()).unwrap();
        let mut grids = f.grids().to_vec();
        grids[0].downloaded = 7;
        let failure = Failure {
            id: "1".into(),
            grid: "1".into(),
            reason: "http_404".into(),
            message: "gone".into(),
        };
        let counts = Counts {
            listed: 8,
            failed: 1,
            ..Counts::default()
        };
        f.finish(Outcome::Partial, counts, grids, vec![failure])
            .unwrap();
        let rec = on_disk(&path);
        assert_eq!(rec.runs.len(), 2);
        assert_eq!(rec.runs[1].outcome, Outcome::Partial);
        assert!(rec.runs[1].finished_at.is_some());
        assert_eq!((rec.totals.listed, rec.totals.downloaded), (8, 7));
        assert_eq!(rec.failures.len(), 1);

        let mut f = RecordFile::open(path.clone(), &req, &plan, entry()).unwrap();
        f.fail().unwrap();
        let rec = on_disk(&path);
        assert_eq!(rec.runs[2].outcome, Outcome::Failed);
        assert_eq!(rec.totals.downloaded, 7, "a failed run keeps the totals");
    }

    #[test]
    fn another_request_or_grid_is_refused_and_an_unreadable_record_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RUN_RECORD_FILE);
        let req = request(ThumbSize::S1024);
        let plan = Plan::single(req.area.bbox);
        RecordFile::open(path.clone(), &req, &plan, entry()).unwrap();
        let e =
            RecordFile::open(path.clone(), &request(ThumbSize::S256), &plan, entry()).unwrap_err();
        assert!(
            matches!(&e, RecordError::RequestChanged { differences, .. }
            if differences == "--size: was \"1024\", now \"256\""),
            "{e}"
        );
        let other = Plan::single("2.30,48.84,2.32,48.85".parse().unwrap());
        let e = RecordFile::open(path.clone(), &req, &other, entry()).unwrap_err();
        assert!(e.to_string().contains("grid cells: was 1 cells"), "{e}");
        assert_eq!(on_disk(&path).runs.len(), 1, "a refused run writes nothing");
        std::fs::write(&path, "{").unwrap();
        let e = RecordFile::open(path.clone(), &req, &plan, entry()).unwrap_err();
        assert!(matches!(e, RecordError::BadRunRecord { .. }), "{e}");
    }

    #[test]
    fn an_adopted_folder_takes_the_first_fetch_request() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RUN_RECORD_FILE);
        let req = request(ThumbSize::S1024);
        let plan = Plan::single(req.area.bbox);
        let mut guessed = fresh(&request(ThumbSize::Original), &plan);
        let mut adopted = entry();
        adopted.outcome = Outcome::Imported;
        guessed.runs.push(adopted);
        std::fs::write(&path, serde_json::to_vec(&guessed).unwrap()).unwrap();
        RecordFile::open(path.clone(), &req, &plan, entry()).unwrap();
        let rec = on_disk(&path);
        assert_eq!(rec.request, req);
        assert_eq!(rec.runs.len(), 2);
    }
}
