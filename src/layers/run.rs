//! The `layers` engine: runs the EXIF pass, reads the folder on rayon
//! ([`crate::downloads`]) while one thread writes the GeoPackage (every GDAL
//! call on that thread, in one transaction), builds the sequences and coverage
//! (pure modules), then writes each other format to a temp name and renames
//! it into place. [`run`] is the library's entry point (prints nothing);
//! `commands::layers` wires it to the terminal. Prints only through
//! `Reporter`; never writes inside the input's grid folders.

use crate::aoi::Aoi;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};

use crate::ExitStatus;
use crate::config::{LayersConfig, OutputFormat};
use crate::coverage;
use crate::downloads::{self as read, InputLayout, ReadError};
use crate::layers::postgis::PgTarget;
use crate::layers::{
    self, FileLayout, GridInfo, ImageRow, Interner, LayerSet, SequenceLine, extent, gpkg,
    sequence_lines, source_name,
};
use crate::lock::FolderLock;
use crate::model::PositionSource;
use crate::report::Reporter;
use crate::rows::CellCoverage;
use crate::runrecord::RunEntry;
use crate::runrecord::RunRecord;
use crate::store::{self, TEMP_PREFIX};

/// File name of the GeoPackage inside the output folder.
pub(crate) const GPKG_FILE: &str = "mapillary.gpkg";
/// File name of the HTML report inside the output folder.
pub(crate) const HTML_FILE: &str = "report.html";

/// Problems printed one by one before the rest are only counted.
const SHOWN_PROBLEMS: usize = 20;

/// What a `layers` run did: how it ended and the summary lines the command
/// prints (`key`, `value`; one `wrote` line per file written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayersReport {
    /// `Success`, or `Partial` when files were skipped.
    pub status: ExitStatus,
    /// The summary, in order.
    pub lines: Vec<(String, String)>,
}

/// Runs `mlyexport layers` with `cfg`, printing nothing: the library's (and
/// the Python module's) entry point. Takes the folder locks as the command does.
pub fn run(cfg: &LayersConfig) -> anyhow::Result<LayersReport> {
    run_with(cfg, &Reporter::new(true))
}

/// The input folder's lock, and the output folder's when it is another.
struct Locks {
    input: FolderLock,
    output: Option<FolderLock>,
}

impl Locks {
    /// The EXIF pass rewrites the input's JPEGs: both folders are ours alone.
    fn acquire(cfg: &LayersConfig) -> anyhow::Result<Self> {
        let input = FolderLock::acquire(&cfg.input, "layers")?;
        let output = if same_folder(&cfg.input, &cfg.output) {
            None
        } else {
            Some(FolderLock::acquire(&cfg.output, "layers")?)
        };
        Ok(Self { input, output })
    }
}

/// `run`, reporting through `reporter`.
pub(crate) fn run_with(cfg: &LayersConfig, reporter: &Reporter) -> anyhow::Result<LayersReport> {
    let locks = Locks::acquire(cfg)?;
    if let Some(target) = &cfg.pg {
        // Fail in a second on a wrong --pg, before the EXIF pass and the reading.
        layers::pg_sink::check(target)?;
    }
    let scan = scan_input(&cfg.input, reporter)?;
    let mut status = ExitStatus::Success;
    if scan.unread_count > 0 {
        status = ExitStatus::Partial;
    }
    let exif_lines = exif_stage(cfg, &scan, &locks.input, reporter, &mut status)?;
    let run_record = match read::read_run_record_noting(&cfg.input) {
        Ok((r, missing)) => {
            for m in &missing {
                reporter.warn(m);
            }
            if !missing.is_empty() {
                status = ExitStatus::Partial;
            }
            r
        }
        Err(e) => {
            reporter.warn(&format!("{e}; coverage without listing figures"));
            status = ExitStatus::Partial;
            None
        }
    };
    let as_of = cfg
        .as_of
        .or_else(|| run_record.as_ref().and_then(last_run_time))
        .unwrap_or_else(today);
    let output = &cfg.output;
    fs::create_dir_all(output)
        .with_context(|| format!("cannot create the output folder `{}`", output.display()))?;
    locks
        .output
        .as_ref()
        .unwrap_or(&locks.input)
        .remove_stale_temp_files();
    let total = scan.entries.len();
    let aoi = run_record
        .as_ref()
        .and_then(|r| r.request.area.aoi.as_ref())
        .and_then(|a| aoi_shape(&a.geometry));
    let unread_line = scan.unread_line();
    let inputs = Inputs {
        file_layout: file_layout(&scan),
        scan,
        position: cfg.position,
        run_record,
        as_of,
    };
    let (set, problems, gpkg_done) = read_stage(cfg, inputs, reporter)?;
    if !problems.is_empty() {
        status = ExitStatus::Partial;
    }
    let mut written = write_formats(cfg, &set, aoi.as_ref(), as_of, gpkg_done)?;
    written.extend(write_coverage(cfg, &set, as_of)?);
    let mut lines = summary_lines(&set, total, &problems, &written, output);
    lines.extend(unread_line);
    if let Some(target) = &cfg.pg {
        let schema = format!("PostGIS tables in schema `{}`", target.schema());
        lines.push(("wrote".into(), schema));
    }
    lines.extend(exif_lines);
    Ok(LayersReport { status, lines })
}

