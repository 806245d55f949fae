//! The Graph, CDN and tiles HTTP servers: auth, search, entities, rate limits, faults,
//! thumbnails and vector tiles.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::StreamExt;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::hostile::{self, ESCAPE_SUFFIX, EmptyTile};
use crate::lag::TileLag;
use crate::thumbs::{self, CheckError, JpegCache, Signer, ThumbSize};
use crate::tiles::{self, RenderOptions, Tileset};
use crate::world::{BboxPosition, SimImage, TruthFilter, World};
use crate::{Faults, ResultOrder, SimConfig, Stats};

pub const IMAGE_FIELDS: &[&str] = &[
    "altitude",
    "atomic_scale",
    "camera_parameters",
    "camera_type",
    "captured_at",
    "compass_angle",
    "computed_altitude",
    "computed_compass_angle",
    "computed_geometry",
    "computed_rotation",
    "creator",
    "detections",
    "exif_orientation",
    "geometry",
    "height",
    "id",
    "is_pano",
    "make",
    "merge_cc",
    "mesh",
    "model",
    "organization",
    "quality_score",
    "sequence",
    "sfm_cluster",
    "thumb_256_url",
    "thumb_1024_url",
    "thumb_2048_url",
    "thumb_original_url",
    "width",
];

const MAX_IMAGE_IDS: usize = 200;
const CURSOR_KEY: u64 = 0x5bd1_e995_9e37_79b9;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Class {
    Search,
    Entity,
    /// Vector tiles: a daily budget; error kinds are prefixed with `tile_`.
    Tile,
}

const DAY_S: u64 = 86_400;

pub struct Shared {
    pub world: Arc<World>,
    pub config: SimConfig,
    pub graph_url: String,
    pub cdn_url: String,
    pub tiles_url: String,
    faults: Mutex<Faults>,
    /// Tokens revoked while running (answered like unknown tokens).
    revoked: Mutex<std::collections::HashSet<String>>,
    stats: Mutex<Stats>,
    rng: Mutex<ChaCha8Rng>,
    windows: Mutex<HashMap<(String, Class), (u64, u32)>>,
    started: Instant,
    signer: Signer,
    jpegs: JpegCache,
    nonce: AtomicU64,
    /// Images the tiles leave out or still show (`tiles_missing`, `tiles_stale`).
    pub lag: TileLag,
    /// `huge_search_body` answers sent so far (odd ones carry a Content-Length).
    huge_searches: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn new(
        config: SimConfig,
        world: Arc<World>,
        graph_url: String,
        cdn_url: String,
        tiles_url: String,
    ) -> Shared {
        let seed = config.world.seed;
        let lag = TileLag::new(&world, config.tiles_missing, config.tiles_stale);
        Shared {
            lag,
            huge_searches: AtomicU64::new(0),
            world,
            faults: Mutex::new(config.faults.clone()),
            revoked: Mutex::new(Default::default()),
            config,
            graph_url,
            cdn_url,
            tiles_url,
            stats: Mutex::new(Stats::default()),
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed ^ 0xfa17)),
            windows: Mutex::new(HashMap::new()),
            started: Instant::now(),
            signer: Signer::new(seed),
            jpegs: JpegCache::default(),
            nonce: AtomicU64::new(1),
        }
    }

    pub fn stats_snapshot(&self) -> Stats {
        lock(&self.stats).clone()
    }

    pub fn reset_stats(&self) {
        *lock(&self.stats) = Stats::default();
    }

    pub fn set_faults(&self, f: Faults) {
        *lock(&self.faults) = f;
    }

    pub fn revoke_token(&self, token: &str) {
        lock(&self.revoked).insert(token.to_string());
    }

    fn count_error(&self, kind: &str) {
        *lock(&self.stats)
            .errors_by_kind
            .entry(kind.to_string())
            .or_default() += 1;
    }

    fn roll(&self, p: f64) -> bool {
        p > 0.0 && lock(&self.rng).random_bool(p.min(1.0))
    }

    fn fbtrace_id(&self) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
        let mut rng = lock(&self.rng);
        std::iter::once('A')
            .chain((0..22).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char))
            .collect()
    }

    fn error(&self, status: u16, kind: &str, mut body: Map<String, Value>) -> Response {
        self.count_error(kind);
        if self.config.hostile.formula_text
            && let Some(Value::String(m)) = body.get_mut("message")
        {
            m.push_str(ESCAPE_SUFFIX);
        }
        body.insert("fbtrace_id".into(), Value::String(self.fbtrace_id()));
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(json!({ "error": body }))).into_response()
    }

    fn api_error(&self, status: u16, kind: &str, message: &str, code: i64) -> Response {
        let mut m = Map::new();
        m.insert("message".into(), message.into());
        m.insert("type".into(), "MLYApiException".into());
        m.insert("code".into(), code.into());
        self.error(status, kind, m)
    }

    fn bad_param(&self, message: &str) -> Response {
        self.api_error(400, "bad_request", message, 100)
    }

    fn transient(&self, status: u16, kind: &str, message: &str, code: i64) -> Response {
        let mut m = Map::new();
        m.insert("message".into(), message.into());
        m.insert("type".into(), "MLYApiException".into());
        m.insert("is_transient".into(), true.into());
        m.insert("code".into(), code.into());
        self.error(status, kind, m)
    }

    fn rate_limited(&self, kind: &str) -> Response {
        let status = self.config.rate_limit_status;
        let mut r = match self.config.rate_limit_code {
            4 => self.transient(status, kind, "Application request limit reached", 4),
            code => {
                let message = match code {
                    17 => "User request limit reached",
                    32 => "Page request limit reached",
                    _ => "Calls to this api have exceeded the rate limit.",
                };
                let mut m = Map::new();
                m.insert("message".into(), message.into());
                m.insert("type".into(), "OAuthException".into());
                m.insert("code".into(), code.into());
                self.error(status, kind, m)
            }
        };
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        r
    }

    fn oauth_error(&self, status: u16, kind: &str, message: &str) -> Response {
        let mut m = Map::new();
        m.insert("message".into(), message.into());
        m.insert("type".into(), "OAuthException".into());
        m.insert("code".into(), 190.into());
        self.error(status, kind, m)
    }

    fn over_rate(&self, token: &str, class: Class) -> bool {
        let (limit, span) = match class {
            Class::Search => (self.config.search_per_min, 60),
            Class::Entity => (self.config.entity_per_min, 60),
            Class::Tile => (self.config.tiles_per_day, DAY_S),
        };
        let window = self.started.elapsed().as_secs() / span;
        let mut w = lock(&self.windows);
        let slot = w.entry((token.to_string(), class)).or_insert((window, 0));
        if slot.0 != window {
            *slot = (window, 0);
        }
        slot.1 = slot.1.saturating_add(1);
        slot.1 > limit
    }
}

