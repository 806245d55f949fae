//! Reads a downloads folder, for `layers`, `exif` and library callers: the
//! one scan of its images in either layout ([`scan`]), the per-image
//! metadata files (in parallel, on the caller's rayon pool), the run record
//! and the optional listing. Links to folders are never followed: each is
//! named in [`Scan::unread`]. File reads only, each through `crate::input` (regular files
//! only, opened without blocking, size- and line-bounded): no writes, no
//! network, no terminal.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde_json::Value;

use crate::input::{self, FolderAt};
use crate::legacy::{self, BrokenJpeg, IMAGES_DIR, JSONS_DIR};
use crate::model::GridId;
use crate::model::{FileStem, ImageId, PositionSource};
use crate::record::{ImageRecord, RecordError};
use crate::rows::{ImageRow, Interner, LayersError};
use crate::runrecord::{RUN_RECORD_FILE, RunRecord};
pub use crate::store::StoreError;
use crate::store::{LISTING_FILE, MAX_METADATA_BYTES};

/// Which layout a folder has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputLayout {
    /// `mlyexport fetch`: `<root>/<grid>/<id>.json` beside `<id>.jpg`.
    Mlyexport,
    /// The old Python tool: `<root>/jsons/<id>.json` and `<root>/images/<id>.jpg`
    /// (or, for its batch of segments, `<root>/<grid>/jsons/` and `images/`).
    Legacy,
}

/// Why one metadata file (or the run record) could not be used.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // each variant's #[error] text is its documentation
pub enum ReadError {
    #[error("cannot read `{path}`: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("`{path}` is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("`{path}` is not an image record: {source}")]
    Record { path: PathBuf, source: RecordError },
    #[error("`{path}` holds image `{found}`, not the image its name says")]
    IdMismatch { path: PathBuf, found: ImageId },
    #[error("`{path}` is not a valid run record: {source}")]
    RunRecord {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("`{path}` is not an old tool's image JSON: {source}")]
    Legacy {
        path: PathBuf,
        source: legacy::LegacyError,
    },
    #[error("`{path}` is not drawn: {reason}")]
    BrokenJpeg {
        path: PathBuf,
        grid: String,
        reason: BrokenJpeg,
    },
    #[error(transparent)]
    Layers(#[from] LayersError),
    #[error(transparent)]
    Shards(#[from] crate::shard::folder::FolderError),
}

/// Largest JPEG checked, in bytes (an original upload is rarely above 30 MB).
const MAX_JPEG_BYTES: u64 = 256 << 20;

/// Images handed to rayon at once; bounds the memory of parsed records.
const CHUNK: usize = 8192;

/// One image's metadata file, compactly (16 bytes): a million of them fit in
/// 16 MB, where a list of paths would take about 200 MB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The image id (the file name).
    pub id: ImageId,
    /// Index into [`Scan::grids`].
    pub grid: u32,
    /// Whether `<id>.jpg` is beside the JSON.
    pub has_jpg: bool,
}

/// An entry of a downloads folder that looks like part of its layout but is
/// not read, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unread {
    /// The entry.
    pub path: PathBuf,
    /// Why it is not read.
    pub why: UnreadWhy,
}

/// Why an entry of a downloads folder is not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[allow(missing_docs)] // each variant's #[error] text is its documentation
pub enum UnreadWhy {
    #[error(
        "a symbolic link to a folder: not followed, so nothing outside the folder is read or changed; put the folder itself there"
    )]
    LinkedFolder,
    #[error(
        "names image `{0}` with leading zeros (only `{0}.json` and `{0}.jpg` are read); rename it if it is that image"
    )]
    Padded(ImageId),
    #[error("named like an image file, but not an image id (1 to 18446744073709551615)")]
    NotAnId,
    #[error("a folder named like an image file")]
    Folder,
}

/// Unread entries named one by one; the rest are only counted.
const UNREAD_NAMED: usize = 20;

