//! Web-Mercator XYZ tile maths and decoding of the z14 `image` layer of
//! Mapillary vector tiles (gzip-aware, via geozero's MVT reader). Pure: bytes
//! and numbers in, values out; no I/O, and no knowledge of grids, the API
//! client or the command line.

use std::fmt;
use std::io::Read;

use geozero::mvt::{Message, Tile, tile};
use geozero::{ColumnValue, FeatureProcessor, GeomProcessor, PropertyProcessor};

use crate::model::{Bbox, LonLat};

/// The zoom of the tiles whose `image` layer lists every image.
pub(crate) const IMAGE_ZOOM: u8 = 14;
/// Web Mercator's latitude limit; tiles hold nothing beyond it.
pub(crate) const MAX_LAT: f64 = 85.051_128_779_806_59;
/// The layer of z14 tiles with one point per image.
pub(crate) const IMAGE_LAYER: &str = "image";
/// Largest tile body accepted after inflating gzip (a 34,000-image tile is ~2 MB).
pub(crate) const MAX_TILE_BYTES: usize = 64 * 1024 * 1024;
/// Most features a tile may hold over all its layers (a real 31,000-image
/// tile holds about 31,600); counted before anything is decoded.
pub(crate) const MAX_TILE_FEATURES: u64 = 1_000_000;
/// Most property values (and keys) a tile may hold over all its layers.
pub(crate) const MAX_TILE_VALUES: u64 = 1_000_000;
/// Most geometry and tag integers a tile may hold over all its layers.
pub(crate) const MAX_TILE_INTS: u64 = 16_000_000;

/// Tiles whose edge lies within this many tile widths of a box edge are
/// included, so floating-point noise never drops a tile (it may add one).
const EDGE_EPS: f64 = 1e-9;

/// One XYZ tile (y grows southwards).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct TileId {
    pub z: u8,
    pub x: u32,
    pub y: u32,
}

impl fmt::Display for TileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.z, self.x, self.y)
    }
}

/// Fractional tile coordinates of a position at zoom `z`; latitudes beyond
/// [`MAX_LAT`] are clamped to it.
pub(crate) fn mercator(lon: f64, lat: f64, z: u8) -> (f64, f64) {
    let n = f64::from(1u32 << z);
    let phi = lat.clamp(-MAX_LAT, MAX_LAT).to_radians();
    let x = (lon + 180.0) / 360.0 * n;
    let y = (1.0 - phi.tan().asinh() / std::f64::consts::PI) / 2.0 * n;
    (x, y)
}

/// The position of fractional tile coordinates at zoom `z`.
pub(crate) fn unmercator(x: f64, y: f64, z: u8) -> (f64, f64) {
    let n = f64::from(1u32 << z);
    let lon = x / n * 360.0 - 180.0;
    let lat = (std::f64::consts::PI * (1.0 - 2.0 * y / n))
        .sinh()
        .atan()
        .to_degrees();
    (lon, lat)
}

impl TileId {
    /// The tile holding a position (half-open: a tile owns its west and north edges).
    pub(crate) fn of(p: LonLat, z: u8) -> TileId {
        let (x, y) = mercator(p.lon, p.lat, z);
        TileId {
            z,
            x: clamp_index(x.floor(), z),
            y: clamp_index(y.floor(), z),
        }
    }

    /// The tile's box in degrees.
    pub(crate) fn bbox(&self) -> Bbox {
        let (w, n) = unmercator(f64::from(self.x), f64::from(self.y), self.z);
        let (e, s) = unmercator(f64::from(self.x) + 1.0, f64::from(self.y) + 1.0, self.z);
        Bbox::new(w, s, e, n).expect("a tile's box is valid")
    }

    /// The position of a point given in tile units (0..`extent`, y down).
    /// Points slightly outside the tile (a rounded edge point reads `extent`)
    /// are converted all the same; `None` only for positions off the globe.
    pub(crate) fn point(&self, px: f64, py: f64, extent: u32) -> Option<LonLat> {
        let e = f64::from(extent.max(1));
        let (lon, lat) = unmercator(
            f64::from(self.x) + px / e,
            f64::from(self.y) + py / e,
            self.z,
        );
        LonLat::new(lon, lat)
    }
}

fn clamp_index(v: f64, z: u8) -> u32 {
    let max = (1u64 << z) - 1;
    v.clamp(0.0, max as f64) as u32
}

