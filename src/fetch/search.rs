//! The bbox-search executor shared by the search-only listing
//! ([`list_plan`]: `--enumerate search`, and the fallback when the tiles
//! cannot be used) and the verified listing: a queue of boxes, searches in flight, and what each answer
//! means. A search-only box is split when its answer reaches the split
//! threshold, on a refusal, and when several boxes answer with the same count
//! (a cap signature). A verified box knows how many images the tiles put in
//! it: an answer short of that is evidence of a cap, and the box is packed
//! again below it when that costs fewer calls than looking the rest up by id.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use super::gridindex::{GridIndex, PointIndex};
use super::listing::{
    Found, GridListing, ListError, Selector, completeness, search_query, split_threshold,
};
use super::pack::{self, Margin, OUTER_MARGIN_M, Outer, SearchBox};
use super::progress::Progress;
use crate::aoi::Aoi;
use crate::api::{ApiError, Client, SearchAnswer, SearchQuery};
use crate::model::{ImageId, LonLat};
use crate::plan::Plan;
use crate::runrecord::FailedBox;

/// Searches in flight at once.
const LIST_CONCURRENCY: usize = 8;
/// Answers of fewer results are not watched for a cap signature.
const SIGNATURE_MIN: usize = 50;
/// Boxes that must answer with one count before it is taken for the cap.
const SIGNATURE_BOXES: usize = 2;
/// A verified box may answer this many fewer than the tiles list (ids the
/// Graph no longer has, edge images of the other position) without being
/// taken for cut; or 5% of what it should hold, if more.
const SHORT_SLACK: usize = 10;

/// One box to search, for grid `grid`.
#[derive(Debug, Clone, Copy)]
pub(super) struct BoxJob {
    pub grid: usize,
    pub sb: SearchBox,
    /// Images the tiles list inside the asked box (verified listings only).
    pub expected: Option<usize>,
}

impl BoxJob {
    /// The margin of this box's outer sides, at its latitude.
    pub(super) fn margin(&self) -> Margin {
        let c = &self.sb.cell;
        Margin::metres(OUTER_MARGIN_M, (c.min_lat() + c.max_lat()) / 2.0)
    }

    /// Every grid's box, cut under the API's area limit, with the sides that
    /// face outside the plan's grids marked outer; boxes that do not touch
    /// the AOI (widened by the margin) are left out. `expected` is `None`.
    /// For the verified listing: a border between two shards is an inner
    /// side ([`GridIndex::covers`]).
    pub(super) fn initial(plan: &Plan, aoi: Option<&Aoi>, index: &GridIndex) -> Vec<BoxJob> {
        Self::boxes(plan, aoi, |p| index.covers(p))
    }

    /// [`BoxJob::initial`] for a search-only listing: for a shard, the sides
    /// facing another shard's cells are outer too, widened by the margin.
    /// With the API's bbox filter on the computed position, an image this
    /// shard owns (by its GPS position) whose computed position lies across
    /// such a border is returned only by boxes reaching across it, and no
    /// lookup by id finds it later; what the wider boxes return that is not
    /// this shard's, the owner rule drops.
    pub(super) fn search_only(plan: &Plan, aoi: Option<&Aoi>, index: &GridIndex) -> Vec<BoxJob> {
        Self::boxes(plan, aoi, |p| index.covers_own(p))
    }

    /// Every grid's box, with its sides outer where `covered` says a position
    /// just beyond is not covered.
    fn boxes(plan: &Plan, aoi: Option<&Aoi>, covered: impl Fn(LonLat) -> bool) -> Vec<BoxJob> {
        let mut out = Vec::new();
        for (gi, g) in plan.grids().iter().enumerate() {
            let c = g.bbox;
            let m = Margin::metres(OUTER_MARGIN_M, (c.min_lat() + c.max_lat()) / 2.0);
            let outer = pack::outer_sides(&c, m, &covered);
            for sb in pack::under_area_limit(SearchBox::new(c, outer), m) {
                if aoi.is_none_or(|a| a.intersects_box(&sb.asked(m))) {
                    out.push(BoxJob {
                        grid: gi,
                        sb,
                        expected: None,
                    });
                }
            }
        }
        out
    }
}