/// The metadata files of a downloads folder, sorted by grid then id.
#[derive(Debug, Clone)]
pub struct Scan {
    /// The folder scanned.
    pub root: PathBuf,
    /// mlyexport's layout or the old tool's.
    pub layout: InputLayout,
    /// Grid ids (folder names; `1` for the old tool's single run), sorted.
    pub grids: Vec<String>,
    /// Every image's metadata file, sorted by grid then id.
    pub entries: Vec<Entry>,
    /// The old tool's batch layout: `<grid>/jsons/` and `<grid>/images/`.
    pub segments: bool,
    /// Entries not read although they look like part of the layout (a
    /// linked folder, say): the first few, in the order found.
    pub unread: Vec<Unread>,
    /// How many entries were not read (more than [`Scan::unread`] names
    /// when there are many).
    pub unread_count: usize,
}

impl Scan {
    /// Notes an entry not read.
    fn not_read(&mut self, path: PathBuf, why: UnreadWhy) {
        if self.unread.len() < UNREAD_NAMED {
            self.unread.push(Unread { path, why });
        }
        self.unread_count += 1;
    }

    /// One warning per entry not read, and one counting those not named.
    pub fn unread_warnings(&self) -> Vec<String> {
        let mut out: Vec<String> = (self.unread.iter())
            .map(|u| format!("not read: `{}`: {}", u.path.display(), u.why))
            .collect();
        let more = self.unread_count - self.unread.len();
        if more > 0 {
            out.push(format!("… and {more} more entries not read"));
        }
        out
    }

    /// The summary line counting the entries not read, when there are any.
    pub(crate) fn unread_line(&self) -> Option<(String, String)> {
        (self.unread_count > 0).then(|| {
            let n = self.unread_count.to_string();
            ("not read (see the warnings)".to_string(), n)
        })
    }

    /// Whether `path` is a real folder; a link to one is noted, not followed.
    fn real_folder(&mut self, path: &Path) -> bool {
        match input::folder_at(path) {
            FolderAt::Folder => true,
            FolderAt::LinkToFolder => {
                self.not_read(path.to_path_buf(), UnreadWhy::LinkedFolder);
                false
            }
            FolderAt::Other => false,
        }
    }

    /// The folder holding the metadata files of grid number `grid`.
    pub fn folder(&self, grid: u32) -> PathBuf {
        match (self.layout, self.segments) {
            (InputLayout::Legacy, false) => self.root.join(JSONS_DIR),
            (InputLayout::Legacy, true) => {
                self.root.join(&self.grids[grid as usize]).join(JSONS_DIR)
            }
            (InputLayout::Mlyexport, _) => self.root.join(&self.grids[grid as usize]),
        }
    }

    /// The path of an entry's `<id>.jpg`.
    pub fn jpg_path(&self, e: &Entry) -> PathBuf {
        let folder = self.folder(e.grid);
        let name = format!("{}.jpg", e.id);
        match self.layout {
            InputLayout::Legacy => folder.with_file_name(IMAGES_DIR).join(name),
            InputLayout::Mlyexport => folder.join(name),
        }
    }

    /// The path of an entry's `<id>.json`.
    pub fn json_path(&self, e: &Entry) -> PathBuf {
        self.folder(e.grid).join(format!("{}.json", e.id))
    }
}

/// Lists `<id>.json` and `<id>.jpg` names in one folder, from the directory
/// listing alone (no `stat` per file); other names of digits (`0031.json`,
/// an id beyond `u64`, a folder `26.json`) are noted in `out` as not read.
fn list_ids(out: &mut Scan, dir: &Path) -> io::Result<(Vec<ImageId>, Vec<ImageId>)> {
    let (mut jsons, mut jpgs) = (Vec::new(), Vec::new());
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let (stem, is_json) = match (name.strip_suffix(".json"), name.strip_suffix(".jpg")) {
            (Some(s), _) => (s, true),
            (None, Some(s)) => (s, false),
            _ => continue,
        };
        let why = match FileStem::of(stem) {
            FileStem::Other => continue,
            _ if e.file_type().is_ok_and(|t| t.is_dir()) => UnreadWhy::Folder,
            FileStem::Id(id) if is_json => {
                jsons.push(id);
                continue;
            }
            FileStem::Id(id) => {
                jpgs.push(id);
                continue;
            }
            FileStem::Padded(id) => UnreadWhy::Padded(id),
            FileStem::NotAnId => UnreadWhy::NotAnId,
        };
        out.not_read(e.path(), why);
    }
    jsons.sort_unstable();
    jpgs.sort_unstable();
    Ok((jsons, jpgs))
}

