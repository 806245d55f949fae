//! The download stage: every listed image not yet on disk, concurrently
//! (tokio), in two rounds. Images that failed for a reason that may pass
//! (HTTP 5xx, resets, truncated bodies, time-outs, rate limits, expired
//! URLs) get a second round at the end of the run with fresh URLs before
//! they are recorded as failed. A refused token stops the run.

use std::sync::atomic::Ordering;

use futures::stream::{self, StreamExt};
use tokio_util::sync::CancellationToken;

use super::download::{self, DownloadError};
use super::progress::Progress;
use super::resume::{self, OnDisk};
use super::spill::{Listed, Spill};
use crate::api::{ApiError, Client};
use crate::model::ThumbSize;
use crate::plan::Plan;
use crate::runrecord::Failure;
use crate::store::ImagePaths;

/// What the download stage needs.
pub(super) struct Downloads<'a> {
    pub client: &'a Client,
    pub progress: &'a Progress,
    pub cancel: &'a CancellationToken,
    pub spill: &'a Spill,
    pub out: &'a std::path::Path,
    pub plan: &'a Plan,
    pub size: ThumbSize,
    pub concurrency: usize,
    /// The images already stored, in any grid folder.
    pub on_disk: &'a OnDisk,
}

/// How the download stage ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Downloaded {
    /// Images on disk per grid (downloaded or already there).
    pub done: Vec<u64>,
    /// Images downloaded by this run, per grid.
    pub fresh: Vec<u64>,
    /// Images that failed, with their grid index.
    pub failures: Vec<(u32, Failure)>,
}

impl Downloaded {
    /// Nothing downloaded, over `grids` grids (a dry run).
    pub(crate) fn nothing(grids: usize) -> Self {
        Downloaded {
            done: vec![0; grids],
            fresh: vec![0; grids],
            failures: Vec::new(),
        }
    }
}

/// One failed image: whether it may pass on a later try.
#[derive(Debug)]
struct Failed {
    index: usize,
    transient: bool,
    failure: Failure,
}

/// What one image came to: `Some(Ok(true))` downloaded now, `Some(Ok(false))`
/// already there, `None` interrupted before it finished.
type One = Option<Result<bool, DownloadError>>;

/// One round's results, owned by the loop that drains the downloads (the
/// only writer: no lock).
#[derive(Debug)]
struct Round {
    done: Vec<u64>,
    fresh: Vec<u64>,
    failed: Vec<Failed>,
    /// A refused token: the run stops.
    auth: Option<ApiError>,
}

impl Round {
    fn new(grids: usize) -> Self {
        Round {
            done: vec![0; grids],
            fresh: vec![0; grids],
            failed: Vec::new(),
            auth: None,
        }
    }

    /// Adds image `index` of grid `grid`; `failure` describes an error.
    /// Returns whether the token was refused.
    fn add(
        &mut self,
        index: usize,
        grid: u32,
        result: One,
        failure: impl FnOnce(&DownloadError) -> Failure,
    ) -> bool {
        let gi = grid as usize;
        match result {
            None => {}
            Some(Ok(downloaded)) => {
                self.done[gi] += 1;
                self.fresh[gi] += u64::from(downloaded);
            }
            Some(Err(DownloadError::Api(e @ ApiError::Auth { .. }))) => {
                self.auth.get_or_insert(e);
                return true;
            }
            Some(Err(e)) => self.failed.push(Failed {
                index,
                transient: e.is_transient(),
                failure: failure(&e),
            }),
        }
        false
    }

    /// Adds this round's images to the totals; its failures, or the refusal.
    fn into_totals(self, done: &mut [u64], fresh: &mut [u64]) -> Result<Vec<Failed>, ApiError> {
        if let Some(e) = self.auth {
            return Err(e);
        }
        for (d, n) in done.iter_mut().zip(self.done) {
            *d += n;
        }
        for (d, n) in fresh.iter_mut().zip(self.fresh) {
            *d += n;
        }
        Ok(self.failed)
    }
}

