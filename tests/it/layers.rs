//! `mlyexport layers` on hand-made downloads folders: the GeoPackage read back
//! with GDAL (layers, counts, CRS, field types, datetimes, styles) and checked
//! by GDAL's validate_gpkg and by QGIS; GeoJSON against RFC 7946; the CSV; the
//! coverage against its JSON Schema; bad inputs; the old tool's layout; re-runs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

use assert_cmd::Command;
use chrono::{DateTime, Utc};
use gdal::Dataset;
use gdal::vector::LayerAccess;
use mlyexport::model::{Bbox, PanoFilter, ThumbSize};
use mlyexport::runrecord::{
    Area, Completeness, Counts, Failure, Filters, GridState, Outcome, Request, RunEntry, RunRecord,
};
use serde_json::{Value, json};

use crate::common::{assert_valid_gpkg, python_module, qgis_check};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn grid_state(
    grid: &str,
    bbox: Bbox,
    listing: Completeness,
    listed: u64,
    downloaded: u64,
    failed: u64,
) -> GridState {
    GridState {
        grid: grid.into(),
        bbox,
        listing,
        search_calls: 1,
        listed,
        downloaded,
        failed,
        thinned: 0,
        truncated_boxes: Vec::new(),
        failed_boxes: Vec::new(),
        verification: None,
    }
}

/// An image's `<id>.json` as `fetch` writes it.
fn image_json(id: u64, grid: &str, seq: &str, ms: i64, lon: f64, lat: f64, pano: bool) -> Value {
    json!({
        "id": id.to_string(), "captured_at": ms,
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
        "computed_geometry": {"type": "Point", "coordinates": [lon + 0.00001, lat]},
        "compass_angle": 90.0, "computed_compass_angle": 91.5, "altitude": 35.25,
        "sequence": seq, "is_pano": pano, "camera_type": if pano { "spherical" } else { "perspective" },
        "make": "GoPro", "model": "Max", "creator": {"username": "alice", "id": "42"},
        "width": 4000, "height": 3000,
        "mlyexport": {"schema_version": 1, "grid": grid, "size": "256", "file": format!("{id}.jpg"),
            "bytes": 1234, "sha256": "0".repeat(64), "pixel_width": 256, "pixel_height": 192,
            "downloaded_at": "2024-03-01T10:00:00Z", "tool_version": "0.1.0"},
    })
}

