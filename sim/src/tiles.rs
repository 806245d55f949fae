//! Vector-tile content of the `tiles.mapillary.com`-like host: Web-Mercator tile math and the
//! `overview`, `sequence` and `image` layers of `mly1_public` / `mly1_computed_public`.

use std::collections::{BTreeMap, HashSet};

use crate::lag::TileLag;
use crate::mvt::{LayerBuilder, Value};
use crate::world::{SimImage, World};

/// Tile extent (coordinate units per tile side).
pub const EXTENT: u32 = 4096;
/// Highest zoom served; higher zooms are 404.
pub const MAX_ZOOM: u8 = 14;
/// Highest zoom of the `overview` layer.
pub const OVERVIEW_MAX_ZOOM: u8 = 5;
/// Lowest zoom of the `sequence` layer.
pub const SEQUENCE_MIN_ZOOM: u8 = 6;
/// Zoom of the `image` layer.
pub const IMAGE_ZOOM: u8 = 14;
/// `overview` points are one per populated cell of `OVERVIEW_CELL` x `OVERVIEW_CELL` units.
pub const OVERVIEW_CELL: u32 = 16;
/// A sequence is in a tile when one of its vertices lies within the tile grown by this
/// fraction of a tile on each side (at z14 about 95 m at 52 degrees N, far more than the longest
/// step of a walk, so every line that crosses a tile is listed).
pub const SEQUENCE_BUFFER: f64 = 1.0 / 16.0;

const MAX_LAT: f64 = 85.051_128_779_806_59;
/// Added to `World::margin_deg` (how far a served position may lie from the index position)
/// when asking the spatial index for the images of a tile, against rounding.
const INDEX_MARGIN_DEG: f64 = 1e-7;

/// Schema drift of the z14 `image` layer (`SimConfig::tile_drift`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TileDrift {
    /// `id` is an empty string on every feature.
    BlankIds,
    /// `id` is a string: `"abc"` followed by the image id.
    NonNumericIds,
    /// z14 tiles carry only the `sequence` layer.
    NoImageLayer,
    /// `captured_at` is a string (decimal milliseconds) and `is_pano` an int (0 or 1).
    WrongTypes,
}

/// What a tile shows besides the world: lag behind the Graph and schema drift.
#[derive(Clone, Copy, Debug, Default)]
pub struct RenderOptions<'a> {
    pub lag: Option<&'a TileLag>,
    pub drift: Option<TileDrift>,
}

impl RenderOptions<'_> {
    fn hides(&self, img: &SimImage) -> bool {
        self.lag.is_some_and(|l| l.is_missing(img.id))
    }
}

/// The two coverage tilesets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tileset {
    /// `mly1_public`: original `geometry`.
    Public,
    /// `mly1_computed_public`: `computed_geometry`.
    ComputedPublic,
}

impl Tileset {
    pub fn from_name(s: &str) -> Option<Tileset> {
        match s {
            "mly1_public" => Some(Tileset::Public),
            "mly1_computed_public" => Some(Tileset::ComputedPublic),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Tileset::Public => "mly1_public",
            Tileset::ComputedPublic => "mly1_computed_public",
        }
    }

    /// Where this tileset places an image (`None`: the image is absent from it).
    pub fn position(self, img: &SimImage) -> Option<[f64; 2]> {
        match self {
            Tileset::Public => img.geometry,
            Tileset::ComputedPublic => img.computed_geometry,
        }
    }

    /// The `compass_angle` property: `compass_angle`, or `computed_compass_angle` in the computed
    /// tileset; rounded to whole degrees in 0..360.
    pub fn compass(self, img: &SimImage) -> i64 {
        let a = match self {
            Tileset::Public => img.compass_angle,
            Tileset::ComputedPublic => img.computed_compass_angle.unwrap_or(img.compass_angle),
        };
        (a.round() as i64).rem_euclid(360)
    }
}

/// Fractional XYZ tile coordinates of a position at zoom `z` (y grows southwards).
pub fn mercator(lon: f64, lat: f64, z: u8) -> (f64, f64) {
    let n = f64::from(1u32 << z);
    let lat = lat.clamp(-MAX_LAT, MAX_LAT).to_radians();
    let x = (lon + 180.0) / 360.0 * n;
    let y = (1.0 - (lat.tan() + 1.0 / lat.cos()).ln() / std::f64::consts::PI) / 2.0 * n;
    (x, y)
}

