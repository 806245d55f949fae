//! The tiles listing (`--enumerate tiles`, and each `--audit` box's tiles
//! side): reads the planned tiles (a few at a time),
//! queues each image a tile holds for a Graph lookup, looks them up in
//! batches, and offers each answer to the `Selector`. [`TilesLister`] holds
//! all the state and decides what to start next; [`list_plan_tiles`] only
//! runs the requests it asks for and hands their results back.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use super::listing::{Found, GridListing, ListError, Selector, completeness, fields_for};
use super::progress::Progress;
use super::tiles::{
    POSITION_MARGIN_DEG, PlannedTile, intersection, passes_tile_filters, push_grid, tileset_for,
};
use crate::api::TilesConfig;
use crate::api::tiles::{MAX_BATCH, Tileset};
use crate::api::{ApiError, Client};
use crate::model::{ImageId, LonLat};
use crate::plan::Plan;
use crate::record::ImageRecord;
use crate::runrecord::{Completeness, FailedBox, Filters};
use crate::tiles::{self as tmath, DecodedTile, TileId, TileImage};

/// Tile reads in flight at once.
const TILES_CONCURRENCY: usize = 8;
/// `image_ids` lookups in flight at once (besides the tile reads).
const BATCH_CONCURRENCY: usize = 8;
/// Failed ids quoted in one failure reason.
const QUOTED_IDS: usize = 5;

/// Lists every grid of the selector's plan through the `planned` vector
/// tiles (planned and counted against the budget by the caller). Each kept
/// image goes to `sink` exactly once; one `GridListing` per grid, in order.
pub(crate) async fn list_plan_tiles(
    client: &Client,
    tiles: &TilesConfig,
    planned: &[PlannedTile],
    sel: &mut Selector<'_>,
    progress: &Arc<Progress>,
    cancel: &CancellationToken,
    mut sink: impl FnMut(Found),
) -> Result<Vec<GridListing>, ListError> {
    let (plan, filters) = (sel.plan(), sel.filters());
    let tileset = tileset_for(sel.position());
    let fields = fields_for(sel.size());
    progress
        .grids_total
        .store(plan.grids().len() as u64, Ordering::Relaxed);
    let mut lister = TilesLister::new(plan, planned, progress);
    let mut in_flight: FuturesUnordered<BoxFuture<'_, Done>> = FuturesUnordered::new();
    loop {
        while lister.fatal.is_none() && !cancel.is_cancelled() {
            match lister.next_launch() {
                Some(Launch::Batch(batch)) => {
                    in_flight.push(Box::pin(lookup(client, batch, &fields)))
                }
                Some(Launch::Tile(k)) => {
                    let t = planned[k].id;
                    in_flight.push(Box::pin(read_tile(client, &tiles.base_url, tileset, k, t)));
                }
                None => break,
            }
        }
        let next = tokio::select! {
            n = in_flight.next() => n,
            () = cancel.cancelled(), if !in_flight.is_empty() => None,
        };
        match next {
            None => break,
            Some(Done::Tile { k, result, fatal }) => lister.on_tile(k, result, fatal, filters),
            Some(Done::Batch { batch, result }) => lister.on_batch(batch, result, sel, &mut sink),
        }
    }
    lister.into_grids(cancel)
}

/// An image of a tile waiting for its Graph lookup.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Candidate {
    id: ImageId,
    /// Index of its tile in the tile list.
    tile: usize,
    /// The tile's (quantised) position.
    position: LonLat,
    /// Already missing from one answer.
    retried: bool,
}

/// A finished request.
enum Done {
    Tile {
        k: usize,
        result: Result<Option<DecodedTile>, String>,
        fatal: Option<ApiError>,
    },
    Batch {
        batch: Vec<Candidate>,
        result: Result<Vec<Box<RawValue>>, ApiError>,
    },
}

