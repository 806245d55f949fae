//! The fetch engine (tokio): lists every grid, writes the listing, downloads
//! the images concurrently and resumably, and keeps the run record. Uses
//! `api` for the network and `store` for files; no GDAL, EXIF or printing
//! (progress goes out through the `Progress` counters).
#![allow(missing_docs)] // TODO(#12): document the public items of this module, then drop this line

pub(crate) mod audit;
pub(crate) mod download;
mod downloader;
mod gridindex;
pub(crate) mod listing;
pub(crate) mod pack;
mod resume;
mod search;
pub(crate) mod tiles;
pub(crate) mod verified;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Utc;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::api::{ApiError, Client};
use crate::cli::Enumerate;
use crate::config::FetchConfig;
use crate::model::{Bbox, GridId, ImageId, LonLat, PositionSource, ThumbSize};
use crate::plan::Plan;
use crate::runrecord::{
    Completeness, Counts, Failure, Filters, GridState, Outcome, RUN_RECORD_FILE,
    RUN_SCHEMA_VERSION, Request, RunEntry, RunRecord,
};
use crate::store::{self, LISTING_FILE};
use crate::{ExitStatus, record::ImageRecord};

use crate::thin::{self, ThinInput};
pub use download::{DownloadError, download_image};
use listing::GridListing;
pub use listing::{Found, ListError};

/// Live counters for progress display; updated by the engine, read by the
/// reporter.
#[derive(Debug, Default)]
pub struct Progress {
    pub grids_total: AtomicU64,
    pub grids_listed: AtomicU64,
    pub listed: AtomicU64,
    pub malformed: AtomicU64,
    /// Images to consider in the download phase (0 while listing).
    pub to_download: AtomicU64,
    pub downloaded: AtomicU64,
    pub skipped: AtomicU64,
    /// Images stored in another grid folder than the one their position
    /// now falls in (they stay where they are).
    pub moved: AtomicU64,
    pub failed: AtomicU64,
    pub bytes: AtomicU64,
    /// 0 listing, 1 downloading, 2 done.
    pub phase: AtomicU64,
}

/// Errors that stop a fetch (one image failing never does).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "`{dir}` holds a fetch with other settings; use another --output folder or the same flags:\n  {differences}"
    )]
    RequestChanged { dir: String, differences: String },
    #[error("the run record `{path}` is unreadable ({message}); move it away to start afresh")]
    BadRunRecord { path: String, message: String },
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Listing(ListError),
    #[error("the first request to the API failed, so nothing was written")]
    Preflight(#[source] ApiError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Tiles(#[from] tiles::TilesError),
    #[error("cannot create `{path}`: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot list what `{path}` already holds: {source}")]
    Scan {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot use a scratch file in `{path}`: {source}")]
    Scratch {
        path: String,
        source: std::io::Error,
    },
}

/// What a fetch did.
#[derive(Debug, Clone)]
pub struct FetchReport {
    pub status: ExitStatus,
    pub counts: Counts,
    pub grids: Vec<GridState>,
    /// With `--dry-run`: the estimated bytes of the listed images.
    pub estimated_bytes: u64,
    pub dry_run: bool,
    /// The tiles counted before listing (and, for a search listing, what
    /// `--enumerate tiles` would read).
    pub tile_needs: tiles::TileNeeds,
    /// With `--audit`: its totals (the details are in `audit.json`).
    pub audit: Option<audit::AuditSummary>,
    /// What could not be verified, one line each (printed as warnings).
    pub warnings: Vec<String>,
    /// Images downloaded by this run, per grid id (after an `adopt`: what
    /// the old tool had missed or left broken).
    pub new_per_grid: Vec<(String, u64)>,
}

/// How this run lists.
enum Listing {
    /// Verified against the z14 tiles (`--enumerate auto`).
    Verified(Vec<tiles::PlannedTile>),
    /// Bbox searches alone, not verified; why.
    Search(String),
    /// Vector tiles then batched lookups (`--enumerate tiles`), not verified.
    Tiles,
}

/// Decides how to list: `auto` is verified unless the tiles cannot be used
/// (over the budget, or the tiles host fails), which falls back to search.
async fn choose_listing(
    cfg: &FetchConfig,
    client: &Client,
    needs: &mut tiles::TileNeeds,
) -> Result<Listing, FetchError> {
    match cfg.request.enumerate {
        Enumerate::Search => return Ok(Listing::Search("--enumerate search was asked".into())),
        Enumerate::Tiles => return Ok(Listing::Tiles),
        Enumerate::Auto => {}
    }
    let budget = u64::from(cfg.tiles.budget).saturating_sub(needs.audit + 1);
    let planned = match tiles::plan_tiles(&cfg.plan, cfg.aoi.as_deref(), budget) {
        Ok(p) => p,
        Err(upper) => {
            return Ok(Listing::Search(format!(
                "the area needs up to {upper} vector tiles, more than --tile-budget {} allows",
                cfg.tiles.budget
            )));
        }
    };
    match tiles::preflight(client, &cfg.tiles, cfg.request.position).await {
        Ok(()) => {
            needs.listing = planned.len() as u64;
            Ok(Listing::Verified(planned))
        }
        Err(tiles::TilesError::Preflight(e @ ApiError::Auth { .. })) => Err(FetchError::Api(e)),
        Err(e) => Ok(Listing::Search(format!(
            "the vector tiles could not be read ({e})"
        ))),
    }
}

/// One listed image, compactly: its API object lives in the scratch file.
#[derive(Debug)]
struct Listed {
    grid: u32,
    id: ImageId,
    captured_ms: i64,
    url: Option<Box<str>>,
    offset: u64,
    len: u32,
    /// The chosen position, for thinning.
    position: Option<LonLat>,
    has_position: bool,
    /// Index of the sequence key, for thinning.
    seq: Option<u32>,
    width: Option<u32>,
    height: Option<u32>,
}

/// A line of `listing.jsonl`.
#[derive(Debug, Serialize)]
struct ListingLine<'a> {
    id: String,
    grid: &'a str,
    lon: Option<f64>,
    lat: Option<f64>,
    captured_at: Option<String>,
    sequence: Option<&'a str>,
    is_pano: Option<bool>,
    creator: Option<&'a str>,
}

