//! HTTP-level tests of the simulator: auth, entities, search, paging, rate limits, CDN and faults.

use std::collections::HashSet;
use std::time::Duration;

use mlysim::{DEMO_TOKEN, Faults, Sim, SimConfig, TruthFilter, WorldSpec};
use serde_json::Value;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
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

fn hot_box(spec: &WorldSpec) -> String {
    let c = spec.hotspots[0].center;
    format!(
        "{},{},{},{}",
        c[0] - 0.0025,
        c[1] - 0.0025,
        c[0] + 0.0025,
        c[1] + 0.0025
    )
}

fn parse_box(s: &str) -> [f64; 4] {
    let v: Vec<f64> = s.split(',').map(|p| p.parse().unwrap()).collect();
    [v[0], v[1], v[2], v[3]]
}

#[tokio::test]
async fn auth_errors_follow_the_contract() {
    let sim = Sim::spawn(SimConfig::default()).unwrap();
    let id = sim.world().images()[0].id;
    let url = format!("{}/{id}?fields=id", sim.graph_url());
    let c = client();

    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 500);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], 190);
    assert_eq!(v["error"]["message"], "Invalid OAuth 2.0 Access Token");
    assert_eq!(v["error"]["error_data"], serde_json::json!({}));
    assert!(v["error"]["fbtrace_id"].as_str().unwrap().len() > 10);

    let r = c
        .get(&url)
        .header("Authorization", "OAuth MLY|bogus")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["message"], "Failed to decode");
    assert_eq!(v["error"]["type"], "OAuthException");

    let unknown = "MLY|999|ffffffffffffffffffffffffffffffff";
    let r = c
        .get(&url)
        .header("Authorization", format!("OAuth {unknown}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["message"], "Error validating application");

    let r = c
        .get(format!("{url}&access_token={unknown}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let r = c
        .get(format!("{url}&access_token={DEMO_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(sim.stats().token_in_query, 2);
    assert_eq!(sim.stats().errors_by_kind["auth_unknown"], 2);
}

#[tokio::test]
async fn entity_returns_requested_fields_only() {
    let sim = Sim::spawn(SimConfig::default()).unwrap();
    let img = sim.world().images()[3].clone();
    let (s, v) = get(&format!(
        "{}/{}?fields=geometry,captured_at,creator,thumb_1024_url",
        sim.graph_url(),
        img.id
    ))
    .await;
    assert_eq!(s, 200);
    let o = v.as_object().unwrap();
    assert_eq!(o["id"], img.id.to_string());
    assert_eq!(o["captured_at"], img.captured_at);
    assert_eq!(o["creator"]["username"], &*img.creator.username);
    assert!(
        o["thumb_1024_url"]
            .as_str()
            .unwrap()
            .starts_with(&sim.cdn_url())
    );
    assert!(!o.contains_key("sequence"));
    assert_eq!(o.len(), 5);

    let bare = sim
        .world()
        .images()
        .iter()
        .find(|i| i.computed_geometry.is_none())
        .unwrap();
    let (_, v) = get(&format!(
        "{}/{}?fields=computed_geometry",
        sim.graph_url(),
        bare.id
    ))
    .await;
    assert_eq!(v, serde_json::json!({"id": bare.id.to_string()}));

    let (s, v) = get(&format!("{}/1?fields=id", sim.graph_url())).await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["error_subcode"], 33);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Object with ID '1'")
    );

    let (s, v) = get(&format!("{}/{}?fields=id,bogus", sim.graph_url(), img.id)).await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["code"], 100);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nonexisting field (bogus)")
    );
}

#[tokio::test]
async fn bbox_search_truncates_silently_and_refuses_big_or_dense_boxes() {
    let spec = WorldSpec::demo();
    let sim = Sim::spawn(SimConfig::default()).unwrap();
    let bbox = hot_box(&spec);
    let truth = sim
        .world()
        .indexed_truth(parse_box(&bbox), &TruthFilter::default());
    assert!(truth.len() > 2000);
    let (s, v) = get(&format!(
        "{}/images?bbox={bbox}&fields=id,geometry",
        sim.graph_url()
    ))
    .await;
    assert_eq!(s, 200);
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2000);
    assert!(v.get("paging").is_none());
    let all: HashSet<String> = truth.iter().map(u64::to_string).collect();
    assert!(data.iter().all(|d| all.contains(d["id"].as_str().unwrap())));

    let (_, v) = get(&format!(
        "{}/images?bbox={bbox}&limit=5000",
        sim.graph_url()
    ))
    .await;
    assert_eq!(v["data"].as_array().unwrap().len(), 2000);
    let (_, v) = get(&format!("{}/images?bbox={bbox}&limit=7", sim.graph_url())).await;
    assert_eq!(v["data"].as_array().unwrap().len(), 7);

    let (s, v) = get(&format!(
        "{}/images?bbox=8.5,47.3,8.6,47.4",
        sim.graph_url()
    ))
    .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["code"], 100);
    drop(sim);

    let sim = Sim::spawn(SimConfig {
        dense_refusal: Some(1000),
        ..SimConfig::default()
    })
    .unwrap();
    let (s, v) = get(&format!("{}/images?bbox={bbox}&limit=1", sim.graph_url())).await;
    assert_eq!(s, 500);
    assert_eq!(v["error"]["code"], 1);
    drop(sim);

    let sim = Sim::spawn(SimConfig {
        fuzzy_cap: true,
        ..SimConfig::default()
    })
    .unwrap();
    let (_, v) = get(&format!("{}/images?bbox={bbox}", sim.graph_url())).await;
    let n = v["data"].as_array().unwrap().len();
    assert!((1880..=2000).contains(&n), "{n}");
    let (_, again) = get(&format!("{}/images?bbox={bbox}", sim.graph_url())).await;
    assert_eq!(again["data"].as_array().unwrap().len(), n);
}

