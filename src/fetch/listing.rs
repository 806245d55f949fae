//! Complete listing beyond the API's cap: searches every box of every grid,
//! splits boxes whose answer may be truncated (or that the API refuses as too
//! much data), clips results to the box, assigns each image to exactly one
//! grid, de-duplicates by id and applies the filters. Network through
//! `api::Client` only; results go to a caller's sink (no file system here).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::aoi::Aoi;
use crate::api::{ApiError, Client, SearchQuery, wire};
use crate::model::{Bbox, ImageId, PanoFilter, PositionSource, ThumbSize};
use crate::plan::{self, Plan};
use crate::record::{ImageRecord, SEARCH_FIELDS};
use crate::runrecord::{Completeness, FailedBox, Filters};

use super::Progress;

/// Searches in flight at once while listing.
const LIST_CONCURRENCY: usize = 8;

/// One image the lister kept.
#[derive(Debug)]
pub struct Found {
    /// Index of the owning grid in the plan.
    pub grid: usize,
    pub id: ImageId,
    /// The API's object without any signed URL.
    pub object: Map<String, Value>,
    /// The signed URL of the chosen rendition, when the search returned it.
    pub url: Option<String>,
    pub record: ImageRecord,
}

/// How one grid's listing went.
#[derive(Debug, Clone)]
pub struct GridListing {
    pub completeness: Completeness,
    pub search_calls: u64,
    pub listed: u64,
    pub truncated_boxes: Vec<Bbox>,
    pub failed_boxes: Vec<FailedBox>,
}

impl Default for GridListing {
    fn default() -> Self {
        Self {
            completeness: Completeness::Pending,
            search_calls: 0,
            listed: 0,
            truncated_boxes: Vec::new(),
            failed_boxes: Vec::new(),
        }
    }
}

/// Why the listing stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error(transparent)]
    Fatal(ApiError),
    #[error("interrupted")]
    Interrupted,
    #[error("{0}")]
    Unsupported(String),
}

/// The search parameters for the filters and rendition.
/// The fields asked of every image: [`SEARCH_FIELDS`] and the URL of the
/// thumbnail of `size`, comma-separated.
pub fn fields_for(size: ThumbSize) -> String {
    let mut fields: Vec<&str> = SEARCH_FIELDS.to_vec();
    fields.push(size.url_field());
    fields.join(",")
}

pub fn search_query(filters: &Filters, size: ThumbSize, cap: u32) -> SearchQuery {
    SearchQuery {
        fields: fields_for(size),
        limit: cap,
        since: filters.since,
        until: filters.until,
        is_pano: match filters.pano {
            PanoFilter::Include => None,
            PanoFilter::Only => Some(true),
            PanoFilter::Exclude => Some(false),
        },
        creator: filters.creator.clone(),
        organization: filters.organization.clone(),
    }
}

/// Whether an answer of `n` results may have been cut by the cap. The real
/// API cuts silently and somewhat below 2,000 (complete answers of 1,849 and
/// cut ones from 1,879 were measured), so 90% of the cap counts as cut.
pub fn may_be_truncated(n: usize, cap: u32) -> bool {
    n as u64 * 10 >= u64::from(cap) * 9
}

/// Whether an image passes the filters, judged on what the record carries
/// (the API filtered already; this guards against an API that ignores one).
pub fn passes(filters: &Filters, r: &ImageRecord) -> bool {
    if let Some(t) = r.captured_at
        && (filters.since.is_some_and(|s| t < s) || filters.until.is_some_and(|u| t > u))
    {
        return false;
    }
    if r.is_pano.is_some() && !filters.pano.keeps(r.is_pano) {
        return false;
    }
    if let (Some(want), Some(have)) = (&filters.creator, &r.creator_username)
        && !want.eq_ignore_ascii_case(have)
    {
        return false;
    }
    if let (Some(want), Some(have)) = (&filters.organization, &r.organization_id)
        && want != have
    {
        return false;
    }
    true
}

/// Decides, for each image an enumeration returns, whether it is kept and
/// by which grid: clipping to the box, the AOI polygon, grid ownership,
/// the filters, and de-duplication by id. Shared by every enumeration.
pub struct Selector<'a> {
    plan: &'a Plan,
    filters: &'a Filters,
    size: ThumbSize,
    position: PositionSource,
    aoi: Option<&'a Aoi>,
    seen: HashSet<ImageId>,
}

