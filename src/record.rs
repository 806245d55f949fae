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
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::model::{ImageId, LonLat, PositionSource, clip};

/// The key under which mlyexport's own fields live in `<id>.json`.
pub(crate) const TOOL_KEY: &str = "mlyexport";

/// Version of the `<id>.json` layout (`schemas/image.schema.json`).
pub(crate) const IMAGE_SCHEMA_VERSION: u32 = 1;

/// The Graph API fields mlyexport asks for in a search (besides one
/// `thumb_*_url`). Enough to download and describe an image without a
/// per-image entity call.
pub(crate) const SEARCH_FIELDS: &[&str] = &[
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
    /// Version of this block's layout (see `schemas/image.schema.json`).
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
    /// Pixel width of the downloaded JPEG (not of the original upload).
    pub pixel_width: u32,
    /// Pixel height of the downloaded JPEG.
    pub pixel_height: u32,
    /// When the download finished, UTC.
    pub downloaded_at: DateTime<Utc>,
    /// The mlyexport version that downloaded it.
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
    /// The image's Mapillary id.
    pub id: ImageId,
    /// Capture time, UTC, millisecond precision; absent when outside 2000 to
    /// 2099 (a warning says so).
    pub captured_at: Option<DateTime<Utc>>,
    /// Camera GPS position (`geometry`).
    pub original_position: Option<LonLat>,
    /// SfM position (`computed_geometry`).
    pub computed_position: Option<LonLat>,
    /// Degrees clockwise from true north, 0..360.
    pub compass_angle: Option<f64>,
    /// The SfM camera heading, degrees clockwise from true north, 0..360.
    pub computed_compass_angle: Option<f64>,
    /// Metres above sea level, repaired when the API wrapped a negative value.
    pub altitude: Option<f64>,
    /// The SfM altitude, metres.
    pub computed_altitude: Option<f64>,
    /// The sequence (capture session) id.
    pub sequence: Option<String>,
    /// Whether the image is a 360° panorama.
    pub is_pano: Option<bool>,
    /// The API's camera projection (`perspective`, `fisheye`, `equirectangular`, `spherical`).
    pub camera_type: Option<String>,
    /// Camera maker, as uploaded.
    pub make: Option<String>,
    /// Camera model, as uploaded.
    pub model: Option<String>,
    /// The uploader's user name (untrusted text: neutralise before display).
    pub creator_username: Option<String>,
    /// The uploader's user id.
    pub creator_id: Option<String>,
    /// The organisation the image belongs to, if any.
    pub organization_id: Option<String>,
    /// Width of the original upload, pixels.
    pub width: Option<u32>,
    /// Height of the original upload, pixels.
    pub height: Option<u32>,
    /// What mlyexport added when it downloaded the image (none for a bare listing).
    pub download: Option<DownloadInfo>,
    /// Problems found while parsing (`altitude_unsigned_wrapped`,
    /// `captured_at_out_of_range`).
    pub warnings: Vec<String>,
}

/// Why a JSON object is not an image record.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // each variant's #[error] text is its documentation
pub enum RecordError {
    #[error("not a JSON object ({0})")]
    NotObject(#[source] serde_json::Error),
    #[error("missing or invalid `id` ({0})")]
    Id(String),
}

/// The fields mlyexport reads, borrowed from the JSON text unparsed; each is
/// then parsed on its own, so a field of the wrong type counts as absent
/// instead of failing the record. Other fields are skipped.
#[derive(Deserialize)]
struct RawFields<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    captured_at: Option<&'a RawValue>,
    #[serde(borrow, default)]
    geometry: Option<&'a RawValue>,
    #[serde(borrow, default)]
    computed_geometry: Option<&'a RawValue>,
    #[serde(borrow, default)]
    compass_angle: Option<&'a RawValue>,
    #[serde(borrow, default)]
    computed_compass_angle: Option<&'a RawValue>,
    #[serde(borrow, default)]
    altitude: Option<&'a RawValue>,
    #[serde(borrow, default)]
    computed_altitude: Option<&'a RawValue>,
    #[serde(borrow, default)]
    sequence: Option<&'a RawValue>,
    #[serde(borrow, default)]
    is_pano: Option<&'a RawValue>,
    #[serde(borrow, default)]
    camera_type: Option<&'a RawValue>,
    #[serde(borrow, default)]
    make: Option<&'a RawValue>,
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    #[serde(borrow, default)]
    creator: Option<&'a RawValue>,
    #[serde(borrow, default)]
    organization: Option<&'a RawValue>,
    #[serde(borrow, default)]
    width: Option<&'a RawValue>,
    #[serde(borrow, default)]
    height: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "mlyexport")]
    tool: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawCreator<'a> {
    #[serde(borrow, default)]
    username: Option<&'a RawValue>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawPoint {
    coordinates: Vec<f64>,
}