/// Runs a whole fetch as configured. Ctrl-C is `cancel`.
pub async fn run(
    cfg: &FetchConfig,
    client: Arc<Client>,
    progress: Arc<Progress>,
    cancel: CancellationToken,
) -> Result<FetchReport, FetchError> {
    let mut tile_needs = tiles::check_budget(cfg)?;
    preflight(&client, &cfg.plan).await?;
    if cfg.request.enumerate == Enumerate::Tiles || cfg.audit {
        tiles::preflight(&client, &cfg.tiles, cfg.request.position).await?;
    }
    let how = choose_listing(cfg, &client, &mut tile_needs).await?;
    let out = &cfg.output;
    std::fs::create_dir_all(out).map_err(|source| FetchError::CreateDir {
        path: out.display().to_string(),
        source,
    })?;
    store::remove_stale_temp_files(out);
    let record_path = out.join(RUN_RECORD_FILE);
    let mut record = load_or_new_record(&record_path, &cfg.request, &cfg.plan)?;
    record.request.enumerate = cfg.request.enumerate;
    let started_at = Utc::now();
    record.runs.push(RunEntry {
        tool_version: env!("CARGO_PKG_VERSION").into(),
        command_line: cfg.command_line.clone(),
        api_url: cfg.api.base_url.to_string(),
        started_at,
        finished_at: None,
        outcome: Outcome::Running,
        dry_run: cfg.dry_run,
        counts: Counts::default(),
    });
    write_record(&record_path, &record)?;

    // Listing: API objects spill to an unnamed scratch file to bound memory.
    let scratch = tempfile::tempfile_in(out).map_err(|source| FetchError::Scratch {
        path: out.display().to_string(),
        source,
    })?;
    let mut writer = BufWriter::new(scratch.try_clone().map_err(|source| FetchError::Scratch {
        path: out.display().to_string(),
        source,
    })?);
    let mut listed: Vec<Listed> = Vec::new();
    let mut offset = 0u64;
    let mut spill_err: Option<std::io::Error> = None;
    let size = cfg.size();
    let dry_run = cfg.dry_run;
    let mut sequences: HashMap<String, u32> = HashMap::new();
    let position = cfg.request.position;
    let sink = |f: listing::Found| {
        let bytes = serde_json::to_vec(&Value::Object(f.object)).expect("a JSON map serializes");
        if let Err(e) = writer.write_all(&bytes) {
            spill_err.get_or_insert(e);
        }
        let next = sequences.len() as u32;
        let seq = f
            .record
            .sequence
            .as_ref()
            .map(|k| *sequences.entry(k.clone()).or_insert(next));
        listed.push(Listed {
            grid: f.grid as u32,
            id: f.id,
            captured_ms: f
                .record
                .captured_at
                .map_or(i64::MAX, |t| t.timestamp_millis()),
            url: f.url.filter(|_| !dry_run).map(String::into_boxed_str),
            offset,
            len: bytes.len() as u32,
            position: f.record.position(position).map(|(p, _)| p),
            has_position: f.record.original_position.is_some()
                || f.record.computed_position.is_some(),
            seq,
            width: f.record.width,
            height: f.record.height,
        });
        offset += bytes.len() as u64;
    };
    let mut selector = listing::Selector::new(
        &cfg.plan,
        &cfg.request.filters,
        size,
        position,
        cfg.aoi.as_deref(),
    );
    let mut warnings = Vec::new();
    let result = match &how {
        Listing::Verified(planned) => {
            let vp = verified::VerifiedPlan {
                tiles: &cfg.tiles,
                planned,
                target: cfg.box_target,
                cap: cfg.api.search_cap,
            };
            let mut selector = selector.strict_creator();
            verified::list_verified(&client, &vp, &mut selector, &progress, &cancel, sink).await
        }
        Listing::Search(why) => {
            warnings.push(format!(
                "the listing was not verified against the vector tiles ({why}): every grid is only assumed complete"
            ));
            listing::list_plan(
                &client,
                &mut selector,
                cfg.api.search_cap,
                &progress,
                &cancel,
                sink,
            )
            .await
        }
        Listing::Tiles => {
            warnings.push(
                "the listing was not verified (--enumerate tiles): images newer than the vector tiles are not seen; every grid is only assumed complete".into(),
            );
            tiles::list_plan_tiles(&client, &cfg.tiles, &mut selector, &progress, &cancel, sink)
                .await
        }
    };
    if let Err(e) = writer.flush() {
        spill_err.get_or_insert(e);
    }
    drop(writer);
    let spill = Spill { file: scratch };
    if let Some(source) = spill_err {
        fail_record(&record_path, &mut record)?;
        return Err(FetchError::Scratch {
            path: out.display().to_string(),
            source,
        });
    }
    let grid_listings = match result {
        Ok(g) => g,
        Err(e @ (ListError::Fatal(_) | ListError::Unsupported(_))) => {
            fail_record(&record_path, &mut record)?;
            return Err(FetchError::Listing(e));
        }
        Err(ListError::Interrupted) => {
            let counts = Counts {
                listed: listed.len() as u64,
                search_calls: client.stats().search_calls.load(Ordering::Relaxed),
                ..Counts::default()
            };
            finish_record(
                &record_path,
                &mut record,
                Outcome::Interrupted,
                counts.clone(),
                &[],
                Vec::new(),
            )?;
            return Ok(FetchReport {
                status: ExitStatus::Interrupted,
                counts,
                grids: record.grids.clone(),
                estimated_bytes: 0,
                dry_run: cfg.dry_run,
                tile_needs,
                audit: None,
                warnings,
                new_per_grid: Vec::new(),
            });
        }
    };

    // Order: grid, capture time, id. Then --max-images keeps the first N.
    listed.sort_by_key(|l| (l.grid, l.captured_ms, l.id));
    let mut thinned_per_grid = vec![0u64; cfg.plan.grids().len()];
    let listed_total = listed.len() as u64;
    let without_position = listed.iter().filter(|l| !l.has_position).count() as u64;
    let mut listed_per_grid = vec![0u64; cfg.plan.grids().len()];
    for l in &listed {
        listed_per_grid[l.grid as usize] += 1;
    }
    if let Some(min_m) = cfg.request.min_spacing_m {
        let input: Vec<ThinInput> = listed
            .iter()
            .map(|l| ThinInput {
                sequence: l.seq,
                captured_ms: l.captured_ms,
                id: l.id,
                position: l.position,
            })
            .collect();
        let keep = thin::thin(&input, min_m);
        let mut k = keep.iter();
        listed.retain(|l| {
            let kept = *k.next().expect("one flag per image");
            if !kept {
                thinned_per_grid[l.grid as usize] += 1;
            }
            kept
        });
    }
    if let Some(max) = cfg.request.filters.max_images {
        listed.truncate(usize::try_from(max).unwrap_or(usize::MAX));
    }
    write_listing(out, &cfg.plan, &listed, &spill)?;
    let stats = client.stats();
    let calls = |s: &crate::api::ApiStats| {
        [
            s.search_calls.load(Ordering::Relaxed),
            s.tile_calls.load(Ordering::Relaxed),
            s.batch_calls.load(Ordering::Relaxed),
        ]
    };
    let before_audit = calls(&stats);
    let audit = if cfg.audit && !cancel.is_cancelled() {
        run_audit(cfg, &client, &cancel).await?
    } else {
        None
    };
    let after_audit = calls(&stats);
    let audit_calls: Vec<u64> = (0..3).map(|i| after_audit[i] - before_audit[i]).collect();
    let mut counts = Counts {
        listed: listed_total,
        without_position,
        thinned: thinned_per_grid.iter().sum(),
        ..Counts::default()
    };
    let estimated_bytes = listed
        .iter()
        .map(|l| estimate_bytes(size, l.width, l.height))
        .sum();

    let mut failures: Vec<Failure> = Vec::new();
    let mut done_per_grid = vec![0u64; cfg.plan.grids().len()];
    let mut new_per_grid = vec![0u64; cfg.plan.grids().len()];
    let mut failed_per_grid = vec![0u64; cfg.plan.grids().len()];
    if !cfg.dry_run {
        progress
            .to_download
            .store(listed.len() as u64, Ordering::Relaxed);
        progress.phase.store(1, Ordering::Relaxed);
        let on_disk = resume::OnDisk::scan(out).map_err(|source| FetchError::Scan {
            path: out.display().to_string(),
            source,
        })?;
        let downloads = downloader::Downloads {
            on_disk: &on_disk,
            client: &client,
            progress: &progress,
            cancel: &cancel,
            spill: &spill,
            out,
            plan: &cfg.plan,
            size,
            concurrency: cfg.concurrency,
        };
        let got = match downloads.run(&listed).await {
            Ok(got) => got,
            Err(e) => {
                fail_record(&record_path, &mut record)?;
                return Err(FetchError::Api(e));
            }
        };
        done_per_grid = got.done;
        new_per_grid = got.fresh;
        for (gi, f) in got.failures {
            failed_per_grid[gi as usize] += 1;
            failures.push(f);
        }
        failures.sort_by(|a, b| a.id.cmp(&b.id));
    }
    let interrupted = cancel.is_cancelled();
    progress.phase.store(2, Ordering::Relaxed);

    let stats = client.stats();
    counts.downloaded = progress.downloaded.load(Ordering::Relaxed);
    counts.skipped = progress.skipped.load(Ordering::Relaxed);
    counts.moved = progress.moved.load(Ordering::Relaxed);
    counts.bytes = progress.bytes.load(Ordering::Relaxed);
    counts.failed = failures.len() as u64;
    counts.search_calls = stats.search_calls.load(Ordering::Relaxed) - audit_calls[0];
    counts.entity_calls = stats.entity_calls.load(Ordering::Relaxed);
    counts.tiles = tile_needs.listing;
    counts.tile_calls = stats.tile_calls.load(Ordering::Relaxed) - audit_calls[1];
    counts.batch_calls = stats.batch_calls.load(Ordering::Relaxed) - audit_calls[2];
    let mut by_reason = BTreeMap::new();
    for f in &failures {
        *by_reason.entry(f.reason.clone()).or_insert(0) += 1;
    }
    counts.failed_by_reason = by_reason;
    let grids = grid_states(
        &cfg.plan,
        &grid_listings,
        &listed_per_grid,
        &thinned_per_grid,
        &done_per_grid,
        &failed_per_grid,
    );
    counts.truncated_grids = grids
        .iter()
        .filter(|g| g.listing == Completeness::Truncated)
        .count() as u64;
    counts.failed_grids = grids
        .iter()
        .filter(|g| g.listing == Completeness::Failed)
        .count() as u64;
    count_verification(&mut counts, &grids, &mut warnings);

    let status = if interrupted {
        ExitStatus::Interrupted
    } else if counts.failed > 0 || counts.truncated_grids > 0 || counts.failed_grids > 0 {
        ExitStatus::Partial
    } else {
        ExitStatus::Success
    };
    let outcome = match (status, cfg.dry_run) {
        (ExitStatus::Interrupted, _) => Outcome::Interrupted,
        (_, true) => Outcome::Listed,
        (ExitStatus::Success, false) => Outcome::Complete,
        _ => Outcome::Partial,
    };
    record.grids = grids.clone();
    finish_record(
        &record_path,
        &mut record,
        outcome,
        counts.clone(),
        &grids,
        failures,
    )?;
    Ok(FetchReport {
        status,
        counts,
        grids,
        estimated_bytes,
        dry_run: cfg.dry_run,
        tile_needs,
        audit,
        warnings,
        new_per_grid: cfg
            .plan
            .grids()
            .iter()
            .map(|g| g.id.to_string())
            .zip(new_per_grid)
            .collect(),
    })
}