/// The inverse of `mercator`: `[lon, lat]` of fractional tile coordinates.
pub fn unmercator(x: f64, y: f64, z: u8) -> [f64; 2] {
    let n = f64::from(1u32 << z);
    let lon = x / n * 360.0 - 180.0;
    let lat = (std::f64::consts::PI * (1.0 - 2.0 * y / n))
        .sinh()
        .atan()
        .to_degrees();
    [lon, lat]
}

/// The tile holding a position at zoom `z`.
pub fn tile_of(lon: f64, lat: f64, z: u8) -> (u32, u32) {
    let (x, y) = mercator(lon, lat, z);
    let max = (1u32 << z) - 1;
    (
        (x.floor().max(0.0) as u32).min(max),
        (y.floor().max(0.0) as u32).min(max),
    )
}

/// `[min_lon, min_lat, max_lon, max_lat]` of a tile.
pub fn tile_bbox(z: u8, x: u32, y: u32) -> [f64; 4] {
    let [w, n] = unmercator(f64::from(x), f64::from(y), z);
    let [e, s] = unmercator(f64::from(x) + 1.0, f64::from(y) + 1.0, z);
    [w, s, e, n]
}

/// `[lon, lat]` of a point given in tile coordinates (0..EXTENT) of tile z/x/y.
pub fn tile_point_to_lonlat(z: u8, x: u32, y: u32, px: f64, py: f64) -> [f64; 2] {
    let e = f64::from(EXTENT);
    unmercator(f64::from(x) + px / e, f64::from(y) + py / e, z)
}

/// The tiles `(x, y)` at zoom `z` that cover a closed `[min_lon, min_lat, max_lon, max_lat]`
/// box, row by row. Tiles own their west and north edges, so a box ending exactly on a tile's
/// east or south edge also lists the next tile.
pub fn tiles_covering(bbox: [f64; 4], z: u8) -> Vec<(u32, u32)> {
    let (x0, y0) = tile_of(bbox[0], bbox[3], z);
    let (x1, y1) = tile_of(bbox[2], bbox[1], z);
    (y0..=y1)
        .flat_map(|y| (x0..=x1).map(move |x| (x, y)))
        .collect()
}

/// Why a tile cannot be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TileError {
    /// z > 14, or x/y outside 0..2^z.
    NotFound,
}

/// An image's position in tile z/x/y: fractional tile-unit coordinates relative to the tile's
/// top-left corner (inside the tile when both lie in [0, EXTENT)).
fn local(p: [f64; 2], z: u8, x: u32, y: u32) -> (f64, f64) {
    let (fx, fy) = mercator(p[0], p[1], z);
    let e = f64::from(EXTENT);
    ((fx - f64::from(x)) * e, (fy - f64::from(y)) * e)
}

fn inside(l: (f64, f64), grow: f64) -> bool {
    let e = f64::from(EXTENT);
    let lo = -grow * e;
    let hi = e + grow * e;
    l.0 >= lo && l.0 < hi && l.1 >= lo && l.1 < hi
}

fn round(l: (f64, f64)) -> (i32, i32) {
    (l.0.round() as i32, l.1.round() as i32)
}

/// Candidates from the spatial index around tile z/x/y grown by `grow` tiles.
fn candidates(world: &World, z: u8, x: u32, y: u32, grow: f64) -> Vec<&SimImage> {
    let (fx0, fy0) = (f64::from(x) - grow, f64::from(y) - grow);
    let (fx1, fy1) = (f64::from(x) + 1.0 + grow, f64::from(y) + 1.0 + grow);
    let [w, n] = unmercator(fx0, fy0, z);
    let [e, s] = unmercator(fx1, fy1, z);
    let m = world.margin_deg() + INDEX_MARGIN_DEG;
    world.indexed_in([w - m, s - m, e + m, n + m])
}

/// Encodes tile z/x/y of a tileset. An empty `Vec` means a tile with no features.
///
/// Layers: z0-5 `overview`; z6-13 `sequence`; z14 `sequence` then `image`. Empty layers are
/// left out. `Feature.id` counts 0, 1, 2, ... across the layers of the tile.
pub fn render(world: &World, ts: Tileset, z: u8, x: u32, y: u32) -> Result<Vec<u8>, TileError> {
    render_with(world, ts, z, x, y, &RenderOptions::default())
}

