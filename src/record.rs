//! The per-image record: a defensive, typed view of an image's Graph API JSON
//! plus what mlyexport adds. Pure: parsing and repair only, no I/O.
//!
//! On disk, `downloads/<grid>/<id>.json` holds every field the API returned
//! (except the signed `thumb_*_url` fields, which are secrets) at the top level,
//! and one object `"mlyexport"` with what the tool adds ([`DownloadInfo`]). A
//! file written by the old Python tool (`jsons/<id>.json`) has the API fields
//! only; it parses too, with `download` left `None`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::{ImageId, LonLat, PositionSource};

/// The key under which mlyexport's own fields live in `<id>.json`.
pub const TOOL_KEY: &str = "mlyexport";

/// Version of the `<id>.json` layout (`schemas/image.schema.json`).
pub const IMAGE_SCHEMA_VERSION: u32 = 1;

/// The Graph API fields mlyexport asks for in a search (besides one
/// `thumb_*_url`). Enough to download and describe an image without a
/// per-image entity call.
pub const SEARCH_FIELDS: &[&str] = &[
    "id",
    "captured_at",
    "geometry",
    "computed_geometry",
    "compass_angle",
    "computed_compass_angle",
    "altitude",
    "computed_altitude",
    "sequence",
    "is_pano",
    "camera_type",
    "make",
    "model",
    "creator",
    "width",
    "height",
    "exif_orientation",
    "quality_score",
];

/// What mlyexport adds to an image's record after downloading it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DownloadInfo {
    pub schema_version: u32,
    /// The grid id, which is also the folder name.
    pub grid: String,
    /// The rendition: `256`, `1024`, `2048` or `original`.
    pub size: String,
    /// File name of the JPEG, relative to the grid folder.
    pub file: String,
    /// Size of the JPEG in bytes as downloaded.
    pub bytes: u64,
    /// SHA-256 of the JPEG as downloaded, lowercase hex.
    pub sha256: String,
    /// Pixel width and height of the downloaded JPEG (not of the original upload).
    pub pixel_width: u32,
    pub pixel_height: u32,
    /// When the download finished, UTC.
    pub downloaded_at: DateTime<Utc>,
    pub tool_version: String,
    /// Problems found in the API's data and how they were handled,
    /// e.g. `altitude_unsigned_wrapped`, `no_position`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The API's `altitude` repaired, in metres, when it came unsigned-wrapped
    /// (the API's value is kept as sent in `altitude`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub altitude_repaired: Option<f64>,
}

/// A typed view of one image. Every field may be missing in the API's data.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRecord {
    pub id: ImageId,
    /// Capture time, UTC, millisecond precision.
    pub captured_at: Option<DateTime<Utc>>,
    /// Camera GPS position (`geometry`).
    pub original_position: Option<LonLat>,
    /// SfM position (`computed_geometry`).
    pub computed_position: Option<LonLat>,
    /// Degrees clockwise from true north, 0..360.
    pub compass_angle: Option<f64>,
    pub computed_compass_angle: Option<f64>,
    /// Metres above sea level, repaired when the API wrapped a negative value.
    pub altitude: Option<f64>,
    pub computed_altitude: Option<f64>,
    pub sequence: Option<String>,
    pub is_pano: Option<bool>,
    pub camera_type: Option<String>,
    pub make: Option<String>,
    pub model: Option<String>,
    pub creator_username: Option<String>,
    pub creator_id: Option<String>,
    pub organization_id: Option<String>,
    /// Width and height of the original upload, pixels.
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub download: Option<DownloadInfo>,
    /// Problems found while parsing (e.g. `altitude_unsigned_wrapped`).
    pub warnings: Vec<String>,
}

/// Why a JSON object is not an image record.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("not a JSON object")]
    NotObject,
    #[error("missing or invalid `id` ({0})")]
    Id(String),
}

impl ImageRecord {
    /// Parses one image object. Only `id` is required; every other field is
    /// read defensively (wrong types count as absent).
    pub fn from_value(v: &Value) -> Result<Self, RecordError> {
        Self::from_map(v.as_object().ok_or(RecordError::NotObject)?)
    }

    /// Parses one image object given as a map (see [`ImageRecord::from_value`]).
    pub fn from_map(obj: &Map<String, Value>) -> Result<Self, RecordError> {
        let id = match obj.get("id") {
            Some(Value::String(s)) => s.parse::<ImageId>().ok(),
            Some(Value::Number(n)) => n.as_u64().and_then(ImageId::new),
            _ => None,
        }
        .ok_or_else(|| RecordError::Id(obj.get("id").map(|v| v.to_string()).unwrap_or_default()))?;

        let mut warnings = Vec::new();
        let altitude = obj.get("altitude").and_then(Value::as_f64).and_then(|a| {
            let (fixed, wrapped) = repair_altitude(a);
            if wrapped {
                warnings.push("altitude_unsigned_wrapped".to_string());
            }
            fixed
        });
        let computed_altitude = obj
            .get("computed_altitude")
            .and_then(Value::as_f64)
            .and_then(|a| repair_altitude(a).0);
        let download = obj
            .get(TOOL_KEY)
            .and_then(|d| serde_json::from_value::<DownloadInfo>(d.clone()).ok());
        let creator = obj.get("creator").and_then(Value::as_object);
        let rec = ImageRecord {
            id,
            captured_at: obj.get("captured_at").and_then(parse_time),
            original_position: obj.get("geometry").and_then(parse_point),
            computed_position: obj.get("computed_geometry").and_then(parse_point),
            compass_angle: obj.get("compass_angle").and_then(parse_angle),
            computed_compass_angle: obj.get("computed_compass_angle").and_then(parse_angle),
            altitude,
            computed_altitude,
            sequence: str_field(obj, "sequence"),
            is_pano: obj.get("is_pano").and_then(Value::as_bool),
            camera_type: str_field(obj, "camera_type"),
            make: str_field(obj, "make"),
            model: str_field(obj, "model"),
            creator_username: creator.and_then(|c| str_field(c, "username")),
            creator_id: creator.and_then(|c| id_like(c.get("id")?)),
            organization_id: obj
                .get("organization")
                .and_then(|o| id_like(o.get("id").unwrap_or(o))),
            width: obj
                .get("width")
                .and_then(Value::as_u64)
                .and_then(|w| u32::try_from(w).ok()),
            height: obj
                .get("height")
                .and_then(Value::as_u64)
                .and_then(|w| u32::try_from(w).ok()),
            download,
            warnings,
        };
        Ok(rec)
    }

