//! `listing.jsonl`: one line per image the select stage kept (id, grid,
//! position, capture time, sequence, panorama, creator), read back from the
//! spill and written atomically.

use std::path::Path;

use serde::Serialize;

use super::spill::{Listed, Spill};
use crate::plan::Plan;
use crate::record::ImageRecord;
use crate::store::{self, StoreError};

/// A line of `listing.jsonl`.
#[derive(Debug, Serialize)]
struct ListingLine<'a> {
    id: String,
    grid: &'a str,
    lon: Option<f64>,
    lat: Option<f64>,
    captured_at: Option<String>,
    sequence: Option<&'a str>,
    is_pano: Option<bool>,
    creator: Option<&'a str>,
}

impl<'a> ListingLine<'a> {
    fn new(grid: &'a str, l: &Listed, r: &'a ImageRecord) -> Self {
        let pos = r.original_position.or(r.computed_position);
        ListingLine {
            id: l.id.to_string(),
            grid,
            lon: pos.map(|p| p.lon),
            lat: pos.map(|p| p.lat),
            captured_at: r
                .captured_at
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            sequence: r.sequence.as_deref(),
            is_pano: r.is_pano,
            creator: r.creator_username.as_deref(),
        }
    }
}

/// Writes `<out>/<file>` (`listing.jsonl`, or a shard's) for `kept`.
pub(crate) fn write(
    out: &Path,
    file: &str,
    plan: &Plan,
    kept: &[Listed],
    spill: &Spill,
) -> Result<(), StoreError> {
    store::atomic_write_with(&out.join(file), |w| {
        for l in kept {
            let r = spill.record(l)?;
            let line = ListingLine::new(plan.grids()[l.grid as usize].id.as_str(), l, &r);
            serde_json::to_writer(&mut *w, &line)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })
}
