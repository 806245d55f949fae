//! The library's bbox listing: every image in one bbox, beyond the API's
//! per-request cap, verified against the vector tiles when they can be used
//! (the engine of `fetch`, for one box and without files).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::listing::{self, Found, ListError};
use super::progress::Progress;
use super::{search, tiles, verified};
use crate::api::TilesConfig;
use crate::api::{ApiError, Client};
use crate::model::{Bbox, PositionSource, ThumbSize};
use crate::plan::Plan;
use crate::record::ImageRecord;
use crate::runrecord::{Completeness, Filters};

/// A complete listing of one bbox, for library users.
#[derive(Debug, Clone)]
pub struct BboxListing {
    /// The images, sorted by capture time then id; the API's objects without
    /// the signed thumbnail URLs.
    pub images: Vec<ImageRecord>,
    /// `Verified` when checked against the vector tiles; otherwise how
    /// complete the search-only listing is believed to be.
    pub completeness: Completeness,
    /// Why the listing is not verified, when it is not.
    pub not_verified_because: Option<String>,
}

/// Lists every image in `bbox` that passes `filters`, beyond the API's
/// per-request cap, verified against the vector tiles at `tiles` (the same
/// engine as `fetch`): the equivalent of the old tool's `get_images_in_bbox`.
/// When the tiles cannot be used the listing falls back to searches alone
/// and says so in `not_verified_because`.
///
/// ```no_run
/// # async fn demo() -> anyhow::Result<()> {
/// use mlyexport::{api, api::Client, fetch, model::*, runrecord::Filters};
/// let cfg = api::ApiConfig {
///     base_url: "https://graph.mapillary.com".parse()?,
///     token: AccessToken::new(&std::env::var("MAPILLARY_TOKEN")?).expect("a token"),
///     connect_timeout: std::time::Duration::from_secs(15),
///     read_timeout: std::time::Duration::from_secs(60),
///     retry: api::RetryPolicy { attempts: 6, base: std::time::Duration::from_millis(500), max: std::time::Duration::from_secs(60) },
///     search_per_min: 9_000,
///     entity_per_min: 50_000,
///     search_cap: 2000,
/// };
/// let client = Client::new(&cfg)?;
/// let tiles = api::TilesConfig { base_url: "https://tiles.mapillary.com".parse()?, budget: 50_000 };
/// let bbox: Bbox = "13.40,52.51,13.42,52.52".parse()?;
/// let filters = Filters { since: None, until: None, pano: PanoFilter::Include, creator: None, organization: None, max_images: None };
/// let listing = fetch::images_in_bbox(&client, &tiles, bbox, &filters, ThumbSize::S1024).await?;
/// let first = &listing.images[0];
/// fetch::download_image(&client, first.id, ThumbSize::S1024, std::path::Path::new("downloads/1")).await?;
/// # Ok(()) }
/// ```
pub async fn images_in_bbox(
    client: &Client,
    tiles_cfg: &TilesConfig,
    bbox: Bbox,
    filters: &Filters,
    size: ThumbSize,
) -> Result<BboxListing, ApiError> {
    images_in_bbox_with(
        client,
        tiles_cfg,
        bbox,
        filters,
        size,
        &CancellationToken::new(),
    )
    .await
}

/// [`images_in_bbox`], stopped early (as `ApiError::Network("interrupted")`)
/// when `cancel` fires.
pub async fn images_in_bbox_with(
    client: &Client,
    tiles_cfg: &TilesConfig,
    bbox: Bbox,
    filters: &Filters,
    size: ThumbSize,
    cancel: &CancellationToken,
) -> Result<BboxListing, ApiError> {
    let mut images = Vec::new();
    let progress = Arc::new(Progress::default());
    let search = BboxSearch {
        tiles_cfg,
        bbox,
        filters,
        size,
    };
    let (completeness, not_verified_because) =
        images_in_bbox_each(client, &search, cancel, &progress, |f| {
            images.push(f.record)
        })
        .await?;
    images.sort_by_key(|r| (r.captured_at, r.id));
    Ok(BboxListing {
        images,
        completeness,
        not_verified_because,
    })
}

/// What [`images_in_bbox_each`] lists.
#[derive(Debug, Clone, Copy)]
pub struct BboxSearch<'a> {
    /// The vector tiles host and budget.
    pub tiles_cfg: &'a TilesConfig,
    /// The area.
    pub bbox: Bbox,
    /// The filters the images must pass.
    pub filters: &'a Filters,
    /// The rendition whose URL the objects carry.
    pub size: ThumbSize,
}

/// The listing of [`images_in_bbox_with`], handing each image to `sink` as
/// it is found (unsorted; its `object` is the API's without signed URLs) and
/// counting into `progress`. Returns the completeness and why the listing is
/// not verified, when it is not.
pub async fn images_in_bbox_each(
    client: &Client,
    search: &BboxSearch<'_>,
    cancel: &CancellationToken,
    progress: &Arc<Progress>,
    sink: impl FnMut(Found),
) -> Result<(Completeness, Option<String>), ApiError> {
    let BboxSearch {
        tiles_cfg,
        bbox,
        filters,
        size,
    } = *search;
    let plan = Plan::single(bbox);
    let sel = listing::Selector::new(&plan, filters, size, PositionSource::Original, None);
    let usable = match tiles::plan_tiles(&plan, None, u64::from(tiles_cfg.budget)) {
        Ok(planned) => tiles::preflight(client, tiles_cfg, PositionSource::Original)
            .await
            .map(|()| planned),
        Err(upper) => Err(tiles::TilesError::OverBudget {
            what: "the bbox".into(),
            needed: format!("up to {upper}"),
            budget: tiles_cfg.budget,
        }),
    };
    let (grids, why) = match usable {
        Ok(planned) => {
            let vp = verified::VerifiedPlan {
                tiles: tiles_cfg,
                planned: &planned,
                target: 1500,
                cap: 2000,
            };
            let mut sel = sel.strict_creator();
            (
                verified::list_verified(client, &vp, &mut sel, progress, cancel, sink).await,
                None,
            )
        }
        Err(tiles::TilesError::Preflight(e @ ApiError::Auth { .. })) => return Err(e),
        Err(e) => {
            let mut sel = sel;
            let r = search::list_plan(client, &mut sel, 2000, progress, cancel, sink).await;
            (r, Some(format!("the vector tiles could not be used ({e})")))
        }
    };
    let grids = grids.map_err(|e| match e {
        ListError::Fatal(e) => e,
        ListError::Interrupted => ApiError::Network("interrupted".into()),
    })?;
    let g = grids.first();
    Ok((
        g.map_or(Completeness::Pending, |g| g.completeness),
        why.or_else(|| {
            g.and_then(|g| g.verification.as_ref())
                .and_then(|v| v.not_verified_because.clone())
        }),
    ))
}
