//! The record stage's arithmetic (pure): from what the stages returned, the
//! run's counts, each grid's state, the failures, the exit status and the
//! run record's outcome, and a warning for grids that could not be verified.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use super::downloader::Downloaded;
use super::listing::GridListing;
use super::progress::Progress;
use super::select::Selection;
use crate::ExitStatus;
use crate::api::ApiStats;
use crate::plan::Plan;
use crate::runrecord::{Completeness, Counts, Failure, GridState, Outcome};

/// API requests by kind, as counted by the client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Calls {
    pub search: u64,
    pub entity: u64,
    pub tile: u64,
    pub batch: u64,
}

impl Calls {
    /// The client's counts now.
    pub(crate) fn of(stats: &ApiStats) -> Self {
        Calls {
            search: stats.search_calls.load(Ordering::Relaxed),
            entity: stats.entity_calls.load(Ordering::Relaxed),
            tile: stats.tile_calls.load(Ordering::Relaxed),
            batch: stats.batch_calls.load(Ordering::Relaxed),
        }
    }

    /// These counts less `other` (the calls made between two readings, or
    /// all calls but the audit's).
    pub(crate) fn less(self, other: Calls) -> Calls {
        Calls {
            search: self.search.saturating_sub(other.search),
            entity: self.entity.saturating_sub(other.entity),
            tile: self.tile.saturating_sub(other.tile),
            batch: self.batch.saturating_sub(other.batch),
        }
    }
}

/// What the download counters came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Transfer {
    pub downloaded: u64,
    pub skipped: u64,
    pub moved: u64,
    pub bytes: u64,
}

impl Transfer {
    /// The counters as the download stage left them.
    pub(crate) fn read(p: &Progress) -> Self {
        Transfer {
            downloaded: p.downloaded.load(Ordering::Relaxed),
            skipped: p.skipped.load(Ordering::Relaxed),
            moved: p.moved.load(Ordering::Relaxed),
            bytes: p.bytes.load(Ordering::Relaxed),
        }
    }
}

/// Everything the record stage sums up.
pub(crate) struct Outcomes<'a> {
    pub listings: &'a [GridListing],
    pub selection: &'a Selection,
    pub downloads: Downloaded,
    pub transfer: Transfer,
    /// The run's calls, the audit's excluded.
    pub calls: Calls,
    /// Tiles the listing needed (counted before it started).
    pub listing_tiles: u64,
    pub interrupted: bool,
    pub dry_run: bool,
}

/// What the run comes to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Summary {
    pub counts: Counts,
    pub grids: Vec<GridState>,
    /// Sorted by id.
    pub failures: Vec<Failure>,
    pub status: ExitStatus,
    pub outcome: Outcome,
    /// Images downloaded by this run, per grid id.
    pub new_per_grid: Vec<(String, u64)>,
}

/// Sums up a run over `plan`; adds a warning for unverified grids.
pub(crate) fn sum_up(plan: &Plan, o: Outcomes<'_>, warnings: &mut Vec<String>) -> Summary {
    let (failures, failed_per_grid) = failures(o.downloads.failures, plan.grids().len());
    let s = o.selection;
    let grids = grid_states(plan, o.listings, s, &o.downloads.done, &failed_per_grid);
    let mut counts = Counts {
        listed: s.listed,
        without_position: s.without_position,
        thinned: s.thinned_per_grid.iter().sum(),
        downloaded: o.transfer.downloaded,
        skipped: o.transfer.skipped,
        moved: o.transfer.moved,
        bytes: o.transfer.bytes,
        failed: failures.len() as u64,
        failed_by_reason: by_reason(&failures),
        search_calls: o.calls.search,
        entity_calls: o.calls.entity,
        tiles: o.listing_tiles,
        tile_calls: o.calls.tile,
        batch_calls: o.calls.batch,
        truncated_grids: with_listing(&grids, Completeness::Truncated),
        failed_grids: with_listing(&grids, Completeness::Failed),
        ..Counts::default()
    };
    count_verification(&mut counts, &grids, warnings);
    let status = status(&counts, o.interrupted);
    let new_per_grid = plan
        .grids()
        .iter()
        .map(|g| g.id.to_string())
        .zip(o.downloads.fresh)
        .collect();
    Summary {
        counts,
        grids,
        failures,
        status,
        outcome: outcome(status, o.dry_run),
        new_per_grid,
    }
}

