//! The old Python tool (mapillary-download) as it really writes its folders,
//! and its per-image JSON mapped to the Graph API's field names. Pure: no I/O.
//!
//! Layout: `downloads/study_area_segments.txt` (`ID,min_lon,min_lat,max_lon,max_lat`
//! per line) and, per segment, `downloads/<ID>/images/<id>.jpg` beside
//! `downloads/<ID>/jsons/<id>.json`; a single run writes `images/` and
//! `jsons/` at the top of its output folder.
//!
//! Its JSON has the keys `image_name`, `latitude`, `longitude`, `captured_at`
//! (epoch ms), `heading`, `camera_parameters`, `camera_type`,
//! `computed_rotation` and `annotations`; position and heading are the
//! *computed* ones; `latitude 0, longitude 0` means no position; there is no
//! `id` key (the id is the file name's stem).

use serde_json::{Map, Value, json};

use crate::model::ImageId;

/// The old tool's segments file, at the top of its downloads folder.
pub(crate) const SEGMENTS_FILE: &str = "study_area_segments.txt";
/// The old tool's folder of JSONs (in a segment folder or at the top).
pub(crate) const JSONS_DIR: &str = "jsons";
/// The old tool's folder of images (in a segment folder or at the top).
pub(crate) const IMAGES_DIR: &str = "images";
/// The provenance `imported_from` value of an adopted image.
pub(crate) const IMPORTED_FROM: &str = "old tool";

/// Why an old JSON cannot be mapped.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LegacyError {
    #[error("not a JSON object: the old tool writes one object per image")]
    NotObject,
}

/// The old JSON `old` of image `id` (its file name's stem) with the API's
/// field names: `id`, `computed_geometry` (from `latitude`/`longitude`,
/// left out at (0, 0) or when not numbers), `computed_compass_angle` (from
/// `heading`), and `captured_at`, `camera_parameters`, `camera_type`,
/// `computed_rotation` as they are. Other keys are dropped.
pub(crate) fn to_api_fields(old: &Value, id: ImageId) -> Result<Map<String, Value>, LegacyError> {
    let obj = old.as_object().ok_or(LegacyError::NotObject)?;
    let mut out = Map::new();
    out.insert("id".into(), Value::String(id.to_string()));
    if let Some((lon, lat)) = position(obj) {
        out.insert(
            "computed_geometry".into(),
            json!({"type": "Point", "coordinates": [lon, lat]}),
        );
    }
    if let Some(h) = obj.get("heading").filter(|v| v.is_number()) {
        out.insert("computed_compass_angle".into(), h.clone());
    }
    for key in [
        "captured_at",
        "camera_parameters",
        "camera_type",
        "computed_rotation",
    ] {
        if let Some(v) = obj.get(key).filter(|v| !v.is_null()) {
            out.insert(key.into(), v.clone());
        }
    }
    Ok(out)
}

/// The old JSON's position as (lon, lat); `None` at (0, 0), the old tool's
/// mark for "the API had no computed position", or when not numbers.
pub(crate) fn position(obj: &Map<String, Value>) -> Option<(f64, f64)> {
    let lat = obj.get("latitude")?.as_f64()?;
    let lon = obj.get("longitude")?.as_f64()?;
    let valid = lat.is_finite() && lon.is_finite() && lat.abs() <= 90.0 && lon.abs() <= 180.0;
    (valid && !(lat == 0.0 && lon == 0.0)).then_some((lon, lat))
}

/// Whether JSON text is an old tool's image JSON: an object with
/// `image_name` and without `id`.
pub(crate) fn is_old_json(bytes: &[u8]) -> bool {
    serde_json::from_slice::<Map<String, Value>>(bytes)
        .is_ok_and(|o| o.contains_key("image_name") && !o.contains_key("id"))
}

/// Whether the old JSON says (0, 0): a missing position, not a place.
#[cfg(test)]
pub(crate) fn is_zero_position(old: &Value) -> bool {
    let num = |k: &str| old.get(k).and_then(Value::as_f64);
    num("latitude") == Some(0.0) && num("longitude") == Some(0.0)
}

/// Why a `.jpg` is not a complete JPEG.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokenJpeg {
    #[error("empty file")]
    Empty,
    #[error("an HTML page, not a JPEG (likely the CDN's error page for an expired or refused URL)")]
    Html,
    #[error("not a JPEG (does not start with FF D8)")]
    NotJpeg,
    #[error("truncated JPEG (does not end with FF D9)")]
    Truncated,
    #[error("JPEG header unreadable: {0}")]
    Header(String),
}