type St = State<Arc<Shared>>;

fn parse_query(raw: Option<&str>) -> Option<Vec<(String, String)>> {
    serde_urlencoded::from_str(raw.unwrap_or("")).ok()
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn reset_response() -> Response {
    let stream = futures_util::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("mlysim reset"))
    });
    Response::new(Body::from_stream(stream))
}

fn token_well_formed(t: &str) -> bool {
    let mut parts = t.split('|');
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some("MLY"), Some(id), Some(secret), None)
            if !id.is_empty()
                && id.bytes().all(|b| b.is_ascii_digit())
                && secret.len() == 32
                && secret.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    )
}

/// Runs latency, injected faults, auth and rate limiting; `Err` holds the answer to send instead.
async fn prelude(
    st: &Shared,
    class: Class,
    headers: &HeaderMap,
    pairs: &[(String, String)],
) -> Result<(), Response> {
    let tile = class == Class::Tile;
    let kind = |k: &str| {
        if tile {
            format!("tile_{k}")
        } else {
            k.to_string()
        }
    };
    tokio::time::sleep(st.config.latency).await;
    let f = lock(&st.faults).clone();
    if st.roll(f.stall) {
        st.count_error(&kind("stall"));
        tokio::time::sleep(f.stall_for).await;
    }
    if st.roll(f.reset) {
        st.count_error(&kind("reset"));
        return Err(reset_response());
    }
    if st.roll(f.http500) {
        return Err(st.transient(500, &kind("http500"), "Service temporarily unavailable", 2));
    }
    if !tile && st.roll(f.timeout400) {
        return Err(st.transient(400, "timeout400", "Query Timeout", -2));
    }
    if st.roll(f.rate_limit) {
        return Err(st.rate_limited(&kind("rate_limit_fault")));
    }
    let header_token = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("").trim().to_string());
    let query_token = param(pairs, "access_token");
    if query_token.is_some() && !tile {
        lock(&st.stats).token_in_query += 1;
    }
    let (token, in_header) = match (&header_token, query_token) {
        (Some(h), _) => {
            let t = h
                .strip_prefix("OAuth ")
                .or_else(|| h.strip_prefix("Bearer "))
                .unwrap_or("")
                .trim();
            (t.to_string(), true)
        }
        (None, Some(q)) => (q.to_string(), false),
        (None, None) => {
            let mut m = Map::new();
            m.insert("message".into(), "Invalid OAuth 2.0 Access Token".into());
            m.insert("type".into(), "MLYApiException".into());
            m.insert("code".into(), 190.into());
            m.insert("error_data".into(), json!({}));
            return Err(st.error(500, &kind("auth_missing"), m));
        }
    };
    if !token_well_formed(&token) {
        return Err(st.oauth_error(401, &kind("auth_malformed"), "Failed to decode"));
    }
    if !st.config.tokens.contains(&token) || lock(&st.revoked).contains(&token) {
        let status = if in_header { 401 } else { 400 };
        return Err(st.oauth_error(
            status,
            &kind("auth_unknown"),
            "Error validating application",
        ));
    }
    if st.over_rate(&token, class) {
        let mut r = st.rate_limited(&kind("rate_limited"));
        if tile {
            let left = DAY_S - st.started.elapsed().as_secs() % DAY_S;
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(left));
        }
        return Err(r);
    }
    Ok(())
}

#[derive(Debug)]
struct FieldSel {
    base: String,
    sub: Vec<String>,
}

