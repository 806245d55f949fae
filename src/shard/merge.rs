//! One run record from a sharded folder's records: the grids of every shard
//! (a cell split into parts among shards becomes one cell again), every
//! shard's runs (tagged with their shard), the totals and failures of all.
//! A shard without a record, or one whose listing has not ended, leaves its
//! cells marked. Pure.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use super::Split;
use crate::model::Bbox;
use crate::runrecord::{
    Completeness, Counts, GridState, RUN_SCHEMA_VERSION, Request, RunRecord, Verification,
};

/// The merged record and what is missing from it, one line each.
#[derive(Debug, Clone)]
pub(crate) struct Merged {
    pub(crate) record: RunRecord,
    pub(crate) warnings: Vec<String>,
}

/// Merges the records of a split's shards (`records[k]` is shard k's, `None`
/// when it has not started) under the split's `request`.
pub(crate) fn merge_shards(
    request: &Request,
    split: &Split,
    records: &[Option<RunRecord>],
) -> Merged {
    let mut grids = Grids::new(split);
    let mut warnings = Vec::new();
    let mut record = RunRecord {
        schema_version: RUN_SCHEMA_VERSION,
        tool: "mlyexport".into(),
        request: request.clone(),
        grids: Vec::new(),
        totals: Counts::default(),
        failures: Vec::new(),
        runs: Vec::new(),
    };
    for k in 0..split.count {
        let Some(r) = records.get(k as usize).and_then(Option::as_ref) else {
            grids.mark_missing(split, k);
            warnings.push(format!(
                "shard {k}/{} has not run (no {}): its {} cells or parts are marked `shard missing`",
                split.count,
                shard_file(k, split.count),
                split.units_of_shard(k)
            ));
            continue;
        };
        if let Some(w) = unfinished(r, k, split.count) {
            warnings.push(w);
        }
        for g in &r.grids {
            grids.add(g);
        }
        add_counts(&mut record.totals, &r.totals);
        record.failures.extend(r.failures.iter().cloned());
        record.runs.extend(r.runs.iter().cloned().map(|mut run| {
            run.shard = super::Shard::new(k, split.count)
                .ok()
                .map(|s| s.to_string());
            run
        }));
    }
    record.failures.sort_by(|a, b| a.id.cmp(&b.id));
    record.runs.sort_by_key(|r| r.started_at);
    record.grids = grids.finish();
    recount_grids(&mut record);
    Merged { record, warnings }
}

/// Grid tallies over the merged cells (a shard counts its parts).
fn recount_grids(r: &mut RunRecord) {
    let count = |want: &dyn Fn(Completeness) -> bool| {
        r.grids.iter().filter(|g| want(g.listing)).count() as u64
    };
    let t = Counts {
        truncated_grids: count(&|c| c == Completeness::Truncated),
        failed_grids: count(&|c| c == Completeness::Failed),
        verified_grids: count(&|c| c == Completeness::Verified),
        ..Counts::default()
    };
    r.totals.unverified_grids = r.grids.len() as u64 - t.verified_grids;
    r.totals.truncated_grids = t.truncated_grids;
    r.totals.failed_grids = t.failed_grids;
    r.totals.verified_grids = t.verified_grids;
}

fn shard_file(k: u32, n: u32) -> String {
    super::Shard::new(k, n).map_or_else(|_| "record".into(), |s| s.record_file())
}

/// A warning when a shard's last run did not end complete.
fn unfinished(r: &RunRecord, k: u32, n: u32) -> Option<String> {
    use crate::runrecord::Outcome;
    let last = r.runs.last()?;
    let what = match last.outcome {
        Outcome::Complete | Outcome::Imported => return None,
        Outcome::Running => "is still running, or was killed (`mlyexport status` tells which)",
        Outcome::Partial => "ended partial (failed images or cells: re-run it)",
        Outcome::Interrupted => "was interrupted (re-run it)",
        Outcome::Failed => "failed (see its record; re-run it)",
        Outcome::Listed => "only listed (--dry-run)",
    };
    Some(format!("shard {k}/{n} {what}"))
}

/// The merged grids, in the split's order of first appearance.
struct Grids {
    order: Vec<String>,
    by_id: BTreeMap<String, GridState>,
}

