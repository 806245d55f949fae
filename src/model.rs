//! Small domain types with validating constructors; pure, no I/O.
//!
//! Conventions: longitude is x, latitude is y, both in decimal degrees (WGS 84,
//! EPSG:4326). Distances are metres unless a name says otherwise.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Errors from parsing or validating a domain value.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[allow(missing_docs)] // each variant's #[error] text is its documentation
pub enum ModelError {
    #[error("bbox `{0}` must be four comma-separated numbers: min_lon,min_lat,max_lon,max_lat")]
    BboxShape(String),
    #[error("bbox `{value}`: `{part}` is not a number")]
    BboxNumber { value: String, part: String },
    #[error("bbox `{0}`: longitudes must lie in -180..=180 and latitudes in -90..=90")]
    BboxRange(String),
    #[error(
        "bbox `{0}` has min_lon > max_lon; give the west edge first (boxes across the antimeridian are not supported: split them in two)"
    )]
    BboxLonOrder(String),
    #[error("bbox `{0}` has min_lat > max_lat; give the south edge first")]
    BboxLatOrder(String),
    #[error("bbox `{0}` has zero width or height")]
    BboxEmpty(String),
    #[error(
        "bbox `{0}` is narrower or lower than 0.000001 degrees (about 0.1 m); a study area or grid cell must be at least that wide and high"
    )]
    BboxTooSmall(String),
    #[error("image id `{0}` is not a decimal number of 1 to 20 digits")]
    ImageId(String),
    #[error(
        "grid id `{0}` may contain only letters, digits, `-` and `_` (1 to 64 characters), since it names a folder"
    )]
    GridId(String),
    #[error(
        "grid id `{0}` is reserved: `jsons`, `images` and `layers` (in any case) and names starting with `mlyexport` name the tool's own files and folders; rename the grid"
    )]
    GridIdReserved(String),
    #[error("unknown size `{0}`; use 256, 1024, 2048 or original")]
    ThumbSize(String),
}

/// Characters of an untrusted value quoted in a message before it is cut.
const CLIP_CHARS: usize = 64;

/// An untrusted value (from a file or the API) as a message quotes it: at
/// most 64 characters, then `…`, so a huge value cannot flood a line.
pub(crate) fn clip(value: &str) -> String {
    match value.char_indices().nth(CLIP_CHARS) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_string(),
    }
}

/// The least width and height, in degrees, of a study area or grid cell
/// (about 0.1 m): smaller boxes cannot be searched or split.
pub(crate) const MIN_AREA_SIDE_DEG: f64 = 1e-6;

/// True when a side of `deg` degrees is under [`MIN_AREA_SIDE_DEG`], with
/// a little slack: `10.000001 - 10` is a hair under 1e-6 in floating point.
pub(crate) fn below_min_side(deg: f64) -> bool {
    deg.is_nan() || deg < MIN_AREA_SIDE_DEG * 0.9999
}

/// A position: `lon` (x) and `lat` (y) in decimal degrees, WGS 84.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LonLat {
    /// Longitude, degrees east (x), -180..180.
    pub lon: f64,
    /// Latitude, degrees north (y), -90..90.
    pub lat: f64,
}

impl LonLat {
    /// A position, or `None` when either value is not finite or out of range.
    /// Never returns a made-up 0,0.
    pub fn new(lon: f64, lat: f64) -> Option<Self> {
        let ok = lon.is_finite()
            && lat.is_finite()
            && (-180.0..=180.0).contains(&lon)
            && (-90.0..=90.0).contains(&lat);
        ok.then_some(Self { lon, lat })
    }

    /// Great-circle distance in metres (haversine, mean Earth radius 6,371,008.8 m).
    pub fn distance_m(self, other: LonLat) -> f64 {
        const R: f64 = 6_371_008.8;
        let (p1, p2) = (self.lat.to_radians(), other.lat.to_radians());
        let dp = p2 - p1;
        let dl = (other.lon - self.lon).to_radians();
        let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * R * a.sqrt().asin()
    }
}

