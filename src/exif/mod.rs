//! GPS EXIF for a JPEG: builds the tags from an image record ([`ExifTags`])
//! and splices the EXIF APP1 segment (and, for panoramas, the XMP APP1) in by
//! walking the JPEG markers ([`embed`]); every other segment and the
//! compressed image data are copied byte for byte. Pure: bytes in, bytes out.
//! Must not touch files, the terminal, the network or global state (the
//! folder pass lives in [`pass`]).

mod jpeg;
pub(crate) mod pass;
mod tz;
mod xmp;

use chrono::{DateTime, Datelike, Timelike, Utc};
use exif::{Field, In, Rational, Tag, Value};

use crate::model::{ImageId, LonLat, PositionSource};
use crate::record::ImageRecord;

pub(crate) use tz::{LocalTime, TimeZones};

/// Most bytes of a JPEG read before its image data: a file whose segments
/// run further is refused ([`ExifError::HeadTooLong`]), so tagging one file
/// takes at most about twice this much memory, whatever the file holds.
pub(crate) const MAX_HEAD_BYTES: usize = jpeg::MAX_HEAD;

/// The licence and attribution Mapillary imagery is published under.
pub(crate) const LICENCE: &str = "CC BY-SA 4.0, Mapillary contributors";

/// Why a JPEG could not be tagged. The file is then left untouched.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExifError {
    #[error("not a JPEG: it starts with `{0}`, not `FF D8`")]
    NotJpeg(String),
    #[error("truncated JPEG: it ends with `{0}`, not the end-of-image marker `FF D9`")]
    NoEndMarker(String),
    #[error("corrupt JPEG: expected a marker at byte {offset}, found `{found}`")]
    BadMarker { offset: usize, found: String },
    #[error("corrupt JPEG: the segment at byte {offset} runs past the end of the file")]
    Truncated { offset: usize },
    #[error("corrupt JPEG: the frame header gives a size of {width}x{height} pixels")]
    ZeroSize { width: u32, height: u32 },
    #[error("corrupt JPEG: no frame header (SOF) before the first scan")]
    NoFrame,
    #[error("corrupt JPEG: no image data (SOS) before the end-of-image marker")]
    NoScan,
    #[error(
        "not a JPEG we can tag: its markers before the image data run past the first {limit} bytes \
         (metadata takes far less: a malformed file, e.g. a run of fill bytes or standalone markers)"
    )]
    HeadTooLong { limit: usize },
    #[error(
        "not a JPEG we can tag: more than {limit} marker segments before the image data \
         (a malformed file)"
    )]
    TooManySegments { limit: usize },
    #[error("the existing EXIF block cannot be read without losing tags: {0}")]
    ExistingExif(String),
    #[error("the EXIF block would be {0} bytes, more than the 65,527 a JPEG segment holds")]
    TooLarge(usize),
    #[error("cannot encode the EXIF block: {0}")]
    Encode(String),
}

/// Where the position and direction written come from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct GpsFix {
    pub position: LonLat,
    /// The source actually used (the preferred one or its fallback).
    pub source: PositionSource,
    /// Metres above sea level (negative below).
    pub altitude: Option<f64>,
    /// Degrees clockwise from true north, 0..360.
    pub direction: Option<f64>,
}

/// Everything mlyexport writes into one JPEG. Built from the image record
/// with [`ExifTags::from_record`]. With a position, the whole GPS IFD is
/// replaced, so no stale GPS tag of an earlier run or camera survives; any
/// other field left `None` is not written and an existing value of its tag
/// is kept. Also always written: ImageUniqueID (the Mapillary id), Copyright
/// ([`LICENCE`] and the creator) and the pixel size of the file; when
/// missing: ImageDescription (`Mapillary image <id>`) and the tags EXIF
/// requires of a JPEG; ExifVersion is raised to 0232 when it is older than
/// the 0231 that OffsetTimeOriginal needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ExifTags {
    pub id: ImageId,
    /// `None` when the record has no position: no GPS tags are written then.
    pub gps: Option<GpsFix>,
    /// Capture time, UTC (GPSDateStamp, GPSTimeStamp).
    pub captured_at: Option<DateTime<Utc>>,
    /// Capture time in the local time of the place (DateTimeOriginal,
    /// SubSecTimeOriginal, OffsetTimeOriginal); needs a position.
    pub local_time: Option<LocalTime>,
    /// The creator's Mapillary username.
    pub artist: Option<String>,
    pub make: Option<String>,
    pub model: Option<String>,
    /// Write XMP GPano tags.
    pub pano: bool,
}