/// The failures sorted by id, and how many each grid has.
fn failures(with_grid: Vec<(u32, Failure)>, grids: usize) -> (Vec<Failure>, Vec<u64>) {
    let mut per_grid = vec![0u64; grids];
    let mut failures = Vec::with_capacity(with_grid.len());
    for (gi, f) in with_grid {
        per_grid[gi as usize] += 1;
        failures.push(f);
    }
    failures.sort_by(|a, b| a.id.cmp(&b.id));
    (failures, per_grid)
}

fn by_reason(failures: &[Failure]) -> BTreeMap<String, u64> {
    let mut by_reason = BTreeMap::new();
    for f in failures {
        *by_reason.entry(f.reason.clone()).or_insert(0) += 1;
    }
    by_reason
}

fn with_listing(grids: &[GridState], c: Completeness) -> u64 {
    grids.iter().filter(|g| g.listing == c).count() as u64
}

fn grid_states(
    plan: &Plan,
    listings: &[GridListing],
    s: &Selection,
    done: &[u64],
    failed: &[u64],
) -> Vec<GridState> {
    plan.grids()
        .iter()
        .zip(listings)
        .enumerate()
        .map(|(i, (g, gl))| GridState {
            grid: g.id.to_string(),
            bbox: g.bbox,
            listing: gl.completeness,
            search_calls: gl.search_calls,
            listed: s.listed_per_grid[i],
            downloaded: done[i],
            failed: failed[i],
            thinned: s.thinned_per_grid[i],
            truncated_boxes: gl.truncated_boxes.clone(),
            failed_boxes: gl.failed_boxes.clone(),
            verification: gl.verification.clone(),
        })
        .collect()
}

/// Totals of the verification, and a warning for the grids a verified
/// listing could not verify.
fn count_verification(counts: &mut Counts, grids: &[GridState], warnings: &mut Vec<String>) {
    counts.verified_grids = with_listing(grids, Completeness::Verified);
    counts.unverified_grids = grids.len() as u64 - counts.verified_grids;
    let checked = grids
        .iter()
        .filter_map(|g| g.verification.as_ref().map(|v| (g, v)));
    let mut unverified = Vec::new();
    for (g, v) in checked {
        counts.reconciled += v.reconciled;
        counts.only_in_search += v.only_in_search;
        if let Some(why) = &v.not_verified_because {
            unverified.push(format!("{}: {why}", g.grid));
        }
    }
    if let Some(first) = unverified.first() {
        warnings.push(format!(
            "{} grids could not be verified against the vector tiles (first: {first}); see mlyexport-run.json",
            unverified.len()
        ));
    }
}

/// Interrupted, partial (an image, or a grid's listing, failed or was
/// truncated) or a success.
fn status(counts: &Counts, interrupted: bool) -> ExitStatus {
    if interrupted {
        ExitStatus::Interrupted
    } else if counts.failed > 0 || counts.truncated_grids > 0 || counts.failed_grids > 0 {
        ExitStatus::Partial
    } else {
        ExitStatus::Success
    }
}

