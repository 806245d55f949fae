//! Enumeration by z14 vector tiles (`--enumerate tiles`): which tiles cover
//! the grids (counted against `--tile-budget` before anything is asked),
//! reading and decoding them, filtering on what they carry, then batched
//! Graph lookups (`/images?image_ids=`) of the kept ids, each object judged by
//! the shared `Selector`. Network through `api` only; no files, no printing.
//!
//! Search or tiles? Measured on the simulator (`scripts/bench-tiles.sh`):
//! search needs fewer calls where boxes can hold up to the cap (one answer
//! carries up to 2,000 full records, a batch 100), so it is the better
//! default. Tiles win where the API refuses dense boxes ("reduce the amount
//! of data") and search must split deep, and they cannot be truncated: a
//! tiles listing is complete unless a call failed. Tiles never list images
//! without a position, and the computed tileset leaves out images without a
//! computed position (search places those by their original one).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use super::Progress;
use super::listing::{Found, GridListing, ListError, Selector, completeness, fields_for};
use crate::aoi::Aoi;
use crate::api::tiles::{MAX_BATCH, Tileset};
use crate::api::{ApiError, Client};
use crate::cli::Enumerate;
use crate::config::{FetchConfig, TilesConfig};
use crate::model::{Bbox, ImageId, LonLat, PositionSource};
use crate::plan::Plan;
use crate::record::ImageRecord;
use crate::runrecord::{Completeness, FailedBox, Filters};
use crate::tiles::{self as tmath, DecodedTile, IMAGE_ZOOM, TileId, TileImage};

/// Tile reads in flight at once.
const TILES_CONCURRENCY: usize = 8;
/// `image_ids` lookups in flight at once (besides the tile reads).
const BATCH_CONCURRENCY: usize = 8;
/// How far (degrees) a tile's quantised position may be from a grid's box
/// for the image to be looked up (exact clipping is done by the `Selector`
/// on the Graph geometry). A z14 tile unit is about 5e-6 degrees.
pub(crate) const POSITION_MARGIN_DEG: f64 = 1e-4;
/// Failed ids quoted in one failure reason.
const QUOTED_IDS: usize = 5;

/// Why a tiles listing cannot start.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TilesError {
    #[error(
        "{what} needs {needed} vector tiles, more than --tile-budget {budget}; use a smaller area, a larger --tile-budget (the API allows 50,000 a day per token) or --enumerate search"
    )]
    OverBudget {
        what: String,
        needed: String,
        budget: u32,
    },
    #[error(
        "the tiles host `{url}` does not serve the `{tileset}` tileset (its tile 0/0/0 answered 404); check --tiles-url / MLYEXPORT_TILES_URL"
    )]
    NoTileset { url: String, tileset: &'static str },
    #[error("the first vector tile request failed, so nothing was written: {0}")]
    Preflight(ApiError),
}

/// One tile request before anything is written (the z0 tile, which every
/// tileset has), so that a wrong `--tiles-url` or a refused token ends the
/// run instead of reading as an area without images (404 means "no images"
/// for the z14 tiles).
pub(crate) async fn preflight(
    client: &Client,
    tiles: &TilesConfig,
    position: PositionSource,
) -> Result<(), TilesError> {
    let tileset = tileset_for(position);
    let t = TileId { z: 0, x: 0, y: 0 };
    match client.tile(&tiles.base_url, tileset, t).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(TilesError::NoTileset {
            url: tiles.base_url.to_string(),
            tileset: tileset.name(),
        }),
        Err(e) => Err(TilesError::Preflight(e)),
    }
}

/// One tile to read and the grids (by index) whose box, widened by
/// [`POSITION_MARGIN_DEG`], it touches.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PlannedTile {
    pub id: TileId,
    pub grids: Vec<usize>,
}

