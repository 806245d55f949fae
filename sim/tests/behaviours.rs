//! HTTP tests of the behaviours the public record cannot confirm: the fuzzy cap's range, the
//! position the bbox filter uses, the order of results, tiles that lag the Graph, schema drift
//! in tiles, and images that move between two runs.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use mlysim::tiles::{self, Tileset};
use mlysim::{
    BboxPosition, DEMO_TOKEN, ResultOrder, Sim, SimConfig, SimImage, TileDrift, TruthFilter, World,
    WorldSpec,
};
use serde_json::Value;

mod common;
use common::*;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .no_gzip()
        .build()
        .unwrap()
}

async fn get(url: &str) -> (u16, Value) {
    let r = client()
        .get(url)
        .header("Authorization", format!("OAuth {DEMO_TOKEN}"))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

fn box_text(b: [f64; 4]) -> String {
    format!("{},{},{},{}", b[0], b[1], b[2], b[3])
}

/// The demo world's hot box (more than 2,000 images).
fn hot_box() -> [f64; 4] {
    let c = WorldSpec::demo().hotspots[0].center;
    [c[0] - 0.0025, c[1] - 0.0025, c[0] + 0.0025, c[1] + 0.0025]
}

/// The rows of a bbox search with the given bbox text.
async fn search(sim: &Sim, bbox_text: &str, fields: &str) -> Vec<Value> {
    let (s, v) = get(&format!(
        "{}/images?bbox={bbox_text}&fields={fields}",
        sim.graph_url()
    ))
    .await;
    assert_eq!(s, 200, "{v}");
    v["data"].as_array().unwrap().clone()
}

fn ids(rows: &[Value]) -> Vec<u64> {
    rows.iter()
        .map(|r| r["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

fn sorted(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable();
    v
}

const M: f64 = 1.0 / 111_320.0;

/// A box of `r` metres around a position.
fn around(p: [f64; 2], r: f64) -> [f64; 4] {
    let dx = r * M / p[1].to_radians().cos();
    [p[0] - dx, p[1] - r * M, p[0] + dx, p[1] + r * M]
}

fn far_apart(img: &SimImage) -> bool {
    match (img.geometry, img.computed_geometry) {
        (Some(g), Some(c)) => ((g[1] - c[1]) / M).abs() > 25.0,
        _ => false,
    }
}

#[tokio::test]
async fn computed_bbox_filter_uses_computed_positions() {
    let spec = WorldSpec::demo().with_computed_offset_m(50.0);
    let world = Arc::new(World::generate(&spec));
    let computed = Sim::spawn_with_world(
        SimConfig {
            bbox_position: BboxPosition::Computed,
            ..SimConfig::default()
        },
        world.clone(),
        0,
        0,
    )
    .unwrap();
    let original = Sim::spawn_with_world(SimConfig::default(), world.clone(), 0, 0).unwrap();
    let img = world.images().iter().find(|i| far_apart(i)).unwrap();
    let (g, c) = (img.geometry.unwrap(), img.computed_geometry.unwrap());
    // A 5 m box around the computed position: the GPS position (> 25 m away) is outside.
    let b = around(c, 5.0);
    assert!(!mlysim::world::in_box(g, b));
    let got = ids(&search(&computed, &box_text(b), "id").await);
    assert!(got.contains(&img.id));
    let truth = world.search_truth(b, &TruthFilter::default(), BboxPosition::Computed);
    assert_eq!(sorted(got), truth);
    assert!(
        !ids(&search(&original, &box_text(b), "id").await).contains(&img.id),
        "the original filter must not find it"
    );
    // Around the GPS position it is the other way round.
    let b = around(g, 5.0);
    assert!(!ids(&search(&computed, &box_text(b), "id").await).contains(&img.id));
    assert!(ids(&search(&original, &box_text(b), "id").await).contains(&img.id));
    // Images without a computed position fall back to their original one.
    let bare = world
        .images()
        .iter()
        .find(|i| i.computed_geometry.is_none() && i.geometry.is_some())
        .unwrap();
    let b = around(bare.geometry.unwrap(), 3.0);
    assert!(ids(&search(&computed, &box_text(b), "id").await).contains(&bare.id));
}

#[tokio::test]
async fn computed_filter_is_exact_over_a_box_and_dense_refusal_counts_it() {
    let spec = WorldSpec::demo().with_computed_offset_m(50.0);
    let world = Arc::new(World::generate(&spec));
    let c = spec.hotspots[0].center;
    let b = [c[0] + 0.0008, c[1] + 0.0008, c[0] + 0.0018, c[1] + 0.0018];
    let truth = world.search_truth(b, &TruthFilter::default(), BboxPosition::Computed);
    assert!(truth.len() > 20 && truth.len() < 2000, "{}", truth.len());
    assert_ne!(truth, world.indexed_truth(b, &TruthFilter::default()));
    let sim = Sim::spawn_with_world(
        SimConfig {
            bbox_position: BboxPosition::Computed,
            dense_refusal: Some(truth.len() - 1),
            ..SimConfig::default()
        },
        world.clone(),
        0,
        0,
    )
    .unwrap();
    let (s, v) = get(&format!("{}/images?bbox={}", sim.graph_url(), box_text(b))).await;
    assert_eq!(s, 500, "{v}");
    let sim = Sim::spawn_with_world(
        SimConfig {
            bbox_position: BboxPosition::Computed,
            dense_refusal: Some(truth.len()),
            ..SimConfig::default()
        },
        world,
        0,
        0,
    )
    .unwrap();
    assert_eq!(sorted(ids(&search(&sim, &box_text(b), "id").await)), truth);
}

async fn ordered_sim(order: ResultOrder) -> Sim {
    Sim::spawn(SimConfig {
        cap: 100,
        result_order: order,
        ..SimConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn each_result_order_decides_what_truncation_keeps() {
    let b = hot_box();
    let text = box_text(b);
    let world = World::generate(&WorldSpec::demo());
    let all = world.indexed_in(b);
    assert!(all.len() > 2000);

    let sim = ordered_sim(ResultOrder::EdgeFirst).await;
    let rows = search(&sim, &text, "id").await;
    assert_eq!(rows.len(), 100);
    let d = |id: u64| {
        let [x, y] = world.get(id).unwrap().index_pos;
        (x - b[0]).min(b[2] - x).min(y - b[1]).min(b[3] - y)
    };
    let got = ids(&rows);
    assert!(got.windows(2).all(|p| d(p[0]) <= d(p[1])));
    let edge = got.clone();

    let sim = ordered_sim(ResultOrder::ByTime).await;
    let got = ids(&search(&sim, &text, "id,captured_at").await);
    let mut newest: Vec<&SimImage> = all.clone();
    newest.sort_by_key(|i| (std::cmp::Reverse(i.captured_at), i.id));
    let want: Vec<u64> = newest.iter().take(100).map(|i| i.id).collect();
    assert_eq!(got, want);

    let sim = ordered_sim(ResultOrder::Random).await;
    let first = ids(&search(&sim, &text, "id").await);
    assert_eq!(first.len(), 100);
    assert_eq!(first, ids(&search(&sim, &text, "id").await), "stable");
    assert_ne!(first, edge);
    assert_ne!(first, want);
    // The same box written differently is another shuffle.
    let other = format!("{},{},{},{}0", b[0], b[1], b[2], b[3]);
    assert_ne!(first, ids(&search(&sim, &other, "id").await));
    // Not biased to the edge: the kept images' mean edge distance is like the whole box's.
    let mean = |v: &[u64]| v.iter().map(|&i| d(i)).sum::<f64>() / v.len() as f64;
    let whole: Vec<u64> = all.iter().map(|i| i.id).collect();
    assert!(mean(&first) > 0.5 * mean(&whole), "{}", mean(&first));
    let known: HashSet<u64> = whole.into_iter().collect();
    assert!(first.iter().all(|i| known.contains(i)));
}

#[tokio::test]
async fn random_order_depends_on_the_world_seed() {
    let b = box_text(hot_box());
    let a = ordered_sim(ResultOrder::Random).await;
    let mut spec = WorldSpec::demo();
    spec.seed += 1;
    let world = Arc::new(World::generate(&spec));
    let other = Sim::spawn_with_world(
        SimConfig {
            cap: 100,
            result_order: ResultOrder::Random,
            ..SimConfig::default()
        },
        world,
        0,
        0,
    )
    .unwrap();
    let x = ids(&search(&a, &b, "id").await);
    let y = ids(&search(&other, &b, "id").await);
    assert_ne!(x, y);
}

#[tokio::test]
async fn cap_fuzz_spans_its_range_and_is_stable_per_bbox_text() {
    let sim = Sim::spawn(SimConfig {
        cap: 1000,
        fuzzy_cap: true,
        cap_fuzz: 0.5,
        ..SimConfig::default()
    })
    .unwrap();
    let b = hot_box();
    let mut seen = BTreeSet::new();
    for zeros in 0..24 {
        let text = format!("{},{},{},{}{}", b[0], b[1], b[2], b[3], "0".repeat(zeros));
        let n = search(&sim, &text, "id").await.len();
        assert!((500..=1000).contains(&n), "{n}");
        if zeros < 2 {
            assert_eq!(n, search(&sim, &text, "id").await.len(), "stable");
        }
        seen.insert(n);
    }
    assert!(seen.len() > 12, "{seen:?}");
    assert!(seen.iter().any(|&n| n < 750), "{seen:?}");
    // A cap of 1 is allowed.
    let one = Sim::spawn(SimConfig {
        cap: 1,
        fuzzy_cap: true,
        ..SimConfig::default()
    })
    .unwrap();
    assert_eq!(search(&one, &box_text(b), "id").await.len(), 1);
}

fn tile_url(sim: &Sim, set: &str, z: u8, x: u32, y: u32) -> String {
    format!(
        "{}/maps/vtp/{set}/2/{z}/{x}/{y}?access_token={}",
        sim.tiles_url(),
        DEMO_TOKEN.replace('|', "%7C")
    )
}

async fn fetch(sim: &Sim, set: &str, z: u8, x: u32, y: u32) -> Vec<Layer> {
    let r = client()
        .get(tile_url(sim, set, z, x, y))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{set} {z}/{x}/{y}");
    decode_tile(&r.bytes().await.unwrap())
}

/// Image ids of the z14 `image` layers and the image ids named by the `sequence` layers (as
/// their first image) over the whole world.
async fn tile_ids(sim: &Sim, ts: Tileset) -> (BTreeSet<u64>, BTreeSet<u64>) {
    let (mut images, mut firsts) = (BTreeSet::new(), BTreeSet::new());
    for (x, y) in tiles::tiles_covering(sim.world().spec().bbox, 14) {
        for l in fetch(sim, ts.name(), 14, x, y).await {
            for f in &l.features {
                let p = f.props(&l);
                match l.name.as_str() {
                    "image" => assert!(images.insert(int(&p, "id") as u64)),
                    _ => {
                        firsts.insert(int(&p, "image_id") as u64);
                    }
                }
            }
        }
    }
    (images, firsts)
}

#[tokio::test]
async fn tiles_lag_the_graph_by_the_missing_and_stale_sets() {
    let sim = Sim::spawn(SimConfig {
        tiles_missing: 30,
        tiles_stale: 20,
        ..SimConfig::default()
    })
    .unwrap();
    let (missing, stale) = (sim.tiles_missing_ids(), sim.tiles_stale_ids());
    assert_eq!((missing.len(), stale.len()), (30, 20));
    assert!(missing.windows(2).all(|p| p[0] < p[1]));
    let world = sim.world();
    for ts in [Tileset::Public, Tileset::ComputedPublic] {
        let (images, firsts) = tile_ids(&sim, ts).await;
        let mut want: BTreeSet<u64> = world
            .images()
            .iter()
            .filter(|i| ts.position(i).is_some() && missing.binary_search(&i.id).is_err())
            .map(|i| i.id)
            .collect();
        want.extend(&stale);
        assert_eq!(images, want, "{ts:?}");
        assert!(missing.iter().all(|m| !firsts.contains(m)));
    }
    // The Graph knows the missing images and not the stale ones.
    let m = world.get(missing[0]).unwrap().clone();
    let (s, _) = get(&format!("{}/{}?fields=id", sim.graph_url(), m.id)).await;
    assert_eq!(s, 200);
    let found = ids(&search(&sim, &box_text(around(m.geometry.unwrap(), 2.0)), "id").await);
    assert!(found.contains(&m.id));
    let (s, v) = get(&format!("{}/{}?fields=id", sim.graph_url(), stale[0])).await;
    assert_eq!((s, v["error"]["code"].as_i64()), (400, Some(100)));
    let batch: Vec<String> = stale.iter().map(u64::to_string).collect();
    let (s, v) = get(&format!(
        "{}/images?image_ids={}",
        sim.graph_url(),
        batch.join(",")
    ))
    .await;
    assert_eq!((s, v["data"].as_array().unwrap().len()), (200, 0));
    let sequences: BTreeSet<String> = decode_stale_sequences(&sim, &stale).await;
    for seq in sequences {
        let (_, v) = get(&format!("{}/image_ids?sequence_id={seq}", sim.graph_url())).await;
        let listed = ids(v["data"].as_array().unwrap());
        assert!(listed.iter().all(|i| stale.binary_search(i).is_err()));
        assert!(!listed.is_empty());
    }
    let b = world.spec().bbox;
    let everywhere = [b[0], b[1], b[0] + 0.09, b[1] + 0.09 * 0.1];
    let got = ids(&search(&sim, &box_text(everywhere), "id").await);
    assert!(got.iter().all(|i| stale.binary_search(i).is_err()));
}

/// The `sequence_id`s the tiles give the stale images.
async fn decode_stale_sequences(sim: &Sim, stale: &[u64]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (x, y) in tiles::tiles_covering(sim.world().spec().bbox, 14) {
        for l in fetch(sim, "mly1_public", 14, x, y).await {
            for f in l.features.iter().filter(|_| l.name == "image") {
                let p = f.props(&l);
                if stale.binary_search(&(int(&p, "id") as u64)).is_ok() {
                    out.insert(string(&p, "sequence_id"));
                }
            }
        }
    }
    assert!(!out.is_empty());
    out
}

/// The `image` layer of the demo world's densest z14 tile under a drift.
async fn drifted(drift: TileDrift) -> (Vec<String>, Option<Layer>) {
    let sim = Sim::spawn(SimConfig {
        tile_drift: Some(drift),
        ..SimConfig::default()
    })
    .unwrap();
    let c = WorldSpec::demo().hotspots[0].center;
    let (x, y) = tiles::tile_of(c[0], c[1], 14);
    let layers = fetch(&sim, "mly1_public", 14, x, y).await;
    let names = layers.iter().map(|l| l.name.clone()).collect();
    (names, layers.into_iter().find(|l| l.name == "image"))
}

#[tokio::test]
async fn each_tile_drift_decodes_as_described() {
    let (_, l) = drifted(TileDrift::BlankIds).await;
    let l = l.unwrap();
    assert!(l.features.len() > 1000);
    for f in &l.features {
        assert_eq!(string(&f.props(&l), "id"), "");
    }

    let (_, l) = drifted(TileDrift::NonNumericIds).await;
    let l = l.unwrap();
    for f in &l.features {
        let id = string(&f.props(&l), "id");
        assert!(id.starts_with("abc") && id.len() > 10, "{id}");
        assert!(id.parse::<u64>().is_err());
    }

    let (names, l) = drifted(TileDrift::NoImageLayer).await;
    assert_eq!(names, ["sequence"]);
    assert!(l.is_none());

    let (_, l) = drifted(TileDrift::WrongTypes).await;
    let l = l.unwrap();
    for f in &l.features {
        let p = f.props(&l);
        assert!(string(&p, "captured_at").parse::<i64>().unwrap() > 1_400_000_000_000);
        assert!(matches!(p.get("is_pano"), Some(Val::Int(0 | 1))), "{p:?}");
        int(&p, "id");
    }
}

#[tokio::test]
async fn a_moved_image_is_served_at_its_new_position() {
    let world = Arc::new(World::generate(&WorldSpec::demo()));
    let img = world
        .images()
        .iter()
        .find(|i| i.computed_geometry.is_some() && i.geometry.is_some())
        .unwrap()
        .clone();
    let (g, c) = (img.geometry.unwrap(), img.computed_geometry.unwrap());
    let to = [8.551, 47.386];
    let before = Sim::spawn_with_world(SimConfig::default(), world.clone(), 0, 0).unwrap();
    let after = Sim::spawn_with_world(
        SimConfig {
            moves: vec![(img.id, to)],
            ..SimConfig::default()
        },
        world.clone(),
        0,
        0,
    )
    .unwrap();
    let url = |sim: &Sim| {
        format!(
            "{}/{}?fields=geometry,computed_geometry",
            sim.graph_url(),
            img.id
        )
    };
    let (_, v) = get(&url(&after)).await;
    assert_eq!(v["geometry"]["coordinates"], serde_json::json!(to));
    let moved_c = v["computed_geometry"]["coordinates"].clone();
    let (cx, cy) = (moved_c[0].as_f64().unwrap(), moved_c[1].as_f64().unwrap());
    assert!((cx - to[0] - (c[0] - g[0])).abs() < 1e-9 && (cy - to[1] - (c[1] - g[1])).abs() < 1e-9);
    let (_, v) = get(&url(&before)).await;
    assert_eq!(v["geometry"]["coordinates"], serde_json::json!(g));

    let new_box = around(to, 3.0);
    let f = TruthFilter::default();
    assert!(after.world().ground_truth(new_box, &f).contains(&img.id));
    assert!(!before.world().ground_truth(new_box, &f).contains(&img.id));
    assert!(
        !after
            .world()
            .ground_truth(around(g, 0.5), &f)
            .contains(&img.id)
    );
    assert!(ids(&search(&after, &box_text(new_box), "id").await).contains(&img.id));
    assert!(!ids(&search(&before, &box_text(new_box), "id").await).contains(&img.id));
    let (x, y) = tiles::tile_of(to[0], to[1], 14);
    let layers = fetch(&after, "mly1_public", 14, x, y).await;
    let l = layers.iter().find(|l| l.name == "image").unwrap();
    assert!(
        l.features
            .iter()
            .any(|f| int(&f.props(l), "id") as u64 == img.id)
    );

    let bad = Sim::spawn_with_world(
        SimConfig {
            moves: vec![(1, to)],
            ..SimConfig::default()
        },
        world,
        0,
        0,
    );
    let msg = bad.err().unwrap().to_string();
    assert!(msg.contains("cannot move or hide image 1"), "{msg}");
}

#[test]
fn binary_accepts_the_behaviour_flags_and_refuses_bad_values() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let exe = env!("CARGO_BIN_EXE_mlysim");
    let mut child = Command::new(exe)
        .args([
            "--world",
            "demo",
            "--fuzzy-cap",
            "--cap-fuzz",
            "0.3",
            "--bbox-position",
            "computed",
            "--result-order",
            "time",
            "--tiles-missing",
            "5",
            "--tiles-stale",
            "5",
            "--computed-offset-m",
            "50",
            "--tile-drift",
            "wrong-types",
            "--hostile",
            "formula,huge-thumb",
            "--redirect-thumbs-to",
            "http://127.0.0.1:9",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let graph = lines.next().unwrap().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(graph.starts_with("graph_url=http://127.0.0.1:"), "{graph}");
    for bad in [
        ["--cap-fuzz", "1.5"],
        ["--computed-offset-m", "-1"],
        ["--result-order", "sideways"],
        ["--hostile", "nice"],
    ] {
        let out = Command::new(exe).args(bad).output().unwrap();
        assert!(!out.status.success(), "{bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(bad[0]) || err.contains(bad[1]), "{err}");
    }
}