fn parse_fields(raw: Option<&str>) -> Result<Vec<FieldSel>, String> {
    let mut out = Vec::new();
    let mut items = Vec::new();
    let (mut depth, mut cur) = (0i32, String::new());
    for c in raw.unwrap_or("").chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    items.push(cur);
    for item in items {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let cut = item.find(['.', '{']).unwrap_or(item.len());
        let base = &item[..cut];
        if !IMAGE_FIELDS.contains(&base) {
            return Err(base.to_string());
        }
        let rest = item[cut..]
            .trim_start_matches(['.', '{'])
            .trim_end_matches('}');
        let sub = rest
            .split([',', '.'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        out.push(FieldSel {
            base: base.to_string(),
            sub,
        });
    }
    Ok(out)
}

fn point(p: [f64; 2]) -> Value {
    json!({"type": "Point", "coordinates": [p[0], p[1]]})
}

/// Renders the requested fields; every call mints fresh thumbnail URLs.
struct Renderer<'a> {
    st: &'a Shared,
    expiry: u64,
}

impl Renderer<'_> {
    fn new(st: &Shared) -> Renderer<'_> {
        Renderer {
            st,
            expiry: thumbs::expiry_for(st.config.thumb_ttl),
        }
    }

    fn render(&self, img: &SimImage, fields: &[FieldSel]) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), img.id.to_string().into());
        for f in fields {
            let v: Option<Value> = match f.base.as_str() {
                "id" => None,
                "altitude" => img.altitude.map(Value::from),
                "atomic_scale" => img.atomic_scale.map(Value::from),
                "camera_parameters" => img.camera_parameters.map(|c| json!(c)),
                "camera_type" => Some(img.camera_type().into()),
                "captured_at" => Some(img.captured_at.into()),
                "compass_angle" => Some(img.compass_angle.into()),
                "computed_altitude" => img.computed_altitude.map(Value::from),
                "computed_compass_angle" => img.computed_compass_angle.map(Value::from),
                "computed_geometry" => img.computed_geometry.map(point),
                "computed_rotation" => img.computed_rotation.map(|c| json!(c)),
                "creator" => Some(json!({
                    "id": img.creator.id.to_string(),
                    "username": &*img.creator.username,
                })),
                "detections" => Some(self.detections(img, &f.sub)),
                "exif_orientation" => Some(img.exif_orientation.into()),
                "geometry" => img.geometry.map(point),
                "height" => Some(img.height.into()),
                "is_pano" => Some(img.is_pano.into()),
                "make" => img.make.as_deref().map(Value::from),
                "merge_cc" => img.merge_cc.map(|v| Value::from(v as f64)),
                "mesh" => Some(json!({
                    "id": img.mesh_id.to_string(),
                    "url": format!("{}/mesh/{}", self.st.cdn_url, img.mesh_id),
                })),
                "model" => img.model.as_deref().map(Value::from),
                "organization" => img.organization.map(|o| json!({"id": o.to_string()})),
                "quality_score" => Some(img.quality_score.into()),
                "sequence" => Some((*img.sequence).into()),
                "sfm_cluster" => Some(json!({
                    "id": img.sfm_cluster_id.to_string(),
                    "url": format!("{}/sfm/{}", self.st.cdn_url, img.sfm_cluster_id),
                })),
                "width" => Some(img.width.into()),
                other => ThumbSize::from_field(other).map(|size| {
                    let nonce = self.st.nonce.fetch_add(1, Ordering::Relaxed);
                    self.st
                        .signer
                        .mint(
                            &self.st.cdn_url,
                            img.id,
                            size,
                            img.is_pano,
                            self.st.config.original_width,
                            self.expiry,
                            nonce,
                        )
                        .into()
                }),
            };
            if let Some(v) = v {
                m.insert(f.base.clone(), v);
            }
        }
        Value::Object(m)
    }

    fn detections(&self, img: &SimImage, sub: &[String]) -> Value {
        const VALUES: &[&str] = &[
            "regulatory--stop--g1",
            "information--pedestrians-crossing--g1",
            "object--street-light",
        ];
        let data: Vec<Value> = img
            .detection_ids
            .iter()
            .map(|&d| {
                let mut m = Map::new();
                m.insert("id".into(), d.to_string().into());
                if sub.iter().any(|s| s == "value") {
                    m.insert("value".into(), VALUES[(d % 3) as usize].into());
                }
                if sub.iter().any(|s| s == "created_at") {
                    m.insert("created_at".into(), "2021-05-23T00:40:55+0000".into());
                }
                Value::Object(m)
            })
            .collect();
        json!({ "data": data })
    }
}

fn json_ok(v: Value) -> Response {
    axum::Json(v).into_response()
}

fn parse_bbox(s: &str) -> Option<[f64; 4]> {
    let v: Vec<f64> = s
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .ok()?;
    let b: [f64; 4] = v.try_into().ok()?;
    (b.iter().all(|x| x.is_finite()) && b[0] <= b[2] && b[1] <= b[3]).then_some(b)
}

fn parse_time(s: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(t.and_utc().timestamp_millis());
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
}