/// An axis-aligned box in degrees: x = longitude, y = latitude.
///
/// Invariants: all values finite and in range, `min_lon < max_lon`,
/// `min_lat < max_lat`. Boxes across the antimeridian are rejected.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(into = "[f64; 4]", try_from = "[f64; 4]")]
pub struct Bbox {
    min_lon: f64,
    min_lat: f64,
    max_lon: f64,
    max_lat: f64,
}

impl Bbox {
    /// Validates and builds a box from its west, south, east and north edges.
    pub fn new(min_lon: f64, min_lat: f64, max_lon: f64, max_lat: f64) -> Result<Self, ModelError> {
        let text = format!("{min_lon},{min_lat},{max_lon},{max_lat}");
        let vals = [min_lon, min_lat, max_lon, max_lat];
        if vals.iter().any(|v| !v.is_finite())
            || !(-180.0..=180.0).contains(&min_lon)
            || !(-180.0..=180.0).contains(&max_lon)
            || !(-90.0..=90.0).contains(&min_lat)
            || !(-90.0..=90.0).contains(&max_lat)
        {
            return Err(ModelError::BboxRange(text));
        }
        if min_lon > max_lon {
            return Err(ModelError::BboxLonOrder(text));
        }
        if min_lat > max_lat {
            return Err(ModelError::BboxLatOrder(text));
        }
        if min_lon == max_lon || min_lat == max_lat {
            return Err(ModelError::BboxEmpty(text));
        }
        Ok(Self {
            min_lon,
            min_lat,
            max_lon,
            max_lat,
        })
    }

    /// West edge, degrees.
    pub fn min_lon(&self) -> f64 {
        self.min_lon
    }
    /// South edge, degrees.
    pub fn min_lat(&self) -> f64 {
        self.min_lat
    }
    /// East edge, degrees.
    pub fn max_lon(&self) -> f64 {
        self.max_lon
    }
    /// North edge, degrees.
    pub fn max_lat(&self) -> f64 {
        self.max_lat
    }
    /// Refuses a box narrower or lower than `MIN_AREA_SIDE_DEG`: the
    /// check for every user-given study area and grid cell.
    pub fn check_min_side(&self) -> Result<(), ModelError> {
        if below_min_side(self.width()) || below_min_side(self.height()) {
            return Err(ModelError::BboxTooSmall(self.to_string()));
        }
        Ok(())
    }

    /// Width in degrees of longitude.
    pub fn width(&self) -> f64 {
        self.max_lon - self.min_lon
    }
    /// Height in degrees of latitude.
    pub fn height(&self) -> f64 {
        self.max_lat - self.min_lat
    }
    /// Area in square degrees (the unit of the API's 0.01 deg² limit).
    pub fn area_deg2(&self) -> f64 {
        self.width() * self.height()
    }

    /// Area in km² on a sphere of mean Earth radius (exact for a lon/lat box).
    pub fn area_km2(&self) -> f64 {
        const R_KM: f64 = 6_371.008_8;
        let dl = self.width().to_radians();
        let s = self.max_lat.to_radians().sin() - self.min_lat.to_radians().sin();
        (R_KM * R_KM * dl * s).abs()
    }

    /// True when `p` lies in the closed box.
    pub fn contains_closed(&self, p: LonLat) -> bool {
        p.lon >= self.min_lon
            && p.lon <= self.max_lon
            && p.lat >= self.min_lat
            && p.lat <= self.max_lat
    }

    /// True when `p` lies in the half-open box `[min, max)` on both axes.
    pub fn contains_half_open(&self, p: LonLat) -> bool {
        p.lon >= self.min_lon
            && p.lon < self.max_lon
            && p.lat >= self.min_lat
            && p.lat < self.max_lat
    }

    /// The smallest box holding both.
    pub fn union(&self, other: &Bbox) -> Bbox {
        Bbox {
            min_lon: self.min_lon.min(other.min_lon),
            min_lat: self.min_lat.min(other.min_lat),
            max_lon: self.max_lon.max(other.max_lon),
            max_lat: self.max_lat.max(other.max_lat),
        }
    }