/// Runs searches for boxes and keeps what each grid's listing came to.
pub(super) struct Searcher<'c, 's, 'a> {
    client: &'c Client,
    sel: &'s mut Selector<'a>,
    query: SearchQuery,
    /// Search-only boxes answering this many or more are split.
    split_at: usize,
    /// Known positions (verified listings) for packing boxes again.
    points: Option<&'s PointIndex>,
    /// Every id the tiles list near the plan (verified listings).
    tile_ids: Option<&'s HashSet<ImageId>>,
    progress: &'s Arc<Progress>,
    queue: VecDeque<BoxJob>,
    grids: Vec<GridListing>,
    open: Vec<usize>,
    /// Every id any search returned (kept or not).
    pub returned: HashSet<ImageId>,
    /// Listed images per grid that came from a search.
    pub from_search: Vec<u64>,
    /// Sizes of answers of unsplit search-only boxes, for the cap signature.
    sizes: BTreeMap<usize, Vec<BoxJob>>,
    /// A cap read from the answers: a signature, a short answer or a refusal.
    seen_cap: Option<usize>,
    /// The largest search-only answer so far.
    largest_answer: usize,
    /// The largest verified answer so far.
    largest_verified: usize,
    /// Images without any position returned by a box widened at the area's
    /// edge: they may lie in the margin, outside the area; left out when a
    /// search of the margin strips returns them (see `confirm_held`).
    held: Vec<(BoxJob, Box<RawValue>)>,
}

impl<'c, 's, 'a> Searcher<'c, 's, 'a> {
    pub(super) fn new(
        client: &'c Client,
        sel: &'s mut Selector<'a>,
        query: SearchQuery,
        split_at: usize,
        progress: &'s Arc<Progress>,
    ) -> Self {
        let n = sel.plan().grids().len();
        Searcher {
            client,
            sel,
            query,
            split_at,
            points: None,
            tile_ids: None,
            progress,
            queue: VecDeque::new(),
            grids: vec![GridListing::default(); n],
            open: vec![0; n],
            returned: HashSet::new(),
            from_search: vec![0; n],
            sizes: BTreeMap::new(),
            seen_cap: None,
            largest_answer: 0,
            largest_verified: 0,
            held: Vec::new(),
        }
    }

    /// Verified listings: boxes are packed again from these positions, and
    /// an answer is checked for how many of its ids the tiles know.
    pub(super) fn with_points(
        mut self,
        points: &'s PointIndex,
        tile_ids: &'s HashSet<ImageId>,
    ) -> Self {
        self.points = Some(points);
        self.tile_ids = Some(tile_ids);
        self
    }

    /// Whether the tiles know `id` (anywhere near the plan).
    fn tile_known(&self, id: ImageId) -> bool {
        self.tile_ids.is_some_and(|m| m.contains(&id))
    }