    /// The position to use: the preferred source, falling back to the other.
    /// Returns the position and which source it came from.
    pub fn position(&self, prefer: PositionSource) -> Option<(LonLat, PositionSource)> {
        let c = self
            .computed_position
            .map(|p| (p, PositionSource::Computed));
        let o = self
            .original_position
            .map(|p| (p, PositionSource::Original));
        match prefer {
            PositionSource::Computed => c.or(o),
            PositionSource::Original => o.or(c),
        }
    }

    /// The compass angle matching [`ImageRecord::position`]'s choice.
    pub fn direction(&self, prefer: PositionSource) -> Option<f64> {
        match prefer {
            PositionSource::Computed => self.computed_compass_angle.or(self.compass_angle),
            PositionSource::Original => self.compass_angle.or(self.computed_compass_angle),
        }
    }

    /// Distance in metres between the original and computed positions.
    pub fn position_offset_m(&self) -> Option<f64> {
        Some(self.original_position?.distance_m(self.computed_position?))
    }
}

/// Repairs an altitude the API returned as an unsigned-wrapped integer
/// (a negative altitude read as 2^32 - x or 2^64 - x). Returns the value
/// (or `None` when it is not plausible) and whether it was wrapped.
pub fn repair_altitude(a: f64) -> (Option<f64>, bool) {
    const TWO32: f64 = 4_294_967_296.0;
    const TWO64: f64 = 18_446_744_073_709_551_616.0;
    let plausible = |x: f64| x.is_finite() && (-12_000.0..=100_000.0).contains(&x);
    if plausible(a) {
        return (Some(a), false);
    }
    for wrap in [TWO32, TWO64] {
        let fixed = a - wrap;
        if plausible(fixed) {
            return (Some(fixed), true);
        }
    }
    (None, false)
}

fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .and_then(DateTime::from_timestamp_millis),
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|d| d.with_timezone(&Utc))
            .or_else(|| {
                s.parse::<i64>()
                    .ok()
                    .and_then(DateTime::from_timestamp_millis)
            }),
        _ => None,
    }
}

fn parse_point(v: &Value) -> Option<LonLat> {
    let c = v.get("coordinates")?.as_array()?;
    if c.len() < 2 {
        return None;
    }
    LonLat::new(c[0].as_f64()?, c[1].as_f64()?)
}

fn parse_angle(v: &Value) -> Option<f64> {
    let a = v.as_f64()?;
    a.is_finite().then(|| a.rem_euclid(360.0))
}

fn str_field(obj: &Map<String, Value>, key: &str) -> Option<String> {
    obj.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn id_like(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_a_full_record_defensively() {
        let v = json!({
            "id": "135511895288847", "captured_at": 1563721072184_i64,
            "geometry": {"type": "Point", "coordinates": [-108.57, 39.06]},
            "computed_geometry": {"type": "Point", "coordinates": "bad"},
            "compass_angle": -23.26, "altitude": 4294967291.5,
            "creator": {"username": "alice", "id": "42"}, "is_pano": "yes",
        });
        let r = ImageRecord::from_value(&v).unwrap();
        assert_eq!(r.id.get(), 135511895288847);
        assert_eq!(r.captured_at.unwrap().timestamp_millis(), 1563721072184);
        assert!(r.computed_position.is_none());
        assert_eq!(
            r.position(PositionSource::Computed).unwrap().1,
            PositionSource::Original
        );
        assert!((r.compass_angle.unwrap() - 336.74).abs() < 1e-9);
        assert_eq!(r.altitude, Some(-4.5));
        assert_eq!(r.warnings, vec!["altitude_unsigned_wrapped"]);
        assert_eq!(r.is_pano, None);
        assert_eq!(r.creator_username.as_deref(), Some("alice"));
    }

    #[test]
    fn never_invents_a_position() {
        let r = ImageRecord::from_value(&json!({"id": "7"})).unwrap();
        assert!(r.position(PositionSource::Computed).is_none());
        assert!(ImageRecord::from_value(&json!({"id": "../7"})).is_err());
        assert!(ImageRecord::from_value(&json!([1])).is_err());
    }

    #[test]
    fn altitude_repair() {
        assert_eq!(repair_altitude(12.0), (Some(12.0), false));
        assert_eq!(repair_altitude(4_294_967_286.0), (Some(-10.0), true));
        assert_eq!(repair_altitude(1e30), (None, false));
    }
}