impl ExifTags {
    /// The tags for one image. `prefer` picks the position and direction
    /// (falling back to the other source); the altitude follows the source
    /// actually used. The local time is found offline from the position.
    pub(crate) fn from_record(
        rec: &ImageRecord,
        prefer: PositionSource,
        zones: &TimeZones,
    ) -> Self {
        let gps = rec.position(prefer).map(|(position, source)| GpsFix {
            position,
            source,
            altitude: match source {
                PositionSource::Computed => rec.computed_altitude.or(rec.altitude),
                PositionSource::Original => rec.altitude.or(rec.computed_altitude),
            },
            direction: rec.direction(source),
        });
        let local_time = match (gps, rec.captured_at) {
            (Some(g), Some(t)) => Some(zones.local_time(g.position, t)),
            _ => None,
        };
        Self {
            id: rec.id,
            gps,
            captured_at: rec.captured_at,
            local_time,
            artist: rec.creator_username.clone(),
            make: rec.make.clone(),
            model: rec.model.clone(),
            pano: rec.is_pano == Some(true),
        }
    }

    /// The Copyright tag: the licence, and the creator when known.
    pub(crate) fn copyright(&self) -> String {
        match &self.artist {
            Some(a) => format!("{LICENCE} (creator: {a})"),
            None => LICENCE.to_string(),
        }
    }

    /// The ImageDescription tag, which names the Mapillary image.
    pub(crate) fn description(&self) -> String {
        format!("Mapillary image {}", self.id)
    }

    /// The fields to write, in no particular order.
    fn fields(&self) -> Vec<Field> {
        let mut f = vec![
            ascii(Tag::Copyright, &self.copyright()),
            ascii(Tag::ImageUniqueID, &self.id.to_string()),
        ];
        for (tag, v) in [
            (Tag::Artist, &self.artist),
            (Tag::Make, &self.make),
            (Tag::Model, &self.model),
        ] {
            if let Some(v) = v {
                f.push(ascii(tag, v));
            }
        }
        if let Some(lt) = &self.local_time {
            let t = lt.time;
            f.push(ascii(
                Tag::DateTimeOriginal,
                &t.format("%Y:%m:%d %H:%M:%S").to_string(),
            ));
            f.push(ascii(
                Tag::SubSecTimeOriginal,
                &format!("{:03}", t.timestamp_subsec_millis()),
            ));
            f.push(ascii(Tag::OffsetTimeOriginal, &t.format("%:z").to_string()));
        }
        if let Some(g) = self.gps {
            f.extend(self.gps_fields(g));
        }
        f
    }

    /// The GPS IFD's fields for the position `g`.
    fn gps_fields(&self, g: GpsFix) -> Vec<Field> {
        let r = |num, denom| Rational { num, denom };
        let (lat, lon) = (g.position.lat, g.position.lon);
        let mut f = vec![
            primary(Tag::GPSVersionID, Value::Byte(vec![2, 3, 0, 0])),
            ascii(Tag::GPSLatitudeRef, if lat < 0.0 { "S" } else { "N" }),
            rational(Tag::GPSLatitude, dms(lat)),
            ascii(Tag::GPSLongitudeRef, if lon < 0.0 { "W" } else { "E" }),
            rational(Tag::GPSLongitude, dms(lon)),
        ];
        if let Some(alt) = g.altitude {
            f.push(primary(
                Tag::GPSAltitudeRef,
                Value::Byte(vec![u8::from(alt < 0.0)]),
            ));
            let mm = (alt.abs() * 1000.0).round().min(f64::from(u32::MAX)) as u32;
            f.push(rational(Tag::GPSAltitude, vec![r(mm, 1000)]));
        }
        if let Some(t) = self.captured_at {
            let ms = t.second() * 1000 + t.timestamp_subsec_millis().min(999);
            f.push(rational(
                Tag::GPSTimeStamp,
                vec![r(t.hour(), 1), r(t.minute(), 1), r(ms, 1000)],
            ));
            f.push(ascii(
                Tag::GPSDateStamp,
                &format!("{:04}:{:02}:{:02}", t.year(), t.month(), t.day()),
            ));
        }
        if let Some(d) = g.direction {
            let centi = (d * 100.0).round() as u32 % 36_000;
            f.push(ascii(Tag::GPSImgDirectionRef, "T"));
            f.push(rational(Tag::GPSImgDirection, vec![r(centi, 100)]));
        }
        f.push(ascii(Tag::GPSMapDatum, "WGS-84"));
        f
    }
}

/// Degrees as EXIF degrees, minutes and seconds; the seconds keep six
/// decimals (3e-10 degree), well below the 1e-7 degree asked for.
fn dms(deg: f64) -> Vec<Rational> {
    const MICRO_ARCSEC_PER_DEG: u64 = 3_600_000_000;
    let total = (deg.abs() * MICRO_ARCSEC_PER_DEG as f64).round() as u64;
    let d = total / MICRO_ARCSEC_PER_DEG;
    let rest = total % MICRO_ARCSEC_PER_DEG;
    let m = rest / 60_000_000;
    let s = rest % 60_000_000;
    // All three fit in u32: d <= 180, m < 60, s < 6e7.
    let r = |num: u64, denom| Rational {
        num: num as u32,
        denom,
    };
    vec![r(d, 1), r(m, 1), r(s, 1_000_000)]
}