impl Downloads<'_> {
    /// Downloads every image of `listed`; `Err` only for a refused token.
    pub(super) async fn run(&self, listed: &[Listed]) -> Result<Downloaded, ApiError> {
        let mut done = vec![0u64; self.plan.grids().len()];
        let mut fresh = vec![0u64; self.plan.grids().len()];
        let all: Vec<usize> = (0..listed.len()).collect();
        let first = self
            .round(listed, &all, false)
            .await
            .into_totals(&mut done, &mut fresh)?;
        let (again, mut lasting): (Vec<Failed>, Vec<Failed>) =
            first.into_iter().partition(|f| f.transient);
        if !again.is_empty() && !self.cancel.is_cancelled() {
            let idx: Vec<usize> = again.iter().map(|f| f.index).collect();
            let second = self.round(listed, &idx, true).await;
            lasting.extend(second.into_totals(&mut done, &mut fresh)?);
        } else {
            lasting.extend(again);
        }
        self.progress
            .failed
            .fetch_add(lasting.len() as u64, Ordering::Relaxed);
        let failures = lasting
            .into_iter()
            .map(|f| (listed[f.index].grid, f.failure))
            .collect();
        Ok(Downloaded {
            done,
            fresh,
            failures,
        })
    }

    /// One round over `which`, `concurrency` at a time; `fresh` asks a new
    /// URL for each image. The results are drained here, one at a time.
    async fn round(&self, listed: &[Listed], which: &[usize], fresh: bool) -> Round {
        let mut results = stream::iter(which.iter().copied())
            .map(|i| async move { (i, self.one(&listed[i], fresh).await) })
            .buffer_unordered(self.concurrency.max(1));
        let mut round = Round::new(self.plan.grids().len());
        while let Some((i, result)) = results.next().await {
            let l = &listed[i];
            if round.add(i, l.grid, result, |e| self.failure(l, e)) {
                self.cancel.cancel();
            }
        }
        round
    }

    /// One image: `Some(Ok(true))` when downloaded now, `Some(Ok(false))`
    /// when already there, `None` when interrupted before it finished.
    async fn one(&self, l: &Listed, fresh: bool) -> One {
        // An image already stored stays in its folder, even when its
        // position now falls in another grid: it is never stored twice.
        let listed_in = &self.plan.grids()[l.grid as usize].id;
        let grid = self.on_disk.grid_of(l.id).unwrap_or(listed_in);
        if grid != listed_in {
            self.progress.moved.fetch_add(1, Ordering::Relaxed);
        }
        let paths = ImagePaths::new(self.out, grid, l.id);
        if resume::finished(&paths, l.id) {
            self.progress.skipped.fetch_add(1, Ordering::Relaxed);
            return Some(Ok(false));
        }
        if self.cancel.is_cancelled() {
            return None;
        }
        let object = match self.spill.object(l) {
            Ok(o) => o,
            Err(e) => return Some(Err(DownloadError::Spill(e.to_string()))),
        };
        let job = download::Job {
            id: l.id,
            grid,
            size: self.size,
            url: if fresh {
                None
            } else {
                l.url.as_deref().map(str::to_string)
            },
            object,
            paths: &paths,
            folder: download::Folder::Grid,
        };
        let result = tokio::select! {
            r = download::fetch_and_store(self.client, job) => r,
            () = self.cancel.cancelled() => return None,
        };
        Some(result.map(|info| {
            self.progress.downloaded.fetch_add(1, Ordering::Relaxed);
            self.progress.bytes.fetch_add(info.bytes, Ordering::Relaxed);
            true
        }))
    }

    fn failure(&self, l: &Listed, e: &DownloadError) -> Failure {
        Failure {
            id: l.id.to_string(),
            grid: self.plan.grids()[l.grid as usize].id.to_string(),
            reason: e.reason(),
            message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(e: &DownloadError) -> Failure {
        Failure {
            id: "1".into(),
            grid: "1".into(),
            reason: e.reason(),
            message: e.to_string(),
        }
    }

    #[test]
    fn a_round_counts_per_grid_and_keeps_the_refusal() {
        let mut r = Round::new(2);
        assert!(!r.add(0, 0, Some(Ok(true)), failure));
        assert!(!r.add(1, 0, Some(Ok(false)), failure));
        assert!(!r.add(2, 1, None, failure));
        let gone = ApiError::NotFound {
            message: "x".into(),
        };
        assert!(!r.add(3, 1, Some(Err(DownloadError::Api(gone))), failure));
        assert!(!r.add(
            4,
            1,
            Some(Err(DownloadError::NoUrl("thumb_256_url"))),
            failure
        ));
        let (mut done, mut fresh) = (vec![1, 1], vec![0, 0]);
        let failed = r.into_totals(&mut done, &mut fresh).unwrap();
        assert_eq!((done, fresh), (vec![3, 1], vec![1, 0]));
        let seen: Vec<(usize, bool, &str)> = failed
            .iter()
            .map(|f| (f.index, f.transient, f.failure.reason.as_str()))
            .collect();
        assert_eq!(seen, [(3, false, "not_found"), (4, true, "no_url")]);

        let mut r = Round::new(1);
        let refused = ApiError::Auth {
            message: "no".into(),
        };
        assert!(r.add(0, 0, Some(Err(DownloadError::Api(refused))), failure));
        assert!(!r.add(1, 0, Some(Ok(true)), failure));
        let (mut done, mut fresh) = (vec![0], vec![0]);
        let e = r.into_totals(&mut done, &mut fresh).unwrap_err();
        assert!(matches!(e, ApiError::Auth { .. }));
        assert_eq!(done, [0], "nothing is added after a refusal");
    }
}