#[tokio::test]
async fn small_bbox_search_is_complete_and_filters_apply() {
    let sim = Sim::spawn(SimConfig::default()).unwrap();
    let img = sim
        .world()
        .images()
        .iter()
        .find(|i| i.geometry.is_some_and(|g| (g[0] - 8.5305).abs() > 0.004))
        .unwrap()
        .clone();
    let g = img.geometry.unwrap();
    let b = [g[0] - 0.01, g[1] - 0.01, g[0] + 0.01, g[1] + 0.01];
    let bbox = format!("{},{},{},{}", b[0], b[1], b[2], b[3]);
    let f = TruthFilter {
        creator: Some(img.creator.username.to_string()),
        ..Default::default()
    };
    let truth = sim.world().indexed_truth(b, &f);
    assert!(!truth.is_empty() && truth.len() < 2000);
    let (_, v) = get(&format!(
        "{}/images?bbox={bbox}&creator_username={}",
        sim.graph_url(),
        img.creator.username
    ))
    .await;
    let mut got: Vec<u64> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().parse().unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, truth);
}

#[tokio::test]
async fn creator_search_pages_with_cursors() {
    let sim = Sim::spawn(SimConfig::default()).unwrap();
    let user = sim.world().images()[0].creator.username.to_string();
    let expected: HashSet<String> = sim
        .world()
        .images()
        .iter()
        .filter(|i| *i.creator.username == *user)
        .map(|i| i.id.to_string())
        .collect();
    let mut url = format!(
        "{}/images?creator_username={user}&limit=40&fields=id",
        sim.graph_url()
    );
    let mut seen = HashSet::new();
    let mut pages = 0;
    loop {
        let (s, v) = get(&url).await;
        assert_eq!(s, 200);
        pages += 1;
        for d in v["data"].as_array().unwrap() {
            assert!(seen.insert(d["id"].as_str().unwrap().to_string()));
        }
        assert!(v["paging"]["cursors"]["before"].is_string());
        assert!(v["paging"]["cursors"]["after"].is_string());
        match v["paging"]["next"].as_str() {
            Some(next) => {
                assert!(next.contains("creator_username=") && next.contains("limit=40"));
                url = next.to_string();
            }
            None => break,
        }
    }
    assert_eq!(seen, expected);
    assert_eq!(pages, expected.len().div_ceil(40));
}

