//! Polygon study areas (--aoi) and thinning (--min-spacing) against the simulator.

use std::collections::BTreeSet;
use std::path::Path;

use mlysim::{SimConfig, TruthFilter};

use crate::common::*;
use crate::fixtures::fixture;

/// The demo world is around 8.50..8.56, 47.35..47.39 (Zurich); the polygon
/// with a hole is `fixtures/aoi/zurich-wgs84.geojson`.
const MULTI: &str = r#"{"type":"FeatureCollection","features":[
 {"type":"Feature","properties":{"name":"west"},"geometry":{"type":"Polygon","coordinates":[
   [[8.505,47.355],[8.515,47.355],[8.515,47.365],[8.505,47.365],[8.505,47.355]]]}},
 {"type":"Feature","properties":{"name":"centre"},"geometry":{"type":"MultiPolygon","coordinates":[
   [[[8.528,47.368],[8.533,47.368],[8.533,47.373],[8.528,47.373],[8.528,47.368]]],
   [[[8.545,47.380],[8.552,47.380],[8.552,47.386],[8.545,47.386],[8.545,47.380]]]]}}]}"#;

/// The listed ids that have a position. (Images without any position are
/// kept when a box touching the polygon returns them; they are counted
/// apart and tested in fetch.rs.)
fn listing_ids(out: &Path) -> BTreeSet<u64> {
    listing(out)
        .iter()
        .filter(|v| !v["lon"].is_null())
        .map(id_of)
        .collect()
}

/// The ids of the world whose original position the polygon file contains.
fn truth_in(env: &TestEnv, file: &Path, filter: Option<&str>) -> BTreeSet<u64> {
    let aoi = mlyexport::aoi::Aoi::read(file, filter).unwrap();
    env.sim()
        .world()
        .images()
        .iter()
        .filter(|i| {
            i.geometry
                .and_then(|g| mlyexport::model::LonLat::new(g[0], g[1]))
                .is_some_and(|p| aoi.contains(p))
        })
        .map(|i| i.id)
        .collect()
}

/// The same answer for rectangular polygons without `mlyexport::aoi`: inside
/// (or on) one of `include` and not strictly inside any of `exclude` (holes).
fn rect_truth(env: &TestEnv, include: &[[f64; 4]], exclude: &[[f64; 4]]) -> BTreeSet<u64> {
    let on =
        |p: [f64; 2], r: &[f64; 4]| (r[0]..=r[2]).contains(&p[0]) && (r[1]..=r[3]).contains(&p[1]);
    let strictly =
        |p: [f64; 2], r: &[f64; 4]| r[0] < p[0] && p[0] < r[2] && r[1] < p[1] && p[1] < r[3];
    env.sim()
        .world()
        .images()
        .iter()
        .filter(|i| {
            i.geometry.is_some_and(|p| {
                include.iter().any(|r| on(p, r)) && !exclude.iter().any(|r| strictly(p, r))
            })
        })
        .map(|i| i.id)
        .collect()
}

#[test]
fn a_polygon_with_a_hole_keeps_exactly_the_images_inside() {
    let env = TestEnv::with_sim(SimConfig::default());
    let f = env.path().join("area.geojson");
    std::fs::copy(fixture("aoi/zurich-wgs84.geojson"), &f).unwrap();
    let o = env.fetch(&["--aoi", "area.geojson", "--dry-run"]);
    assert_success(&o);
    let truth = truth_in(&env, &f, None);
    let hole = [8.5300, 47.3700, 8.5310, 47.3710];
    assert_eq!(
        truth,
        rect_truth(&env, &[[8.522, 47.362, 8.540, 47.378]], &[hole])
    );
    assert!(truth.len() > 100, "{}", truth.len());
    assert_eq!(listing_ids(&env.out()), truth);
    // Nothing from the hole.
    let in_hole: BTreeSet<u64> = env
        .sim()
        .world()
        .ground_truth([8.5301, 47.3701, 8.5309, 47.3709], &TruthFilter::default())
        .into_iter()
        .collect();
    assert!(!in_hole.is_empty() && in_hole.is_disjoint(&listing_ids(&env.out())));
    let rec = run_record(&env.out());
    assert_eq!(rec["request"]["area"]["kind"], "aoi");
    assert_eq!(
        rec["request"]["area"]["aoi"]["geometry"]["type"],
        "MultiPolygon"
    );
    assert_schema("run.schema.json", &rec);
}