impl ImageRecord {
    /// Parses one image object from JSON text. Only `id` is required; every
    /// other field is read defensively (wrong types count as absent).
    pub(crate) fn from_slice(json: &[u8]) -> Result<Self, RecordError> {
        // serde would also accept an array for a struct: only objects are records.
        if json.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(RecordError::NotObject(serde::de::Error::custom(
                "not an object",
            )));
        }
        let raw: RawFields<'_> = serde_json::from_slice(json).map_err(RecordError::NotObject)?;
        let id = raw
            .id
            .and_then(|r| match serde_json::from_str::<Value>(r.get()).ok()? {
                Value::String(s) => s.parse::<ImageId>().ok(),
                Value::Number(n) => n.as_u64().and_then(ImageId::new),
                _ => None,
            })
            .ok_or_else(|| RecordError::Id(raw.id.map(|r| clip(r.get())).unwrap_or_default()))?;

        let mut warnings = Vec::new();
        let altitude = num(raw.altitude).and_then(|a| {
            let (fixed, wrapped) = repair_altitude(a);
            if wrapped {
                warnings.push("altitude_unsigned_wrapped".to_string());
            }
            fixed
        });
        let creator = raw
            .creator
            .and_then(|r| serde_json::from_str::<RawCreator<'_>>(r.get()).ok());
        let captured_at = raw
            .captured_at
            .and_then(|r| parse_time(&serde_json::from_str(r.get()).ok()?))
            .and_then(|t| {
                let plausible = CAPTURE_TIMES.contains(&t.timestamp_millis());
                if !plausible {
                    warnings.push("captured_at_out_of_range".to_string());
                }
                plausible.then_some(t)
            });
        Ok(ImageRecord {
            id,
            captured_at,
            original_position: point(raw.geometry),
            computed_position: point(raw.computed_geometry),
            compass_angle: num(raw.compass_angle).and_then(angle),
            computed_compass_angle: num(raw.computed_compass_angle).and_then(angle),
            altitude,
            computed_altitude: num(raw.computed_altitude).and_then(|a| repair_altitude(a).0),
            sequence: id_text(raw.sequence, &mut warnings),
            is_pano: raw.is_pano.and_then(|r| serde_json::from_str(r.get()).ok()),
            camera_type: text(raw.camera_type, &mut warnings),
            make: text(raw.make, &mut warnings),
            model: text(raw.model, &mut warnings),
            creator_username: creator
                .as_ref()
                .and_then(|c| text(c.username, &mut warnings)),
            creator_id: creator
                .as_ref()
                .and_then(|c| serde_json::from_str(c.id?.get()).ok())
                .and_then(|v| id_like(&v, &mut warnings)),
            organization_id: raw
                .organization
                .and_then(|r| serde_json::from_str::<Value>(r.get()).ok())
                .and_then(|v| id_like(v.get("id").unwrap_or(&v), &mut warnings)),
            width: num_u32(raw.width),
            height: num_u32(raw.height),
            download: raw
                .tool
                .and_then(|r| serde_json::from_str::<DownloadInfo>(r.get()).ok()),
            warnings,
        })
    }

    /// Parses one image object (see [`ImageRecord::from_slice`]).
    #[cfg(test)]
    pub(crate) fn from_value(v: &Value) -> Result<Self, RecordError> {
        Self::from_slice(&serde_json::to_vec(v).unwrap_or_default())
    }