/// Checks that `bytes` are a complete JPEG: starts with FF D8, ends with
/// FF D9 (trailing NUL padding or whitespace is not accepted), and its
/// header gives the pixel size, returned as (width, height).
pub(crate) fn check_jpeg(bytes: &[u8]) -> Result<(u32, u32), BrokenJpeg> {
    if bytes.is_empty() {
        return Err(BrokenJpeg::Empty);
    }
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        let head: Vec<u8> = bytes
            .iter()
            .skip_while(|b| b.is_ascii_whitespace())
            .take(64)
            .map(u8::to_ascii_lowercase)
            .collect();
        let html = head.starts_with(b"<!doctype html")
            || head.starts_with(b"<html")
            || head.starts_with(b"<?xml")
            || head.starts_with(b"<error");
        return Err(if html {
            BrokenJpeg::Html
        } else {
            BrokenJpeg::NotJpeg
        });
    }
    if !bytes.ends_with(&[0xFF, 0xD9]) {
        return Err(BrokenJpeg::Truncated);
    }
    image::ImageReader::with_format(std::io::Cursor::new(bytes), image::ImageFormat::Jpeg)
        .into_dimensions()
        .map_err(|e| BrokenJpeg::Header(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> ImageId {
        ImageId::new(n).unwrap()
    }

    fn old(lat: f64, lon: f64) -> Value {
        json!({
            "image_name": "42.jpg", "latitude": lat, "longitude": lon,
            "captured_at": 1_600_000_000_000_i64, "heading": 91.5,
            "camera_parameters": [0.8, 0.0, 0.0], "camera_type": "perspective",
            "computed_rotation": [0.1, 0.2, 0.3], "annotations": []
        })
    }

    #[test]
    fn keys_map_to_api_fields() {
        let m = to_api_fields(&old(52.5, 13.4), id(42)).unwrap();
        assert_eq!(m["id"], "42");
        assert_eq!(m["computed_geometry"]["coordinates"], json!([13.4, 52.5]));
        assert_eq!(m["computed_compass_angle"], 91.5);
        assert_eq!(m["captured_at"], 1_600_000_000_000_i64);
        assert_eq!(m["camera_type"], "perspective");
        assert!(m.get("image_name").is_none() && m.get("annotations").is_none());
        let rec = crate::record::ImageRecord::from_map(&m).unwrap();
        assert_eq!(rec.id, id(42));
        assert!(rec.computed_position.is_some() && rec.original_position.is_none());
        assert!(rec.captured_at.is_some());
    }

    #[test]
    fn zero_zero_is_no_position() {
        let v = old(0.0, 0.0);
        assert!(is_zero_position(&v));
        let m = to_api_fields(&v, id(1)).unwrap();
        assert!(m.get("computed_geometry").is_none());
        // (0, lon) is a place on the equator.
        assert!(to_api_fields(&old(0.0, 5.0), id(1)).unwrap()["computed_geometry"].is_object());
        assert_eq!(
            to_api_fields(&json!([1]), id(1)),
            Err(LegacyError::NotObject)
        );
    }

    #[test]
    fn broken_jpegs_are_named() {
        assert_eq!(check_jpeg(b""), Err(BrokenJpeg::Empty));
        assert_eq!(
            check_jpeg(b"<!DOCTYPE html><html>expired</html>"),
            Err(BrokenJpeg::Html)
        );
        assert_eq!(check_jpeg(b"GIF89a"), Err(BrokenJpeg::NotJpeg));
        assert_eq!(
            check_jpeg(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0]),
            Err(BrokenJpeg::Truncated)
        );
        assert!(matches!(
            check_jpeg(&[0xFF, 0xD8, 0xFF, 0xD9]),
            Err(BrokenJpeg::Header(_))
        ));
        let mut good = Vec::new();
        image::RgbImage::new(3, 2)
            .write_to(
                &mut std::io::Cursor::new(&mut good),
                image::ImageFormat::Jpeg,
            )
            .unwrap();
        assert_eq!(check_jpeg(&good), Ok((3, 2)));
        assert_eq!(
            check_jpeg(&good[..good.len() - 100]),
            Err(BrokenJpeg::Truncated)
        );
    }

    #[test]
    fn old_json_is_told_from_ours() {
        assert!(is_old_json(br#"{"image_name": "42.jpg", "latitude": 0}"#));
        assert!(!is_old_json(br#"{"id": "42", "image_name": "42.jpg"}"#));
        assert!(!is_old_json(br#"[1]"#));
    }
}