/// What happened to the XMP segment of a JPEG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum XmpOutcome {
    /// Not a panorama: any XMP is left as it is.
    NotPano,
    /// GPano tags written in mlyexport's own XMP packet.
    Written,
    /// GPano tags added to someone else's XMP packet, the rest of it kept.
    Merged,
    /// Someone else's XMP already has GPano tags: kept as it is.
    KeptForeignGpano,
    /// Someone else's XMP could not be edited safely: kept, no GPano written.
    KeptUnmergeable,
}

/// A tagged JPEG and what was done to its XMP.
#[derive(Debug, Clone, PartialEq)]
#[cfg(test)]
pub(crate) struct Embedded {
    pub bytes: Vec<u8>,
    pub xmp: XmpOutcome,
}

/// Writes `tags` into a JPEG and returns the new file. Only the EXIF APP1
/// segment (and, for panoramas, the XMP APP1) is added or replaced; every
/// other segment and the compressed data are copied unchanged. Existing EXIF
/// tags that mlyexport does not set are kept, the IFD1 thumbnail too.
/// Idempotent: embedding into the result gives the same bytes.
#[cfg(test)]
pub(crate) fn embed(jpeg: &[u8], tags: &ExifTags) -> Result<Vec<u8>, ExifError> {
    embed_detailed(jpeg, tags).map(|e| e.bytes)
}

/// [`embed`], also telling what was done to the XMP segment.
#[cfg(test)]
pub(crate) fn embed_detailed(jpeg: &[u8], tags: &ExifTags) -> Result<Embedded, ExifError> {
    let layout = jpeg::parse(jpeg)?;
    let head = new_head(jpeg, layout, tags)?;
    let mut bytes = head.bytes;
    bytes.extend_from_slice(&jpeg[head.scan_start..]);
    Ok(Embedded {
        bytes,
        xmp: head.xmp,
    })
}

/// The new start of a tagged JPEG: every byte before its first scan, with the
/// EXIF (and panorama XMP) segments written. The file's bytes from
/// `scan_start` on stay as they are, so they can be copied without reading them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NewHead {
    pub bytes: Vec<u8>,
    /// Where the first scan starts in the old file.
    pub scan_start: usize,
    pub xmp: XmpOutcome,
}

/// [`embed_detailed`] from the start of a file (`head`, its first bytes), its
/// length and its last two bytes. `Ok(None)`: the segments before the scan
/// run past `head`; read more of the file and ask again.
pub(crate) fn plan_head(
    head: &[u8],
    file_len: u64,
    last_two: [u8; 2],
    tags: &ExifTags,
) -> Result<Option<NewHead>, ExifError> {
    match jpeg::parse_head(head, file_len, last_two)? {
        Some(layout) => new_head(head, layout, tags).map(Some),
        None => Ok(None),
    }
}

fn new_head(jpeg: &[u8], layout: jpeg::Layout, tags: &ExifTags) -> Result<NewHead, ExifError> {
    use jpeg::{EXIF_HEADER, MAX_PAYLOAD, XMP_HEADER};
    let segs = &layout.segments;
    let exif_at = segs.iter().position(|s| s.is_app1_with(jpeg, EXIF_HEADER));
    let xmp_at = segs.iter().position(|s| s.is_app1_with(jpeg, XMP_HEADER));

    let old_tiff = exif_at.map(|i| &segs[i].payload(jpeg)[EXIF_HEADER.len()..]);
    let mut exif_payload = EXIF_HEADER.to_vec();
    exif_payload.extend(build_tiff(old_tiff, tags, (layout.width, layout.height))?);
    if exif_payload.len() > MAX_PAYLOAD {
        return Err(ExifError::TooLarge(exif_payload.len() - EXIF_HEADER.len()));
    }

    let (xmp_payload, xmp) = if tags.pano {
        let pano = xmp::Pano {
            width: layout.width,
            height: layout.height,
            heading: tags.gps.and_then(|g| g.direction),
        };
        match xmp_at.map(|i| xmp::classify(segs[i].payload(jpeg), &pano)) {
            None | Some(xmp::Existing::Ours) => (Some(pano.payload()), XmpOutcome::Written),
            Some(xmp::Existing::ForeignMerged(v)) if v.len() <= MAX_PAYLOAD => {
                (Some(v), XmpOutcome::Merged)
            }
            Some(xmp::Existing::ForeignWithGpano) => (None, XmpOutcome::KeptForeignGpano),
            Some(_) => (None, XmpOutcome::KeptUnmergeable),
        }
    } else {
        (None, XmpOutcome::NotPano)
    };

    let mut out = Vec::with_capacity(
        layout.scan_start + exif_payload.len() + xmp_payload.as_ref().map_or(0, Vec::len) + 8,
    );
    out.extend_from_slice(&jpeg[..2]);
    // A new EXIF segment goes right after SOI and any JFIF/JFXX APP0
    // segments; a new XMP segment right after the EXIF one.
    let insert_at = exif_at.unwrap_or_else(|| segs.iter().take_while(|s| s.marker == 0xE0).count());
    let new_xmp = xmp_payload.as_deref().filter(|_| xmp_at.is_none());
    for i in 0..=segs.len() {
        if i == insert_at {
            push_app1(&mut out, &exif_payload);
            if let Some(x) = new_xmp {
                push_app1(&mut out, x);
            }
        }
        let Some(seg) = segs.get(i) else { break };
        if Some(i) == exif_at {
            continue;
        }
        match (&xmp_payload, Some(i) == xmp_at) {
            (Some(x), true) => push_app1(&mut out, x),
            _ => out.extend_from_slice(&jpeg[seg.start..seg.end]),
        }
    }
    Ok(NewHead {
        bytes: out,
        scan_start: layout.scan_start,
        xmp,
    })
}