    /// Parses one image object given as a map (see [`ImageRecord::from_slice`]).
    pub(crate) fn from_map(obj: &Map<String, Value>) -> Result<Self, RecordError> {
        Self::from_slice(&serde_json::to_vec(obj).unwrap_or_default())
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
    pub(crate) fn direction(&self, prefer: PositionSource) -> Option<f64> {
        match prefer {
            PositionSource::Computed => self.computed_compass_angle.or(self.compass_angle),
            PositionSource::Original => self.compass_angle.or(self.computed_compass_angle),
        }
    }

    /// Distance in metres between the original and computed positions.
    pub(crate) fn position_offset_m(&self) -> Option<f64> {
        Some(self.original_position?.distance_m(self.computed_position?))
    }
}

/// Repairs an altitude the API returned as an unsigned-wrapped integer
/// (a negative altitude read as 2^32 - x or 2^64 - x). Returns the value
/// (or `None` when it is not plausible) and whether it was wrapped.
pub(crate) fn repair_altitude(a: f64) -> (Option<f64>, bool) {
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

/// Capture times taken as real, in epoch milliseconds: from 2000-01-01
/// to 2100-01-01 (UTC, end excluded); a time outside is absent, with the
/// record warning `captured_at_out_of_range`. Bounds, not facts: Mapillary
/// began in 2013 and times before 2000 are mostly camera clocks never set
/// (a real older photo would lose its time), and the end is fixed, not
/// "now", so that parsing stays pure. Inside them every time has a four-digit
/// year, as EXIF and the GeoPackage need.
const CAPTURE_TIMES: std::ops::Range<i64> = 946_684_800_000..4_102_444_800_000;

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

fn num(r: Option<&RawValue>) -> Option<f64> {
    serde_json::from_str::<f64>(r?.get())
        .ok()
        .filter(|v| v.is_finite())
}

fn num_u32(r: Option<&RawValue>) -> Option<u32> {
    u32::try_from(serde_json::from_str::<u64>(r?.get()).ok()?).ok()
}

/// Longest free text kept (user name, camera make and model), in bytes:
/// longer text is cut there (at a character boundary), with a warning. A
/// bound against hostile files, far above any real value; every such string
/// is kept for the whole run, so it bounds the memory a file can claim.
pub(crate) const MAX_TEXT_BYTES: usize = 256;
/// Longest id kept (sequence, creator, organisation), in bytes: a longer one
/// is dropped with a warning (cutting it could merge two ids).
pub(crate) const MAX_ID_BYTES: usize = 64;

fn text(r: Option<&RawValue>, warnings: &mut Vec<String>) -> Option<String> {
    let s: String = serde_json::from_str(r?.get()).ok()?;
    let t = s.trim();
    if t.len() <= MAX_TEXT_BYTES {
        return (!t.is_empty()).then(|| t.to_string());
    }
    let mut end = MAX_TEXT_BYTES;
    while !t.is_char_boundary(end) {
        end -= 1;
    }
    push_once(warnings, "text_truncated");
    Some(t[..end].to_string())
}

/// An id given as a JSON string.
fn id_text(r: Option<&RawValue>, warnings: &mut Vec<String>) -> Option<String> {
    let s: String = serde_json::from_str(r?.get()).ok()?;
    let t = s.trim();
    bounded_id(t.to_string(), warnings).filter(|t| !t.is_empty())
}

fn bounded_id(id: String, warnings: &mut Vec<String>) -> Option<String> {
    if id.len() > MAX_ID_BYTES {
        push_once(warnings, "id_too_long");
        return None;
    }
    Some(id)
}

fn push_once(warnings: &mut Vec<String>, w: &str) {
    if !warnings.iter().any(|x| x == w) {
        warnings.push(w.to_string());
    }
}

fn point(r: Option<&RawValue>) -> Option<LonLat> {
    let p: RawPoint = serde_json::from_str(r?.get()).ok()?;
    match p.coordinates[..] {
        [lon, lat, ..] => LonLat::new(lon, lat),
        _ => None,
    }
}

fn angle(a: f64) -> Option<f64> {
    a.is_finite().then(|| a.rem_euclid(360.0))
}

fn id_like(v: &Value, warnings: &mut Vec<String>) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => bounded_id(s.clone(), warnings),
        Value::Number(n) => bounded_id(n.to_string(), warnings),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn long_text_is_cut_and_long_ids_dropped() {
        let name = "é".repeat(400_000);
        let v = json!({
            "id": "7", "creator": {"username": name, "id": "9".repeat(65)},
            "sequence": "s".repeat(65), "make": " Canon ", "model": "m".repeat(256),
        });
        let r = ImageRecord::from_value(&v).unwrap();
        let user = r.creator_username.unwrap();
        assert_eq!(user.len(), MAX_TEXT_BYTES);
        assert!(name.starts_with(&user));
        assert_eq!((r.sequence, r.creator_id), (None, None));
        assert_eq!(r.make.as_deref(), Some("Canon"));
        assert_eq!(r.model.map(|m| m.len()), Some(256));
        assert_eq!(r.warnings, ["id_too_long", "text_truncated"]);
    }

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

    /// `fixtures/api/images.json`: a search answer as the Graph API sends it
    /// (`docs/mapillary-api.md` §1.2), one image with every field and one
    /// unprocessed panorama without the optional ones.
    #[test]
    fn parses_the_api_answer_fixture() {
        let answer: Value =
            serde_json::from_str(include_str!("../fixtures/api/images.json")).unwrap();
        let items = answer["data"].as_array().unwrap();
        let full = ImageRecord::from_value(&items[0]).unwrap();
        assert_eq!(full.id.get(), 135511895288847);
        assert_eq!(full.captured_at.unwrap().timestamp_millis(), 1563721072184);
        let gps = full.original_position.unwrap();
        assert_eq!((gps.lon, gps.lat), (8.53051597222, 47.37054972222));
        let (sfm, from) = full.position(PositionSource::Computed).unwrap();
        assert_eq!(from, PositionSource::Computed);
        assert_eq!((sfm.lon, sfm.lat), (8.53051597085, 47.37054912098));
        assert_eq!(full.compass_angle, Some(336.74));
        assert_eq!(full.computed_compass_angle, Some(1.2865829255371));
        assert_eq!(full.altitude, Some(1364.617));
        assert_eq!(full.computed_altitude, Some(1399.5043095825));
        assert_eq!(full.sequence.as_deref(), Some("7nfcwfvjdtphz7yj6zat6a"));
        assert_eq!(full.is_pano, Some(false));
        assert_eq!(full.camera_type.as_deref(), Some("perspective"));
        assert_eq!(full.make.as_deref(), Some("GoPro"));
        assert_eq!(full.model.as_deref(), Some("HERO8 Black"));
        assert_eq!(full.creator_username.as_deref(), Some("fixture_user"));
        assert_eq!(full.creator_id.as_deref(), Some("104214208486349"));
        assert_eq!(full.organization_id.as_deref(), Some("1805883732926354"));
        assert_eq!((full.width, full.height), (Some(4160), Some(3120)));
        assert!(full.warnings.is_empty(), "{:?}", full.warnings);

        let pano = ImageRecord::from_value(&items[1]).unwrap();
        assert_eq!(pano.id.get(), 4235112816526838);
        assert_eq!(pano.is_pano, Some(true));
        assert!(pano.computed_position.is_none() && pano.altitude.is_none());
        assert!(pano.make.is_none() && pano.organization_id.is_none());
        let (p, from) = pano.position(PositionSource::Computed).unwrap();
        assert_eq!(from, PositionSource::Original);
        assert_eq!((p.lon, p.lat), (8.5312, 47.3661));
    }

    #[test]
    fn never_invents_a_position() {
        let r = ImageRecord::from_value(&json!({"id": "7"})).unwrap();
        assert!(r.position(PositionSource::Computed).is_none());
        assert!(ImageRecord::from_value(&json!({"id": "../7"})).is_err());
        assert!(ImageRecord::from_value(&json!([1])).is_err());
    }

    #[test]
    fn capture_times_outside_2000_to_2100_are_absent_with_a_warning() {
        let at = |t: Value| ImageRecord::from_value(&json!({"id": "7", "captured_at": t})).unwrap();
        for t in [
            json!(-99_999_999_999_999_i64),   // year -1199
            json!(8_000_000_000_000_000_i64), // year 255479
            json!("9999-12-31T00:00:00Z"),
            json!(1000),
            json!(946_684_799_999_i64),
            json!(4_102_444_800_000_i64),
        ] {
            let r = at(t.clone());
            assert_eq!(r.captured_at, None, "{t}");
            assert_eq!(r.warnings, ["captured_at_out_of_range"], "{t}");
        }
        for t in [946_684_800_000_i64, 4_102_444_799_999] {
            let r = at(json!(t));
            assert_eq!(r.captured_at.unwrap().timestamp_millis(), t);
            assert!(r.warnings.is_empty());
        }
        // Not a time at all: absent, as before, without a warning.
        assert!(at(json!("soon")).warnings.is_empty());
    }

    #[test]
    fn an_invalid_id_is_quoted_clipped() {
        let huge = "9".repeat(900_000);
        let e = ImageRecord::from_value(&json!({"id": huge})).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.len() < 200 && msg.contains("99…"),
            "{}",
            &msg[..200.min(msg.len())]
        );
    }

    #[test]
    fn altitude_repair() {
        assert_eq!(repair_altitude(12.0), (Some(12.0), false));
        assert_eq!(repair_altitude(4_294_967_286.0), (Some(-10.0), true));
        assert_eq!(repair_altitude(1e30), (None, false));
    }
}