/// The z14 tiles that hold every image of the plan's grids, each once, in
/// grid order. Tiles outside the AOI are left out. Stops counting once more
/// than `limit` tiles are needed: `Err(upper bound)`.
pub(crate) fn plan_tiles(
    plan: &Plan,
    aoi: Option<&Aoi>,
    limit: u64,
) -> Result<Vec<PlannedTile>, u64> {
    let mut index: HashMap<TileId, usize> = HashMap::new();
    let mut tiles: Vec<PlannedTile> = Vec::new();
    for (gi, g) in plan.grids().iter().enumerate() {
        for t in tmath::covering(&g.bbox, IMAGE_ZOOM).iter() {
            if let Some(&k) = index.get(&t) {
                push_grid(&mut tiles[k].grids, gi);
                continue;
            }
            let wanted = aoi.is_none_or(|a| {
                intersection(&t.bbox(), &g.bbox).is_some_and(|b| a.intersects_box(&b))
            });
            if !wanted {
                continue;
            }
            if tiles.len() as u64 >= limit {
                let upper = plan
                    .grids()
                    .iter()
                    .map(|g| tmath::covering(&g.bbox, IMAGE_ZOOM).count())
                    .sum();
                return Err(upper);
            }
            index.insert(t, tiles.len());
            tiles.push(PlannedTile {
                id: t,
                grids: vec![gi],
            });
        }
    }
    // A quantised position just outside a grid may stand for an exact one
    // inside it: grids near a tile's edge are candidates too.
    for (gi, g) in plan.grids().iter().enumerate() {
        let wide = g.bbox.expanded(POSITION_MARGIN_DEG);
        for t in tmath::covering(&wide, IMAGE_ZOOM).iter() {
            if let Some(&k) = index.get(&t) {
                push_grid(&mut tiles[k].grids, gi);
            }
        }
    }
    for t in &mut tiles {
        t.grids.sort_unstable();
    }
    Ok(tiles)
}

fn push_grid(v: &mut Vec<usize>, gi: usize) {
    if !v.contains(&gi) {
        v.push(gi);
    }
}

/// The common part of two boxes, if it has an area.
pub(crate) fn intersection(a: &Bbox, b: &Bbox) -> Option<Bbox> {
    Bbox::new(
        a.min_lon().max(b.min_lon()),
        a.min_lat().max(b.min_lat()),
        a.max_lon().min(b.max_lon()),
        a.max_lat().min(b.max_lat()),
    )
    .ok()
}

/// How many tiles `plan` needs, checked against `budget`; `what` names the
/// listing in the error.
pub(crate) fn count_tiles(
    plan: &Plan,
    aoi: Option<&Aoi>,
    budget: u32,
    what: &str,
) -> Result<u64, TilesError> {
    plan_tiles(plan, aoi, u64::from(budget))
        .map(|t| t.len() as u64)
        .map_err(|upper| TilesError::OverBudget {
            what: what.to_string(),
            needed: format!("up to {upper}"),
            budget,
        })
}

/// The tiles a fetch will read, counted before anything is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TileNeeds {
    /// Tiles of the listing itself (`--enumerate tiles`), else 0.
    pub listing: u64,
    /// Tiles of `--audit`, else 0.
    pub audit: u64,
    /// For a search listing: the tiles `--enumerate tiles` would read
    /// (`Err(upper bound)` when more than the budget).
    pub if_tiles: Option<Result<u64, u64>>,
}

/// Counts the tiles a fetch needs and refuses a fetch that needs more than
/// `--tile-budget`.
pub(crate) fn check_budget(cfg: &FetchConfig) -> Result<TileNeeds, TilesError> {
    let budget = cfg.tiles.budget;
    let aoi = cfg.aoi.as_deref();
    let mut needs = TileNeeds::default();
    match cfg.request.enumerate {
        Enumerate::Tiles => {
            needs.listing = count_tiles(&cfg.plan, aoi, budget, "--enumerate tiles")?;
        }
        Enumerate::Search | Enumerate::Auto if cfg.dry_run => {
            needs.if_tiles =
                Some(plan_tiles(&cfg.plan, aoi, u64::from(budget)).map(|t| t.len() as u64));
        }
        Enumerate::Search | Enumerate::Auto => {}
    }
    if cfg.audit {
        needs.audit = super::audit::tiles_needed(&cfg.plan, aoi);
    }
    if needs.listing > 0 || cfg.audit {
        // One more for the preflight tile.
        let total = needs.listing + needs.audit + 1;
        if total > u64::from(budget) {
            return Err(TilesError::OverBudget {
                what: match (needs.listing > 0, cfg.audit) {
                    (true, true) => "--enumerate tiles with --audit".into(),
                    (true, false) => "--enumerate tiles".into(),
                    _ => "--audit".into(),
                },
                needed: total.to_string(),
                budget,
            });
        }
    }
    Ok(needs)
}

