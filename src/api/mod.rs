//! The Mapillary Graph API and CDN client: requests, bounded bodies, retries
//! with backoff, client-side rate limits. Network only: no file system, no
//! knowledge of grids, the output folder or the command line (`config`
//! here holds the plain settings; `crate::config` builds them from flags).
//!
//! The token goes only in the `Authorization: OAuth` header of Graph
//! requests (marked sensitive); CDN requests carry no credentials, and error
//! messages never include a URL (signed thumbnail URLs are secrets).
//!
//! Network hygiene: thumbnails are fetched over https only (plain http only
//! when the API itself is on loopback, for tests); no client follows a
//! redirect from https to http; the credentialed Graph client follows
//! redirects only within its origin, so the token never goes elsewhere.
//! Memory: thumbnail bodies in memory are bounded in total
//! (`MAX_THUMB_BYTES_IN_FLIGHT`), whatever the concurrency.

mod config;
pub(crate) mod retry;
pub(crate) mod tiles;
pub(crate) mod wire;

use std::io::Cursor;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rand::Rng;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde_json::{Map, Value};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use config::{ApiConfig, RetryPolicy, TilesConfig};
pub use retry::ApiError;

use crate::model::{Bbox, ImageId};
use wire::{Collection, ErrorBody};

/// Largest Graph API body accepted (a full 2,000-image search is ~2 MB).
pub(crate) const MAX_JSON_BYTES: usize = 64 * 1024 * 1024;
/// Largest thumbnail accepted.
pub(crate) const MAX_IMAGE_BYTES: usize = 64 * 1024 * 1024;
/// Most thumbnail bytes held in memory at once, over all downloads in
/// flight: a download reserves its announced length (or
/// [`MAX_IMAGE_BYTES`] when none is announced) before reading its body, and
/// keeps it until its [`Thumbnail`] is dropped (after it is written).
pub(crate) const MAX_THUMB_BYTES_IN_FLIGHT: usize = 256 * 1024 * 1024;
/// Most redirects followed for one request.
pub(crate) const MAX_REDIRECTS: usize = 3;
/// The unit of the thumbnail memory budget's permits.
const BUDGET_UNIT: usize = 1024;

/// Request counters, readable while a run goes on.
#[derive(Debug, Default)]
pub(crate) struct ApiStats {
    pub search_calls: AtomicU64,
    pub entity_calls: AtomicU64,
    pub retries: AtomicU64,
    /// Vector tile requests (every attempt), see `api::tiles`.
    pub tile_calls: AtomicU64,
    /// `/images?image_ids=` lookups (every attempt), see `api::tiles`.
    pub batch_calls: AtomicU64,
}

/// Search parameters besides the bbox.
#[derive(Debug, Clone, Default)]
pub(crate) struct SearchQuery {
    /// Comma-separated field list.
    pub fields: String,
    pub limit: u32,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub is_pano: Option<bool>,
    pub creator: Option<String>,
    pub organization: Option<String>,
}

/// One bbox search's answer.
#[derive(Debug)]
pub(crate) struct SearchAnswer {
    /// The image objects, unparsed.
    pub items: Vec<Box<serde_json::value::RawValue>>,
    /// The answer pointed to a next page.
    pub has_more: bool,
}

/// A downloaded, verified JPEG. While it lives, its bytes count against
/// [`MAX_THUMB_BYTES_IN_FLIGHT`].
#[derive(Debug, Clone)]
pub(crate) struct Thumbnail {
    pub bytes: Bytes,
    pub width: u32,
    pub height: u32,
    _budget: Arc<OwnedSemaphorePermit>,
}