/// The effective truncation point of a bbox search: `cap`, or with fuzzy_cap a value in
/// [cap * (1 - fuzz), cap] (at least 1) fixed by a hash of the bbox text.
pub fn effective_cap(cap: usize, fuzzy: bool, fuzz: f64, bbox_text: &str) -> usize {
    if !fuzzy {
        return cap;
    }
    let d = Sha256::digest(bbox_text.as_bytes());
    let h = u64::from_le_bytes(d[..8].try_into().unwrap_or([0; 8]));
    let fuzz = if fuzz.is_finite() {
        fuzz.clamp(0.0, 1.0)
    } else {
        0.0
    };
    // The small epsilon keeps `cap * 0.06` an integer where the decimal product is one.
    let span = ((cap as f64 * fuzz) + 1e-9).floor().min(cap as f64) as u64;
    (cap - (h % (span + 1)) as usize).max(1)
}

/// The distance of a position to the closest edge of the box.
fn edge_distance(p: [f64; 2], bbox: [f64; 4]) -> f64 {
    (p[0] - bbox[0])
        .min(bbox[2] - p[0])
        .min(p[1] - bbox[1])
        .min(bbox[3] - p[1])
}

/// Keeps the `keep` images nearest to the bbox edges, nearest first (ties by id).
pub fn edge_first(
    mut imgs: Vec<&SimImage>,
    bbox: [f64; 4],
    pos: BboxPosition,
    keep: usize,
) -> Vec<&SimImage> {
    let dist = |i: &SimImage| edge_distance(i.search_pos(pos), bbox);
    imgs.sort_by(|a, b| dist(a).total_cmp(&dist(b)).then(a.id.cmp(&b.id)));
    imgs.truncate(keep);
    imgs
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Orders the bbox results as `order` says and keeps the first `keep`.
fn ordered<'a>(
    mut imgs: Vec<&'a SimImage>,
    bbox: [f64; 4],
    st: &Shared,
    bbox_text: &str,
    keep: usize,
) -> Vec<&'a SimImage> {
    match st.config.result_order {
        ResultOrder::EdgeFirst => return edge_first(imgs, bbox, st.config.bbox_position, keep),
        ResultOrder::Random => {
            let mut h = Sha256::new();
            h.update(st.world.spec().seed.to_le_bytes());
            h.update(bbox_text.as_bytes());
            let d = h.finalize();
            let k = u64::from_le_bytes(d[..8].try_into().unwrap_or([0; 8]));
            imgs.sort_by_cached_key(|i| splitmix(i.id ^ k));
        }
        ResultOrder::ByTime => {
            imgs.sort_by_key(|i| (std::cmp::Reverse(i.captured_at), i.id));
        }
        ResultOrder::UntiledLast => imgs.sort_by_key(|i| (st.lag.is_missing(i.id), i.id)),
    }
    imgs.truncate(keep);
    imgs
}

fn cursor(offset: usize) -> String {
    format!("QVFI{:016x}", offset as u64 ^ CURSOR_KEY)
}

fn parse_cursor(c: &str) -> Option<usize> {
    let v = u64::from_str_radix(c.strip_prefix("QVFI")?, 16).ok()?;
    usize::try_from(v ^ CURSOR_KEY).ok()
}

fn scramble(id: u64) -> u64 {
    id.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29)
}

async fn images(State(st): St, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    lock(&st.stats).search_calls += 1;
    let Some(pairs) = parse_query(raw.as_deref()) else {
        return st.bad_param("Invalid query string");
    };
    if let Err(r) = prelude(&st, Class::Search, &headers, &pairs).await {
        return r;
    }
    let empty = lock(&st.faults).empty_200;
    if st.roll(empty) {
        st.count_error("empty_200");
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "{}",
        )
            .into_response();
    }
    if st.config.hostile.huge_search_body && param(&pairs, "bbox").is_some() {
        return huge_search(&st);
    }
    search(&st, &pairs)
}

/// The `huge_search_body` answer: 200, streamed; every other one without Content-Length.
fn huge_search(st: &Shared) -> Response {
    st.count_error("huge_search_body");
    let n = st.huge_searches.fetch_add(1, Ordering::Relaxed);
    let mut resp = Response::new(hostile::huge_search_body());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    if n.is_multiple_of(2) {
        h.insert(
            header::CONTENT_LENGTH,
            HeaderValue::from(hostile::HUGE_SEARCH_BYTES),
        );
    }
    resp
}

