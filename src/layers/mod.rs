//! Layer rows built from image records (compact, interned, in scan order), the
//! sequence lines through them, and the writers of each format. This module is
//! pure: no files, no GDAL, no threads (those live in `read`, `gpkg` and
//! `commands::layers`); it must not touch the terminal or the network.
#![allow(missing_docs)] // TODO(#12): document the public items of this module, then drop this line

pub(crate) mod csv;
pub(crate) mod geojson;
pub(crate) mod gpkg;
mod gpkg_index;
pub(crate) mod html;
pub(crate) mod ogr;
pub(crate) mod pg_sink;
pub(crate) mod postgis;
pub mod read;
pub(crate) mod rtree;
pub(crate) mod schema;
pub(crate) mod styles;
pub(crate) mod writer;

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::model::{Bbox, ImageId, LonLat, PositionSource};
use crate::record::ImageRecord;
use crate::runrecord::RunEntry;

/// Errors of the pure layer model.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LayersError {
    #[error("image `{0}` appears in more than one metadata file; keeping the first (grid `{1}`)")]
    DuplicateId(ImageId, String),
    #[error("more than {0} distinct strings in the metadata; cannot intern `{1}`")]
    TooManyStrings(usize, String),
}

/// Decimal places of every coordinate written (about 1 cm at the equator).
pub(crate) const COORD_DECIMALS: i32 = 7;

/// Rounds a coordinate to [`COORD_DECIMALS`] places.
pub(crate) fn round_coord(v: f64) -> f64 {
    round_to(v, COORD_DECIMALS)
}

/// Rounds `v` to `places` decimals (ties away from zero).
pub(crate) fn round_to(v: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (v * f).round() / f
}

/// Formats a UTC time as `YYYY-MM-DDTHH:MM:SS.SSSZ` (milliseconds, `Z`).
pub(crate) fn iso_ms(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Formats milliseconds since the epoch as [`iso_ms`]; `None` out of range.
pub(crate) fn iso_ms_from_millis(ms: i64) -> Option<String> {
    DateTime::from_timestamp_millis(ms).map(iso_ms)
}

/// A handle to an interned string; [`Sym::NONE`] stands for "absent".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Sym(u32);

impl Sym {
    pub(crate) const NONE: Sym = Sym(u32::MAX);
    pub(crate) fn is_none(self) -> bool {
        self == Sym::NONE
    }
}

/// A string table: each distinct string (grid, sequence, make, creator, ...)
/// is kept once, so a million rows stay small.
#[derive(Debug, Default, Clone)]
pub(crate) struct Interner {
    strings: Vec<Box<str>>,
    index: HashMap<Box<str>, u32>,
}

impl Interner {
    /// The handle of `s`, adding it when new.
    pub(crate) fn intern(&mut self, s: &str) -> Result<Sym, LayersError> {
        if let Some(&i) = self.index.get(s) {
            return Ok(Sym(i));
        }
        let i = u32::try_from(self.strings.len())
            .ok()
            .filter(|&i| i < u32::MAX)
            .ok_or_else(|| LayersError::TooManyStrings(u32::MAX as usize - 1, s.to_string()))?;
        self.strings.push(s.into());
        self.index.insert(s.into(), i);
        Ok(Sym(i))
    }

    /// Like [`Interner::intern`] for an optional string.
    pub(crate) fn intern_opt(&mut self, s: Option<&str>) -> Result<Sym, LayersError> {
        s.map_or(Ok(Sym::NONE), |s| self.intern(s))
    }

    /// How many strings are interned.
    pub(crate) fn len(&self) -> usize {
        self.strings.len()
    }
    /// The strings interned from position `start` on, in order: interning
    /// them in that order into another table gives the same handles.
    pub(crate) fn strings_from(&self, start: usize) -> &[Box<str>] {
        self.strings.get(start..).unwrap_or(&[])
    }

    /// The string of a handle, `None` for [`Sym::NONE`].
    pub(crate) fn get(&self, sym: Sym) -> Option<&str> {
        self.strings.get(sym.0 as usize).map(|s| &**s)
    }
}

/// How the JPEG of a row is found relative to the input folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileLayout {
    /// `<grid>/<id>.jpg` (written by `mlyexport fetch`).
    Grid,
    /// `images/<id>.jpg` (the old Python tool, a single run).
    Legacy,
    /// `<grid>/images/<id>.jpg` (the old Python tool's batch of segments).
    LegacySegments,
}

