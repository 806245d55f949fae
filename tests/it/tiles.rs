//! `fetch --enumerate tiles` and `--audit` against the simulator's vector
//! tiles: the same images as bbox search on a dense area (less the images
//! without geometry, which no tile can hold), computed tiles, filters, the
//! tile budget, dry-run counts, faults, and a clean audit.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use mlysim::{Faults, SimConfig, TruthFilter, WorldSpec};
use serde_json::Value;

use crate::common::*;

/// The dense world's hot spot: about 0.01 x 0.01 degrees, thousands of images.
const HOT: [f64; 4] = [2.345, 48.860, 2.355, 48.870];

/// One line of `listing.jsonl`: the grid and whether it has a position.
fn listing(out: &Path) -> BTreeMap<u64, (String, bool)> {
    let text = std::fs::read_to_string(out.join("listing.jsonl")).unwrap();
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let id: u64 = v["id"].as_str().unwrap().parse().unwrap();
            (
                id,
                (v["grid"].as_str().unwrap().to_string(), !v["lon"].is_null()),
            )
        })
        .collect()
}

fn ids(m: &BTreeMap<u64, (String, bool)>) -> BTreeSet<u64> {
    m.keys().copied().collect()
}

fn dense(images: usize) -> TestEnv {
    TestEnv::with_sim(SimConfig {
        world: WorldSpec::dense(images),
        fuzzy_cap: true,
        ..SimConfig::default()
    })
}

/// Runs `fetch ARGS` into `<temp>/<dir>` with the simulator's tiles URL; asserts exit 0.
fn fetch_into(env: &TestEnv, dir: &str, args: &[&str]) -> (std::path::PathBuf, String) {
    let out = env.path().join(dir);
    let tiles = env.sim().tiles_url();
    let mut all = vec!["--output", out.to_str().unwrap(), "--tiles-url", &tiles];
    all.extend_from_slice(args);
    let o = env.fetch(&all);
    assert_success(&o);
    (out, stdout(&o))
}

fn summary_value(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no `{key}` line in:\n{text}"))
        .to_string()
}

#[test]
fn tiles_and_search_give_the_same_images_on_a_dense_area() {
    let env = dense(12_000);
    let b = env.sim().world().spec().bbox;
    // 4x3 cells of 0.01 degrees: cell edges fall on the world's snapped images.
    let common = [
        "--bbox",
        &bbox_arg(b),
        "--grid",
        "4x3",
        "--size",
        "256",
        "--dry-run",
        "--enumerate",
        "search",
    ];
    let (s_out, _) = fetch_into(&env, "search", &common);
    let search_calls_before = env.sim().stats().search_calls;
    let mut args = common[..common.len() - 2].to_vec();
    args.extend(["--enumerate", "tiles"]);
    let (t_out, text) = fetch_into(&env, "tiles", &args);
    let search = listing(&s_out);
    let tiles = listing(&t_out);

    // Search lists what the search index holds; tiles hold every image with
    // a position. The difference is exactly the images without geometry,
    // which search returns (from its hidden index position) and no tile can.
    let world = env.sim().world();
    let indexed: BTreeSet<u64> = world
        .indexed_truth(b, &TruthFilter::default())
        .into_iter()
        .collect();
    let positioned: BTreeSet<u64> = world
        .ground_truth(b, &TruthFilter::default())
        .into_iter()
        .collect();
    assert!(positioned.len() > 10_000, "dense: {}", positioned.len());
    assert_eq!(ids(&search), indexed);
    assert_eq!(ids(&tiles), positioned);
    let only_search: Vec<u64> = ids(&search).difference(&ids(&tiles)).copied().collect();
    assert!(
        !only_search.is_empty(),
        "the world has images without geometry"
    );
    assert!(
        only_search.iter().all(|id| !search[id].1),
        "{only_search:?}"
    );
    // Some images lie exactly on inner cell edges (the world snaps a few to
    // 0.001-degree nodes); every image is in the same grid both ways.
    let on_edge = std::fs::read_to_string(t_out.join("listing.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| {
            let lon = v["lon"].as_f64().unwrap();
            let lat = v["lat"].as_f64().unwrap();
            [2.34, 2.35, 2.36].iter().any(|e| (lon - e).abs() < 1e-12)
                || [48.86, 48.87].iter().any(|e| (lat - e).abs() < 1e-12)
        })
        .count();
    assert!(on_edge > 0, "images on cell edges");
    for (id, (grid, _)) in &tiles {
        assert_eq!(&search[id].0, grid, "image {id}");
    }

    // The tiles run used tiles and batches, no searches but the preflight.
    let rec = run_record(&t_out);
    assert_schema("run.schema.json", &rec);
    let c = &rec["totals"];
    assert!(
        rec["grids"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["listing"] == "assumed_complete")
    );
    let n_tiles = c["tiles"].as_u64().unwrap();
    assert!(n_tiles >= 4, "{c}");
    // One more tile call: the preflight's z0 tile.
    assert_eq!(c["tile_calls"].as_u64(), Some(n_tiles + 1));
    let batches = c["batch_calls"].as_u64().unwrap();
    assert!(batches * 100 >= tiles.len() as u64 && batches <= tiles.len() as u64 / 100 + 20);
    assert_eq!(c["search_calls"].as_u64(), Some(1), "the preflight only");
    assert_eq!(summary_value(&text, "tiles (z14)"), n_tiles.to_string());
    assert_eq!(summary_value(&text, "batch calls"), batches.to_string());
    let stats = env.sim().stats();
    assert_eq!(stats.tile_calls, n_tiles + 1);
    // The simulator counts image_ids lookups as searches (same endpoint).
    assert_eq!(stats.search_calls - search_calls_before, 1 + batches);
    assert_eq!(stats.token_in_query, 0, "the token goes in the header");
    assert_schema("run.schema.json", &run_record(&s_out));
}