/// A rectangle of tiles at one zoom, bounds inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TileRange {
    pub z: u8,
    pub x0: u32,
    pub x1: u32,
    pub y0: u32,
    pub y1: u32,
}

impl TileRange {
    /// How many tiles the rectangle holds.
    pub(crate) fn count(&self) -> u64 {
        (u64::from(self.x1 - self.x0) + 1) * (u64::from(self.y1 - self.y0) + 1)
    }

    /// The tiles, row by row from the north-west.
    pub(crate) fn iter(&self) -> impl Iterator<Item = TileId> + use<> {
        let r = *self;
        (r.y0..=r.y1).flat_map(move |y| (r.x0..=r.x1).map(move |x| TileId { z: r.z, x, y }))
    }
}

/// The tiles at zoom `z` that together hold every point of the closed box
/// `b`. Tiles own their west and north edges, so a box ending exactly on a
/// tile's east or south edge also needs the next tile.
pub(crate) fn covering(b: &Bbox, z: u8) -> TileRange {
    let (fx0, fy0) = mercator(b.min_lon(), b.max_lat(), z);
    let (fx1, fy1) = mercator(b.max_lon(), b.min_lat(), z);
    TileRange {
        z,
        x0: clamp_index((fx0 - EDGE_EPS).floor(), z),
        x1: clamp_index((fx1 + EDGE_EPS).floor(), z),
        y0: clamp_index((fy0 - EDGE_EPS).floor(), z),
        y1: clamp_index((fy1 + EDGE_EPS).floor(), z),
    }
}

/// One image point of a z14 `image` layer, with the properties mlyexport uses.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TileImage {
    pub id: u64,
    /// The position as the tile carries it (quantised to a tile unit, ~0.6 m at z14).
    pub position: LonLat,
    /// Capture time, Unix epoch milliseconds.
    pub captured_at_ms: Option<i64>,
    pub is_pano: Option<bool>,
    /// The organization id as decimal text (ints in the tile).
    pub organization_id: Option<String>,
    pub sequence_id: Option<String>,
}

/// The images of one tile, and what in it did not have the expected shape
/// (schema drift: each is counted, never silently dropped).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct DecodedTile {
    pub images: Vec<TileImage>,
    /// Features of the `image` layer that are not a well-formed point.
    pub bad_geometry: u64,
    /// Features of the `image` layer whose `id` is missing, blank, not a
    /// positive integer (text or number), so the image cannot be named.
    pub bad_ids: u64,
    /// Properties of a known name with a value of an unexpected type
    /// (`captured_at` not an integer, `is_pano` not a bool, ...).
    pub bad_types: u64,
    /// The tile has layers, but none named `image` (an empty body is no drift).
    pub missing_image_layer: bool,
    /// The body was empty or held no layer, or there was no tile (404, 204):
    /// an empty place, or a server that answers so for anything (only the
    /// searches can tell).
    pub empty: bool,
}

impl DecodedTile {
    /// A tile with nothing in it: an empty body, no layer, or no tile at all.
    pub(crate) fn empty() -> Self {
        DecodedTile {
            empty: true,
            ..DecodedTile::default()
        }
    }

    /// Features of the `image` layer that could not be used at all.
    pub(crate) fn skipped(&self) -> u64 {
        self.bad_geometry + self.bad_ids
    }

    /// Whether anything in the tile did not have the shape we expect.
    pub(crate) fn drifted(&self) -> bool {
        self.skipped() > 0 || self.bad_types > 0 || self.missing_image_layer
    }
}

/// Why a tile body could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum TileError {
    #[error("tile {tile}: the gzip body cannot be inflated ({message})")]
    Gzip { tile: TileId, message: String },
    #[error("tile {tile}: the body is larger than {max} bytes once inflated")]
    TooLarge { tile: TileId, max: usize },
    #[error("tile {tile}: not a Mapbox vector tile ({message})")]
    Decode { tile: TileId, message: String },
    #[error("tile {tile}: holds more than {max} {what}; not decoded")]
    TooMuchWork {
        tile: TileId,
        what: &'static str,
        max: u64,
    },
}