/// A downloads folder: grid `a` (complete, 4 images in one sequence + one
/// panorama + one without position + one corrupt file), grid `b` (truncated,
/// 1 image, 1 failure) and grid `c` (listed, nothing downloaded).
fn make_downloads(root: &Path) {
    let a = Bbox::new(13.40, 52.50, 13.41, 52.51).unwrap();
    let b = Bbox::new(13.41, 52.50, 13.42, 52.51).unwrap();
    let c = Bbox::new(13.40, 52.49, 13.41, 52.50).unwrap();
    for g in ["a", "b", "c"] {
        fs::create_dir_all(root.join(g)).unwrap();
    }
    let base = 1_563_721_072_184_i64; // 2019-07-21T14:57:52.184Z
    let write = |grid: &str, v: Value, jpg: bool| {
        let id = v["id"].as_str().unwrap().to_string();
        fs::write(
            root.join(grid).join(format!("{id}.json")),
            serde_json::to_vec_pretty(&v).unwrap(),
        )
        .unwrap();
        if jpg {
            fs::write(
                root.join(grid).join(format!("{id}.jpg")),
                b"\xFF\xD8\xFF\xD9",
            )
            .unwrap();
        }
    };
    // Sequence s1 heads north, 0.0005° (about 55.6 m) a step, written out of order.
    for (i, id) in [(2, 1002_u64), (0, 1000), (3, 1003), (1, 1001)] {
        let lat = 52.501 + 0.0005 * i as f64;
        write(
            "a",
            image_json(id, "a", "s1", base + 2000 * i as i64, 13.405, lat, false),
            true,
        );
    }
    write(
        "a",
        image_json(1010, "a", "s2", base - 86_400_000, 13.407, 52.505, true),
        true,
    );
    let mut nopos = image_json(1020, "a", "s3", base, 0.0, 0.0, false);
    nopos.as_object_mut().unwrap().remove("geometry");
    nopos.as_object_mut().unwrap().remove("computed_geometry");
    write("a", nopos, true);
    fs::write(root.join("a/1030.json"), b"{\"id\": \"1030\", trunc").unwrap();
    write(
        "b",
        image_json(2000, "b", "s9", base + 1000, 13.415, 52.505, false),
        false,
    );

    let counts = Counts {
        listed: 11,
        downloaded: 7,
        failed: 1,
        ..Counts::default()
    };
    let record = RunRecord {
        schema_version: 1,
        tool: "mlyexport 0.1.0".into(),
        request: Request {
            area: Area {
                kind: "grid".into(),
                bbox: Bbox::new(13.40, 52.49, 13.42, 52.51).unwrap(),
                grid_file: None,
                grid_spec: Some("2x2".into()),
                aoi: None,
            },
            filters: Filters {
                since: None,
                until: None,
                pano: PanoFilter::Include,
                creator: None,
                organization: None,
                max_images: None,
            },
            size: ThumbSize::S256,
            enumerate: Default::default(),
            position: mlyexport::model::PositionSource::Original,
            min_spacing_m: None,
        },
        grids: vec![
            grid_state("a", a, Completeness::Complete, 8, 7, 0),
            grid_state("b", b, Completeness::Truncated, 2, 1, 1),
            grid_state("c", c, Completeness::Complete, 1, 0, 0),
        ],
        totals: counts.clone(),
        failures: vec![Failure {
            id: "2001".into(),
            grid: "b".into(),
            reason: "http_404".into(),
            message: "not found".into(),
        }],
        runs: vec![RunEntry {
            tool_version: "0.1.0".into(),
            command_line: vec![
                "mlyexport".into(),
                "fetch".into(),
                "--bbox".into(),
                "13.40,52.49,13.42,52.51".into(),
            ],
            api_url: "http://127.0.0.1:9".into(),
            started_at: t("2024-03-01T09:59:00Z"),
            finished_at: Some(t("2024-03-01T10:00:01.250Z")),
            outcome: Outcome::Partial,
            dry_run: false,
            counts,
            shard: None,
        }],
    };
    fs::write(
        root.join("mlyexport-run.json"),
        serde_json::to_vec_pretty(&record).unwrap(),
    )
    .unwrap();
}

fn layers(input: &Path, extra: &[&str]) -> std::process::Output {
    let mut cmd = Command::cargo_bin("mlyexport").unwrap();
    cmd.arg("layers")
        .arg("--input")
        .arg(input)
        .arg("--no-exif")
        .args(extra);
    cmd.output().unwrap()
}

fn text(o: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn sql_strings(ds: &Dataset, sql: &str) -> Vec<Option<String>> {
    let mut rs = ds
        .execute_sql(sql, None, gdal::vector::sql::Dialect::DEFAULT)
        .unwrap()
        .unwrap();
    rs.features()
        .map(|f| f.field_as_string(0).unwrap())
        .collect()
}

/// Everything `layers` writes, with all formats.
fn build_all() -> (tempfile::TempDir, PathBuf, std::process::Output) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("downloads");
    make_downloads(&input);
    let out = layers(&input, &["--format", "gpkg,geojson,csv"]);
    (dir, input.join("layers"), out)
}

