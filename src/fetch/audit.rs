//! `fetch --audit`: lists a deterministic sample of small boxes both ways
//! (bbox search with splitting, and vector tiles) and reports, per box, the
//! images only one way found. Each listing uses its own `Selector`, so the
//! main listing and the downloads are untouched. Network through `search`
//! and `tiles`; the caller writes `audit.json` and prints the summary.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::listing::{self, ListError, Selector};
use super::progress::Progress;
use super::tiles::{self, PlannedTile, tileset_for};
use super::{search, tilelister};
use crate::aoi::Aoi;
use crate::api::Client;
use crate::api::TilesConfig;
use crate::model::{Bbox, PositionSource, ThumbSize};
use crate::plan::Plan;
use crate::runrecord::{Completeness, Filters};

/// Version of the audit layout (`schemas/audit.schema.json`).
pub(crate) const AUDIT_SCHEMA_VERSION: u32 = 1;
/// Most boxes audited.
pub(crate) const MAX_BOXES: usize = 8;
/// Largest side of an audited box, degrees.
pub(crate) const BOX_SIDE_DEG: f64 = 0.005;

/// The whole audit, as written to `audit.json`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AuditReport {
    pub schema_version: u32,
    pub tool: String,
    pub created_at: DateTime<Utc>,
    /// The position that places images (`original` or `computed`).
    pub position: PositionSource,
    /// The tileset the tiles side read.
    pub tileset: String,
    pub boxes: Vec<AuditBox>,
    pub totals: AuditTotals,
    /// How to read the figures.
    pub notes: Vec<String>,
}

/// Sums over every audited box.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AuditTotals {
    pub boxes: u64,
    pub boxes_with_differences: u64,
    pub only_search: u64,
    pub only_tiles: u64,
    pub search_without_position: u64,
    pub search_without_computed_position: u64,
    pub search_calls: u64,
    pub tile_calls: u64,
    pub batch_calls: u64,
}

/// One audited box.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AuditBox {
    /// The grid the box lies in.
    pub grid: String,
    pub bbox: Bbox,
    pub search: AuditSide,
    pub tiles: AuditSide,
    /// Ids (sorted) found by search and not by tiles, excluding the two
    /// kinds tiles cannot hold (below).
    pub only_search: Vec<String>,
    /// Ids (sorted) found by tiles and not by search.
    pub only_tiles: Vec<String>,
    /// Ids search returned without any position: tiles cannot hold them.
    pub search_without_position: Vec<String>,
    /// With `--position computed`: ids search placed by their original
    /// position because they have no computed one; the computed tiles leave them out.
    pub search_without_computed_position: Vec<String>,
}

/// How one way of listing a box went.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AuditSide {
    pub listed: u64,
    pub completeness: Completeness,
    pub calls: u64,
    /// Why the listing stopped, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The one-line view of an audit for the summary.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditSummary {
    pub totals: AuditTotals,
}

/// Up to [`MAX_BOXES`] boxes of at most [`BOX_SIDE_DEG`] a side, spread
/// over the grids: evenly chosen grids, and in each, the centres of an
/// even split of the grid. Deterministic; boxes outside the AOI are left out.
pub(crate) fn sample_boxes(plan: &Plan, aoi: Option<&Aoi>) -> Vec<(usize, Bbox)> {
    let wanted = |b: &Bbox| aoi.is_none_or(|a| a.intersects_box(b));
    let eligible: Vec<usize> = (0..plan.grids().len())
        .filter(|&i| wanted(&plan.grids()[i].bbox))
        .collect();
    if eligible.is_empty() {
        return Vec::new();
    }
    let picked: Vec<usize> = if eligible.len() <= MAX_BOXES {
        eligible.clone()
    } else {
        (0..MAX_BOXES)
            .map(|i| eligible[i * eligible.len() / MAX_BOXES])
            .collect()
    };
    let per_grid = MAX_BOXES.div_ceil(picked.len());
    let mut out = Vec::new();
    for gi in picked {
        let g = plan.grids()[gi].bbox;
        let side_n = (per_grid as f64).sqrt().ceil() as usize;
        let (cw, ch) = (g.width() / side_n as f64, g.height() / side_n as f64);
        let side = BOX_SIDE_DEG.min(cw).min(ch);
        // Sub-cells along the diagonal first, then the rest, row by row.
        let mut cells: Vec<(usize, usize)> = (0..side_n).map(|i| (i, i)).collect();
        for r in 0..side_n {
            for c in 0..side_n {
                if r != c {
                    cells.push((c, r));
                }
            }
        }
        for (c, r) in cells.into_iter().take(per_grid) {
            let cx = g.min_lon() + cw * (c as f64 + 0.5);
            let cy = g.min_lat() + ch * (r as f64 + 0.5);
            let b = Bbox::new(
                cx - side / 2.0,
                cy - side / 2.0,
                cx + side / 2.0,
                cy + side / 2.0,
            );
            if let Ok(b) = b
                && wanted(&b)
                && out.len() < MAX_BOXES
            {
                out.push((gi, b));
            }
        }
    }
    out
}