/// The Graph API and CDN client. Cheap to share behind an `Arc`.
pub struct Client {
    graph: reqwest::Client,
    cdn: reqwest::Client,
    base: reqwest::Url,
    auth: HeaderValue,
    retry: RetryPolicy,
    search_limiter: DefaultDirectRateLimiter,
    entity_limiter: DefaultDirectRateLimiter,
    stats: Arc<ApiStats>,
    /// Plain-http thumbnail URLs are accepted (the API is on loopback).
    allow_http_thumbs: bool,
    /// Thumbnail bytes in memory, in units of `BUDGET_UNIT`.
    thumb_budget: Arc<Semaphore>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

fn limiter(per_min: u32) -> DefaultDirectRateLimiter {
    let n = NonZeroU32::new(per_min.max(1)).expect("nonzero");
    let burst = NonZeroU32::new((per_min / 60).max(1)).expect("nonzero");
    RateLimiter::direct(Quota::per_minute(n).allow_burst(burst))
}

/// Whether a client may follow a redirect from `from` to `to`, hop number
/// `hops` (1-based). Never from https to http, never to a scheme other than
/// http(s), never more than [`MAX_REDIRECTS`]; a client that sends
/// credentials (`same_origin_only`) only within the origin it started at.
pub(crate) fn redirect_verdict(
    origin: &reqwest::Url,
    from: &reqwest::Url,
    to: &reqwest::Url,
    hops: usize,
    same_origin_only: bool,
) -> Result<(), &'static str> {
    if hops > MAX_REDIRECTS {
        return Err("too many redirects");
    }
    if !matches!(to.scheme(), "https" | "http") {
        return Err("a redirect to a scheme other than http(s)");
    }
    if from.scheme() == "https" && to.scheme() != "https" {
        return Err("a redirect from https to plain http");
    }
    if same_origin_only && to.origin() != origin.origin() {
        return Err("a redirect of a request carrying the access token to another origin");
    }
    Ok(())
}

/// A reqwest redirect policy applying [`redirect_verdict`].
fn redirect_policy(same_origin_only: bool) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        let prev = attempt.previous();
        let (Some(origin), Some(from)) = (prev.first(), prev.last()) else {
            return attempt.stop();
        };
        match redirect_verdict(origin, from, attempt.url(), prev.len(), same_origin_only) {
            Ok(()) => attempt.follow(),
            Err(why) => attempt.error(RedirectRefused(why)),
        }
    })
}

/// The error a refused redirect ends its request with.
#[derive(Debug)]
struct RedirectRefused(&'static str);

impl std::fmt::Display for RedirectRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "refused {}", self.0)
    }
}

impl std::error::Error for RedirectRefused {}

/// True when `url`'s host is a loopback address or `localhost`.
pub(crate) fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

impl Client {
    /// Builds a client from a validated config.
    pub fn new(cfg: &ApiConfig) -> Result<Self, ApiError> {
        let build = |ua: &str, same_origin_only: bool| {
            reqwest::Client::builder()
                .user_agent(ua)
                .connect_timeout(cfg.connect_timeout)
                .read_timeout(cfg.read_timeout)
                .pool_max_idle_per_host(64)
                .redirect(redirect_policy(same_origin_only))
                .build()
                .map_err(|e| ApiError::Network(e.without_url().to_string()))
        };
        let ua = concat!("mlyexport/", env!("CARGO_PKG_VERSION"));
        let mut auth =
            HeaderValue::from_str(&format!("OAuth {}", cfg.token.expose())).map_err(|_| {
                ApiError::Auth {
                    message: "the token contains characters not allowed in an HTTP header".into(),
                }
            })?;
        auth.set_sensitive(true);
        let mut base = cfg.base_url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        Ok(Self {
            graph: build(ua, true)?,
            cdn: build(ua, false)?,
            allow_http_thumbs: is_loopback(&base),
            thumb_budget: Arc::new(Semaphore::new(MAX_THUMB_BYTES_IN_FLIGHT / BUDGET_UNIT)),
            base,
            auth,
            retry: cfg.retry,
            search_limiter: limiter(cfg.search_per_min),
            entity_limiter: limiter(cfg.entity_per_min),
            stats: Arc::new(ApiStats::default()),
        })
    }

    /// Attempts per request, including the first.
    pub(crate) fn retry_attempts(&self) -> u32 {
        self.retry.attempts
    }

    /// Counters of requests made so far.
    pub(crate) fn stats(&self) -> Arc<ApiStats> {
        Arc::clone(&self.stats)
    }