/// What to start next.
#[derive(Debug, PartialEq)]
enum Launch {
    /// Look these candidates up.
    Batch(Vec<Candidate>),
    /// Read planned tile `k`.
    Tile(usize),
}

/// Reads and decodes tile `k` (`t`).
async fn read_tile(
    client: &Client,
    root: &reqwest::Url,
    tileset: Tileset,
    k: usize,
    t: TileId,
) -> Done {
    let (result, fatal) = match client.tile(root, tileset, t).await {
        Ok(Some(body)) => {
            let decoded =
                tokio::task::spawn_blocking(move || tmath::decode_image_layer(t, &body)).await;
            let result = match decoded {
                Ok(Ok(d)) => Ok(Some(d)),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(format!("tile {t}: decoding stopped: {e}")),
            };
            (result, None)
        }
        Ok(None) => (Ok(None), None),
        // A refused token, or the daily tile budget used up: every other
        // tile would fail the same way.
        Err(e @ (ApiError::Auth { .. } | ApiError::Rejected { status: 429, .. })) => {
            (Err(e.to_string()), Some(e))
        }
        Err(e) => (Err(format!("tile {t}: {e}")), None),
    };
    Done::Tile { k, result, fatal }
}

/// Looks a batch of candidates up by id.
async fn lookup(client: &Client, batch: Vec<Candidate>, fields: &str) -> Done {
    let ids: Vec<ImageId> = batch.iter().map(|c| c.id).collect();
    let result = client.images_by_ids(&ids, fields).await;
    Done::Batch { batch, result }
}

/// The state of a tiles listing: what is left to read and look up, and
/// each grid's listing so far.
struct TilesLister<'a> {
    plan: &'a Plan,
    planned: &'a [PlannedTile],
    progress: &'a Progress,
    grids: Vec<GridListing>,
    /// Work left per grid: tiles not yet read, candidates not yet judged.
    open_tiles: Vec<usize>,
    open_ids: Vec<usize>,
    finished: Vec<bool>,
    next_tile: usize,
    tiles_in_flight: usize,
    batches_in_flight: usize,
    pending: VecDeque<Candidate>,
    queued: HashSet<ImageId>,
    /// What stops the listing (a refused token, the tile budget used up).
    fatal: Option<ApiError>,
}

impl<'a> TilesLister<'a> {
    /// A listing of `plan` through `planned`; grids without a tile are
    /// listed at once.
    fn new(plan: &'a Plan, planned: &'a [PlannedTile], progress: &'a Progress) -> Self {
        let n = plan.grids().len();
        let mut open_tiles = vec![0usize; n];
        for t in planned {
            for &gi in &t.grids {
                open_tiles[gi] += 1;
            }
        }
        let mut lister = TilesLister {
            plan,
            planned,
            progress,
            grids: vec![GridListing::default(); n],
            open_tiles,
            open_ids: vec![0; n],
            finished: vec![false; n],
            next_tile: 0,
            tiles_in_flight: 0,
            batches_in_flight: 0,
            pending: VecDeque::new(),
            queued: HashSet::new(),
            fatal: None,
        };
        for gi in 0..n {
            lister.finish(gi);
        }
        lister
    }

    /// The next request to start, if any: a full batch (or the last
    /// candidates once every tile is read), else the next tile.
    fn next_launch(&mut self) -> Option<Launch> {
        let tiles_to_come = self.next_tile < self.planned.len() || self.tiles_in_flight > 0;
        let batch_ready =
            self.pending.len() >= MAX_BATCH || (!self.pending.is_empty() && !tiles_to_come);
        if batch_ready && self.batches_in_flight < BATCH_CONCURRENCY {
            self.batches_in_flight += 1;
            let take = self.pending.len().min(MAX_BATCH);
            return Some(Launch::Batch(self.pending.drain(..take).collect()));
        }
        if self.next_tile < self.planned.len() && self.tiles_in_flight < TILES_CONCURRENCY {
            self.next_tile += 1;
            self.tiles_in_flight += 1;
            return Some(Launch::Tile(self.next_tile - 1));
        }
        None
    }