#[test]
fn computed_tiles_with_position_computed() {
    let env = dense(6_000);
    let common = [
        "--bbox",
        &bbox_arg(HOT),
        "--size",
        "256",
        "--dry-run",
        "--position",
        "computed",
    ];
    let (s_out, _) = fetch_into(&env, "search", &common);
    let mut args = common.to_vec();
    args.extend(["--enumerate", "tiles"]);
    let (t_out, _) = fetch_into(&env, "tiles", &args);
    let (search, tiles) = (ids(&listing(&s_out)), ids(&listing(&t_out)));

    let world = env.sim().world();
    let in_box = |p: [f64; 2]| p[0] >= HOT[0] && p[0] <= HOT[2] && p[1] >= HOT[1] && p[1] <= HOT[3];
    let computed: BTreeSet<u64> = world
        .images()
        .iter()
        .filter(|i| i.computed_geometry.is_some_and(in_box))
        .map(|i| i.id)
        .collect();
    let original: BTreeSet<u64> = world
        .ground_truth(HOT, &TruthFilter::default())
        .into_iter()
        .collect();
    assert!(computed.len() > 1000);
    assert_ne!(computed, original, "positions differ near the edges");
    assert_eq!(
        tiles, computed,
        "placed by the computed tileset's positions"
    );
    // Search falls back to the original position when there is no computed
    // one; the computed tiles leave those images out.
    assert!(tiles.is_subset(&search));
    for id in search.difference(&tiles) {
        assert!(
            world.get(*id).unwrap().computed_geometry.is_none(),
            "image {id}"
        );
    }
    assert_eq!(run_record(&t_out)["request"]["position"], "computed");
}

#[test]
fn tile_filters_match_the_ground_truth() {
    let env = dense(6_000);
    let world = env.sim().world();
    // The organization with the most images in the hot spot.
    let mut orgs: BTreeMap<u64, usize> = BTreeMap::new();
    for id in world.ground_truth(HOT, &TruthFilter::default()) {
        if let Some(o) = world.get(id).unwrap().organization {
            *orgs.entry(o).or_default() += 1;
        }
    }
    let org = orgs.iter().max_by_key(|(_, n)| **n).unwrap().0.to_string();
    let (out, _) = fetch_into(
        &env,
        "tiles",
        &[
            "--bbox",
            &bbox_arg(HOT),
            "--size",
            "256",
            "--dry-run",
            "--enumerate",
            "tiles",
            "--since",
            "2016-01-01",
            "--until",
            "2024-12-31",
            "--pano",
            "exclude",
            "--organization",
            &org,
        ],
    );
    let filter = TruthFilter {
        since_ms: Some(1_451_606_400_000),
        until_ms: Some(1_735_689_599_999),
        pano: Some(false),
        organization: Some(org.clone()),
        ..TruthFilter::default()
    };
    let truth: BTreeSet<u64> = world.ground_truth(HOT, &filter).into_iter().collect();
    assert!(truth.len() > 20, "{}", truth.len());
    assert_eq!(ids(&listing(&out)), truth);
}