/// The one scan of the input folder, its entries not read named through
/// `reporter`; an error when it holds no metadata.
fn scan_input(input: &Path, reporter: &Reporter) -> anyhow::Result<read::Scan> {
    let scan = read::scan(input)
        .with_context(|| format!("cannot list the images in `{}`", input.display()))?;
    for w in scan.unread_warnings() {
        reporter.warn(&w);
    }
    if scan.entries.is_empty() {
        bail!(
            "nothing to read in `{}`: no image metadata found; expected `<grid>/<id>.json` files \
             (as `mlyexport fetch` writes them) or `jsons/<id>.json` (the old Python tool)",
            input.display()
        );
    }
    Ok(scan)
}

/// Where the JPEGs of a scanned folder are.
fn file_layout(scan: &read::Scan) -> FileLayout {
    match (scan.layout, scan.segments) {
        (InputLayout::Mlyexport, _) => FileLayout::Grid,
        (InputLayout::Legacy, false) => FileLayout::Legacy,
        (InputLayout::Legacy, true) => FileLayout::LegacySegments,
    }
}

/// The EXIF pass (unless `--no-exif`, or the old tool's folder): its
/// summary lines, prefixed `exif `; `status` becomes `Partial` when it
/// skipped files.
fn exif_stage(
    cfg: &LayersConfig,
    scan: &read::Scan,
    input_lock: &FolderLock,
    reporter: &Reporter,
    status: &mut ExitStatus,
) -> anyhow::Result<Vec<(String, String)>> {
    if !cfg.exif {
        return Ok(Vec::new());
    }
    if scan.layout == InputLayout::Legacy {
        reporter.info("the old tool's folder: its JPEGs are left as they are (no EXIF pass); run `mlyexport adopt` first to convert it");
        return Ok(Vec::new());
    }
    let summary = crate::exif::pass::embed_folder(input_lock, scan, cfg.position, reporter)?;
    if summary.status() != ExitStatus::Success {
        *status = ExitStatus::Partial;
    }
    Ok(summary
        .lines()
        .into_iter()
        .map(|(k, v)| (format!("exif {k}"), v))
        .collect())
}

/// Reads on rayon while one thread writes the GeoPackage's images as they
/// come (when asked for); removes the temp GeoPackage on error. Returns the
/// layer set, the problems, and whether the GeoPackage was committed.
fn read_stage(
    cfg: &LayersConfig,
    inputs: Inputs,
    reporter: &Reporter,
) -> anyhow::Result<(LayerSet, Vec<ReadError>, bool)> {
    reporter.info(&format!(
        "reading {} metadata files in `{}`",
        inputs.scan.entries.len(),
        cfg.input.display()
    ));
    let total = inputs.scan.entries.len();
    let (file_layout, as_of) = (inputs.file_layout, inputs.as_of);
    let gpkg_tmp = gpkg_temp(cfg);
    let want_gpkg = cfg.formats.contains(&OutputFormat::Gpkg);
    let result = std::thread::scope(|scope| {
        let writer = (want_gpkg || cfg.pg.is_some()).then(|| {
            let (tx, rx) = mpsc::sync_channel::<ToWriter>(2);
            let gpkg = want_gpkg.then(|| gpkg_tmp.clone());
            let pg = cfg.pg.as_ref();
            let handle = scope
                .spawn(move || writer_thread(gpkg.as_deref(), pg, file_layout, as_of, total, rx));
            (tx, handle)
        });
        build_and_stream(inputs, reporter, writer)
    });
    if result.is_err() {
        let _ = fs::remove_file(&gpkg_tmp);
    }
    result
}

