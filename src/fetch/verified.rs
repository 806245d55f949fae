//! The verified listing (`--enumerate auto`, the default): a census of the
//! z14 vector tiles gives every image's id and position; searches are planned
//! from those counts (boxes packed to a target well under any cap reported);
//! every id the tiles list that no search returned is looked up by id
//! (`image_ids` batches, then one entity call each); images only the searches
//! returned are kept too. So the listing is the union of both sides and does
//! not depend on the cap, on which position the bbox filter uses, or on the
//! order of results. A grid is `verified` when its tiles read cleanly, every
//! box was answered and every tile id was resolved. Network through
//! `api::Client` only; no files, no printing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::stream::{self, StreamExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::gridindex::PointIndex;
use super::listing::{Found, GridListing, ListError, Selector, fields_for, search_query};
use super::pack;
use super::progress::Progress;
use super::search::{BoxJob, Searcher};
use super::tiles::{POSITION_MARGIN_DEG, PlannedTile, passes_tile_filters, tileset_for};
use crate::api::TilesConfig;
use crate::api::tiles::MAX_BATCH;
use crate::api::{ApiError, Client, SearchQuery};
use crate::model::{Bbox, ImageId, LonLat};
use crate::runrecord::{Completeness, Filters, Verification};
use crate::tiles::{self as tmath, DecodedTile, TileId};

/// Tile reads and lookups in flight at once.
const CONCURRENCY: usize = 8;
/// Tiles decoded at once (decoding is CPU work; bounded memory per tile).
const DECODING: usize = 2;
/// Tile images this far (degrees) around a grid are counted: more than the
/// outer search margin ([`pack::OUTER_MARGIN_M`]) at any latitude up to 80°.
const COUNT_MARGIN_DEG: f64 = 0.006;

/// What the tiles say the area holds.
#[derive(Debug, Default)]
pub(crate) struct Census {
    /// Every tile image that passes the filters the tiles carry, in (or
    /// within a tile unit of) a grid: what the listing must hold.
    pub ids: Vec<ImageId>,
    /// Their positions, and those of the images within the outer search
    /// margin around the grids: what the search boxes will return.
    pub points: Vec<LonLat>,
    /// Every id the tiles list that passes their filters (each tile image is
    /// taken once by it): an answer's images the tiles know.
    pub tile_ids: HashSet<ImageId>,
    /// The grid each point most likely belongs to (by its tile position).
    pub grid_of: Vec<usize>,
    /// Per grid: why its tiles cannot verify it (a tile failed or drifted).
    pub unverifiable: Vec<Option<String>>,
    /// Per grid: tile features or values with an unexpected shape.
    pub drift: Vec<u64>,
    /// Tiles with no `image` layer or no layer at all, and their grids: a
    /// tile crossed by sequences may hold no image and an empty place gives
    /// an empty tile, so this is drift only if a search finds images inside
    /// such a tile.
    pub suspect: HashMap<TileId, Vec<usize>>,
}

/// What a verified listing needs besides the selector.
pub(crate) struct VerifiedPlan<'a> {
    pub tiles: &'a TilesConfig,
    /// The z14 tiles covering the plan (counted against the budget by the caller).
    pub planned: &'a [PlannedTile],
    /// The most known images one search box is planned to hold.
    pub target: usize,
    /// The API's documented cap (the `limit` asked).
    pub cap: u32,
}

