//! Downloading one image: the thumbnail (with a fresh URL on 403), checks
//! that it is a complete JPEG, then the JPEG and its `<id>.json` written
//! atomically, JPEG first. Network through `api::Client`, files through `store`.

use std::path::Path;

use chrono::Utc;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::api::{ApiError, Client, Thumbnail, wire};
use crate::model::{GridId, ImageId, ThumbSize};
use crate::record::{DownloadInfo, IMAGE_SCHEMA_VERSION, ImageRecord, SEARCH_FIELDS, TOOL_KEY};
use crate::store::{self, ImagePaths};

/// Why one image failed.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // each variant's #[error] text is its documentation
pub enum DownloadError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("the API gave no {0} for this image")]
    NoUrl(&'static str),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("cannot create the folder `{0}`")]
    Folder(String),
    #[error("the listing's scratch copy could not be read: {0}")]
    Spill(String),
}

impl DownloadError {
    /// A short stable name for counting failures by reason.
    pub(crate) fn reason(&self) -> String {
        match self {
            DownloadError::Api(e) => e.reason(),
            DownloadError::NoUrl(_) => "no_url".into(),
            DownloadError::Store(_) | DownloadError::Folder(_) => "write_error".into(),
            DownloadError::Spill(_) => "scratch_read".into(),
        }
    }

    /// Whether another try later (with a fresh URL) may succeed.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            DownloadError::Api(e) => e.is_retryable() || matches!(e, ApiError::ExpiredUrl),
            DownloadError::NoUrl(_) => true,
            DownloadError::Store(_) | DownloadError::Folder(_) | DownloadError::Spill(_) => false,
        }
    }
}

/// Fresh URLs one image may ask for in one try after the CDN refused its
/// URL (expired signatures), counted apart from the transient retries.
const MAX_REFRESHES: u32 = 8;

/// One image to download.
pub(crate) struct Job<'a> {
    pub id: ImageId,
    pub grid: &'a GridId,
    pub size: ThumbSize,
    pub url: Option<String>,
    /// The API's object for the image, without signed URLs.
    pub object: Map<String, Value>,
    pub paths: &'a ImagePaths,
    pub folder: Folder,
}

/// What the folder of a job's files is, and so how it is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Folder {
    /// A grid folder of fetch's output folder: made there, never a link
    /// (it would be written outside, where `layers` does not read).
    Grid,
    /// A folder a library caller gave: made with its parents, links followed.
    Given,
}

/// Downloads, verifies and stores one image; returns what was recorded.
pub(crate) async fn fetch_and_store(
    client: &Client,
    job: Job<'_>,
) -> Result<DownloadInfo, DownloadError> {
    let thumb = thumbnail(client, job.id, job.size, job.url).await?;
    let info = DownloadInfo {
        schema_version: IMAGE_SCHEMA_VERSION,
        grid: job.grid.to_string(),
        size: job.size.as_str().into(),
        file: format!("{}.jpg", job.id),
        bytes: thumb.bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(&thumb.bytes)),
        pixel_width: thumb.width,
        pixel_height: thumb.height,
        downloaded_at: Utc::now(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        warnings: Vec::new(),
        altitude_repaired: None,
    };
    let info = with_warnings(info, &job.object);
    let mut object = job.object;
    object.insert("id".into(), Value::String(job.id.to_string()));
    object.insert(
        TOOL_KEY.into(),
        serde_json::to_value(&info).expect("serializable"),
    );
    let mut json = serde_json::to_vec_pretty(&Value::Object(object)).expect("serializable");
    json.push(b'\n');
    let (paths, folder) = (job.paths.clone(), job.folder);
    let bytes = thumb.bytes;
    tokio::task::spawn_blocking(move || -> Result<(), DownloadError> {
        let dir = paths.jpg.parent().unwrap_or(Path::new("."));
        let made = match folder {
            Folder::Grid => store::grid_folder(dir),
            Folder::Given => std::fs::create_dir_all(dir),
        };
        made.map_err(|e| DownloadError::Folder(format!("{}: {e}", dir.display())))?;
        store::atomic_write(&paths.jpg, &bytes)?;
        store::atomic_write(&paths.json, &json)?;
        Ok(())
    })
    .await
    .map_err(|_| DownloadError::Folder("write task failed".into()))??;
    Ok(info)
}

/// The thumbnail of image `id` at `size`, from `url` (or a fresh one):
/// retried as the client's policy says; a refused URL is replaced by a
/// fresh one, on its own budget.
async fn thumbnail(
    client: &Client,
    id: ImageId,
    size: ThumbSize,
    url: Option<String>,
) -> Result<Thumbnail, DownloadError> {
    let field = size.url_field();
    let mut url = match url {
        Some(u) => u,
        None => fresh_url(client, id, field).await?,
    };
    let (mut attempt, mut refreshes) = (1, 0);
    loop {
        match client.thumbnail(&url).await {
            Ok(t) => return Ok(t),
            Err(ApiError::ExpiredUrl) if refreshes < MAX_REFRESHES => {
                refreshes += 1;
                url = fresh_url(client, id, field).await?;
            }
            Err(e) if e.is_retryable() && attempt < client.retry_attempts() => {
                tokio::time::sleep(client.delay(&e, attempt)).await;
                attempt += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Adds what parsing the API's object found wrong, and the repaired altitude.
fn with_warnings(mut info: DownloadInfo, object: &Map<String, Value>) -> DownloadInfo {
    if let Ok(r) = ImageRecord::from_map(object) {
        info.warnings = r.warnings.clone();
        if r.original_position.is_none() && r.computed_position.is_none() {
            info.warnings.push("no_position".into());
        }
        if r.warnings.iter().any(|w| w == "altitude_unsigned_wrapped") {
            info.altitude_repaired = r.altitude;
        }
        info.warnings.sort();
    }
    info
}

async fn fresh_url(
    client: &Client,
    id: ImageId,
    field: &'static str,
) -> Result<String, DownloadError> {
    let mut obj = client.image(id, field).await?;
    wire::take_thumb_url(&mut obj, field).ok_or(DownloadError::NoUrl(field))
}

/// Downloads one image into `dir` as `<id>.jpg` with its `<id>.json`: the
/// equivalent of the old tool's `download_image`. Asks the API for the
/// image's fields and a fresh URL (one entity call), then downloads.
pub async fn download_image(
    client: &Client,
    id: ImageId,
    size: ThumbSize,
    dir: &Path,
) -> Result<DownloadInfo, DownloadError> {
    let field = size.url_field();
    let fields = format!("{},{field}", SEARCH_FIELDS.join(","));
    let mut object = client.image(id, &fields).await?;
    let url = wire::take_thumb_url(&mut object, field);
    let grid = grid_of_dir(dir);
    let paths = ImagePaths {
        jpg: dir.join(format!("{id}.jpg")),
        json: dir.join(format!("{id}.json")),
    };
    fetch_and_store(
        client,
        Job {
            id,
            grid: &grid,
            size,
            url: Some(url.ok_or(DownloadError::NoUrl(field))?),
            object,
            paths: &paths,
            folder: Folder::Given,
        },
    )
    .await
}

/// The grid id a library caller's folder stands for: its name when valid, else `1`.
fn grid_of_dir(dir: &Path) -> GridId {
    dir.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| "1".parse().expect("valid"))
}