impl Grids {
    fn new(split: &Split) -> Self {
        let mut order: Vec<String> = Vec::new();
        let mut by_id = BTreeMap::new();
        for u in &split.units {
            match by_id.entry(u.grid.clone()) {
                Entry::Vacant(v) => {
                    order.push(u.grid.clone());
                    v.insert(empty(&u.grid, u.bbox));
                }
                Entry::Occupied(mut o) => {
                    let g = o.get_mut();
                    g.bbox = g.bbox.union(&u.bbox);
                }
            }
        }
        Grids { order, by_id }
    }

    fn mark_missing(&mut self, split: &Split, k: u32) {
        for u in split.units.iter().filter(|u| u.shard == k) {
            if let Some(g) = self.by_id.get_mut(&u.grid) {
                g.listing = worse(g.listing, Completeness::ShardMissing);
            }
        }
    }

    /// Adds one shard's part of a cell (a cell the split does not know is
    /// appended after the others).
    fn add(&mut self, part: &GridState) {
        let g = match self.by_id.entry(part.grid.clone()) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => {
                self.order.push(part.grid.clone());
                v.insert(empty(&part.grid, part.bbox))
            }
        };
        g.listing = worse(g.listing, part.listing);
        // The records are read from files: a sum must not overflow.
        g.search_calls = g.search_calls.saturating_add(part.search_calls);
        g.listed = g.listed.saturating_add(part.listed);
        g.downloaded = g.downloaded.saturating_add(part.downloaded);
        g.failed = g.failed.saturating_add(part.failed);
        g.thinned = g.thinned.saturating_add(part.thinned);
        g.truncated_boxes
            .extend(part.truncated_boxes.iter().copied());
        g.failed_boxes.extend(part.failed_boxes.iter().cloned());
        if let Some(v) = &part.verification {
            add_verification(g.verification.get_or_insert_with(Verification::default), v);
        }
    }

    fn finish(mut self) -> Vec<GridState> {
        self.order
            .iter()
            .filter_map(|id| self.by_id.remove(id))
            .collect()
    }
}

/// A cell before any part is added: verified until a part says otherwise.
fn empty(id: &str, bbox: Bbox) -> GridState {
    GridState::untouched(id.to_string(), bbox, Completeness::Verified)
}

/// The less complete of two listings.
fn worse(a: Completeness, b: Completeness) -> Completeness {
    if rank(b) > rank(a) { b } else { a }
}

fn rank(c: Completeness) -> u8 {
    match c {
        Completeness::Verified => 0,
        Completeness::AssumedComplete | Completeness::Complete => 1,
        Completeness::Imported => 2,
        Completeness::Truncated => 3,
        Completeness::Pending => 4,
        Completeness::ShardMissing => 5,
        Completeness::Failed => 6,
    }
}

fn add_verification(a: &mut Verification, b: &Verification) {
    let pairs = [
        (&mut a.tile_points, b.tile_points),
        (&mut a.searches, b.searches),
        (&mut a.from_search, b.from_search),
        (&mut a.reconciled, b.reconciled),
        (&mut a.only_in_search, b.only_in_search),
        (&mut a.not_in_graph, b.not_in_graph),
        (&mut a.tile_drift, b.tile_drift),
    ];
    for (x, y) in pairs {
        *x = x.saturating_add(y);
    }
    if a.not_verified_because.is_none() {
        a.not_verified_because.clone_from(&b.not_verified_because);
    }
}