#[test]
fn a_multipolygon_with_a_where_filter_and_grid_cells_that_keep_their_numbers() {
    let env = TestEnv::with_sim(SimConfig::default());
    let f = env.path().join("parts.geojson");
    std::fs::write(&f, MULTI).unwrap();
    let o = env.fetch(&[
        "--aoi",
        "parts.geojson",
        "--dry-run",
        "--bbox",
        "8.50,47.35,8.56,47.39",
        "--grid",
        "3x2",
    ]);
    assert_success(&o);
    let (got, truth) = (listing_ids(&env.out()), truth_in(&env, &f, None));
    let west = [8.505, 47.355, 8.515, 47.365];
    let centre_parts = [
        [8.528, 47.368, 8.533, 47.373],
        [8.545, 47.380, 8.552, 47.386],
    ];
    let parts = [west, centre_parts[0], centre_parts[1]];
    assert_eq!(truth, rect_truth(&env, &parts, &[]));
    let only_got: Vec<_> = got.difference(&truth).take(5).collect();
    let only_truth: Vec<_> = truth.difference(&got).take(5).collect();
    assert!(
        only_got.is_empty() && only_truth.is_empty(),
        "{} vs {}: {only_got:?} {only_truth:?}",
        got.len(),
        truth.len()
    );
    let rec = run_record(&env.out());
    let grids: Vec<&str> = rec["grids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["grid"].as_str().unwrap())
        .collect();
    // Cells of 0.02 x 0.02 deg numbered from the north-west: the parts touch cells 2, 3, 4 and 5 only.
    assert_eq!(grids, ["2", "3", "4", "5"]);

    let env2 = TestEnv::with_sim(SimConfig::default());
    let f2 = env2.path().join("parts.geojson");
    std::fs::write(&f2, MULTI).unwrap();
    let o = env2.fetch(&[
        "--aoi",
        "parts.geojson",
        "--aoi-where",
        "name = 'centre'",
        "--dry-run",
    ]);
    assert_success(&o);
    let centre = truth_in(&env2, &f2, Some("name = 'centre'"));
    assert_eq!(centre, rect_truth(&env2, &centre_parts, &[]));
    assert!(!centre.is_empty());
    assert_eq!(listing_ids(&env2.out()), centre);
}

#[test]
fn a_polygon_in_a_projected_crs_is_reprojected() {
    let env = TestEnv::with_sim(SimConfig::default());
    std::fs::copy(
        fixture("aoi/zurich-wgs84.geojson"),
        env.path().join("area.geojson"),
    )
    .unwrap();
    // The same polygon in Swiss LV95 (EPSG:2056), made with ogr2ogr.
    std::fs::copy(
        fixture("aoi/zurich-lv95.geojson"),
        env.path().join("lv95.geojson"),
    )
    .unwrap();
    let o = env.fetch(&["--aoi", "lv95.geojson", "--dry-run", "--output", "lv95"]);
    assert_success(&o);
    let o = env.fetch(&["--aoi", "area.geojson", "--dry-run", "--output", "wgs84"]);
    assert_success(&o);
    let a = listing_ids(&env.path().join("lv95"));
    let b = listing_ids(&env.path().join("wgs84"));
    // Reprojection moves vertices by micrometres: at most an image or two on the very edge differ.
    assert!(
        a.symmetric_difference(&b).count() <= 2,
        "{} vs {}",
        a.len(),
        b.len()
    );
    assert!(a.len() > 100);
}

#[test]
fn bad_aoi_files_are_clear_errors() {
    let env = TestEnv::with_sim(SimConfig::default());
    let line = r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{},"geometry":{"type":"LineString","coordinates":[[8.5,47.35],[8.51,47.36]]}}]}"#;
    std::fs::write(env.path().join("line.geojson"), line).unwrap();
    std::fs::write(
        env.path().join("empty.geojson"),
        r#"{"type":"FeatureCollection","features":[]}"#,
    )
    .unwrap();
    std::fs::write(env.path().join("garbage.geojson"), "this is not geojson").unwrap();
    std::fs::copy(
        fixture("aoi/zurich-wgs84.geojson"),
        env.path().join("area.geojson"),
    )
    .unwrap();
    let st = std::process::Command::new("ogr2ogr")
        .args(["-f", "ESRI Shapefile", "nocrs.shp", "area.geojson"])
        .current_dir(env.path())
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::remove_file(env.path().join("nocrs.prj")).unwrap();
    for (file, expect) in [
        ("line.geojson", "not a Polygon"),
        ("empty.geojson", "has no polygon"),
        ("garbage.geojson", "cannot open"),
        ("missing.geojson", "cannot open"),
        ("nocrs.shp", "has no CRS"),
    ] {
        let o = env.fetch(&["--aoi", file, "--dry-run"]);
        assert_eq!(o.status.code(), Some(2), "{file}: {}", stderr(&o));
        assert!(stderr(&o).contains(expect), "{file}: {}", stderr(&o));
        assert!(!env.out().exists(), "{file}: nothing written");
    }
    let o = env.fetch(&[
        "--aoi",
        "area.geojson",
        "--aoi-where",
        "name = 'nowhere'",
        "--dry-run",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no polygon matching --aoi-where"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn thinning_keeps_spacing_along_sequences_and_is_repeatable() {
    let env = TestEnv::with_sim(SimConfig::default());
    let b = env.sim().world().spec().bbox;
    let args = ["--bbox", &bbox_arg(b), "--min-spacing", "25m", "--dry-run"];
    let o = env.fetch(&args);
    assert_success(&o);
    let first = std::fs::read_to_string(env.out().join("listing.jsonl")).unwrap();
    let rec = run_record(&env.out());
    let thinned = rec["totals"]["thinned"].as_u64().unwrap();
    let listed = rec["totals"]["listed"].as_u64().unwrap();
    assert!(
        thinned > listed / 3,
        "25 m spacing on 3-15 m steps drops many: {thinned} of {listed}"
    );
    assert_eq!(first.lines().count() as u64, listed - thinned);
    assert_eq!(rec["grids"][0]["thinned"].as_u64(), Some(thinned));

    // Along each sequence, in capture order, kept images are >= 25 m apart.
    let mut by_seq: std::collections::BTreeMap<String, Vec<(String, f64, f64)>> =
        Default::default();
    for l in first.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        if let (Some(s), Some(lon), Some(lat)) =
            (v["sequence"].as_str(), v["lon"].as_f64(), v["lat"].as_f64())
        {
            by_seq.entry(s.to_string()).or_default().push((
                v["captured_at"].as_str().unwrap().to_string(),
                lon,
                lat,
            ));
        }
    }
    let mut pairs = 0;
    for v in by_seq.values_mut() {
        v.sort_by(|a, b| a.0.cmp(&b.0));
        for w in v.windows(2) {
            let a = mlyexport::model::LonLat::new(w[0].1, w[0].2).unwrap();
            let b = mlyexport::model::LonLat::new(w[1].1, w[1].2).unwrap();
            assert!(a.distance_m(b) >= 25.0 - 1e-6, "{} m", a.distance_m(b));
            pairs += 1;
        }
    }
    assert!(pairs > 50);

    // The same command again decides the same.
    std::fs::remove_dir_all(env.out()).unwrap();
    assert_eq!(env.fetch(&args).status.code(), Some(0));
    assert_eq!(
        std::fs::read_to_string(env.out().join("listing.jsonl")).unwrap(),
        first
    );
}

