//! `mlyexport layers`: wiring only. Runs the EXIF pass, reads the folder on
//! rayon (`layers::read`) while one thread writes the GeoPackage (every GDAL
//! call on that thread, in one transaction), builds the sequences and coverage
//! (pure modules), then writes each other format to a temp name and renames
//! it into place. Prints only through `Reporter`; never writes inside the
//! input's grid folders.

use crate::aoi::Aoi;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDate, Utc};

use crate::ExitStatus;
use crate::cli::{LayerFormat, LayersArgs};
use crate::coverage;
use crate::coverage::CellCoverage;
use crate::layers::ogr::OgrError;
use crate::layers::read::{self, ReadError};
use crate::layers::{
    self, FileLayout, GridInfo, ImageRow, Interner, LayerSet, SequenceLine, extent, gpkg,
    sequence_lines, source_name,
};
use crate::lock::FolderLock;
use crate::model::PositionSource;
use crate::report::Reporter;
use crate::runrecord::RunEntry;
use crate::runrecord::RunRecord;
use crate::store::{self, InputLayout, TEMP_PREFIX};

/// File name of the GeoPackage inside the output folder.
pub(crate) const GPKG_FILE: &str = "mapillary.gpkg";
/// File name of the HTML report inside the output folder.
pub(crate) const HTML_FILE: &str = "report.html";

/// Problems printed one by one before the rest are only counted.
const SHOWN_PROBLEMS: usize = 20;

pub(crate) fn run(args: LayersArgs) -> anyhow::Result<ExitStatus> {
    let reporter = Reporter::new(args.quiet);
    let (status, lines) = run_with(args, &reporter)?;
    reporter.summary(&lines);
    Ok(status)
}

/// `layers` printing nothing (for library callers such as the Python
/// module): its status and the summary lines the command would print.
pub fn run_quiet(args: LayersArgs) -> anyhow::Result<(ExitStatus, Vec<(String, String)>)> {
    run_with(args, &Reporter::new(true))
}

fn run_with(
    args: LayersArgs,
    reporter: &Reporter,
) -> anyhow::Result<(ExitStatus, Vec<(String, String)>)> {
    let input = args.input.clone();
    if !input.is_dir() {
        bail!(
            "input folder `{}` does not exist or is not a folder; pass the folder `mlyexport fetch` wrote with --input",
            input.display()
        );
    }
    let output = args.output.clone().unwrap_or_else(|| input.join("layers"));
    // The EXIF pass rewrites the input's JPEGs: both folders are ours alone.
    let input_lock = FolderLock::acquire(&input, "layers")?;
    let output_lock = if same_folder(&input, &output) {
        None
    } else {
        Some(FolderLock::acquire(&output, "layers")?)
    };
    let as_of_flag = args.as_of.as_deref().map(parse_as_of).transpose()?;

    let scan = read::scan(&input)
        .with_context(|| format!("cannot list the images in `{}`", input.display()))?;
    let layout = scan.layout;
    if scan.entries.is_empty() {
        bail!(
            "nothing to read in `{}`: no image metadata found; expected `<grid>/<id>.json` files \
             (as `mlyexport fetch` writes them) or `jsons/<id>.json` (the old Python tool)",
            input.display()
        );
    }

    let mut status = ExitStatus::Success;
    let mut exif_lines = Vec::new();
    if layout == InputLayout::Legacy && !args.no_exif {
        reporter.info("the old tool's folder: its JPEGs are left as they are (no EXIF pass); run `mlyexport adopt` first to convert it");
    } else if !args.no_exif {
        let summary = crate::commands::exif::embed_folder(&input_lock, args.position, reporter)?;
        if summary.status() != ExitStatus::Success {
            status = ExitStatus::Partial;
        }
        exif_lines = summary
            .lines()
            .into_iter()
            .map(|(k, v)| (format!("exif {k}"), v))
            .collect();
    }

    let run_record = match read::read_run_record_noting(&input) {
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
    let as_of = as_of_flag
        .or_else(|| run_record.as_ref().and_then(last_run_time))
        .unwrap_or_else(today);
    let file_layout = match (layout, scan.segments) {
        (InputLayout::Mlyexport, _) => FileLayout::Grid,
        (InputLayout::Legacy, false) => FileLayout::Legacy,
        (InputLayout::Legacy, true) => FileLayout::LegacySegments,
    };
    let formats = dedup_formats(&args.format);
    fs::create_dir_all(&output)
        .with_context(|| format!("cannot create the output folder `{}`", output.display()))?;
    store::remove_stale_temp_files_locked(output_lock.as_ref().unwrap_or(&input_lock));

    reporter.info(&format!(
        "reading {} metadata files in `{}`",
        scan.entries.len(),
        input.display()
    ));
    let total = scan.entries.len();
    let gpkg_tmp = output.join(format!("{TEMP_PREFIX}{GPKG_FILE}"));
    let want_gpkg = formats.contains(&LayerFormat::Gpkg);
    let aoi = run_record
        .as_ref()
        .and_then(|r| r.request.area.aoi.as_ref())
        .and_then(|a| aoi_shape(&a.geometry));
    let inputs = Inputs {
        scan,
        position: args.position,
        run_record,
        as_of,
        file_layout,
    };
    // Read on rayon while one thread writes the GeoPackage's images as they come.
    let result = std::thread::scope(|scope| {
        let writer = want_gpkg.then(|| {
            let (tx, rx) = mpsc::sync_channel::<ToWriter>(2);
            let tmp = gpkg_tmp.clone();
            let handle = scope.spawn(move || gpkg_thread(&tmp, file_layout, as_of, total, rx));
            (tx, handle)
        });
        build_and_stream(inputs, reporter, writer)
    });
    let (set, problems, gpkg_done) = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = fs::remove_file(&gpkg_tmp);
            return Err(e);
        }
    };
    if !problems.is_empty() {
        status = ExitStatus::Partial;
    }

    let mut written = Vec::new();
    for format in formats {
        match format {
            LayerFormat::Gpkg => {
                let path = output.join(GPKG_FILE);
                if gpkg_done {
                    fs::rename(&gpkg_tmp, &path).with_context(|| {
                        format!(
                            "cannot rename `{}` to `{}`",
                            gpkg_tmp.display(),
                            path.display()
                        )
                    })?;
                    written.push(path);
                }
            }
            LayerFormat::Geojson => {
                use layers::geojson as gj;
                written.push(write_stream(&output, "images.geojson", |w| {
                    gj::write_images(&set, w)
                })?);
                written.push(write_stream(&output, "sequences.geojson", |w| {
                    gj::write_sequences(&set, w)
                })?);
                written.push(write_stream(&output, "grid_cells.geojson", |w| {
                    gj::write_grid_cells(&set, w)
                })?);
            }
            LayerFormat::Csv => {
                written.push(write_stream(&output, "images.csv", |w| {
                    layers::csv::write_images_csv(&set, w)
                })?);
            }
            LayerFormat::Html => {
                let page = layers::html::render(&layers::html::Report {
                    set: &set,
                    aoi: aoi.as_ref(),
                    as_of,
                    position: source_name(args.position),
                    version: env!("CARGO_PKG_VERSION"),
                });
                written.push(write_stream(&output, HTML_FILE, |w| {
                    w.write_all(page.as_bytes())
                })?);
            }
        }
    }
    let source = source_name(args.position);
    let coverage_json = coverage::to_json(&set.cells, as_of, source)?;
    for (name, bytes) in [
        ("coverage.csv", coverage::to_csv(&set.cells)),
        ("coverage.json", coverage_json),
        ("coverage.md", coverage::to_markdown(&set.cells, as_of)),
    ] {
        written.push(write_stream(&output, name, |w| w.write_all(&bytes))?);
    }

    let mut lines = summary_lines(&set, total, &problems, &written, &output);
    lines.extend(exif_lines);
    Ok((status, lines))
}