/// Finds every image metadata file in a downloads folder, in either layout
/// (the old tool's when `jsons/` exists, or sub-folders holding `jsons/`,
/// unless `mlyexport adopt` converted the folder; otherwise every sub-folder
/// named like a grid id), sorted by grid then id, compactly: see [`Entry`].
/// The one scan of a folder: `layers`, `exif` and the Python module use it.
pub fn scan(root: &Path) -> Result<Scan, StoreError> {
    let mut out = Scan {
        root: root.to_path_buf(),
        layout: InputLayout::Mlyexport,
        grids: Vec::new(),
        entries: Vec::new(),
        segments: false,
        unread: Vec::new(),
        unread_count: 0,
    };
    // Once `mlyexport adopt` ran, the folder is mlyexport's (its leftovers
    // in `jsons/` are broken or not understood, and named in its report).
    let adopted = root.join(crate::adopt::REPORT_FILE).is_file();
    if !adopted && out.real_folder(&root.join(JSONS_DIR)) {
        out.layout = InputLayout::Legacy;
        add_grid(&mut out, "1", &root.join(JSONS_DIR), &root.join(IMAGES_DIR))?;
        return Ok(out);
    }
    let names = grid_folders(&mut out)?;
    // The old tool's batch: segment folders holding `jsons/`.
    let legacy: Vec<&String> = names
        .iter()
        .filter(|n| !adopted && out.real_folder(&root.join(n).join(JSONS_DIR)))
        .collect();
    if !legacy.is_empty() {
        out.layout = InputLayout::Legacy;
        out.segments = true;
        for name in legacy {
            let dir = root.join(name);
            add_grid(&mut out, name, &dir.join(JSONS_DIR), &dir.join(IMAGES_DIR))?;
        }
        return Ok(out);
    }
    for name in &names {
        let dir = root.join(name);
        add_grid(&mut out, name, &dir, &dir)?;
    }
    Ok(out)
}

/// Sub-folders of the scan's root named like a grid id, sorted; links to
/// folders so named are noted, not followed.
fn grid_folders(out: &mut Scan) -> Result<Vec<String>, StoreError> {
    let root = out.root.clone();
    let read_err = |source| StoreError::Read {
        path: root.clone(),
        source,
    };
    let mut names = Vec::new();
    for e in fs::read_dir(&root).map_err(read_err)? {
        let e = e.map_err(read_err)?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.parse::<GridId>().is_err() {
            continue;
        }
        match e.file_type() {
            Ok(t) if t.is_dir() => names.push(name),
            Ok(t) if t.is_symlink() => {
                out.real_folder(&e.path());
            }
            _ => {}
        }
    }
    names.sort();
    Ok(names)
}

/// Adds grid `name` (its `<id>.json` files in `jsons`, JPEGs in `jpgs`) to
/// the scan, unless it holds no metadata file.
fn add_grid(out: &mut Scan, name: &str, jsons: &Path, jpgs: &Path) -> Result<(), StoreError> {
    let read_err = |path: &Path, source| StoreError::Read {
        path: path.to_path_buf(),
        source,
    };
    let (ids, mut jpg_ids) = list_ids(out, jsons).map_err(|e| read_err(jsons, e))?;
    if jsons != jpgs {
        // The old tool's `images/`: never through a link.
        jpg_ids = if out.real_folder(jpgs) {
            list_ids(out, jpgs).map_err(|e| read_err(jpgs, e))?.1
        } else {
            Vec::new()
        };
    }
    if ids.is_empty() {
        return Ok(());
    }
    let grid = u32::try_from(out.grids.len()).unwrap_or(u32::MAX);
    out.entries.extend(ids.into_iter().map(|id| Entry {
        id,
        grid,
        has_jpg: jpg_ids.binary_search(&id).is_ok(),
    }));
    out.grids.push(name.to_string());
    Ok(())
}