fn search(st: &Shared, pairs: &[(String, String)]) -> Response {
    let fields = match parse_fields(param(pairs, "fields")) {
        Ok(f) => f,
        Err(name) => return unknown_field(st, &name),
    };
    let cap = st.config.cap.max(1);
    let limit = match param(pairs, "limit") {
        None => cap,
        Some(l) => match l.trim().parse::<i64>() {
            Ok(n) => n.clamp(1, cap as i64) as usize,
            Err(_) => return st.bad_param("(#100) Param limit must be an integer"),
        },
    };
    let mut filter = TruthFilter::default();
    for (name, slot) in [
        ("start_captured_at", &mut filter.since_ms),
        ("end_captured_at", &mut filter.until_ms),
    ] {
        if let Some(v) = param(pairs, name) {
            match parse_time(v) {
                Some(t) => *slot = Some(t),
                None => {
                    return st.bad_param(&format!(
                        "(#100) Param {name} must be an ISO 8601 date-time"
                    ));
                }
            }
        }
    }
    filter.pano = match param(pairs, "is_pano") {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return st.bad_param("(#100) Param is_pano must be a boolean"),
    };
    filter.creator = param(pairs, "creator_username").map(String::from);
    filter.organization = param(pairs, "organization_id").map(String::from);
    let sequences: Option<Vec<&str>> = param(pairs, "sequence_ids")
        .or_else(|| param(pairs, "sequence_id"))
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect()
        });
    let image_ids: Option<Vec<u64>> = match param(pairs, "image_ids") {
        None => None,
        Some(s) => {
            let parsed: Result<Vec<u64>, _> = s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::parse::<u64>)
                .collect();
            match parsed {
                Ok(v) if v.len() <= MAX_IMAGE_IDS => Some(v),
                Ok(_) => {
                    return st.bad_param("(#100) Param image_ids accepts at most 200 ids");
                }
                Err(_) => return st.bad_param("(#100) Param image_ids must be a list of ids"),
            }
        }
    };
    let accepts = |img: &SimImage| {
        filter.accepts(img)
            && sequences
                .as_ref()
                .is_none_or(|s| s.contains(&&*img.sequence))
            && image_ids.as_ref().is_none_or(|ids| ids.contains(&img.id))
    };
    let render = Renderer::new(st);
    let world = &st.world;

    if let Some(bbox_text) = param(pairs, "bbox") {
        let Some(bbox) = parse_bbox(bbox_text) else {
            return st.bad_param(
                "(#100) Param bbox must be four numbers min_lon,min_lat,max_lon,max_lat",
            );
        };
        let area = (bbox[2] - bbox[0]) * (bbox[3] - bbox[1]);
        if area >= st.config.max_area_deg2 {
            return st.api_error(
                400,
                "bbox_too_large",
                &format!(
                    "(#100) The area of the bbox must be smaller than {} square degrees",
                    st.config.max_area_deg2
                ),
                100,
            );
        }
        let inside = world.search_in(bbox, st.config.bbox_position);
        if st.config.dense_refusal.is_some_and(|n| inside.len() > n) {
            return st.api_error(
                500,
                "dense_refusal",
                "Please reduce the amount of data you're asking for, then retry your request",
                1,
            );
        }
        let matching: Vec<&SimImage> = inside.into_iter().filter(|i| accepts(i)).collect();
        let keep = limit.min(effective_cap(
            cap,
            st.config.fuzzy_cap,
            st.config.cap_fuzz,
            bbox_text,
        ));
        let cut = matching.len() > keep;
        let data: Vec<Value> = ordered(matching, bbox, st, bbox_text, keep)
            .into_iter()
            .map(|i| render.render(i, &fields))
            .collect();
        if cut && st.config.bbox_paging {
            let next = format!(
                "{}/images?bbox={bbox_text}&after={}",
                st.graph_url,
                cursor(keep)
            );
            return json_ok(json!({ "data": data, "paging": { "next": next } }));
        }
        return json_ok(json!({ "data": data }));
    }

    if let Some(ids) = &image_ids {
        let mut found: Vec<&SimImage> = ids
            .iter()
            .filter_map(|&id| world.get(id))
            .filter(|i| accepts(i))
            .collect();
        found.sort_by_key(|i| scramble(i.id));
        found.dedup_by_key(|i| i.id);
        found.truncate(limit);
        let data: Vec<Value> = found
            .into_iter()
            .map(|i| render.render(i, &fields))
            .collect();
        return json_ok(json!({ "data": data }));
    }

    if filter.creator.is_none() && filter.organization.is_none() && sequences.is_none() {
        return st.bad_param(
            "(#100) A search needs bbox, image_ids, creator_username, organization_id or sequence_ids",
        );
    }
    let offset = match param(pairs, "after") {
        None => 0,
        Some(c) => match parse_cursor(c) {
            Some(o) => o,
            None => return st.bad_param("(#100) Invalid cursor"),
        },
    };
    let mut all: Vec<&SimImage> = match &sequences {
        Some(seqs) => seqs
            .iter()
            .flat_map(|s| world.sequence(s))
            .filter(|i| accepts(i))
            .collect(),
        None => world.images().iter().filter(|i| accepts(i)).collect(),
    };
    all.sort_by_key(|i| (i.captured_at, i.id));
    let page: Vec<Value> = all
        .iter()
        .skip(offset)
        .take(limit)
        .map(|i| render.render(i, &fields))
        .collect();
    if page.is_empty() {
        return json_ok(json!({ "data": [] }));
    }
    let end = offset + page.len();
    let mut paging = json!({
        "cursors": { "before": cursor(offset), "after": cursor(end) }
    });
    if end < all.len() {
        let mut next: Vec<(&str, String)> = pairs
            .iter()
            .filter(|(k, _)| k != "after" && k != "before")
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        next.push(("after", cursor(end)));
        let q = serde_urlencoded::to_string(&next).unwrap_or_default();
        paging["next"] = format!("{}/images?{q}", st.graph_url).into();
    }
    json_ok(json!({ "data": page, "paging": paging }))
}

