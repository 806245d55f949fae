//! TestEnv: a temp folder, an optional in-process simulator, and the real
//! `mlyexport` binary run with a clean environment pointed at it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use mlysim::{DEMO_TOKEN, Sim, SimConfig};
use serde_json::Value;

pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub sim: Option<Sim>,
}

impl TestEnv {
    /// A temp folder and no simulator.
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            sim: None,
        }
    }

    /// A temp folder and a simulator with `cfg`.
    pub fn with_sim(cfg: SimConfig) -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            sim: Some(Sim::spawn(cfg).expect("simulator starts")),
        }
    }

    pub fn sim(&self) -> &Sim {
        self.sim.as_ref().expect("a simulator")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The default output folder, `<temp>/downloads`.
    pub fn out(&self) -> PathBuf {
        self.dir.path().join("downloads")
    }

    /// `mlyexport` with a clean environment, run in the temp folder, with the
    /// demo token and the simulator's URL when there is one.
    pub fn cmd(&self) -> assert_cmd::Command {
        let mut c = assert_cmd::Command::cargo_bin("mlyexport").expect("binary built");
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("MLYEXPORT_TEST_NO_RETRY_DELAY", "1")
            .current_dir(self.dir.path());
        if let Some(sim) = &self.sim {
            c.env("MLYEXPORT_API_URL", sim.graph_url())
                .env("MLYEXPORT_TILES_URL", sim.tiles_url())
                .env("MAPILLARY_TOKEN", DEMO_TOKEN);
        }
        c
    }

    /// `program` (by default the `mlyexport` binary) as a plain process, for
    /// tests that spawn, signal or wrap it: the same clean environment as
    /// [`TestEnv::cmd`], the simulator's Graph and tiles URLs and the token.
    pub fn std_cmd(&self, program: Option<&Path>) -> std::process::Command {
        let bin = assert_cmd::cargo::cargo_bin("mlyexport");
        let mut c = std::process::Command::new(program.unwrap_or(&bin));
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("MLYEXPORT_TEST_NO_RETRY_DELAY", "1")
            .current_dir(self.dir.path());
        if let Some(sim) = &self.sim {
            c.env("MLYEXPORT_API_URL", sim.graph_url())
                .env("MLYEXPORT_TILES_URL", sim.tiles_url())
                .env("MAPILLARY_TOKEN", DEMO_TOKEN);
        }
        c
    }

    /// Runs `mlyexport fetch ARGS`.
    pub fn fetch(&self, args: &[&str]) -> Output {
        self.cmd().arg("fetch").args(args).output().expect("runs")
    }
}

/// The world's bbox as a flag value.
pub fn bbox_arg(b: [f64; 4]) -> String {
    format!("{},{},{},{}", b[0], b[1], b[2], b[3])
}

/// Every `<grid>/<id>.json` under `out`: id -> grids holding it.
pub fn downloaded_ids(out: &Path) -> BTreeMap<u64, Vec<String>> {
    let mut m: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for g in std::fs::read_dir(out).into_iter().flatten().flatten() {
        if !g.path().is_dir() {
            continue;
        }
        let grid = g.file_name().to_string_lossy().into_owned();
        for f in std::fs::read_dir(g.path()).into_iter().flatten().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if let Some(id) = name
                .strip_suffix(".json")
                .and_then(|s| s.parse::<u64>().ok())
            {
                m.entry(id).or_default().push(grid.clone());
            }
        }
    }
    m
}

pub fn read_json(p: &Path) -> Value {
    serde_json::from_slice(
        &std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display())),
    )
    .unwrap_or_else(|e| panic!("parse {}: {e}", p.display()))
}

pub fn run_record(out: &Path) -> Value {
    read_json(&out.join("mlyexport-run.json"))
}

/// Every file under `dir`, recursively.
pub fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Asserts exit 0, showing both streams otherwise.
pub fn assert_success(o: &Output) {
    assert_eq!(
        o.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A small simulator: the demo world with a cap of 100, so listing must split.
pub fn small_cap_sim() -> SimConfig {
    SimConfig {
        cap: 100,
        fuzzy_cap: true,
        ..SimConfig::default()
    }
}

/// Validates `doc` against `schemas/<name>`; panics with every error.
pub fn assert_schema(name: &str, doc: &Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(name);
    let schema = read_json(&path);
    let validator =
        jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("schema {name}: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{name}: {errors:#?}\n{doc:#}");
}

/// The lines of `<out>/listing.jsonl`, parsed.
pub fn listing(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out.join("listing.jsonl"))
        .unwrap_or_else(|e| panic!("listing in {}: {e}", out.display()))
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// The id of a listing line or image JSON.
pub fn id_of(v: &Value) -> u64 {
    v["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("a string id")
}

/// Debian's Python, which has GDAL's and QGIS's bindings (the PATH one may not).
pub const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// Whether the system Python can import `module`. When it cannot, the test
/// fails (the setup script installs `packages`), unless
/// `MLYEXPORT_ALLOW_SKIP=1` lets it be skipped with a note.
#[allow(clippy::print_stderr)]
pub fn python_module(module: &str, packages: &str) -> bool {
    let out = std::process::Command::new(SYSTEM_PYTHON)
        .args(["-c", &format!("import {module}")])
        .env("QT_QPA_PLATFORM", "offscreen")
        .output();
    let why = match out {
        Ok(o) if o.status.success() => return true,
        Ok(o) => String::from_utf8_lossy(&o.stderr)
            .lines()
            .last()
            .unwrap_or("")
            .to_string(),
        Err(e) => format!("cannot run {SYSTEM_PYTHON}: {e}"),
    };
    let note = format!("{module} is missing ({why}); apt-get install {packages}");
    assert!(
        std::env::var_os("MLYEXPORT_ALLOW_SKIP").is_some_and(|v| v == "1"),
        "{note} (or set MLYEXPORT_ALLOW_SKIP=1 to skip this test)"
    );
    eprintln!("SKIPPED: {note}");
    false
}

/// Runs `scripts/qgis_check.py` (QGIS headless) on `source` (a GeoPackage,
/// or `PG:...` with `extra` naming the schema) with the environment `env`;
/// returns its one JSON object per layer, after asserting it exited 0 and
/// reported four layers, each opened with its default style.
pub fn qgis_check(source: &std::ffi::OsStr, extra: &[&str], env: &[(&str, &str)]) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/qgis_check.py");
    let out = std::process::Command::new(SYSTEM_PYTHON)
        .arg(script)
        .arg(source)
        .args(extra)
        .env("QT_QPA_PLATFORM", "offscreen")
        .envs(env.iter().copied())
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "qgis_check: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(results.len(), 4, "{stdout}");
    for r in &results {
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["style_loaded"], true, "{r}");
    }
    results
}

/// Asserts that GDAL's `validate_gpkg` finds nothing wrong with `gpkg`.
pub fn assert_valid_gpkg(gpkg: &Path) {
    let out = std::process::Command::new(SYSTEM_PYTHON)
        .args(["-m", "osgeo_utils.samples.validate_gpkg"])
        .arg(gpkg)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "validate_gpkg: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