impl<'a> Selector<'a> {
    pub fn new(
        plan: &'a Plan,
        filters: &'a Filters,
        size: ThumbSize,
        position: PositionSource,
        aoi: Option<&'a Aoi>,
    ) -> Self {
        Self {
            plan,
            filters,
            size,
            position,
            aoi,
            seen: HashSet::new(),
        }
    }

    pub fn plan(&self) -> &'a Plan {
        self.plan
    }
    pub fn filters(&self) -> &'a Filters {
        self.filters
    }
    pub fn size(&self) -> ThumbSize {
        self.size
    }
    pub fn position(&self) -> PositionSource {
        self.position
    }
    pub fn aoi(&self) -> Option<&'a Aoi> {
        self.aoi
    }

    /// How far (degrees) to widen a search box so that images whose chosen
    /// position is inside but whose original GPS (what the API filters on)
    /// is just outside are returned too.
    pub fn search_margin(&self) -> f64 {
        match self.position {
            PositionSource::Original => 0.0,
            PositionSource::Computed => 0.001,
        }
    }

    /// Whether a box may be split: it must be splittable at all, and larger
    /// than the search margin, or its quarters would be searched with nearly
    /// the same widened box.
    pub fn can_split(&self, b: &Bbox) -> bool {
        plan::can_split(b) && b.width().min(b.height()) > self.search_margin()
    }

    /// Whether a box needs to be listed at all.
    pub fn wants_box(&self, b: &Bbox) -> bool {
        self.aoi.is_none_or(|a| a.intersects_box(b))
    }

    /// Judges one API image object returned for grid `gi`'s box `b`.
    /// Returns `None` for an image that is outside, owned by another grid,
    /// filtered out, already seen, or not an image object.
    /// The object comes as JSON text; the full map is built only for an
    /// image that is kept.
    pub fn accept_json(&mut self, gi: usize, b: &Bbox, json: &str) -> Option<Found> {
        let record = ImageRecord::from_slice(json.as_bytes()).ok()?;
        let owner = match record.position(self.position).map(|(p, _)| p) {
            Some(p) if !b.contains_closed(p) => return None,
            Some(p) if self.aoi.is_some_and(|a| !a.contains(p)) => return None,
            Some(p) => self.plan.owner(p)?,
            None => gi,
        };
        if owner != gi || !passes(self.filters, &record) || self.seen.contains(&record.id) {
            return None;
        }
        let mut object: Map<String, Value> = serde_json::from_str(json).ok()?;
        self.seen.insert(record.id);
        let url = wire::take_thumb_url(&mut object, self.size.url_field());
        Some(Found {
            grid: gi,
            id: record.id,
            object,
            url,
            record,
        })
    }
}

/// How one grid's listing ended, from what happened to its boxes.
pub fn completeness(g: &GridListing) -> Completeness {
    if !g.failed_boxes.is_empty() {
        Completeness::Failed
    } else if !g.truncated_boxes.is_empty() {
        Completeness::Truncated
    } else {
        Completeness::Complete
    }
}