/// Like `render`, with the images of `opts.lag` left out of every layer, its stale images added
/// to the z14 `image` layer, and `opts.drift` applied to z14 tiles.
pub fn render_with(
    world: &World,
    ts: Tileset,
    z: u8,
    x: u32,
    y: u32,
    opts: &RenderOptions<'_>,
) -> Result<Vec<u8>, TileError> {
    if z > MAX_ZOOM || x >= (1u32 << z) || y >= (1u32 << z) {
        return Err(TileError::NotFound);
    }
    let mut tile = Vec::new();
    let mut next_id = 0u64;
    if z <= OVERVIEW_MAX_ZOOM {
        let layer = overview(world, ts, (z, x, y), opts, &mut next_id);
        if !layer.is_empty() {
            layer.finish_into(&mut tile);
        }
    }
    if z >= SEQUENCE_MIN_ZOOM {
        let layer = sequences(world, ts, (z, x, y), opts, &mut next_id);
        if !layer.is_empty() {
            layer.finish_into(&mut tile);
        }
    }
    if z == IMAGE_ZOOM && opts.drift != Some(TileDrift::NoImageLayer) {
        let layer = images(world, ts, (z, x, y), opts, &mut next_id);
        if !layer.is_empty() {
            layer.finish_into(&mut tile);
        }
    }
    Ok(tile)
}

/// One point per populated 16 x 16 cell, at the cell centre, carrying the earliest image of the
/// cell (ties by id).
fn overview(
    world: &World,
    ts: Tileset,
    (z, x, y): (u8, u32, u32),
    opts: &RenderOptions<'_>,
    next_id: &mut u64,
) -> LayerBuilder {
    let mut cells: BTreeMap<(u32, u32), &SimImage> = BTreeMap::new();
    for img in candidates(world, z, x, y, 0.0) {
        let Some(p) = ts.position(img).filter(|_| !opts.hides(img)) else {
            continue;
        };
        let l = local(p, z, x, y);
        if !inside(l, 0.0) {
            continue;
        }
        let c = (
            (l.1 as u32 / OVERVIEW_CELL).min(EXTENT / OVERVIEW_CELL - 1),
            (l.0 as u32 / OVERVIEW_CELL).min(EXTENT / OVERVIEW_CELL - 1),
        );
        cells
            .entry(c)
            .and_modify(|cur| {
                if (img.captured_at, img.id) < (cur.captured_at, cur.id) {
                    *cur = img;
                }
            })
            .or_insert(img);
    }
    let mut layer = LayerBuilder::new("overview", EXTENT);
    let half = (OVERVIEW_CELL / 2) as i32;
    for ((cy, cx), img) in cells {
        let p = (
            (cx * OVERVIEW_CELL) as i32 + half,
            (cy * OVERVIEW_CELL) as i32 + half,
        );
        layer.add_point(
            *next_id,
            p,
            &[
                ("captured_at", Value::Int(img.captured_at)),
                ("id", Value::Int(img.id as i64)),
                ("sequence_id", Value::Str(&img.sequence)),
                ("is_pano", Value::Bool(img.is_pano)),
            ],
        );
        *next_id += 1;
    }
    layer
}

/// The full (unclipped) line of every sequence with a vertex in the tile grown by
/// `SEQUENCE_BUFFER`, in sequence-key order.
fn sequences(
    world: &World,
    ts: Tileset,
    (z, x, y): (u8, u32, u32),
    opts: &RenderOptions<'_>,
    next_id: &mut u64,
) -> LayerBuilder {
    let mut keys: Vec<&str> = candidates(world, z, x, y, SEQUENCE_BUFFER)
        .into_iter()
        .filter(|img| {
            !opts.hides(img)
                && ts
                    .position(img)
                    .is_some_and(|p| inside(local(p, z, x, y), SEQUENCE_BUFFER))
        })
        .map(|img| &*img.sequence)
        .collect::<HashSet<&str>>()
        .into_iter()
        .collect();
    keys.sort_unstable();
    let mut layer = LayerBuilder::new("sequence", EXTENT);
    let mut line: Vec<(i32, i32)> = Vec::new();
    for key in keys {
        let imgs = world.sequence(key);
        let mut first: Option<&SimImage> = None;
        line.clear();
        for img in imgs {
            let Some(p) = ts.position(img).filter(|_| !opts.hides(img)) else {
                continue;
            };
            first.get_or_insert(img);
            let q = round(local(p, z, x, y));
            if line.last() != Some(&q) {
                line.push(q);
            }
        }
        let Some(first) = first else { continue };
        if line.len() == 1 {
            // The whole sequence falls on one tile unit: a zero-length segment.
            line.push(line[0]);
        }
        let mut props = vec![
            ("captured_at", Value::Int(first.captured_at)),
            ("id", Value::Str(key)),
            ("image_id", Value::Int(first.id as i64)),
            ("is_pano", Value::Bool(first.is_pano)),
        ];
        if let Some(o) = first.organization {
            props.push(("organization_id", Value::Int(o as i64)));
        }
        layer.add_line(*next_id, &line, &props);
        *next_id += 1;
    }
    layer
}

