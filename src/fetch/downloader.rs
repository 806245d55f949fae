//! The download stage: every listed image not yet on disk, concurrently
//! (tokio), in two rounds. Images that failed for a reason that may pass
//! (HTTP 5xx, resets, truncated bodies, time-outs, rate limits, expired
//! URLs) get a second round at the end of the run with fresh URLs before
//! they are recorded as failed. A refused token stops the run.

use std::sync::Mutex;
use std::sync::atomic::Ordering;

use futures::stream::{self, StreamExt};
use tokio_util::sync::CancellationToken;

use super::download::{self, DownloadError};
use super::resume::{self, OnDisk};
use super::{Listed, Progress, Spill};
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
pub(super) struct Downloaded {
    /// Images on disk per grid (downloaded or already there).
    pub done: Vec<u64>,
    /// Images downloaded by this run, per grid.
    pub fresh: Vec<u64>,
    /// Images that failed, with their grid index.
    pub failures: Vec<(u32, Failure)>,
}

/// One failed image: whether it may pass on a later try.
struct Failed {
    index: usize,
    transient: bool,
    failure: Failure,
}

impl Downloads<'_> {
    /// Downloads every image of `listed`; `Err` only for a refused token.
    pub(super) async fn run(&self, listed: &[Listed]) -> Result<Downloaded, ApiError> {
        let mut done = vec![0u64; self.plan.grids().len()];
        let mut fresh = vec![0u64; self.plan.grids().len()];
        let all: Vec<usize> = (0..listed.len()).collect();
        let first = self
            .round(listed, &all, false, &mut done, &mut fresh)
            .await?;
        let (again, mut lasting): (Vec<Failed>, Vec<Failed>) =
            first.into_iter().partition(|f| f.transient);
        if !again.is_empty() && !self.cancel.is_cancelled() {
            let idx: Vec<usize> = again.iter().map(|f| f.index).collect();
            lasting.extend(
                self.round(listed, &idx, true, &mut done, &mut fresh)
                    .await?,
            );
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

    /// One round over `which`; `fresh` asks a new URL for each image.
    async fn round(
        &self,
        listed: &[Listed],
        which: &[usize],
        fresh: bool,
        done: &mut [u64],
        new: &mut [u64],
    ) -> Result<Vec<Failed>, ApiError> {
        let fails = Mutex::new(Vec::new());
        let ok = Mutex::new(vec![0u64; done.len()]);
        let got = Mutex::new(vec![0u64; done.len()]);
        let auth: Mutex<Option<ApiError>> = Mutex::new(None);
        stream::iter(which.iter().copied())
            .for_each_concurrent(self.concurrency, |i| {
                let (fails, ok, auth, got) = (&fails, &ok, &auth, &got);
                async move {
                    let l = &listed[i];
                    match self.one(l, fresh).await {
                        None => {}
                        Some(Ok(downloaded)) => {
                            ok.lock().expect("lock")[l.grid as usize] += 1;
                            if downloaded {
                                got.lock().expect("lock")[l.grid as usize] += 1;
                            }
                        }
                        Some(Err(DownloadError::Api(e @ ApiError::Auth { .. }))) => {
                            auth.lock().expect("lock").get_or_insert(e);
                            self.cancel.cancel();
                        }
                        Some(Err(e)) => fails.lock().expect("lock").push(Failed {
                            index: i,
                            transient: e.is_transient(),
                            failure: self.failure(l, &e),
                        }),
                    }
                }
            })
            .await;
        if let Some(e) = auth.into_inner().expect("lock") {
            return Err(e);
        }
        for (d, n) in done.iter_mut().zip(ok.into_inner().expect("lock")) {
            *d += n;
        }
        for (d, n) in new.iter_mut().zip(got.into_inner().expect("lock")) {
            *d += n;
        }
        Ok(fails.into_inner().expect("lock"))
    }

    /// One image: `Some(Ok(true))` when downloaded now, `Some(Ok(false))`
    /// when already there, `None` when interrupted before it finished.
    async fn one(&self, l: &Listed, fresh: bool) -> Option<Result<bool, DownloadError>> {
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
        let object = match self.spill.read_object(l) {
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