    /// The four quarters, in the order SW, SE, NW, NE.
    pub fn quarters(&self) -> [Bbox; 4] {
        let mx = self.min_lon + self.width() / 2.0;
        let my = self.min_lat + self.height() / 2.0;
        let b = |a, b, c, d| Bbox {
            min_lon: a,
            min_lat: b,
            max_lon: c,
            max_lat: d,
        };
        [
            b(self.min_lon, self.min_lat, mx, my),
            b(mx, self.min_lat, self.max_lon, my),
            b(self.min_lon, my, mx, self.max_lat),
            b(mx, my, self.max_lon, self.max_lat),
        ]
    }

    /// The box widened by `deg` degrees on every side, clamped to the valid range.
    pub fn expanded(&self, deg: f64) -> Bbox {
        if deg <= 0.0 {
            return *self;
        }
        Bbox {
            min_lon: (self.min_lon - deg).max(-180.0),
            min_lat: (self.min_lat - deg).max(-90.0),
            max_lon: (self.max_lon + deg).min(180.0),
            max_lat: (self.max_lat + deg).min(90.0),
        }
    }

    /// The API's `bbox=` parameter value: `min_lon,min_lat,max_lon,max_lat`.
    pub fn to_param(&self) -> String {
        self.to_string()
    }

    /// The corners as a closed, counter-clockwise ring (RFC 7946 outer ring).
    pub fn ring(&self) -> [[f64; 2]; 5] {
        [
            [self.min_lon, self.min_lat],
            [self.max_lon, self.min_lat],
            [self.max_lon, self.max_lat],
            [self.min_lon, self.max_lat],
            [self.min_lon, self.min_lat],
        ]
    }
}

impl fmt::Display for Bbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{},{},{},{}",
            self.min_lon, self.min_lat, self.max_lon, self.max_lat
        )
    }
}

impl FromStr for Bbox {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        if parts.len() != 4 {
            return Err(ModelError::BboxShape(s.to_string()));
        }
        let mut v = [0.0; 4];
        for (slot, part) in v.iter_mut().zip(&parts) {
            *slot = part.parse::<f64>().map_err(|_| ModelError::BboxNumber {
                value: s.to_string(),
                part: (*part).to_string(),
            })?;
        }
        let b = Bbox::new(v[0], v[1], v[2], v[3])?;
        b.check_min_side()?;
        Ok(b)
    }
}

impl From<Bbox> for [f64; 4] {
    fn from(b: Bbox) -> Self {
        [b.min_lon, b.min_lat, b.max_lon, b.max_lat]
    }
}

impl TryFrom<[f64; 4]> for Bbox {
    type Error = ModelError;
    fn try_from(v: [f64; 4]) -> Result<Self, Self::Error> {
        Bbox::new(v[0], v[1], v[2], v[3])
    }
}

/// A Mapillary image id: a positive decimal number (a string in Graph JSON,
/// an integer in vector tiles). Safe to use as a file name once parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct ImageId(u64);

impl ImageId {
    /// An id, `None` for 0.
    pub fn new(v: u64) -> Option<Self> {
        (v > 0).then_some(Self(v))
    }
    /// The id as a number.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// What the stem of a file name (`<stem>.json`, `<stem>.jpg`) says about
/// the image the file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileStem {
    /// The id as [`ImageId`]'s `Display` writes it: the only name read.
    Id(ImageId),
    /// Digits naming this image another way (leading zeros): not read, or
    /// `0031.json` would be read as `31.json` and a copy as a duplicate.
    Padded(ImageId),
    /// Digits that are no image id (0, or beyond `u64`).
    NotAnId,
    /// Not digits: not named like an image file.
    Other,
}

impl FileStem {
    /// Reads `stem`.
    pub(crate) fn of(stem: &str) -> Self {
        if stem.is_empty() || !stem.bytes().all(|b| b.is_ascii_digit()) {
            return FileStem::Other;
        }
        let id = stem.parse::<u64>().ok().and_then(ImageId::new);
        match id {
            Some(id) if id.to_string() == stem => FileStem::Id(id),
            Some(id) => FileStem::Padded(id),
            None => FileStem::NotAnId,
        }
    }
}

