//! The rows every output is made of, shared by `layers` and `coverage`:
//! image rows built from records (compact, interned, in scan order), the
//! grid cells and their coverage figures, the sequence lines; how values are
//! rounded and times written; each layer's columns ([`schema`]) and CSV text
//! cells ([`csv`]). Pure: no files, no GDAL, no threads, no terminal.

pub(crate) mod csv;
pub(crate) mod schema;

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use geo::MultiPolygon;
use serde::Serialize;

use crate::model::{Bbox, ImageId, LonLat, PositionSource};
use crate::record::ImageRecord;

/// Errors of the pure layer model (re-exported as `layers::LayersError`).
#[derive(Debug, thiserror::Error, PartialEq)]
#[allow(missing_docs)] // each variant's #[error] text is its documentation
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
    /// Its position in the string table.
    pub(crate) fn index(self) -> usize {
        self.0 as usize
    }
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

/// Appends the relative path of image `id`'s JPEG in grid `grid` (inside
/// the input folder) to `out`.
pub(crate) fn push_jpg_path(out: &mut String, layout: FileLayout, grid: &str, id: ImageId) {
    use std::fmt::Write as _;
    let _ = match layout {
        FileLayout::Grid => write!(out, "{grid}/{id}.jpg"),
        FileLayout::Legacy => write!(out, "images/{id}.jpg"),
        FileLayout::LegacySegments => write!(out, "{grid}/images/{id}.jpg"),
    };
}

/// What turns a [`schema::Value`] into text besides the value: the string
/// table of its [`Sym`]s and the folder layout of its JPEG paths.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lookup<'a> {
    pub(crate) strings: &'a Interner,
    pub(crate) layout: FileLayout,
}

impl<'a> Lookup<'a> {
    /// The text of a value, `None` for [`schema::Value::Null`] (and an
    /// unknown string or time); numbers as Rust displays them.
    pub(crate) fn text<'v>(&self, v: &'v schema::Value<'v>) -> Option<std::borrow::Cow<'v, str>>
    where
        'a: 'v,
    {
        use schema::Value as V;
        use std::borrow::Cow;
        Some(match v {
            V::Null => return None,
            V::Text(s) => Cow::Borrowed(*s),
            V::Owned(s) => Cow::Borrowed(s.as_str()),
            V::Sym(s) => Cow::Borrowed(self.strings.get(*s)?),
            V::Id(id) => Cow::Owned(id.to_string()),
            V::Jpg { grid, id } => {
                let mut out = String::new();
                push_jpg_path(
                    &mut out,
                    self.layout,
                    self.strings.get(*grid).unwrap_or(""),
                    *id,
                );
                Cow::Owned(out)
            }
            V::Int(i) => Cow::Owned(i.to_string()),
            V::Real(x) => Cow::Owned(x.to_string()),
            V::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            V::Millis(ms) => Cow::Owned(iso_ms_from_millis(*ms)?),
        })
    }
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

/// The coverage of one grid cell. Figures that cannot be known are `None`
/// (e.g. `listed` without a run record, densities without a cell box).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct CellCoverage {
    pub grid: String,
    /// `[min_lon, min_lat, max_lon, max_lat]`.
    pub bbox: Option<Bbox>,
    /// The cell clipped to the study-area polygon (`fetch --aoi`), when one
    /// was used; the layers draw it instead of the box.
    #[serde(skip)]
    pub shape: Option<MultiPolygon<f64>>,
    /// Images the listing found (from the run record, or the listing file).
    pub listed: Option<u64>,
    /// Images whose metadata was read from disk.
    pub downloaded: u64,
    /// Images that failed to download in the last run.
    pub failed: Option<u64>,
    /// `complete`, `truncated`, `failed`, `pending` or `unknown`.
    pub listing: &'static str,
    /// True only when every search box was answered below the API's cap.
    pub listing_complete: Option<bool>,
    /// Downloaded images without any position (counted, not drawn).
    pub without_position: u64,
    pub panoramas: u64,
    /// Panoramas / images whose `is_pano` is known, 0..1, 4 decimals.
    pub pano_share: Option<f64>,
    pub first_capture: Option<String>,
    pub last_capture: Option<String>,
    /// Mean months (30.44 days) from the newest capture to `as_of`, 2 decimals.
    pub months_since_newest: Option<f64>,
    pub sequences: u64,
    pub creators: u64,
    /// Area of the cell on the sphere, km², 6 decimals.
    pub area_km2: Option<f64>,
    /// Downloaded images per km², 3 decimals.
    pub images_per_km2: Option<f64>,
    /// Median distance between consecutive images (capture order) of one
    /// sequence inside the cell, metres, 2 decimals.
    pub median_spacing_m: Option<f64>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// 2020-09-13T12:26:40Z, in epoch milliseconds: [`rec`]'s times count from it.
    pub(crate) const T0: i64 = 1_600_000_000_000;

    /// An image captured `t` milliseconds after [`T0`].
    pub(crate) fn rec(id: u64, seq: &str, t: i64, lon: f64, lat: f64) -> ImageRecord {
        ImageRecord::from_value(&json!({
            "id": id.to_string(), "sequence": seq, "captured_at": T0 + t,
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
}