thread_local! {
    /// Each reading thread's buffer, reused from file to file.
    static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Reads and parses `<id>.json` in `folder`, checking it holds the image `id`.
fn read_record(folder: &Path, id: ImageId) -> Result<ImageRecord, ReadError> {
    read_record_at(&folder.join(format!("{id}.json")), id)
}

/// Reads one entry of the old tool's layout: its JSON mapped to the API's
/// field names ([`legacy::to_api_fields`]), and its JPEG checked complete
/// (a broken one is a [`ReadError::BrokenJpeg`]: not drawn, counted).
fn read_legacy(scan: &Scan, e: &Entry) -> Result<(ImageRecord, bool), ReadError> {
    let json = scan.json_path(e);
    let path = || json.clone();
    let io_err = |source| ReadError::Io {
        path: path(),
        source,
    };
    let mut bytes = Vec::new();
    input::read_bounded_into(&json, MAX_METADATA_BYTES, &mut bytes).map_err(io_err)?;
    let rec = parse_old(&bytes, e.id, &path)?;
    if e.has_jpg {
        let jpg = scan.jpg_path(e);
        let mut bytes = Vec::new();
        input::read_bounded_into(&jpg, MAX_JPEG_BYTES, &mut bytes).map_err(|source| {
            ReadError::Io {
                path: jpg.clone(),
                source,
            }
        })?;
        legacy::check_jpeg(&bytes).map_err(|reason| ReadError::BrokenJpeg {
            path: jpg.clone(),
            grid: scan.grids[e.grid as usize].clone(),
            reason,
        })?;
    }
    Ok((rec, e.has_jpg))
}

/// Reads and parses the metadata file `path` (size-bounded, into this
/// thread's reused buffer), checking it holds the image `id`.
pub fn read_record_at(json: &Path, id: ImageId) -> Result<ImageRecord, ReadError> {
    let path = || json.to_path_buf();
    let io_err = |source| ReadError::Io {
        path: path(),
        source,
    };
    BUFFER.with_borrow_mut(|bytes| {
        input::read_bounded_into(json, MAX_METADATA_BYTES, bytes).map_err(io_err)?;
        parse_record(bytes, id, path)
    })
}

fn parse_record(
    bytes: &[u8],
    id: ImageId,
    path: impl Fn() -> PathBuf,
) -> Result<ImageRecord, ReadError> {
    let rec = match ImageRecord::from_slice(bytes) {
        Ok(rec) => rec,
        // The old tool's JSON has no `id` (the file name is the id): read
        // it through the one mapping of its keys.
        Err(RecordError::Id(_)) if legacy::is_old_json(bytes) => parse_old(bytes, id, &path)?,
        Err(RecordError::NotObject(source)) => {
            return Err(ReadError::Json {
                path: path(),
                source,
            });
        }
        Err(source) => {
            return Err(ReadError::Record {
                path: path(),
                source,
            });
        }
    };
    if rec.id != id {
        return Err(ReadError::IdMismatch {
            path: path(),
            found: rec.id,
        });
    }
    Ok(rec)
}

/// An old tool's JSON of image `id`, with its keys mapped by
/// [`legacy::to_api_fields`].
fn parse_old(
    bytes: &[u8],
    id: ImageId,
    path: &impl Fn() -> PathBuf,
) -> Result<ImageRecord, ReadError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|source| ReadError::Json {
        path: path(),
        source,
    })?;
    let fields = legacy::to_api_fields(&value, id).map_err(|source| ReadError::Legacy {
        path: path(),
        source,
    })?;
    ImageRecord::from_map(&fields).map_err(|source| ReadError::Record {
        path: path(),
        source,
    })
}