#[tokio::test]
async fn image_ids_and_batch_lookup() {
    let sim = Sim::spawn(SimConfig::default()).unwrap();
    let seq = sim.world().images()[0].sequence.to_string();
    let want: Vec<String> = sim
        .world()
        .sequence(&seq)
        .iter()
        .map(|i| i.id.to_string())
        .collect();
    let (_, v) = get(&format!("{}/image_ids?sequence_id={seq}", sim.graph_url())).await;
    let got: Vec<String> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, want);
    let (_, v) = get(&format!(
        "{}/image_ids?sequence_id=unknown",
        sim.graph_url()
    ))
    .await;
    assert_eq!(v, serde_json::json!({"data": []}));

    let ids = want[..10].join(",");
    let (_, v) = get(&format!(
        "{}/images?image_ids={ids}&fields=sequence",
        sim.graph_url()
    ))
    .await;
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 10);
    assert!(data.iter().all(|d| d["sequence"] == seq));
    let too_many = vec![want[0].clone(); 201].join(",");
    let (s, _) = get(&format!("{}/images?image_ids={too_many}", sim.graph_url())).await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn rate_limit_answers_with_retry_after() {
    let sim = Sim::spawn(SimConfig {
        search_per_min: 2,
        rate_limit_status: 403,
        ..SimConfig::default()
    })
    .unwrap();
    let url = format!("{}/images?bbox=8.53,47.37,8.531,47.371", sim.graph_url());
    assert_eq!(get(&url).await.0, 200);
    assert_eq!(get(&url).await.0, 200);
    let r = client()
        .get(&url)
        .header("Authorization", format!("OAuth {DEMO_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["retry-after"], "1");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], 4);
    assert_eq!(v["error"]["is_transient"], true);
    let id = sim.world().images()[0].id;
    assert_eq!(get(&format!("{}/{id}", sim.graph_url())).await.0, 200);
}

async fn thumb_url(sim: &Sim, field: &str) -> String {
    let img = sim.world().images().iter().find(|i| i.is_pano).unwrap();
    let (_, v) = get(&format!("{}/{}?fields={field}", sim.graph_url(), img.id)).await;
    v[field].as_str().unwrap().to_string()
}

#[tokio::test]
async fn cdn_serves_signed_jpegs_and_refuses_expired_urls() {
    let sim = Sim::spawn(SimConfig::default()).unwrap();
    let url = thumb_url(&sim, "thumb_256_url").await;
    assert!(url.contains("stp=s256x128"));
    let r = client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    let bytes = r.bytes().await.unwrap();
    let img = image::load_from_memory(&bytes).unwrap();
    assert_eq!((img.width(), img.height()), (256, 128));
    assert_ne!(url, thumb_url(&sim, "thumb_256_url").await);

    let tampered = url.replace("stp=s256x128", "stp=s2048x1024");
    let r = client().get(&tampered).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.text().await.unwrap(), "URL signature expired");

    let r = client()
        .get(&url)
        .header("Authorization", "OAuth x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let st = sim.stats();
    assert_eq!(st.auth_header_on_cdn, 1);
    assert_eq!(st.thumbs_served, 2);
    drop(sim);

    let sim = Sim::spawn(SimConfig {
        thumb_ttl: Duration::ZERO,
        ..SimConfig::default()
    })
    .unwrap();
    let url = thumb_url(&sim, "thumb_1024_url").await;
    let r = client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(sim.stats().errors_by_kind["signature_expired"], 1);
}

#[tokio::test]
async fn faults_are_injected() {
    let sim = Sim::spawn(SimConfig::default()).unwrap();
    let id = sim.world().images()[0].id;
    let entity = format!("{}/{id}", sim.graph_url());
    let url = thumb_url(&sim, "thumb_256_url").await;

    sim.set_faults(Faults {
        http500: 1.0,
        ..Faults::default()
    });
    let (s, v) = get(&entity).await;
    assert_eq!((s, v["error"]["code"].as_i64()), (500, Some(2)));

    sim.set_faults(Faults {
        timeout400: 1.0,
        ..Faults::default()
    });
    let (s, v) = get(&entity).await;
    assert_eq!((s, v["error"]["code"].as_i64()), (400, Some(-2)));

    sim.set_faults(Faults {
        reset: 1.0,
        ..Faults::default()
    });
    let r = client()
        .get(&entity)
        .header("Authorization", format!("OAuth {DEMO_TOKEN}"))
        .send()
        .await;
    let failed = match r {
        Err(_) => true,
        Ok(r) => r.bytes().await.is_err(),
    };
    assert!(failed);

    sim.set_faults(Faults {
        truncated_body: 1.0,
        ..Faults::default()
    });
    let r = client().get(&url).send().await.unwrap();
    let announced = r.content_length().unwrap();
    assert!(announced > 1000);
    assert!(r.bytes().await.is_err());

    sim.set_faults(Faults {
        not_jpeg: 1.0,
        ..Faults::default()
    });
    let r = client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );

    sim.set_faults(Faults {
        thumb_403: 1.0,
        ..Faults::default()
    });
    assert_eq!(client().get(&url).send().await.unwrap().status(), 403);

    sim.set_faults(Faults {
        stall: 1.0,
        stall_for: Duration::from_millis(300),
        ..Faults::default()
    });
    let t = std::time::Instant::now();
    assert_eq!(get(&entity).await.0, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));

    sim.set_faults(Faults::default());
    assert_eq!(get(&entity).await.0, 200);
    let kinds = sim.stats().errors_by_kind;
    for k in [
        "http500",
        "timeout400",
        "reset",
        "truncated_body",
        "not_jpeg",
        "thumb_403",
        "stall",
    ] {
        assert!(kinds.contains_key(k), "{k}");
    }
}

