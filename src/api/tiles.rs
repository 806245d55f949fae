//! Vector tiles and batched image lookups for `--enumerate tiles`: one tile's
//! body (404 and 204 mean no images) and `/images?image_ids=` batches. Network
//! only, through the same `Client` (retries, rate limits, bounded bodies, the
//! error classification of `retry`). The token goes only in the
//! `Authorization: OAuth` header, never in a tile URL; no grids, no files.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{ACCEPT, AUTHORIZATION};

use super::wire::{Collection, ErrorBody};
use super::{ApiError, Client, header_str, net_error, read_limited, retry};
use crate::model::ImageId;
use crate::tiles::{MAX_TILE_BYTES, TileId};

/// Most ids in one `/images?image_ids=` lookup.
pub(crate) const MAX_BATCH: usize = 100;

/// A rate-limit answer asking to wait longer than this is the daily tile
/// budget running out: it fails the tile instead of sleeping for hours.
const LONGEST_TILE_WAIT: Duration = Duration::from_secs(120);

/// Which coverage tileset to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tileset {
    /// `mly1_public`: images at their original GPS position.
    Public,
    /// `mly1_computed_public`: images at their SfM-computed position
    /// (images without one are absent).
    ComputedPublic,
}

impl Tileset {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Tileset::Public => "mly1_public",
            Tileset::ComputedPublic => "mly1_computed_public",
        }
    }
}

impl Client {
    /// One vector tile `{root}/maps/vtp/{tileset}/2/{z}/{x}/{y}`, retried on
    /// transient errors. `None` when the server has no such tile (404, 204);
    /// an empty body is returned as such (it holds no images). gzip is
    /// undone by the HTTP client when the server says it used it.
    pub(crate) async fn tile(
        &self,
        root: &reqwest::Url,
        tileset: Tileset,
        t: TileId,
    ) -> Result<Option<Bytes>, ApiError> {
        let mut base = root.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let path = format!("maps/vtp/{}/2/{}/{}/{}", tileset.name(), t.z, t.x, t.y);
        let url = base
            .join(&path)
            .map_err(|_| ApiError::Body(format!("bad tile path `{path}`")))?;
        self.with_retry(|| async {
            self.stats.tile_calls.fetch_add(1, Ordering::Relaxed);
            match self.get_tile(url.clone()).await {
                Err(ApiError::RateLimited {
                    message,
                    retry_after: Some(wait),
                }) if wait > LONGEST_TILE_WAIT => Err(ApiError::Rejected {
                    status: 429,
                    message: format!(
                        "{message}; the daily tile budget of this token is used up (the API asks to wait {} s)",
                        wait.as_secs()
                    ),
                }),
                other => other,
            }
        })
        .await
    }

    async fn get_tile(&self, url: reqwest::Url) -> Result<Option<Bytes>, ApiError> {
        let resp = self
            .graph
            .get(url)
            .header(AUTHORIZATION, self.auth.clone())
            .header(
                ACCEPT,
                "application/x-protobuf, application/vnd.mapbox-vector-tile, */*",
            )
            .send()
            .await
            .map_err(net_error)?;
        let status = resp.status();
        if status.as_u16() == 404 || status.as_u16() == 204 {
            return Ok(None);
        }
        let ra = retry::parse_retry_after(header_str(&resp, "retry-after"));
        let body = read_limited(resp, MAX_TILE_BYTES).await?;
        if status.is_success() {
            return Ok(Some(body));
        }
        Err(retry::classify(
            status.as_u16(),
            ErrorBody::parse(&body).as_ref(),
            ra,
        ))
    }

    /// The image objects of up to [`MAX_BATCH`] ids with the given fields,
    /// retried on transient errors. The API answers in its own order and
    /// leaves out ids it does not know: the caller matches them up.
    pub(crate) async fn images_by_ids(
        &self,
        ids: &[ImageId],
        fields: &str,
    ) -> Result<Vec<Box<serde_json::value::RawValue>>, ApiError> {
        if ids.len() > MAX_BATCH {
            return Err(ApiError::Rejected {
                status: 0,
                message: format!(
                    "{} ids in one lookup; at most {MAX_BATCH} are asked at once",
                    ids.len()
                ),
            });
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let params = [
            ("image_ids", list.join(",")),
            ("fields", fields.to_string()),
        ];
        let body = self
            .with_retry(|| async {
                self.search_limiter.until_ready().await;
                self.stats.batch_calls.fetch_add(1, Ordering::Relaxed);
                self.get_json("images", &params).await
            })
            .await?;
        let page: Collection = serde_json::from_slice(&body)
            .map_err(|e| ApiError::Body(format!("image_ids answer is not a collection: {e}")))?;
        Ok(page.data)
    }
}
