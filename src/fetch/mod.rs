//! The fetch engine (tokio): lists every grid, writes the listing, downloads
//! the images concurrently and resumably, and keeps the run record. Uses
//! `api` for the network and `store` for files; no GDAL, EXIF or printing:
//! progress goes out through the [`Progress`] counters and the result is a
//! [`FetchReport`] (the caller decides who prints them).
//!
//! [`run`] is a pipeline of stages, each a function with its own input and
//! output:
//!
//! ```text
//!  grid plan ─► plan ─► record (open) ─► list ─► select ─► listing.jsonl ─► audit ─► download ─► record (close)
//!               │                        │        │                          │         │           │
//!               strategy                 collect  select                     audit     downloader  tally + runrecord
//!               (budget, preflights,     (sink:   (order, thin,              (--audit) (two rounds, (counts, status;
//!                how to list)             spill)   --max-images)                        one owner)   the record file)
//! ```

pub(crate) mod audit;
mod bbox;
mod collect;
pub(crate) mod download;
mod downloader;
mod error;
mod gridindex;
mod listfile;
pub(crate) mod listing;
pub(crate) mod pack;
mod progress;
mod resume;
mod search;
mod select;
mod spill;
mod strategy;
mod tally;
mod tilelister;
pub(crate) mod tiles;
pub(crate) mod verified;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::ExitStatus;
use crate::api::Client;
use crate::config::FetchConfig;
use crate::plan::Plan;
use crate::runrecord::{Counts, GridState, RecordFile, RunEntry};
use crate::shard::{self, claims::Claim, claims::Claims};
use crate::store;

use audit::AuditPlan;
pub use bbox::{BboxListing, BboxSearch, images_in_bbox, images_in_bbox_each, images_in_bbox_with};
use collect::Listing;
pub use download::{DownloadError, download_image};
use downloader::{Downloaded, Downloads};
pub use error::FetchError;
pub use listing::{Found, ListError};
use progress::Phase;
pub use progress::Progress;
use select::Selection;
use spill::{Listed, Spill, SpillWriter};
use strategy::Strategy;
pub use strategy::TileNeeds;
use tally::{Calls, Outcomes, Transfer};

/// What a fetch did.
#[derive(Debug, Clone)]
pub struct FetchReport {
    /// How the run ended (its exit code).
    pub status: ExitStatus,
    /// This run's counts (as written to its run record entry).
    pub counts: Counts,
    /// Each grid's state after the run, in plan order.
    pub grids: Vec<GridState>,
    /// With `--dry-run`: the estimated bytes of the listed images.
    pub estimated_bytes: u64,
    /// Whether it was a `--dry-run` (listed only).
    pub dry_run: bool,
    /// The tiles counted before listing (and, for a search listing, what
    /// `--enumerate tiles` would read).
    pub tile_needs: TileNeeds,
    /// With `--audit`: its totals (the details are in `audit.json`).
    pub audit: Option<audit::AuditSummary>,
    /// What could not be verified, one line each (printed as warnings).
    pub warnings: Vec<String>,
    /// Images downloaded by this run, per grid id (after an `adopt`: what
    /// the old tool had missed or left broken).
    pub new_per_grid: Vec<(String, u64)>,
    /// When this run was one shard of a split fetch: `K/N`, where K and N
    /// came from, and how many cells (or parts of cells) it had.
    pub shard: Option<String>,
}

/// Runs a whole fetch as configured. Ctrl-C is `cancel`. The stages run
/// over `cfg.plan`; a caller listing only part of the grids would hand the
/// stages another plan from here on.
pub async fn run(
    cfg: &FetchConfig,
    client: Arc<Client>,
    progress: Arc<Progress>,
    cancel: CancellationToken,
) -> Result<FetchReport, FetchError> {
    let plan = &cfg.plan;
    let strategy = strategy::choose(cfg, plan, &client).await?;
    let f = Fetch {
        cfg,
        plan,
        client: &client,
        progress: &progress,
        cancel: &cancel,
    };
    let mut record = f.open_record()?;
    let spill = fail_on_error(&mut record, SpillWriter::create(&cfg.output))?;
    let listing = collect::list(cfg, plan, &strategy.how, spill, &client, &progress, &cancel);
    let collected = match fail_on_error(&mut record, listing.await)? {
        Listing::Done(c) => c,
        Listing::Interrupted { listed } => return f.interrupted(&mut record, &strategy, listed),
    };
    let n = plan.grids().len();
    let (min_m, max) = (cfg.request.min_spacing_m, cfg.request.filters.max_images);
    let (items, left) = fail_on_error(&mut record, f.keep_claimed(collected.items))?;
    let selection = select::select(items, n, min_m, max);
    let listing_file = cfg.listing_file();
    let written = listfile::write(
        &cfg.output,
        &listing_file,
        plan,
        &selection.kept,
        &collected.spill,
    );
    fail_on_error(&mut record, written)?;
    let audited = f.audit(strategy.audit.as_ref()).await;
    let (audit, audit_calls) = fail_on_error(&mut record, audited)?;
    let downloads = if cfg.dry_run {
        Downloaded::nothing(n)
    } else {
        let downloaded = f.download(&selection, &collected.spill).await;
        fail_on_error(&mut record, downloaded)?
    };
    let interrupted = cancel.is_cancelled();
    progress.enter(Phase::Done);
    let mut warnings: Vec<String> = strategy.how.warning().into_iter().collect();
    if left > 0 {
        warnings.push(format!(
            "{left} images without any position were also returned to another shard, which claimed them first (in {}); that shard keeps them",
            shard::claims::CLAIMS_DIR
        ));
    }
    let outcomes = Outcomes {
        listings: &collected.grids,
        selection: &selection,
        downloads,
        transfer: Transfer::read(&progress),
        calls: Calls::of(&client.stats()).less(audit_calls),
        listing_tiles: strategy.needs.listing,
        interrupted,
        dry_run: cfg.dry_run,
    };
    let s = tally::sum_up(plan, outcomes, &mut warnings);
    record.finish(s.outcome, s.counts.clone(), s.grids.clone(), s.failures)?;
    Ok(FetchReport {
        status: s.status,
        counts: s.counts,
        grids: s.grids,
        estimated_bytes: selection.estimated_bytes(cfg.size()),
        dry_run: cfg.dry_run,
        tile_needs: strategy.needs,
        audit,
        warnings,
        new_per_grid: s.new_per_grid,
        shard: shard_line(cfg),
    })
}