    /// One bbox search, retried on transient errors (a body that is not a
    /// collection counts as one). Returns the image objects as sent, and
    /// whether the answer said more pages exist (bbox searches are not
    /// documented to page: such an answer is treated as cut).
    pub(crate) async fn search(
        &self,
        bbox: &Bbox,
        q: &SearchQuery,
    ) -> Result<SearchAnswer, ApiError> {
        let mut params: Vec<(&str, String)> = vec![
            ("bbox", bbox.to_param()),
            ("fields", q.fields.clone()),
            ("limit", q.limit.to_string()),
        ];
        let iso = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
        if let Some(t) = &q.since {
            params.push(("start_captured_at", iso(t)));
        }
        if let Some(t) = &q.until {
            params.push(("end_captured_at", iso(t)));
        }
        if let Some(p) = q.is_pano {
            params.push(("is_pano", p.to_string()));
        }
        if let Some(c) = &q.creator {
            params.push(("creator_username", c.clone()));
        }
        if let Some(o) = &q.organization {
            params.push(("organization_id", o.clone()));
        }
        self.with_retry(|| async {
            self.search_limiter.until_ready().await;
            self.stats.search_calls.fetch_add(1, Ordering::Relaxed);
            let body = self.get_json("images", &params).await?;
            match serde_json::from_slice::<Collection>(&body) {
                Ok(page) => Ok(SearchAnswer {
                    has_more: page.paging.is_some_and(|p| p.next.is_some()),
                    items: page.data,
                }),
                Err(e) => Err(match ErrorBody::parse(&body) {
                    Some(err) => retry::classify(500, Some(&err), None),
                    None => ApiError::Body(format!("search answer is not a collection: {e}")),
                }),
            }
        })
        .await
    }