/// Totals of the verification, and a warning for the grids a verified
/// listing could not verify.
fn count_verification(counts: &mut Counts, grids: &[GridState], warnings: &mut Vec<String>) {
    counts.verified_grids = grids
        .iter()
        .filter(|g| g.listing == Completeness::Verified)
        .count() as u64;
    counts.unverified_grids = grids.len() as u64 - counts.verified_grids;
    let checked = grids
        .iter()
        .filter_map(|g| g.verification.as_ref().map(|v| (g, v)));
    let mut unverified = Vec::new();
    for (g, v) in checked {
        counts.reconciled += v.reconciled;
        counts.only_in_search += v.only_in_search;
        if let Some(why) = &v.not_verified_because {
            unverified.push(format!("{}: {why}", g.grid));
        }
    }
    if let Some(first) = unverified.first() {
        warnings.push(format!(
            "{} grids could not be verified against the vector tiles (first: {first}); see mlyexport-run.json",
            unverified.len()
        ));
    }
}

/// Runs `--audit` and writes `audit.json`; `None` when interrupted.
async fn run_audit(
    cfg: &FetchConfig,
    client: &Client,
    cancel: &CancellationToken,
) -> Result<Option<audit::AuditSummary>, FetchError> {
    let input = audit::AuditInput {
        plan: &cfg.plan,
        aoi: cfg.aoi.as_deref(),
        filters: &cfg.request.filters,
        size: cfg.size(),
        position: cfg.request.position,
        search_cap: cfg.api.search_cap,
        tiles: &cfg.tiles,
    };
    let report = match audit::run(client, &input, cancel).await {
        Ok(r) => r,
        Err(ListError::Interrupted) => return Ok(None),
        Err(e) => return Err(FetchError::Listing(e)),
    };
    let mut bytes = serde_json::to_vec_pretty(&report).expect("serializable");
    bytes.push(b'\n');
    store::atomic_write(&cfg.output.join(audit::AUDIT_FILE), &bytes)?;
    Ok(Some(audit::AuditSummary {
        totals: report.totals,
    }))
}