/// Rows read from a folder, and the files that could not be used.
#[derive(Debug, Default)]
pub(crate) struct ReadOutcome {
    /// In scan order (grid, then id); not yet de-duplicated.
    pub rows: Vec<ImageRow>,
    pub strings: Interner,
    pub problems: Vec<ReadError>,
}

/// Reads every metadata file in parallel (in chunks, so only a few thousand
/// parsed records live at once) and turns each into a compact [`ImageRow`],
/// in scan order (grid, then id). A bad file becomes a problem, never an
/// abort; so does a second copy of an image id (the first is kept). After
/// each chunk, `on_chunk` gets the chunk's new rows, the string table and the
/// number of files done; its error stops the reading. While one chunk's
/// records become rows (on this thread: the string table is one), the next
/// chunk is already being parsed.
pub(crate) fn read_rows<E>(
    scan: &Scan,
    prefer: PositionSource,
    mut on_chunk: impl FnMut(&[ImageRow], &Interner, usize) -> Result<(), E>,
) -> Result<ReadOutcome, E> {
    let mut rows = RowBuilder::new(scan, prefer);
    let chunks: Vec<&[Entry]> = scan.entries.chunks(CHUNK).collect();
    std::thread::scope(|s| {
        let parse = |chunk: &[Entry]| parse_chunk(scan, chunk);
        let mut pending = chunks.first().map(|c| s.spawn(move || parse(c)));
        let mut done = 0;
        for (i, chunk) in chunks.iter().enumerate() {
            let parsed = match pending.take().map(|h| h.join()) {
                Some(Ok(parsed)) => parsed,
                Some(Err(panic)) => std::panic::resume_unwind(panic),
                None => parse(chunk),
            };
            pending = chunks.get(i + 1).map(|next| s.spawn(move || parse(next)));
            let start = rows.out.rows.len();
            rows.add(chunk, parsed);
            done += chunk.len();
            on_chunk(&rows.out.rows[start..], &rows.out.strings, done)?;
        }
        Ok(rows.out)
    })
}

/// One chunk's records, parsed on rayon, in the chunk's order.
fn parse_chunk(scan: &Scan, chunk: &[Entry]) -> Vec<Result<ImageRecord, ReadError>> {
    // Entries are sorted by grid: a chunk spans few folders.
    let mut folders: Vec<(u32, PathBuf)> = Vec::new();
    for e in chunk {
        if folders.last().is_none_or(|(g, _)| *g != e.grid) {
            folders.push((e.grid, scan.folder(e.grid)));
        }
    }
    let folder = |grid: u32| {
        let i = folders.partition_point(|(g, _)| *g < grid);
        folders[i].1.as_path()
    };
    chunk
        .par_iter()
        .map(|e| match scan.layout {
            InputLayout::Legacy => read_legacy(scan, e).map(|(r, _)| r),
            InputLayout::Mlyexport => read_record(folder(e.grid), e.id),
        })
        .collect()
}

/// Turns parsed records into rows in scan order, keeping the first copy of
/// an id found in more than one grid folder.
struct RowBuilder<'a> {
    scan: &'a Scan,
    prefer: PositionSource,
    out: ReadOutcome,
    /// Ids in more than one grid folder (normally none), found up front so
    /// the rows can be streamed: only these need remembering.
    duplicated: HashSet<ImageId>,
    first_grid: HashMap<ImageId, u32>,
}

impl<'a> RowBuilder<'a> {
    fn new(scan: &'a Scan, prefer: PositionSource) -> Self {
        let mut ids: Vec<ImageId> = scan.entries.iter().map(|e| e.id).collect();
        ids.sort_unstable();
        let duplicated = ids
            .windows(2)
            .filter(|w| w[0] == w[1])
            .map(|w| w[0])
            .collect();
        RowBuilder {
            scan,
            prefer,
            out: ReadOutcome {
                rows: Vec::with_capacity(scan.entries.len()),
                ..ReadOutcome::default()
            },
            duplicated,
            first_grid: HashMap::new(),
        }
    }