/// Decodes the `image` layer of a tile body. An empty body, or a tile
/// without an `image` layer, holds no images. A body still gzipped (a server
/// that compresses without saying so) is inflated first.
pub(crate) fn decode_image_layer(tile_id: TileId, body: &[u8]) -> Result<DecodedTile, TileError> {
    let inflated;
    let bytes = if body.starts_with(&[0x1f, 0x8b]) {
        inflated = gunzip(tile_id, body)?;
        &inflated[..]
    } else {
        body
    };
    if bytes.is_empty() {
        return Ok(DecodedTile::empty());
    }
    check_work(tile_id, bytes)?;
    let t = Tile::decode(bytes).map_err(|e| TileError::Decode {
        tile: tile_id,
        message: e.to_string(),
    })?;
    let has_layers = !t.layers.is_empty();
    let Some(mut layer) = t.layers.into_iter().find(|l| l.name == IMAGE_LAYER) else {
        return Ok(DecodedTile {
            missing_image_layer: has_layers,
            empty: !has_layers,
            ..DecodedTile::default()
        });
    };
    // geozero indexes the geometry without checking its length: drop
    // malformed points first so a bad feature cannot panic the reader.
    let before = layer.features.len();
    layer.features.retain(point_geometry_ok);
    let mut c = Collector {
        features: Vec::with_capacity(layer.features.len()),
    };
    geozero::mvt::process(&layer, &mut c).map_err(|e| TileError::Decode {
        tile: tile_id,
        message: e.to_string(),
    })?;
    let extent = layer.extent.unwrap_or(4096);
    let mut out = DecodedTile {
        images: Vec::with_capacity(c.features.len()),
        bad_geometry: (before - layer.features.len()) as u64,
        ..DecodedTile::default()
    };
    for f in c.features {
        out.bad_types += u64::from(f.bad_types);
        let pos = f.xy.and_then(|(x, y)| tile_id.point(x, y, extent));
        match (f.id, pos) {
            (Some(id), Some(position)) => out.images.push(TileImage {
                id,
                position,
                captured_at_ms: f.captured_at_ms,
                is_pano: f.is_pano,
                organization_id: f.organization_id,
                sequence_id: f.sequence_id,
            }),
            (None, _) => out.bad_ids += 1,
            (Some(_), None) => out.bad_geometry += 1,
        }
    }
    Ok(out)
}

/// Counts a tile's features, values and integers from the protobuf wire
/// format without decoding it (no allocation), and refuses a tile over
/// [`MAX_TILE_FEATURES`], [`MAX_TILE_VALUES`] or [`MAX_TILE_INTS`]: a small
/// body can stand for millions of empty messages, each of which a decoder
/// would allocate.
fn check_work(tile: TileId, bytes: &[u8]) -> Result<(), TileError> {
    let bad = |message: &str| TileError::Decode {
        tile,
        message: message.to_string(),
    };
    let (mut features, mut values, mut ints) = (0u64, 0u64, 0u64);
    for field in pb::Fields::new(bytes) {
        let (number, body) = field.map_err(bad)?;
        let Some(layer) = body.filter(|_| number == 3) else {
            continue;
        };
        for lf in pb::Fields::new(layer) {
            match lf.map_err(bad)? {
                (2, Some(feature)) => {
                    features += 1;
                    for ff in pb::Fields::new(feature) {
                        if let (2 | 4, Some(packed)) = ff.map_err(bad)? {
                            // Each packed integer takes at least one byte.
                            ints += packed.len() as u64;
                        }
                    }
                }
                (3 | 4, Some(_)) => values += 1,
                _ => {}
            }
        }
        let over = |what, n, max| (n > max).then_some(TileError::TooMuchWork { tile, what, max });
        if let Some(e) = over("features", features, MAX_TILE_FEATURES)
            .or_else(|| over("property keys and values", values, MAX_TILE_VALUES))
            .or_else(|| over("geometry and tag integers", ints, MAX_TILE_INTS))
        {
            return Err(e);
        }
    }
    Ok(())
}

