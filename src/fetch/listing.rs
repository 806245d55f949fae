//! What every listing shares: the fields asked, the filters judged on the
//! client, the `Selector` that gives each returned image to exactly one grid
//! (by its documented position, whichever box returned it) and de-duplicates
//! by id, and when a search answer may have been cut. No network: the
//! listings (`search`, `tiles`, `verified`) use it and hand what it keeps to
//! a caller's sink.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::aoi::Aoi;
use crate::api::{ApiError, SearchQuery, wire};
use crate::model::{Bbox, ImageId, PanoFilter, PositionSource, ThumbSize};
use crate::plan::Plan;
use crate::record::{ImageRecord, SEARCH_FIELDS};
use crate::runrecord::{Completeness, FailedBox, Filters, Verification};

use super::gridindex::GridIndex;

/// One image the lister kept.
#[derive(Debug)]
pub struct Found {
    /// Index of the owning grid in the plan.
    pub grid: usize,
    /// The image id.
    pub id: ImageId,
    /// The API's object without any signed URL.
    pub object: Map<String, Value>,
    /// The signed URL of the chosen rendition, when the search returned it.
    pub url: Option<String>,
    /// The typed view of `object`.
    pub record: ImageRecord,
}

/// How one grid's listing went.
#[derive(Debug, Clone)]
pub(crate) struct GridListing {
    pub completeness: Completeness,
    pub search_calls: u64,
    pub listed: u64,
    pub truncated_boxes: Vec<Bbox>,
    pub failed_boxes: Vec<FailedBox>,
    /// The check against the vector tiles (verified listings only).
    pub verification: Option<Verification>,
}

impl Default for GridListing {
    fn default() -> Self {
        Self {
            completeness: Completeness::Pending,
            search_calls: 0,
            listed: 0,
            truncated_boxes: Vec::new(),
            failed_boxes: Vec::new(),
            verification: None,
        }
    }
}

/// Why the listing stopped early.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // each variant's #[error] text is its documentation
pub enum ListError {
    #[error(transparent)]
    Fatal(ApiError),
    #[error("interrupted")]
    Interrupted,
}

/// The search parameters for the filters and rendition.
/// The fields asked of every image: [`SEARCH_FIELDS`] and the URL of the
/// thumbnail of `size`, comma-separated.
pub(crate) fn fields_for(size: ThumbSize) -> String {
    let mut fields: Vec<&str> = SEARCH_FIELDS.to_vec();
    fields.push(size.url_field());
    fields.join(",")
}

