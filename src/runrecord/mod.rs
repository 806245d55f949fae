//! The run record `downloads/mlyexport-run.json`: the provenance of a fetch
//! (what was asked, when, by which version, and how complete each grid's
//! listing was). The data types here; their life during a fetch (load or
//! start, compare, close, write) in `lifecycle`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Bbox, Enumerate, PanoFilter, PositionSource, ThumbSize};

pub(crate) mod lifecycle;
#[cfg(test)]
pub(crate) mod testing;
pub use lifecycle::RecordError;
pub(crate) use lifecycle::RecordFile;

/// File name of the run record inside the output folder.
pub(crate) const RUN_RECORD_FILE: &str = "mlyexport-run.json";
/// Version of the run record layout (`schemas/run.schema.json`).
pub(crate) const RUN_SCHEMA_VERSION: u32 = 1;

/// The whole run record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Version of the layout (`schemas/run.schema.json`).
    pub schema_version: u32,
    /// `mlyexport`.
    pub tool: String,
    /// What was asked for. A later run into the same folder must ask the same.
    pub request: Request,
    /// One entry per grid cell, in grid order.
    pub grids: Vec<GridState>,
    /// Totals over all grids, as of the last run.
    pub totals: Counts,
    /// Images that could not be downloaded in the last run, sorted by id.
    #[serde(default)]
    pub failures: Vec<Failure>,
    /// Every invocation into this folder, oldest first.
    pub runs: Vec<RunEntry>,
}

/// What was asked for: the area, the filters and the rendition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The study area: bbox, grid file or AOI.
    pub area: Area,
    /// The filters.
    pub filters: Filters,
    /// The rendition downloaded.
    pub size: ThumbSize,
    /// How images were enumerated: `auto` (verified), `search` or `tiles`
    /// (as asked in the last run; a later run may use another way, since
    /// it lists the same images).
    #[serde(default = "search")]
    pub enumerate: Enumerate,
    /// Which position places an image in the area and its grid.
    #[serde(default = "original")]
    pub position: PositionSource,
    /// `--min-spacing` in metres, when thinning was asked for.
    #[serde(default)]
    pub min_spacing_m: Option<f64>,
}

fn search() -> Enumerate {
    Enumerate::Search
}

fn original() -> PositionSource {
    PositionSource::Original
}

/// How the study area was given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Area {
    /// `bbox`, `grid` (a bbox cut by `--grid`/`--cell-size`) or `grid_file`.
    pub kind: String,
    /// The box around every grid cell, `[min_lon, min_lat, max_lon, max_lat]`.
    pub bbox: Bbox,
    /// The grid file's path as given, when one was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid_file: Option<String>,
    /// `--grid COLSxROWS` or `--cell-size` as given, when used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid_spec: Option<String>,
    /// The `--aoi` polygon, when one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aoi: Option<AoiRecord>,
}

/// The study-area polygon as used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AoiRecord {
    /// The file (and `--aoi-where` filter) it was read from.
    pub source: String,
    /// The polygon in EPSG:4326 as a GeoJSON geometry.
    pub geometry: serde_json::Value,
}

/// The listing filters. Dates are UTC. The default keeps every image.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Filters {
    /// Captured on or after, UTC.
    pub since: Option<DateTime<Utc>>,
    /// Captured before, UTC.
    pub until: Option<DateTime<Utc>>,
    /// Panoramas kept, dropped or alone.
    pub pano: PanoFilter,
    /// Only this creator's images (user name).
    pub creator: Option<String>,
    /// Only this organisation's images (id).
    pub organization: Option<String>,
    /// At most this many images (`--max-images`).
    pub max_images: Option<u64>,
}

/// How completely a grid (or one search box) was listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Completeness {
    /// Checked: every image the vector tiles list for the grid was listed
    /// (by a search or looked up by id), every search box was answered, and
    /// the tiles had the expected shape. Images only the searches returned
    /// (newer than the tiles, or without a position) are listed too.
    Verified,
    /// Not checked against the tiles (`--enumerate search` or `tiles`, or the
    /// tiles could not be used): every box was answered below the split
    /// threshold, so the grid is assumed complete. Shown as "assumed complete
    /// (not verified)".
    AssumedComplete,
    /// Written by versions before verified listings: the same as
    /// [`Completeness::AssumedComplete`]. Never written now.
    Complete,
    /// Some box was still at the cap at the smallest size: images may be missing.
    Truncated,
    /// Some box could not be listed at all (errors after retries).
    Failed,
    /// Not listed yet (interrupted, or `--max-images` stopped early).
    Pending,
    /// Adopted from the old tool's folder (`mlyexport adopt`): its listing
    /// was cut by the API's cap and its limit, so completeness is unknown.
    Imported,
    /// Fetched in shards, and the shard that lists (part of) this grid has
    /// not run yet: nothing is known of that part (set by `layers` and
    /// `status` when they merge the shards' records, never by `fetch`).
    ShardMissing,
}

