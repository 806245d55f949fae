//! HTTP-level tests of the vector-tiles host, decoding the served tiles with a small
//! independent protobuf reader (written from the MVT 2.1 `vector_tile.proto`).

use std::collections::BTreeSet;
use std::io::Read;
use std::time::{Duration, Instant};

use mlysim::tiles::{self, Tileset};
use mlysim::{DEMO_TOKEN, Faults, Sim, SimConfig, SimImage, TruthFilter, World, WorldSpec};
use serde_json::Value;

mod common;
use common::*;

// ---------------------------------------------------------------- HTTP helpers

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .no_gzip()
        .build()
        .unwrap()
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
    assert_eq!(r.headers()["content-type"], "application/x-protobuf");
    assert!(r.headers().get("content-encoding").is_none());
    decode_tile(&r.bytes().await.unwrap())
}

fn check_layer_header(l: &Layer) {
    assert_eq!(l.version, 2);
    assert_eq!(l.extent, 4096);
}

/// Checks the running Feature.id counter over the layers of one tile.
fn check_feature_ids(layers: &[Layer]) {
    let ids: Vec<u64> = layers
        .iter()
        .flat_map(|l| l.features.iter().map(|f| f.id.unwrap()))
        .collect();
    assert_eq!(ids, (0..ids.len() as u64).collect::<Vec<_>>());
}

fn dense_box() -> [f64; 4] {
    // Around the dense world's hot spot (2.350, 48.865); spans several z14 tiles.
    [2.338, 48.857, 2.362, 48.873]
}

/// `assert_eq!` for long sorted id lists, printing only the differences.
fn same_ids(got: &[u64], want: &[u64], what: &str) {
    if got != want {
        let g: BTreeSet<u64> = got.iter().copied().collect();
        let w: BTreeSet<u64> = want.iter().copied().collect();
        let extra: Vec<_> = g.difference(&w).take(10).collect();
        let missing: Vec<_> = w.difference(&g).take(10).collect();
        panic!(
            "{what}: got {} ids, want {}; extra {extra:?}, missing {missing:?}",
            got.len(),
            want.len()
        );
    }
}

fn in_box(p: [f64; 2], b: [f64; 4]) -> bool {
    p[0] >= b[0] && p[0] <= b[2] && p[1] >= b[1] && p[1] <= b[3]
}