impl FromStr for ImageId {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ModelError::ImageId(clip(s)));
        }
        s.parse::<u64>()
            .ok()
            .and_then(ImageId::new)
            .ok_or_else(|| ModelError::ImageId(clip(s)))
    }
}

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<ImageId> for String {
    fn from(v: ImageId) -> Self {
        v.to_string()
    }
}

impl TryFrom<String> for ImageId {
    type Error = ModelError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// The id of a grid cell, which names its folder `downloads/<grid id>/`.
/// Letters, digits, `-` and `_`, 1 to 64 characters; not one of the names
/// the output folder uses itself (see [`GridId::is_reserved`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct GridId(String);

impl GridId {
    /// The id as the API spells it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for names the output folder uses itself, in any case: `jsons`
    /// and `images` (the old tool's layout), `layers`, names starting with
    /// `.` (hidden and temp files) or `mlyexport` (the run record).
    pub fn is_reserved(s: &str) -> bool {
        let l = s.to_ascii_lowercase();
        matches!(l.as_str(), "jsons" | "images" | "layers")
            || l.starts_with('.')
            || l.starts_with("mlyexport")
    }

    /// The id of cell number `n` of a cut grid (digits are never reserved).
    pub fn numbered(n: usize) -> Self {
        Self(n.to_string())
    }

    /// The id folded to lower case: two ids with the same key would share a
    /// folder on a case-insensitive file system.
    pub fn folded(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

impl FromStr for GridId {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(ModelError::GridId(clip(s)));
        }
        if GridId::is_reserved(s) {
            return Err(ModelError::GridIdReserved(s.to_string()));
        }
        Ok(Self(s.to_string()))
    }
}

impl fmt::Display for GridId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<GridId> for String {
    fn from(v: GridId) -> Self {
        v.0
    }
}

impl TryFrom<String> for GridId {
    type Error = ModelError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// Which thumbnail rendition to download.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ThumbSize {
    #[serde(rename = "256")]
    /// 256 px wide (`thumb_256_url`).
    S256,
    #[serde(rename = "1024")]
    /// 1024 px wide (`thumb_1024_url`).
    S1024,
    #[serde(rename = "2048")]
    /// 2048 px wide (`thumb_2048_url`).
    S2048,
    #[serde(rename = "original")]
    /// The original upload (`thumb_original_url`).
    Original,
}

impl ThumbSize {
    /// The Graph API field holding the signed URL of this rendition.
    pub fn url_field(self) -> &'static str {
        match self {
            ThumbSize::S256 => "thumb_256_url",
            ThumbSize::S1024 => "thumb_1024_url",
            ThumbSize::S2048 => "thumb_2048_url",
            ThumbSize::Original => "thumb_original_url",
        }
    }
    /// The name used in flags and file metadata (`256`, ..., `original`).
    pub fn as_str(self) -> &'static str {
        match self {
            ThumbSize::S256 => "256",
            ThumbSize::S1024 => "1024",
            ThumbSize::S2048 => "2048",
            ThumbSize::Original => "original",
        }
    }
    /// Width in pixels of the rendition, `None` for the original.
    pub fn width(self) -> Option<u32> {
        match self {
            ThumbSize::S256 => Some(256),
            ThumbSize::S1024 => Some(1024),
            ThumbSize::S2048 => Some(2048),
            ThumbSize::Original => None,
        }
    }
}

impl FromStr for ThumbSize {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "256" => Ok(Self::S256),
            "1024" => Ok(Self::S1024),
            "2048" => Ok(Self::S2048),
            "original" => Ok(Self::Original),
            _ => Err(ModelError::ThumbSize(s.to_string())),
        }
    }
}

/// Whether panoramas are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PanoFilter {
    #[default]
    /// Keep panoramas and other images.
    Include,
    /// Keep only panoramas.
    Only,
    /// Drop panoramas.
    Exclude,
}

