//! `fetch`, `layers` and `read_records` for Python. Options arrive as the
//! CLI's flags (the Python layer turns keyword arguments into them), so
//! Python gets exactly the CLI's defaults, validation and messages.

use std::path::PathBuf;
use std::sync::Arc;

use mlyexport::ExitStatus;
use mlyexport::api::Client;
use mlyexport::cli::{Cli, Command};
use mlyexport::config::{FetchConfig, LayersConfig};
use mlyexport::downloads as read;
use mlyexport::fetch::{self as engine, FetchReport, Progress};
use mlyexport::model::PositionSource;
use mlyexport::record::ImageRecord;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use tokio_util::sync::CancellationToken;

use crate::errors::{self, Kind, raise};
use crate::{convert, runner};

/// Parses a full `mlyexport fetch ...` argv and validates it.
pub fn fetch_config(argv: Vec<String>) -> PyResult<FetchConfig> {
    let cli = <Cli as clap::Parser>::try_parse_from(&argv).map_err(|e| errors::clap(&e))?;
    let Command::Fetch(args) = cli.command else {
        return Err(raise(Kind::Error, "internal: not a fetch command line"));
    };
    let cwd = std::env::current_dir()
        .map_err(|e| raise(Kind::Error, format!("cannot read the current folder: {e}")))?;
    FetchConfig::from_args(*args, &|k| std::env::var(k).ok(), &cwd, argv)
        .map_err(|e| errors::config(&e))
}

fn status_name(s: ExitStatus) -> &'static str {
    match s {
        ExitStatus::Success => "success",
        ExitStatus::Partial => "partial",
        ExitStatus::Failure => "failure",
        ExitStatus::Interrupted => "interrupted",
    }
}

/// Runs `mlyexport fetch` (`argv` without the program and subcommand
/// names); returns its report as a dict.
#[pyfunction]
#[pyo3(signature = (argv, progress=None))]
pub fn fetch<'py>(
    py: Python<'py>,
    argv: Vec<String>,
    progress: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let mut full = vec!["mlyexport".to_string(), "fetch".to_string()];
    full.extend(argv);
    let cfg = fetch_config(full)?;
    let output = cfg.output.clone();
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    let counters = Arc::new(Progress::default());
    let shared = Arc::clone(&counters);
    let work = move || async move {
        let client = Arc::new(Client::new(&cfg.api).map_err(engine::FetchError::Api)?);
        engine::run(&cfg, client, shared, token).await
    };
    let watch = runner::Watch {
        callback: progress.as_ref(),
        progress: counters,
    };
    let report = runner::run(py, &cancel, Some(&watch), work)?.map_err(|e| errors::fetch(&e))?;
    if report.status == ExitStatus::Interrupted {
        return Err(pyo3::exceptions::PyKeyboardInterrupt::new_err(
            "fetch interrupted; state saved, run it again to resume",
        ));
    }
    report_dict(py, &report, output)
}

fn report_dict<'py>(
    py: Python<'py>,
    r: &FetchReport,
    output: PathBuf,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("status", status_name(r.status))?;
    d.set_item("output", output)?;
    d.set_item("dry_run", r.dry_run)?;
    d.set_item("counts", convert::serialized(py, &r.counts)?)?;
    d.set_item("grids", convert::serialized(py, &r.grids)?)?;
    d.set_item("estimated_bytes", r.estimated_bytes)?;
    d.set_item("warnings", r.warnings.clone())?;
    Ok(d)
}

/// Runs `mlyexport layers` without printing (`argv` without the program and
/// subcommand names); returns its status and summary lines.
#[pyfunction]
pub fn layers<'py>(py: Python<'py>, argv: Vec<String>) -> PyResult<Bound<'py, PyDict>> {
    let mut full = vec!["mlyexport".to_string(), "layers".to_string()];
    full.extend(argv);
    let cli = <Cli as clap::Parser>::try_parse_from(&full).map_err(|e| errors::clap(&e))?;
    let Command::Layers(args) = cli.command else {
        return Err(raise(Kind::Error, "internal: not a layers command line"));
    };
    let cfg = LayersConfig::from_args(&args).map_err(|e| errors::config(&e))?;
    let report = runner::run_blocking(py, move || mlyexport::layers::run(&cfg))?
        .map_err(|e| raise(Kind::Error, format!("{e:#}")))?;
    let (status, lines) = (report.status, report.lines);
    let d = PyDict::new(py);
    d.set_item("status", status_name(status))?;
    let summary = PyDict::new(py);
    let written = PyList::empty(py);
    for (k, v) in lines {
        if k == "wrote" {
            written.append(v)?;
        } else {
            summary.set_item(k, v)?;
        }
    }
    d.set_item("summary", summary)?;
    d.set_item("written", written)?;
    Ok(d)
}

