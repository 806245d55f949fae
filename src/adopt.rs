//! `mlyexport adopt`: converts the old tool's folder (see [`crate::legacy`])
//! into mlyexport's layout in place. Per image, in this order (so a run
//! killed at any point is finished by the next): rename the JPEG to
//! `<grid>/<id>.jpg`, write `<grid>/<id>.json` atomically, then move the old
//! JSON into `.mlyexport-adopted/<grid>/jsons/`. Nothing is deleted; broken
//! JPEGs and anything not understood stay where they are and are reported.
//! A symbolic link to a folder is never followed (reported and left), so
//! nothing is moved out of the folder or into it from elsewhere.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::input::FolderAt;
use crate::legacy::{self, IMAGES_DIR, JSONS_DIR};
use crate::model::{FileStem, GridId, ImageId, PositionSource, ThumbSize};
use crate::plan::Grid;
use crate::record::{DownloadInfo, IMAGE_SCHEMA_VERSION, TOOL_KEY};
use crate::runrecord::{
    Area, Completeness, Counts, Filters, GridState, Outcome, RUN_RECORD_FILE, RUN_SCHEMA_VERSION,
    Request, RunEntry, RunRecord,
};
use crate::store::{self, StoreError};

/// The hidden folder the old JSONs are moved into (never scanned).
pub(crate) const ADOPTED_DIR: &str = ".mlyexport-adopted";
/// The report written at the top of the folder.
pub(crate) const REPORT_FILE: &str = "adopt-report.json";
/// Largest old JSON or JPEG read, in bytes.
const MAX_FILE_BYTES: u64 = 256 << 20;

/// Why adopt stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AdoptError {
    #[error("cannot read `{path}`: {source}; check the folder's permissions")]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "cannot move `{from}` to `{to}`: {source}; the folder must be writable and on one file system"
    )]
    Move {
        from: PathBuf,
        to: PathBuf,
        source: io::Error,
    },
    #[error("cannot create the folder `{path}`: {source}; the folder must be writable")]
    Create { path: PathBuf, source: io::Error },
    #[error(
        "`{path}` is in the way: not a folder (a symbolic link is never followed, so nothing is moved out of the folder); move it away and re-run"
    )]
    NotAFolder { path: PathBuf },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A file left where it was, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Left {
    /// Relative to the folder.
    pub path: String,
    pub reason: String,
}

/// Per segment: what was adopted and left.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct SegmentReport {
    pub grid: String,
    pub adopted: u64,
    pub broken: u64,
    /// Old JSONs without an image (left for `fetch` to download).
    pub without_image: u64,
}

/// What adopt did (or, with `--dry-run`, would do).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct AdoptReport {
    pub dry_run: bool,
    pub adopted: u64,
    /// Of them, already adopted by an earlier (possibly killed) run.
    pub already_done: u64,
    pub segments: Vec<SegmentReport>,
    /// Broken JPEGs (not a complete JPEG, or unreadable: too large, say):
    /// left in place, not adopted.
    pub broken: Vec<Left>,
    /// Files not understood (and old JSONs that could not be used): left in place.
    pub left: Vec<Left>,
    /// The segments from `study_area_segments.txt`, written as the run
    /// record's grids; `None` when the file is missing or unusable (no run record).
    #[serde(skip)]
    pub run_record: Option<Vec<Grid>>,
    /// Why no run record was written, when none was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_run_record: Option<String>,
}

/// One segment of the old folder: its grid id and its two folders.
#[derive(Debug, Clone)]
struct Segment {
    grid: String,
    jsons: PathBuf,
    images: PathBuf,
}

/// Why a linked `jsons/` or `images/` is left.
const LINKED: &str = "a symbolic link to a folder: not followed, so nothing is moved out of or into another folder; put the folder itself there";

/// Whether `dir` (`jsons/` or `images/`) is a real folder; a link to one is
/// reported as left, never followed.
fn old_folder(root: &Path, dir: &Path, report: &mut AdoptReport) -> bool {
    match crate::input::folder_at(dir) {
        FolderAt::Folder => true,
        FolderAt::LinkToFolder => {
            report.left.push(Left {
                path: rel(root, dir),
                reason: LINKED.into(),
            });
            false
        }
        FolderAt::Other => false,
    }
}