/// `K/N (from SOURCE), U of T cells or parts`, for a shard's summary.
fn shard_line(cfg: &FetchConfig) -> Option<String> {
    let s = cfg.shard.as_ref()?;
    Some(format!(
        "{} (from {}), {} of {} cells or parts",
        s.shard,
        s.source.describe(),
        cfg.plan.grids().len(),
        s.split.units.len()
    ))
}

/// `result`, after closing the run record's entry as failed when it is an
/// error.
fn fail_on_error<T, E: Into<FetchError>>(
    record: &mut RecordFile,
    result: Result<T, E>,
) -> Result<T, FetchError> {
    result.map_err(|e| match record.fail() {
        Ok(()) => e.into(),
        Err(r) => FetchError::Unrecorded {
            cause: Box::new(e.into()),
            record: r,
        },
    })
}

/// What every stage after the plan stage shares.
struct Fetch<'a> {
    cfg: &'a FetchConfig,
    plan: &'a Plan,
    client: &'a Client,
    progress: &'a Arc<Progress>,
    cancel: &'a CancellationToken,
}

impl Fetch<'_> {
    /// Creates the output folder (removing temp files of runs that are
    /// gone), refuses a folder fetched whole or in other shards, and opens
    /// the run record (this shard's, when sharded) with this run's entry.
    fn open_record(&self) -> Result<RecordFile, FetchError> {
        let out = &self.cfg.output;
        std::fs::create_dir_all(out).map_err(|source| FetchError::CreateDir {
            path: out.display().to_string(),
            source,
        })?;
        let scan_error = |source| FetchError::Scan {
            path: out.display().to_string(),
            source,
        };
        let grids = self.plan.grids().iter().map(|g| &g.id);
        let linked = store::linked_grids(out, grids).map_err(scan_error)?;
        if !linked.is_empty() {
            let list: Vec<String> = linked
                .iter()
                .map(|p| format!("`{}`", p.display()))
                .collect();
            return Err(FetchError::LinkedGrids {
                list: list.join(", "),
            });
        }
        store::remove_stale_temp_files(out);
        let shard = self.cfg.shard.as_ref();
        crate::shard::folder::prepare(out, shard.map(|s| (&s.split, &self.cfg.request)))?;
        let mut entry = RunEntry::starting(
            self.cfg.command_line.clone(),
            self.cfg.api.base_url.to_string(),
            self.cfg.dry_run,
        );
        entry.shard = shard.map(|s| s.shard.to_string());
        let path = out.join(self.cfg.record_file());
        // Only this run makes a whole fetch's record (it holds the folder's lock).
        let fresh = shard.is_none() && !path.is_file();
        let mut record = RecordFile::open(path.clone(), &self.cfg.request, self.plan, entry)?;
        if shard.is_none()
            && let Err(e) = crate::shard::folder::confirm_whole(out)
        {
            // A shard created its split file meanwhile: this run withdraws.
            if fresh {
                return Err(match std::fs::remove_file(&path) {
                    Ok(()) => e.into(),
                    Err(source) => FetchError::Withdrawn {
                        cause: Box::new(e.into()),
                        path: path.display().to_string(),
                        source,
                    },
                });
            }
            return fail_on_error(&mut record, Err(e));
        }
        Ok(record)
    }

    /// Ctrl-C while listing: the entry is closed as interrupted, with what
    /// was listed.
    fn interrupted(
        &self,
        record: &mut RecordFile,
        strategy: &Strategy,
        listed: u64,
    ) -> Result<FetchReport, FetchError> {
        let counts = Counts {
            listed,
            search_calls: Calls::of(&self.client.stats()).search,
            ..Counts::default()
        };
        record.interrupt(counts.clone())?;
        Ok(FetchReport {
            status: ExitStatus::Interrupted,
            counts,
            grids: record.grids().to_vec(),
            estimated_bytes: 0,
            dry_run: self.cfg.dry_run,
            tile_needs: strategy.needs,
            audit: None,
            warnings: strategy.how.warning().into_iter().collect(),
            new_per_grid: Vec::new(),
            shard: shard_line(self.cfg),
        })
    }

    /// The audit stage (with `--audit`, unless interrupted): its summary
    /// and the calls it made, which the run's counts leave out.
    async fn audit(
        &self,
        planned: Option<&AuditPlan>,
    ) -> Result<(Option<audit::AuditSummary>, Calls), FetchError> {
        let stats = self.client.stats();
        let before = Calls::of(&stats);
        let summary = match planned {
            Some(p) if !self.cancel.is_cancelled() => self.run_audit(p).await?,
            _ => None,
        };
        Ok((summary, Calls::of(&stats).less(before)))
    }

    /// A shard keeps an image without any position only when it claimed
    /// it first ([`Claims`]): boxes of two shards' cells can both return one.
    /// Returns the images kept and how many were left to another shard.
    fn keep_claimed(&self, items: Vec<Listed>) -> Result<(Vec<Listed>, u64), FetchError> {
        let Some(s) = &self.cfg.shard else {
            return Ok((items, 0));
        };
        if items.iter().all(|l| l.has_position) {
            return Ok((items, 0));
        }
        let claims = Claims::open(&self.cfg.output, s.shard, &s.split)?;
        let (mut kept, mut left) = (Vec::with_capacity(items.len()), 0);
        for l in items {
            if l.has_position || claims.claim(l.id)? == Claim::Ours {
                kept.push(l);
            } else {
                left += 1;
            }
        }
        Ok((kept, left))
    }

    /// The download stage: every kept image not on disk yet.
    async fn download(
        &self,
        selection: &Selection,
        spill: &Spill,
    ) -> Result<Downloaded, FetchError> {
        let out = &self.cfg.output;
        let kept = &selection.kept;
        let progress = self.progress;
        progress
            .to_download
            .store(kept.len() as u64, std::sync::atomic::Ordering::Relaxed);
        progress.enter(Phase::Downloading);
        let on_disk = resume::OnDisk::scan(out).map_err(|source| FetchError::Scan {
            path: out.display().to_string(),
            source,
        })?;
        let downloads = Downloads {
            on_disk: &on_disk,
            client: self.client,
            progress,
            cancel: self.cancel,
            spill,
            out,
            plan: self.plan,
            size: self.cfg.size(),
            concurrency: self.cfg.concurrency,
        };
        Ok(downloads.run(kept).await?)
    }

    /// Runs `--audit` and writes `audit.json`; `None` when interrupted.
    async fn run_audit(
        &self,
        planned: &AuditPlan,
    ) -> Result<Option<audit::AuditSummary>, FetchError> {
        let cfg = self.cfg;
        let input = audit::AuditInput {
            plan: self.plan,
            aoi: cfg.aoi.as_deref(),
            filters: &cfg.request.filters,
            size: cfg.size(),
            position: cfg.request.position,
            search_cap: cfg.api.search_cap,
            tiles: &cfg.tiles,
        };
        let report = match audit::run(self.client, &input, planned, self.cancel).await {
            Ok(r) => r,
            Err(ListError::Interrupted) => return Ok(None),
            Err(e) => return Err(FetchError::Listing(e)),
        };
        let mut bytes = serde_json::to_vec_pretty(&report).expect("serializable");
        bytes.push(b'\n');
        store::atomic_write(&cfg.output.join(cfg.audit_file()), &bytes)?;
        Ok(Some(audit::AuditSummary {
            totals: report.totals,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ThumbSize;
    use crate::runrecord::RUN_RECORD_FILE;
    use crate::runrecord::testing::{entry, request};

    /// A failed stage closes the record as failed; when even that write
    /// fails, both errors are kept, the stage's first.
    #[test]
    fn a_failed_stage_closes_the_record_or_says_it_could_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RUN_RECORD_FILE);
        let req = request(ThumbSize::S256);
        let plan = Plan::single(req.area.bbox);
        let mut record = RecordFile::open(path.clone(), &req, &plan, entry()).unwrap();
        let stage = || {
            Err::<(), _>(FetchError::CreateDir {
                path: "stage-path".into(),
                source: std::io::Error::other("no space"),
            })
        };
        assert!(matches!(
            fail_on_error(&mut record, stage()),
            Err(FetchError::CreateDir { .. })
        ));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(r#""outcome": "failed""#), "{text}");

        // The record's place taken by a folder: the rename over it fails.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir_all(path.join("x")).unwrap();
        let e = fail_on_error(&mut record, stage()).unwrap_err();
        assert!(matches!(e, FetchError::Unrecorded { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.starts_with("cannot create `stage-path`: no space"),
            "{msg}"
        );
        assert!(msg.contains("still says `running`"), "{msg}");
    }
}