/// How the run record names a run that ended with `status`.
fn outcome(status: ExitStatus, dry_run: bool) -> Outcome {
    match (status, dry_run) {
        (ExitStatus::Interrupted, _) => Outcome::Interrupted,
        (_, true) => Outcome::Listed,
        (ExitStatus::Success, false) => Outcome::Complete,
        _ => Outcome::Partial,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Bbox;
    use crate::runrecord::Verification;

    fn plan2() -> Plan {
        let area: Bbox = "2.30,48.84,2.32,48.85".parse().unwrap();
        Plan::new(crate::plan::cut(&area, 2, 1).unwrap()).unwrap()
    }

    fn listing(c: Completeness, v: Option<Verification>) -> GridListing {
        GridListing {
            completeness: c,
            search_calls: 3,
            verification: v,
            ..GridListing::default()
        }
    }

    fn failure(id: &str, reason: &str) -> Failure {
        Failure {
            id: id.into(),
            grid: "x".into(),
            reason: reason.into(),
            message: String::new(),
        }
    }

    fn selection() -> Selection {
        Selection {
            kept: Vec::new(),
            listed: 9,
            without_position: 1,
            listed_per_grid: vec![5, 4],
            thinned_per_grid: vec![2, 0],
        }
    }

    #[test]
    fn counts_grids_and_failures_of_a_partial_run() {
        let unverified = Verification {
            reconciled: 2,
            only_in_search: 1,
            not_verified_because: Some("tile 14/1/2 failed".into()),
            ..Verification::default()
        };
        let listings = [
            listing(Completeness::Verified, Some(Verification::default())),
            listing(Completeness::Truncated, Some(unverified)),
        ];
        let downloads = Downloaded {
            done: vec![3, 1],
            fresh: vec![2, 0],
            failures: vec![
                (1, failure("20", "http_404")),
                (0, failure("10", "http_404")),
            ],
        };
        let calls = Calls {
            search: 7,
            entity: 1,
            tile: 2,
            batch: 0,
        };
        let transfer = Transfer {
            downloaded: 2,
            skipped: 2,
            moved: 0,
            bytes: 99,
        };
        let sel = selection();
        let o = Outcomes {
            listings: &listings,
            selection: &sel,
            downloads,
            transfer,
            calls,
            listing_tiles: 2,
            interrupted: false,
            dry_run: false,
        };
        let mut warnings = Vec::new();
        let s = sum_up(&plan2(), o, &mut warnings);
        let c = &s.counts;
        assert_eq!((c.listed, c.without_position, c.thinned), (9, 1, 2));
        assert_eq!((c.downloaded, c.skipped, c.bytes, c.failed), (2, 2, 99, 2));
        assert_eq!(c.failed_by_reason.get("http_404"), Some(&2));
        assert_eq!(
            (c.search_calls, c.entity_calls, c.tiles, c.tile_calls),
            (7, 1, 2, 2)
        );
        assert_eq!((c.truncated_grids, c.failed_grids), (1, 0));
        assert_eq!((c.verified_grids, c.unverified_grids), (1, 1));
        assert_eq!((c.reconciled, c.only_in_search), (2, 1));
        let ids: Vec<&str> = s.failures.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["10", "20"]);
        assert_eq!(s.grids[0].grid, "1");
        assert_eq!(
            (s.grids[0].listed, s.grids[0].downloaded, s.grids[0].thinned),
            (5, 3, 2)
        );
        assert_eq!((s.grids[1].failed, s.grids[1].search_calls), (1, 3));
        assert_eq!(s.new_per_grid, [("1".to_string(), 2), ("2".to_string(), 0)]);
        assert_eq!(
            (s.status, s.outcome),
            (ExitStatus::Partial, Outcome::Partial)
        );
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].starts_with("1 grids could not be verified"),
            "{warnings:?}"
        );
        assert!(
            warnings[0].contains("(first: 2: tile 14/1/2 failed)"),
            "{warnings:?}"
        );
    }

    #[test]
    fn status_and_outcome() {
        let ok = Counts::default();
        let failed = Counts {
            failed_grids: 1,
            ..Counts::default()
        };
        assert_eq!(status(&ok, false), ExitStatus::Success);
        assert_eq!(status(&failed, false), ExitStatus::Partial);
        assert_eq!(status(&failed, true), ExitStatus::Interrupted);
        assert_eq!(outcome(ExitStatus::Success, false), Outcome::Complete);
        assert_eq!(outcome(ExitStatus::Partial, false), Outcome::Partial);
        assert_eq!(outcome(ExitStatus::Partial, true), Outcome::Listed);
        assert_eq!(outcome(ExitStatus::Interrupted, true), Outcome::Interrupted);
    }

    #[test]
    fn calls_less_the_audit() {
        let before = Calls {
            search: 5,
            entity: 0,
            tile: 1,
            batch: 2,
        };
        let after = Calls {
            search: 9,
            entity: 0,
            tile: 4,
            batch: 2,
        };
        let now = Calls {
            search: 12,
            entity: 3,
            tile: 4,
            batch: 3,
        };
        let audit = after.less(before);
        assert_eq!(
            now.less(audit),
            Calls {
                search: 8,
                entity: 3,
                tile: 1,
                batch: 3
            }
        );
    }
}
