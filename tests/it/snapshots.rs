//! Snapshots (insta) of what users read: every `--help`, the summary each
//! command prints, the coverage Markdown and CSV header, and each layer's
//! columns as GDAL reads them back. A change to any of them shows up as a
//! reviewed diff of a file in `tests/it/snapshots/`.
//!
//! After a deliberate change (a new flag, a reworded summary line, a new
//! column), accept the new output and commit the changed `.snap` files:
//!
//! ```text
//! INSTA_UPDATE=always cargo test --test it snapshots   # overwrite the snapshots
//! git diff tests/it/snapshots/                         # review what changed
//! ```
//!
//! or, with `cargo install cargo-insta`: `cargo insta test --test it -- snapshots`
//! then `cargo insta review`. Without either, a failing run leaves
//! `tests/it/snapshots/*.snap.new` beside the old file (not under CI, where
//! `CI` is set and a missing or different snapshot only fails).
//!
//! Deterministic by construction: the simulator's world comes from a seed,
//! no faults are injected, `--as-of` is fixed, the temp folder is replaced by
//! `[TEMP]`, help is rendered at 100 columns (`COLUMNS`), and only stdout
//! (the summary) is kept where stderr carries timed progress lines.

use std::path::Path;
use std::process::Output;

use gdal::vector::LayerAccess;
use mlysim::SimConfig;

use crate::adopt::copy_dir;
use crate::common::*;
use crate::fixtures::fixture;

/// A corner of the demo world's hot spot cut in two grid cells: 218 images
/// (87 panoramas, one without a position) in 20 sequences by 9 creators.
const AREA: &str = "8.528,47.369,8.532,47.3695";

/// Runs `f` with the snapshot settings: no module prefix in file names, and
/// filters for whatever could differ between machines or runs (the temp
/// folder, a port, the search calls; with `times`, any ISO 8601 time: none is printed today, but a
/// summary line with a run's time would otherwise differ on every run).
fn settings(env: Option<&TestEnv>, times: bool, f: impl FnOnce()) {
    let mut s = insta::Settings::clone_current();
    s.set_prepend_module_to_snapshot(false);
    if let Some(env) = env {
        s.add_filter(&regex_escape(&env.path().display().to_string()), "[TEMP]");
    }
    s.add_filter(r"127\.0\.0\.1:\d+", "[SERVER]");
    // How many searches a verified listing needs depends on the order the
    // concurrent answers arrive in (an answer is compared with the largest
    // so far); what it lists does not.
    s.add_filter(r"search calls: \d+", "search calls: [N]");
    if times {
        s.add_filter(
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)",
            "[TIME]",
        );
    }
    s.bind(f);
}

/// `text` with every regex metacharacter escaped.
fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn help(args: &[&str]) -> String {
    let o = TestEnv::new()
        .cmd()
        .env("COLUMNS", "100")
        .args(args)
        .arg("--help")
        .output()
        .expect("runs");
    assert_success(&o);
    stdout(&o)
}

#[test]
fn help_texts() {
    settings(None, true, || {
        insta::assert_snapshot!("help", help(&[]));
        for cmd in ["fetch", "layers", "exif", "adopt", "status"] {
            insta::assert_snapshot!(format!("help_{cmd}"), help(&[cmd]));
        }
    });
}