fn gpkg_temp(cfg: &LayersConfig) -> PathBuf {
    cfg.output.join(format!("{TEMP_PREFIX}{GPKG_FILE}"))
}

/// Writes every format asked for (the GeoPackage: renamed into place);
/// returns the paths written.
fn write_formats(
    cfg: &LayersConfig,
    set: &LayerSet,
    aoi: Option<&geo::MultiPolygon<f64>>,
    as_of: DateTime<Utc>,
    gpkg_done: bool,
) -> anyhow::Result<Vec<PathBuf>> {
    let output = &cfg.output;
    let mut written = Vec::new();
    for &format in &cfg.formats {
        match format {
            OutputFormat::Gpkg if gpkg_done => {
                let (tmp, path) = (gpkg_temp(cfg), output.join(GPKG_FILE));
                fs::rename(&tmp, &path).with_context(|| {
                    format!("cannot rename `{}` to `{}`", tmp.display(), path.display())
                })?;
                written.push(path);
            }
            OutputFormat::Gpkg => {}
            // Written and committed by the writer thread.
            OutputFormat::Postgis => {}
            OutputFormat::Geojson => {
                use layers::geojson as gj;
                written.push(write_stream(output, "images.geojson", |w| {
                    gj::write_images(set, w)
                })?);
                written.push(write_stream(output, "sequences.geojson", |w| {
                    gj::write_sequences(set, w)
                })?);
                written.push(write_stream(output, "grid_cells.geojson", |w| {
                    gj::write_grid_cells(set, w)
                })?);
            }
            OutputFormat::Csv => {
                written.push(write_stream(output, "images.csv", |w| {
                    layers::csv::write_images_csv(set, w)
                })?);
            }
            OutputFormat::Html => {
                let page = layers::html::render(&layers::html::Report {
                    set,
                    aoi,
                    as_of,
                    position: source_name(cfg.position),
                    version: env!("CARGO_PKG_VERSION"),
                });
                written.push(write_stream(output, HTML_FILE, |w| {
                    w.write_all(page.as_bytes())
                })?);
            }
        }
    }
    Ok(written)
}

/// Writes `coverage.csv`, `coverage.json` and `coverage.md`.
fn write_coverage(
    cfg: &LayersConfig,
    set: &LayerSet,
    as_of: DateTime<Utc>,
) -> anyhow::Result<Vec<PathBuf>> {
    let source = source_name(cfg.position);
    let coverage_json = coverage::to_json(&set.cells, as_of, source)?;
    let mut written = Vec::new();
    for (name, bytes) in [
        ("coverage.csv", coverage::to_csv(&set.cells)),
        ("coverage.json", coverage_json),
        ("coverage.md", coverage::to_markdown(&set.cells, as_of)),
    ] {
        written.push(write_stream(&cfg.output, name, |w| w.write_all(&bytes))?);
    }
    Ok(written)
}