#[test]
fn more_tiles_than_the_budget_is_refused_before_anything() {
    let env = dense(2_000);
    let b = env.sim().world().spec().bbox;
    let tiles = env.sim().tiles_url();
    for extra in [
        vec!["--enumerate", "tiles", "--tile-budget", "3"],
        vec!["--audit", "--tile-budget", "1"],
    ] {
        let bb = bbox_arg(b);
        let mut args = vec!["--bbox", &bb, "--tiles-url", &tiles, "--dry-run"];
        args.extend(extra.iter().copied());
        let o = env.fetch(&args);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("vector tiles, more than --tile-budget"),
            "{err}"
        );
        let budget = format!("--tile-budget {}", extra[extra.len() - 1]);
        assert!(err.contains(&budget), "{err}");
        assert!(!env.out().exists(), "nothing written");
        let s = env.sim().stats();
        assert_eq!((s.tile_calls, s.search_calls), (0, 0), "nothing asked");
    }
}

#[test]
fn dry_runs_report_tile_and_batch_counts() {
    let env = dense(3_000);
    // The sim's own tile maths (an independent implementation) counts the tiles.
    let expected = mlysim::tiles::tiles_covering(HOT, 14).len() as u64;
    let (out, text) = fetch_into(
        &env,
        "tiles",
        &[
            "--bbox",
            &bbox_arg(HOT),
            "--dry-run",
            "--enumerate",
            "tiles",
        ],
    );
    let c = run_record(&out)["runs"][0]["counts"].clone();
    assert_eq!(c["tiles"].as_u64(), Some(expected));
    assert_eq!(summary_value(&text, "tiles (z14)"), expected.to_string());
    // The z14 tiles and the preflight's z0 tile.
    assert_eq!(
        summary_value(&text, "tile calls"),
        (expected + 1).to_string()
    );
    let stats = env.sim().stats();
    assert_eq!(stats.tile_calls, expected + 1);
    // `/images?image_ids=` is the search endpoint: every search call but the
    // preflight was a batch.
    let batches = stats.search_calls - 1;
    assert_eq!(c["batch_calls"].as_u64(), Some(batches));
    assert_eq!(summary_value(&text, "batch calls"), batches.to_string());
    let listed = c["listed"].as_u64().unwrap();
    assert!(batches >= listed.div_ceil(100) && batches <= listed.div_ceil(100) + 5);

    // A search dry run says what tiles would cost.
    let (_, text) = fetch_into(
        &env,
        "search",
        &[
            "--bbox",
            &bbox_arg(HOT),
            "--dry-run",
            "--enumerate",
            "search",
        ],
    );
    let v = summary_value(&text, "with --enumerate tiles");
    assert!(
        v.starts_with(&format!("{expected} tiles and about ")),
        "{v}"
    );
}

#[test]
fn tile_and_batch_faults_still_give_the_full_set() {
    let env = TestEnv::with_sim(SimConfig {
        world: WorldSpec::dense(4_000),
        faults: Faults {
            http500: 0.15,
            reset: 0.15,
            ..Faults::default()
        },
        ..SimConfig::default()
    });
    let (out, _) = fetch_into(
        &env,
        "tiles",
        &[
            "--bbox",
            &bbox_arg(HOT),
            "--grid",
            "2x2",
            "--dry-run",
            "--enumerate",
            "tiles",
            "--retries",
            "12",
        ],
    );
    let truth: BTreeSet<u64> = env
        .sim()
        .world()
        .ground_truth(HOT, &TruthFilter::default())
        .into_iter()
        .collect();
    assert!(truth.len() > 1000);
    assert_eq!(ids(&listing(&out)), truth);
    let rec = run_record(&out);
    assert!(
        rec["grids"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["listing"] == "assumed_complete")
    );
    let s = env.sim().stats();
    let kinds = &s.errors_by_kind;
    let n = |k: &str| kinds.get(k).copied().unwrap_or(0);
    assert!(n("tile_http500") + n("tile_reset") > 0, "{kinds:?}");
    assert!(
        n("http500") + n("reset") > 0,
        "batches hit faults too: {kinds:?}"
    );
    assert!(
        rec["totals"]["tile_calls"].as_u64().unwrap() > rec["totals"]["tiles"].as_u64().unwrap()
    );
}

