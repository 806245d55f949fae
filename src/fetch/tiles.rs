//! Enumeration by z14 vector tiles (`--enumerate tiles`): which tiles cover
//! the grids (planned once, counted against `--tile-budget` by the caller
//! before anything is asked), the preflight tile, and the filters the tiles
//! carry. Reading and decoding them, then batched Graph lookups
//! (`/images?image_ids=`) of the kept ids, each object judged by the shared
//! `Selector`, is `tilelister`. Network through `api` only; no files, no
//! printing.
//!
//! Search or tiles? Measured on the simulator (`scripts/bench-tiles.sh`):
//! search needs fewer calls where boxes can hold up to the cap (one answer
//! carries up to 2,000 full records, a batch 100), so it is the better
//! default. Tiles win where the API refuses dense boxes ("reduce the amount
//! of data") and search must split deep, and they cannot be truncated: a
//! tiles listing is complete unless a call failed. Tiles never list images
//! without a position, and the computed tileset leaves out images without a
//! computed position (search places those by their original one).

use std::collections::HashMap;

use crate::aoi::Aoi;
use crate::api::TilesConfig;
use crate::api::tiles::Tileset;
use crate::api::{ApiError, Client};
use crate::model::{Bbox, PositionSource};
use crate::plan::Plan;
use crate::runrecord::Filters;
use crate::tiles::{self as tmath, IMAGE_ZOOM, TileId, TileImage};

/// How far (degrees) a tile's quantised position may be from a grid's box
/// for the image to be looked up (exact clipping is done by the `Selector`
/// on the Graph geometry). A z14 tile unit is about 5e-6 degrees.
pub(crate) const POSITION_MARGIN_DEG: f64 = 1e-4;

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

/// Adds grid `gi` to `v` once.
pub(crate) fn push_grid(v: &mut Vec<usize>, gi: usize) {
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

/// The tiles of [`plan_tiles`] within `budget`; `what` names the listing in
/// the error.
pub(crate) fn budgeted_tiles(
    plan: &Plan,
    aoi: Option<&Aoi>,
    budget: u32,
    what: &str,
) -> Result<Vec<PlannedTile>, TilesError> {
    plan_tiles(plan, aoi, u64::from(budget)).map_err(|upper| TilesError::OverBudget {
        what: what.to_string(),
        needed: format!("up to {upper}"),
        budget,
    })
}

/// How many tiles `plan` needs, checked against `budget`.
#[cfg(test)]
fn count_tiles(plan: &Plan, aoi: Option<&Aoi>, budget: u32, what: &str) -> Result<u64, TilesError> {
    budgeted_tiles(plan, aoi, budget, what).map(|t| t.len() as u64)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LonLat, PanoFilter};
    use crate::plan;
    use std::collections::HashSet;

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