#[test]
fn geopackage_reads_back_with_gdal() {
    let (_dir, out_dir, out) = build_all();
    // One corrupt metadata file: reported, skipped, exit 1 (partial).
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1030.json"), "{err}");

    let ds = Dataset::open(out_dir.join("mapillary.gpkg")).unwrap();
    let mut names: Vec<String> = ds.layers().map(|l| l.name()).collect();
    names.sort();
    assert_eq!(
        names,
        ["grid_cells", "images", "layer_styles", "runs", "sequences"]
    );

    let images = ds.layer_by_name("images").unwrap();
    // 7 readable images, one without a position: 6 drawn.
    assert_eq!(images.feature_count(), 6);
    let srs = images.spatial_ref().unwrap();
    assert_eq!(srs.auth_code().unwrap(), 4326);
    let types: Vec<(String, u32)> = images
        .defn()
        .fields()
        .map(|f| (f.name(), f.field_type()))
        .collect();
    let ty = |n: &str| {
        types
            .iter()
            .find(|(f, _)| f == n)
            .unwrap_or_else(|| panic!("no field {n}"))
            .1
    };
    use gdal_sys::OGRFieldType::*;
    assert_eq!(ty("captured_at"), OFTDateTime);
    assert_eq!(ty("is_pano"), OFTInteger);
    assert_eq!(ty("bytes"), OFTInteger64);
    assert_eq!(ty("compass_angle"), OFTReal);
    assert_eq!(ty("width"), OFTInteger);
    for f in [
        "id",
        "sequence",
        "computed_compass_angle",
        "camera_type",
        "make",
        "model",
        "creator",
        "height",
        "altitude",
        "grid",
        "file",
        "position_source",
        "position_offset_m",
    ] {
        ty(f);
    }
    // Booleans are declared BOOLEAN, datetimes stored with milliseconds and Z.
    let decl = sql_strings(
        &ds,
        "SELECT type FROM pragma_table_info('images') WHERE name = 'is_pano'",
    );
    assert_eq!(decl, [Some("BOOLEAN".to_string())]);
    let times = sql_strings(
        &ds,
        "SELECT captured_at || '' FROM images WHERE id = '1000'",
    );
    assert_eq!(times, [Some("2019-07-21T14:57:52.184Z".to_string())]);
    let row = sql_strings(
        &ds,
        "SELECT id || ' ' || file || ' ' || position_source || ' ' || direction || ' ' || is_pano FROM images WHERE id = '1010'",
    );
    assert_eq!(row, [Some("1010 a/1010.jpg computed 91.5 1".to_string())]);
    let ids = sql_strings(&ds, "SELECT id FROM images ORDER BY fid");
    assert_eq!(
        ids.iter().flatten().cloned().collect::<Vec<_>>(),
        ["1000", "1001", "1002", "1003", "1010", "2000"]
    );
    // Spatial index on every spatial layer.
    let rtrees = sql_strings(
        &ds,
        "SELECT table_name FROM gpkg_extensions WHERE extension_name = 'gpkg_rtree_index' ORDER BY 1",
    );
    assert_eq!(
        rtrees.into_iter().flatten().collect::<Vec<_>>(),
        ["grid_cells", "images", "sequences"]
    );

    // Sequences: s1 only (s2, s3, s9 have fewer than two drawn images).
    let seqs = sql_strings(
        &ds,
        "SELECT sequence || ' ' || image_count || ' ' || start_time || ' ' || end_time || ' ' || length_m FROM sequences",
    );
    assert_eq!(seqs.len(), 1);
    let s = seqs[0].clone().unwrap();
    assert!(
        s.starts_with("s1 4 2019-07-21T14:57:52.184Z 2019-07-21T14:57:58.184Z 166.7"),
        "{s}"
    );

    // Grid cells carry the coverage; the run's provenance is kept.
    let cells = sql_strings(
        &ds,
        "SELECT grid || ' ' || listed || ' ' || downloaded || ' ' || failed || ' ' || listing_complete || ' ' || without_position FROM grid_cells ORDER BY fid",
    );
    assert_eq!(
        cells.into_iter().flatten().collect::<Vec<_>>(),
        ["a 8 6 0 1 1", "b 2 1 1 0 0", "c 1 0 0 1 0"]
    );
    let runs = sql_strings(
        &ds,
        "SELECT outcome || ' ' || finished_at || ' ' || command_line FROM runs",
    );
    assert_eq!(
        runs,
        [Some(
            "partial 2024-03-01T10:00:01.250Z mlyexport fetch --bbox 13.40,52.49,13.42,52.51"
                .to_string()
        )]
    );

    // Styles: one default per layer, catalog and schema '' (never NULL).
    let styles = sql_strings(
        &ds,
        "SELECT f_table_name || '|' || f_geometry_column || '|' || useAsDefault FROM layer_styles \
         WHERE f_table_catalog = '' AND f_table_schema = '' ORDER BY f_table_name",
    );
    assert_eq!(
        styles.into_iter().flatten().collect::<Vec<_>>(),
        [
            "grid_cells|geom|1",
            "images|geom|1",
            "runs||1",
            "sequences|geom|1"
        ]
    );
    // No temp files left behind.
    let leftovers: Vec<_> = fs::read_dir(&out_dir)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".mlyexport-tmp-")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Debian's `/usr/bin/python3`, which has python3-gdal and python3-qgis.