/// Lists the selector's plan by a verified listing; each kept image goes to
/// `sink` once. One `GridListing` per grid, in plan order.
pub(crate) async fn list_verified(
    client: &Client,
    vp: &VerifiedPlan<'_>,
    sel: &mut Selector<'_>,
    progress: &Arc<Progress>,
    cancel: &CancellationToken,
    mut sink: impl FnMut(Found),
) -> Result<Vec<GridListing>, ListError> {
    let n = sel.plan().grids().len();
    progress.grids_total.store(n as u64, Ordering::Relaxed);
    let mut census = read_census(client, vp.tiles, sel, vp.planned, cancel).await?;
    let tile_ids = std::mem::take(&mut census.tile_ids);
    let target = vp.target;
    let index = PointIndex::new(&census.points);
    let jobs = plan_boxes(sel, &census, &index, target);
    let known: HashSet<ImageId> = census.ids.iter().copied().collect();
    let mut tally = Tally::new(n);
    let query = verified_query(sel, vp.cap);
    let fields = fields_for(sel.size());
    let split_at = super::listing::split_threshold(vp.cap);
    let mut searcher =
        Searcher::new(client, sel, query, split_at, progress).with_points(&index, &tile_ids);
    searcher.mark_empty_grids(&jobs);
    let suspect = std::mem::take(&mut census.suspect);
    let position = searcher.selector().position();
    let hits: std::cell::RefCell<HashSet<TileId>> = Default::default();
    let mut watch = |f: Found| {
        if !known.contains(&f.id) {
            tally.only_in_search[f.grid] += 1;
            let tile = f
                .record
                .position(position)
                .map(|(p, _)| TileId::of(p, tmath::IMAGE_ZOOM));
            if let Some(t) = tile.filter(|t| suspect.contains_key(t)) {
                hits.borrow_mut().insert(t);
            }
        }
        sink(f)
    };
    searcher.run(jobs, cancel, &mut watch).await?;
    let again = drifted_grids(&mut census, &suspect, &hits.borrow());
    if !again.is_empty() {
        // Those grids were planned from tiles that lost their images: list
        // them again by searches alone, split by answer size.
        let jobs = search_only_jobs(searcher.selector(), &again);
        searcher.run(jobs, cancel, &mut watch).await?;
    }
    let missing = census.missing(&searcher.returned);
    reconcile(
        client,
        searcher.selector(),
        &fields,
        missing,
        &mut tally,
        progress,
        cancel,
        &mut sink,
    )
    .await?;
    let from_search = searcher.from_search.clone();
    let grids = searcher.finish();
    Ok(assemble(grids, &census, &tally, &from_search))
}

/// The searches of a verified listing: not filtered by creator (the tiles
/// cannot tell, so the creator is filtered on the client).
fn verified_query(sel: &Selector<'_>, cap: u32) -> SearchQuery {
    let mut filters: Filters = sel.filters().clone();
    filters.creator = None;
    search_query(&filters, sel.size(), cap)
}

/// The search-only boxes of the grids in `grids`.
fn search_only_jobs(sel: &Selector<'_>, grids: &HashSet<usize>) -> Vec<BoxJob> {
    BoxJob::search_only(sel.plan(), sel.aoi(), sel.index())
        .into_iter()
        .filter(|j| grids.contains(&j.grid))
        .collect()
}

impl Census {
    /// The ids the tiles list that no search returned, with their grid.
    fn missing(&self, returned: &HashSet<ImageId>) -> Vec<(ImageId, usize)> {
        self.ids
            .iter()
            .zip(&self.grid_of)
            .filter(|(id, _)| !returned.contains(id))
            .map(|(id, g)| (*id, *g))
            .collect()
    }
}

/// Per-grid counts of the reconciliation.
struct Tally {
    reconciled: Vec<u64>,
    only_in_search: Vec<u64>,
    not_in_graph: Vec<u64>,
    unresolved: Vec<Vec<String>>,
}

impl Tally {
    fn new(n: usize) -> Self {
        Tally {
            reconciled: vec![0; n],
            only_in_search: vec![0; n],
            not_in_graph: vec![0; n],
            unresolved: vec![Vec::new(); n],
        }
    }
}