impl Completeness {
    /// How the completeness is shown to people (summary, coverage, report).
    pub fn label(self) -> &'static str {
        match self {
            Completeness::Verified => "verified",
            Completeness::AssumedComplete | Completeness::Complete => {
                "assumed complete (not verified)"
            }
            Completeness::Truncated => "truncated",
            Completeness::Failed => "failed",
            Completeness::Pending => "pending",
            Completeness::Imported => "unknown (imported)",
            Completeness::ShardMissing => "shard missing",
        }
    }

    /// Whether nothing is known to be missing (verified or assumed complete).
    pub(crate) fn is_complete(self) -> bool {
        matches!(
            self,
            Completeness::Verified | Completeness::AssumedComplete | Completeness::Complete
        )
    }
}

/// The state of one grid cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridState {
    /// The grid id (its folder name).
    pub grid: String,
    /// The cell, degrees.
    pub bbox: Bbox,
    /// How complete its listing is.
    pub listing: Completeness,
    /// Search requests made for this grid in the last run.
    pub search_calls: u64,
    /// Images listed in this grid (after filters and clipping).
    pub listed: u64,
    /// Images on disk in this grid after the last run.
    pub downloaded: u64,
    /// Images that failed in the last run.
    pub failed: u64,
    /// Images left out by `--min-spacing`.
    #[serde(default)]
    pub thinned: u64,
    /// Boxes that stayed at the cap at the smallest size.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub truncated_boxes: Vec<Bbox>,
    /// Boxes that could not be listed, with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_boxes: Vec<FailedBox>,
    /// How the listing was checked against the vector tiles (verified
    /// listings), or why it could not be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
}

/// The figures behind a grid's `verified` (or not) listing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// Images the z14 tiles list in the grid (after the filters the tiles carry).
    pub tile_points: u64,
    /// Search requests whose boxes cover the grid (a box may cover several grids).
    pub searches: u64,
    /// Images of the grid that a search returned.
    pub from_search: u64,
    /// Images the tiles list that no search returned, then looked up by id
    /// (`image_ids` batches or one entity call) and listed: what a search
    /// listing alone would have lost.
    pub reconciled: u64,
    /// Listed images that the tiles do not list (newer than the tiles, or
    /// without a position): what a tiles listing alone would have lost.
    pub only_in_search: u64,
    /// Ids the tiles list that the Graph API says do not exist (deleted or
    /// private images); nothing to download.
    pub not_in_graph: u64,
    /// Tile features or values with an unexpected shape (schema drift).
    pub tile_drift: u64,
    /// Why the grid is not verified, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_verified_because: Option<String>,
}

impl GridState {
    /// A cell in state `listing` with nothing listed, downloaded or counted yet.
    pub(crate) fn untouched(grid: String, bbox: Bbox, listing: Completeness) -> Self {
        GridState {
            grid,
            bbox,
            listing,
            search_calls: 0,
            listed: 0,
            downloaded: 0,
            failed: 0,
            thinned: 0,
            truncated_boxes: Vec::new(),
            failed_boxes: Vec::new(),
            verification: None,
        }
    }
}

/// A search box that could not be listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedBox {
    /// The box, degrees.
    pub bbox: Bbox,
    /// Why it could not be listed.
    pub reason: String,
}

/// Counts of one run, or of the folder.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Images listed after filters, clipping and de-duplication.
    pub listed: u64,
    /// Images downloaded by this run.
    pub downloaded: u64,
    /// Images already on disk, not fetched again.
    pub skipped: u64,
    /// Images already stored in another grid folder than the one their
    /// position now falls in (the API recomputed it); they stay where they
    /// are and are never stored twice.
    #[serde(default)]
    pub moved: u64,
    /// Images that failed, in all.
    pub failed: u64,
    /// Failures by reason (`http_404`, `not_jpeg`, `truncated`, ...).
    #[serde(default)]
    pub failed_by_reason: BTreeMap<String, u64>,
    /// Listed images without any position (kept, never placed at 0,0).
    #[serde(default)]
    pub without_position: u64,
    /// Listed images left out by `--min-spacing` (never downloaded).
    #[serde(default)]
    pub thinned: u64,
    /// Bytes written by this run.
    pub bytes: u64,
    /// Graph API searches made.
    pub search_calls: u64,
    /// Graph API look-ups by id made.
    pub entity_calls: u64,
    /// Grids whose listing was cut at the cap.
    pub truncated_grids: u64,
    /// Grids whose listing failed.
    pub failed_grids: u64,
    /// z14 vector tiles the listing needed (`--enumerate tiles`; audit tiles excluded).
    #[serde(default)]
    pub tiles: u64,
    /// Vector tile requests, retries included (audit requests excluded).
    #[serde(default)]
    pub tile_calls: u64,
    /// `/images?image_ids=` lookups, retries included (audit requests excluded).
    #[serde(default)]
    pub batch_calls: u64,
    /// Grids whose listing was verified against the vector tiles.
    #[serde(default)]
    pub verified_grids: u64,
    /// Grids listed without verification (assumed complete).
    #[serde(default)]
    pub unverified_grids: u64,
    /// Images looked up by id because the tiles list them and no search
    /// returned them (verified listings).
    #[serde(default)]
    pub reconciled: u64,
    /// Images a search returned that the tiles do not list.
    #[serde(default)]
    pub only_in_search: u64,
}