/// The audit's boxes, each with the z14 tiles it will read: planned once,
/// counted against the budget, then listed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AuditPlan {
    boxes: Vec<AuditTarget>,
}

/// One sampled box: its grid (index), its bbox and its tiles.
#[derive(Debug, Clone, PartialEq)]
struct AuditTarget {
    grid: usize,
    bbox: Bbox,
    tiles: Vec<PlannedTile>,
}

impl AuditPlan {
    /// The sampled boxes of `plan` ([`sample_boxes`]) and their tiles.
    pub(crate) fn new(plan: &Plan, aoi: Option<&Aoi>) -> Self {
        let boxes = sample_boxes(plan, aoi)
            .into_iter()
            .map(|(grid, bbox)| AuditTarget {
                grid,
                bbox,
                tiles: tiles::plan_tiles(&Plan::single(bbox), aoi, u64::MAX).unwrap_or_default(),
            })
            .collect();
        AuditPlan { boxes }
    }

    /// The z14 tiles the audit will read, for the budget check.
    pub(crate) fn tiles(&self) -> u64 {
        self.boxes.iter().map(|b| b.tiles.len() as u64).sum()
    }
}

/// What the audit needs besides the client.
pub(crate) struct AuditInput<'a> {
    pub plan: &'a Plan,
    pub aoi: Option<&'a Aoi>,
    pub filters: &'a Filters,
    pub size: ThumbSize,
    pub position: PositionSource,
    pub search_cap: u32,
    pub tiles: &'a TilesConfig,
}

/// Lists every sampled box both ways and compares. Listing errors are kept
/// per box; only an interruption stops the audit.
pub(crate) async fn run(
    client: &Client,
    input: &AuditInput<'_>,
    planned: &AuditPlan,
    cancel: &CancellationToken,
) -> Result<AuditReport, ListError> {
    let mut boxes = Vec::new();
    let mut totals = AuditTotals::default();
    for target in &planned.boxes {
        let plan = Plan::single(target.bbox);
        let (search, found) = search_side(client, input, &plan, cancel).await?;
        let (tiles, tile_ids, calls) = tiles_side(client, input, target, cancel).await?;
        let grid = input.plan.grids()[target.grid].id.to_string();
        let b = compare(grid, target.bbox, (search, found), (tiles, tile_ids));
        totals.add(&b, calls);
        boxes.push(b);
    }
    Ok(AuditReport {
        schema_version: AUDIT_SCHEMA_VERSION,
        tool: "mlyexport".into(),
        created_at: Utc::now(),
        position: input.position,
        tileset: tileset_for(input.position).name().into(),
        boxes,
        totals,
        notes: vec![
            "each box is listed twice with the run's filters: by bbox search (split at the cap) and by z14 vector tiles then image_ids lookups".into(),
            "only_search and only_tiles are images one way found and the other missed; a box whose search listing is truncated or failed may miss images".into(),
            "search_without_position: images search returns without any coordinates; tiles cannot hold them, so they are not counted as missed".into(),
            "search_without_computed_position: with --position computed, images without a computed position; the computed tiles leave them out by design".into(),
        ],
    })
}

/// The ids one box's search listing found, in three kinds.
#[derive(Debug, Default)]
struct SearchIds {
    /// Images the tiles can hold.
    placed: BTreeSet<u64>,
    /// Images without any position.
    no_position: BTreeSet<u64>,
    /// With `--position computed`: images without a computed position.
    no_computed: BTreeSet<u64>,
}

/// Lists one box by bbox searches alone.
async fn search_side(
    client: &Client,
    input: &AuditInput<'_>,
    plan: &Plan,
    cancel: &CancellationToken,
) -> Result<(AuditSide, SearchIds), ListError> {
    let stats = client.stats();
    let progress = Arc::new(Progress::default());
    let mut sel = Selector::new(plan, input.filters, input.size, input.position, input.aoi);
    let mut ids = SearchIds::default();
    let before = stats.search_calls.load(Ordering::Relaxed);
    let sink = |f: listing::Found| {
        let id = f.id.get();
        if f.record.original_position.is_none() && f.record.computed_position.is_none() {
            ids.no_position.insert(id);
        } else if input.position == PositionSource::Computed && f.record.computed_position.is_none()
        {
            ids.no_computed.insert(id);
        } else {
            ids.placed.insert(id);
        }
    };
    let cap = input.search_cap;
    let result = search::list_plan(client, &mut sel, cap, &progress, cancel, sink).await;
    let listed = (ids.placed.len() + ids.no_position.len() + ids.no_computed.len()) as u64;
    let calls = stats.search_calls.load(Ordering::Relaxed) - before;
    Ok((side(result, listed, calls)?, ids))
}