/// One tiny search before anything is written, so that a refused token or an
/// unreachable API ends the run with nothing on disk.
async fn preflight(client: &Client, plan: &Plan) -> Result<(), FetchError> {
    let a = plan.area();
    let side = 0.0001_f64.min(a.width()).min(a.height());
    let tiny = Bbox::new(
        a.min_lon(),
        a.min_lat(),
        a.min_lon() + side,
        a.min_lat() + side,
    )
    .expect("a corner of a valid box");
    let q = crate::api::SearchQuery {
        fields: "id".into(),
        limit: 1,
        ..Default::default()
    };
    match client.search(&tiny, &q).await {
        Ok(_) | Err(ApiError::TooMuchData { .. }) => Ok(()),
        Err(e) => Err(FetchError::Preflight(e)),
    }
}

/// The listing's API objects, spilled to an unnamed scratch file so that
/// memory stays bounded; every read is checked.
pub(crate) struct Spill {
    file: File,
}

impl Spill {
    /// The bytes of one listed image's object.
    fn read_raw(&self, offset: u64, len: u32) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len as usize];
        self.file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    /// One listed image's API object.
    fn read_object(&self, l: &Listed) -> std::io::Result<Map<String, Value>> {
        let raw = self.read_raw(l.offset, l.len)?;
        serde_json::from_slice(&raw).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the scratch copy of image {} does not parse: {e}", l.id),
            )
        })
    }
}