    fn add(&mut self, chunk: &[Entry], parsed: Vec<Result<ImageRecord, ReadError>>) {
        for (e, r) in chunk.iter().zip(parsed) {
            match r.and_then(|rec| self.row(e, &rec)) {
                Ok(row) => self.out.rows.push(row),
                Err(e) => self.out.problems.push(e),
            }
        }
    }

    fn row(&mut self, e: &Entry, rec: &ImageRecord) -> Result<ImageRow, ReadError> {
        if self.duplicated.contains(&e.id) {
            if let Some(&g) = self.first_grid.get(&e.id) {
                let first = self.scan.grids[g as usize].clone();
                return Err(LayersError::DuplicateId(e.id, first).into());
            }
            self.first_grid.insert(e.id, e.grid);
        }
        let grid = &self.scan.grids[e.grid as usize];
        ImageRow::from_record(rec, grid, e.has_jpg, self.prefer, &mut self.out.strings)
            .map_err(ReadError::from)
    }
}

/// Largest run record read, in bytes (the run record's own bound).
pub(crate) use crate::runrecord::lifecycle::MAX_RUN_RECORD_BYTES;

/// The run record of `root` and notes: `Ok(None)` when there is none (e.g. the old
/// Python tool's folder), an error when it exists but cannot be read. A
/// folder fetched in shards gives the shards' records merged into one, and
/// what is missing from it (shards not run, or not finished), one line each.
pub(crate) fn read_run_record_noting(
    root: &Path,
) -> Result<(Option<RunRecord>, Vec<String>), ReadError> {
    if let Some(f) = crate::shard::folder::read(root)? {
        let m = crate::shard::merge_shards(&f.split.request, &f.split.split, &f.records);
        return Ok((Some(m.record), m.warnings));
    }
    read_whole_run_record(root).map(|r| (r, Vec::new()))
}

/// [`read_run_record_noting`] without the notes.
#[cfg(test)]
fn read_run_record(root: &Path) -> Result<Option<RunRecord>, ReadError> {
    read_run_record_noting(root).map(|(r, _)| r)
}

fn read_whole_run_record(root: &Path) -> Result<Option<RunRecord>, ReadError> {
    let path = root.join(RUN_RECORD_FILE);
    let mut bytes = Vec::new();
    match input::read_bounded_into(&path, MAX_RUN_RECORD_BYTES, &mut bytes) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ReadError::Io { path, source }),
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| ReadError::RunRecord { path, source })
}

/// Largest segments file read, in bytes.
const MAX_SEGMENTS_BYTES: u64 = 64 << 20;

/// Grid boxes from the old tool's `study_area_segments.txt` in `root`, by
/// segment id; `None` when it is missing or does not parse.
pub(crate) fn read_segment_boxes(root: &Path) -> Option<BTreeMap<String, crate::model::Bbox>> {
    let text =
        input::read_text_bounded(&root.join(legacy::SEGMENTS_FILE), MAX_SEGMENTS_BYTES).ok()?;
    let grids = crate::plan::parse_grid_file(&text).ok()?;
    Some(
        grids
            .into_iter()
            .map(|g| (g.id.to_string(), g.bbox))
            .collect(),
    )
}

/// Longest `listing.jsonl` line read, in bytes (a listed image is ~300).
const MAX_LISTING_LINE_BYTES: usize = 1 << 20;