/// One image as a layer row: what every output needs, kept compact for a
/// million rows (about 112 bytes each): strings are [`Sym`]s into an
/// [`Interner`], and absent numbers are stored as NaN or a sentinel behind
/// accessors that return `Option` (hence no `PartialEq`: NaN is not equal to itself).
#[derive(Debug, Clone)]
pub(crate) struct ImageRow {
    pub id: ImageId,
    /// lon, lat; NaN when the image has no position (counted, not drawn).
    pos: [f64; 2],
    /// Which of the two positions `pos` is.
    pub source: PositionSource,
    /// Milliseconds since the epoch, UTC; `i64::MIN` when unknown.
    captured: i64,
    /// compass_angle, computed_compass_angle, altitude, offset_m; NaN when unknown.
    nums: [f64; 4],
    /// width, height of the original upload; 0 when unknown.
    size: [u32; 2],
    /// Bytes of the JPEG as downloaded; `u64::MAX` when unknown.
    jpg_bytes: u64,
    pub is_pano: Option<bool>,
    /// Whether the JPEG is on disk.
    pub has_jpg: bool,
    pub grid: Sym,
    pub sequence: Sym,
    pub camera_type: Sym,
    pub make: Sym,
    pub model: Sym,
    pub creator: Sym,
    pub creator_id: Sym,
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

impl ImageRow {
    /// Builds a row from a parsed record found in `grid`, using the position
    /// preferred by `prefer` (falling back to the other one).
    pub(crate) fn from_record(
        rec: &ImageRecord,
        grid: &str,
        has_jpg: bool,
        prefer: PositionSource,
        strings: &mut Interner,
    ) -> Result<Self, LayersError> {
        let used = rec.position(prefer);
        let source = used.map_or(prefer, |(_, s)| s);
        let nan = f64::NAN;
        Ok(Self {
            id: rec.id,
            pos: used.map_or([nan, nan], |(p, _)| [p.lon, p.lat]),
            source,
            captured: rec.captured_at.map_or(i64::MIN, |t| t.timestamp_millis()),
            nums: [
                rec.compass_angle.unwrap_or(nan),
                rec.computed_compass_angle.unwrap_or(nan),
                rec.altitude.unwrap_or(nan),
                rec.position_offset_m().unwrap_or(nan),
            ],
            size: [rec.width.unwrap_or(0), rec.height.unwrap_or(0)],
            jpg_bytes: rec.download.as_ref().map_or(u64::MAX, |d| d.bytes),
            is_pano: rec.is_pano,
            has_jpg,
            grid: strings.intern(grid)?,
            sequence: strings.intern_opt(rec.sequence.as_deref())?,
            camera_type: strings.intern_opt(rec.camera_type.as_deref())?,
            make: strings.intern_opt(rec.make.as_deref())?,
            model: strings.intern_opt(rec.model.as_deref())?,
            creator: strings.intern_opt(rec.creator_username.as_deref())?,
            creator_id: strings.intern_opt(rec.creator_id.as_deref())?,
        })
    }

    /// The position drawn, `None` when the image has none.
    pub(crate) fn position(&self) -> Option<LonLat> {
        LonLat::new(self.pos[0], self.pos[1])
    }
    /// Capture time, milliseconds since the epoch, UTC.
    pub(crate) fn captured_ms(&self) -> Option<i64> {
        (self.captured != i64::MIN).then_some(self.captured)
    }
    /// Camera compass angle, degrees clockwise from north.
    pub(crate) fn compass_angle(&self) -> Option<f64> {
        finite(self.nums[0])
    }
    /// SfM compass angle, degrees clockwise from north.
    pub(crate) fn computed_compass_angle(&self) -> Option<f64> {
        finite(self.nums[1])
    }
    /// The compass angle matching the position used (falling back to the other).
    pub(crate) fn direction(&self) -> Option<f64> {
        match self.source {
            PositionSource::Computed => self.computed_compass_angle().or(self.compass_angle()),
            PositionSource::Original => self.compass_angle().or(self.computed_compass_angle()),
        }
    }
    /// Metres above sea level.
    pub(crate) fn altitude(&self) -> Option<f64> {
        finite(self.nums[2])
    }
    /// Metres between the original and the computed position.
    pub(crate) fn offset_m(&self) -> Option<f64> {
        finite(self.nums[3])
    }
    /// Width of the original upload, pixels.
    pub(crate) fn width(&self) -> Option<u32> {
        (self.size[0] > 0).then_some(self.size[0])
    }
    /// Height of the original upload, pixels.
    pub(crate) fn height(&self) -> Option<u32> {
        (self.size[1] > 0).then_some(self.size[1])
    }
    /// Size of the JPEG as downloaded.
    pub(crate) fn bytes(&self) -> Option<u64> {
        (self.jpg_bytes != u64::MAX).then_some(self.jpg_bytes)
    }
}

/// `computed` or `original`, as written in the layers.
pub(crate) fn source_name(s: PositionSource) -> &'static str {
    match s {
        PositionSource::Computed => "computed",
        PositionSource::Original => "original",
    }
}