/// The segments of an old folder: `jsons/` at the top (a single run, grid
/// `1`), otherwise every folder named like a grid id holding `jsons/` or
/// `images/`. Other folders are reported as not understood, and so are
/// links to folders (never followed).
fn segments(root: &Path, report: &mut AdoptReport) -> Result<Vec<Segment>, AdoptError> {
    let (jsons, images) = (root.join(JSONS_DIR), root.join(IMAGES_DIR));
    // `|`, not `||`: both links are reported.
    if old_folder(root, &jsons, report) | old_folder(root, &images, report) {
        let grid = root.join("1");
        let free = match fs::symlink_metadata(&grid) {
            Ok(m) => m.is_dir(),
            Err(e) => e.kind() == io::ErrorKind::NotFound,
        };
        if !free {
            report.left.push(Left {
                path: "1".into(),
                reason: "in the way of the single run's grid `1`: not a folder (a link is never followed); move it away and re-run".into(),
            });
            return Ok(Vec::new());
        }
        return Ok(vec![Segment {
            grid: "1".into(),
            jsons,
            images,
        }]);
    }
    let read_err = |source| AdoptError::Read {
        path: root.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for e in fs::read_dir(root).map_err(read_err)? {
        let e = e.map_err(read_err)?;
        let name = e.file_name().to_string_lossy().into_owned();
        let dir = e.path();
        if !e.file_type().is_ok_and(|t| t.is_dir()) || name.starts_with('.') {
            continue;
        }
        let (jsons, images) = (dir.join(JSONS_DIR), dir.join(IMAGES_DIR));
        match name.parse::<GridId>() {
            Ok(_) => {
                if old_folder(root, &jsons, report) | old_folder(root, &images, report) {
                    out.push(Segment {
                        grid: name,
                        jsons,
                        images,
                    });
                }
            }
            Err(e) => report.left.push(Left {
                path: name,
                reason: format!("folder not understood: {e}"),
            }),
        }
    }
    out.sort_by(|a, b| a.grid.cmp(&b.grid));
    Ok(out)
}

/// The ids in a folder, and its other names, each with why it is left.
type Listing = (Vec<ImageId>, Vec<(String, String)>);

/// Image ids named `<id>.<ext>` in `dir` (none when it is missing or not
/// a real folder: a link is never followed), and the other file names,
/// each with why it is left.
fn list(dir: &Path, ext: &str) -> Result<Listing, AdoptError> {
    let mut ids = Vec::new();
    let mut other = Vec::new();
    if crate::input::folder_at(dir) != FolderAt::Folder {
        return Ok((ids, other));
    }
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((ids, other)),
        Err(source) => {
            return Err(AdoptError::Read {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    for e in entries {
        let e = e.map_err(|source| AdoptError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        let name = e.file_name().to_string_lossy().into_owned();
        let stem = name.strip_suffix(ext).map_or(FileStem::Other, FileStem::of);
        let why = match stem {
            FileStem::Id(id) if e.file_type().is_ok_and(|t| t.is_file()) => {
                ids.push(id);
                continue;
            }
            FileStem::Padded(id) => format!(
                "names image `{id}` with leading zeros, which the old tool never wrote: left where it is; rename it to `{id}{ext}` if it is that image"
            ),
            _ => "not an old tool's `<id>.json` or `<id>.jpg`: left where it is".into(),
        };
        other.push((name, why));
    }
    ids.sort_unstable();
    other.sort();
    Ok((ids, other))
}

/// Adopts the old folder `root` in place (or, with `dry_run`, only says
/// what it would do). The caller holds the folder lock.
pub(crate) fn adopt(root: &Path, dry_run: bool) -> Result<AdoptReport, AdoptError> {
    let mut report = AdoptReport {
        dry_run,
        ..AdoptReport::default()
    };
    let hidden = root.join(ADOPTED_DIR);
    if fs::symlink_metadata(&hidden).is_ok_and(|m| !m.is_dir()) {
        return Err(AdoptError::NotAFolder { path: hidden });
    }
    for seg in segments(root, &mut report)? {
        let seg_report = adopt_segment(root, &seg, dry_run, &mut report)?;
        report.adopted += seg_report.adopted;
        report.segments.push(seg_report);
    }
    report.run_record = segment_grids(root, &mut report);
    if !dry_run {
        if let Some(record) = report
            .run_record
            .clone()
            .and_then(|g| run_record(root, g, &report))
        {
            let bytes = serde_json::to_vec_pretty(&record).unwrap_or_default();
            store::atomic_write(&root.join(RUN_RECORD_FILE), &bytes)?;
        }
        let bytes = serde_json::to_vec_pretty(&report).unwrap_or_default();
        store::atomic_write(&root.join(REPORT_FILE), &bytes)?;
    }
    Ok(report)
}

/// `path` relative to `root`, as text.
fn rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

fn adopt_segment(
    root: &Path,
    seg: &Segment,
    dry_run: bool,
    report: &mut AdoptReport,
) -> Result<SegmentReport, AdoptError> {
    let mut out = SegmentReport {
        grid: seg.grid.clone(),
        ..SegmentReport::default()
    };
    let grid_dir = root.join(&seg.grid);
    let hidden = root.join(ADOPTED_DIR).join(&seg.grid).join(JSONS_DIR);
    let (json_ids, other_jsons) = list(&seg.jsons, ".json")?;
    let (jpg_ids, other_jpgs) = list(&seg.images, ".jpg")?;
    for (dir, names) in [(&seg.jsons, other_jsons), (&seg.images, other_jpgs)] {
        for (n, reason) in names {
            report.left.push(Left {
                path: rel(root, &dir.join(n)),
                reason,
            });
        }
    }
    for &id in &jpg_ids {
        if json_ids.binary_search(&id).is_err() && !grid_dir.join(format!("{id}.json")).is_file() {
            report.left.push(Left {
                path: rel(root, &seg.images.join(format!("{id}.jpg"))),
                reason: "no `<id>.json` beside it in `jsons/`: left where it is".into(),
            });
        }
    }
    // Half-done images of a killed run: JPEG moved, JSON not yet written.
    let (moved, _) = list(&grid_dir, ".jpg")?;
    for id in json_ids {
        let item = Item {
            id,
            old_json: seg.jsons.join(format!("{id}.json")),
            old_jpg: seg.images.join(format!("{id}.jpg")),
            jpg: grid_dir.join(format!("{id}.jpg")),
            json: grid_dir.join(format!("{id}.json")),
            hidden_json: hidden.join(format!("{id}.json")),
            grid: &seg.grid,
        };
        // From the listings, which follow no link.
        let jpg = if jpg_ids.binary_search(&id).is_ok() {
            JpgAt::Old
        } else if moved.binary_search(&id).is_ok() {
            JpgAt::Moved
        } else {
            JpgAt::Missing
        };
        adopt_one(root, &item, jpg, dry_run, report, &mut out)?;
    }
    if !dry_run {
        // Only empty folders go: `remove_dir` refuses any other.
        let _ = fs::remove_dir(&seg.jsons);
        let _ = fs::remove_dir(&seg.images);
    }
    Ok(out)
}

/// Where an image's JPEG is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JpgAt {
    /// In `images/`.
    Old,
    /// Already in the grid folder (a killed run moved it).
    Moved,
    Missing,
}

/// The paths of one image, before and after.
struct Item<'a> {
    id: ImageId,
    old_json: PathBuf,
    old_jpg: PathBuf,
    jpg: PathBuf,
    json: PathBuf,
    hidden_json: PathBuf,
    grid: &'a str,
}

fn adopt_one(
    root: &Path,
    item: &Item<'_>,
    jpg: JpgAt,
    dry_run: bool,
    report: &mut AdoptReport,
    out: &mut SegmentReport,
) -> Result<(), AdoptError> {
    let old = match read_old_json(&item.old_json) {
        Ok(v) => v,
        Err(reason) => {
            report.left.push(Left {
                path: rel(root, &item.old_json),
                reason,
            });
            return Ok(());
        }
    };
    if jpg == JpgAt::Missing {
        out.without_image += 1;
        report.left.push(Left {
            path: rel(root, &item.old_json),
            reason: "no image in `images/`: `mlyexport fetch` downloads it".into(),
        });
        return Ok(());
    }
    // Resume: the JPEG may already be in place from a killed run.
    let in_place = jpg == JpgAt::Moved;
    let jpg_now = if in_place { &item.jpg } else { &item.old_jpg };
    let (bytes, (w, h)) = match read_jpeg(jpg_now) {
        Ok(checked) => checked,
        Err(reason) => {
            out.broken += 1;
            report.broken.push(Left {
                path: rel(root, jpg_now),
                reason,
            });
            return Ok(());
        }
    };
    if in_place && item.json.is_file() {
        report.already_done += 1;
    }
    out.adopted += 1;
    if dry_run {
        return Ok(());
    }
    if !in_place {
        // The single run's grid `1` is new: no folder yet.
        create_inside(root, item.jpg.parent())?;
        rename(&item.old_jpg, &item.jpg)?;
    }
    let mtime = fs::metadata(&item.jpg)
        .and_then(|m| m.modified())
        .map(DateTime::<Utc>::from)
        .unwrap_or_else(|_| Utc::now());
    let info = Info {
        grid: item.grid,
        bytes: &bytes,
        size: (w, h),
        mtime,
        original: rel(root, &item.old_jpg),
    };
    let record = new_record(&old, item.id, &info);
    store::atomic_write(
        &item.json,
        &serde_json::to_vec_pretty(&record).unwrap_or_default(),
    )?;
    create_inside(root, item.hidden_json.parent())?;
    rename(&item.old_json, &item.hidden_json)
}

fn read_old_json(path: &Path) -> Result<Value, String> {
    let mut bytes = Vec::new();
    crate::input::read_bounded_into(path, MAX_FILE_BYTES, &mut bytes)
        .map_err(|e| format!("cannot read it: {e}"))?;
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| format!("not valid JSON: {e}; left where it is"))?;
    if !v.is_object() {
        return Err("not a JSON object: left where it is".into());
    }
    Ok(v)
}

/// The JPEG at `path` and its pixel size; why it cannot be adopted otherwise
/// (unreadable, too large, or not a complete JPEG): one file, never fatal.
fn read_jpeg(path: &Path) -> Result<(Vec<u8>, (u32, u32)), String> {
    let mut bytes = Vec::new();
    crate::input::read_bounded_into(path, MAX_FILE_BYTES, &mut bytes)
        .map_err(|e| format!("cannot read it: {e}"))?;
    let size = legacy::check_jpeg(&bytes).map_err(|e| e.to_string())?;
    Ok((bytes, size))
}

/// Creates `dir` and the folders above it up to `root`, going through real
/// folders only: through a link, files would be moved out of the folder.
fn create_inside(root: &Path, dir: Option<&Path>) -> Result<(), AdoptError> {
    let Some(dir) = dir else { return Ok(()) };
    let mut at = root.to_path_buf();
    for part in dir.strip_prefix(root).unwrap_or(dir).components() {
        at.push(part);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(AdoptError::NotAFolder { path: at }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&at).map_err(|source| AdoptError::Create {
                    path: at.clone(),
                    source,
                })?;
            }
            Err(source) => return Err(AdoptError::Create { path: at, source }),
        }
    }
    Ok(())
}