/// Lists every grid of the selector's plan by bbox searches. Each kept
/// image goes to `sink` exactly once. Returns one `GridListing` per grid,
/// in plan order.
pub async fn list_plan(
    client: &Client,
    sel: &mut Selector<'_>,
    cap: u32,
    progress: &Arc<Progress>,
    cancel: &CancellationToken,
    mut sink: impl FnMut(Found),
) -> Result<Vec<GridListing>, ListError> {
    let plan = sel.plan();
    let query = search_query(sel.filters(), sel.size(), cap);
    let margin = sel.search_margin();
    let mut grids = vec![GridListing::default(); plan.grids().len()];
    let mut open = vec![0usize; plan.grids().len()];
    let mut queue: VecDeque<(usize, Bbox)> = VecDeque::new();
    for (i, g) in plan.grids().iter().enumerate() {
        for b in plan::initial_boxes(g.bbox, margin)
            .into_iter()
            .filter(|b| sel.wants_box(b))
        {
            queue.push_back((i, b));
            open[i] += 1;
        }
    }
    progress
        .grids_total
        .store(plan.grids().len() as u64, Ordering::Relaxed);
    for (i, g) in grids.iter_mut().enumerate() {
        if open[i] == 0 {
            g.completeness = Completeness::Complete;
            progress.grids_listed.fetch_add(1, Ordering::Relaxed);
        }
    }
    let mut in_flight = FuturesUnordered::new();
    let mut fatal: Option<ApiError> = None;

    loop {
        while fatal.is_none() && !cancel.is_cancelled() && in_flight.len() < LIST_CONCURRENCY {
            let Some((gi, b)) = queue.pop_front() else {
                break;
            };
            let q = &query;
            let asked = b.expanded(margin);
            in_flight.push(async move { (gi, b, client.search(&asked, q).await) });
        }
        let next = tokio::select! {
            n = in_flight.next() => n,
            () = cancel.cancelled(), if !in_flight.is_empty() => None,
        };
        let Some((gi, b, result)) = next else { break };
        grids[gi].search_calls += 1;
        open[gi] -= 1;
        let mut split = |queue: &mut VecDeque<(usize, Bbox)>| {
            for q in b.quarters().into_iter().filter(|q| sel.wants_box(q)) {
                queue.push_front((gi, q));
                open[gi] += 1;
            }
        };
        match result {
            Ok(ans)
                if (ans.has_more || may_be_truncated(ans.items.len(), cap))
                    && sel.can_split(&b) =>
            {
                split(&mut queue)
            }
            Ok(ans) => {
                if ans.has_more || may_be_truncated(ans.items.len(), cap) {
                    grids[gi].truncated_boxes.push(b);
                }
                for item in ans.items {
                    if let Some(found) = sel.accept_json(gi, &b, item.get()) {
                        grids[gi].listed += 1;
                        progress.listed.fetch_add(1, Ordering::Relaxed);
                        sink(found);
                    }
                }
            }
            Err(ApiError::TooMuchData { .. }) if sel.can_split(&b) => split(&mut queue),
            Err(e @ ApiError::Auth { .. }) => fatal = Some(e),
            Err(e) => grids[gi].failed_boxes.push(FailedBox {
                bbox: b,
                reason: e.to_string(),
            }),
        }
        if open[gi] == 0 {
            grids[gi].completeness = completeness(&grids[gi]);
            progress.grids_listed.fetch_add(1, Ordering::Relaxed);
        }
    }
    if let Some(e) = fatal {
        return Err(ListError::Fatal(e));
    }
    if cancel.is_cancelled() {
        return Err(ListError::Interrupted);
    }
    Ok(grids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn boxes_smaller_than_the_search_margin_are_not_split() {
        let plan = Plan::single("8.5,47.3,8.6,47.4".parse().unwrap());
        let filters = Filters {
            since: None,
            until: None,
            pano: PanoFilter::Include,
            creator: None,
            organization: None,
            max_images: None,
        };
        let small: Bbox = "8.5,47.3,8.5008,47.3008".parse().unwrap();
        let computed = Selector::new(
            &plan,
            &filters,
            ThumbSize::S256,
            PositionSource::Computed,
            None,
        );
        assert!(!computed.can_split(&small));
        let original = Selector::new(
            &plan,
            &filters,
            ThumbSize::S256,
            PositionSource::Original,
            None,
        );
        assert!(original.can_split(&small));
    }

    #[test]
    fn truncation_threshold() {
        assert!(!may_be_truncated(1799, 2000));
        assert!(may_be_truncated(1800, 2000));
        assert!(may_be_truncated(2000, 2000));
        assert!(may_be_truncated(90, 100));
    }

    #[test]
    fn filters_judge_only_known_fields() {
        let f = Filters {
            since: Some("2020-01-01T00:00:00Z".parse().unwrap()),
            until: None,
            pano: PanoFilter::Exclude,
            creator: Some("Alice".into()),
            organization: None,
            max_images: None,
        };
        let r = |v: Value| ImageRecord::from_value(&v).unwrap();
        assert!(passes(&f, &r(json!({"id": "1"}))));
        assert!(passes(
            &f,
            &r(json!({"id": "1", "creator": {"username": "alice"}}))
        ));
        assert!(!passes(&f, &r(json!({"id": "1", "is_pano": true}))));
        assert!(!passes(&f, &r(json!({"id": "1", "captured_at": 1_000}))));
        assert!(!passes(
            &f,
            &r(json!({"id": "1", "creator": {"username": "bob"}}))
        ));
    }
}