/// The relative path of a row's JPEG inside the input folder, `None` when it
/// is not on disk.
pub(crate) fn file_path(layout: FileLayout, strings: &Interner, row: &ImageRow) -> Option<String> {
    let mut path = String::new();
    let grid = strings.get(row.grid).unwrap_or("");
    write_file_path(layout, grid, row, &mut path).then_some(path)
}

/// [`file_path`] into `out` (cleared first), for a row of grid `grid`;
/// false when the JPEG is not on disk.
pub(crate) fn write_file_path(
    layout: FileLayout,
    grid: &str,
    row: &ImageRow,
    out: &mut String,
) -> bool {
    use std::fmt::Write as _;
    out.clear();
    if !row.has_jpg {
        return false;
    }
    let _ = match layout {
        FileLayout::Grid => write!(out, "{grid}/{}.jpg", row.id),
        FileLayout::Legacy => write!(out, "images/{}.jpg", row.id),
        FileLayout::LegacySegments => write!(out, "{grid}/images/{}.jpg", row.id),
    };
    true
}

/// A grid cell as the layers and the coverage see it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GridInfo {
    pub grid: String,
    /// The cell's box; `None` when unknown (no run record and no positioned image).
    pub bbox: Option<Bbox>,
    /// The box clipped to the study-area polygon, when `fetch --aoi` was used.
    pub shape: Option<geo::MultiPolygon<f64>>,
    /// `complete`, `truncated`, `failed`, `pending`, or `unknown` without a run record.
    pub listing: &'static str,
    pub listed: Option<u64>,
    pub failed: Option<u64>,
}

/// Everything the writers need, built once and shared by every format.
#[derive(Debug, Clone)]
pub(crate) struct LayerSet {
    /// Image rows in scan order (grid, then id), including those without a position.
    pub rows: Vec<ImageRow>,
    pub strings: Interner,
    pub layout: FileLayout,
    pub sequences: Vec<SequenceLine>,
    pub cells: Vec<crate::coverage::CellCoverage>,
    pub runs: Vec<RunEntry>,
}

impl LayerSet {
    /// The relative path of a row's JPEG, `None` when it is not on disk.
    pub(crate) fn file_of(&self, row: &ImageRow) -> Option<String> {
        file_path(self.layout, &self.strings, row)
    }
    /// The string of a handle.
    pub(crate) fn s(&self, sym: Sym) -> Option<&str> {
        self.strings.get(sym)
    }
    /// Rows that have a position, in row order.
    pub(crate) fn drawn(&self) -> impl Iterator<Item = &ImageRow> {
        self.rows.iter().filter(|r| r.position().is_some())
    }
}

/// One sequence drawn as a line through its images in capture order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SequenceLine {
    pub sequence: Sym,
    /// The vertices, in capture order (ties by image id).
    pub points: Vec<LonLat>,
    pub first_ms: i64,
    pub last_ms: i64,
    /// Sum of the great-circle distances between consecutive vertices.
    pub length_m: f64,
}

/// The capture-ordered lines of every sequence with at least two positioned,
/// timed images; sorted by sequence id. Images without a sequence, a position
/// or a capture time are left out of the lines.
pub(crate) fn sequence_lines(rows: &[ImageRow], strings: &Interner) -> Vec<SequenceLine> {
    let mut groups: HashMap<Sym, Vec<(i64, ImageId, LonLat)>> = HashMap::new();
    for r in rows {
        if let (false, Some(p), Some(t)) = (r.sequence.is_none(), r.position(), r.captured_ms()) {
            groups.entry(r.sequence).or_default().push((t, r.id, p));
        }
    }
    let mut lines: Vec<SequenceLine> = groups
        .into_iter()
        .filter(|(_, v)| v.len() >= 2)
        .map(|(seq, mut v)| {
            v.sort_by_key(|&(t, id, _)| (t, id));
            let points: Vec<LonLat> = v.iter().map(|&(_, _, p)| p).collect();
            let length_m = points.windows(2).map(|w| w[0].distance_m(w[1])).sum();
            SequenceLine {
                sequence: seq,
                first_ms: v[0].0,
                last_ms: v[v.len() - 1].0,
                points,
                length_m,
            }
        })
        .collect();
    lines.sort_by(|a, b| strings.get(a.sequence).cmp(&strings.get(b.sequence)));
    lines
}