/// A rough size of one image: measured averages per rendition; originals by
/// their pixel count at about 0.2 bytes per pixel.
fn estimate_bytes(size: ThumbSize, w: Option<u32>, h: Option<u32>) -> u64 {
    match size {
        ThumbSize::S256 => 12_000,
        ThumbSize::S1024 => 150_000,
        ThumbSize::S2048 => 500_000,
        ThumbSize::Original => match (w, h) {
            (Some(w), Some(h)) => (f64::from(w) * f64::from(h) * 0.2) as u64,
            _ => 2_000_000,
        },
    }
}

fn grid_states(
    plan: &Plan,
    listings: &[GridListing],
    listed: &[u64],
    thinned: &[u64],
    done: &[u64],
    failed: &[u64],
) -> Vec<GridState> {
    plan.grids()
        .iter()
        .zip(listings)
        .enumerate()
        .map(|(i, (g, gl))| GridState {
            grid: g.id.to_string(),
            bbox: g.bbox,
            listing: gl.completeness,
            search_calls: gl.search_calls,
            listed: listed[i],
            downloaded: done[i],
            failed: failed[i],
            thinned: thinned[i],
            truncated_boxes: gl.truncated_boxes.clone(),
            failed_boxes: gl.failed_boxes.clone(),
            verification: gl.verification.clone(),
        })
        .collect()
}