/// A minimal protobuf wire-format walker: the fields of one message, with
/// the body of length-delimited ones. Borrowing only; never allocates.
mod pb {
    /// Iterator over `(field number, Some(body) for length-delimited)`.
    pub(super) struct Fields<'a> {
        rest: &'a [u8],
    }

    impl<'a> Fields<'a> {
        pub(super) fn new(bytes: &'a [u8]) -> Self {
            Fields { rest: bytes }
        }

        fn varint(&mut self) -> Result<u64, &'static str> {
            let mut v = 0u64;
            for shift in (0..64).step_by(7) {
                let (&b, rest) = self
                    .rest
                    .split_first()
                    .ok_or("a varint runs past the end")?;
                self.rest = rest;
                v |= u64::from(b & 0x7f) << shift;
                if b & 0x80 == 0 {
                    return Ok(v);
                }
            }
            Err("a varint is longer than 10 bytes")
        }

        fn skip(&mut self, n: u64) -> Result<&'a [u8], &'static str> {
            let n = usize::try_from(n).map_err(|_| "a length is too large")?;
            if n > self.rest.len() {
                return Err("a field runs past the end");
            }
            let (body, rest) = self.rest.split_at(n);
            self.rest = rest;
            Ok(body)
        }
    }

    impl<'a> Iterator for Fields<'a> {
        type Item = Result<(u64, Option<&'a [u8]>), &'static str>;

        fn next(&mut self) -> Option<Self::Item> {
            if self.rest.is_empty() {
                return None;
            }
            let item = (|| {
                let key = self.varint()?;
                let number = key >> 3;
                let body = match key & 7 {
                    0 => self.varint().map(|_| None)?,
                    1 => self.skip(8).map(|_| None)?,
                    2 => {
                        let n = self.varint()?;
                        Some(self.skip(n)?)
                    }
                    5 => self.skip(4).map(|_| None)?,
                    _ => return Err("an unknown wire type"),
                };
                Ok((number, body))
            })();
            if item.is_err() {
                self.rest = &[];
            }
            Some(item)
        }
    }
}

fn gunzip(tile_id: TileId, body: &[u8]) -> Result<Vec<u8>, TileError> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(body)
        .take(MAX_TILE_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| TileError::Gzip {
            tile: tile_id,
            message: e.to_string(),
        })?;
    if out.len() > MAX_TILE_BYTES {
        return Err(TileError::TooLarge {
            tile: tile_id,
            max: MAX_TILE_BYTES,
        });
    }
    Ok(out)
}

/// A point feature whose command stream holds as many vertices as it says.
fn point_geometry_ok(f: &tile::Feature) -> bool {
    if f.r#type != Some(tile::GeomType::Point as i32) {
        return false;
    }
    let Some(&cmd) = f.geometry.first() else {
        return false;
    };
    let (id, count) = (cmd & 7, (cmd >> 3) as usize);
    id == 1 && count >= 1 && f.geometry.len() > 2 * count
}

#[derive(Default)]
struct Feature {
    id: Option<u64>,
    xy: Option<(f64, f64)>,
    captured_at_ms: Option<i64>,
    is_pano: Option<bool>,
    organization_id: Option<String>,
    sequence_id: Option<String>,
    /// Known properties whose value had an unexpected type.
    bad_types: u32,
}

struct Collector {
    features: Vec<Feature>,
}

impl Collector {
    fn current(&mut self) -> &mut Feature {
        if self.features.is_empty() {
            self.features.push(Feature::default());
        }
        self.features.last_mut().expect("one feature")
    }
}

fn as_int(v: &ColumnValue) -> Option<i64> {
    match v {
        ColumnValue::Long(n) => Some(*n),
        ColumnValue::ULong(n) => i64::try_from(*n).ok(),
        ColumnValue::Int(n) => Some(i64::from(*n)),
        ColumnValue::UInt(n) => Some(i64::from(*n)),
        ColumnValue::Double(d) if d.fract() == 0.0 && d.abs() < 9.0e15 => Some(*d as i64),
        _ => None,
    }
}

impl GeomProcessor for Collector {
    fn xy(&mut self, x: f64, y: f64, _idx: usize) -> geozero::error::Result<()> {
        let f = self.current();
        if f.xy.is_none() {
            f.xy = Some((x, y));
        }
        Ok(())
    }
}

impl PropertyProcessor for Collector {
    fn property(&mut self, _i: usize, name: &str, v: &ColumnValue) -> geozero::error::Result<bool> {
        let f = self.current();
        let ok = match name {
            "id" => {
                f.id = image_id(v);
                true
            }
            "captured_at" => {
                f.captured_at_ms = as_int(v);
                f.captured_at_ms.is_some()
            }
            "is_pano" => {
                f.is_pano = match v {
                    ColumnValue::Bool(b) => Some(*b),
                    _ => None,
                };
                f.is_pano.is_some()
            }
            "organization_id" => {
                f.organization_id = match v {
                    ColumnValue::String(s) if !s.is_empty() => Some((*s).to_string()),
                    other => as_int(other).map(|n| n.to_string()),
                };
                f.organization_id.is_some()
            }
            "sequence_id" => {
                if let ColumnValue::String(s) = v {
                    f.sequence_id = Some((*s).to_string());
                }
                f.sequence_id.is_some()
            }
            _ => true,
        };
        if !ok {
            f.bad_types += 1;
        }
        Ok(false)
    }
}