/// Whether two paths name one existing folder.
fn same_folder(a: &Path, b: &Path) -> bool {
    matches!((fs::canonicalize(a), fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y)
}

/// When the last fetch run finished (or started, when it did not finish).
fn last_run_time(r: &RunRecord) -> Option<DateTime<Utc>> {
    let last = r.runs.last()?;
    Some(last.finished_at.unwrap_or(last.started_at))
}

/// Today's UTC midnight: the reference without a run record, stable within a day.
fn today() -> DateTime<Utc> {
    Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .map_or_else(Utc::now, |t| t.and_utc())
}

/// The study-area polygon a run record keeps (GeoJSON), when it parses.
fn aoi_of(geometry: &serde_json::Value) -> Option<Aoi> {
    Aoi::new(aoi_shape(geometry)?, "run record".into()).ok()
}

/// The polygon of a run record's study area (GeoJSON), when it parses.
fn aoi_shape(geometry: &serde_json::Value) -> Option<geo::MultiPolygon<f64>> {
    let g = geojson::Geometry::from_json_value(geometry.clone()).ok()?;
    let shape: geo::Geometry<f64> = g.value.try_into().ok()?;
    match shape {
        geo::Geometry::MultiPolygon(mp) => Some(mp),
        geo::Geometry::Polygon(p) => Some(geo::MultiPolygon(vec![p])),
        _ => None,
    }
}

/// The grid cells: the run record's, in grid order, then any folder found on
/// disk but not in the record (its box is the extent of its images).
fn grid_infos(
    layout: InputLayout,
    record: Option<&RunRecord>,
    listing: Option<&BTreeMap<String, u64>>,
    rows: &[ImageRow],
    strings: &Interner,
    legacy: Option<&LegacyGrids>,
) -> Vec<GridInfo> {
    let mut infos = record.map(recorded_grids).unwrap_or_default();
    let mut extra: BTreeMap<&str, Vec<_>> = BTreeMap::new();
    let known: HashMap<&str, ()> = infos.iter().map(|g| (g.grid.as_str(), ())).collect();
    for r in rows {
        let g = strings.get(r.grid).unwrap_or("");
        if !known.contains_key(g) {
            let v = extra.entry(g).or_default();
            v.extend(r.position());
        }
    }
    if let Some(l) = legacy {
        let segments = l.boxes.iter().flat_map(|b| b.keys());
        for g in l.broken.keys().chain(segments) {
            if !known.contains_key(g.as_str()) {
                extra.entry(g.as_str()).or_default();
            }
        }
    }
    let is_legacy = layout == InputLayout::Legacy;
    let extra: Vec<GridInfo> = extra
        .into_iter()
        .map(|(g, points)| GridInfo {
            grid: g.to_string(),
            bbox: match legacy {
                // The old tool's segments: boxes from its segments file, or unknown.
                Some(l) => l.boxes.as_ref().and_then(|b| b.get(g).copied()),
                None => extent(points.into_iter()),
            },
            shape: None,
            listing: "unknown",
            listed: listing.and_then(|l| l.get(g).copied()),
            failed: match legacy {
                Some(l) => Some(l.broken.get(g).copied().unwrap_or(0)),
                None => (!is_legacy && record.is_some()).then_some(0),
            },
        })
        .collect();
    infos.extend(extra);
    infos
}

/// The grid cells of a run record, clipped to its study area when it has one.
fn recorded_grids(r: &RunRecord) -> Vec<GridInfo> {
    let aoi = r
        .request
        .area
        .aoi
        .as_ref()
        .and_then(|a| aoi_of(&a.geometry));
    r.grids
        .iter()
        .map(|g| GridInfo {
            grid: g.grid.clone(),
            bbox: Some(g.bbox),
            shape: aoi.as_ref().map(|a| a.clip_box(&g.bbox)),
            listing: g.listing.label(),
            listed: Some(g.listed),
            failed: Some(g.failed),
        })
        .collect()
}

/// What the old tool's folder tells about its segments.
struct LegacyGrids {
    /// Boxes from `study_area_segments.txt`, when it is there and parses.
    boxes: Option<BTreeMap<String, crate::model::Bbox>>,
    /// Broken JPEGs per segment (counted as failed in the coverage).
    broken: BTreeMap<String, u64>,
}

fn broken_per_grid(problems: &[ReadError]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for p in problems {
        if let ReadError::BrokenJpeg { grid, .. } = p {
            *out.entry(grid.clone()).or_insert(0) += 1;
        }
    }
    out
}

fn report_problems(reporter: &Reporter, problems: &[ReadError]) {
    for p in problems.iter().take(SHOWN_PROBLEMS) {
        reporter.warn(&format!("skipped: {p}"));
    }
    if problems.len() > SHOWN_PROBLEMS {
        reporter.warn(&format!(
            "skipped {} more metadata files (not shown)",
            problems.len() - SHOWN_PROBLEMS
        ));
    }
}

/// Writes `dir/name` atomically through [`store::atomic_write_with`] and
/// returns its path: an interrupted run leaves the old file or a temp file.
fn write_stream(
    dir: &Path,
    name: &str,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    store::atomic_write_with(&path, write)?;
    Ok(path)
}

/// What the reading stage needs.
struct Inputs {
    scan: read::Scan,
    position: PositionSource,
    run_record: Option<RunRecord>,
    as_of: DateTime<Utc>,
    file_layout: FileLayout,
}

/// Messages to the GeoPackage thread.
enum ToWriter {
    /// Strings interned since the last batch, then the batch's rows.
    Images {
        strings: Vec<Box<str>>,
        rows: Vec<ImageRow>,
    },
    /// Everything else; the thread writes it, commits and hands it back.
    Finish(Finished),
}

/// The layers written after the images.
struct Finished {
    sequences: Vec<SequenceLine>,
    cells: Vec<CellCoverage>,
    runs: Vec<RunEntry>,
}

type WriterHandle<'s> = std::thread::ScopedJoinHandle<'s, anyhow::Result<Option<Finished>>>;
type Writer<'s> = (mpsc::SyncSender<ToWriter>, WriterHandle<'s>);