/// Reads every planned tile and keeps the images that pass the tile filters
/// and lie near a grid (and the AOI). A tile that fails, or whose shape has
/// drifted, leaves its grids unverifiable; a refused token ends the listing.
async fn read_census(
    client: &Client,
    tiles: &TilesConfig,
    sel: &Selector<'_>,
    planned: &[PlannedTile],
    cancel: &CancellationToken,
) -> Result<Census, ListError> {
    let n = sel.plan().grids().len();
    let mut census = Census {
        unverifiable: vec![None; n],
        drift: vec![0; n],
        ..Census::default()
    };
    let tileset = tileset_for(sel.position());
    let decoding = Semaphore::new(DECODING);
    let reads = stream::iter(planned.iter().enumerate())
        .map(|(k, t)| {
            let decoding = &decoding;
            async move { (k, read_tile(client, tiles, tileset, t.id, decoding).await) }
        })
        .buffer_unordered(CONCURRENCY);
    tokio::pin!(reads);
    loop {
        let next = tokio::select! {
            r = reads.next() => r,
            () = cancel.cancelled() => return Err(ListError::Interrupted),
        };
        let Some((k, result)) = next else { break };
        let t = &planned[k];
        match result {
            Ok(decoded) => add_tile(&mut census, sel, t, decoded),
            Err(e @ ApiError::Auth { .. }) => return Err(ListError::Fatal(e)),
            Err(e) => mark(&mut census, t, format!("tile {}: {e}", t.id)),
        }
    }
    Ok(census)
}

async fn read_tile(
    client: &Client,
    tiles: &TilesConfig,
    tileset: crate::api::tiles::Tileset,
    t: TileId,
    decoding: &Semaphore,
) -> Result<DecodedTile, ApiError> {
    let Some(body) = client.tile(&tiles.base_url, tileset, t).await? else {
        // No tile (404, 204) is an empty tile: suspect if a search finds images in it.
        return Ok(DecodedTile::empty());
    };
    let _permit = decoding
        .acquire()
        .await
        .map_err(|e| ApiError::Body(e.to_string()))?;
    tokio::task::spawn_blocking(move || tmath::decode_image_layer(t, &body))
        .await
        .map_err(|e| ApiError::Body(format!("tile {t}: decoding stopped: {e}")))?
        .map_err(|e| ApiError::Body(e.to_string()))
}

/// Marks the grids of tile `t` unverifiable (the first reason is kept).
fn mark(census: &mut Census, t: &PlannedTile, reason: String) {
    for &gi in &t.grids {
        census.unverifiable[gi].get_or_insert_with(|| reason.clone());
    }
}

fn add_tile(census: &mut Census, sel: &Selector<'_>, t: &PlannedTile, d: DecodedTile) {
    if (d.missing_image_layer || d.empty) && d.skipped() == 0 && d.bad_types == 0 {
        census.suspect.insert(t.id, t.grids.clone());
    } else if d.drifted() {
        let drift = d.skipped() + d.bad_types + u64::from(d.missing_image_layer);
        for &gi in &t.grids {
            census.drift[gi] += drift;
        }
        mark(census, t, drift_reason(t.id, &d));
    }
    let plan = sel.plan();
    for img in d.images {
        let Some(id) = ImageId::new(img.id) else {
            continue;
        };
        if !passes_tile_filters(sel.filters(), &img) || !census.tile_ids.insert(id) {
            continue;
        }
        let p = img.position;
        let within = |gi: usize, deg: f64| plan.grids()[gi].bbox.expanded(deg).contains_closed(p);
        if !t.grids.iter().any(|&gi| within(gi, COUNT_MARGIN_DEG)) {
            continue;
        }
        census.points.push(p);
        let Some(&gi) = t.grids.iter().find(|&&gi| within(gi, POSITION_MARGIN_DEG)) else {
            continue;
        };
        let around = Bbox::new(p.lon, p.lat, p.lon, p.lat).map(|b| b.expanded(POSITION_MARGIN_DEG));
        if sel
            .aoi()
            .is_some_and(|a| around.is_ok_and(|b| !a.intersects_box(&b)))
        {
            continue;
        }
        census.ids.push(id);
        census
            .grid_of
            .push(sel.index().owner(plan, p).unwrap_or(gi));
    }
}