#[test]
fn binary_prints_urls_and_ground_truth() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let exe = env!("CARGO_BIN_EXE_mlysim");
    let out = Command::new(exe)
        .args(["--world", "demo", "--ground-truth", "8.52,47.36,8.53,47.37"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let world = mlysim::World::generate(&WorldSpec::demo());
    let want: Vec<String> = world
        .ground_truth([8.52, 47.36, 8.53, 47.37], &TruthFilter::default())
        .iter()
        .map(u64::to_string)
        .collect();
    let got: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(got, want);

    let mut child = Command::new(exe)
        .args(["--world", "demo"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let graph = lines.next().unwrap().unwrap();
    let cdn = lines.next().unwrap().unwrap();
    let tiles = lines.next().unwrap().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(graph.starts_with("graph_url=http://127.0.0.1:"), "{graph}");
    assert!(cdn.starts_with("cdn_url=http://127.0.0.1:"), "{cdn}");
    assert!(tiles.starts_with("tiles_url=http://127.0.0.1:"), "{tiles}");
}

#[test]
fn sim_handle_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Sim>();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_is_concurrent() {
    let sim = Sim::spawn(SimConfig {
        latency: Duration::from_millis(400),
        ..SimConfig::default()
    })
    .unwrap();
    let id = sim.world().images()[0].id;
    let url = format!("{}/{id}?fields=captured_at", sim.graph_url());
    let c = client();
    let t = std::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (c, url) = (c.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            c.get(&url)
                .header("Authorization", format!("OAuth {DEMO_TOKEN}"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(400));
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(sim.stats().entity_calls, 200);
}

#[tokio::test]
async fn bbox_search_returns_images_without_geometry() {
    let sim = Sim::spawn(SimConfig::default()).unwrap();
    let hidden = sim
        .world()
        .images()
        .iter()
        .find(|i| i.geometry.is_none())
        .unwrap()
        .clone();
    let want = hidden.id.to_string();
    let [x, y] = hidden.index_pos;
    let b = [x - 0.0002, y - 0.0002, x + 0.0002, y + 0.0002];
    let truth = sim.world().indexed_truth(b, &TruthFilter::default());
    assert!(truth.contains(&hidden.id));
    assert!(
        !sim.world()
            .ground_truth(b, &TruthFilter::default())
            .contains(&hidden.id)
    );
    let (_, v) = get(&format!(
        "{}/images?bbox={},{},{},{}&fields=geometry,computed_geometry",
        sim.graph_url(),
        b[0],
        b[1],
        b[2],
        b[3]
    ))
    .await;
    let row = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == want.as_str())
        .expect("the geometry-less image is returned")
        .clone();
    assert_eq!(row, serde_json::json!({"id": hidden.id.to_string()}));
}