const GPKG_FAILED: &str = "cannot write the GeoPackage";
const PG_FAILED: &str = "cannot write the PostGIS tables";

/// The writer thread: every GDAL call happens here, the GeoPackage (at
/// `gpkg`) and the PostGIS tables (at `pg`) each in one transaction.
/// Returns what `Finish` brought (moved there and back rather than copied)
/// once committed, `Ok(None)` when the reader stopped before `Finish`
/// (nothing committed; the caller removes the temp file).
fn writer_thread(
    gpkg: Option<&Path>,
    pg: Option<&PgTarget>,
    layout: FileLayout,
    as_of: DateTime<Utc>,
    images: usize,
    rx: mpsc::Receiver<ToWriter>,
) -> anyhow::Result<Option<Finished>> {
    // A killed run's temp GeoPackage and journal went with the other temp files.
    let mut g = gpkg
        .map(|tmp| gpkg::create(tmp, layout, as_of))
        .transpose()
        .context(GPKG_FAILED)?;
    if let Some(g) = &mut g {
        g.reserve(images);
    }
    let mut p = pg
        .map(|t| layers::pg_sink::PgWrite::start(t, layout))
        .transpose()
        .context(PG_FAILED)?;
    for msg in rx {
        match msg {
            ToWriter::Images { strings, rows } => {
                if let Some(g) = &mut g {
                    g.add_strings(&strings);
                    g.write_images(&rows).context(GPKG_FAILED)?;
                }
                if let Some(p) = &mut p {
                    p.add_strings(&strings);
                    p.write_images(&rows).context(PG_FAILED)?;
                }
            }
            ToWriter::Finish(done) => {
                if let Some(g) = g {
                    (g.finish(&done.sequences, &done.cells, &done.runs)).context(GPKG_FAILED)?;
                }
                if let Some(p) = p {
                    (p.finish(&done.sequences, &done.cells, &done.runs)).context(PG_FAILED)?;
                }
                return Ok(Some(done));
            }
        }
    }
    Ok(None)
}

/// Waits for the writer thread: what it handed back, or why it failed.
fn join_writer(handle: WriterHandle<'_>) -> anyhow::Result<Option<Finished>> {
    match handle.join() {
        Ok(result) => result,
        Err(_) => bail!("the layers writer thread panicked"),
    }
}