fn drift_reason(t: TileId, d: &DecodedTile) -> String {
    let mut parts = Vec::new();
    if d.missing_image_layer {
        parts.push("no `image` layer".to_string());
    }
    if d.bad_ids > 0 {
        parts.push(format!("{} features without a usable image id", d.bad_ids));
    }
    if d.bad_geometry > 0 {
        parts.push(format!("{} features without a point", d.bad_geometry));
    }
    if d.bad_types > 0 {
        parts.push(format!("{} properties of an unexpected type", d.bad_types));
    }
    format!("tile {t} has an unexpected shape: {}", parts.join(", "))
}

/// Marks the grids of suspect tiles (empty, or no `image` layer) inside which the
/// searches found images: the tiles drifted there. Returns those grids.
fn drifted_grids(
    census: &mut Census,
    suspect: &HashMap<TileId, Vec<usize>>,
    hits: &HashSet<TileId>,
) -> HashSet<usize> {
    let mut grids = HashSet::new();
    for t in hits {
        let Some(gis) = suspect.get(t) else { continue };
        let reason = format!(
            "tile {t} has an unexpected shape: it read as empty or without an `image` layer, but the \
             searches found images in it"
        );
        for &gi in gis {
            census.drift[gi] += 1;
            if census.unverifiable[gi].is_none() {
                census.unverifiable[gi] = Some(reason.clone());
                grids.insert(gi);
            }
        }
    }
    grids
}

/// Search boxes: each grid's boxes packed from the census counts; a grid the
/// tiles cannot verify gets search-only boxes (split by answer size).
fn plan_boxes(
    sel: &Selector<'_>,
    census: &Census,
    index: &PointIndex,
    target: usize,
) -> Vec<BoxJob> {
    let mut search_only: BTreeMap<usize, Vec<BoxJob>> = BTreeMap::new();
    for job in BoxJob::search_only(sel.plan(), sel.aoi(), sel.index()) {
        search_only.entry(job.grid).or_default().push(job);
    }
    let mut jobs = Vec::new();
    for job in BoxJob::initial(sel.plan(), sel.aoi(), sel.index()) {
        if census.unverifiable[job.grid].is_some() {
            // Its search-only boxes, once, in its place.
            jobs.extend(search_only.remove(&job.grid).unwrap_or_default());
            continue;
        }
        let m = job.margin();
        for sb in pack::pack(job.sb, &index.within(&job.sb.asked(m)), target, m) {
            let expected = Some(index.count(&sb.asked(m)));
            jobs.push(BoxJob {
                sb,
                expected,
                ..job
            });
        }
    }
    jobs
}

/// Looks up the ids the tiles list and no search returned: `image_ids`
/// batches, then one entity call for each id a batch did not answer (the
/// Graph's word on whether it exists).
#[allow(clippy::too_many_arguments)]
async fn reconcile(
    client: &Client,
    sel: &mut Selector<'_>,
    fields: &str,
    missing: Vec<(ImageId, usize)>,
    tally: &mut Tally,
    progress: &Progress,
    cancel: &CancellationToken,
    sink: &mut impl FnMut(Found),
) -> Result<(), ListError> {
    let grid_of: HashMap<ImageId, usize> = missing.iter().copied().collect();
    let ids: Vec<ImageId> = missing.iter().map(|(id, _)| *id).collect();
    let batches = stream::iter(ids.chunks(MAX_BATCH))
        .map(|chunk| async move { (chunk, client.images_by_ids(chunk, fields).await) })
        .buffer_unordered(CONCURRENCY);
    tokio::pin!(batches);
    let mut unanswered: Vec<ImageId> = Vec::new();
    while let Some((chunk, result)) = next_or_cancel(&mut batches, cancel).await? {
        let items = match result {
            Ok(items) => items,
            Err(e @ ApiError::Auth { .. }) => return Err(ListError::Fatal(e)),
            Err(_) => Vec::new(),
        };
        let mut answered = HashSet::new();
        for item in items {
            let Some(id) = take(sel, &grid_of, item.get(), tally, progress, sink) else {
                continue;
            };
            answered.insert(id);
        }
        unanswered.extend(chunk.iter().filter(|id| !answered.contains(id)));
    }
    let lookups = stream::iter(unanswered)
        .map(|id| async move { (id, client.image(id, fields).await) })
        .buffer_unordered(CONCURRENCY);
    tokio::pin!(lookups);
    while let Some((id, result)) = next_or_cancel(&mut lookups, cancel).await? {
        let gi = grid_of[&id];
        match result {
            Ok(map) => {
                let json = serde_json::Value::Object(map).to_string();
                if take(sel, &grid_of, &json, tally, progress, sink) != Some(id) {
                    // Not this image's record (no id, another id, unreadable):
                    // never dropped unseen.
                    let why = "the answer is not a record of this image";
                    tally.unresolved[gi].push(format!("{id}: {why}"));
                }
            }
            Err(ApiError::NotFound { .. }) => tally.not_in_graph[gi] += 1,
            Err(e @ ApiError::Auth { .. }) => return Err(ListError::Fatal(e)),
            Err(e) => tally.unresolved[gi].push(format!("{id}: {e}")),
        }
    }
    Ok(())
}