/// The tileset for a position choice.
pub(crate) fn tileset_for(position: PositionSource) -> Tileset {
    match position {
        PositionSource::Computed => Tileset::ComputedPublic,
        PositionSource::Original => Tileset::Public,
    }
}

/// Whether a tile's image passes the filters on what the tile carries
/// (capture time, panorama, organization). Creator is judged later on the
/// Graph object.
pub(crate) fn passes_tile_filters(f: &Filters, img: &TileImage) -> bool {
    if let Some(ms) = img.captured_at_ms
        && (f.since.is_some_and(|s| ms < s.timestamp_millis())
            || f.until.is_some_and(|u| ms > u.timestamp_millis()))
    {
        return false;
    }
    if !f.pano.keeps(img.is_pano) {
        return false;
    }
    if let Some(want) = &f.organization
        && img.organization_id.as_deref() != Some(want.as_str())
    {
        return false;
    }
    true
}

/// An image of a tile waiting for its Graph lookup.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    id: ImageId,
    /// Index of its tile in the tile list.
    tile: usize,
    /// The tile's (quantised) position.
    position: LonLat,
    /// Already missing from one answer.
    retried: bool,
}

enum Done {
    Tile {
        k: usize,
        result: Result<Option<DecodedTile>, String>,
        fatal: Option<ApiError>,
    },
    Batch {
        batch: Vec<Candidate>,
        result: Result<Vec<Box<serde_json::value::RawValue>>, ApiError>,
    },
}