    /// One image entity with the given fields, retried on transient errors.
    pub async fn image(&self, id: ImageId, fields: &str) -> Result<Map<String, Value>, ApiError> {
        let params = [("fields", fields.to_string())];
        let path = id.to_string();
        let body = self
            .with_retry(|| async {
                self.entity_limiter.until_ready().await;
                self.stats.entity_calls.fetch_add(1, Ordering::Relaxed);
                self.get_json(&path, &params).await
            })
            .await?;
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(ApiError::Body("entity answer is not a JSON object".into())),
        }
    }

    /// Downloads a thumbnail once (no retry: the caller may need a fresh URL)
    /// and verifies it is a complete JPEG of the promised length.
    pub(crate) async fn thumbnail(&self, url: &str) -> Result<Thumbnail, ApiError> {
        let url = reqwest::Url::parse(url)
            .map_err(|_| ApiError::Body("the thumbnail URL is not a URL".into()))?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http_thumbs => {}
            _ => {
                return Err(ApiError::Insecure(
                    "a thumbnail URL that is not https (plain http is accepted only when the API is on loopback)".into(),
                ));
            }
        }
        let resp = self.cdn.get(url).send().await.map_err(net_error)?;
        let status = resp.status().as_u16();
        if status == 403 {
            return Err(ApiError::ExpiredUrl);
        }
        if !resp.status().is_success() {
            let ra = retry::parse_retry_after(header_str(&resp, "retry-after"));
            return Err(retry::classify(status, None, ra));
        }
        let ctype = header_str(&resp, "content-type")
            .unwrap_or("")
            .to_ascii_lowercase();
        if !ctype.starts_with("image/jpeg") {
            return Err(ApiError::NotJpeg(format!("content-type `{ctype}`")));
        }
        let promised = resp.content_length();
        let budget = self.reserve_thumb_bytes(promised).await?;
        let bytes = read_limited(resp, MAX_IMAGE_BYTES).await?;
        if let Some(n) = promised
            && bytes.len() as u64 != n
        {
            return Err(ApiError::Body(format!(
                "truncated: {} of {n} bytes",
                bytes.len()
            )));
        }
        if !bytes.starts_with(&[0xFF, 0xD8]) {
            return Err(ApiError::NotJpeg("no JPEG start marker".into()));
        }
        if !bytes.ends_with(&[0xFF, 0xD9]) {
            return Err(ApiError::Body("truncated: no JPEG end marker".into()));
        }
        let (width, height) =
            image::ImageReader::with_format(Cursor::new(&bytes[..]), image::ImageFormat::Jpeg)
                .into_dimensions()
                .map_err(|e| ApiError::NotJpeg(format!("unreadable JPEG header: {e}")))?;
        Ok(Thumbnail {
            bytes,
            width,
            height,
            _budget: Arc::new(budget),
        })
    }

    /// Waits until `announced` bytes (or [`MAX_IMAGE_BYTES`] when no length
    /// was announced) fit in the thumbnail memory budget, and reserves them.
    async fn reserve_thumb_bytes(
        &self,
        announced: Option<u64>,
    ) -> Result<OwnedSemaphorePermit, ApiError> {
        let n = match announced {
            Some(n) if n > MAX_IMAGE_BYTES as u64 => {
                return Err(ApiError::Body(format!(
                    "body larger than {MAX_IMAGE_BYTES} bytes"
                )));
            }
            Some(n) => n as usize,
            None => MAX_IMAGE_BYTES,
        };
        let units = u32::try_from(n.div_ceil(BUDGET_UNIT).max(1)).unwrap_or(u32::MAX);
        Arc::clone(&self.thumb_budget)
            .acquire_many_owned(units)
            .await
            .map_err(|_| ApiError::Network("the download budget was closed".into()))
    }

    /// Thumbnail bytes that may still be reserved now (for tests).
    #[cfg(test)]
    pub(crate) fn thumb_budget_available(&self) -> usize {
        self.thumb_budget.available_permits() * BUDGET_UNIT
    }

    /// Runs `f` until it succeeds, fails for good, or attempts run out.
    pub(crate) async fn with_retry<T, F, Fut>(&self, mut f: F) -> Result<T, ApiError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let mut attempt = 1;
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() && attempt < self.retry.attempts => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(self.delay(&e, attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The wait before retry `attempt`: `Retry-After` when the API sent one,
    /// else exponential backoff with jitter (half fixed, half random).
    pub(crate) fn delay(&self, e: &ApiError, attempt: u32) -> Duration {
        if let ApiError::RateLimited {
            retry_after: Some(ra),
            ..
        } = e
        {
            return (*ra).min(self.retry.max.max(Duration::from_millis(1)) * 60);
        }
        let b = self.retry.backoff(attempt);
        let half = b / 2;
        half + half.mul_f64(rand::rng().random::<f64>())
    }

    async fn get_json(&self, path: &str, params: &[(&str, String)]) -> Result<Bytes, ApiError> {
        let url = self
            .base
            .join(path)
            .map_err(|_| ApiError::Body(format!("bad API path `{path}`")))?;
        let resp = self
            .graph
            .get(url)
            .query(params)
            .header(AUTHORIZATION, self.auth.clone())
            .send()
            .await
            .map_err(net_error)?;
        let status = resp.status();
        let ra = retry::parse_retry_after(header_str(&resp, "retry-after"));
        let body = read_limited(resp, MAX_JSON_BYTES).await?;
        if status.is_success() {
            // An error envelope with HTTP 200 is treated as the error it is.
            if is_error_envelope(&body)
                && let Some(e) = ErrorBody::parse(&body)
            {
                return Err(retry::classify(500, Some(&e), ra));
            }
            return Ok(body);
        }
        Err(retry::classify(
            status.as_u16(),
            ErrorBody::parse(&body).as_ref(),
            ra,
        ))
    }
}

/// Whether a JSON body is an object whose first key is `error` (however
/// it is spaced or indented).
fn is_error_envelope(body: &[u8]) -> bool {
    let Some(rest) = body.trim_ascii_start().strip_prefix(b"{") else {
        return false;
    };
    rest.trim_ascii_start().starts_with(b"\"error\"")
}

fn header_str<'a>(resp: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

fn net_error(e: reqwest::Error) -> ApiError {
    if e.is_redirect() {
        let why = std::error::Error::source(&e)
            .and_then(|s| s.downcast_ref::<RedirectRefused>())
            .map_or_else(|| "a redirect".to_string(), ToString::to_string);
        return ApiError::Insecure(why);
    }
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "connection failed"
    };
    let e = e.without_url();
    let mut msg = format!("{kind}: {e}");
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    ApiError::Network(msg)
}

