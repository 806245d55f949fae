//! `mlyexport._core.Client`: one API client (token, URLs, rate limits)
//! reused by every call, configured exactly like `mlyexport fetch`.

use std::path::PathBuf;
use std::sync::Arc;

use mlyexport::api::Client;
use mlyexport::api::TilesConfig;
use mlyexport::config::FetchConfig;
use mlyexport::fetch::{self, BboxSearch, Progress};
use mlyexport::model::{ImageId, ThumbSize};
use mlyexport::record::ImageRecord;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::commands::fetch_config;
use crate::errors::{self, Kind, raise};
use crate::{convert, runner};

/// The Graph API client (`mlyexport.Client` wraps it).
#[pyclass(module = "mlyexport._core", name = "Client", frozen)]
pub struct PyClient {
    client: Arc<Client>,
    tiles: TilesConfig,
    /// The `fetch` flags this client was made with (token and URLs).
    base_argv: Vec<String>,
}

/// A bbox that exists only to make `fetch` flags parse.
const ANY_BBOX: &str = "0,0,0.001,0.001";

impl PyClient {
    /// `fetch` flags: this client's, then `extra`; the output goes to a
    /// folder that is never created (only its parent is probed).
    fn argv(&self, extra: &[String]) -> Vec<String> {
        let mut argv = self.base_argv.clone();
        argv.extend_from_slice(extra);
        argv.push("--output".into());
        argv.push(scratch_output());
        argv
    }
}

fn scratch_output() -> String {
    std::env::temp_dir()
        .join("mlyexport-python-unused")
        .display()
        .to_string()
}

#[pymethods]
impl PyClient {
    /// `argv` holds `fetch` flags: `--token`, `--token-file`, `--api-url`,
    /// `--tiles-url`, `--timeout`, `--retries`, rates.
    #[new]
    fn new(argv: Vec<String>) -> PyResult<Self> {
        let mut base_argv = vec!["mlyexport".to_string(), "fetch".to_string()];
        base_argv.extend(argv);
        let mut probe = base_argv.clone();
        probe.extend([
            "--bbox".into(),
            ANY_BBOX.into(),
            "--output".into(),
            scratch_output(),
        ]);
        let cfg = fetch_config(probe)?;
        let client = runner::runtime()?
            .block_on(async { Client::new(&cfg.api) })
            .map_err(|e| errors::api(&e))?;
        Ok(PyClient {
            client: Arc::new(client),
            tiles: cfg.tiles,
            base_argv,
        })
    }

    /// The complete listing of a bbox: raw API objects (`typed=False`) or
    /// typed records, sorted by capture time then id. `flags` are `fetch`
    /// flags (`--bbox`, filters, `--size`).
    #[pyo3(signature = (flags, typed=true, progress=None))]
    fn images_in_bbox<'py>(
        &self,
        py: Python<'py>,
        flags: Vec<String>,
        typed: bool,
        progress: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let cfg: FetchConfig = fetch_config(self.argv(&flags))?;
        let client = Arc::clone(&self.client);
        let tiles = self.tiles.clone();
        let cancel = CancellationToken::new();
        let token = cancel.clone();
        let counters = Arc::new(Progress::default());
        let shared = Arc::clone(&counters);
        let work = move || async move {
            let mut found: Vec<(ImageRecord, Map<String, Value>)> = Vec::new();
            let search = BboxSearch {
                tiles_cfg: &tiles,
                bbox: cfg.request.area.bbox,
                filters: &cfg.request.filters,
                size: cfg.request.size,
            };
            let r = fetch::images_in_bbox_each(&client, &search, &token, &shared, |f| {
                found.push((f.record, f.object));
            })
            .await;
            r.map(|(c, why)| (found, c, why))
        };
        let watch = runner::Watch {
            callback: progress.as_ref(),
            progress: counters,
        };
        let (mut found, completeness, why) =
            runner::run(py, &cancel, Some(&watch), work)?.map_err(|e| errors::api(&e))?;
        found.sort_by_key(|(r, _)| (r.captured_at, r.id));
        let items = found
            .iter()
            .map(|(_, o)| {
                if typed {
                    convert::record(py, o)
                } else {
                    convert::object(py, o)
                }
            })
            .collect::<PyResult<Vec<_>>>()?;
        let out = PyDict::new(py);
        out.set_item("images", PyList::new(py, items)?)?;
        out.set_item("completeness", completeness.label())?;
        out.set_item("not_verified_because", why)?;
        Ok(out)
    }

    /// Downloads one image into `output_dir` as `<id>.jpg` with `<id>.json`;
    /// returns the JPEG's path.
    fn download_image(
        &self,
        py: Python<'_>,
        image_id: String,
        output_dir: PathBuf,
        size: String,
    ) -> PyResult<PathBuf> {
        let id = parse_id(&image_id)?;
        let size = parse_size(&size)?;
        let client = Arc::clone(&self.client);
        let dir = output_dir.clone();
        let work = move || async move { fetch::download_image(&client, id, size, &dir).await };
        runner::run(py, &CancellationToken::new(), None, work)?
            .map_err(|e| raise(download_kind(&e), errors::full(&e)))?;
        Ok(output_dir.join(format!("{id}.jpg")))
    }

    /// One image's fields as the API returns them (one entity call).
    fn image_fields<'py>(
        &self,
        py: Python<'py>,
        image_id: String,
        fields: String,
    ) -> PyResult<Bound<'py, PyDict>> {
        let id = parse_id(&image_id)?;
        let client = Arc::clone(&self.client);
        let work = move || async move { client.image(id, &fields).await };
        let mut obj =
            runner::run(py, &CancellationToken::new(), None, work)?.map_err(|e| errors::api(&e))?;
        obj.retain(|k, _| !(k.starts_with("thumb_") && k.ends_with("_url")));
        convert::object(py, &obj)
    }
}

fn download_kind(e: &fetch::DownloadError) -> Kind {
    match e {
        fetch::DownloadError::Api(mlyexport::api::ApiError::Auth { .. }) => Kind::Token,
        fetch::DownloadError::Api(_) | fetch::DownloadError::NoUrl(_) => Kind::Api,
        _ => Kind::Error,
    }
}

fn parse_id(s: &str) -> PyResult<ImageId> {
    s.trim().parse::<ImageId>().map_err(|_| {
        raise(
            Kind::Config,
            format!("image id `{s}` is not a Mapillary image id (a positive integer)"),
        )
    })
}

fn parse_size(s: &str) -> PyResult<ThumbSize> {
    <ThumbSize as clap::ValueEnum>::from_str(s, true).map_err(|_| {
        raise(
            Kind::Config,
            format!("size `{s}` is not one of 256, 1024, 2048, original"),
        )
    })
}