/// Decodes the z14 `image` layer over the tiles covering `bbox` and checks every feature against
/// the world; returns the ids seen and the ids expected in the covered tiles.
async fn image_layer_over(sim: &Sim, ts: Tileset, bbox: [f64; 4]) -> (Vec<u64>, Vec<u64>) {
    let world = sim.world();
    let cover = tiles::tiles_covering(bbox, 14);
    assert!(cover.len() >= 4, "{cover:?}");
    let mut seen = Vec::new();
    for &(x, y) in &cover {
        let layers = fetch(sim, ts.name(), 14, x, y).await;
        check_feature_ids(&layers);
        let names: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["sequence", "image"], "14/{x}/{y}");
        let l = &layers[1];
        check_layer_header(l);
        for f in &l.features {
            assert_eq!(f.kind, 1);
            let p = f.props(l);
            let id = int(&p, "id") as u64;
            let img = world.get(id).expect("a known image id");
            let pos = ts
                .position(img)
                .expect("an image with a position in this tileset");
            assert_eq!(tiles::tile_of(pos[0], pos[1], 14), (x, y));
            let v = vertices(&f.geometry);
            assert_eq!(v.len(), 1);
            let back = tiles::tile_point_to_lonlat(14, x, y, f64::from(v[0].0), f64::from(v[0].1));
            assert!(
                (back[0] - pos[0]).abs() < 1e-5 && (back[1] - pos[1]).abs() < 1e-5,
                "{back:?} vs {pos:?}"
            );
            assert_eq!(int(&p, "captured_at"), img.captured_at);
            assert_eq!(string(&p, "sequence_id"), &*img.sequence);
            assert_eq!(boolean(&p, "is_pano"), img.is_pano);
            assert_eq!(int(&p, "compass_angle"), ts.compass(img));
            assert_eq!(
                p.get("organization_id"),
                img.organization.map(|o| Val::Int(o as i64)).as_ref()
            );
            seen.push(id);
        }
    }
    let covered: BTreeSet<(u32, u32)> = cover.into_iter().collect();
    let mut expected: Vec<u64> = world
        .images()
        .iter()
        .filter(|i| {
            ts.position(i)
                .is_some_and(|p| covered.contains(&tiles::tile_of(p[0], p[1], 14)))
        })
        .map(|i| i.id)
        .collect();
    expected.sort_unstable();
    (seen, expected)
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn z14_image_layer_lists_exactly_the_ground_truth() {
    let sim = Sim::spawn(SimConfig {
        world: WorldSpec::dense(20_000),
        ..SimConfig::default()
    })
    .unwrap();
    let bbox = dense_box();
    let (seen, expected) = image_layer_over(&sim, Tileset::Public, bbox).await;
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    let before = sorted.len();
    sorted.dedup();
    assert_eq!(before, sorted.len(), "an image appears in two tiles");
    same_ids(
        &sorted,
        &expected,
        "the covered tiles list every positioned image",
    );

    let world = sim.world();
    let mut in_bbox: Vec<u64> = seen
        .iter()
        .copied()
        .filter(|&id| in_box(world.get(id).unwrap().geometry.unwrap(), bbox))
        .collect();
    in_bbox.sort_unstable();
    let truth = world.ground_truth(bbox, &TruthFilter::default());
    assert!(truth.len() > 10_000, "{}", truth.len());
    same_ids(&in_bbox, &truth, "ground truth");
    // Images without geometry are in the search index but never in tiles.
    let hidden: Vec<&SimImage> = world
        .images()
        .iter()
        .filter(|i| i.geometry.is_none())
        .collect();
    assert!(!hidden.is_empty());
    assert!(hidden.iter().all(|i| !seen.contains(&i.id)));

    // The Graph API agrees with the tile properties.
    let sample: Vec<u64> = seen
        .iter()
        .step_by(seen.len() / 150)
        .copied()
        .take(150)
        .collect();
    let ids: Vec<String> = sample.iter().map(u64::to_string).collect();
    let url = format!(
        "{}/images?image_ids={}&fields=id,captured_at,compass_angle,sequence,is_pano,organization,geometry",
        sim.graph_url(),
        ids.join(",")
    );
    let v: Value = client()
        .get(url)
        .header("Authorization", format!("OAuth {DEMO_TOKEN}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), sample.len());
    for d in data {
        let id: u64 = d["id"].as_str().unwrap().parse().unwrap();
        let img = world.get(id).unwrap();
        assert_eq!(d["captured_at"].as_i64(), Some(img.captured_at));
        assert_eq!(d["sequence"].as_str(), Some(&*img.sequence));
        assert_eq!(d["is_pano"].as_bool(), Some(img.is_pano));
        let compass = d["compass_angle"].as_f64().unwrap();
        assert_eq!(
            (compass.round() as i64).rem_euclid(360),
            Tileset::Public.compass(img)
        );
        assert_eq!(
            d["organization"]["id"].as_str().map(String::from),
            img.organization.map(|o| o.to_string())
        );
    }
}

#[tokio::test]
async fn computed_variant_uses_computed_positions() {
    let sim = Sim::spawn(SimConfig {
        world: WorldSpec::dense(20_000),
        ..SimConfig::default()
    })
    .unwrap();
    let (mut seen, expected) = image_layer_over(&sim, Tileset::ComputedPublic, dense_box()).await;
    seen.sort_unstable();
    same_ids(&seen, &expected, "computed positions");
    let world = sim.world();
    let without: Vec<u64> = world
        .images()
        .iter()
        .filter(|i| i.geometry.is_some() && i.computed_geometry.is_none())
        .map(|i| i.id)
        .collect();
    assert!(without.len() > 100);
    assert!(without.iter().all(|id| seen.binary_search(id).is_err()));
    // The public variant of the same tiles holds them.
    let (public, _) = image_layer_over(&sim, Tileset::Public, dense_box()).await;
    assert!(without.iter().any(|id| public.contains(id)));
}

#[tokio::test]
async fn sequence_and_overview_layers() {
    let sim = Sim::spawn(SimConfig::default()).unwrap();
    let world = sim.world();
    let h = WorldSpec::demo().hotspots[0].center;

    // z14: sequence lines through the images in capture order.
    let (x, y) = tiles::tile_of(h[0], h[1], 14);
    let layers = fetch(&sim, "mly1_public", 14, x, y).await;
    let seq = &layers[0];
    assert_eq!(seq.name, "sequence");
    check_layer_header(seq);
    let keys: BTreeSet<String> = seq
        .features
        .iter()
        .map(|f| string(&f.props(seq), "id"))
        .collect();
    let with_image_here: BTreeSet<String> = layers[1]
        .features
        .iter()
        .map(|f| string(&f.props(&layers[1]), "sequence_id"))
        .collect();
    assert!(with_image_here.is_subset(&keys));
    for f in &seq.features {
        assert_eq!(f.kind, 2);
        let p = f.props(seq);
        let key = string(&p, "id");
        let imgs: Vec<&SimImage> = world
            .sequence(&key)
            .into_iter()
            .filter(|i| i.geometry.is_some())
            .collect();
        let first = imgs[0];
        assert_eq!(int(&p, "image_id") as u64, first.id);
        assert_eq!(int(&p, "captured_at"), first.captured_at);
        assert_eq!(boolean(&p, "is_pano"), first.is_pano);
        assert_eq!(
            p.get("organization_id"),
            first.organization.map(|o| Val::Int(o as i64)).as_ref()
        );
        let v = vertices(&f.geometry);
        assert!(v.len() >= 2 && v.len() <= imgs.len().max(2));
        let g = first.geometry.unwrap();
        let back = tiles::tile_point_to_lonlat(14, x, y, f64::from(v[0].0), f64::from(v[0].1));
        assert!((back[0] - g[0]).abs() < 1e-5 && (back[1] - g[1]).abs() < 1e-5);
        let g = imgs.last().unwrap().geometry.unwrap();
        let (lx, ly) = *v.last().unwrap();
        let back = tiles::tile_point_to_lonlat(14, x, y, f64::from(lx), f64::from(ly));
        assert!((back[0] - g[0]).abs() < 1e-5 && (back[1] - g[1]).abs() < 1e-5);
    }

    // z10: only the sequence layer, every sequence of the world (the demo world fits in it).
    let (x, y) = tiles::tile_of(h[0], h[1], 10);
    let layers = fetch(&sim, "mly1_public", 10, x, y).await;
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0].name, "sequence");
    let all: BTreeSet<&str> = world
        .images()
        .iter()
        .filter(|i| i.geometry.is_some())
        .map(|i| &*i.sequence)
        .collect();
    assert_eq!(layers[0].features.len(), all.len());

    // z0-5: overview points, one per populated 16 x 16 cell, at its centre.
    for z in [0u8, 3, 5] {
        let (x, y) = tiles::tile_of(h[0], h[1], z);
        let layers = fetch(&sim, "mly1_public", z, x, y).await;
        assert_eq!(layers.len(), 1);
        let l = &layers[0];
        assert_eq!(l.name, "overview");
        check_layer_header(l);
        check_feature_ids(&layers);
        let mut cells = BTreeSet::new();
        for img in world.images() {
            if let Some(g) = img.geometry {
                let (fx, fy) = tiles::mercator(g[0], g[1], z);
                let (px, py) = ((fx - f64::from(x)) * 4096.0, (fy - f64::from(y)) * 4096.0);
                if (0.0..4096.0).contains(&px) && (0.0..4096.0).contains(&py) {
                    cells.insert(((px / 16.0) as i32, (py / 16.0) as i32));
                }
            }
        }
        assert_eq!(l.features.len(), cells.len(), "z{z}");
        for f in &l.features {
            let p = f.props(l);
            let img = world.get(int(&p, "id") as u64).unwrap();
            assert_eq!(int(&p, "captured_at"), img.captured_at);
            assert_eq!(string(&p, "sequence_id"), &*img.sequence);
            assert_eq!(boolean(&p, "is_pano"), img.is_pano);
            let v = vertices(&f.geometry);
            let g = img.geometry.unwrap();
            let (fx, fy) = tiles::mercator(g[0], g[1], z);
            let cell = (
                ((fx - f64::from(x)) * 256.0) as i32,
                ((fy - f64::from(y)) * 256.0) as i32,
            );
            assert_eq!(v, [(cell.0 * 16 + 8, cell.1 * 16 + 8)]);
        }
    }
}