/// An atomic rename (same file system), refusing to replace a file.
fn rename(from: &Path, to: &Path) -> Result<(), AdoptError> {
    let err = |source| AdoptError::Move {
        from: from.to_path_buf(),
        to: to.to_path_buf(),
        source,
    };
    if to.exists() {
        return Err(err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the target exists; move it away and re-run",
        )));
    }
    fs::rename(from, to).map_err(err)
}

/// What adopt knows about one image's JPEG.
pub(crate) struct Info<'a> {
    pub grid: &'a str,
    pub bytes: &'a [u8],
    /// Pixel width and height.
    pub size: (u32, u32),
    pub mtime: DateTime<Utc>,
    /// The JPEG's path in the old folder, relative to it.
    pub original: String,
}

/// The `<id>.json` of an adopted image: the old keys mapped to the API's
/// names, and a `mlyexport` object with the provenance. Pure.
pub(crate) fn new_record(old: &Value, id: ImageId, info: &Info<'_>) -> Value {
    let mut map = legacy::to_api_fields(old, id).unwrap_or_default();
    let mut warnings = Vec::new();
    if !map.contains_key("computed_geometry") {
        warnings.push("no_position".to_string());
    }
    let dl = DownloadInfo {
        schema_version: IMAGE_SCHEMA_VERSION,
        grid: info.grid.to_string(),
        // A guess: the old tool's thumbnail size is not recorded.
        size: "original".into(),
        file: format!("{id}.jpg"),
        bytes: info.bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(info.bytes)),
        pixel_width: info.size.0,
        pixel_height: info.size.1,
        downloaded_at: info.mtime,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        warnings,
        altitude_repaired: None,
    };
    let mut tool = serde_json::to_value(dl).unwrap_or(Value::Null);
    if let Some(t) = tool.as_object_mut() {
        t.insert("imported_from".into(), legacy::IMPORTED_FROM.into());
        t.insert("original_path".into(), info.original.clone().into());
    }
    map.insert(TOOL_KEY.into(), tool);
    Value::Object(map)
}