/// Reads the rows (sending each batch to the GeoPackage thread, if any),
/// reports the problems, builds the sequences and coverage, and lets the
/// GeoPackage thread finish. Returns the layer set, the problems, and whether
/// the GeoPackage was committed.
fn build_and_stream(
    inputs: Inputs,
    reporter: &Reporter,
    writer: Option<Writer<'_>>,
) -> anyhow::Result<(LayerSet, Vec<ReadError>, bool)> {
    let Inputs {
        scan,
        position,
        run_record,
        as_of,
        file_layout,
    } = inputs;
    let total = scan.entries.len();
    let (tx, handle) = match writer {
        Some((tx, h)) => (Some(tx), Some(h)),
        None => (None, None),
    };
    let tty = reporter.is_tty();
    let mut sent = 0;
    let outcome = read::read_rows(&scan, position, |rows, strings, done| -> Result<(), ()> {
        if tty && (done == total || done % 65_536 == 0) {
            reporter.info(&format!("  read {done}/{total}"));
        }
        if let Some(tx) = &tx {
            let batch = ToWriter::Images {
                strings: strings.strings_from(sent).to_vec(),
                rows: rows.to_vec(),
            };
            sent = strings.len();
            tx.send(batch).map_err(|_| ())?;
        }
        Ok(())
    });
    let Ok(outcome) = outcome else {
        drop(tx);
        return Err(match handle.map(join_writer) {
            Some(Err(e)) => e,
            _ => anyhow::anyhow!("the GeoPackage writer stopped early"),
        });
    };
    let read::ReadOutcome {
        rows,
        strings,
        problems,
    } = outcome;
    report_problems(reporter, &problems);
    if rows.is_empty() {
        bail!(
            "nothing to read in `{}`: none of its {total} metadata files could be used (see the warnings above)",
            scan.root.display()
        );
    }
    let grids = grids_of(&scan, run_record.as_ref(), &rows, &strings, &problems);
    drop(scan);
    let done = Finished {
        cells: coverage::compute(&grids, &rows, &strings, as_of),
        sequences: sequence_lines(&rows, &strings),
        runs: run_record.map(|r| r.runs).unwrap_or_default(),
    };
    let (done, committed) = match (tx, handle) {
        (Some(tx), Some(handle)) => (finish_writer(tx, handle, done)?, true),
        _ => (done, false),
    };
    let set = LayerSet {
        rows,
        strings,
        layout: file_layout,
        sequences: done.sequences,
        cells: done.cells,
        runs: done.runs,
    };
    Ok((set, problems, committed))
}

/// The grid cells of the folder (see [`grid_infos`]), with the listing's
/// counts when there is no run record, and the old tool's segment boxes and
/// broken JPEGs.
fn grids_of(
    scan: &read::Scan,
    run_record: Option<&RunRecord>,
    rows: &[ImageRow],
    strings: &Interner,
    problems: &[ReadError],
) -> Vec<GridInfo> {
    let listing = if run_record.is_none() {
        read::read_listing_counts(&scan.root)
    } else {
        None
    };
    let legacy = (scan.layout == InputLayout::Legacy).then(|| LegacyGrids {
        boxes: read::read_segment_boxes(&scan.root),
        broken: broken_per_grid(problems),
    });
    grid_infos(
        scan.layout,
        run_record,
        listing.as_ref(),
        rows,
        strings,
        legacy.as_ref(),
    )
}

/// Hands the last layers to the GeoPackage thread and waits for its commit;
/// returns them back.
fn finish_writer(
    tx: mpsc::SyncSender<ToWriter>,
    handle: WriterHandle<'_>,
    done: Finished,
) -> anyhow::Result<Finished> {
    let sent = tx.send(ToWriter::Finish(done)).is_ok();
    drop(tx);
    match join_writer(handle)? {
        Some(back) if sent => Ok(back),
        _ => bail!("the GeoPackage writer stopped before committing"),
    }
}

fn summary_lines(
    set: &LayerSet,
    files: usize,
    problems: &[ReadError],
    written: &[PathBuf],
    output: &Path,
) -> Vec<(String, String)> {
    let drawn = set.drawn().count();
    let without = set.rows.len() - drawn;
    let computed = set
        .drawn()
        .filter(|r| r.source == PositionSource::Computed)
        .count();
    let l = |k: &str, v: String| (k.to_string(), v);
    let mut lines = vec![
        l("metadata files", files.to_string()),
        l("skipped (unreadable)", problems.len().to_string()),
        l("images", set.rows.len().to_string()),
        l("drawn", drawn.to_string()),
        l("without position (counted, not drawn)", without.to_string()),
        l(
            "position from",
            format!("computed {computed}, original {}", drawn - computed),
        ),
        l("sequences", set.sequences.len().to_string()),
        l("grid cells", set.cells.len().to_string()),
        l("output", output.display().to_string()),
    ];
    for p in written {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        lines.push(l("wrote", name));
    }
    lines
}