fn unknown_field(st: &Shared, name: &str) -> Response {
    st.api_error(
        400,
        "unknown_field",
        &format!("(#100) Tried accessing nonexisting field ({name}) on node type (Image)"),
        100,
    )
}

async fn entity(
    State(st): St,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    lock(&st.stats).entity_calls += 1;
    let Some(pairs) = parse_query(raw.as_deref()) else {
        return st.bad_param("Invalid query string");
    };
    if let Err(r) = prelude(&st, Class::Entity, &headers, &pairs).await {
        return r;
    }
    let Some(img) = id.parse::<u64>().ok().and_then(|n| st.world.get(n)) else {
        if let Some(bad) = st.config.hostile.unknown_entity {
            st.count_error("unknown_entity");
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                bad.body(&id),
            )
                .into_response();
        }
        let mut m = Map::new();
        m.insert(
            "message".into(),
            format!(
                "Unsupported get request. Object with ID '{id}' does not exist, cannot be loaded \
                 due to missing permissions, or does not support this operation"
            )
            .into(),
        );
        m.insert("type".into(), "MLYApiException".into());
        m.insert("code".into(), 100.into());
        m.insert("error_subcode".into(), 33.into());
        return st.error(400, "unknown_id", m);
    };
    match parse_fields(param(&pairs, "fields")) {
        Ok(fields) => json_ok(Renderer::new(&st).render(img, &fields)),
        Err(name) => unknown_field(&st, &name),
    }
}

async fn image_ids(State(st): St, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    lock(&st.stats).image_ids_calls += 1;
    let Some(pairs) = parse_query(raw.as_deref()) else {
        return st.bad_param("Invalid query string");
    };
    if let Err(r) = prelude(&st, Class::Search, &headers, &pairs).await {
        return r;
    }
    let Some(seq) = param(&pairs, "sequence_id") else {
        return st.bad_param("(#100) The parameter sequence_id is required");
    };
    let data: Vec<Value> = st
        .world
        .sequence(seq)
        .into_iter()
        .map(|i| json!({"id": i.id.to_string()}))
        .collect();
    json_ok(json!({ "data": data }))
}

async fn sim_stats(State(st): St) -> Response {
    json_ok(serde_json::to_value(st.stats_snapshot()).unwrap_or(Value::Null))
}

async fn graph_fallback(State(st): St) -> Response {
    st.api_error(
        400,
        "bad_request",
        "Unsupported get request. Please read the Graph API documentation",
        100,
    )
}

pub fn graph_router(st: Arc<Shared>) -> Router {
    Router::new()
        .route("/images", get(images))
        .route("/image_ids", get(image_ids))
        .route("/__sim/stats", get(sim_stats))
        .route("/{id}", get(entity))
        .fallback(graph_fallback)
        .with_state(st)
}

fn text(status: StatusCode, content_type: &'static str, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn expired() -> Response {
    text(StatusCode::FORBIDDEN, "text/plain", "URL signature expired")
}

const HTML_PAGE: &str = "<!DOCTYPE html><html><head><title>Error</title></head>\
<body><h1>Sorry, something went wrong.</h1><p>We're working on it.</p></body></html>";

async fn thumb(
    State(st): St,
    Path(token): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let pairs = parse_query(raw.as_deref()).unwrap_or_default();
    if headers.contains_key(header::AUTHORIZATION) || param(&pairs, "access_token").is_some() {
        lock(&st.stats).auth_header_on_cdn += 1;
    }
    if let Some(origin) = &st.config.hostile.redirect_thumbs_to {
        return redirect_thumb(&st, origin, &token, raw.as_deref());
    }
    tokio::time::sleep(st.config.latency).await;
    let f = lock(&st.faults).clone();
    if st.roll(f.stall) {
        st.count_error("cdn_stall");
        tokio::time::sleep(f.stall_for).await;
    }
    if st.roll(f.reset) {
        st.count_error("cdn_reset");
        return reset_response();
    }
    if st.roll(f.http500) {
        st.count_error("cdn_http500");
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            "Internal Server Error",
        );
    }
    if st.roll(f.thumb_403) {
        st.count_error("thumb_403");
        return expired();
    }
    if st.roll(f.not_jpeg) {
        st.count_error("not_jpeg");
        return text(StatusCode::OK, "text/html; charset=utf-8", HTML_PAGE);
    }
    let truncate = st.roll(f.truncated_body);
    let checked = st.signer.check(
        &token,
        param(&pairs, "stp"),
        param(&pairs, "oh"),
        param(&pairs, "oe"),
        thumbs::unix_now(),
    );
    let r = match checked {
        Ok(r) => r,
        Err(e) => {
            st.count_error(match e {
                CheckError::Expired => "signature_expired",
                CheckError::BadSignature | CheckError::Malformed => "signature_bad",
            });
            return expired();
        }
    };
    let Some(img) = st.world.get(r.id) else {
        st.count_error("signature_bad");
        return expired();
    };
    if st.config.hostile.huge_thumbnail {
        return huge_thumb(&st);
    }
    let width = r.size.width(st.config.original_width);
    let pano = img.is_pano;
    let st2 = st.clone();
    let Ok(base) = tokio::task::spawn_blocking(move || st2.jpegs.base(width, pano)).await else {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            "Internal Server Error",
        );
    };
    let bytes = thumbs::personalise(&base, img.id);
    let len = bytes.len();
    let mut resp = if truncate {
        st.count_error("truncated_body");
        let part = Bytes::from(bytes).slice(..len / 2);
        let stream =
            futures_util::stream::iter([Ok(part)]).chain(futures_util::stream::once(async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err(std::io::Error::other("mlysim truncated body"))
            }));
        Response::new(Body::from_stream(stream))
    } else {
        let mut s = lock(&st.stats);
        s.thumbs_served += 1;
        s.thumb_bytes += len as u64;
        drop(s);
        Response::new(Body::from(bytes))
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=1209600, no-transform"),
    );
    resp
}