/// An image id from a tile property: a positive integer, or decimal text of
/// one (the Graph API's form); anything else (blank, other text) is `None`.
fn image_id(v: &ColumnValue) -> Option<u64> {
    let n = match v {
        ColumnValue::String(s) => s.trim().parse::<u64>().ok(),
        other => as_int(other).and_then(|n| u64::try_from(n).ok()),
    };
    n.filter(|&n| n > 0)
}

impl FeatureProcessor for Collector {
    fn feature_begin(&mut self, _idx: u64) -> geozero::error::Result<()> {
        self.features.push(Feature::default());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geozero::mvt::tile::{Feature as MvtFeature, GeomType, Layer, Value};

    fn bbox(a: f64, b: f64, c: f64, d: f64) -> Bbox {
        Bbox::new(a, b, c, d).unwrap()
    }

    fn t(x: u32, y: u32) -> TileId {
        TileId { z: 14, x, y }
    }

    #[test]
    fn tiles_of_known_places_in_every_hemisphere() {
        // Reference values from the slippy-map formulas (checked by hand in Python).
        let of = |lon, lat| TileId::of(LonLat::new(lon, lat).unwrap(), 14);
        assert_eq!(of(13.4, 52.52), t(8801, 5373)); // north-east
        assert_eq!(of(-70.65, -33.45), t(4976, 9809)); // south-west
        assert_eq!(of(151.21, -33.87), t(15073, 9831)); // south-east
        assert_eq!(of(-122.42, 37.77), t(2620, 6333)); // north-west
        assert_eq!(of(-180.0, 89.0), t(0, 0));
        assert_eq!(of(180.0, -89.0), t(16383, 16383));
    }

    #[test]
    fn a_tile_box_round_trips_and_owns_its_north_west_corner() {
        for tile in [t(8801, 5373), t(4976, 9809), t(0, 0), t(16383, 16383)] {
            let b = tile.bbox();
            let nw = LonLat::new(b.min_lon(), b.max_lat()).unwrap();
            assert_eq!(TileId::of(nw, 14), tile);
            assert_eq!(tile.point(0.0, 0.0, 4096), Some(nw));
            let centre = tile.point(2048.0, 2048.0, 4096).unwrap();
            assert!(b.contains_half_open(centre));
            assert_eq!(TileId::of(centre, 14), tile);
            // A box that is exactly a tile also takes the tiles east and south
            // (they own those edges) and, by the float margin, west and north.
            let expected = if tile.x == 0 || tile.x == 16383 { 4 } else { 9 };
            assert_eq!(covering(&b, 14).count(), expected, "{tile}");
        }
    }

    #[test]
    fn covering_includes_tiles_touched_at_east_and_south_edges() {
        let tile = t(4976, 9809);
        let b = tile.bbox();
        // Strictly inside: one tile.
        let inner = bbox(
            b.min_lon() + 1e-4,
            b.min_lat() + 1e-4,
            b.max_lon() - 1e-4,
            b.max_lat() - 1e-4,
        );
        let r = covering(&inner, 14);
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![tile]);
        // Ending exactly on the east edge: the east neighbour owns that edge.
        let east = bbox(
            b.min_lon() + 1e-4,
            b.min_lat() + 1e-4,
            b.max_lon(),
            b.max_lat() - 1e-4,
        );
        assert_eq!(
            covering(&east, 14).iter().collect::<Vec<_>>(),
            vec![tile, t(4977, 9809)]
        );
        // Ending exactly on the south edge: the tile below owns it.
        let south = bbox(
            b.min_lon() + 1e-4,
            b.min_lat(),
            b.max_lon() - 1e-4,
            b.max_lat() - 1e-4,
        );
        assert_eq!(
            covering(&south, 14).iter().collect::<Vec<_>>(),
            vec![tile, t(4976, 9810)]
        );
    }