/// Whether two paths name one existing folder.
fn same_folder(a: &Path, b: &Path) -> bool {
    matches!((fs::canonicalize(a), fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y)
}

fn dedup_formats(formats: &[LayerFormat]) -> Vec<LayerFormat> {
    let mut out = Vec::new();
    for f in formats {
        if !out.contains(f) {
            out.push(*f);
        }
    }
    out
}

/// Parses `--as-of`: a date (its UTC midnight) or an RFC 3339 time.
fn parse_as_of(s: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .with_context(|| {
            format!(
                "--as-of `{s}` is neither a date (2024-06-01) nor a UTC time (2024-06-01T12:00:00Z)"
            )
        })
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
    let mut infos: Vec<GridInfo> = record
        .map(|r| {
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
        })
        .unwrap_or_default();
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

type Writer<'s> = (
    mpsc::SyncSender<ToWriter>,
    std::thread::ScopedJoinHandle<'s, Result<Option<Finished>, OgrError>>,
);

/// The GeoPackage thread: every GDAL call happens here, in one transaction.
/// Returns what `Finish` brought (moved there and back rather than copied)
/// once committed, `Ok(None)` when the reader stopped before `Finish`
/// (nothing committed; the caller removes the temp file).
fn gpkg_thread(
    tmp: &Path,
    layout: FileLayout,
    as_of: DateTime<Utc>,
    images: usize,
    rx: mpsc::Receiver<ToWriter>,
) -> Result<Option<Finished>, OgrError> {
    // A killed run's temp GeoPackage and journal went with the other temp files.
    let mut g = gpkg::create(tmp, layout, as_of)?;
    g.reserve(images);
    for msg in rx {
        match msg {
            ToWriter::Images { strings, rows } => {
                g.add_strings(&strings);
                g.write_images(&rows)?;
            }
            ToWriter::Finish(done) => {
                g.finish(&done.sequences, &done.cells, &done.runs)?;
                return Ok(Some(done));
            }
        }
    }
    Ok(None)
}

/// Waits for the GeoPackage thread: what it handed back, or why it failed.
fn join_writer(
    handle: std::thread::ScopedJoinHandle<'_, Result<Option<Finished>, OgrError>>,
) -> anyhow::Result<Option<Finished>> {
    match handle.join() {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(e)) => Err(e).context("cannot write the GeoPackage"),
        Err(_) => bail!("the GeoPackage writer thread panicked"),
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
    let listing = if run_record.is_none() {
        read::read_listing_counts(&scan.root)
    } else {
        None
    };
    let legacy = (scan.layout == InputLayout::Legacy).then(|| LegacyGrids {
        boxes: read::read_segment_boxes(&scan.root),
        broken: broken_per_grid(&problems),
    });
    let grids = grid_infos(
        scan.layout,
        run_record.as_ref(),
        listing.as_ref(),
        &rows,
        &strings,
        legacy.as_ref(),
    );
    drop(scan);
    let mut done = Finished {
        cells: coverage::compute(&grids, &rows, &strings, as_of),
        sequences: sequence_lines(&rows, &strings),
        runs: run_record.map(|r| r.runs).unwrap_or_default(),
    };
    let mut committed = false;
    if let (Some(tx), Some(handle)) = (tx, handle) {
        let sent = tx.send(ToWriter::Finish(done)).is_ok();
        drop(tx);
        match join_writer(handle)? {
            Some(back) if sent => {
                done = back;
                committed = true;
            }
            _ => bail!("the GeoPackage writer stopped before committing"),
        }
    }
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