    /// Marks grid `gi` listed once nothing is left for it.
    fn finish(&mut self, gi: usize) {
        if !self.finished[gi] && self.open_tiles[gi] == 0 && self.open_ids[gi] == 0 {
            self.finished[gi] = true;
            self.grids[gi].completeness = completeness(&self.grids[gi]);
            self.progress.grids_listed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The grids an image at `p` of tile `k` may belong to.
    fn candidates(&self, k: usize, p: LonLat) -> Vec<usize> {
        let near = |gi: &usize| {
            self.plan.grids()[*gi]
                .bbox
                .expanded(POSITION_MARGIN_DEG)
                .contains_closed(p)
        };
        self.planned[k].grids.iter().copied().filter(near).collect()
    }

    /// Records a failure of tile `k` for the grids `gis`.
    fn fail(&mut self, k: usize, gis: &[usize], reason: &str) {
        let tb = self.planned[k].id.bbox();
        for &gi in gis {
            let gb = self.plan.grids()[gi].bbox;
            self.grids[gi].failed_boxes.push(FailedBox {
                bbox: intersection(&tb, &gb).unwrap_or(gb),
                reason: reason.to_string(),
            });
        }
    }

    /// A tile read (or failed): its images are queued for lookup.
    fn on_tile(
        &mut self,
        k: usize,
        result: Result<Option<DecodedTile>, String>,
        fatal: Option<ApiError>,
        filters: &Filters,
    ) {
        let planned = self.planned;
        self.tiles_in_flight -= 1;
        if let Some(e) = fatal {
            self.fatal.get_or_insert(e);
        }
        match result {
            Ok(None) => {}
            Ok(Some(decoded)) => self.on_decoded(k, decoded, filters),
            Err(reason) => self.fail(k, &planned[k].grids, &reason),
        }
        for &gi in &planned[k].grids {
            self.open_tiles[gi] -= 1;
            self.finish(gi);
        }
    }

    fn on_decoded(&mut self, k: usize, decoded: DecodedTile, filters: &Filters) {
        let planned = self.planned;
        self.progress
            .malformed
            .fetch_add(decoded.skipped(), Ordering::Relaxed);
        // A tile crossed by sequences may hold no image: a missing `image`
        // layer alone is not drift here.
        if decoded.skipped() > 0 || decoded.bad_types > 0 {
            let reason = drift_reason(planned[k].id, &decoded);
            self.fail(k, &planned[k].grids, &reason);
        }
        for img in decoded.images {
            self.queue(k, &img, filters);
        }
    }

    /// Queues an image of tile `k` for lookup, once, when it passes the
    /// tile filters and lies near one of the tile's grids.
    fn queue(&mut self, k: usize, img: &TileImage, filters: &Filters) {
        let Some(id) = ImageId::new(img.id) else {
            return;
        };
        if !passes_tile_filters(filters, img) {
            return;
        }
        let Some(&first) = self.candidates(k, img.position).first() else {
            return;
        };
        if !self.queued.insert(id) {
            return;
        }
        self.open_ids[first] += 1;
        self.pending.push_back(Candidate {
            id,
            tile: k,
            position: img.position,
            retried: false,
        });
    }

    /// A batch answered (or failed): each object is offered to the
    /// selector; an id missing from the answer is asked once more, then
    /// recorded as lost with the ids that failed.
    fn on_batch(
        &mut self,
        batch: Vec<Candidate>,
        result: Result<Vec<Box<RawValue>>, ApiError>,
        sel: &mut Selector<'_>,
        sink: &mut impl FnMut(Found),
    ) {
        self.batches_in_flight -= 1;
        let (mut objects, failed) = self.answer(result);
        let mut lost = Lost::default();
        let mut touched: Vec<usize> = Vec::new();
        for c in batch {
            let cands = self.candidates(c.tile, c.position);
            let Some(&first) = cands.first() else {
                continue;
            };
            push_grid(&mut touched, first);
            let object = objects.remove(&c.id);
            if failed.is_err() || !self.judge(c, &cands, object, sel, sink) {
                lost.add(&c, cands);
            }
            self.open_ids[first] -= 1;
        }
        for (k, ids, gis) in lost.by_tile() {
            let reason = lost_reason(&ids, self.planned[k].id, failed.as_ref().err());
            self.fail(k, &gis, &reason);
        }
        for gi in touched {
            self.finish(gi);
        }
    }

    /// The objects of an answer by id (kept as JSON text: the full object
    /// is built only for the grid that keeps the image), or its error.
    fn answer(
        &mut self,
        result: Result<Vec<Box<RawValue>>, ApiError>,
    ) -> (HashMap<ImageId, Box<RawValue>>, Result<(), ApiError>) {
        let mut objects = HashMap::new();
        let items = match result {
            Ok(items) => items,
            Err(e) => {
                if matches!(e, ApiError::Auth { .. }) {
                    self.fatal.get_or_insert(e.clone());
                }
                return (objects, Err(e));
            }
        };
        for item in items {
            match ImageRecord::from_slice(item.get().as_bytes()) {
                Ok(r) => {
                    objects.insert(r.id, item);
                }
                Err(_) => {
                    self.progress.malformed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        (objects, Ok(()))
    }

    /// Offers candidate `c`'s object to its grids; without an object, asks
    /// for it once more in a later batch. `false` when it is lost.
    fn judge(
        &mut self,
        c: Candidate,
        cands: &[usize],
        object: Option<Box<RawValue>>,
        sel: &mut Selector<'_>,
        sink: &mut impl FnMut(Found),
    ) -> bool {
        if let Some(object) = object {
            self.accept_any(sel, cands, object.get(), sink);
            return true;
        }
        if c.retried {
            return false;
        }
        self.open_ids[cands[0]] += 1;
        self.pending.push_back(Candidate { retried: true, ..c });
        true
    }

    /// Offers an object to each candidate grid until one keeps it (the
    /// `Selector` keeps it only for the grid owning its exact position).
    fn accept_any(
        &mut self,
        sel: &mut Selector<'_>,
        cands: &[usize],
        json: &str,
        sink: &mut impl FnMut(Found),
    ) {
        for &gi in cands {
            let b = self.plan.grids()[gi].bbox;
            if let Some(found) = sel.accept_json(gi, &b, json) {
                self.grids[gi].listed += 1;
                self.progress.listed.fetch_add(1, Ordering::Relaxed);
                sink(found);
                return;
            }
        }
    }

    /// Each grid's listing, unless the listing was stopped.
    fn into_grids(self, cancel: &CancellationToken) -> Result<Vec<GridListing>, ListError> {
        if let Some(e) = self.fatal {
            return Err(ListError::Fatal(e));
        }
        if cancel.is_cancelled() {
            return Err(ListError::Interrupted);
        }
        let mut grids = self.grids;
        for g in &mut grids {
            if g.completeness == Completeness::Pending {
                g.completeness = completeness(g);
            }
        }
        Ok(grids)
    }
}

/// Lost candidates grouped by tile, so that one bad batch is a few entries.
#[derive(Debug, Default)]
struct Lost {
    by_tile: HashMap<usize, (Vec<ImageId>, Vec<usize>)>,
}

impl Lost {
    fn add(&mut self, c: &Candidate, grids: Vec<usize>) {
        let e = self.by_tile.entry(c.tile).or_default();
        e.0.push(c.id);
        for gi in grids {
            push_grid(&mut e.1, gi);
        }
    }

    /// `(tile, ids, grids)` in tile order.
    fn by_tile(self) -> Vec<(usize, Vec<ImageId>, Vec<usize>)> {
        let mut v: Vec<_> = self
            .by_tile
            .into_iter()
            .map(|(k, (ids, gis))| (k, ids, gis))
            .collect();
        v.sort_unstable_by_key(|(k, _, _)| *k);
        v
    }
}

/// Why the images `ids` of tile `t` are lost: the lookup failed with
/// `error`, or the answer left them out.
fn lost_reason(ids: &[ImageId], t: TileId, error: Option<&ApiError>) -> String {
    if let Some(e) = error {
        return format!(
            "image_ids lookup of {} images of tile {t} failed: {e}",
            ids.len()
        );
    }
    let mut quoted: Vec<String> = ids
        .iter()
        .take(QUOTED_IDS)
        .map(ToString::to_string)
        .collect();
    if ids.len() > QUOTED_IDS {
        quoted.push("...".into());
    }
    format!(
        "{} images of tile {t} are missing from the Graph API's image_ids answer: {}",
        ids.len(),
        quoted.join(", ")
    )
}

/// Why tile `t` counts as drifted.
fn drift_reason(t: TileId, d: &DecodedTile) -> String {
    format!(
        "tile {t} has an unexpected shape ({} unusable features, {} values of an unexpected type, image layer {})",
        d.skipped(),
        d.bad_types,
        if d.missing_image_layer {
            "missing"
        } else {
            "present"
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Bbox, PositionSource, ThumbSize};
    use crate::plan;

    fn filters() -> Filters {
        Filters::default()
    }

    /// Two grids side by side (west and east of lon 2.35) and the tiles
    /// covering them.
    fn setup() -> (Plan, Vec<PlannedTile>) {
        let area: Bbox = "2.30,48.84,2.40,48.90".parse().unwrap();
        let p = Plan::new(plan::cut(&area, 2, 1).unwrap()).unwrap();
        let planned = crate::fetch::tiles::plan_tiles(&p, None, 1000).unwrap();
        (p, planned)
    }

    fn image(id: u64, lon: f64) -> TileImage {
        TileImage {
            id,
            position: LonLat::new(lon, 48.86).unwrap(),
            captured_at_ms: None,
            is_pano: None,
            organization_id: None,
            sequence_id: None,
        }
    }

    /// The planned tile holding lon 2.34 (grid 0).
    fn west(planned: &[PlannedTile]) -> usize {
        let t = TileId::of(LonLat::new(2.34, 48.86).unwrap(), 14);
        planned.iter().position(|p| p.id == t).unwrap()
    }

    /// Runs the scheduler as the driver does, one request answered at a
    /// time, tile `k` holding `read(k)`; returns the batches it started.
    fn run_tiles(
        l: &mut TilesLister<'_>,
        read: impl Fn(usize) -> Option<DecodedTile>,
    ) -> Vec<Vec<Candidate>> {
        let mut started = VecDeque::new();
        let mut batches = Vec::new();
        loop {
            match l.next_launch() {
                Some(Launch::Tile(k)) => started.push_back(k),
                Some(Launch::Batch(b)) => batches.push(b),
                None => match started.pop_front() {
                    Some(k) => l.on_tile(k, Ok(read(k)), None, &filters()),
                    None => return batches,
                },
            }
        }
    }

    #[test]
    fn tiles_start_a_few_at_a_time_and_grids_finish_when_their_tiles_are_read() {
        let (p, planned) = setup();
        assert!(planned.len() > TILES_CONCURRENCY);
        let progress = Progress::default();
        let mut l = TilesLister::new(&p, &planned, &progress);
        let started: Vec<Launch> = std::iter::from_fn(|| l.next_launch()).collect();
        let want: Vec<Launch> = (0..TILES_CONCURRENCY).map(Launch::Tile).collect();
        assert_eq!(started, want);
        l.on_tile(0, Ok(None), None, &filters());
        assert_eq!(l.next_launch(), Some(Launch::Tile(TILES_CONCURRENCY)));
        assert_eq!(l.next_launch(), None);
        for k in 1..=TILES_CONCURRENCY {
            l.on_tile(k, Ok(None), None, &filters());
        }
        assert!(run_tiles(&mut l, |_| None).is_empty());
        assert_eq!(progress.grids_listed.load(Ordering::Relaxed), 2);
        let grids = l.into_grids(&CancellationToken::new()).unwrap();
        assert!(
            grids
                .iter()
                .all(|g| g.completeness == Completeness::AssumedComplete)
        );
    }

    #[test]
    fn images_are_queued_once_and_looked_up_when_the_tiles_are_read() {
        let (p, planned) = setup();
        let progress = Progress::default();
        let mut l = TilesLister::new(&p, &planned, &progress);
        let k = west(&planned);
        let decoded = DecodedTile {
            images: vec![
                image(1, 2.34),
                image(1, 2.34),
                image(2, 2.34),
                image(0, 2.34),
            ],
            ..DecodedTile::default()
        };
        let batches = run_tiles(&mut l, |j| (j == k).then(|| decoded.clone()));
        let ids: Vec<Vec<u64>> = batches
            .iter()
            .map(|b| b.iter().map(|c| c.id.get()).collect())
            .collect();
        assert_eq!(
            ids,
            [[1, 2]],
            "id 0 is no image; id 1 is asked once, after the tiles"
        );
        assert_eq!(
            progress.grids_listed.load(Ordering::Relaxed),
            1,
            "the west grid waits for its ids"
        );
    }

    #[test]
    fn a_missing_id_is_asked_once_more_then_recorded_lost() {
        let (p, planned) = setup();
        let progress = Progress::default();
        let mut l = TilesLister::new(&p, &planned, &progress);
        let k = west(&planned);
        let decoded = DecodedTile {
            images: vec![image(1, 2.34), image(2, 2.34)],
            ..DecodedTile::default()
        };
        let mut batches = run_tiles(&mut l, |j| (j == k).then(|| decoded.clone()));
        let f = filters();
        let mut sel = Selector::new(&p, &f, ThumbSize::S256, PositionSource::Original, None);
        let mut found = Vec::new();
        let mut sink = |x: Found| found.push(x.id.get());
        let one = r#"{"id":"1","geometry":{"type":"Point","coordinates":[2.34,48.86]}}"#;
        let answer = vec![RawValue::from_string(one.to_string()).unwrap()];
        l.on_batch(batches.remove(0), Ok(answer), &mut sel, &mut sink);
        let Some(Launch::Batch(again)) = l.next_launch() else {
            panic!("id 2 is asked again")
        };
        assert_eq!(again.len(), 1);
        assert!(again[0].retried);
        l.on_batch(again, Ok(Vec::new()), &mut sel, &mut sink);
        assert_eq!(found, [1]);
        assert_eq!(l.next_launch(), None);
        assert_eq!(progress.grids_listed.load(Ordering::Relaxed), 2);
        let grids = l.into_grids(&CancellationToken::new()).unwrap();
        assert_eq!(grids[0].listed, 1);
        assert_eq!(grids[0].completeness, Completeness::Failed);
        let reason = &grids[0].failed_boxes[0].reason;
        assert!(reason.starts_with("1 images of tile 14/"), "{reason}");
        assert!(
            reason.ends_with("are missing from the Graph API's image_ids answer: 2"),
            "{reason}"
        );
    }

    #[test]
    fn reasons_quote_a_few_ids() {
        let t = TileId { z: 14, x: 1, y: 2 };
        let ids: Vec<ImageId> = (1..=7).map(|i| ImageId::new(i).unwrap()).collect();
        assert_eq!(
            lost_reason(&ids, t, None),
            "7 images of tile 14/1/2 are missing from the Graph API's image_ids answer: 1, 2, 3, 4, 5, ..."
        );
        let e = ApiError::Network("reset".into());
        assert_eq!(
            lost_reason(&ids[..2], t, Some(&e)),
            "image_ids lookup of 2 images of tile 14/1/2 failed: network error: reset"
        );
    }
}