fn write_listing(
    out: &Path,
    plan: &Plan,
    listed: &[Listed],
    spill: &Spill,
) -> Result<(), FetchError> {
    store::atomic_write_with(&out.join(LISTING_FILE), |w| {
        for l in listed {
            let raw = spill.read_raw(l.offset, l.len)?;
            let rec = Some(ImageRecord::from_slice(&raw).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("the scratch copy of image {} does not parse: {e}", l.id),
                )
            })?);
            let pos = rec
                .as_ref()
                .and_then(|r| r.original_position.or(r.computed_position));
            let line = ListingLine {
                id: l.id.to_string(),
                grid: plan.grids()[l.grid as usize].id.as_str(),
                lon: pos.map(|p| p.lon),
                lat: pos.map(|p| p.lat),
                captured_at: rec
                    .as_ref()
                    .and_then(|r| r.captured_at)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
                sequence: rec.as_ref().and_then(|r| r.sequence.as_deref()),
                is_pano: rec.as_ref().and_then(|r| r.is_pano),
                creator: rec.as_ref().and_then(|r| r.creator_username.as_deref()),
            };
            serde_json::to_writer(&mut *w, &line)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })?;
    Ok(())
}

fn load_or_new_record(
    path: &Path,
    request: &Request,
    plan: &Plan,
) -> Result<RunRecord, FetchError> {
    if path.is_file() {
        let mut text = Vec::new();
        crate::input::read_bounded_into(path, crate::layers::read::MAX_RUN_RECORD_BYTES, &mut text)
            .map_err(|e| FetchError::BadRunRecord {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        let old: RunRecord =
            serde_json::from_slice(&text).map_err(|e| FetchError::BadRunRecord {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        let mut diffs = old.request.differences(request);
        let cells = |g: &mut dyn Iterator<Item = (String, Bbox)>| g.collect::<Vec<_>>();
        let old_cells = cells(&mut old.grids.iter().map(|g| (g.grid.clone(), g.bbox)));
        let new_cells = cells(&mut plan.grids().iter().map(|g| (g.id.to_string(), g.bbox)));
        if old_cells != new_cells {
            diffs.push(format!(
                "grid cells: was {} cells ({}), now {} cells ({}); the grid file or the grid changed",
                old_cells.len(),
                summary(&old_cells),
                new_cells.len(),
                summary(&new_cells)
            ));
        }
        // A folder adopted from the old tool: its record's request is a
        // guess, so the first real fetch's request replaces it (same cells).
        let imported =
            !old.runs.is_empty() && old.runs.iter().all(|r| r.outcome == Outcome::Imported);
        if imported && old_cells == new_cells {
            return Ok(RunRecord {
                request: request.clone(),
                ..old
            });
        }
        if !diffs.is_empty() {
            return Err(FetchError::RequestChanged {
                dir: path.parent().unwrap_or(path).display().to_string(),
                differences: diffs.join("\n  "),
            });
        }
        return Ok(old);
    }
    Ok(RunRecord {
        schema_version: RUN_SCHEMA_VERSION,
        tool: "mlyexport".into(),
        request: request.clone(),
        grids: plan
            .grids()
            .iter()
            .map(|g| GridState {
                grid: g.id.to_string(),
                bbox: g.bbox,
                listing: Completeness::Pending,
                search_calls: 0,
                listed: 0,
                downloaded: 0,
                failed: 0,
                thinned: 0,
                truncated_boxes: Vec::new(),
                failed_boxes: Vec::new(),
                verification: None,
            })
            .collect(),
        totals: Counts::default(),
        failures: Vec::new(),
        runs: Vec::new(),
    })
}

/// Closes the last run entry as failed, keeping everything else.
fn fail_record(path: &Path, record: &mut RunRecord) -> Result<(), FetchError> {
    finish_record(
        path,
        record,
        Outcome::Failed,
        Counts::default(),
        &[],
        Vec::new(),
    )
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

fn write_record(path: &Path, record: &RunRecord) -> Result<(), FetchError> {
    let mut bytes = serde_json::to_vec_pretty(record).expect("serializable");
    bytes.push(b'\n');
    store::atomic_write(path, &bytes)?;
    Ok(())
}

fn finish_record(
    path: &Path,
    record: &mut RunRecord,
    outcome: Outcome,
    counts: Counts,
    grids: &[GridState],
    failures: Vec<Failure>,
) -> Result<(), FetchError> {
    if let Some(run) = record.runs.last_mut() {
        run.finished_at = Some(Utc::now());
        run.outcome = outcome;
        run.counts = counts.clone();
    }
    if !grids.is_empty() {
        record.totals = Counts {
            downloaded: grids.iter().map(|g| g.downloaded).sum(),
            ..counts
        };
        record.failures = failures;
    }
    write_record(path, record)
}

/// A complete listing of one bbox, for library users.
#[derive(Debug, Clone)]
pub struct BboxListing {
    /// The images, sorted by capture time then id; the API's objects without
    /// the signed thumbnail URLs.
    pub images: Vec<ImageRecord>,
    /// `Verified` when checked against the vector tiles; otherwise how
    /// complete the search-only listing is believed to be.
    pub completeness: Completeness,
    /// Why the listing is not verified, when it is not.
    pub not_verified_because: Option<String>,
}

/// Lists every image in `bbox` that passes `filters`, beyond the API's
/// per-request cap, verified against the vector tiles at `tiles` (the same
/// engine as `fetch`): the equivalent of the old tool's `get_images_in_bbox`.
/// When the tiles cannot be used the listing falls back to searches alone
/// and says so in `not_verified_because`.
///
/// ```no_run
/// # async fn demo() -> anyhow::Result<()> {
/// use mlyexport::{api::Client, config, fetch, model::*, runrecord::Filters};
/// let cfg = config::ApiConfig {
///     base_url: "https://graph.mapillary.com".parse()?,
///     token: AccessToken::new(&std::env::var("MAPILLARY_TOKEN")?).expect("a token"),
///     connect_timeout: std::time::Duration::from_secs(15),
///     read_timeout: std::time::Duration::from_secs(60),
///     retry: config::RetryPolicy { attempts: 6, base: std::time::Duration::from_millis(500), max: std::time::Duration::from_secs(60) },
///     search_per_min: 9_000,
///     entity_per_min: 50_000,
///     search_cap: 2000,
/// };
/// let client = Client::new(&cfg)?;
/// let tiles = config::TilesConfig { base_url: "https://tiles.mapillary.com".parse()?, budget: 50_000 };
/// let bbox: Bbox = "13.40,52.51,13.42,52.52".parse()?;
/// let filters = Filters { since: None, until: None, pano: PanoFilter::Include, creator: None, organization: None, max_images: None };
/// let listing = fetch::images_in_bbox(&client, &tiles, bbox, &filters, ThumbSize::S1024).await?;
/// let first = &listing.images[0];
/// fetch::download_image(&client, first.id, ThumbSize::S1024, std::path::Path::new("downloads/1")).await?;
/// # Ok(()) }
/// ```
pub async fn images_in_bbox(
    client: &Client,
    tiles_cfg: &crate::config::TilesConfig,
    bbox: Bbox,
    filters: &Filters,
    size: ThumbSize,
) -> Result<BboxListing, ApiError> {
    images_in_bbox_with(
        client,
        tiles_cfg,
        bbox,
        filters,
        size,
        &CancellationToken::new(),
    )
    .await
}

/// [`images_in_bbox`], stopped early (as `ApiError::Network("interrupted")`)
/// when `cancel` fires.
pub async fn images_in_bbox_with(
    client: &Client,
    tiles_cfg: &crate::config::TilesConfig,
    bbox: Bbox,
    filters: &Filters,
    size: ThumbSize,
    cancel: &CancellationToken,
) -> Result<BboxListing, ApiError> {
    let mut images = Vec::new();
    let progress = Arc::new(Progress::default());
    let search = BboxSearch {
        tiles_cfg,
        bbox,
        filters,
        size,
    };
    let (completeness, not_verified_because) =
        images_in_bbox_each(client, &search, cancel, &progress, |f| {
            images.push(f.record)
        })
        .await?;
    images.sort_by_key(|r| (r.captured_at, r.id));
    Ok(BboxListing {
        images,
        completeness,
        not_verified_because,
    })
}

/// What [`images_in_bbox_each`] lists.
#[derive(Debug, Clone, Copy)]
pub struct BboxSearch<'a> {
    pub tiles_cfg: &'a crate::config::TilesConfig,
    pub bbox: Bbox,
    pub filters: &'a Filters,
    pub size: ThumbSize,
}

/// The listing of [`images_in_bbox_with`], handing each image to `sink` as
/// it is found (unsorted; its `object` is the API's without signed URLs) and
/// counting into `progress`. Returns the completeness and why the listing is
/// not verified, when it is not.
pub async fn images_in_bbox_each(
    client: &Client,
    search: &BboxSearch<'_>,
    cancel: &CancellationToken,
    progress: &Arc<Progress>,
    sink: impl FnMut(listing::Found),
) -> Result<(Completeness, Option<String>), ApiError> {
    let BboxSearch {
        tiles_cfg,
        bbox,
        filters,
        size,
    } = *search;
    let plan = Plan::single(bbox);
    let sel = listing::Selector::new(&plan, filters, size, PositionSource::Original, None);
    let usable = match tiles::plan_tiles(&plan, None, u64::from(tiles_cfg.budget)) {
        Ok(planned) => tiles::preflight(client, tiles_cfg, PositionSource::Original)
            .await
            .map(|()| planned),
        Err(upper) => Err(tiles::TilesError::OverBudget {
            what: "the bbox".into(),
            needed: format!("up to {upper}"),
            budget: tiles_cfg.budget,
        }),
    };
    let (grids, why) = match usable {
        Ok(planned) => {
            let vp = verified::VerifiedPlan {
                tiles: tiles_cfg,
                planned: &planned,
                target: 1500,
                cap: 2000,
            };
            let mut sel = sel.strict_creator();
            (
                verified::list_verified(client, &vp, &mut sel, progress, cancel, sink).await,
                None,
            )
        }
        Err(tiles::TilesError::Preflight(e @ ApiError::Auth { .. })) => return Err(e),
        Err(e) => {
            let mut sel = sel;
            let r = listing::list_plan(client, &mut sel, 2000, progress, cancel, sink).await;
            (r, Some(format!("the vector tiles could not be used ({e})")))
        }
    };
    let grids = grids.map_err(|e| match e {
        ListError::Fatal(e) => e,
        ListError::Interrupted => ApiError::Network("interrupted".into()),
        ListError::Unsupported(m) => ApiError::Rejected {
            status: 0,
            message: m,
        },
    })?;
    let g = grids.first();
    Ok((
        g.map_or(Completeness::Pending, |g| g.completeness),
        why.or_else(|| {
            g.and_then(|g| g.verification.as_ref())
                .and_then(|v| v.not_verified_because.clone())
        }),
    ))
}

/// The grid id a library caller's folder stands for: its name when valid, else `1`.
pub(crate) fn grid_of_dir(dir: &Path) -> GridId {
    dir.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| "1".parse().expect("valid"))
}