/// Lists one box by its vector tiles then `image_ids` lookups; also the
/// tile and batch calls it made.
async fn tiles_side(
    client: &Client,
    input: &AuditInput<'_>,
    target: &AuditTarget,
    cancel: &CancellationToken,
) -> Result<(AuditSide, BTreeSet<u64>, (u64, u64)), ListError> {
    let stats = client.stats();
    let progress = Arc::new(Progress::default());
    let plan = Plan::single(target.bbox);
    let mut sel = Selector::new(&plan, input.filters, input.size, input.position, input.aoi);
    let mut ids = BTreeSet::new();
    let (t0, b0) = (
        stats.tile_calls.load(Ordering::Relaxed),
        stats.batch_calls.load(Ordering::Relaxed),
    );
    let sink = |f: listing::Found| {
        ids.insert(f.id.get());
    };
    let (t, planned) = (input.tiles, &target.tiles);
    let result =
        tilelister::list_plan_tiles(client, t, planned, &mut sel, &progress, cancel, sink).await;
    let (dt, db) = (
        stats.tile_calls.load(Ordering::Relaxed) - t0,
        stats.batch_calls.load(Ordering::Relaxed) - b0,
    );
    Ok((side(result, ids.len() as u64, dt + db)?, ids, (dt, db)))
}

/// One box's two listings compared.
fn compare(
    grid: String,
    bbox: Bbox,
    (search, found): (AuditSide, SearchIds),
    (tiles, tile_ids): (AuditSide, BTreeSet<u64>),
) -> AuditBox {
    let strings = |s: &mut dyn Iterator<Item = &u64>| s.map(ToString::to_string).collect();
    AuditBox {
        grid,
        bbox,
        search,
        tiles,
        only_search: strings(&mut found.placed.difference(&tile_ids)),
        only_tiles: strings(&mut tile_ids.difference(&found.placed)),
        search_without_position: strings(&mut found.no_position.iter()),
        search_without_computed_position: strings(&mut found.no_computed.iter()),
    }
}

impl AuditTotals {
    /// Adds one box, whose tiles side made `(tile, batch)` calls.
    fn add(&mut self, b: &AuditBox, (tile_calls, batch_calls): (u64, u64)) {
        self.boxes += 1;
        self.only_search += b.only_search.len() as u64;
        self.only_tiles += b.only_tiles.len() as u64;
        self.search_without_position += b.search_without_position.len() as u64;
        self.search_without_computed_position += b.search_without_computed_position.len() as u64;
        self.search_calls += b.search.calls;
        self.tile_calls += tile_calls;
        self.batch_calls += batch_calls;
        let differs = !b.only_search.is_empty()
            || !b.only_tiles.is_empty()
            || b.search.error.is_some()
            || b.tiles.error.is_some();
        if differs {
            self.boxes_with_differences += 1;
        }
    }
}

fn side(
    result: Result<Vec<listing::GridListing>, ListError>,
    listed: u64,
    calls: u64,
) -> Result<AuditSide, ListError> {
    match result {
        Ok(g) => Ok(AuditSide {
            listed,
            completeness: g.first().map_or(Completeness::Complete, |g| g.completeness),
            calls,
            error: g
                .first()
                .and_then(|g| g.failed_boxes.first())
                .map(|f| f.reason.clone()),
        }),
        Err(ListError::Interrupted) => Err(ListError::Interrupted),
        Err(e) => Ok(AuditSide {
            listed,
            completeness: Completeness::Failed,
            calls,
            error: Some(e.to_string()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan;

    #[test]
    fn samples_are_small_spread_and_stable() {
        let area = Bbox::new(2.30, 48.84, 2.40, 48.90).unwrap();
        let p = Plan::new(plan::cut(&area, 5, 4).unwrap()).unwrap();
        let a = sample_boxes(&p, None);
        assert_eq!(a, sample_boxes(&p, None));
        assert_eq!(a.len(), MAX_BOXES);
        let grids: BTreeSet<usize> = a.iter().map(|(g, _)| *g).collect();
        assert_eq!(grids.len(), MAX_BOXES, "one box in each of 8 grids");
        for (g, b) in &a {
            assert!(b.width() <= BOX_SIDE_DEG + 1e-12 && b.height() <= BOX_SIDE_DEG + 1e-12);
            let gb = p.grids()[*g].bbox;
            assert!(b.min_lon() >= gb.min_lon() && b.max_lat() <= gb.max_lat());
        }
        // One grid: eight boxes inside it, none overlapping.
        let one = Plan::single(area);
        let s = sample_boxes(&one, None);
        assert_eq!(s.len(), MAX_BOXES);
        for (i, (_, x)) in s.iter().enumerate() {
            for (_, y) in &s[i + 1..] {
                let apart = x.max_lon() <= y.min_lon()
                    || y.max_lon() <= x.min_lon()
                    || x.max_lat() <= y.min_lat()
                    || y.max_lat() <= x.min_lat();
                assert!(apart, "{x} overlaps {y}");
            }
        }
        // A grid smaller than a box: the box is the grid's size.
        let tiny = Plan::single(Bbox::new(2.3, 48.8, 2.301, 48.801).unwrap());
        let t = sample_boxes(&tiny, None);
        assert!(t.iter().all(|(_, b)| b.width() <= 0.001 / 3.0 + 1e-12));
    }
}