pub(crate) fn search_query(filters: &Filters, size: ThumbSize, cap: u32) -> SearchQuery {
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

/// The answer size from which a search-only listing splits a box: half the
/// cap. Cuts from about 1,500 of the documented 2,000 have been reported, and
/// nothing confirms where the real API cuts, so a search-only listing stays
/// well below any cut seen and is still only *assumed* complete.
pub(crate) fn split_threshold(cap: u32) -> usize {
    (cap as usize / 2).max(1)
}

/// Whether an answer of `n` results may have been cut by a cap of `cap`.
#[cfg(test)]
pub(crate) fn may_be_truncated(n: usize, cap: u32) -> bool {
    n >= split_threshold(cap)
}

/// Whether an image passes the filters, judged on what the record carries
/// (the API filtered already; this guards against an API that ignores one).
pub(crate) fn passes(filters: &Filters, r: &ImageRecord) -> bool {
    // A time dropped as implausible is not "no time": it fails a date filter
    // (as the API's own filter on the raw time would), never slips through.
    let dated = filters.since.is_some() || filters.until.is_some();
    if dated && r.warnings.iter().any(|w| w == "captured_at_out_of_range") {
        return false;
    }
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
pub(crate) struct Selector<'a> {
    plan: &'a Plan,
    filters: &'a Filters,
    size: ThumbSize,
    position: PositionSource,
    aoi: Option<&'a Aoi>,
    seen: HashSet<ImageId>,
    index: GridIndex,
    /// The API did not filter by creator: an image must name the creator asked.
    strict_creator: bool,
}

/// What the `Selector` made of one returned object.
#[derive(Debug)]
pub(crate) struct Verdict {
    /// The image's id, when the object had a valid one.
    pub id: Option<ImageId>,
    /// The image, when it was kept (now, for its owning grid).
    pub found: Option<Found>,
}

impl<'a> Selector<'a> {
    pub(crate) fn new(
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
            index: GridIndex::new(plan),
            strict_creator: false,
        }
    }

    /// The searches are not filtered by creator on the server (verified
    /// listings filter on the client): an image without a creator is dropped
    /// when `--creator` was given.
    pub(crate) fn strict_creator(mut self) -> Self {
        self.strict_creator = true;
        self
    }

    pub(crate) fn plan(&self) -> &'a Plan {
        self.plan
    }
    pub(crate) fn filters(&self) -> &'a Filters {
        self.filters
    }
    pub(crate) fn size(&self) -> ThumbSize {
        self.size
    }
    pub(crate) fn position(&self) -> PositionSource {
        self.position
    }
    pub(crate) fn aoi(&self) -> Option<&'a Aoi> {
        self.aoi
    }
    /// The plan's grids, indexed by position.
    pub(crate) fn index(&self) -> &GridIndex {
        &self.index
    }

    /// Whether an image's record passes every filter, creator included.
    fn keeps(&self, record: &ImageRecord) -> bool {
        passes(self.filters, record)
            && !(self.strict_creator
                && self.filters.creator.is_some()
                && record.creator_username.is_none())
    }

    /// Judges one API image object, returned by a box of grid `returned_by`
    /// (whichever box returned it): kept for the grid that owns its position
    /// (the grid `returned_by` for an image without any position), unless
    /// it lies outside the area or the AOI, fails a filter, or was kept
    /// already.
    pub(crate) fn accept(&mut self, returned_by: usize, json: &str) -> Verdict {
        match ImageRecord::from_slice(json.as_bytes()) {
            Ok(record) => self.accept_record(returned_by, record, json),
            Err(_) => Verdict {
                id: None,
                found: None,
            },
        }
    }

    /// Whether a parsed record has no position of the chosen kind (nor the
    /// other): such an image can only be placed by the box that returned it.
    pub(crate) fn unplaced(&self, record: &ImageRecord) -> bool {
        record.position(self.position).is_none()
    }

    /// [`Selector::accept`] for an object already parsed into `record`.
    pub(crate) fn accept_record(
        &mut self,
        returned_by: usize,
        record: ImageRecord,
        json: &str,
    ) -> Verdict {
        let id = Some(record.id);
        let owner = match record.position(self.position).map(|(p, _)| p) {
            Some(p) if self.aoi.is_some_and(|a| !a.contains(p)) => None,
            Some(p) => self.index.owner(self.plan, p),
            None => Some(returned_by),
        };
        let keep = owner.filter(|_| self.keeps(&record) && !self.seen.contains(&record.id));
        let found = keep.and_then(|gi| self.found(gi, record, json));
        Verdict { id, found }
    }

    fn found(&mut self, gi: usize, record: ImageRecord, json: &str) -> Option<Found> {
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

    /// Judges one API image object returned for grid `gi`'s box `b`, kept
    /// only when it lies in `b` and `gi` owns it (the audit compares boxes).
    /// Returns `None` for an image that is outside, owned by another grid,
    /// filtered out, already seen, or not an image object.
    /// The object comes as JSON text; the full map is built only for an
    /// image that is kept.
    pub(crate) fn accept_json(&mut self, gi: usize, b: &Bbox, json: &str) -> Option<Found> {
        let record = ImageRecord::from_slice(json.as_bytes()).ok()?;
        let owner = match record.position(self.position).map(|(p, _)| p) {
            Some(p) if !b.contains_closed(p) => return None,
            Some(p) if self.aoi.is_some_and(|a| !a.contains(p)) => return None,
            Some(p) => self.index.owner(self.plan, p)?,
            None => gi,
        };
        if owner != gi || !self.keeps(&record) || self.seen.contains(&record.id) {
            return None;
        }
        self.found(gi, record, json)
    }
}

/// How one grid's listing ended, from what happened to its boxes, when it
/// was not verified.
pub(crate) fn completeness(g: &GridListing) -> Completeness {
    if !g.failed_boxes.is_empty() {
        Completeness::Failed
    } else if !g.truncated_boxes.is_empty() {
        Completeness::Truncated
    } else {
        Completeness::AssumedComplete
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn truncation_threshold() {
        assert!(!may_be_truncated(999, 2000));
        assert!(may_be_truncated(1000, 2000));
        assert!(may_be_truncated(2000, 2000));
        assert!(may_be_truncated(50, 100));
        assert_eq!(split_threshold(1), 1);
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
        assert!(!passes(
            &f,
            &r(json!({"id": "1", "captured_at": 1_500_000_000_000_i64}))
        ));
        assert!(!passes(
            &f,
            &r(json!({"id": "1", "creator": {"username": "bob"}}))
        ));
        // An unset camera clock (1970) is dropped as a time, but still fails a date filter.
        let unset = r(json!({"id": "1", "captured_at": 0}));
        assert_eq!(unset.captured_at, None);
        assert!(!passes(&f, &unset));
        let undated = Filters { since: None, ..f };
        assert!(passes(&undated, &r(json!({"id": "1", "captured_at": 0}))));
    }
}