/// Every image whose position lies in the tile (half-open: [0, 4096) on both axes), ordered by
/// (captured_at, id): the world's images not hidden by the lag, plus its stale images.
fn images(
    world: &World,
    ts: Tileset,
    (z, x, y): (u8, u32, u32),
    opts: &RenderOptions<'_>,
    next_id: &mut u64,
) -> LayerBuilder {
    let stale = opts.lag.map(TileLag::stale).unwrap_or_default();
    let mut found: Vec<(&SimImage, (f64, f64))> = candidates(world, z, x, y, 0.0)
        .into_iter()
        .filter(|img| !opts.hides(img))
        .chain(stale)
        .filter_map(|img| {
            let l = local(ts.position(img)?, z, x, y);
            inside(l, 0.0).then_some((img, l))
        })
        .collect();
    found.sort_unstable_by_key(|(img, _)| (img.captured_at, img.id));
    let mut layer = LayerBuilder::new("image", EXTENT);
    let mut text = String::new();
    for (img, l) in found {
        let props = image_props(img, ts, opts.drift, &mut text);
        layer.add_point(*next_id, round(l), &props);
        *next_id += 1;
    }
    layer
}

/// The properties of one `image` feature, with the schema drift applied (`text` holds the
/// drifted string values).
fn image_props<'a>(
    img: &'a SimImage,
    ts: Tileset,
    drift: Option<TileDrift>,
    text: &'a mut String,
) -> Vec<(&'static str, Value<'a>)> {
    use std::fmt::Write;
    text.clear();
    match drift {
        Some(TileDrift::NonNumericIds) => {
            let _ = write!(text, "abc{}", img.id);
        }
        Some(TileDrift::WrongTypes) => {
            let _ = write!(text, "{}", img.captured_at);
        }
        _ => {}
    }
    let text: &'a str = text;
    let (captured_at, is_pano) = match drift {
        Some(TileDrift::WrongTypes) => (Value::Str(text), Value::Int(i64::from(img.is_pano))),
        _ => (Value::Int(img.captured_at), Value::Bool(img.is_pano)),
    };
    let id = match drift {
        Some(TileDrift::BlankIds) => Value::Str(""),
        Some(TileDrift::NonNumericIds) => Value::Str(text),
        _ => Value::Int(img.id as i64),
    };
    let mut props = vec![
        ("captured_at", captured_at),
        ("compass_angle", Value::Int(ts.compass(img))),
        ("id", id),
        ("is_pano", is_pano),
        ("sequence_id", Value::Str(&img.sequence)),
    ];
    if let Some(o) = img.organization {
        props.push(("organization_id", Value::Int(o as i64)));
    }
    props
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mercator_round_trips_and_matches_known_tiles() {
        let (x, y) = tile_of(-0.1276, 51.5072, 14);
        assert_eq!((x, y), (8186, 5448));
        let [lon, lat] = unmercator(8186.5, 5448.5, 14);
        let (fx, fy) = mercator(lon, lat, 14);
        assert!((fx - 8186.5).abs() < 1e-9 && (fy - 5448.5).abs() < 1e-9);
        let b = tile_bbox(14, 8186, 5448);
        assert!(b[0] < -0.1276 && b[2] > -0.1276 && b[1] < 51.5072 && b[3] > 51.5072);
        let d = 1e-9;
        let inner = [b[0] + d, b[1] + d, b[2] - d, b[3] - d];
        assert_eq!(tiles_covering(inner, 14), vec![(8186, 5448)]);
        // A closed box ending on a tile edge also touches the next tiles (tiles are half-open).
        assert_eq!(tiles_covering(b, 14).len(), 4);
        assert_eq!(tile_of(0.0, 0.0, 0), (0, 0));
    }

    #[test]
    fn bad_coordinates_are_not_found() {
        let w = World::generate(&crate::WorldSpec::demo());
        assert_eq!(
            render(&w, Tileset::Public, 15, 0, 0),
            Err(TileError::NotFound)
        );
        assert_eq!(
            render(&w, Tileset::Public, 2, 4, 0),
            Err(TileError::NotFound)
        );
        assert_eq!(render(&w, Tileset::Public, 14, 0, 0), Ok(Vec::new()));
    }
}
