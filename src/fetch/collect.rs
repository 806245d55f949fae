//! The list stage: runs the chosen listing (verified, search alone, or
//! tiles) with a sink that spills each kept image's API object and keeps a
//! compact [`Listed`] entry. Ends with the entries, the spill and each grid's
//! listing, or with how many images were listed when it was interrupted.

use std::collections::HashMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::error::FetchError;
use super::listing::{Found, GridListing, ListError, Selector};
use super::progress::Progress;
use super::spill::{Listed, Spill, SpillWriter};
use super::strategy::How;
use super::{search, tilelister, verified};
use crate::api::Client;
use crate::config::FetchConfig;
use crate::model::PositionSource;
use crate::plan::Plan;

/// What a finished listing holds.
pub(crate) struct Collected {
    /// Every kept image, in the order found.
    pub items: Vec<Listed>,
    /// Their API objects.
    pub spill: Spill,
    /// How each grid's listing went, in plan order.
    pub grids: Vec<GridListing>,
}

/// How the list stage ended (a refused token or an unusable spill is an error).
pub(crate) enum Listing {
    Done(Collected),
    /// Ctrl-C while listing: how many images were kept by then.
    Interrupted {
        listed: u64,
    },
}

/// The list stage: lists `plan` as `how` says, spilling into `spill`.
pub(crate) async fn list(
    cfg: &FetchConfig,
    plan: &Plan,
    how: &How,
    spill: SpillWriter,
    client: &Client,
    progress: &Arc<Progress>,
    cancel: &CancellationToken,
) -> Result<Listing, FetchError> {
    let mut collector = Collector::new(spill, cfg.request.position, !cfg.dry_run);
    let sink = |f: Found| collector.take(f);
    let result = run_listing(cfg, plan, how, client, progress, cancel, sink).await;
    let Collector { spill, items, .. } = collector;
    let spill = spill.finish()?;
    match result {
        Ok(grids) => Ok(Listing::Done(Collected {
            items,
            spill,
            grids,
        })),
        Err(ListError::Interrupted) => Ok(Listing::Interrupted {
            listed: items.len() as u64,
        }),
        Err(e) => Err(FetchError::Listing(e)),
    }
}

async fn run_listing(
    cfg: &FetchConfig,
    plan: &Plan,
    how: &How,
    client: &Client,
    progress: &Arc<Progress>,
    cancel: &CancellationToken,
    sink: impl FnMut(Found),
) -> Result<Vec<GridListing>, ListError> {
    let filters = &cfg.request.filters;
    let aoi = cfg.aoi.as_deref();
    let mut sel = Selector::new(plan, filters, cfg.size(), cfg.request.position, aoi);
    match how {
        How::Verified(planned) => {
            let vp = verified::VerifiedPlan {
                tiles: &cfg.tiles,
                planned,
                target: cfg.box_target,
                cap: cfg.api.search_cap,
            };
            let mut sel = sel.strict_creator();
            verified::list_verified(client, &vp, &mut sel, progress, cancel, sink).await
        }
        How::Search(_) => {
            let cap = cfg.api.search_cap;
            search::list_plan(client, &mut sel, cap, progress, cancel, sink).await
        }
        How::Tiles(planned) => {
            let t = &cfg.tiles;
            tilelister::list_plan_tiles(client, t, planned, &mut sel, progress, cancel, sink).await
        }
    }
}

/// The listing's sink: spills each object and keeps its compact entry.
struct Collector {
    spill: SpillWriter,
    items: Vec<Listed>,
    /// Sequence keys by first appearance, for thinning.
    sequences: HashMap<String, u32>,
    position: PositionSource,
    /// Keep the signed URLs (not for a dry run: nothing is downloaded).
    keep_urls: bool,
}

impl Collector {
    fn new(spill: SpillWriter, position: PositionSource, keep_urls: bool) -> Self {
        Collector {
            spill,
            items: Vec::new(),
            sequences: HashMap::new(),
            position,
            keep_urls,
        }
    }

    fn take(&mut self, f: Found) {
        let slot = self.spill.append(f.object);
        let r = &f.record;
        let next = self.sequences.len() as u32;
        let seq = r
            .sequence
            .as_ref()
            .map(|k| *self.sequences.entry(k.clone()).or_insert(next));
        self.items.push(Listed {
            grid: f.grid as u32,
            id: f.id,
            captured_ms: r.captured_at.map_or(i64::MAX, |t| t.timestamp_millis()),
            url: f.url.filter(|_| self.keep_urls).map(String::into_boxed_str),
            slot,
            position: r.position(self.position).map(|(p, _)| p),
            has_position: r.original_position.is_some() || r.computed_position.is_some(),
            seq,
            width: r.width,
            height: r.height,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::ImageRecord;
    use serde_json::{Value, json};

    fn found(grid: usize, v: Value, url: Option<&str>) -> Found {
        let record = ImageRecord::from_value(&v).unwrap();
        Found {
            grid,
            id: record.id,
            object: v.as_object().unwrap().clone(),
            url: url.map(String::from),
            record,
        }
    }

    #[test]
    fn entries_keep_what_selection_and_downloads_need() {
        let dir = tempfile::tempdir().unwrap();
        let w = SpillWriter::create(dir.path()).unwrap();
        let mut c = Collector::new(w, PositionSource::Original, false);
        let at = json!({"type": "Point", "coordinates": [2.3, 48.8]});
        c.take(found(
            1,
            json!({"id": "5", "sequence": "b", "geometry": at,
            "captured_at": 1_600_000_000_000_i64, "width": 4, "height": 3}),
            Some("https://x"),
        ));
        c.take(found(0, json!({"id": "6", "sequence": "a"}), None));
        c.take(found(0, json!({"id": "7", "sequence": "b"}), None));
        let Collector { spill, items, .. } = c;
        let spill = spill.finish().unwrap();
        let [a, b, d] = &items[..] else {
            panic!("{items:?}")
        };
        assert_eq!(
            (a.grid, a.id.get(), a.captured_ms),
            (1, 5, 1_600_000_000_000)
        );
        assert_eq!(a.url, None, "no URL kept for a dry run");
        assert!(a.has_position && a.position.is_some());
        assert_eq!((a.width, a.height), (Some(4), Some(3)));
        assert_eq!((b.captured_ms, b.has_position), (i64::MAX, false));
        assert_eq!((a.seq, b.seq, d.seq), (Some(0), Some(1), Some(0)));
        assert_eq!(spill.record(d).unwrap().id.get(), 7);
    }
}