/// Adds one shard's totals to the sum (saturating: the records are read
/// from files).
pub(crate) fn add_counts(a: &mut Counts, b: &Counts) {
    for (k, v) in &b.failed_by_reason {
        let sum = a.failed_by_reason.entry(k.clone()).or_insert(0);
        *sum = sum.saturating_add(*v);
    }
    let pairs: [(&mut u64, u64); 19] = [
        (&mut a.listed, b.listed),
        (&mut a.downloaded, b.downloaded),
        (&mut a.skipped, b.skipped),
        (&mut a.moved, b.moved),
        (&mut a.failed, b.failed),
        (&mut a.without_position, b.without_position),
        (&mut a.thinned, b.thinned),
        (&mut a.bytes, b.bytes),
        (&mut a.search_calls, b.search_calls),
        (&mut a.entity_calls, b.entity_calls),
        (&mut a.truncated_grids, b.truncated_grids),
        (&mut a.failed_grids, b.failed_grids),
        (&mut a.tiles, b.tiles),
        (&mut a.tile_calls, b.tile_calls),
        (&mut a.batch_calls, b.batch_calls),
        (&mut a.verified_grids, b.verified_grids),
        (&mut a.unverified_grids, b.unverified_grids),
        (&mut a.reconciled, b.reconciled),
        (&mut a.only_in_search, b.only_in_search),
    ];
    for (x, y) in pairs {
        *x = x.saturating_add(y);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Plan;

    fn part(bbox: Bbox, listing: Completeness, listed: u64) -> GridState {
        GridState {
            listing,
            listed,
            downloaded: listed,
            ..empty("1", bbox)
        }
    }

    #[test]
    fn parts_of_one_cell_become_the_cell_again_and_a_missing_shard_marks_it() {
        let area: Bbox = "8.50,47.35,8.56,47.39".parse().unwrap();
        let split = Split::new(&Plan::single(area), 2).unwrap();
        assert!(split.units.len() >= 8);
        let mut all = Grids::new(&split);
        for u in split.units.iter().filter(|u| u.shard == 0) {
            all.add(&part(u.bbox, Completeness::Verified, 10));
        }
        let mut missing = Grids::new(&split);
        for u in split.units.iter().filter(|u| u.shard == 0) {
            missing.add(&part(u.bbox, Completeness::Verified, 10));
        }
        for u in split.units.iter().filter(|u| u.shard == 1) {
            all.add(&part(u.bbox, Completeness::AssumedComplete, 1));
        }
        missing.mark_missing(&split, 1);
        let (all, missing) = (all.finish(), missing.finish());
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].bbox, area);
        assert_eq!(all[0].listing, Completeness::AssumedComplete);
        let (n0, n1) = (
            split.units_of_shard(0) as u64,
            split.units_of_shard(1) as u64,
        );
        assert_eq!(all[0].listed, 10 * n0 + n1);
        assert_eq!(missing[0].listing, Completeness::ShardMissing);
        assert_eq!(missing[0].listed, 10 * n0);
    }

    #[test]
    fn many_cells_merge_in_linear_time_and_keep_their_order() {
        // 100,000 cells: the old `Vec::contains` per part took minutes.
        let area: Bbox = "8.50,47.35,8.56,47.39".parse().unwrap();
        let mut grids = Grids {
            order: Vec::new(),
            by_id: BTreeMap::new(),
        };
        let start = std::time::Instant::now();
        for i in (0..100_000).rev() {
            grids.add(&GridState::untouched(
                i.to_string(),
                area,
                Completeness::Complete,
            ));
        }
        grids.add(&part(area, Completeness::Complete, 3));
        let merged = grids.finish();
        let took = start.elapsed();
        assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
        assert_eq!(merged.len(), 100_000);
        assert_eq!(merged[0].grid, "99999");
        assert_eq!(merged[99_998].grid, "1");
        assert_eq!(merged[99_998].listed, 3);
    }

    #[test]
    fn counts_read_from_records_saturate_rather_than_overflow() {
        let big = Counts {
            listed: u64::MAX,
            failed_by_reason: [("http_500".to_string(), u64::MAX)].into(),
            ..Counts::default()
        };
        let mut sum = big.clone();
        add_counts(&mut sum, &big);
        assert_eq!(sum.listed, u64::MAX);
        assert_eq!(sum.failed_by_reason["http_500"], u64::MAX);
        let area: Bbox = "8.50,47.35,8.56,47.39".parse().unwrap();
        let mut grids = Grids {
            order: Vec::new(),
            by_id: BTreeMap::new(),
        };
        let v = Verification {
            searches: u64::MAX,
            ..Verification::default()
        };
        for _ in 0..2 {
            let mut p = part(area, Completeness::Verified, u64::MAX);
            p.verification = Some(v.clone());
            grids.add(&p);
        }
        let g = &grids.finish()[0];
        assert_eq!((g.listed, g.downloaded), (u64::MAX, u64::MAX));
        assert_eq!(g.verification.as_ref().map(|v| v.searches), Some(u64::MAX));
    }

    #[test]
    fn the_less_complete_listing_wins() {
        use Completeness::*;
        assert_eq!(worse(Verified, AssumedComplete), AssumedComplete);
        assert_eq!(worse(Failed, ShardMissing), Failed);
        assert_eq!(worse(ShardMissing, Pending), ShardMissing);
        assert_eq!(worse(Truncated, Verified), Truncated);
    }
}