#[test]
fn audit_on_a_consistent_simulator_finds_no_differences() {
    let env = dense(6_000);
    let b = env.sim().world().spec().bbox;
    let common = [
        "--bbox",
        &bbox_arg(b),
        "--grid",
        "2x2",
        "--size",
        "256",
        "--dry-run",
        "--enumerate",
        "search",
    ];
    let (plain, _) = fetch_into(&env, "plain", &common);
    let mut args = common.to_vec();
    args.push("--audit");
    let (audited, text) = fetch_into(&env, "audited", &args);

    let audit = read_json(&audited.join("audit.json"));
    assert_schema("audit.schema.json", &audit);
    let t = &audit["totals"];
    assert_eq!(t["boxes"].as_u64(), Some(8), "{audit:#}");
    assert_eq!(t["boxes_with_differences"].as_u64(), Some(0), "{audit:#}");
    assert_eq!(t["only_search"].as_u64(), Some(0));
    assert_eq!(t["only_tiles"].as_u64(), Some(0));
    let listed: u64 = audit["boxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["tiles"]["listed"].as_u64().unwrap())
        .sum();
    assert!(listed > 500, "the sample holds images: {listed}");
    assert!(t["tile_calls"].as_u64().unwrap() >= 8);
    assert_eq!(
        summary_value(&text, "audit"),
        "8 boxes, 0 with differences: 0 images only by search, 0 only by tiles (audit.json)"
    );

    // The audit changes nothing of the fetch: same listing, same counts.
    let read = |p: &Path| std::fs::read_to_string(p.join("listing.jsonl")).unwrap();
    assert_eq!(read(&plain), read(&audited));
    let (a, p) = (run_record(&audited), run_record(&plain));
    assert_eq!(a["totals"]["listed"], p["totals"]["listed"]);
    assert_eq!(a["totals"]["search_calls"], p["totals"]["search_calls"]);
    assert_eq!(
        a["totals"]["tile_calls"].as_u64(),
        Some(1),
        "the tiles preflight only"
    );
    assert!(!plain.join("audit.json").exists());
}

#[test]
fn a_wrong_tiles_url_is_an_error_and_an_empty_area_is_complete() {
    let env = dense(1_000);
    let wrong = format!("{}/not-here", env.sim().tiles_url());
    let o = env.fetch(&[
        "--bbox",
        &bbox_arg(HOT),
        "--dry-run",
        "--enumerate",
        "tiles",
        "--tiles-url",
        &wrong,
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("does not serve the `mly1_public` tileset"),
        "{}",
        stderr(&o)
    );
    assert!(!env.out().exists(), "nothing written");

    // Far from every image (southern and western hemispheres): empty tiles,
    // nothing listed, a complete listing.
    let empty = [-70.66, -33.46, -70.64, -33.44];
    let (out, text) = fetch_into(
        &env,
        "empty",
        &[
            "--bbox",
            &bbox_arg(empty),
            "--dry-run",
            "--enumerate",
            "tiles",
        ],
    );
    assert_eq!(summary_value(&text, "listed"), "0");
    let rec = run_record(&out);
    assert_eq!(rec["grids"][0]["listing"], "assumed_complete");
    assert!(rec["totals"]["tiles"].as_u64().unwrap() >= 1);
    assert_eq!(rec["totals"]["batch_calls"].as_u64(), Some(0));
}

/// A minimal HTTP/1.1 server on loopback for cases the simulator cannot
/// produce: answers each GET with `handler(path_and_query)`. Returns its root URL.
fn serve(handler: impl Fn(&str) -> (u16, Vec<u8>) + Send + Sync + 'static) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handler = std::sync::Arc::new(handler);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let handler = std::sync::Arc::clone(&handler);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                reader.read_line(&mut first).ok();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                }
                let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
                let (status, body) = handler(&path);
                let mut s = stream;
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                s.write_all(head.as_bytes()).ok();
                s.write_all(&body).ok();
            });
        }
    });
    url
}