#[tokio::test]
async fn not_found_empty_trailing_slash_and_gzip() {
    let sim = Sim::spawn(SimConfig::default()).unwrap();
    let c = client();
    let h = WorldSpec::demo().hotspots[0].center;
    let (x, y) = tiles::tile_of(h[0], h[1], 14);
    let q = format!("access_token={}", DEMO_TOKEN.replace('|', "%7C"));
    let base = sim.tiles_url();
    for path in [
        format!("/maps/vtp/mly1_public/2/15/{}/{}", x * 2, y * 2),
        format!("/maps/vtp/mly1_public/2/14/{}/{y}", 1 << 14),
        format!("/maps/vtp/mly1_public/3/14/{x}/{y}"),
        format!("/maps/vtp/mly_map_feature_point/2/14/{x}/{y}"),
        format!("/maps/vtp/mly1_public/2/14/{x}/{y}.mvt"),
        "/nope".to_string(),
    ] {
        let r = c.get(format!("{base}{path}?{q}")).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    // An empty tile (the other side of the world): 200, empty body.
    let r = c
        .get(format!("{base}/maps/vtp/mly1_public/2/14/1/1?{q}"))
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-protobuf");
    assert!(r.headers().get("content-encoding").is_none());
    assert!(r.bytes().await.unwrap().is_empty());

    let plain_url = format!("{base}/maps/vtp/mly1_public/2/14/{x}/{y}?{q}");
    let plain = c.get(&plain_url).send().await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    let plain = plain.bytes().await.unwrap();
    assert!(plain.len() > 10_000);
    let slash = c
        .get(format!("{base}/maps/vtp/mly1_public/2/14/{x}/{y}/?{q}"))
        .send()
        .await
        .unwrap();
    assert_eq!(slash.status(), 200);
    assert_eq!(slash.bytes().await.unwrap(), plain);

    let r = c
        .get(&plain_url)
        .header("Accept-Encoding", "gzip, deflate")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let gz = r.bytes().await.unwrap();
    assert!(gz.len() < plain.len());
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, plain);
    let st = sim.stats();
    assert_eq!(st.tile_calls, 9, "the fallback (/nope) is not a tile call");
    assert_eq!(st.tiles_served, 4);
    assert_eq!(st.errors_by_kind.get("tile_not_found"), Some(&5));
}

