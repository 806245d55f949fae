//! The live counters of a fetch: updated by every stage, read by whoever
//! shows progress (the terminal reporter, the Python module). The engine
//! never prints; this is how it speaks while it runs.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters for progress display; updated by the engine, read by the
/// reporter.
#[derive(Debug, Default)]
pub struct Progress {
    /// Grids to list.
    pub grids_total: AtomicU64,
    /// Grids whose listing is finished.
    pub grids_listed: AtomicU64,
    /// Images kept by the listing so far.
    pub listed: AtomicU64,
    /// API objects or tile features that could not be used.
    pub malformed: AtomicU64,
    /// Images to consider in the download phase (0 while listing).
    pub to_download: AtomicU64,
    /// Images downloaded by this run.
    pub downloaded: AtomicU64,
    /// Images already on disk, not fetched again.
    pub skipped: AtomicU64,
    /// Images stored in another grid folder than the one their position
    /// now falls in (they stay where they are).
    pub moved: AtomicU64,
    /// Images that failed for good.
    pub failed: AtomicU64,
    /// Bytes written by this run.
    pub bytes: AtomicU64,
    /// 0 listing, 1 downloading, 2 done.
    pub phase: AtomicU64,
}

/// The phase a fetch is in, as stored in [`Progress::phase`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Downloading = 1,
    Done = 2,
}

impl Progress {
    /// Enters `phase`.
    pub(crate) fn enter(&self, phase: Phase) {
        self.phase.store(phase as u64, Ordering::Relaxed);
    }
}