    #[test]
    fn covering_across_the_equator_and_the_prime_meridian() {
        let r = covering(&bbox(-0.01, -0.01, 0.01, 0.01), 14);
        assert_eq!((r.x0, r.x1, r.y0, r.y1), (8191, 8192, 8191, 8192));
        assert_eq!(r.count(), 4);
        let all: Vec<TileId> = r.iter().collect();
        assert_eq!(all[0], t(8191, 8191));
        assert_eq!(all[3], t(8192, 8192));
        // A whole-world box counts every tile without listing them.
        let world = covering(&bbox(-180.0, -90.0, 180.0, 90.0), 14);
        assert_eq!(world.count(), 1 << 28);
    }

    #[test]
    fn every_point_of_a_box_lies_in_a_covering_tile() {
        let b = bbox(-58.45, -34.62, -58.37, -34.57); // Buenos Aires
        let r = covering(&b, 14);
        for i in 0..=40 {
            for j in 0..=40 {
                let p = LonLat::new(
                    b.min_lon() + b.width() * f64::from(i) / 40.0,
                    b.min_lat() + b.height() * f64::from(j) / 40.0,
                )
                .unwrap();
                let tile = TileId::of(p, 14);
                assert!(
                    (r.x0..=r.x1).contains(&tile.x) && (r.y0..=r.y1).contains(&tile.y),
                    "{p:?} in {tile}"
                );
            }
        }
    }

    fn int(n: i64) -> Value {
        Value {
            int_value: Some(n),
            ..Value::default()
        }
    }

    /// A tile with an `image` layer of the given (id, px, py) points.
    fn tile_bytes(points: &[(i64, u32, u32)]) -> Vec<u8> {
        let zig = |v: i32| ((v << 1) ^ (v >> 31)) as u32;
        let mut values = vec![
            Value {
                bool_value: Some(true),
                ..Value::default()
            },
            Value {
                string_value: Some("seqkey".into()),
                ..Value::default()
            },
            int(1_600_000_000_000),
            int(77),
        ];
        let mut features = Vec::new();
        for (i, &(id, x, y)) in points.iter().enumerate() {
            values.push(int(id));
            let vid = values.len() as u32 - 1;
            features.push(MvtFeature {
                id: Some(i as u64),
                tags: vec![0, vid, 1, 0, 2, 1, 3, 2, 4, 3],
                r#type: Some(GeomType::Point as i32),
                geometry: vec![9, zig(x as i32), zig(y as i32)],
            });
        }
        // A malformed feature (no coordinates) and a line are ignored.
        features.push(MvtFeature {
            id: Some(99),
            tags: vec![],
            r#type: Some(GeomType::Point as i32),
            geometry: vec![9],
        });
        let layer = Layer {
            version: 2,
            name: "image".into(),
            features,
            keys: [
                "id",
                "is_pano",
                "sequence_id",
                "captured_at",
                "organization_id",
            ]
            .map(String::from)
            .to_vec(),
            values,
            extent: Some(4096),
        };
        let other = Layer {
            version: 2,
            name: "sequence".into(),
            extent: Some(4096),
            ..Layer::default()
        };
        Tile {
            layers: vec![other, layer],
        }
        .encode_to_vec()
    }

    #[test]
    fn decodes_image_points_and_properties() {
        let tile = t(4976, 9809);
        let body = tile_bytes(&[(123_456_789_012, 0, 0), (987, 2048, 4096)]);
        let d = decode_image_layer(tile, &body).unwrap();
        assert_eq!((d.bad_geometry, d.bad_ids, d.bad_types), (1, 0, 0));
        assert!(d.drifted() && !d.missing_image_layer);
        assert_eq!(d.images.len(), 2);
        let a = &d.images[0];
        assert_eq!(a.id, 123_456_789_012);
        assert_eq!(a.is_pano, Some(true));
        assert_eq!(a.sequence_id.as_deref(), Some("seqkey"));
        assert_eq!(a.captured_at_ms, Some(1_600_000_000_000));
        assert_eq!(a.organization_id.as_deref(), Some("77"));
        let b = tile.bbox();
        assert_eq!(a.position, LonLat::new(b.min_lon(), b.max_lat()).unwrap());
        // A point rounded onto the south edge reads 4096 and lies on that edge.
        assert!((d.images[1].position.lat - b.min_lat()).abs() < 1e-12);
    }