#[test]
fn geopackage_passes_validate_gpkg() {
    if !python_module("osgeo_utils.samples.validate_gpkg", "python3-gdal") {
        return;
    }
    let (_dir, out_dir, _) = build_all();
    assert_valid_gpkg(&out_dir.join("mapillary.gpkg"));
}

#[test]
fn qgis_loads_every_layer_with_its_default_style() {
    if !python_module("qgis.core", "python3-qgis qgis-providers") {
        return;
    }
    let (_dir, out_dir, _) = build_all();
    let results = qgis_check(out_dir.join("mapillary.gpkg").as_os_str(), &[], &[]);
    for r in &results {
        assert_eq!(r["valid"], true, "{r}");
    }
    let images = results.iter().find(|r| r["layer"] == "images").unwrap();
    assert_eq!(images["crs"], "EPSG:4326");
    assert_eq!(images["renderer"], "RuleRenderer");
    assert_eq!(images["rotation_active"], true);
    assert_eq!(images["features"], 6);
    // The one panorama is drawn by the panorama rule, the rest as arrows.
    assert_eq!(
        images["features_per_rule"],
        json!({"pano->{mlyexport-pano}": 1, "image->{mlyexport-image}": 5})
    );
    let cells = results.iter().find(|r| r["layer"] == "grid_cells").unwrap();
    assert_eq!(cells["class_attribute"], "images_per_km2");
}

/// Counts decimals of every number in a JSON text's `coordinates` arrays.
fn max_decimals(raw: &str) -> usize {
    let mut max = 0;
    for part in raw.split("\"coordinates\":").skip(1) {
        let end = part.find("}").unwrap_or(part.len());
        for num in part[..end].split(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-')) {
            if let Some((_, frac)) = num.split_once('.') {
                max = max.max(frac.len());
            }
        }
    }
    max
}

#[test]
fn geojson_follows_rfc7946() {
    let (_dir, out_dir, _) = build_all();
    for (name, n, kind) in [
        ("images.geojson", 6, "Point"),
        ("sequences.geojson", 1, "LineString"),
        ("grid_cells.geojson", 3, "Polygon"),
    ] {
        let raw = fs::read_to_string(out_dir.join(name)).unwrap();
        let gj: geojson::GeoJson = raw.parse().unwrap_or_else(|e| panic!("{name}: {e}"));
        let geojson::GeoJson::FeatureCollection(fc) = gj else {
            panic!("{name} is not a FeatureCollection")
        };
        assert_eq!(fc.features.len(), n, "{name}");
        let v: Value = serde_json::from_str(&raw).unwrap();
        assert!(v.get("crs").is_none(), "{name} has a crs member");
        assert!(max_decimals(&raw) <= 7, "{name}: more than 7 decimals");
        for f in v["features"].as_array().unwrap() {
            let g = &f["geometry"];
            assert_eq!(g["type"], kind, "{name}");
            let mut pts: Vec<(f64, f64)> = Vec::new();
            let c = &g["coordinates"];
            match kind {
                "Point" => pts.push((c[0].as_f64().unwrap(), c[1].as_f64().unwrap())),
                "LineString" => pts.extend(
                    c.as_array()
                        .unwrap()
                        .iter()
                        .map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap())),
                ),
                _ => {
                    let ring: Vec<(f64, f64)> = c[0]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap()))
                        .collect();
                    assert_eq!(ring.first(), ring.last(), "ring not closed");
                    let area2: f64 = ring
                        .windows(2)
                        .map(|w| w[0].0 * w[1].1 - w[1].0 * w[0].1)
                        .sum();
                    assert!(area2 > 0.0, "{name}: outer ring is clockwise");
                    pts.extend(ring);
                }
            }
            // lon,lat order: Berlin is at lon 13.4, lat 52.5.
            for (x, y) in pts {
                assert!(
                    (13.39..13.43).contains(&x) && (52.48..52.52).contains(&y),
                    "{name}: ({x}, {y})"
                );
            }
        }
    }
    let v: Value =
        serde_json::from_slice(&fs::read(out_dir.join("images.geojson")).unwrap()).unwrap();
    let first = &v["features"][0];
    assert_eq!(first["properties"]["id"], "1000");
    assert_eq!(first["geometry"]["coordinates"], json!([13.40501, 52.501]));
    assert_eq!(
        first["properties"]["captured_at"],
        "2019-07-21T14:57:52.184Z"
    );
}