#[test]
fn layers_draw_grid_cells_clipped_to_the_polygon_with_areas_to_match() {
    let env = TestEnv::with_sim(SimConfig::default());
    std::fs::copy(
        fixture("aoi/zurich-wgs84.geojson"),
        env.path().join("area.geojson"),
    )
    .unwrap();
    let o = env.fetch(&["--aoi", "area.geojson", "--grid", "2x2", "--size", "256"]);
    assert_success(&o);
    let o = env
        .cmd()
        .args([
            "layers",
            "--no-exif",
            "--format",
            "gpkg,geojson",
            "--as-of",
            "2026-01-01",
        ])
        .output()
        .unwrap();
    assert_success(&o);
    let layers = env.out().join("layers");
    let cells = read_json(&layers.join("grid_cells.geojson"));
    let features = cells["features"].as_array().unwrap();
    assert_eq!(features.len(), 4);
    let mut with_hole = 0;
    for f in features {
        assert_eq!(f["geometry"]["type"], "MultiPolygon");
        let polys = f["geometry"]["coordinates"].as_array().unwrap();
        with_hole += polys
            .iter()
            .filter(|p| p.as_array().unwrap().len() > 1)
            .count();
        // Every vertex lies inside the polygon's box: the cell is clipped.
        for ring in polys.iter().flat_map(|p| p.as_array().unwrap()) {
            for pt in ring.as_array().unwrap() {
                let (x, y) = (pt[0].as_f64().unwrap(), pt[1].as_f64().unwrap());
                assert!(
                    (8.522..=8.540).contains(&x) && (47.362..=47.378).contains(&y),
                    "{x},{y}"
                );
            }
        }
    }
    assert_eq!(
        with_hole, 0,
        "the hole sits on the cells' shared corner, so it is cut into notches"
    );
    // Areas: the four clipped cells add up to the polygon's area (ring minus hole), not the boxes'.
    let coverage = read_json(&layers.join("coverage.json"));
    let total: f64 = coverage["grids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["area_km2"].as_f64().unwrap())
        .sum();
    let ring_km2 = mlyexport::model::Bbox::new(8.522, 47.362, 8.540, 47.378)
        .unwrap()
        .area_km2();
    let hole_km2 = mlyexport::model::Bbox::new(8.5300, 47.3700, 8.5310, 47.3710)
        .unwrap()
        .area_km2();
    assert!(
        (total - (ring_km2 - hole_km2)).abs() / total < 0.01,
        "{total} vs {}",
        ring_km2 - hole_km2
    );
    // The GeoPackage takes the same shapes and stays valid.
    let ds = gdal::Dataset::open(layers.join("mapillary.gpkg")).unwrap();
    use gdal::vector::LayerAccess;
    let mut layer = ds.layer_by_name("grid_cells").unwrap();
    assert_eq!(layer.feature_count(), 4);
    for f in layer.features() {
        assert_eq!(f.geometry().unwrap().geometry_name(), "MULTIPOLYGON");
    }
    assert_valid_gpkg(&layers.join("mapillary.gpkg"));
}