/// One image of a downloads folder, flattened for a table.
struct Row {
    grid: String,
    record: ImageRecord,
    jpg: Option<PathBuf>,
}

/// Every image of a folder written by `fetch` (or the old tool): the rows
/// and the files that could not be read.
fn read_folder(root: PathBuf) -> Result<(Vec<Row>, Vec<String>), String> {
    let scan = read::scan(&root).map_err(|e| errors::full(&e))?;
    let mut rows = Vec::with_capacity(scan.entries.len());
    // Entries not read (a linked folder, say) are named with the problems.
    let mut problems = scan.unread_warnings();
    for e in &scan.entries {
        match read::read_record_at(&scan.json_path(e), e.id) {
            Ok(record) => rows.push(Row {
                grid: scan.grids[e.grid as usize].clone(),
                jpg: e.has_jpg.then(|| scan.jpg_path(e)),
                record,
            }),
            Err(err) => problems.push(errors::full(&err)),
        }
    }
    Ok((rows, problems))
}

/// The images of a downloads folder as column lists (`read_images` builds
/// its table from them), with the chosen position and direction.
#[pyfunction]
#[pyo3(signature = (input, position="computed"))]
pub fn read_records<'py>(
    py: Python<'py>,
    input: PathBuf,
    position: &str,
) -> PyResult<Bound<'py, PyDict>> {
    let prefer = <PositionSource as clap::ValueEnum>::from_str(position, true).map_err(|_| {
        raise(
            Kind::Config,
            format!("position `{position}` is not `computed` or `original`"),
        )
    })?;
    if !input.is_dir() {
        return Err(raise(
            Kind::Config,
            format!(
                "input folder `{}` does not exist or is not a folder; pass the folder fetch wrote",
                input.display()
            ),
        ));
    }
    let (rows, problems) =
        runner::run_blocking(py, move || read_folder(input))?.map_err(|m| raise(Kind::Error, m))?;
    columns(py, &rows, prefer, problems)
}

fn columns<'py>(
    py: Python<'py>,
    rows: &[Row],
    prefer: PositionSource,
    problems: Vec<String>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let pos: Vec<_> = rows.iter().map(|r| r.record.position(prefer)).collect();
    let col = |name: &str, v: Vec<Bound<'py, PyAny>>| -> PyResult<()> {
        d.set_item(name, PyList::new(py, v)?)
    };
    use pyo3::IntoPyObjectExt;
    macro_rules! column {
        ($name:expr, $f:expr) => {
            col(
                $name,
                rows.iter()
                    .zip(&pos)
                    .map(|(r, p)| $f(r, p).into_bound_py_any(py))
                    .collect::<PyResult<Vec<_>>>()?,
            )?
        };
    }
    type P = Option<(mlyexport::model::LonLat, PositionSource)>;
    column!("id", |r: &Row, _: &P| r.record.id.to_string());
    column!("grid", |r: &Row, _: &P| r.grid.clone());
    column!("lon", |_: &Row, p: &P| p.map(|(l, _)| l.lon));
    column!("lat", |_: &Row, p: &P| p.map(|(l, _)| l.lat));
    column!("position_source", |_: &Row, p: &P| p
        .map(|(_, s)| source(s)));
    column!("captured_at", |r: &Row, _: &P| r.record.captured_at);
    column!("compass_angle", |r: &Row, p: &P| heading(&r.record, p));
    column!("sequence", |r: &Row, _: &P| r.record.sequence.clone());
    column!("is_pano", |r: &Row, _: &P| r.record.is_pano);
    column!("camera_type", |r: &Row, _: &P| r.record.camera_type.clone());
    column!("make", |r: &Row, _: &P| r.record.make.clone());
    column!("model", |r: &Row, _: &P| r.record.model.clone());
    column!("creator", |r: &Row, _: &P| r
        .record
        .creator_username
        .clone());
    column!("organization_id", |r: &Row, _: &P| r
        .record
        .organization_id
        .clone());
    column!("width", |r: &Row, _: &P| r.record.width);
    column!("height", |r: &Row, _: &P| r.record.height);
    column!("file", |r: &Row, _: &P| r.jpg.clone());
    d.set_item("problems", problems)?;
    Ok(d)
}

fn source(s: PositionSource) -> &'static str {
    match s {
        PositionSource::Computed => "computed",
        PositionSource::Original => "original",
    }
}

/// The direction matching the position used.
fn heading(r: &ImageRecord, p: &Option<(mlyexport::model::LonLat, PositionSource)>) -> Option<f64> {
    match p {
        Some((_, PositionSource::Computed)) => r.computed_compass_angle.or(r.compass_angle),
        _ => r.compass_angle.or(r.computed_compass_angle),
    }
}