#[test]
fn csv_has_lon_lat_and_wkt() {
    let (_dir, out_dir, _) = build_all();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["images.csv", "coverage.json", "images.geojson"] {
            let mode = fs::metadata(out_dir.join(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o644, "{f}");
        }
    }
    let raw = fs::read_to_string(out_dir.join("images.csv")).unwrap();
    let lines: Vec<&str> = raw.lines().collect();
    assert_eq!(lines.len(), 7, "{raw}");
    let header: Vec<&str> = lines[0].split(',').collect();
    assert_eq!(&header[..4], ["id", "lon", "lat", "wkt"]);
    for line in &lines[1..] {
        let cols: Vec<&str> = line.split(',').collect();
        assert_eq!(cols.len(), header.len(), "{line}");
        assert_eq!(cols[3], format!("POINT ({} {})", cols[1], cols[2]));
    }
    assert!(
        lines[1].starts_with(
            "1000,13.40501,52.501,POINT (13.40501 52.501),s1,2019-07-21T14:57:52.184Z,"
        )
    );
}

#[test]
fn coverage_matches_its_schema_and_figures() {
    let (_dir, out_dir, _) = build_all();
    let schema: Value = serde_json::from_slice(
        &fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/coverage.schema.json"))
            .unwrap(),
    )
    .unwrap();
    let doc: Value =
        serde_json::from_slice(&fs::read(out_dir.join("coverage.json")).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    // A wrong document fails, so the schema is not vacuous.
    let mut bad = doc.clone();
    bad["grids"][0]["pano_share"] = json!(2.0);
    assert!(!validator.is_valid(&bad));

    assert_eq!(doc["as_of"], "2024-03-01T10:00:01.250Z");
    let a = &doc["grids"][0];
    assert_eq!(a["grid"], "a");
    assert_eq!(a["listed"], 8);
    assert_eq!(a["downloaded"], 6);
    assert_eq!(a["without_position"], 1);
    assert_eq!(a["listing_complete"], true);
    assert_eq!(a["panoramas"], 1);
    assert_eq!(a["pano_share"], json!(round4(1.0 / 6.0)));
    assert_eq!(a["sequences"], 3);
    assert_eq!(a["creators"], 1);
    assert_eq!(a["first_capture"], "2019-07-20T14:57:52.184Z");
    assert_eq!(a["last_capture"], "2019-07-21T14:57:58.184Z");
    let spacing = a["median_spacing_m"].as_f64().unwrap();
    assert!((spacing - 55.6).abs() < 0.1, "{spacing}");
    let area = a["area_km2"].as_f64().unwrap();
    assert!((area - 0.7558).abs() < 0.01, "{area}");
    let density = a["images_per_km2"].as_f64().unwrap();
    assert!((density - 6.0 / area).abs() < 0.01);
    let months = a["months_since_newest"].as_f64().unwrap();
    assert!((months - 55.35).abs() < 0.1, "{months}");
    let b = &doc["grids"][1];
    assert_eq!(
        (
            b["failed"].as_u64(),
            b["listing"].as_str(),
            b["listing_complete"].as_bool()
        ),
        (Some(1), Some("truncated"), Some(false))
    );
    let c = &doc["grids"][2];
    assert_eq!(
        (c["downloaded"].as_u64(), c["median_spacing_m"].is_null()),
        (Some(0), true)
    );

    let csv = fs::read_to_string(out_dir.join("coverage.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4);
    let md = fs::read_to_string(out_dir.join("coverage.md")).unwrap();
    assert!(
        md.contains("| a | 8 | 6 | 0 | assumed complete (not verified) | true | 1 | 1 |"),
        "{md}"
    );
}

fn round4(v: f64) -> f64 {
    (v * 1e4).round() / 1e4
}

#[test]
fn rerun_gives_identical_files() {
    let (_dir, out_dir, _) = build_all();
    let read_all = || -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<_> = fs::read_dir(&out_dir)
            .unwrap()
            .flatten()
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let first = read_all();
    assert_eq!(first.len(), 8);
    // A leftover temp GeoPackage from a killed run is replaced, not trusted.
    fs::write(
        out_dir.join(".mlyexport-tmp-mapillary.gpkg"),
        b"half written",
    )
    .unwrap();
    let out = layers(out_dir.parent().unwrap(), &["--format", "csv,gpkg,geojson"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let second = read_all();
    for ((n1, b1), (n2, b2)) in first.iter().zip(&second) {
        assert_eq!(n1, n2);
        assert!(b1 == b2, "{n1} differs between runs");
    }
    assert_eq!(first.len(), second.len());
}

#[test]
fn empty_or_missing_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = layers(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing to read"),
        "{}",
        text(&out)
    );
    assert!(!dir.path().join("layers").exists());

    let out = layers(&dir.path().join("nope"), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nope"),
        "{}",
        text(&out)
    );

    // Only corrupt files: nothing usable is also an error.
    fs::create_dir_all(dir.path().join("g")).unwrap();
    fs::write(dir.path().join("g/5.json"), b"nonsense").unwrap();
    let out = layers(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("5.json"),
        "{}",
        text(&out)
    );
}

#[test]
fn old_python_layout_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("jsons")).unwrap();
    fs::create_dir_all(root.join("images")).unwrap();
    for (id, lon, lat) in [(11_u64, 2.35, 48.85), (12, 2.36, 48.86)] {
        // The old tool's real JSON: computed position, no `id` key.
        let v = json!({"image_name": format!("{id}.jpg"), "latitude": lat, "longitude": lon,
            "captured_at": 1_600_000_000_000_i64 + id as i64, "heading": 10.0,
            "camera_type": "perspective", "annotations": []});
        fs::write(root.join(format!("jsons/{id}.json")), v.to_string()).unwrap();
        fs::write(root.join(format!("images/{id}.jpg")), tiny_jpeg()).unwrap();
    }
    let out = layers(
        root,
        &[
            "--format",
            "gpkg,geojson",
            "--position",
            "original",
            "--as-of",
            "2024-01-01",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let ds = Dataset::open(root.join("layers/mapillary.gpkg")).unwrap();
    let files = sql_strings(
        &ds,
        "SELECT file || ' ' || grid || ' ' || position_source FROM images ORDER BY id",
    );
    assert_eq!(
        files.into_iter().flatten().collect::<Vec<_>>(),
        ["images/11.jpg 1 computed", "images/12.jpg 1 computed"]
    );
    let doc: Value =
        serde_json::from_slice(&fs::read(root.join("layers/coverage.json")).unwrap()).unwrap();
    let g = &doc["grids"][0];
    assert_eq!(g["grid"], "1");
    // No segments file: the box is unknown.
    assert!(g["bbox"].is_null());
    assert_eq!(g["listing"], "unknown");
    assert!(g["listed"].is_null() && g["listing_complete"].is_null());
    assert_eq!(doc["as_of"], "2024-01-01T00:00:00.000Z");
    assert_eq!(ds.layer_by_name("runs").unwrap().feature_count(), 0);
}

/// A real 16x16 JPEG.
fn tiny_jpeg() -> Vec<u8> {
    let img = image::RgbImage::from_pixel(16, 16, image::Rgb([120, 140, 160]));
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
        .encode_image(&img)
        .unwrap();
    out
}

#[test]
fn layers_runs_the_exif_pass_unless_told_not_to() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("g1")).unwrap();
    let v = image_json(77, "g1", "s", 1_600_000_000_000, 13.4, 52.5, false);
    fs::write(root.join("g1/77.json"), v.to_string()).unwrap();
    let jpeg = tiny_jpeg();
    fs::write(root.join("g1/77.jpg"), &jpeg).unwrap();

    let mut cmd = Command::cargo_bin("mlyexport").unwrap();
    let out = cmd
        .args(["layers", "--format", "csv", "--no-exif", "--input"])
        .arg(root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        fs::read(root.join("g1/77.jpg")).unwrap(),
        jpeg,
        "--no-exif touched the JPEG"
    );

    let mut cmd = Command::cargo_bin("mlyexport").unwrap();
    let out = cmd
        .args(["layers", "--format", "csv", "--input"])
        .arg(root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let after = fs::read(root.join("g1/77.jpg")).unwrap();
    assert_ne!(after, jpeg, "the EXIF pass did not run");
    assert!(after.windows(6).any(|w| w == b"Exif\0\0"));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("exif"),
        "{}",
        text(&out)
    );
}

#[test]
fn layers_after_a_real_fetch_from_the_simulator() {
    use crate::common::{TestEnv, bbox_arg, downloaded_ids};
    let env = TestEnv::with_sim(mlysim::SimConfig::default());
    let w = env.sim().world().spec().bbox;
    // The south-west quarter of the demo world, cut in a 2x2 grid.
    let b = [w[0], w[1], (w[0] + w[2]) / 2.0, (w[1] + w[3]) / 2.0];
    let o = env.fetch(&["--bbox", &bbox_arg(b), "--grid", "2x2", "--size", "256"]);
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", text(&o));
    let ids = downloaded_ids(&env.out());
    assert!(!ids.is_empty(), "{}", text(&o));

    let o = env
        .cmd()
        .args(["layers", "--format", "gpkg,geojson,csv"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out_dir = env.out().join("layers");
    let ds = Dataset::open(out_dir.join("mapillary.gpkg")).unwrap();
    let drawn = ds.layer_by_name("images").unwrap().feature_count();
    let doc: Value =
        serde_json::from_slice(&fs::read(out_dir.join("coverage.json")).unwrap()).unwrap();
    let grids = doc["grids"].as_array().unwrap();
    assert_eq!(grids.len(), 4);
    let downloaded: u64 = grids
        .iter()
        .map(|g| g["downloaded"].as_u64().unwrap())
        .sum();
    let without: u64 = grids
        .iter()
        .map(|g| g["without_position"].as_u64().unwrap())
        .sum();
    assert_eq!(downloaded, ids.len() as u64);
    assert_eq!(drawn, downloaded - without);
    let record: Value =
        serde_json::from_slice(&fs::read(env.out().join("mlyexport-run.json")).unwrap()).unwrap();
    for (g, r) in grids.iter().zip(record["grids"].as_array().unwrap()) {
        assert_eq!(g["grid"], r["grid"]);
        assert_eq!(g["listed"], r["listed"]);
        assert_eq!(g["bbox"], r["bbox"]);
    }
    // Every `file` names a JPEG that exists, relative to the downloads folder.
    let files = sql_strings(&ds, "SELECT file FROM images");
    assert_eq!(files.len() as u64, drawn);
    for f in files.into_iter().flatten() {
        assert!(env.out().join(&f).is_file(), "{f}");
    }
}

#[test]
fn a_killed_run_never_leaves_a_half_written_geopackage() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("downloads");
    let write_images = |from: u64, to: u64| {
        fs::create_dir_all(root.join("g1")).unwrap();
        for id in from..to {
            let lat = 52.5 + id as f64 * 1e-6;
            let v = image_json(
                id,
                "g1",
                "s",
                1_600_000_000_000 + id as i64,
                13.4,
                lat,
                false,
            );
            fs::write(root.join(format!("g1/{id}.json")), v.to_string()).unwrap();
        }
    };
    write_images(1, 501);
    let out = layers(&root, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    write_images(501, 4001);

    let gpkg = root.join("layers/mapillary.gpkg");
    for delay_ms in [50, 200, 600] {
        let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("mlyexport"))
            .args(["layers", "--no-exif", "--quiet", "--input"])
            .arg(&root)
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        // Whenever it was killed, the GeoPackage in place is a whole one: the old or the new.
        let n = Dataset::open(&gpkg)
            .unwrap()
            .layer_by_name("images")
            .unwrap()
            .feature_count();
        assert!(
            n == 500 || n == 4000,
            "{n} images after a kill at {delay_ms} ms"
        );
    }
    let out = layers(&root, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let n = Dataset::open(&gpkg)
        .unwrap()
        .layer_by_name("images")
        .unwrap()
        .feature_count();
    assert_eq!(n, 4000);
    let leftovers: Vec<_> = fs::read_dir(root.join("layers"))
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".mlyexport-tmp-")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Images whose spatial filter counts through the index (`rtreecheck`,
/// GDAL's spatial filter) must match a scan of every point.
fn index_agrees_with_a_full_scan(ds: &Dataset, rects: &[[f64; 4]]) {
    let check = sql_strings(ds, "SELECT rtreecheck('rtree_images_geom')");
    assert_eq!(check, [Some("ok".to_string())], "SQLite's rtreecheck");
    let mut images = ds.layer_by_name("images").unwrap();
    let points: Vec<(f64, f64)> = images
        .features()
        .map(|f| {
            let (x, y, _) = f.geometry().unwrap().get_point(0);
            (x, y)
        })
        .collect();
    for &[x0, y0, x1, y1] in rects {
        let scanned = points
            .iter()
            .filter(|(x, y)| (x0..=x1).contains(x) && (y0..=y1).contains(y))
            .count();
        images.set_spatial_filter_rect(x0, y0, x1, y1);
        let indexed = images.features().count();
        images.clear_spatial_filter();
        assert_eq!(indexed, scanned, "images in {x0},{y0},{x1},{y1}");
    }
}

#[test]
fn the_spatial_index_finds_every_image_and_stays_valid_when_edited() {
    // 3,000 images: an R*Tree of three levels, packed by mlyexport.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("downloads");
    for g in ["1", "2"] {
        fs::create_dir_all(input.join(g)).unwrap();
    }
    let n = 3000u64;
    for i in 0..n {
        let g = if i % 3 == 0 { "1" } else { "2" };
        let (lon, lat) = (
            13.3 + (i as f64 * 0.618_034).fract() * 0.1,
            52.5 + (i as f64 * 0.414_214).fract() * 0.05,
        );
        let rec = image_json(
            5000 + i,
            g,
            &format!("s{}", i / 50),
            1_600_000_000_000 + i as i64,
            lon,
            lat,
            false,
        );
        fs::write(
            input.join(g).join(format!("{}.json", 5000 + i)),
            rec.to_string(),
        )
        .unwrap();
    }
    let out = layers(&input, &["--format", "gpkg"]);
    assert!(out.status.success(), "{}", text(&out));
    let gpkg = input.join("layers").join("mapillary.gpkg");
    let rects = [
        [13.3, 52.5, 13.4, 52.55],
        [13.32, 52.51, 13.35, 52.52],
        [13.399, 52.549, 13.5, 52.6],
        [0.0, 0.0, 1.0, 1.0],
    ];
    {
        let ds = Dataset::open(&gpkg).unwrap();
        assert_eq!(ds.layer_by_name("images").unwrap().feature_count(), n);
        index_agrees_with_a_full_scan(&ds, &rects);
    }
    // Edited afterwards (as in QGIS): the triggers keep the index right.
    let ds = Dataset::open_ex(
        &gpkg,
        gdal::DatasetOptions {
            open_flags: gdal::GdalOpenFlags::GDAL_OF_UPDATE | gdal::GdalOpenFlags::GDAL_OF_VECTOR,
            ..Default::default()
        },
    )
    .unwrap();
    {
        let images = ds.layer_by_name("images").unwrap();
        for fid in [1, 2, 1500, 3000] {
            // SAFETY: a live layer handle; deleting by FID.
            let code = unsafe { gdal_sys::OGR_L_DeleteFeature(images.c_layer(), fid) };
            assert_eq!(code, gdal_sys::OGRErr::OGRERR_NONE);
        }
        let mut f = gdal::vector::Feature::new(images.defn()).unwrap();
        f.set_geometry(gdal::vector::Geometry::from_wkt("POINT (13.33 52.515)").unwrap())
            .unwrap();
        f.create(&images).unwrap();
    }
    index_agrees_with_a_full_scan(&ds, &rects);
}