/// The `redirect_thumbs_to` answer: 302 to the other origin, same path and query.
fn redirect_thumb(st: &Shared, origin: &str, token: &str, query: Option<&str>) -> Response {
    st.count_error("thumb_redirect");
    let q = query.map(|q| format!("?{q}")).unwrap_or_default();
    let to = format!("{}/m1/v/t6/{token}{q}", origin.trim_end_matches('/'));
    let Ok(location) = HeaderValue::from_str(&to) else {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            "mlysim: redirect_thumbs_to is not a valid header value",
        );
    };
    let mut resp = text(StatusCode::FOUND, "text/plain", "Found");
    resp.headers_mut().insert(header::LOCATION, location);
    resp
}

/// The `huge_thumbnail` answer: 200 `image/jpeg`, streamed, Content-Length set.
fn huge_thumb(st: &Shared) -> Response {
    st.count_error("huge_thumbnail");
    let mut resp = Response::new(hostile::huge_thumbnail());
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
    h.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(hostile::HUGE_THUMB_BYTES),
    );
    resp
}

async fn cdn_fallback() -> Response {
    text(StatusCode::NOT_FOUND, "text/plain", "Not Found")
}

pub fn cdn_router(st: Arc<Shared>) -> Router {
    Router::new()
        .route("/m1/v/t6/{token}", get(thumb))
        .fallback(cdn_fallback)
        .with_state(st)
}

/// True when `Accept-Encoding` lists `gzip` (or `x-gzip`) with a non-zero quality.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f64>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip")) && !refused
        })
}

fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 3 + 64),
        flate2::Compression::default(),
    );
    enc.write_all(body)?;
    enc.finish()
}

fn tile_not_found(st: &Shared) -> Response {
    st.count_error("tile_not_found");
    text(StatusCode::NOT_FOUND, "text/plain", "Not Found")
}

type TilePath = (String, String, String, String, String);

async fn tile(
    State(st): St,
    Path((set, version, z, x, y)): Path<TilePath>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    lock(&st.stats).tile_calls += 1;
    let Some(pairs) = parse_query(raw.as_deref()) else {
        return st.api_error(400, "tile_bad_request", "Invalid query string", 100);
    };
    if let Err(r) = prelude(&st, Class::Tile, &headers, &pairs).await {
        return r;
    }
    let (Some(ts), "2", Ok(z), Ok(x), Ok(y)) = (
        Tileset::from_name(&set),
        version.as_str(),
        z.parse::<u8>(),
        x.parse::<u32>(),
        y.parse::<u32>(),
    ) else {
        return tile_not_found(&st);
    };
    if st.config.hostile.tile_bomb && z == tiles::IMAGE_ZOOM && x < 1 << z && y < 1 << z {
        return tile_bomb(&st).await;
    }
    match st.config.hostile.empty_tiles {
        Some(EmptyTile::Body) => {
            st.count_error("empty_tile");
            let mvt = "application/x-protobuf";
            return (StatusCode::OK, [(header::CONTENT_TYPE, mvt)], Vec::new()).into_response();
        }
        Some(EmptyTile::NotFound) if z == tiles::IMAGE_ZOOM => return tile_not_found(&st),
        _ => {}
    }
    let want_gzip = accepts_gzip(&headers);
    let st2 = st.clone();
    let job = tokio::task::spawn_blocking(move || {
        let opts = RenderOptions {
            lag: Some(&st2.lag),
            drift: st2.config.tile_drift,
        };
        let body = tiles::render_with(&st2.world, ts, z, x, y, &opts).ok()?;
        if want_gzip && !body.is_empty() {
            gzip(&body).ok().map(|b| (b, true))
        } else {
            Some((body, false))
        }
    });
    let (body, gzipped) = match job.await {
        Ok(Some(r)) => r,
        Ok(None) => return tile_not_found(&st),
        Err(_) => {
            return st.transient(500, "tile_http500", "Service temporarily unavailable", 2);
        }
    };
    {
        let mut s = lock(&st.stats);
        s.tiles_served += 1;
        s.tile_bytes += body.len() as u64;
    }
    let mut resp = Response::new(Body::from(body));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-protobuf"),
    );
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if gzipped {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    resp
}

