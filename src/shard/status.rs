//! What `mlyexport status` reports about a sharded folder: each shard's
//! state from its run record, the cells not yet listed completely and the
//! images that failed; a record that says `running` is checked against its
//! lock ([`ShardStatus::checked`]). Pure: the records and the lock probes come
//! in read.

use serde::Serialize;

use super::{Shard, Split};
use crate::lock::{Holder, Liveness, ProbeError};
use crate::runrecord::{Outcome, RunRecord};

/// How one shard stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ShardState {
    /// No run record yet.
    NotStarted,
    /// Its last run has not ended, and a fetch holds its lock.
    Running,
    /// Its record says running, but no fetch holds its lock and the lock was
    /// taken where this process sees its locks: it was killed (or crashed)
    /// and did not record it.
    Killed,
    /// Its record says running and whether it is cannot be checked from
    /// here (its lock was taken on another node, through another mount or
    /// before a reboot, or could not be tested).
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
    /// Who holds its lock, for a shard found running (or killed: who held it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) holder: Option<Holder>,
    /// Why a shard whose record says running could not be checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) unverified: Option<String>,
}

impl ShardStatus {
    /// A shard whose record says running, checked against `probe`, what its
    /// lock file shows (from [`crate::lock::liveness`]); any other state is
    /// what its record says and stays.
    pub(crate) fn checked(mut self, probe: Result<Liveness, ProbeError>) -> Self {
        if self.state != ShardState::Running {
            return self;
        }
        match probe {
            Ok(Liveness::Held(h)) => self.holder = h,
            Ok(Liveness::Gone) => self.state = ShardState::Killed,
            Ok(Liveness::Unverified { holder, why }) => {
                (self.state, self.holder) = (ShardState::Unverified, holder);
                self.unverified = Some(why);
            }
            Err(e) => {
                self.state = ShardState::Unverified;
                self.unverified = Some(e.to_string());
            }
        }
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
    let mut st = FolderStatus {
        shards,
        done: false,
    };
    st.settle();
    st
}

impl FolderStatus {
    /// Sets `done` from the shards' states (after they changed).
    pub(crate) fn settle(&mut self) {
        self.done = self
            .shards
            .iter()
            .all(|s| s.state.is_finished() && s.incomplete_grids.is_empty());
    }
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
    let mut st = FolderStatus {
        shards: vec![s],
        done: false,
    };
    st.settle();
    st
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
        holder: None,
        unverified: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running() -> ShardStatus {
        let mut s = from_record(Shard::new(1, 4).unwrap(), 3, None, Vec::new());
        s.state = ShardState::Running;
        s
    }

    fn holder() -> Holder {
        serde_json::from_str(
            r#"{"pid": 7, "host": "n1", "command": "fetch", "started_at": "2026-11-30T09:00:00Z"}"#,
        )
        .unwrap()
    }

    #[test]
    fn a_running_record_is_checked_against_its_lock() {
        let s = running().checked(Ok(Liveness::Held(Some(holder()))));
        assert_eq!(
            (s.state, s.holder.map(|h| h.pid)),
            (ShardState::Running, Some(7))
        );
        let s = running().checked(Ok(Liveness::Held(None)));
        assert_eq!((s.state, s.holder), (ShardState::Running, None));
        assert_eq!(
            running().checked(Ok(Liveness::Gone)).state,
            ShardState::Killed
        );
        let s = running().checked(Ok(Liveness::Unverified {
            holder: Some(holder()),
            why: "another kernel".into(),
        }));
        assert_eq!(s.state, ShardState::Unverified);
        assert_eq!(s.unverified.as_deref(), Some("another kernel"));
        let e = ProbeError::Open {
            path: "x/.lock".into(),
            source: std::io::Error::other("denied"),
        };
        let s = running().checked(Err(e));
        assert_eq!(s.state, ShardState::Unverified);
        let why = s.unverified.unwrap();
        assert!(
            why.starts_with("cannot open `x/.lock`: denied; check the folder's"),
            "{why}"
        );
    }

    #[test]
    fn other_states_are_what_the_record_says() {
        let mut s = running();
        s.state = ShardState::Complete;
        let s = s.checked(Ok(Liveness::Gone));
        assert_eq!(s.state, ShardState::Complete);
        let st = {
            let mut st = FolderStatus {
                shards: vec![s],
                done: false,
            };
            st.settle();
            st
        };
        assert!(st.done);
    }
}