/// Images listed per grid according to `listing.jsonl`, when it exists, is
/// a regular file and can be read (a line longer than 1 MiB makes it
/// unreadable); lines that are not JSON objects with a `grid` are skipped.
pub(crate) fn read_listing_counts(root: &Path) -> Option<BTreeMap<String, u64>> {
    let file = input::open_regular(&root.join(LISTING_FILE)).ok()?;
    let mut counts = BTreeMap::new();
    let reader = io::BufReader::new(file);
    input::for_each_line(reader, MAX_LISTING_LINE_BYTES, |line| {
        let grid = serde_json::from_str::<Value>(line)
            .ok()
            .and_then(|v| match v.get("grid")? {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
        if let Some(g) = grid {
            *counts.entry(g).or_insert(0) += 1;
        }
    })
    .ok()?;
    Some(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (Moved from `store`, whose second scan this one replaced.)
    #[test]
    fn scans_both_layouts() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("g1")).unwrap();
        fs::write(dir.path().join("g1/5.json"), "{}").unwrap();
        fs::write(dir.path().join("g1/5.jpg"), "x").unwrap();
        fs::write(dir.path().join("g1/notes.json"), "{}").unwrap();
        let found = scan(dir.path()).unwrap();
        assert_eq!(found.layout, InputLayout::Mlyexport);
        assert_eq!(found.entries.len(), 1);
        assert!(found.entries[0].has_jpg);

        let old = tempfile::tempdir().unwrap();
        fs::create_dir_all(old.path().join("jsons")).unwrap();
        fs::write(old.path().join("jsons/9.json"), "{}").unwrap();
        let found = scan(old.path()).unwrap();
        assert_eq!(found.layout, InputLayout::Legacy);
        assert!(!found.entries[0].has_jpg);
    }

    #[test]
    fn linked_folders_are_named_not_followed() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let (root, outside) = (dir.path().join("in"), dir.path().join("out"));
        fs::create_dir_all(root.join("jsons")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(root.join("jsons/9.json"), "{}").unwrap();
        fs::write(outside.join("9.jpg"), "x").unwrap();
        symlink(&outside, root.join("images")).unwrap();
        let found = scan(&root).unwrap();
        assert!(!found.entries[0].has_jpg);
        assert_eq!(found.unread.len(), 1);
        assert_eq!(found.unread[0].path, root.join("images"));
        let w = found.unread_warnings();
        assert!(
            w[0].contains("images`: a symbolic link to a folder"),
            "{w:?}"
        );
        // Grid folders: the first few linked ones named, all counted.
        fs::remove_dir_all(root.join("jsons")).unwrap();
        fs::create_dir_all(root.join("g0")).unwrap();
        fs::write(root.join("g0/5.json"), "{}").unwrap();
        for i in 1..=UNREAD_NAMED + 2 {
            symlink(&outside, root.join(format!("g{i}"))).unwrap();
        }
        let found = scan(&root).unwrap();
        assert_eq!(found.grids, ["g0"]);
        assert_eq!(found.unread.len(), UNREAD_NAMED);
        // `images` (a link named like no grid) is not a grid folder.
        assert_eq!(found.unread_count, UNREAD_NAMED + 2);
        let w = found.unread_warnings();
        assert_eq!(w.last().unwrap(), "… and 2 more entries not read");
    }

    #[test]
    fn reads_the_old_tools_json() {
        let id = ImageId::new(42).unwrap();
        let path = || PathBuf::from("jsons/42.json");
        let old = br#"{"image_name": "42.jpg", "latitude": 52.5, "longitude": 13.4,
            "captured_at": 1563721072184, "heading": 370.0, "annotations": []}"#;
        let r = parse_record(old, id, path).unwrap();
        assert_eq!(r.id, id);
        assert_eq!(r.computed_position, crate::model::LonLat::new(13.4, 52.5));
        assert_eq!(r.computed_compass_angle, Some(10.0));
        assert!(r.captured_at.is_some());
        let none = br#"{"image_name": "42.jpg", "latitude": 0, "longitude": 0}"#;
        assert_eq!(
            parse_record(none, id, path).unwrap().computed_position,
            None
        );
        assert!(parse_record(br#"{"name": "42.jpg"}"#, id, path).is_err());
    }
    use std::fs;

    #[test]
    fn a_second_copy_of_an_id_is_a_problem() {
        let dir = tempfile::tempdir().unwrap();
        for g in ["g1", "g2"] {
            fs::create_dir_all(dir.path().join(g)).unwrap();
            fs::write(dir.path().join(g).join("7.json"), r#"{"id":"7"}"#).unwrap();
        }
        let scan = scan(dir.path()).unwrap();
        let mut chunks = 0;
        let out = read_rows(&scan, PositionSource::Computed, |rows, _, done| {
            chunks += 1;
            assert_eq!((rows.len(), done), (1, 2));
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(chunks, 1);
        assert_eq!(out.strings.get(out.rows[0].grid), Some("g1"));
        assert!(matches!(
            out.problems[..],
            [ReadError::Layers(LayersError::DuplicateId(..))]
        ));
    }

    #[test]
    fn bad_files_are_problems_not_aborts() {
        let dir = tempfile::tempdir().unwrap();
        let g = dir.path().join("g1");
        fs::create_dir_all(&g).unwrap();
        fs::write(
            g.join("1.json"),
            r#"{"id":"1","geometry":{"type":"Point","coordinates":[1,2]}}"#,
        )
        .unwrap();
        fs::write(g.join("2.json"), "{not json").unwrap();
        fs::write(g.join("3.json"), r#"{"id":"4"}"#).unwrap();
        // An oversized file is refused before it is parsed.
        let mut huge = br#"{"id":"5","x":""#.to_vec();
        huge.resize(MAX_METADATA_BYTES as usize + 10, b'a');
        huge.extend_from_slice(br#""}"#);
        fs::write(g.join("5.json"), huge).unwrap();
        // A FIFO is refused at once, instead of blocking.
        rustix::fs::mknodat(
            rustix::fs::CWD,
            g.join("6.json"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
            0,
        )
        .unwrap();
        fs::write(g.join("1.jpg"), b"x").unwrap();
        fs::write(g.join("notes.json"), b"{}").unwrap();
        let scan = scan(dir.path()).unwrap();
        assert_eq!(scan.entries.len(), 5);
        // The files the exif pass sees too (it used a second scan before).
        let id = |n| ImageId::new(n).unwrap();
        let ids: Vec<_> = [(1, true), (2, false), (3, false), (5, false), (6, false)]
            .map(|(n, jpg)| (id(n), jpg))
            .to_vec();
        assert_eq!(
            ids,
            scan.entries
                .iter()
                .map(|e| (e.id, e.has_jpg))
                .collect::<Vec<_>>()
        );
        assert_eq!(scan.json_path(&scan.entries[0]), g.join("1.json"));
        let out = read_rows(&scan, PositionSource::Computed, |_, _, _| Ok::<(), ()>(())).unwrap();
        assert_eq!(out.rows.len(), 1);
        assert_eq!(out.problems.len(), 4);
        assert!(matches!(out.problems[0], ReadError::Json { .. }));
        assert!(matches!(out.problems[1], ReadError::IdMismatch { .. }));
        assert!(
            matches!(&out.problems[2], ReadError::Io { source, .. } if source.kind() == io::ErrorKind::InvalidData),
            "{:?}",
            out.problems[2]
        );
        assert!(
            matches!(&out.problems[3], ReadError::Io { source, .. } if source.to_string().contains("FIFO")),
            "{:?}",
            out.problems[3]
        );
        assert!(read_run_record(dir.path()).unwrap().is_none());
        fs::write(dir.path().join(RUN_RECORD_FILE), "[]").unwrap();
        assert!(read_run_record(dir.path()).is_err());
        fs::write(
            dir.path().join(LISTING_FILE),
            "{\"grid\":\"g1\"}\nxx\n{\"grid\":\"g1\"}\n",
        )
        .unwrap();
        assert_eq!(read_listing_counts(dir.path()).unwrap()["g1"], 2);
        // FIFOs as the listing or the run record: refused at once, no hang.
        for name in [LISTING_FILE, RUN_RECORD_FILE] {
            fs::remove_file(dir.path().join(name)).unwrap();
            rustix::fs::mkfifoat(
                rustix::fs::CWD,
                dir.path().join(name),
                rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
            )
            .unwrap();
        }
        assert!(read_listing_counts(dir.path()).is_none());
        assert!(read_run_record(dir.path()).is_err());
    }
}