/// The `tile_bomb` answer: the cached gzip bomb, `Content-Encoding: gzip` whatever was asked.
async fn tile_bomb(st: &Shared) -> Response {
    st.count_error("tile_bomb");
    let Ok(body) = tokio::task::spawn_blocking(hostile::tile_bomb).await else {
        return st.transient(500, "tile_http500", "Service temporarily unavailable", 2);
    };
    {
        let mut s = lock(&st.stats);
        s.tiles_served += 1;
        s.tile_bytes += body.len() as u64;
    }
    let mut resp = Response::new(Body::from(body));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-protobuf"),
    );
    h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    resp
}

async fn tiles_fallback() -> Response {
    text(StatusCode::NOT_FOUND, "text/plain", "Not Found")
}

pub fn tiles_router(st: Arc<Shared>) -> Router {
    Router::new()
        .route("/maps/vtp/{set}/{version}/{z}/{x}/{y}", get(tile))
        .route("/maps/vtp/{set}/{version}/{z}/{x}/{y}/", get(tile))
        .fallback(tiles_fallback)
        .with_state(st)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::WorldSpec;

    #[test]
    fn fuzzy_cap_is_deterministic_and_in_range() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..200 {
            let b = format!("8.5,47.3{i},8.51,47.31");
            let c = effective_cap(2000, true, 0.06, &b);
            assert!((1880..=2000).contains(&c), "{c}");
            assert_eq!(c, effective_cap(2000, true, 0.06, &b));
            seen.insert(c);
        }
        assert!(seen.len() > 50);
        assert_eq!(effective_cap(2000, false, 0.06, "x"), 2000);
    }

    #[test]
    fn default_fuzz_matches_the_old_integer_span_and_any_fuzz_stays_in_range() {
        for cap in 1..=50_000usize {
            let old = |t: &str| {
                let d = Sha256::digest(t.as_bytes());
                let h = u64::from_le_bytes(d[..8].try_into().unwrap());
                cap - (h % ((cap * 6 / 100) as u64 + 1)) as usize
            };
            let t = format!("1,2,3,{cap}");
            assert_eq!(effective_cap(cap, true, 0.06, &t), old(&t), "cap {cap}");
        }
        for (cap, fuzz) in [(500, 0.5), (1, 0.9), (7, 1.0), (1000, 0.0), (2000, 2.0)] {
            for i in 0..300 {
                let c = effective_cap(cap, true, fuzz, &format!("b{i}"));
                let lo = (cap as f64 * (1.0 - fuzz.min(1.0))).floor().max(1.0) as usize;
                assert!((lo..=cap).contains(&c), "{cap} {fuzz} {c}");
            }
        }
    }

    #[test]
    fn edge_first_keeps_images_nearest_the_edges() {
        let w = World::generate(&WorldSpec::demo());
        let h = &WorldSpec::demo().hotspots[0];
        let b = [
            h.center[0] - 0.0025,
            h.center[1] - 0.0025,
            h.center[0] + 0.0025,
            h.center[1] + 0.0025,
        ];
        let inside = w.indexed_in(b);
        let n = inside.len();
        let kept = edge_first(inside.clone(), b, BboxPosition::Original, 100);
        assert_eq!(kept.len(), 100);
        let d = |i: &SimImage| {
            let [x, y] = i.index_pos;
            (x - b[0]).min(b[2] - x).min(y - b[1]).min(b[3] - y)
        };
        let worst_kept = kept.iter().map(|i| d(i)).fold(0.0, f64::max);
        let kept_ids: std::collections::HashSet<u64> = kept.iter().map(|i| i.id).collect();
        for i in inside.iter().filter(|i| !kept_ids.contains(&i.id)) {
            assert!(d(i) >= worst_kept);
        }
        assert!(n > 100);
        assert!(kept.windows(2).all(|p| d(p[0]) <= d(p[1])));
    }

    #[test]
    fn fields_parse_and_reject_unknown() {
        let f = parse_fields(Some(
            "id,geometry,detections.value,detections{value,created_at}",
        ))
        .unwrap();
        assert_eq!(f.len(), 4);
        assert_eq!(f[2].sub, vec!["value"]);
        assert_eq!(f[3].sub, vec!["value", "created_at"]);
        assert_eq!(parse_fields(Some("id,bogus")).unwrap_err(), "bogus");
        assert!(parse_fields(None).unwrap().is_empty());
    }

    #[test]
    fn token_shapes() {
        assert!(token_well_formed(crate::DEMO_TOKEN));
        assert!(!token_well_formed("MLY|bogus"));
        assert!(!token_well_formed(
            "MLY|12|0123456789ABCDEF0123456789abcdef"
        ));
        assert!(!token_well_formed("MLY||0123456789abcdef0123456789abcdef"));
    }

    #[test]
    fn gzip_negotiation() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            m
        };
        assert!(accepts_gzip(&h("gzip")));
        assert!(accepts_gzip(&h("br, gzip;q=0.5, deflate")));
        assert!(!accepts_gzip(&h("gzip;q=0")));
        assert!(!accepts_gzip(&h("identity")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn cursors_round_trip() {
        assert_eq!(parse_cursor(&cursor(1234)), Some(1234));
        assert_eq!(parse_cursor("nope"), None);
    }
}