    #[test]
    fn gzip_empty_and_garbage_bodies() {
        use std::io::Write;
        let tile = t(1, 2);
        let body = tile_bytes(&[(5, 10, 10)]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&body).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(
            decode_image_layer(tile, &gz).unwrap(),
            decode_image_layer(tile, &body).unwrap()
        );
        assert_eq!(decode_image_layer(tile, b"").unwrap(), DecodedTile::empty());
        let e = decode_image_layer(tile, b"\x0a\xff\xff\xff\xff garbage").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("tile 14/1/2: not a Mapbox vector tile"),
            "{e}"
        );
        let e = decode_image_layer(tile, &gz[..gz.len() / 2]).unwrap_err();
        assert!(matches!(e, TileError::Gzip { .. }), "{e}");
    }

    fn one_layer(name: &str, keys: &[&str], values: Vec<Value>, tags: Vec<u32>) -> Vec<u8> {
        let feature = MvtFeature {
            id: Some(0),
            tags,
            r#type: Some(GeomType::Point as i32),
            geometry: vec![9, 20, 20],
        };
        Tile {
            layers: vec![Layer {
                version: 2,
                name: name.into(),
                features: vec![feature],
                keys: keys.iter().map(|k| k.to_string()).collect(),
                values,
                extent: Some(4096),
            }],
        }
        .encode_to_vec()
    }

    fn text(s: &str) -> Value {
        Value {
            string_value: Some(s.into()),
            ..Value::default()
        }
    }

    #[test]
    fn schema_drift_is_counted_not_dropped() {
        let tile = t(1, 2);
        let int = |n: i64| Value {
            int_value: Some(n),
            ..Value::default()
        };
        // Blank and non-numeric text ids cannot name an image.
        for bad in ["", "  ", "abc123", "-5", "0"] {
            let d = decode_image_layer(
                tile,
                &one_layer("image", &["id"], vec![text(bad)], vec![0, 0]),
            )
            .unwrap();
            assert_eq!((d.images.len(), d.bad_ids), (0, 1), "{bad:?}");
            assert!(d.drifted());
        }
        // A decimal text id is an id (the Graph API's own form).
        let d = decode_image_layer(
            tile,
            &one_layer("image", &["id"], vec![text("42")], vec![0, 0]),
        )
        .unwrap();
        assert_eq!(d.images[0].id, 42);
        assert!(!d.drifted());
        // A missing id.
        let d = decode_image_layer(tile, &one_layer("image", &["x"], vec![int(1)], vec![0, 0]))
            .unwrap();
        assert_eq!(d.bad_ids, 1);
        // Wrong types: captured_at as text, is_pano as an integer.
        let body = one_layer(
            "image",
            &["id", "captured_at", "is_pano"],
            vec![int(7), text("2020"), int(1)],
            vec![0, 0, 1, 1, 2, 2],
        );
        let d = decode_image_layer(tile, &body).unwrap();
        assert_eq!((d.images.len(), d.bad_types), (1, 2));
        assert_eq!(
            (d.images[0].captured_at_ms, d.images[0].is_pano),
            (None, None)
        );
        // Layers, but no `image` layer.
        let d = decode_image_layer(
            tile,
            &one_layer("sequence", &["id"], vec![text("s")], vec![0, 0]),
        )
        .unwrap();
        assert!(d.missing_image_layer && d.drifted());
        // An empty body is an empty tile, not drift.
        assert!(!decode_image_layer(tile, &[]).unwrap().drifted());
    }

    #[test]
    fn a_decompression_bomb_is_refused_without_decoding() {
        use std::io::Write;
        // One layer with 8 million empty values (16 MiB), gzipped to a few KB.
        let mut layer = Vec::new();
        for _ in 0..8_000_000 {
            layer.extend_from_slice(&[0x22, 0x00]); // field 4 (values), empty
        }
        let mut body = vec![0x1a];
        let mut n = layer.len();
        while n >= 0x80 {
            body.push((n as u8 & 0x7f) | 0x80);
            n >>= 7;
        }
        body.push(n as u8);
        body.extend_from_slice(&layer);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&body).unwrap();
        let gz = gz.finish().unwrap();
        assert!(gz.len() < 100_000, "{}", gz.len());
        let e = decode_image_layer(t(1, 2), &gz).unwrap_err();
        assert!(matches!(e, TileError::TooMuchWork { .. }), "{e}");
        assert!(e.to_string().contains("property keys and values"), "{e}");
    }

    #[test]
    fn wire_walker_rejects_garbage_without_panicking() {
        for body in [&[0x1a, 0xff][..], &[0x1a, 0x05, 0x00], &[0x0f], &[0xff; 11]] {
            assert!(check_work(t(1, 2), body).is_err(), "{body:?}");
        }
    }
}