/// One image that failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// The image id.
    pub id: String,
    /// Its grid.
    pub grid: String,
    /// A short machine-readable reason (e.g. `http_404`).
    pub reason: String,
    /// The message, sanitised.
    pub message: String,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Still running, or killed.
    Running,
    /// Everything asked for was done.
    Complete,
    /// Done, with failed or truncated parts.
    Partial,
    /// Stopped by Ctrl-C; resumable.
    Interrupted,
    /// Stopped by an error.
    Failed,
    /// `--dry-run`: listed only.
    Listed,
    /// `mlyexport adopt` converted the old tool's folder.
    Imported,
}

/// One invocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEntry {
    /// The mlyexport version.
    pub tool_version: String,
    /// The command line, with any token value replaced by `****`.
    pub command_line: Vec<String>,
    /// The Graph API root used.
    pub api_url: String,
    /// When it started, UTC.
    pub started_at: DateTime<Utc>,
    /// When it ended, UTC (none while running).
    pub finished_at: Option<DateTime<Utc>>,
    /// How it ended.
    pub outcome: Outcome,
    /// `--dry-run`.
    pub dry_run: bool,
    /// What it counted.
    pub counts: Counts,
    /// `K/N` when this run fetched shard K of N (`fetch --shard`, or an
    /// array job's index); absent for a whole fetch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
}

impl RunEntry {
    /// The command line as shown in layers and reports: any token value
    /// replaced by `****`. The run record hides it already; this is a second
    /// guard (a record may come from elsewhere).
    pub fn shown_command(&self) -> String {
        let mut out: Vec<&str> = Vec::with_capacity(self.command_line.len());
        let mut hide_next = false;
        for a in &self.command_line {
            if std::mem::take(&mut hide_next) {
                out.push("****");
            } else if a == "--token" {
                hide_next = true;
                out.push(a);
            } else if a.starts_with("--token=") {
                out.push("--token=****");
            } else if a.contains("MLY|") {
                out.push("****");
            } else {
                out.push(a);
            }
        }
        out.join(" ")
    }
}

impl Request {
    /// Human-readable differences between two requests, empty when equal.
    /// Values are shown as they appear in the run record (JSON).
    pub(crate) fn differences(&self, other: &Request) -> Vec<String> {
        fn json<T: Serialize>(v: &T) -> String {
            serde_json::to_string(v).unwrap_or_default()
        }
        let (a, b) = (&self.filters, &other.filters);
        let pairs = [
            ("area", json(&self.area), json(&other.area)),
            ("--since", json(&a.since), json(&b.since)),
            ("--until", json(&a.until), json(&b.until)),
            ("--pano", json(&a.pano), json(&b.pano)),
            ("--creator", json(&a.creator), json(&b.creator)),
            (
                "--organization",
                json(&a.organization),
                json(&b.organization),
            ),
            ("--max-images", json(&a.max_images), json(&b.max_images)),
            ("--size", json(&self.size), json(&other.size)),
            ("--position", json(&self.position), json(&other.position)),
            (
                "--min-spacing (m)",
                json(&self.min_spacing_m),
                json(&other.min_spacing_m),
            ),
        ];
        pairs
            .into_iter()
            .filter(|(_, x, y)| x != y)
            .map(|(name, x, y)| {
                if name == "area" {
                    format!(
                        "area: was {}, now {}",
                        area_summary(&self.area),
                        area_summary(&other.area)
                    )
                } else {
                    format!("{name}: was {x}, now {y}")
                }
            })
            .collect()
    }
}

fn area_summary(a: &Area) -> String {
    let mut s = format!("{} {}", a.kind, a.bbox);
    for extra in [&a.grid_file, &a.grid_spec].into_iter().flatten() {
        s.push_str(&format!(" ({extra})"));
    }
    if let Some(aoi) = &a.aoi {
        s.push_str(&format!(" (--aoi {})", aoi.source));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::testing::entry;

    #[test]
    fn a_shown_command_hides_tokens() {
        let mut e = entry();
        e.command_line = [
            "mlyexport",
            "fetch",
            "--token",
            "abc",
            "--token=def",
            "MLY|1|x",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            e.shown_command(),
            "mlyexport fetch --token **** --token=**** ****"
        );
    }
}