/// Largest segments file read, in bytes.
const MAX_SEGMENTS_BYTES: u64 = 64 << 20;

/// The grids of `study_area_segments.txt`; `None` (and the reason in the
/// report) when it is missing or does not parse.
fn segment_grids(root: &Path, report: &mut AdoptReport) -> Option<Vec<Grid>> {
    let path = root.join(legacy::SEGMENTS_FILE);
    let why = match crate::input::read_text_bounded(&path, MAX_SEGMENTS_BYTES) {
        Ok(text) => match crate::plan::parse_grid_file(&text) {
            Ok(grids) => return Some(grids),
            Err(e) => format!("`{}` does not parse: {e}", path.display()),
        },
        Err(e) => format!("no usable `{}` ({e})", path.display()),
    };
    report.no_run_record = Some(format!(
        "{why}: images converted, but no run record written (the grid boxes are unknown)"
    ));
    None
}

/// The run record of an adopted folder: the segments as grids, each with
/// listing `unknown (imported)`, and one run with outcome `imported`.
fn run_record(root: &Path, grids: Vec<Grid>, report: &AdoptReport) -> Option<RunRecord> {
    let adopted = |g: &str| {
        report
            .segments
            .iter()
            .find(|s| s.grid == g)
            .map_or(0, |s| s.adopted)
    };
    let bbox = grids.iter().map(|g| g.bbox).reduce(|a, b| a.union(&b))?;
    let states: Vec<GridState> = grids
        .iter()
        .map(|g| {
            let grid = g.id.to_string();
            GridState {
                downloaded: adopted(&grid),
                failed: (report.segments.iter().find(|s| s.grid == grid)).map_or(0, |s| s.broken),
                ..GridState::untouched(grid, g.bbox, Completeness::Imported)
            }
        })
        .collect();
    let counts = Counts {
        downloaded: report.adopted,
        failed: report.broken.len() as u64,
        ..Counts::default()
    };
    let now = Utc::now();
    Some(RunRecord {
        schema_version: RUN_SCHEMA_VERSION,
        tool: "mlyexport".into(),
        request: Request {
            area: Area {
                kind: "grid_file".into(),
                bbox,
                grid_file: Some(root.join(legacy::SEGMENTS_FILE).display().to_string()),
                grid_spec: None,
                aoi: None,
            },
            filters: Filters::default(),
            // A guess: the old tool's thumbnail size is not recorded.
            size: ThumbSize::Original,
            enumerate: crate::model::Enumerate::Auto,
            position: PositionSource::Computed,
            min_spacing_m: None,
        },
        grids: states,
        totals: counts.clone(),
        failures: Vec::new(),
        runs: vec![RunEntry {
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            command_line: crate::config::redact_argv(std::env::args().collect()),
            api_url: String::new(),
            started_at: now,
            finished_at: Some(now),
            outcome: Outcome::Imported,
            dry_run: false,
            counts,
            shard: None,
        }],
    })
}