    /// The selector (for the reconciliation that follows the searches).
    pub(super) fn selector(&mut self) -> &mut Selector<'a> {
        self.sel
    }

    /// Searches `jobs` and every box they are split into; each kept image
    /// goes to `sink` once.
    pub(super) async fn run(
        &mut self,
        jobs: Vec<BoxJob>,
        cancel: &CancellationToken,
        mut sink: impl FnMut(Found),
    ) -> Result<(), ListError> {
        for j in jobs {
            self.push(j);
        }
        let client = self.client;
        let query = self.query.clone();
        let mut in_flight = FuturesUnordered::new();
        loop {
            while !cancel.is_cancelled() && in_flight.len() < LIST_CONCURRENCY {
                let Some(job) = self.next_job() else { break };
                let q = &query;
                in_flight.push(async move {
                    let asked = job.sb.asked(job.margin());
                    (job, client.search(&asked, q).await)
                });
            }
            let next = tokio::select! {
                n = in_flight.next() => n,
                () = cancel.cancelled(), if !in_flight.is_empty() => None,
            };
            let Some((job, result)) = next else { break };
            self.on_answer(job, result, &mut sink)?;
        }
        if cancel.is_cancelled() {
            return Err(ListError::Interrupted);
        }
        self.confirm_held(cancel, &mut sink).await
    }

    /// Decides on the held images: the margin strips of their boxes are
    /// merged per side of the area (a handful of thin searches, ids only);
    /// a held image those return lies in a margin, outside the area, and
    /// is left out; the others are kept for the grid whose box returned
    /// them. When a strip's answer may be cut, nothing is left out.
    async fn confirm_held(
        &mut self,
        cancel: &CancellationToken,
        sink: &mut impl FnMut(Found),
    ) -> Result<(), ListError> {
        let held = std::mem::take(&mut self.held);
        if held.is_empty() {
            return Ok(());
        }
        let mut q = self.query.clone();
        q.fields = "id".into();
        let mut outside: HashSet<ImageId> = HashSet::new();
        let mut sure = true;
        let index = self.sel.index();
        let edges = held.iter().map(|(j, _)| (area_edges(j, index), j.margin()));
        for strip in pack::margin_strips(edges) {
            let answer = tokio::select! {
                a = self.client.search(&strip, &q) => a,
                () = cancel.cancelled() => return Err(ListError::Interrupted),
            };
            match answer {
                Ok(a) if !self.may_be_cut(a.items.len()) => outside.extend(ids_of(&a)),
                Err(e @ ApiError::Auth { .. }) => return Err(ListError::Fatal(e)),
                _ => sure = false,
            }
        }
        for (job, item) in &held {
            let id = crate::record::ImageRecord::from_slice(item.get().as_bytes())
                .ok()
                .map(|r| r.id);
            // One in a margin strip lies outside the area: left out.
            if !(sure && id.is_some_and(|id| outside.contains(&id))) {
                self.take(job, item.get(), sink);
            }
        }
        Ok(())
    }

    /// Whether an answer of `n` may have been cut by a cap.
    fn may_be_cut(&self, n: usize) -> bool {
        n >= self.split_at || self.seen_cap.is_some_and(|c| n * 10 >= c * 9)
    }

    /// Offers one object to the selector and passes a kept image on.
    fn take(&mut self, job: &BoxJob, json: &str, sink: &mut impl FnMut(Found)) {
        let v = self.sel.accept(job.grid, json);
        if let Some(id) = v.id {
            self.returned.insert(id);
        }
        if let Some(found) = v.found {
            self.grids[found.grid].listed += 1;
            self.from_search[found.grid] += 1;
            self.progress.listed.fetch_add(1, Ordering::Relaxed);
            sink(found);
        }
    }

    fn push(&mut self, job: BoxJob) {
        self.open[job.grid] += 1;
        self.queue.push_back(job);
    }

    /// The next box to ask; a verified box expected to hold more than a cap
    /// already seen is packed again before it is asked.
    fn next_job(&mut self) -> Option<BoxJob> {
        loop {
            let job = self.queue.pop_front()?;
            let cap = self.seen_cap.map(|c| c * 9 / 10);
            match (job.expected, cap) {
                (Some(e), Some(c)) if e > c && job.sb.can_split() => {
                    if !self.repack(job, c) {
                        return Some(job);
                    }
                    // Its parts are queued in its place.
                    self.open[job.grid] -= 1;
                }
                _ => return Some(job),
            }
        }
    }

    fn on_answer(
        &mut self,
        job: BoxJob,
        result: Result<SearchAnswer, ApiError>,
        sink: &mut impl FnMut(Found),
    ) -> Result<(), ListError> {
        let gi = job.grid;
        self.grids[gi].search_calls += 1;
        self.open[gi] -= 1;
        match result {
            Ok(ans) => self.on_items(job, ans, sink),
            Err(ApiError::TooMuchData { .. }) if job.sb.can_split() => self.on_refusal(job),
            Err(e @ ApiError::Auth { .. }) => return Err(ListError::Fatal(e)),
            Err(e) => self.grids[gi].failed_boxes.push(FailedBox {
                bbox: job.sb.asked(job.margin()),
                reason: e.to_string(),
            }),
        }
        if self.open[gi] == 0 {
            self.progress.grids_listed.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn on_items(&mut self, job: BoxJob, ans: SearchAnswer, sink: &mut impl FnMut(Found)) {
        let n = ans.items.len();
        let widened = job.sb.outer != Outer::default();
        let mut known = 0;
        for item in ans.items {
            let record = crate::record::ImageRecord::from_slice(item.get().as_bytes());
            if record.as_ref().is_ok_and(|r| self.tile_known(r.id)) {
                known += 1;
            }
            match record {
                Ok(r) if widened && self.sel.unplaced(&r) => {
                    self.returned.insert(r.id);
                    self.held.push((job, item));
                }
                _ => self.take(&job, item.get(), sink),
            }
        }
        match job.expected {
            // The API says the answer goes on: a cut, whatever the counts.
            Some(_) if ans.has_more => self.split_or_truncated(job),
            Some(expected) => self.check_short(job, n, known, expected),
            None => self.check_cut(job, n, ans.has_more),
        }
    }

    /// A verified box answered `n` images, `known` of them ids the tiles
    /// know, where the tiles place `expected` in the box. Clearly fewer known
    /// ones is a cut (a cap), even when images the tiles do not list yet
    /// filled the answer up: the known ids would be looked up later, but
    /// images only a search can see (newer than the tiles, or without a
    /// position) may have been cut too, so the box is packed again below the
    /// cap. A large answer holding images the tiles do not know is split
    /// whatever its count. A few fewer is allowed for ids the Graph no
    /// longer has. Known ids the tiles place just outside the box count: an
    /// API filtering on the other position returns some of those instead of
    /// some inside.
    fn check_short(&mut self, job: BoxJob, n: usize, known: usize, expected: usize) {
        let slack = (expected / 20).max(SHORT_SLACK);
        let near_cap = self.seen_cap.is_some_and(|c| n * 10 >= c * 9);
        self.largest_verified = self.largest_verified.max(n);
        // A cap is the largest answer there is (give or take a fuzzy cap's
        // spread): an answer within 10% of the largest so far may be one.
        let largest = n >= SIGNATURE_MIN && n * 10 >= self.largest_verified * 9;
        if n > known && (near_cap || largest || n >= self.split_at) {
            // Images the tiles do not know (newer than them, or without a
            // position) in an answer as large as a cap may be: an API that
            // orders them last cuts only them, and the count of known ids
            // cannot tell, whatever the cap; split.
            self.split_or_truncated(job);
            return;
        }
        if n > expected && (near_cap || (n > expected + slack && n >= self.split_at)) {
            // More than the tiles counted (images outside the tiles read, or
            // newer than them), and as many as a cap: the answer may be cut
            // and nothing else tells; split.
            self.split_or_truncated(job);
            return;
        }
        let missing = expected.saturating_sub(known);
        if n == 0 || missing <= slack {
            return;
        }
        self.note_cap(n);
        let below = (n * 8 / 10).max(1);
        if !(job.sb.can_split() && self.repack(job, below)) {
            self.grids[job.grid]
                .truncated_boxes
                .push(job.sb.asked(job.margin()));
        }
    }

    /// A search-only box answered `n`: split it when that may be a cut.
    fn check_cut(&mut self, job: BoxJob, n: usize, has_more: bool) {
        self.largest_answer = self.largest_answer.max(n);
        let sig = self.seen_cap.is_some_and(|c| n * 10 >= c * 9);
        let cut = has_more || n >= self.split_at || sig;
        if cut && job.sb.can_split() {
            self.split(job);
        } else if cut {
            self.grids[job.grid]
                .truncated_boxes
                .push(job.sb.asked(job.margin()));
        } else if n >= SIGNATURE_MIN {
            self.watch_signature(job, n);
        }
    }

    /// Several unsplit boxes answering exactly `n` look like a cap of `n`:
    /// split them all (their images are kept; the quarters are asked again).
    fn watch_signature(&mut self, job: BoxJob, n: usize) {
        let same = self.sizes.entry(n).or_default();
        same.push(job);
        let count = same.len();
        // A cap is the largest answer there is: a count some box exceeded
        // is no cap, and small equal counts are mere coincidences.
        let largest = self.sizes.keys().next_back() == Some(&n) && self.largest_answer <= n;
        if count < SIGNATURE_BOXES
            || !largest
            || n < self.split_at / 2
            || self.seen_cap.is_some_and(|c| c <= n)
        {
            return;
        }
        self.note_cap(n);
        let again: Vec<BoxJob> = self
            .sizes
            .range(n * 9 / 10..)
            .flat_map(|(_, v)| v.iter().copied())
            .collect();
        self.sizes.retain(|&k, _| k < n * 9 / 10);
        for j in again {
            if j.sb.can_split() {
                self.split(j);
            } else {
                self.grids[j.grid]
                    .truncated_boxes
                    .push(j.sb.asked(j.margin()));
            }
        }
    }

    fn note_cap(&mut self, n: usize) {
        self.seen_cap = Some(self.seen_cap.map_or(n, |c| c.min(n)));
    }

    /// A refused box: a verified box is packed to half of what it holds
    /// (and later boxes as large are packed before they are asked); a
    /// search-only box is quartered.
    fn on_refusal(&mut self, job: BoxJob) {
        match job.expected {
            Some(e) => {
                self.note_cap(e.max(2));
                if !self.repack(job, (e / 2).max(1)) {
                    self.split(job);
                }
            }
            None => self.split(job),
        }
    }

    /// Splits a box that may have been cut; one at the smallest size is
    /// recorded as truncated.
    fn split_or_truncated(&mut self, job: BoxJob) {
        if job.sb.can_split() {
            self.split(job);
        } else {
            self.grids[job.grid]
                .truncated_boxes
                .push(job.sb.asked(job.margin()));
        }
    }

    fn split(&mut self, job: BoxJob) {
        for sb in job.sb.quarters() {
            let child = BoxJob { sb, ..job };
            if self.wanted(&child) {
                let expected = job.expected.map(|_| self.count(&child));
                self.push(BoxJob { expected, ..child });
            }
        }
    }

    /// Packs a verified box into boxes of at most `target` known images;
    /// false when that does not cut it.
    fn repack(&mut self, job: BoxJob, target: usize) -> bool {
        let Some(points) = self.points else {
            return false;
        };
        let m = job.margin();
        let parts = pack::pack(job.sb, &points.within(&job.sb.asked(m)), target, m);
        if parts.len() < 2 {
            return false;
        }
        for sb in parts {
            let child = BoxJob { sb, ..job };
            if self.wanted(&child) {
                let expected = Some(self.count(&child));
                self.push(BoxJob { expected, ..child });
            }
        }
        true
    }

    fn wanted(&self, job: &BoxJob) -> bool {
        self.sel
            .aoi()
            .is_none_or(|a| a.intersects_box(&job.sb.asked(job.margin())))
    }

    fn count(&self, job: &BoxJob) -> usize {
        let asked = job.sb.asked(job.margin());
        self.points.map_or(0, |p| p.count(&asked))
    }

    /// Each grid's listing as the searches left it (completeness as for a
    /// search-only listing; a verified listing decides it afterwards).
    pub(super) fn finish(self) -> Vec<GridListing> {
        let mut grids = self.grids;
        for g in &mut grids {
            g.completeness = completeness(g);
        }
        grids
    }

    /// Grids with no box at all (outside the AOI) count as listed at once.
    pub(super) fn mark_empty_grids(&self, jobs: &[BoxJob]) {
        let mut has = vec![false; self.grids.len()];
        for j in jobs {
            has[j.grid] = true;
        }
        let empty = has.iter().filter(|h| !**h).count() as u64;
        self.progress
            .grids_listed
            .fetch_add(empty, Ordering::Relaxed);
    }
}

/// `job`'s box with only its outer sides that face outside the whole area,
/// not another shard's cells ([`BoxJob::search_only`]). What lies in a
/// margin across a shard border is inside the area: an image there without
/// a position is kept, and the claims decide between the shards whose boxes
/// returned it.
fn area_edges(job: &BoxJob, index: &GridIndex) -> SearchBox {
    let out = pack::outer_sides(&job.sb.cell, job.margin(), |p| index.covers(p));
    let o = job.sb.outer;
    let outer = Outer {
        west: o.west && out.west,
        south: o.south && out.south,
        east: o.east && out.east,
        north: o.north && out.north,
    };
    SearchBox { outer, ..job.sb }
}

fn ids_of(a: &SearchAnswer) -> HashSet<ImageId> {
    a.items
        .iter()
        .filter_map(|i| crate::record::ImageRecord::from_slice(i.get().as_bytes()).ok())
        .map(|r| r.id)
        .collect()
}

/// Lists every grid of the selector's plan by bbox searches alone (not
/// verified): boxes are split at [`split_threshold`] of `cap`, on a refusal,
/// and when several boxes answer with the same count (a cap signature).
/// Each kept image goes to `sink` exactly once. One `GridListing` per grid,
/// in plan order.
pub(crate) async fn list_plan(
    client: &Client,
    sel: &mut Selector<'_>,
    cap: u32,
    progress: &Arc<Progress>,
    cancel: &CancellationToken,
    sink: impl FnMut(Found),
) -> Result<Vec<GridListing>, ListError> {
    let query = search_query(sel.filters(), sel.size(), cap);
    let jobs = BoxJob::search_only(sel.plan(), sel.aoi(), sel.index());
    progress.grids_total.store(
        sel.plan().grids().len() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    let mut searcher = Searcher::new(client, sel, query, split_threshold(cap), progress);
    searcher.mark_empty_grids(&jobs);
    searcher.run(jobs, cancel, sink).await?;
    Ok(searcher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan;

    /// The middle cell of three in a row, as a shard's part.
    fn middle_of_three() -> Plan {
        let area: crate::model::Bbox = "8.50,47.35,8.56,47.39".parse().unwrap();
        Plan::scoped(plan::cut(&area, 3, 1).unwrap(), &[1]).unwrap()
    }

    #[test]
    fn a_shard_border_is_outer_for_a_search_only_listing_alone() {
        let part = middle_of_three();
        let index = GridIndex::new(&part);
        let [verified] = BoxJob::initial(&part, None, &index)[..] else {
            panic!("one box");
        };
        let [search] = BoxJob::search_only(&part, None, &index)[..] else {
            panic!("one box");
        };
        let outside = Outer {
            west: false,
            east: false,
            north: true,
            south: true,
        };
        assert_eq!(verified.sb.outer, outside);
        assert_eq!(
            search.sb.outer,
            Outer {
                west: true,
                east: true,
                ..outside
            }
        );
        // Margin strips (for images without a position) only where the
        // whole area ends.
        assert_eq!(area_edges(&search, &index).outer, outside);
        let whole = Plan::new(vec![part.grids()[0].clone()]).unwrap();
        let alone = GridIndex::new(&whole);
        let [b] = BoxJob::search_only(&whole, None, &alone)[..] else {
            panic!("one box");
        };
        assert_eq!(area_edges(&b, &alone).outer, b.sb.outer);
    }
}