async fn next_or_cancel<S: futures::Stream + Unpin>(
    s: &mut S,
    cancel: &CancellationToken,
) -> Result<Option<S::Item>, ListError> {
    tokio::select! {
        n = s.next() => Ok(n),
        () = cancel.cancelled() => Err(ListError::Interrupted),
    }
}

/// Offers one looked-up object to the selector; returns its id when it was
/// one of the ids asked for.
fn take(
    sel: &mut Selector<'_>,
    grid_of: &HashMap<ImageId, usize>,
    json: &str,
    tally: &mut Tally,
    progress: &Progress,
    sink: &mut impl FnMut(Found),
) -> Option<ImageId> {
    let probe = crate::record::ImageRecord::from_slice(json.as_bytes()).ok()?;
    let &gi = grid_of.get(&probe.id)?;
    let v = sel.accept(gi, json);
    if let Some(found) = v.found {
        tally.reconciled[found.grid] += 1;
        progress.listed.fetch_add(1, Ordering::Relaxed);
        sink(found);
    }
    v.id
}

/// Each grid's listing with its verification.
fn assemble(
    mut grids: Vec<GridListing>,
    census: &Census,
    tally: &Tally,
    from_search: &[u64],
) -> Vec<GridListing> {
    let mut tile_points = vec![0u64; grids.len()];
    for &gi in &census.grid_of {
        tile_points[gi] += 1;
    }
    for (gi, g) in grids.iter_mut().enumerate() {
        g.listed += tally.reconciled[gi];
        let why =
            not_verified_because(g, census.unverifiable[gi].as_deref(), &tally.unresolved[gi]);
        if why.is_none() {
            g.completeness = Completeness::Verified;
        } else if !tally.unresolved[gi].is_empty() {
            g.completeness = Completeness::Failed;
        }
        g.verification = Some(Verification {
            tile_points: tile_points[gi],
            searches: g.search_calls,
            from_search: from_search[gi],
            reconciled: tally.reconciled[gi],
            only_in_search: tally.only_in_search[gi],
            not_in_graph: tally.not_in_graph[gi],
            tile_drift: census.drift[gi],
            not_verified_because: why,
        });
    }
    grids
}

fn not_verified_because(
    g: &GridListing,
    tiles: Option<&str>,
    unresolved: &[String],
) -> Option<String> {
    if let Some(t) = tiles {
        return Some(format!("{t}; listed by searches alone"));
    }
    if let Some(b) = g.failed_boxes.first() {
        return Some(format!(
            "{} search boxes failed (first: {})",
            g.failed_boxes.len(),
            b.reason
        ));
    }
    if let Some(b) = g.truncated_boxes.first() {
        return Some(format!(
            "{} search boxes were still cut at the smallest size (first: {b}); images only a search sees may be missing",
            g.truncated_boxes.len()
        ));
    }
    if let Some(first) = unresolved.first() {
        return Some(format!(
            "{} tile ids could not be looked up (first: {first})",
            unresolved.len()
        ));
    }
    None
}