/// The box around the given positions, `None` when there are fewer than two
/// distinct ones on each axis.
pub(crate) fn extent(points: impl Iterator<Item = LonLat>) -> Option<Bbox> {
    let mut b: Option<[f64; 4]> = None;
    for p in points {
        let e = b.get_or_insert([p.lon, p.lat, p.lon, p.lat]);
        e[0] = e[0].min(p.lon);
        e[1] = e[1].min(p.lat);
        e[2] = e[2].max(p.lon);
        e[3] = e[3].max(p.lat);
    }
    let [a, b2, c, d] = b?;
    Bbox::new(a, b2, c, d).ok()
}

/// A cell's drawn shape: its AOI-clipped polygon, else its box;
/// exterior rings counter-clockwise, holes clockwise (RFC 7946 / OGC).
pub(crate) fn cell_shape(c: &crate::coverage::CellCoverage) -> Option<geo::MultiPolygon<f64>> {
    use geo::orient::{Direction, Orient};
    let shape = match (&c.shape, c.bbox) {
        (Some(s), _) => s.clone(),
        (None, Some(b)) => {
            let ring: Vec<(f64, f64)> = b.ring().iter().map(|&[x, y]| (x, y)).collect();
            geo::MultiPolygon(vec![geo::Polygon::new(ring.into(), vec![])])
        }
        (None, None) => return None,
    };
    Some(shape.orient(Direction::Default))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn rec(id: u64, seq: &str, t: i64, lon: f64, lat: f64) -> ImageRecord {
        ImageRecord::from_value(&json!({
            "id": id.to_string(), "sequence": seq, "captured_at": t,
            "geometry": {"type": "Point", "coordinates": [lon, lat]},
            "computed_geometry": {"type": "Point", "coordinates": [lon + 0.00001, lat]},
            "compass_angle": 10.0, "computed_compass_angle": 20.0, "is_pano": id.is_multiple_of(2),
            "creator": {"username": "alice", "id": "1"},
        }))
        .unwrap()
    }

    #[test]
    fn rows_intern_strings_and_pick_the_position() {
        let mut s = Interner::default();
        let r = rec(5, "seqA", 1000, 13.4, 52.5);
        let row = ImageRow::from_record(&r, "g1", true, PositionSource::Computed, &mut s).unwrap();
        assert_eq!(row.source, PositionSource::Computed);
        assert_eq!(row.direction(), Some(20.0));
        assert!((row.position().unwrap().lon - 13.40001).abs() < 1e-12);
        let o = ImageRow::from_record(&r, "g1", true, PositionSource::Original, &mut s).unwrap();
        assert_eq!(o.direction(), Some(10.0));
        assert_eq!(o.grid, row.grid);
        assert_eq!(s.get(row.creator), Some("alice"));
        assert!(row.offset_m().unwrap() > 0.6 && row.offset_m().unwrap() < 0.7);
    }

    #[test]
    fn no_position_is_kept_but_not_drawn() {
        let mut s = Interner::default();
        let r = ImageRecord::from_value(&json!({"id": "9"})).unwrap();
        let row = ImageRow::from_record(&r, "g", false, PositionSource::Computed, &mut s).unwrap();
        assert!(row.position().is_none());
        assert!(row.sequence.is_none());
    }

    #[test]
    fn sequences_follow_capture_order_and_need_two_points() {
        let mut s = Interner::default();
        let recs = [
            rec(3, "b", 3000, 0.0, 0.002),
            rec(1, "b", 1000, 0.0, 0.0),
            rec(2, "b", 2000, 0.0, 0.001),
            rec(4, "a", 5000, 1.0, 1.0),
        ];
        let rows: Vec<ImageRow> = recs
            .iter()
            .map(|r| ImageRow::from_record(r, "g", true, PositionSource::Original, &mut s).unwrap())
            .collect();
        let lines = sequence_lines(&rows, &s);
        assert_eq!(lines.len(), 1);
        let l = &lines[0];
        assert_eq!(s.get(l.sequence), Some("b"));
        assert_eq!(
            l.points.iter().map(|p| p.lat).collect::<Vec<_>>(),
            vec![0.0, 0.001, 0.002]
        );
        assert_eq!((l.first_ms, l.last_ms), (1000, 3000));
        assert!((l.length_m - 222.4).abs() < 0.5, "{}", l.length_m);
    }

    #[test]
    fn rounding_and_times() {
        assert_eq!(round_coord(13.123456789), 13.1234568);
        assert_eq!(round_coord(-0.00000004), -0.0);
        assert_eq!(
            iso_ms_from_millis(1563721072184).unwrap(),
            "2019-07-21T14:57:52.184Z"
        );
        assert!(extent([LonLat::new(1.0, 1.0).unwrap()].into_iter()).is_none());
    }
}