/// Lists every grid of the selector's plan through vector tiles. Each kept
/// image goes to `sink` exactly once; one `GridListing` per grid, in order.
pub(crate) async fn list_plan_tiles(
    client: &Client,
    tiles: &TilesConfig,
    sel: &mut Selector<'_>,
    progress: &Arc<Progress>,
    cancel: &CancellationToken,
    mut sink: impl FnMut(Found),
) -> Result<Vec<GridListing>, ListError> {
    let plan = sel.plan();
    let n = plan.grids().len();
    let planned = plan_tiles(plan, sel.aoi(), u64::from(tiles.budget)).map_err(|upper| {
        ListError::Unsupported(
            TilesError::OverBudget {
                what: "the listing".into(),
                needed: format!("up to {upper}"),
                budget: tiles.budget,
            }
            .to_string(),
        )
    })?;
    let tileset = tileset_for(sel.position());
    let fields = fields_for(sel.size());
    let filters = sel.filters();

    let mut grids = vec![GridListing::default(); n];
    // Work left per grid: tiles not yet read, candidates not yet judged.
    let mut open_tiles = vec![0usize; n];
    let mut open_ids = vec![0usize; n];
    for t in &planned {
        for &gi in &t.grids {
            open_tiles[gi] += 1;
        }
    }
    progress.grids_total.store(n as u64, Ordering::Relaxed);
    let mut finished = vec![false; n];
    let mut finish = |gi: usize, grids: &mut [GridListing], ot: &[usize], oi: &[usize]| {
        if !finished[gi] && ot[gi] == 0 && oi[gi] == 0 {
            finished[gi] = true;
            grids[gi].completeness = completeness(&grids[gi]);
            progress.grids_listed.fetch_add(1, Ordering::Relaxed);
        }
    };
    for gi in 0..n {
        finish(gi, &mut grids, &open_tiles, &open_ids);
    }

    let mut next_tile = 0usize;
    let mut tiles_in_flight = 0usize;
    let mut batches_in_flight = 0usize;
    let mut pending: VecDeque<Candidate> = VecDeque::new();
    let mut queued: HashSet<ImageId> = HashSet::new();
    let mut in_flight: FuturesUnordered<BoxFuture<'_, Done>> = FuturesUnordered::new();
    let mut fatal: Option<ApiError> = None;
    let root = &tiles.base_url;

    // The grids an image at `p` of tile `k` may belong to.
    let candidates = |k: usize, p: LonLat| -> Vec<usize> {
        planned[k]
            .grids
            .iter()
            .copied()
            .filter(|&gi| {
                plan.grids()[gi]
                    .bbox
                    .expanded(POSITION_MARGIN_DEG)
                    .contains_closed(p)
            })
            .collect()
    };
    // Records a failure for the grids of tile `k`.
    let fail = |grids: &mut [GridListing], k: usize, gis: &[usize], reason: String| {
        let tb = planned[k].id.bbox();
        for &gi in gis {
            let gb = plan.grids()[gi].bbox;
            grids[gi].failed_boxes.push(FailedBox {
                bbox: intersection(&tb, &gb).unwrap_or(gb),
                reason: reason.clone(),
            });
        }
    };

    loop {
        while fatal.is_none() && !cancel.is_cancelled() {
            let tiles_to_come = next_tile < planned.len() || tiles_in_flight > 0;
            let batch_ready = pending.len() >= MAX_BATCH || (!pending.is_empty() && !tiles_to_come);
            if batch_ready && batches_in_flight < BATCH_CONCURRENCY {
                batches_in_flight += 1;
                let take = pending.len().min(MAX_BATCH);
                let batch: Vec<Candidate> = pending.drain(..take).collect();
                let fields = &fields;
                in_flight.push(Box::pin(async move {
                    let ids: Vec<ImageId> = batch.iter().map(|c| c.id).collect();
                    let result = client.images_by_ids(&ids, fields).await;
                    Done::Batch { batch, result }
                }));
            } else if next_tile < planned.len() && tiles_in_flight < TILES_CONCURRENCY {
                let k = next_tile;
                next_tile += 1;
                tiles_in_flight += 1;
                let t = planned[k].id;
                in_flight.push(Box::pin(async move {
                    match client.tile(root, tileset, t).await {
                        Ok(Some(body)) => {
                            let decoded = tokio::task::spawn_blocking(move || {
                                tmath::decode_image_layer(t, &body)
                            })
                            .await;
                            let result = match decoded {
                                Ok(Ok(d)) => Ok(Some(d)),
                                Ok(Err(e)) => Err(e.to_string()),
                                Err(e) => Err(format!("tile {t}: decoding stopped: {e}")),
                            };
                            Done::Tile {
                                k,
                                result,
                                fatal: None,
                            }
                        }
                        Ok(None) => Done::Tile {
                            k,
                            result: Ok(None),
                            fatal: None,
                        },
                        // A refused token, or the daily tile budget used up:
                        // every other tile would fail the same way.
                        Err(
                            e @ (ApiError::Auth { .. } | ApiError::Rejected { status: 429, .. }),
                        ) => Done::Tile {
                            k,
                            result: Err(e.to_string()),
                            fatal: Some(e),
                        },
                        Err(e) => Done::Tile {
                            k,
                            result: Err(format!("tile {t}: {e}")),
                            fatal: None,
                        },
                    }
                }));
            } else {
                break;
            }
        }
        let next = tokio::select! {
            n = in_flight.next() => n,
            () = cancel.cancelled(), if !in_flight.is_empty() => None,
        };
        let Some(done) = next else { break };
        match done {
            Done::Tile {
                k,
                result,
                fatal: f,
            } => {
                tiles_in_flight -= 1;
                if let Some(e) = f {
                    fatal.get_or_insert(e);
                }
                match result {
                    Ok(None) => {}
                    Ok(Some(decoded)) => {
                        progress
                            .malformed
                            .fetch_add(decoded.skipped(), Ordering::Relaxed);
                        // A tile crossed by sequences may hold no image: a
                        // missing `image` layer alone is not drift here.
                        if decoded.skipped() > 0 || decoded.bad_types > 0 {
                            let reason = format!(
                                "tile {} has an unexpected shape ({} unusable features, {} values of an unexpected type, image layer {})",
                                planned[k].id,
                                decoded.skipped(),
                                decoded.bad_types,
                                if decoded.missing_image_layer {
                                    "missing"
                                } else {
                                    "present"
                                }
                            );
                            fail(&mut grids, k, &planned[k].grids, reason);
                        }
                        for img in decoded.images {
                            let Some(id) = ImageId::new(img.id) else {
                                continue;
                            };
                            if !passes_tile_filters(filters, &img) {
                                continue;
                            }
                            let Some(&first) = candidates(k, img.position).first() else {
                                continue;
                            };
                            if !queued.insert(id) {
                                continue;
                            }
                            open_ids[first] += 1;
                            pending.push_back(Candidate {
                                id,
                                tile: k,
                                position: img.position,
                                retried: false,
                            });
                        }
                    }
                    Err(reason) => fail(&mut grids, k, &planned[k].grids, reason),
                }
                for &gi in &planned[k].grids {
                    open_tiles[gi] -= 1;
                    finish(gi, &mut grids, &open_tiles, &open_ids);
                }
            }
            Done::Batch { batch, result } => {
                batches_in_flight -= 1;
                // Kept as JSON text: the full object is built only for the
                // grid that keeps the image (`Selector::accept_json`).
                let mut objects: HashMap<ImageId, Box<RawValue>> = HashMap::new();
                let mut failed: Result<(), ApiError> = Ok(());
                match result {
                    Ok(items) => {
                        for item in items {
                            match ImageRecord::from_slice(item.get().as_bytes()) {
                                Ok(r) => {
                                    objects.insert(r.id, item);
                                }
                                Err(_) => {
                                    progress.malformed.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                    Err(e @ ApiError::Auth { .. }) => {
                        fatal.get_or_insert(e.clone());
                        failed = Err(e);
                    }
                    Err(e) => failed = Err(e),
                }
                // Failures grouped by tile, so one bad batch is a few entries.
                let mut lost: HashMap<usize, (Vec<ImageId>, Vec<usize>)> = HashMap::new();
                let mut touched: Vec<usize> = Vec::new();
                for c in batch {
                    let cands = candidates(c.tile, c.position);
                    let first = cands[0];
                    push_grid(&mut touched, first);
                    let gone = if failed.is_err() {
                        true
                    } else if let Some(object) = objects.remove(&c.id) {
                        accept_any(
                            sel,
                            plan,
                            &cands,
                            object.get(),
                            &mut grids,
                            progress,
                            &mut sink,
                        );
                        false
                    } else if !c.retried {
                        // Asked once more, in a later batch, before it counts as lost.
                        open_ids[first] += 1;
                        pending.push_back(Candidate { retried: true, ..c });
                        false
                    } else {
                        true
                    };
                    if gone {
                        let e = lost.entry(c.tile).or_default();
                        e.0.push(c.id);
                        for gi in cands {
                            push_grid(&mut e.1, gi);
                        }
                    }
                    open_ids[first] -= 1;
                }
                let mut lost: Vec<_> = lost.into_iter().collect();
                lost.sort_unstable_by_key(|(k, _)| *k);
                for (k, (ids, gis)) in lost {
                    let mut quoted: Vec<String> = ids
                        .iter()
                        .take(QUOTED_IDS)
                        .map(ToString::to_string)
                        .collect();
                    if ids.len() > QUOTED_IDS {
                        quoted.push("...".into());
                    }
                    let reason = match &failed {
                        Err(e) => format!(
                            "image_ids lookup of {} images of tile {} failed: {e}",
                            ids.len(),
                            planned[k].id
                        ),
                        Ok(()) => format!(
                            "{} images of tile {} are missing from the Graph API's image_ids answer: {}",
                            ids.len(),
                            planned[k].id,
                            quoted.join(", ")
                        ),
                    };
                    fail(&mut grids, k, &gis, reason);
                }
                for gi in touched {
                    finish(gi, &mut grids, &open_tiles, &open_ids);
                }
            }
        }
    }
    if let Some(e) = fatal {
        return Err(ListError::Fatal(e));
    }
    if cancel.is_cancelled() {
        return Err(ListError::Interrupted);
    }
    for g in &mut grids {
        if g.completeness == Completeness::Pending {
            g.completeness = completeness(g);
        }
    }
    Ok(grids)
}

/// Offers an object to each candidate grid until one keeps it (the
/// `Selector` keeps it only for the grid owning its exact position).
fn accept_any(
    sel: &mut Selector<'_>,
    plan: &Plan,
    cands: &[usize],
    json: &str,
    grids: &mut [GridListing],
    progress: &Progress,
    sink: &mut impl FnMut(Found),
) {
    for &gi in cands {
        let b = plan.grids()[gi].bbox;
        if let Some(found) = sel.accept_json(gi, &b, json) {
            grids[gi].listed += 1;
            progress.listed.fetch_add(1, Ordering::Relaxed);
            sink(found);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PanoFilter;
    use crate::plan;

    fn bbox(a: f64, b: f64, c: f64, d: f64) -> Bbox {
        Bbox::new(a, b, c, d).unwrap()
    }

    #[test]
    fn each_tile_once_with_every_grid_near_it() {
        // Two grids side by side inside one tile's column: shared tiles are read once.
        let area = bbox(2.33, 48.85, 2.37, 48.87);
        let grids = plan::cut(&area, 2, 1).unwrap();
        let p = Plan::new(grids).unwrap();
        let tiles = plan_tiles(&p, None, 1000).unwrap();
        let whole = tmath::covering(&area, 14).count();
        assert_eq!(tiles.len() as u64, whole);
        let ids: HashSet<TileId> = tiles.iter().map(|t| t.id).collect();
        assert_eq!(ids.len(), tiles.len());
        // The tile holding the shared edge (lon 2.35) serves both grids.
        let edge = TileId::of(LonLat::new(2.35, 48.86).unwrap(), 14);
        let t = tiles.iter().find(|t| t.id == edge).unwrap();
        assert_eq!(t.grids, vec![0, 1]);
        // Over the limit: the count stops and reports an upper bound (the
        // sum over grids, shared tiles counted for each).
        let upper: u64 = p
            .grids()
            .iter()
            .map(|g| tmath::covering(&g.bbox, 14).count())
            .sum();
        assert!(upper > whole);
        assert_eq!(plan_tiles(&p, None, 2), Err(upper));
        let e = count_tiles(&p, None, 2, "--enumerate tiles").unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "--enumerate tiles needs up to {upper} vector tiles, more than --tile-budget 2; use a smaller area, a larger --tile-budget (the API allows 50,000 a day per token) or --enumerate search"
            )
        );
        assert_eq!(count_tiles(&p, None, 1000, "x"), Ok(whole));
    }

    #[test]
    fn tiles_outside_the_aoi_are_not_read() {
        // A triangle over the west part of an area four tiles wide.
        let area = bbox(2.30, 48.85, 2.39, 48.86);
        let p = Plan::single(area);
        let all = plan_tiles(&p, None, 1000).unwrap();
        let tri = geo::MultiPolygon(vec![geo::Polygon::new(
            geo::LineString::from(vec![
                (2.30, 48.85),
                (2.32, 48.85),
                (2.30, 48.86),
                (2.30, 48.85),
            ]),
            vec![],
        )]);
        let aoi = Aoi::new(tri, "test".into()).unwrap();
        let some = plan_tiles(&p, Some(&aoi), 1000).unwrap();
        assert!(
            !some.is_empty() && some.len() < all.len(),
            "{} of {}",
            some.len(),
            all.len()
        );
        for t in &some {
            assert!(aoi.intersects_box(&t.id.bbox()), "{}", t.id);
        }
        let east = TileId::of(LonLat::new(2.385, 48.855).unwrap(), 14);
        assert!(some.iter().all(|t| t.id != east));
    }

    #[test]
    fn tile_filters() {
        let f = Filters {
            since: Some("2020-01-01T00:00:00Z".parse().unwrap()),
            until: Some("2021-01-01T00:00:00Z".parse().unwrap()),
            pano: PanoFilter::Exclude,
            creator: None,
            organization: Some("77".into()),
            max_images: None,
        };
        let img = |ms: i64, pano: bool, org: Option<&str>| TileImage {
            id: 1,
            position: LonLat::new(0.0, 0.0).unwrap(),
            captured_at_ms: Some(ms),
            is_pano: Some(pano),
            organization_id: org.map(String::from),
            sequence_id: None,
        };
        let mid = 1_590_000_000_000 + 10_000_000_000; // 2020-08
        assert!(passes_tile_filters(&f, &img(mid, false, Some("77"))));
        assert!(!passes_tile_filters(
            &f,
            &img(1_500_000_000_000, false, Some("77"))
        ));
        assert!(!passes_tile_filters(
            &f,
            &img(1_700_000_000_000, false, Some("77"))
        ));
        assert!(!passes_tile_filters(&f, &img(mid, true, Some("77"))));
        assert!(!passes_tile_filters(&f, &img(mid, false, Some("78"))));
        assert!(!passes_tile_filters(&f, &img(mid, false, None)));
    }

    #[test]
    fn intersections() {
        let a = bbox(0.0, 0.0, 2.0, 2.0);
        assert_eq!(
            intersection(&a, &bbox(1.0, 1.0, 3.0, 3.0)),
            Some(bbox(1.0, 1.0, 2.0, 2.0))
        );
        assert_eq!(intersection(&a, &bbox(2.0, 0.0, 3.0, 1.0)), None);
    }
}
