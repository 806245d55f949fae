//! Enumeration by z14 vector tiles (`--enumerate tiles`): which tiles cover
//! the area, reading and decoding them, filtering on their properties, then
//! batched Graph lookups of the kept ids. Network through `api` only.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Progress;
use super::listing::{Found, GridListing, ListError, Selector};
use crate::api::Client;
use crate::config::TilesConfig;

/// Lists every grid of the selector's plan through vector tiles. Each kept
/// image goes to `sink` exactly once; one `GridListing` per grid, in order.
pub async fn list_plan_tiles(
    _client: &Client,
    _tiles: &TilesConfig,
    _sel: &mut Selector<'_>,
    _progress: &Arc<Progress>,
    _cancel: &CancellationToken,
    _sink: impl FnMut(Found),
) -> Result<Vec<GridListing>, ListError> {
    Err(ListError::Unsupported(
        "--enumerate tiles is not available yet".into(),
    ))
}