impl PanoFilter {
    /// Whether an image with this `is_pano` passes (unknown passes `Include` only).
    pub fn keeps(self, is_pano: Option<bool>) -> bool {
        match self {
            PanoFilter::Include => true,
            PanoFilter::Only => is_pano == Some(true),
            PanoFilter::Exclude => is_pano != Some(true),
        }
    }
}

/// Which position of an image to use: the SfM-computed one or the camera's GPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PositionSource {
    /// `computed_geometry`, falling back to `geometry` when absent.
    #[default]
    Computed,
    /// `geometry` (the camera's GPS), falling back to `computed_geometry`.
    Original,
}

/// How `fetch` enumerates images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Enumerate {
    /// Verified against the vector tiles (the default).
    #[default]
    Auto,
    /// Bbox searches alone (not verified).
    Search,
    /// Vector tiles then batched lookups (not verified).
    Tiles,
}

/// A Mapillary access token. It never prints itself: `Debug` and `Display`
/// show `MLY|****`. Use `AccessToken::expose` only to build the
/// `Authorization` header.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    /// Accepts any non-empty token without whitespace; the server decides
    /// whether it is valid.
    pub fn new(raw: &str) -> Option<Self> {
        let t = raw.trim();
        (!t.is_empty() && !t.chars().any(char::is_whitespace)).then(|| Self(t.to_string()))
    }
    /// The secret itself, for the `Authorization: OAuth` header only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MLY|****")
    }
}