/// stdout and stderr of a run, with its exit code.
fn both(o: &Output) -> String {
    format!(
        "exit: {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    )
}

/// The summary of a run (stdout) and its exit code.
fn summary(o: &Output) -> String {
    format!("exit: {:?}\n{}", o.status.code(), stdout(o))
}

#[test]
fn fetch_layers_and_exif_summaries_coverage_and_layer_schemas() {
    let env = TestEnv::with_sim(SimConfig::default());
    let dry = env.fetch(&["--bbox", AREA, "--grid", "2x1", "--dry-run", "-o", "dry"]);
    let fetch = env.fetch(&["--bbox", AREA, "--grid", "2x1", "--size", "256"]);
    assert_success(&fetch);
    let layers = env
        .cmd()
        .args([
            "layers",
            "--format",
            "gpkg,geojson,csv",
            "--as-of",
            "2026-01-01",
        ])
        .output()
        .expect("runs");
    let exif = env.cmd().arg("exif").output().expect("runs");
    let out = env.out().join("layers");
    settings(Some(&env), true, || {
        insta::assert_snapshot!("summary_fetch_dry_run", summary(&dry));
        insta::assert_snapshot!("summary_fetch", summary(&fetch));
        insta::assert_snapshot!("summary_layers", summary(&layers));
        insta::assert_snapshot!("summary_exif", summary(&exif));
    });
    // The capture times in the coverage are the world's, fixed by its seed.
    settings(Some(&env), false, || {
        insta::assert_snapshot!("coverage_md", read(&out.join("coverage.md")));
        insta::assert_snapshot!("coverage_csv_header", first_line(&out.join("coverage.csv")));
        insta::assert_snapshot!("schema_gpkg", gpkg_schema(&out.join("mapillary.gpkg")));
        insta::assert_snapshot!("schema_csv", first_line(&out.join("images.csv")));
        insta::assert_snapshot!("schema_geojson", geojson_keys(&out));
    });
}

#[test]
fn adopt_summaries() {
    let env = TestEnv::new();
    let root = env.path().join("downloads");
    copy_dir(&fixture("old-tool"), &root);
    let dry = env
        .cmd()
        .args(["adopt", "--dry-run"])
        .output()
        .expect("runs");
    let real = env.cmd().arg("adopt").output().expect("runs");
    settings(Some(&env), true, || {
        insta::assert_snapshot!("summary_adopt_dry_run", both(&dry));
        insta::assert_snapshot!("summary_adopt", both(&real));
    });
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn first_line(p: &Path) -> String {
    read(p).lines().next().unwrap_or_default().to_string()
}

/// Each table of the GeoPackage: its geometry column and SRS, then every
/// column with its declared SQLite type, in table order.
fn gpkg_schema(p: &Path) -> String {
    let ds = gdal::Dataset::open(p).expect("the GeoPackage opens");
    let rows = |sql: &str| -> Vec<String> {
        let mut rs = ds
            .execute_sql(sql, None, gdal::vector::sql::Dialect::DEFAULT)
            .expect("SQL runs")
            .expect("a result set");
        rs.features()
            .map(|f| f.field_as_string(0).ok().flatten().unwrap_or_default())
            .collect()
    };
    let mut out = String::new();
    let tables = rows(
        "SELECT table_name || ' (' || data_type || ')' FROM gpkg_contents ORDER BY table_name",
    );
    for t in tables {
        let name = t.split(' ').next().unwrap_or_default().to_string();
        out.push_str(&format!("{t}\n"));
        for g in rows(&format!(
            "SELECT '  geometry ' || column_name || ' ' || geometry_type_name || ' EPSG:' || srs_id \
             FROM gpkg_geometry_columns WHERE table_name = '{name}'"
        )) {
            out.push_str(&format!("{g}\n"));
        }
        for c in rows(&format!(
            "SELECT '  ' || name || ' ' || type FROM pragma_table_info('{name}') ORDER BY cid"
        )) {
            out.push_str(&format!("{c}\n"));
        }
    }
    out
}

/// Each GeoJSON file's property keys (of its first feature, in file order)
/// with the JSON types seen for each over all features.
fn geojson_keys(dir: &Path) -> String {
    let mut out = String::new();
    for name in ["images.geojson", "sequences.geojson", "grid_cells.geojson"] {
        let doc = read_json(&dir.join(name));
        let features = doc["features"].as_array().cloned().unwrap_or_default();
        out.push_str(&format!("{name}\n"));
        let Some(first) = features.first() else {
            out.push_str("  (no features)\n");
            continue;
        };
        let keys: Vec<String> = first["properties"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        for k in keys {
            let mut kinds: Vec<&str> = features
                .iter()
                .map(|f| json_kind(&f["properties"][&k]))
                .collect();
            kinds.sort_unstable();
            kinds.dedup();
            out.push_str(&format!("  {k}: {}\n", kinds.join(" | ")));
        }
    }
    out
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}
