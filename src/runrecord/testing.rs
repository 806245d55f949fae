//! Run records for unit tests elsewhere in the crate: a small request and a
//! run entry.

use super::{Area, Filters, Request, RunEntry};
use crate::model::{Enumerate, PositionSource, ThumbSize};

/// A request for a 0.01° box in Paris, thumbnails of `size`.
pub(crate) fn request(size: ThumbSize) -> Request {
    Request {
        area: Area {
            kind: "bbox".into(),
            bbox: "2.30,48.84,2.31,48.85".parse().unwrap(),
            grid_file: None,
            grid_spec: None,
            aoi: None,
        },
        filters: Filters::default(),
        size,
        enumerate: Enumerate::Auto,
        position: PositionSource::Original,
        min_spacing_m: None,
    }
}

/// A run entry starting now.
pub(crate) fn entry() -> RunEntry {
    RunEntry::starting(vec!["mlyexport".into()], "http://127.0.0.1".into(), false)
}
