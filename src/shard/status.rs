//! What `mlyexport status` reports about a sharded folder: each shard's
//! state from its run record, the cells not yet listed completely and the
//! images that failed; a record that says `running` is checked against its
//! lock ([`ShardStatus::checked`]). Pure: the records and the lock probes come
//! in read.

use serde::Serialize;

use super::{Shard, Split};
use crate::lock::Liveness;
use crate::runrecord::{Outcome, RunRecord};

/// How one shard stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ShardState {
    /// No run record yet.
    NotStarted,
    /// Its last run has not ended, and a process on this host holds its lock.
    Running,
    /// Its record says running, but no process holds its lock: it was
    /// killed (or crashed) and did not record it.
    Killed,
    /// Its record says running and whether it is cannot be checked from
    /// here (its lock was taken on another host, or this host's locks could
    /// not be read).
    Unverified,
    /// Its last run did everything asked.
    Complete,
    /// Its last run ended with failed images or cells.
    Partial,
    /// Its last run stopped on an error.
    Failed,
    /// Its last run was stopped by Ctrl-C or a signal.
    Interrupted,
    /// Its last run only listed (`--dry-run`).
    Listed,
}

impl ShardState {
    /// How the state is shown to people.
    pub(crate) fn label(self) -> &'static str {
        match self {
            ShardState::NotStarted => "not started",
            ShardState::Running => "running",
            ShardState::Killed => {
                "killed (its record says running, but no process holds its lock; re-run it)"
            }
            ShardState::Unverified => {
                "running, or killed (cannot be checked from here; re-run it if its job ended)"
            }
            ShardState::Complete => "finished",
            ShardState::Partial => "finished with failures (re-run it)",
            ShardState::Failed => "failed (re-run it)",
            ShardState::Interrupted => "interrupted (re-run it)",
            ShardState::Listed => "listed only (--dry-run)",
        }
    }

    /// Whether the shard's last run ended with everything asked done.
    pub(crate) fn is_finished(self) -> bool {
        self == ShardState::Complete
    }

    fn of(record: Option<&RunRecord>) -> ShardState {
        let Some(last) = record.and_then(|r| r.runs.last()) else {
            return ShardState::NotStarted;
        };
        match last.outcome {
            Outcome::Running => ShardState::Running,
            Outcome::Complete | Outcome::Imported => ShardState::Complete,
            Outcome::Partial => ShardState::Partial,
            Outcome::Failed => ShardState::Failed,
            Outcome::Interrupted => ShardState::Interrupted,
            Outcome::Listed => ShardState::Listed,
        }
    }
}

/// One shard's line of the status.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ShardStatus {
    pub(crate) shard: Shard,
    pub(crate) state: ShardState,
    /// Cells (or parts of cells) the split gives it.
    pub(crate) units: usize,
    pub(crate) listed: u64,
    pub(crate) downloaded: u64,
    pub(crate) failed_images: u64,
    /// Ids of its cells whose listing is not complete (pending, truncated,
    /// failed), each once.
    pub(crate) incomplete_grids: Vec<String>,
    /// Who holds (or held) its lock, or why that could not be checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) lock: Option<String>,
}

impl ShardStatus {
    /// A shard whose record says running, checked against `probe`, what its
    /// lock file shows (from [`crate::lock::liveness`]); any other state is
    /// what its record says and stays.
    pub(crate) fn checked(mut self, probe: Result<Liveness, String>) -> Self {
        if self.state != ShardState::Running {
            return self;
        }
        (self.state, self.lock) = match probe {
            Ok(Liveness::Held(h)) => (ShardState::Running, h.map(|h| h.describe())),
            Ok(Liveness::Gone) => (ShardState::Killed, None),
            Ok(Liveness::Elsewhere(h)) => (
                ShardState::Unverified,
                Some(format!(
                    "{} (locks are seen only on that host)",
                    h.describe()
                )),
            ),
            Err(why) => (
                ShardState::Unverified,
                Some(format!("its lock could not be checked: {why}")),
            ),
        };
        self
    }
}

/// The status of a whole sharded folder.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FolderStatus {
    pub(crate) shards: Vec<ShardStatus>,
    /// Every shard finished with nothing missing.
    pub(crate) done: bool,
}

/// The status of `split`'s shards from their records (`records[k]`, `None`
/// before shard k has run).
pub(crate) fn status(split: &Split, records: &[Option<RunRecord>]) -> FolderStatus {
    let shards: Vec<ShardStatus> = (0..split.count)
        .filter_map(|k| {
            let shard = Shard::new(k, split.count).ok()?;
            Some(one(
                split,
                shard,
                records.get(k as usize).and_then(Option::as_ref),
            ))
        })
        .collect();
    let done = shards
        .iter()
        .all(|s| s.state == ShardState::Complete && s.incomplete_grids.is_empty());
    FolderStatus { shards, done }
}

/// The status of a whole (unsharded) fetch, as one shard 0/1.
pub(crate) fn whole(record: &RunRecord) -> FolderStatus {
    let Ok(shard) = Shard::new(0, 1) else {
        return FolderStatus {
            shards: Vec::new(),
            done: false,
        };
    };
    let mut s = from_record(shard, record.grids.len(), Some(record), Vec::new());
    s.incomplete_grids.dedup();
    let done = s.state.is_finished() && s.incomplete_grids.is_empty();
    FolderStatus {
        shards: vec![s],
        done,
    }
}

fn one(split: &Split, shard: Shard, record: Option<&RunRecord>) -> ShardStatus {
    let mine = || split.units.iter().filter(|u| u.shard == shard.index());
    let not_run: Vec<String> = mine().map(|u| u.grid.clone()).collect();
    let mut s = from_record(shard, split.units_of_shard(shard.index()), record, not_run);
    s.incomplete_grids.dedup();
    s
}

/// One shard's line from its record; `not_run` are its cells' ids, listed
/// as incomplete when there is no record.
fn from_record(
    shard: Shard,
    units: usize,
    record: Option<&RunRecord>,
    not_run: Vec<String>,
) -> ShardStatus {
    let incomplete_grids = match record {
        Some(r) => r
            .grids
            .iter()
            .filter(|g| !g.listing.is_complete())
            .map(|g| g.grid.clone())
            .collect(),
        None => not_run,
    };
    ShardStatus {
        shard,
        state: ShardState::of(record),
        units,
        listed: record.map_or(0, |r| r.totals.listed),
        downloaded: record.map_or(0, |r| r.grids.iter().map(|g| g.downloaded).sum()),
        failed_images: record.map_or(0, |r| r.failures.len() as u64),
        incomplete_grids,
        lock: None,
    }
}