fn push_app1(out: &mut Vec<u8>, payload: &[u8]) {
    // Callers check `payload.len() <= MAX_PAYLOAD`, so the length fits.
    let len = u16::try_from(payload.len() + 2).unwrap_or(u16::MAX);
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
}

/// The data an IFD points at (thumbnail, strips), cut out of the old TIFF.
fn pointed_data(
    old: &exif::Exif,
    ifd: In,
    offsets: Tag,
    lengths: Tag,
) -> Result<Option<Vec<&[u8]>>, ExifError> {
    let (Some(o), Some(l)) = (old.get_field(offsets, ifd), old.get_field(lengths, ifd)) else {
        return Ok(None);
    };
    let buf = old.buf();
    let offs: Vec<u32> = o.value.iter_uint().map(|i| i.collect()).unwrap_or_default();
    let lens: Vec<u32> = l.value.iter_uint().map(|i| i.collect()).unwrap_or_default();
    if offs.len() != lens.len() || offs.is_empty() {
        return Err(ExifError::ExistingExif(format!(
            "{offsets} and {lengths} of {ifd} do not match"
        )));
    }
    offs.iter()
        .zip(&lens)
        .map(|(&o, &l)| {
            let (o, l) = (o as usize, l as usize);
            buf.get(o..o.saturating_add(l)).ok_or_else(|| {
                ExifError::ExistingExif(format!(
                    "{offsets} of {ifd} points at bytes {o}..{} of a {}-byte block",
                    o.saturating_add(l),
                    buf.len()
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// The TIFF structure of the new EXIF block: the old fields minus the ones
/// we set, plus ours, plus the tags EXIF requires of a JPEG when they are
/// missing (as exiftool adds them), and the pixel size of the file (`size`).
/// Without old EXIF it is big-endian, as exiftool writes.
fn build_tiff(
    old_tiff: Option<&[u8]>,
    tags: &ExifTags,
    size: (u32, u32),
) -> Result<Vec<u8>, ExifError> {
    let old = old_tiff
        .map(|t| exif::Reader::new().read_raw(t.to_vec()))
        .transpose()
        .map_err(|e| ExifError::ExistingExif(e.to_string()))?;
    let ours = our_fields(old.as_ref(), tags, size);
    let (kept, images) = match &old {
        Some(old) => (
            kept_fields(old, &ours, tags.gps.is_some()),
            embedded_images(old)?,
        ),
        None => (Vec::new(), Vec::new()),
    };
    let little_endian = old.as_ref().is_some_and(exif::Exif::little_endian);
    encode(&ours, &kept, &images, little_endian)
}

/// A field of the primary IFD.
fn primary(tag: Tag, value: Value) -> Field {
    Field {
        tag,
        ifd_num: In::PRIMARY,
        value,
    }
}

/// An ASCII field of the primary IFD.
fn ascii(tag: Tag, s: &str) -> Field {
    primary(tag, Value::Ascii(vec![s.as_bytes().to_vec()]))
}

/// A rational field of the primary IFD.
fn rational(tag: Tag, v: Vec<Rational>) -> Field {
    primary(tag, Value::Rational(v))
}

/// The fields we write: the tags, a description unless one is there, a
/// newer ExifVersion when a local time needs it, the pixel size, and the
/// fields a reader requires when the old EXIF lacks them.
fn our_fields(old: Option<&exif::Exif>, tags: &ExifTags, size: (u32, u32)) -> Vec<Field> {
    let mut ours = tags.fields();
    let has = |tag| old.is_some_and(|o| o.get_field(tag, In::PRIMARY).is_some());
    // A description already there (the camera's or the user's) is kept: the
    // id is in ImageUniqueID anyway.
    if !has(Tag::ImageDescription) {
        let text = tags.description().into_bytes();
        ours.push(primary(Tag::ImageDescription, Value::Ascii(vec![text])));
    }
    // OffsetTimeOriginal exists from EXIF 2.31 on.
    let old_version = old
        .and_then(|o| o.get_field(Tag::ExifVersion, In::PRIMARY))
        .and_then(|f| match &f.value {
            Value::Undefined(v, _) => Some(v.clone()),
            _ => None,
        });
    if tags.local_time.is_some()
        && old_version
            .as_ref()
            .is_some_and(|v| v.as_slice() < &b"0231"[..])
    {
        ours.push(primary(
            Tag::ExifVersion,
            Value::Undefined(b"0232".to_vec(), 0),
        ));
    }
    ours.push(primary(Tag::PixelXDimension, Value::Long(vec![size.0])));
    ours.push(primary(Tag::PixelYDimension, Value::Long(vec![size.1])));
    for (tag, value) in required_fields() {
        if !has(tag) && !ours.iter().any(|f| f.tag == tag) {
            ours.push(primary(tag, value));
        }
    }
    ours
}

/// The fields EXIF readers expect, with their usual values.
fn required_fields() -> [(Tag, Value); 8] {
    let dpi72 = || Value::Rational(vec![Rational { num: 72, denom: 1 }]);
    [
        (Tag::XResolution, dpi72()),
        (Tag::YResolution, dpi72()),
        (Tag::ResolutionUnit, Value::Short(vec![2])),
        (Tag::YCbCrPositioning, Value::Short(vec![1])),
        (Tag::ExifVersion, Value::Undefined(b"0232".to_vec(), 0)),
        (
            Tag::ComponentsConfiguration,
            Value::Undefined(vec![1, 2, 3, 0], 0),
        ),
        (Tag::FlashpixVersion, Value::Undefined(b"0100".to_vec(), 0)),
        (Tag::ColorSpace, Value::Short(vec![1])),
    ]
}

/// The old fields kept: all but unknown values, the old GPS fields when we
/// write a position, and those we write ourselves (each once).
fn kept_fields<'a>(old: &'a exif::Exif, ours: &[Field], replace_gps: bool) -> Vec<&'a Field> {
    let mut seen: Vec<(In, Tag)> = ours.iter().map(|f| (f.ifd_num, f.tag)).collect();
    let mut kept = Vec::new();
    for f in old.fields() {
        if matches!(f.value, Value::Unknown(..))
            || (replace_gps && f.tag.context() == exif::Context::Gps)
            || seen.contains(&(f.ifd_num, f.tag))
        {
            continue;
        }
        seen.push((f.ifd_num, f.tag));
        kept.push(f);
    }
    kept
}

/// An IFD's image data: its IFD, the data, and whether it is a JPEG (else strips).
type IfdData<'a> = (In, Vec<&'a [u8]>, bool);

/// The thumbnail or strip data the old EXIF points to, re-attached explicitly.
fn embedded_images(old: &exif::Exif) -> Result<Vec<IfdData<'_>>, ExifError> {
    let mut images = Vec::new();
    for ifd in [In::PRIMARY, In::THUMBNAIL] {
        if old.get_field(Tag::TileOffsets, ifd).is_some() {
            return Err(ExifError::ExistingExif(format!(
                "tiled image data in {ifd}"
            )));
        }
        let jpeg = pointed_data(
            old,
            ifd,
            Tag::JPEGInterchangeFormat,
            Tag::JPEGInterchangeFormatLength,
        )?;
        if let Some(j) = jpeg {
            images.push((ifd, j, true));
        }
        if let Some(s) = pointed_data(old, ifd, Tag::StripOffsets, Tag::StripByteCounts)? {
            images.push((ifd, s, false));
        }
    }
    Ok(images)
}

/// The TIFF bytes of `ours`, then `kept`, with `images` attached.
fn encode(
    ours: &[Field],
    kept: &[&Field],
    images: &[IfdData<'_>],
    little_endian: bool,
) -> Result<Vec<u8>, ExifError> {
    let mut w = exif::experimental::Writer::new();
    for f in ours {
        w.push_field(f);
    }
    for f in kept {
        w.push_field(f);
    }
    for (ifd, data, is_jpeg) in images {
        if *is_jpeg {
            w.set_jpeg(data[0], *ifd);
        } else {
            w.set_strips(data, *ifd);
        }
    }
    let mut cur = std::io::Cursor::new(Vec::new());
    w.write(&mut cur, little_endian)
        .map_err(|e| ExifError::Encode(e.to_string()))?;
    Ok(cur.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let px: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .encode(&px, w, h, image::ExtendedColorType::Rgb8)
            .unwrap();
        out
    }

    fn zones() -> &'static TimeZones {
        static Z: std::sync::OnceLock<TimeZones> = std::sync::OnceLock::new();
        Z.get_or_init(TimeZones::new)
    }

    fn tags(v: serde_json::Value) -> ExifTags {
        let rec = ImageRecord::from_value(&v).unwrap();
        ExifTags::from_record(&rec, PositionSource::Computed, zones())
    }

    fn full() -> ExifTags {
        tags(json!({
            "id": "135511895288847", "captured_at": 1_625_133_600_123_i64,
            "geometry": {"type": "Point", "coordinates": [13.1, 52.1]},
            "computed_geometry": {"type": "Point", "coordinates": [13.400_000_1, 52.520_000_7]},
            "compass_angle": 10.0, "computed_compass_angle": 359.996,
            "altitude": 4_294_967_291.5_f64, "computed_altitude": 34.5,
            "creator": {"username": "alice", "id": "42"}, "make": "GoPro", "model": "Max",
        }))
    }

    fn read(jpeg: &[u8]) -> exif::Exif {
        exif::Reader::new()
            .read_from_container(&mut std::io::Cursor::new(jpeg))
            .unwrap()
    }

    fn deg(e: &exif::Exif, tag: Tag) -> f64 {
        let Value::Rational(r) = &e.get_field(tag, In::PRIMARY).unwrap().value else {
            panic!("{tag} is not rational")
        };
        r[0].to_f64() + r[1].to_f64() / 60.0 + r[2].to_f64() / 3600.0
    }

    fn text(e: &exif::Exif, tag: Tag) -> String {
        match e.get_field(tag, In::PRIMARY).map(|f| &f.value) {
            Some(Value::Ascii(v)) => String::from_utf8_lossy(&v[0]).into_owned(),
            Some(v) => v.display_as(tag).to_string(),
            None => String::new(),
        }
    }

    #[test]
    fn dms_is_exact_to_a_ten_millionth_of_a_degree() {
        for v in [
            0.0,
            1e-7,
            52.520_000_7,
            179.999_999_99,
            89.999_999_9,
            12.345_678_9,
        ] {
            let r = dms(v);
            let back = r[0].to_f64() + r[1].to_f64() / 60.0 + r[2].to_f64() / 3600.0;
            assert!((back - v).abs() < 1e-9, "{v} -> {back}");
            assert!(r[1].num < 60 && r[2].num < 60_000_000);
        }
    }

    #[test]
    fn tags_follow_the_chosen_source() {
        let t = full();
        let g = t.gps.unwrap();
        assert_eq!(g.source, PositionSource::Computed);
        assert_eq!(g.altitude, Some(34.5));
        let rec = ImageRecord::from_value(&json!({
            "id": "1", "geometry": {"type": "Point", "coordinates": [13.1, 52.1]},
            "computed_geometry": {"type": "Point", "coordinates": [13.4, 52.5]},
            "altitude": 4_294_967_291.5_f64, "computed_altitude": 34.5,
            "compass_angle": 10.0, "computed_compass_angle": 20.0,
        }))
        .unwrap();
        let o = ExifTags::from_record(&rec, PositionSource::Original, zones());
        let g = o.gps.unwrap();
        assert_eq!(
            (g.position.lon, g.altitude, g.direction),
            (13.1, Some(-4.5), Some(10.0))
        );
        assert_eq!(t.local_time.as_ref().unwrap().zone, "Europe/Berlin");
        assert_eq!(
            t.copyright(),
            "CC BY-SA 4.0, Mapillary contributors (creator: alice)"
        );
    }

    #[test]
    fn writes_every_tag_and_keeps_the_image_data() {
        let src = jpeg(32, 16);
        let out = embed(&src, &full()).unwrap();
        let e = read(&out);
        assert!((deg(&e, Tag::GPSLatitude) - 52.520_000_7).abs() < 1e-9);
        assert!((deg(&e, Tag::GPSLongitude) - 13.400_000_1).abs() < 1e-9);
        assert_eq!(text(&e, Tag::GPSLatitudeRef), "N");
        assert_eq!(text(&e, Tag::GPSLongitudeRef), "E");
        assert_eq!(text(&e, Tag::GPSAltitude), "34.5");
        assert_eq!(text(&e, Tag::GPSImgDirectionRef), "T");
        assert_eq!(text(&e, Tag::GPSImgDirection), "0");
        assert_eq!(text(&e, Tag::GPSDateStamp), "2021:07:01");
        assert_eq!(text(&e, Tag::GPSTimeStamp), "10:00:00.123");
        assert_eq!(text(&e, Tag::DateTimeOriginal), "2021:07:01 12:00:00");
        assert_eq!(text(&e, Tag::SubSecTimeOriginal), "123");
        assert_eq!(text(&e, Tag::OffsetTimeOriginal), "+02:00");
        assert_eq!(text(&e, Tag::ImageUniqueID), "135511895288847");
        assert_eq!(text(&e, Tag::Artist), "alice");
        assert_eq!(text(&e, Tag::Make), "GoPro");
        assert_eq!(text(&e, Tag::GPSVersionID), "2.3.0.0");
        let l = jpeg::parse(&src).unwrap();
        let m = jpeg::parse(&out).unwrap();
        assert_eq!(src[l.scan_start..], out[m.scan_start..]);
        assert_eq!(
            out[..m.segments[0].end],
            src[..l.segments[0].end],
            "APP0 kept first"
        );
        assert!(m.segments[1].is_app1_with(&out, jpeg::EXIF_HEADER));
        assert_eq!(embed(&out, &full()).unwrap(), out, "not idempotent");
    }

    #[test]
    fn southern_western_and_null_island() {
        for (lon, lat, lon_ref, lat_ref) in [
            (-58.381_559_2_f64, -34.603_684_3_f64, "W", "S"),
            (0.0, 0.0, "E", "N"),
        ] {
            let t = tags(json!({"id": "5", "computed_geometry":
                {"type": "Point", "coordinates": [lon, lat]}}));
            let e = read(&embed(&jpeg(8, 8), &t).unwrap());
            assert_eq!(text(&e, Tag::GPSLongitudeRef), lon_ref);
            assert_eq!(text(&e, Tag::GPSLatitudeRef), lat_ref);
            assert!((deg(&e, Tag::GPSLongitude) - lon.abs()).abs() < 1e-9);
            assert!((deg(&e, Tag::GPSLatitude) - lat.abs()).abs() < 1e-9);
            assert!(e.get_field(Tag::GPSAltitude, In::PRIMARY).is_none());
            assert!(e.get_field(Tag::GPSDateStamp, In::PRIMARY).is_none());
        }
    }

    #[test]
    fn no_position_writes_no_gps() {
        let t = tags(json!({"id": "5", "captured_at": 1_625_133_600_000_i64}));
        let e = read(&embed(&jpeg(8, 8), &t).unwrap());
        assert!(e.fields().all(|f| f.tag.context() != exif::Context::Gps));
        assert!(e.get_field(Tag::DateTimeOriginal, In::PRIMARY).is_none());
        assert_eq!(text(&e, Tag::ImageDescription), "Mapillary image 5");
    }

    /// A JPEG whose EXIF has Orientation, Software, an old GPS position and an
    /// IFD1 thumbnail.
    pub(crate) fn with_old_exif() -> (Vec<u8>, Vec<u8>) {
        let thumb = jpeg(8, 8);
        let fields = [
            Field {
                tag: Tag::Orientation,
                ifd_num: In::PRIMARY,
                value: Value::Short(vec![6]),
            },
            Field {
                tag: Tag::Software,
                ifd_num: In::PRIMARY,
                value: Value::Ascii(vec![b"OldCam 1.0".to_vec()]),
            },
            Field {
                tag: Tag::GPSLatitude,
                ifd_num: In::PRIMARY,
                value: Value::Rational(vec![(1, 1).into(), (0, 1).into(), (0, 1).into()]),
            },
            Field {
                tag: Tag::XResolution,
                ifd_num: In::PRIMARY,
                value: Value::Rational(vec![(300, 1).into()]),
            },
            Field {
                tag: Tag::ImageDescription,
                ifd_num: In::PRIMARY,
                value: Value::Ascii(vec![b"Holiday".to_vec()]),
            },
            Field {
                tag: Tag::ExifVersion,
                ifd_num: In::PRIMARY,
                value: Value::Undefined(b"0220".to_vec(), 0),
            },
            Field {
                tag: Tag::ResolutionUnit,
                ifd_num: In::PRIMARY,
                value: Value::Short(vec![3]),
            },
            Field {
                tag: Tag::PixelXDimension,
                ifd_num: In::PRIMARY,
                value: Value::Long(vec![4000]),
            },
            Field {
                tag: Tag::Compression,
                ifd_num: In::THUMBNAIL,
                value: Value::Short(vec![6]),
            },
        ];
        let mut w = exif::experimental::Writer::new();
        fields.iter().for_each(|f| w.push_field(f));
        w.set_jpeg(&thumb, In::THUMBNAIL);
        let mut tiff = std::io::Cursor::new(Vec::new());
        w.write(&mut tiff, true).unwrap();
        let mut payload = jpeg::EXIF_HEADER.to_vec();
        payload.extend(tiff.into_inner());
        let base = jpeg(32, 16);
        let mut out = base[..2].to_vec();
        push_app1(&mut out, &payload);
        out.extend_from_slice(&base[2..]);
        (out, thumb)
    }

    #[test]
    fn keeps_tags_it_does_not_set_and_the_thumbnail() {
        let (src, thumb) = with_old_exif();
        let out = embed(&src, &full()).unwrap();
        let e = read(&out);
        assert_eq!(
            text(&e, Tag::Orientation),
            "row 0 at right and column 0 at top"
        );
        assert_eq!(text(&e, Tag::Software), "OldCam 1.0");
        assert_eq!(
            text(&e, Tag::ImageDescription),
            "Holiday",
            "a description is kept"
        );
        assert_eq!(
            text(&e, Tag::ExifVersion),
            "2.32",
            "raised for OffsetTimeOriginal"
        );
        assert!((deg(&e, Tag::GPSLatitude) - 52.520_000_7).abs() < 1e-9);
        let off = e
            .get_field(Tag::JPEGInterchangeFormat, In::THUMBNAIL)
            .unwrap();
        let len = e
            .get_field(Tag::JPEGInterchangeFormatLength, In::THUMBNAIL)
            .unwrap();
        let (o, l) = (
            off.value.get_uint(0).unwrap() as usize,
            len.value.get_uint(0).unwrap() as usize,
        );
        assert_eq!(&e.buf()[o..o + l], &thumb[..]);
        assert!(e.little_endian(), "byte order of the old block kept");
        assert_eq!(text(&e, Tag::XResolution), "300", "existing values kept");
        assert_eq!(text(&e, Tag::ResolutionUnit), "cm", "existing values kept");
        assert_eq!(text(&e, Tag::ColorSpace), "sRGB", "required tags added");
        assert_eq!(text(&e, Tag::PixelXDimension), "32", "the file's own size");
        assert_eq!(embed(&out, &full()).unwrap(), out, "not idempotent");
        // One EXIF segment, replaced where it was.
        let segs = jpeg::parse(&out).unwrap().segments;
        assert_eq!(
            segs.iter()
                .filter(|s| s.is_app1_with(&out, jpeg::EXIF_HEADER))
                .count(),
            1
        );
        assert_eq!(segs[0].marker, 0xE1);
    }

    #[test]
    fn panoramas_get_gpano_with_the_file_size() {
        let mut t = full();
        t.pano = true;
        let done = embed_detailed(&jpeg(64, 32), &t).unwrap();
        assert_eq!(done.xmp, XmpOutcome::Written);
        let text = String::from_utf8_lossy(&done.bytes);
        assert!(text.contains("GPano:FullPanoWidthPixels=\"64\""));
        assert!(text.contains("GPano:FullPanoHeightPixels=\"32\""));
        let again = embed_detailed(&done.bytes, &t).unwrap();
        assert_eq!(again.bytes, done.bytes, "not idempotent");
    }

    #[test]
    fn other_segments_fill_bytes_and_foreign_xmp_are_kept() {
        let base = jpeg(16, 16);
        let mut xmp_payload = jpeg::XMP_HEADER.to_vec();
        xmp_payload.extend_from_slice(b"<x:xmpmeta><rdf:RDF></rdf:RDF></x:xmpmeta>");
        // SOI, APP0 (from the encoder), a COM segment after a fill byte, foreign XMP, the rest.
        let app0_end = jpeg::parse(&base).unwrap().segments[0].end;
        let mut src = base[..app0_end].to_vec();
        src.extend_from_slice(&[0xFF, 0xFF, 0xFE, 0x00, 0x06, b'h', b'e', b'l', b'o']);
        push_app1(&mut src, &xmp_payload);
        src.extend_from_slice(&base[app0_end..]);
        let out = embed_detailed(&src, &full()).unwrap();
        assert_eq!(out.xmp, XmpOutcome::NotPano);
        let segs = jpeg::parse(&out.bytes).unwrap().segments;
        let kinds: Vec<u8> = segs.iter().map(|s| s.marker).collect();
        assert_eq!(
            &kinds[..4],
            &[0xE0, 0xE1, 0xFE, 0xE1],
            "EXIF right after APP0"
        );
        assert_eq!(
            &out.bytes[segs[2].start..segs[2].end],
            &src[app0_end..app0_end + 9]
        );
        assert_eq!(segs[3].payload(&out.bytes), &xmp_payload[..]);
        assert_eq!(embed(&out.bytes, &full()).unwrap(), out.bytes);
    }

    #[test]
    fn a_block_too_big_for_one_segment_is_refused() {
        let base = jpeg(8, 8);
        let comment = Field {
            tag: Tag::UserComment,
            ifd_num: In::PRIMARY,
            value: Value::Undefined(vec![b'x'; 65_300], 0),
        };
        let mut w = exif::experimental::Writer::new();
        w.push_field(&comment);
        let mut tiff = std::io::Cursor::new(Vec::new());
        w.write(&mut tiff, false).unwrap();
        let mut payload = jpeg::EXIF_HEADER.to_vec();
        payload.extend(tiff.into_inner());
        let mut src = base[..2].to_vec();
        push_app1(&mut src, &payload);
        src.extend_from_slice(&base[2..]);
        assert!(matches!(embed(&src, &full()), Err(ExifError::TooLarge(n)) if n > 65_527));
    }

    #[test]
    fn corrupt_files_are_refused() {
        let j = jpeg(8, 8);
        assert!(matches!(
            embed(&j[..j.len() / 2], &full()),
            Err(ExifError::NoEndMarker(_))
        ));
        assert!(matches!(
            embed(b"<html>nope</html>", &full()),
            Err(ExifError::NotJpeg(_))
        ));
        let mut bad_exif = j[..2].to_vec();
        push_app1(&mut bad_exif, b"Exif\0\0II*\0\xff\xff\xff\x7f");
        bad_exif.extend_from_slice(&j[2..]);
        assert!(matches!(
            embed(&bad_exif, &full()),
            Err(ExifError::ExistingExif(_))
        ));
    }
}