async fn read_limited(mut resp: reqwest::Response, max: usize) -> Result<Bytes, ApiError> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(ApiError::Body(format!("body larger than {max} bytes")));
    }
    // The announced length is a hint only: reserve at most 1 MiB up front.
    let mut buf = Vec::with_capacity(resp.content_length().unwrap_or(0).min(1 << 20) as usize);
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if buf.len() + c.len() > max {
                    return Err(ApiError::Body(format!("body larger than {max} bytes")));
                }
                buf.extend_from_slice(&c);
            }
            Ok(None) => return Ok(Bytes::from(buf)),
            Err(e) => {
                return Err(ApiError::Body(format!(
                    "truncated: connection ended after {} bytes ({})",
                    buf.len(),
                    net_error(e)
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AccessToken;

    #[test]
    fn error_envelopes_are_found_however_spaced() {
        assert!(is_error_envelope(b"{\"error\": {\"code\": 2}}"));
        assert!(is_error_envelope(b"\n {\n  \"error\": {}}"));
        assert!(!is_error_envelope(b"{\"id\": \"1\", \"error\": 1}"));
        assert!(!is_error_envelope(b"[]"));
    }

    fn url(s: &str) -> reqwest::Url {
        s.parse().unwrap()
    }

    fn client(base: &str) -> Client {
        Client::new(&ApiConfig {
            base_url: url(base),
            token: AccessToken::new("MLY|1|x").unwrap(),
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            retry: RetryPolicy {
                attempts: 1,
                base: Duration::from_millis(1),
                max: Duration::from_millis(1),
            },
            search_per_min: 60,
            entity_per_min: 60,
            search_cap: 2000,
        })
        .unwrap()
    }

    #[test]
    fn redirect_rules() {
        let a = url("https://graph.example.com/images");
        let same = url("https://graph.example.com/v2/images");
        let other = url("https://cdn.example.com/x");
        let plain = url("http://graph.example.com/images");
        assert_eq!(redirect_verdict(&a, &a, &same, 1, true), Ok(()));
        assert!(redirect_verdict(&a, &a, &other, 1, true).is_err());
        assert_eq!(redirect_verdict(&a, &a, &other, 1, false), Ok(()));
        assert!(redirect_verdict(&a, &a, &plain, 1, false).is_err());
        assert!(redirect_verdict(&a, &a, &plain, 1, true).is_err());
        assert!(redirect_verdict(&a, &a, &same, MAX_REDIRECTS + 1, false).is_err());
        assert!(redirect_verdict(&a, &a, &url("ftp://graph.example.com/"), 1, false).is_err());
        // http to https is an upgrade; http to http only without credentials
        // across origins.
        let h = url("http://127.0.0.1:1/");
        assert_eq!(
            redirect_verdict(&h, &h, &url("https://127.0.0.1:1/"), 1, false),
            Ok(())
        );
        assert!(redirect_verdict(&h, &h, &url("http://127.0.0.1:2/"), 1, true).is_err());
    }

    #[tokio::test]
    async fn thumbnails_need_https_unless_the_api_is_on_loopback() {
        let c = client("https://graph.example.com");
        let e = c.thumbnail("http://127.0.0.1:9/t.jpg").await.unwrap_err();
        assert!(matches!(e, ApiError::Insecure(_)), "{e}");
        assert!(!e.is_retryable());
        let e = c.thumbnail("file:///etc/passwd").await.unwrap_err();
        assert!(matches!(e, ApiError::Insecure(_)), "{e}");
        // On loopback, plain http gets as far as connecting (port 9 is closed).
        let c = client("http://127.0.0.1:9");
        let e = c.thumbnail("http://127.0.0.1:9/t.jpg").await.unwrap_err();
        assert!(matches!(e, ApiError::Network(_)), "{e}");
    }

    #[tokio::test]
    async fn thumbnail_memory_is_bounded_in_total() {
        let c = client("https://graph.example.com");
        assert_eq!(c.thumb_budget_available(), MAX_THUMB_BYTES_IN_FLIGHT);
        let over = c
            .reserve_thumb_bytes(Some(MAX_IMAGE_BYTES as u64 + 1))
            .await;
        assert!(over.is_err());
        // No announced length: the per-image maximum is reserved.
        let n = MAX_THUMB_BYTES_IN_FLIGHT / MAX_IMAGE_BYTES;
        let mut held = Vec::new();
        for _ in 0..n {
            held.push(c.reserve_thumb_bytes(None).await.unwrap());
        }
        assert_eq!(c.thumb_budget_available(), 0);
        let wait =
            tokio::time::timeout(Duration::from_millis(50), c.reserve_thumb_bytes(Some(1000)));
        assert!(wait.await.is_err(), "a download past the budget waits");
        held.pop();
        let small = c.reserve_thumb_bytes(Some(1000)).await.unwrap();
        assert_eq!(
            c.thumb_budget_available(),
            MAX_IMAGE_BYTES - BUDGET_UNIT,
            "1000 bytes take one 1 KiB unit"
        );
        drop((small, held));
        assert_eq!(c.thumb_budget_available(), MAX_THUMB_BYTES_IN_FLIGHT);
    }
}