#[test]
fn ids_missing_from_the_batch_answer_are_listing_failures() {
    use mlysim::mvt::{LayerBuilder, Value as MvtValue};
    let (x, y) = mlysim::tiles::tile_of(2.35, 48.865, 14);
    let points: Vec<(u64, (i32, i32))> = vec![
        (1001, (2000, 2000)),
        (1002, (2100, 2000)),
        (1003, (2000, 2100)),
    ];
    let mut layer = LayerBuilder::new("image", 4096);
    for (i, (id, p)) in points.iter().enumerate() {
        layer.add_point(
            i as u64,
            *p,
            &[
                ("id", MvtValue::Int(*id as i64)),
                ("captured_at", MvtValue::Int(1_600_000_000_000)),
                ("is_pano", MvtValue::Bool(false)),
            ],
        );
    }
    let mut tile = Vec::new();
    layer.finish_into(&mut tile);
    let objects: Vec<(u64, [f64; 2])> = points
        .iter()
        .map(|(id, p)| {
            let ll = mlysim::tiles::tile_point_to_lonlat(14, x, y, f64::from(p.0), f64::from(p.1));
            (*id, ll)
        })
        .collect();
    let lookups = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = std::sync::Arc::clone(&lookups);
    let tile_path = format!("/maps/vtp/mly1_public/2/14/{x}/{y}");
    let root = serve(move |path| {
        if path.starts_with(&tile_path) {
            return (200, tile.clone());
        }
        if path.starts_with("/maps/vtp/") {
            return (200, Vec::new());
        }
        if path.contains("image_ids=") {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // 1002 is never returned (deleted since the tile was made, say).
            let data: Vec<Value> = objects
                .iter()
                .filter(|(id, _)| *id != 1002)
                .map(|(id, ll)| {
                    serde_json::json!({"id": id.to_string(), "captured_at": 1_600_000_000_000_i64,
                        "geometry": {"type": "Point", "coordinates": ll}})
                })
                .collect();
            return (
                200,
                serde_json::to_vec(&serde_json::json!({ "data": data })).unwrap(),
            );
        }
        (200, br#"{"data": []}"#.to_vec())
    });
    let env = TestEnv::new();
    let t = mlysim::tiles::tile_bbox(14, x, y);
    let b = [t[0] + 1e-4, t[1] + 1e-4, t[2] - 1e-4, t[3] - 1e-4];
    let o = env
        .cmd()
        .env("MAPILLARY_TOKEN", mlysim::DEMO_TOKEN)
        .args([
            "fetch",
            "--bbox",
            &bbox_arg(b),
            "--dry-run",
            "--enumerate",
            "tiles",
        ])
        .args(["--api-url", &root, "--tiles-url", &root])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "partial: {}{}",
        stdout(&o),
        stderr(&o)
    );
    assert_eq!(ids(&listing(&env.out())), BTreeSet::from([1001, 1003]));
    let rec = run_record(&env.out());
    let g = &rec["grids"][0];
    assert_eq!(g["listing"], "failed");
    let reason = g["failed_boxes"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("missing from the Graph API's image_ids answer") && reason.contains("1002"),
        "{reason}"
    );
    assert_eq!(
        lookups.load(std::sync::atomic::Ordering::Relaxed),
        2,
        "asked once more before it counts as lost"
    );
    assert_eq!(summary_value(&stdout(&o), "failed grids"), "1 (1)");
}