#[tokio::test]
async fn tile_auth_errors_follow_the_contract() {
    let sim = Sim::spawn(SimConfig::default()).unwrap();
    let c = client();
    let url = format!("{}/maps/vtp/mly1_public/2/14/8580/5737", sim.tiles_url());

    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 500);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], 190);
    assert_eq!(v["error"]["message"], "Invalid OAuth 2.0 Access Token");
    assert_eq!(v["error"]["error_data"], serde_json::json!({}));

    let r = c
        .get(format!("{url}?access_token=MLY%7Cbogus"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["message"], "Failed to decode");
    assert_eq!(v["error"]["type"], "OAuthException");

    let unknown = "MLY|999|ffffffffffffffffffffffffffffffff";
    let r = c
        .get(format!(
            "{url}?access_token={}",
            unknown.replace('|', "%7C")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["message"], "Error validating application");
    assert_eq!(v["error"]["fbtrace_id"].as_str().unwrap().len(), 23);

    let r = c
        .get(&url)
        .header("Authorization", format!("OAuth {unknown}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let r = c
        .get(&url)
        .header("Authorization", format!("OAuth {DEMO_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let st = sim.stats();
    assert_eq!(st.tile_calls, 5);
    assert_eq!(st.token_in_query, 0, "tile requests are not Graph requests");
    assert_eq!(st.errors_by_kind.get("tile_auth_missing"), Some(&1));
    assert_eq!(st.errors_by_kind.get("tile_auth_malformed"), Some(&1));
    assert_eq!(st.errors_by_kind.get("tile_auth_unknown"), Some(&2));
}

#[tokio::test]
async fn daily_tile_budget_is_per_token() {
    let other = "MLY|77|00000000000000000000000000000077";
    let sim = Sim::spawn(SimConfig {
        tiles_per_day: 3,
        tokens: vec![DEMO_TOKEN.to_string(), other.to_string()],
        ..SimConfig::default()
    })
    .unwrap();
    let c = client();
    let url = format!("{}/maps/vtp/mly1_public/2/14/8580/5737", sim.tiles_url());
    let with = |t: &str| format!("{url}?access_token={}", t.replace('|', "%7C"));
    for _ in 0..3 {
        assert_eq!(c.get(with(DEMO_TOKEN)).send().await.unwrap().status(), 200);
    }
    let r = c.get(with(DEMO_TOKEN)).send().await.unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 3600 && retry <= 86_400, "{retry}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["message"], "Application request limit reached");
    assert_eq!(v["error"]["code"], 4);
    assert_eq!(v["error"]["is_transient"], true);
    assert_eq!(c.get(with(other)).send().await.unwrap().status(), 200);
    // Graph requests do not use the tile budget.
    let id = sim.world().images()[0].id;
    let r = c
        .get(format!("{}/{id}?fields=id", sim.graph_url()))
        .header("Authorization", format!("OAuth {DEMO_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let st = sim.stats();
    assert_eq!(st.tile_calls, 5);
    assert_eq!(st.errors_by_kind.get("tile_rate_limited"), Some(&1));
}

#[tokio::test]
async fn tile_faults_are_injected() {
    let sim = Sim::spawn(SimConfig::default()).unwrap();
    let c = client();
    let url = tile_url(&sim, "mly1_public", 14, 8580, 5737);

    sim.set_faults(Faults {
        http500: 1.0,
        ..Faults::default()
    });
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 500);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], 2);

    sim.set_faults(Faults {
        rate_limit: 1.0,
        ..Faults::default()
    });
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 429);

    sim.set_faults(Faults {
        reset: 1.0,
        ..Faults::default()
    });
    assert!(c.get(&url).send().await.is_err());

    sim.set_faults(Faults {
        stall: 1.0,
        stall_for: Duration::from_millis(300),
        ..Faults::default()
    });
    let t = Instant::now();
    assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(300));

    let st = sim.stats();
    for k in [
        "tile_http500",
        "tile_rate_limit_fault",
        "tile_reset",
        "tile_stall",
    ] {
        assert_eq!(st.errors_by_kind.get(k), Some(&1), "{k}");
    }
    assert!(!st.errors_by_kind.contains_key("http500"));
}

#[test]
fn dense_tile_encodes_quickly() {
    let world = World::generate(&WorldSpec::dense(100_000));
    let (x, y) = tiles::tile_of(2.350, 48.865, 14);
    let t = Instant::now();
    let body = tiles::render(&world, Tileset::Public, 14, x, y).unwrap();
    let took = t.elapsed();
    let layers = decode_tile(&body);
    let n = layers[1].features.len();
    eprintln!("z14 tile with {n} images: {} bytes in {took:?}", body.len());
    assert!(n > 30_000, "{n}");
    // Debug build; release is far faster (see README).
    assert!(took < Duration::from_secs(10), "{took:?}");
}