impl fmt::Display for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MLY|****")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_values_are_quoted_clipped() {
        assert_eq!(clip("short"), "short");
        let exact = "é".repeat(64);
        assert_eq!(clip(&exact), exact);
        let long = "x".repeat(900_000);
        assert_eq!(clip(&long), format!("{}…", "x".repeat(64)));
        let e = long.parse::<ImageId>().unwrap_err().to_string();
        assert!(e.len() < 200, "{e}");
        let e = format!("g{long}")
            .parse::<GridId>()
            .unwrap_err()
            .to_string();
        assert!(e.len() < 300, "{e}");
    }

    #[test]
    fn only_the_plain_id_names_an_image_file() {
        let id = |n| ImageId::new(n).unwrap();
        assert_eq!(FileStem::of("31"), FileStem::Id(id(31)));
        assert_eq!(FileStem::of("000031"), FileStem::Padded(id(31)));
        assert_eq!(FileStem::of("0"), FileStem::NotAnId);
        assert_eq!(FileStem::of("00"), FileStem::NotAnId);
        assert_eq!(FileStem::of("18446744073709551616"), FileStem::NotAnId);
        assert_eq!(
            FileStem::of("18446744073709551615"),
            FileStem::Id(id(u64::MAX))
        );
        for other in ["", "+5", "-5", "5a", "notes", " 5"] {
            assert_eq!(FileStem::of(other), FileStem::Other, "{other:?}");
        }
    }

    #[test]
    fn bbox_parses_negative_and_checks_order() {
        let b: Bbox = "-73.99,40.7,-73.98,40.71".parse().unwrap();
        assert_eq!(b.min_lon(), -73.99);
        assert!(matches!(
            "1,2,0,3".parse::<Bbox>(),
            Err(ModelError::BboxLonOrder(_))
        ));
        assert!(matches!(
            "0,3,1,2".parse::<Bbox>(),
            Err(ModelError::BboxLatOrder(_))
        ));
        assert!(matches!(
            "0,0,1".parse::<Bbox>(),
            Err(ModelError::BboxShape(_))
        ));
        assert!(matches!(
            "0,0,1,x".parse::<Bbox>(),
            Err(ModelError::BboxNumber { .. })
        ));
        assert!(matches!(
            "0,0,181,1".parse::<Bbox>(),
            Err(ModelError::BboxRange(_))
        ));
        assert!(matches!(
            "0,0,0,1".parse::<Bbox>(),
            Err(ModelError::BboxEmpty(_))
        ));
        assert!(matches!(
            "0,0,NaN,1".parse::<Bbox>(),
            Err(ModelError::BboxRange(_))
        ));
    }

    #[test]
    fn half_open_and_quarters() {
        let b = Bbox::new(0.0, 0.0, 2.0, 2.0).unwrap();
        let q = b.quarters();
        let p = LonLat::new(1.0, 1.0).unwrap();
        assert_eq!(q.iter().filter(|c| c.contains_half_open(p)).count(), 1);
        assert!(q[3].contains_half_open(p));
        assert_eq!(q.iter().filter(|c| c.contains_closed(p)).count(), 4);
    }

    #[test]
    fn ids_validate() {
        assert!("123".parse::<ImageId>().is_ok());
        assert!("0".parse::<ImageId>().is_err());
        assert!("../1".parse::<ImageId>().is_err());
        assert!("12a".parse::<ImageId>().is_err());
        assert!("a-b_1".parse::<GridId>().is_ok());
        assert!("a/b".parse::<GridId>().is_err());
        assert!("..".parse::<GridId>().is_err());
        for r in ["jsons", "IMAGES", "Layers", "mlyexport-run", "MlyExport"] {
            assert_eq!(
                r.parse::<GridId>(),
                Err(ModelError::GridIdReserved(r.into())),
                "{r}"
            );
        }
        assert!("json".parse::<GridId>().is_ok());
        assert!(GridId::is_reserved(".hidden"));
    }

    #[test]
    fn study_areas_have_a_least_side() {
        assert!(matches!(
            "10,0,11,1e-20".parse::<Bbox>(),
            Err(ModelError::BboxTooSmall(_))
        ));
        assert!("10,0,10.000001,0.000001".parse::<Bbox>().is_ok());
        assert!(
            "10,0,10.0000008,1"
                .parse::<Bbox>()
                .unwrap_err()
                .to_string()
                .contains("0.1 m")
        );
    }

    #[test]
    fn token_never_prints() {
        let t = AccessToken::new("MLY|42|abc").unwrap();
        assert_eq!(format!("{t} {t:?}"), "MLY|**** MLY|****");
    }

    #[test]
    fn area_km2_of_one_degree_at_equator() {
        let b = Bbox::new(0.0, 0.0, 1.0, 1.0).unwrap();
        assert!((b.area_km2() - 12_364.0).abs() < 10.0, "{}", b.area_km2());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn bbox_parsing_never_panics(s in "\\PC{0,60}") {
                if let Ok(b) = s.parse::<Bbox>() {
                    prop_assert!(b.width() > 0.0 && b.height() > 0.0);
                    prop_assert!(b.check_min_side().is_ok());
                }
            }

            #[test]
            fn four_numbers_are_accepted_or_refused_never_panic(
                v in proptest::array::uniform4(prop_oneof![
                    any::<f64>(),
                    -200.0..200.0f64,
                    Just(0.0), Just(1e-20), Just(f64::NAN), Just(f64::INFINITY),
                ])
            ) {
                let text = format!("{},{},{},{}", v[0], v[1], v[2], v[3]);
                match text.parse::<Bbox>() {
                    Ok(b) => {
                        prop_assert!(b.min_lon() < b.max_lon() && b.min_lat() < b.max_lat());
                        prop_assert!(b.width() >= MIN_AREA_SIDE_DEG * 0.9999);
                        prop_assert!(b.height() >= MIN_AREA_SIDE_DEG * 0.9999);
                    }
                    Err(e) => prop_assert!(!e.to_string().is_empty()),
                }
            }

            #[test]
            fn valid_boxes_round_trip(
                x in -180.0..179.0f64, y in -90.0..89.0f64,
                w in 0.00001..1.0f64, h in 0.00001..1.0f64,
            ) {
                let text = format!("{x},{y},{},{}", x + w, y + h);
                let b: Bbox = text.parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
                prop_assert_eq!(b.to_string().parse::<Bbox>(), Ok(b));
            }

            #[test]
            fn grid_ids_are_safe_folder_names(s in "\\PC{0,70}") {
                if let Ok(id) = s.parse::<GridId>() {
                    prop_assert!(!GridId::is_reserved(id.as_str()));
                    prop_assert!(id.as_str().bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
                }
            }
        }
    }
}