#[test]
fn a_tiles_fetch_downloads_every_image_once() {
    let env = dense(3_000);
    let b = [2.349, 48.864, 2.351, 48.866];
    let tiles = env.sim().tiles_url();
    let o = env.fetch(&[
        "--bbox",
        &bbox_arg(b),
        "--grid",
        "2x2",
        "--size",
        "256",
        "--enumerate",
        "tiles",
        "--tiles-url",
        &tiles,
    ]);
    assert_success(&o);
    let truth: BTreeSet<u64> = env
        .sim()
        .world()
        .ground_truth(b, &TruthFilter::default())
        .into_iter()
        .collect();
    assert!(truth.len() > 30, "{}", truth.len());
    let got = downloaded_ids(&env.out());
    assert!(got.values().all(|g| g.len() == 1), "each image in one grid");
    assert_eq!(got.keys().copied().collect::<BTreeSet<u64>>(), truth);
    let rec = run_record(&env.out());
    assert_schema("run.schema.json", &rec);
    assert_eq!(rec["runs"][0]["outcome"], "complete");
    let stats = env.sim().stats();
    // The images came from tiles (then id batches), not from bbox searches:
    // the one search is the preflight that checks the token.
    let totals = &rec["totals"];
    assert!(stats.tiles_served > 0, "no tile was served");
    assert!(totals["tile_calls"].as_u64() > Some(0), "{totals}");
    assert!(totals["batch_calls"].as_u64() > Some(0), "{totals}");
    assert_eq!(totals["search_calls"], 1, "{totals}");
    assert_eq!(stats.token_in_query, 0);
    assert_eq!(stats.auth_header_on_cdn, 0);
}

#[test]
fn the_api_daily_tile_budget_running_out_stops_the_listing() {
    let env = TestEnv::with_sim(SimConfig {
        world: WorldSpec::dense(2_000),
        tiles_per_day: 3,
        ..SimConfig::default()
    });
    let b = env.sim().world().spec().bbox;
    let tiles = env.sim().tiles_url();
    let o = env.fetch(&[
        "--bbox",
        &bbox_arg(b),
        "--dry-run",
        "--enumerate",
        "tiles",
        "--tiles-url",
        &tiles,
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("daily tile budget"), "{}", stderr(&o));
    // It stops asking: no retry storm over the remaining tiles.
    assert!(
        env.sim().stats().tile_calls <= 3 + 8,
        "{:?}",
        env.sim().stats()
    );
    assert_eq!(run_record(&env.out())["runs"][0]["outcome"], "failed");
}

#[test]
fn audit_with_computed_tiles_and_a_tiles_listing() {
    let env = dense(4_000);
    let (out, _) = fetch_into(
        &env,
        "out",
        &[
            "--bbox",
            &bbox_arg(HOT),
            "--dry-run",
            "--enumerate",
            "tiles",
            "--position",
            "computed",
            "--audit",
        ],
    );
    let audit = read_json(&out.join("audit.json"));
    assert_schema("audit.schema.json", &audit);
    assert_eq!(audit["position"], "computed");
    assert_eq!(audit["tileset"], "mly1_computed_public");
    let t = &audit["totals"];
    assert_eq!(t["only_search"].as_u64(), Some(0), "{audit:#}");
    // Tiles may find more: search asks by original GPS in the box widened by
    // 0.0002 degrees, so an image whose computed position is inside but whose
    // GPS is farther out (the world's grid-snapped images are 30-50 m off) is
    // only in the computed tiles. The audit reports exactly those.
    for b in audit["boxes"].as_array().unwrap() {
        let bb: Vec<f64> = serde_json::from_value(b["bbox"].clone()).unwrap();
        for id in b["only_tiles"].as_array().unwrap() {
            let id: u64 = id.as_str().unwrap().parse().unwrap();
            let g = env.sim().world().get(id).unwrap().geometry.unwrap();
            let m = 0.0002;
            let near =
                g[0] >= bb[0] - m && g[0] <= bb[2] + m && g[1] >= bb[1] - m && g[1] <= bb[3] + m;
            assert!(
                !near,
                "image {id} at {g:?} should have been found by search in {bb:?}"
            );
        }
    }
    // Images without a computed position are listed apart, each one really without it.
    for b in audit["boxes"].as_array().unwrap() {
        for id in b["search_without_computed_position"].as_array().unwrap() {
            let id: u64 = id.as_str().unwrap().parse().unwrap();
            assert!(
                env.sim()
                    .world()
                    .get(id)
                    .unwrap()
                    .computed_geometry
                    .is_none()
            );
        }
    }
    // The run's counts leave the audit's calls out.
    let c = &run_record(&out)["totals"];
    assert_eq!(
        c["tile_calls"].as_u64().unwrap(),
        c["tiles"].as_u64().unwrap() + 1
    );
    let sim_tiles = env.sim().stats().tile_calls;
    assert_eq!(
        sim_tiles,
        c["tile_calls"].as_u64().unwrap() + t["tile_calls"].as_u64().unwrap()
    );
}
