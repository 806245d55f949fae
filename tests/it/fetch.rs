//! fetch against the simulator: every true image exactly once beyond the cap,
//! the output layout, filters, dry runs, grid files and token secrecy.

use std::collections::BTreeSet;

use mlysim::{DEMO_TOKEN, SimConfig, TruthFilter};

use crate::common::*;

fn world_bbox(env: &TestEnv) -> [f64; 4] {
    env.sim().world().spec().bbox
}

#[test]
fn lists_every_image_beyond_the_cap_exactly_once() {
    let env = TestEnv::with_sim(small_cap_sim());
    let b = world_bbox(&env);
    let o = env.fetch(&[
        "--bbox",
        &bbox_arg(b),
        "--grid",
        "3x2",
        "--size",
        "256",
        "--search-cap",
        "100",
        "--quiet",
    ]);
    assert_success(&o);
    assert!(
        o.stdout.is_empty() && o.stderr.is_empty(),
        "--quiet prints nothing"
    );

    let truth: BTreeSet<u64> = env
        .sim()
        .world()
        .indexed_truth(b, &TruthFilter::default())
        .into_iter()
        .collect();
    assert!(
        truth.len() > 1000,
        "the demo world is dense enough: {}",
        truth.len()
    );
    let got = downloaded_ids(&env.out());
    let dupes: Vec<_> = got.iter().filter(|(_, g)| g.len() > 1).collect();
    assert!(dupes.is_empty(), "images in two grids: {dupes:?}");
    let got_ids: BTreeSet<u64> = got.keys().copied().collect();
    let missing: Vec<_> = truth.difference(&got_ids).take(5).collect();
    let extra: Vec<_> = got_ids.difference(&truth).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );

    // Grids are numbered 1..6; every image's JPEG is a JPEG whose hash is recorded.
    let grids: BTreeSet<String> = got.values().flatten().cloned().collect();
    assert!(
        grids
            .iter()
            .all(|g| (1..=6).map(|i| i.to_string()).any(|x| &x == g)),
        "{grids:?}"
    );
    let (id, g) = got.iter().next().unwrap();
    let meta = read_json(&env.out().join(&g[0]).join(format!("{id}.json")));
    let jpg = std::fs::read(env.out().join(&g[0]).join(format!("{id}.jpg"))).unwrap();
    assert_eq!(&jpg[..2], &[0xFF, 0xD8]);
    assert_eq!(meta["mlyexport"]["bytes"].as_u64(), Some(jpg.len() as u64));
    assert_eq!(meta["mlyexport"]["pixel_width"].as_u64(), Some(256));
    assert_eq!(meta["mlyexport"]["grid"].as_str(), Some(g[0].as_str()));
    assert_eq!(meta["id"].as_str(), Some(id.to_string().as_str()));
    assert!(meta.get("captured_at").is_some());
    assert!(
        meta.as_object()
            .unwrap()
            .keys()
            .all(|k| !k.starts_with("thumb_")),
        "signed URLs are not stored"
    );

    // Unsigned-wrapped altitudes are repaired beside the API's value.
    let mut wrapped = 0;
    for (id, g) in &got {
        let meta = read_json(&env.out().join(&g[0]).join(format!("{id}.json")));
        if let Some(fixed) = meta["mlyexport"]["altitude_repaired"].as_f64() {
            assert!(
                meta["altitude"].as_f64().unwrap() > 4e9 && fixed < 0.0,
                "{meta}"
            );
            wrapped += 1;
        }
    }
    assert!(wrapped > 0, "the world has wrapped altitudes");

    let rec = run_record(&env.out());
    let cells = rec["grids"].as_array().unwrap();
    assert_eq!(cells.len(), 6);
    assert!(
        cells.iter().all(|c| c["listing"] == "verified"),
        "{cells:?}"
    );
    let listed: u64 = cells.iter().map(|c| c["listed"].as_u64().unwrap()).sum();
    assert_eq!(listed as usize, truth.len());
    assert_eq!(
        rec["totals"]["downloaded"].as_u64(),
        Some(truth.len() as u64)
    );
    assert_eq!(rec["runs"][0]["outcome"], "complete");
    // The cap forced splitting: more searches than grids.
    assert!(rec["totals"]["search_calls"].as_u64().unwrap() > 6);
    assert_eq!(listing(&env.out()).len(), truth.len());
}

#[test]
fn the_token_and_signed_urls_are_never_written_or_printed() {
    let env = TestEnv::with_sim(SimConfig::default());
    let b = world_bbox(&env);
    let small = [b[0], b[1], b[0] + 0.01, b[1] + 0.01];
    let o = env
        .cmd()
        .env_remove("MAPILLARY_TOKEN")
        .args([
            "fetch",
            "--bbox",
            &bbox_arg(small),
            "--size",
            "256",
            "--token",
            DEMO_TOKEN,
        ])
        .output()
        .unwrap();
    assert_success(&o);
    let secret_part = DEMO_TOKEN.split('|').nth(2).unwrap();
    let printed = format!("{}{}", stdout(&o), stderr(&o));
    assert!(!printed.contains(secret_part));
    let files = all_files(env.path());
    assert!(files.len() > 3);
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(secret_part), "token in {}", f.display());
        assert!(!text.contains("oh="), "a signed URL in {}", f.display());
    }
    let rec = run_record(&env.out());
    let argv: Vec<String> = serde_json::from_value(rec["runs"][0]["command_line"].clone()).unwrap();
    assert!(argv.contains(&"****".to_string()), "{argv:?}");
    assert_eq!(
        env.sim().stats().auth_header_on_cdn,
        0,
        "no credentials sent to the CDN"
    );
    assert_eq!(
        env.sim().stats().token_in_query,
        0,
        "the token goes in the header"
    );
}

#[test]
fn filters_match_the_ground_truth() {
    let env = TestEnv::with_sim(SimConfig::default());
    let b = world_bbox(&env);
    let o = env.fetch(&[
        "--bbox",
        &bbox_arg(b),
        "--since",
        "2019-01-01",
        "--until",
        "2022-12-31",
        "--pano",
        "exclude",
        "--dry-run",
    ]);
    assert_success(&o);
    let filter = TruthFilter {
        since_ms: Some(1_546_300_800_000),
        until_ms: Some(1_672_531_199_999),
        pano: Some(false),
        ..TruthFilter::default()
    };
    let truth = env.sim().world().indexed_truth(b, &filter);
    let mut ids: Vec<u64> = listing(&env.out()).iter().map(id_of).collect();
    ids.sort_unstable();
    assert_eq!(ids, truth);
}

#[test]
fn dry_run_lists_and_estimates_but_downloads_nothing() {
    let env = TestEnv::with_sim(SimConfig::default());
    let b = world_bbox(&env);
    let o = env.fetch(&["--bbox", &bbox_arg(b), "--dry-run"]);
    assert_success(&o);
    let out = stdout(&o);
    assert!(out.contains("estimated bytes: "), "{out}");
    assert!(downloaded_ids(&env.out()).is_empty());
    assert_eq!(env.sim().stats().thumbs_served, 0);
    let rec = run_record(&env.out());
    assert_eq!(rec["runs"][0]["outcome"], "listed");
    assert!(rec["totals"]["listed"].as_u64().unwrap() > 0);
}

#[test]
fn max_images_keeps_the_first_n_in_grid_and_time_order() {
    let env = TestEnv::with_sim(SimConfig::default());
    let b = world_bbox(&env);
    let o = env.fetch(&[
        "--bbox",
        &bbox_arg(b),
        "--grid",
        "2x2",
        "--max-images",
        "25",
        "--size",
        "256",
    ]);
    assert_success(&o);
    assert_eq!(downloaded_ids(&env.out()).len(), 25);
    let again = env.fetch(&[
        "--bbox",
        &bbox_arg(b),
        "--grid",
        "2x2",
        "--max-images",
        "25",
        "--size",
        "256",
    ]);
    assert_eq!(again.status.code(), Some(0));
    assert!(
        stdout(&again).contains("downloaded: 0"),
        "{}",
        stdout(&again)
    );
    assert!(stdout(&again).contains("skipped (already there): 25"));
}

#[test]
fn a_grid_file_gives_each_edge_image_to_one_grid() {
    let env = TestEnv::with_sim(SimConfig::default());
    let b = world_bbox(&env);
    let mid = ((b[0] + b[2]) / 2.0 * 1000.0).round() / 1000.0;
    // West and east halves of the demo world, sharing the edge lon = `mid`.
    std::fs::copy(
        crate::fixtures::fixture("grid/segments.csv"),
        env.path().join("segments.csv"),
    )
    .unwrap();
    let o = env.fetch(&["--grid-file", "segments.csv", "--size", "256"]);
    assert_success(&o);
    let got = downloaded_ids(&env.out());
    assert!(got.values().all(|g| g.len() == 1));
    let truth = env.sim().world().indexed_truth(b, &TruthFilter::default());
    assert_eq!(got.len(), truth.len());
    // An image exactly on the shared edge belongs to the east grid.
    let on_edge: Vec<u64> = env
        .sim()
        .world()
        .images()
        .iter()
        .filter(|i| i.geometry.is_some_and(|g| g[0] == mid))
        .map(|i| i.id)
        .collect();
    assert!(!on_edge.is_empty(), "the world has images on the edge");
    for id in &on_edge {
        assert_eq!(got[id], vec!["east".to_string()]);
    }
}

/// A stage after the listing that cannot write its file (the listing file,
/// `audit.json`) stops the run with exit 2, naming the file, and closes the
/// run record's entry as `failed` rather than leaving it `running`.
#[test]
fn a_file_that_cannot_be_written_closes_the_record_as_failed() {
    let env = TestEnv::with_sim(SimConfig::default());
    let b = bbox_arg(world_bbox(&env));
    for (blocked, extra) in [("listing.jsonl", None), ("audit.json", Some("--audit"))] {
        let out = env.out();
        let _ = std::fs::remove_dir_all(&out);
        // A folder (with a file in it) where the file goes: the rename over it fails.
        std::fs::create_dir_all(out.join(blocked).join("x")).unwrap();
        let mut args = vec!["--bbox", &b, "--size", "256", "--dry-run"];
        args.extend(extra);
        let o = env.fetch(&args);
        assert_eq!(o.status.code(), Some(2), "{blocked}: {}", stderr(&o));
        assert!(stderr(&o).contains(blocked), "{}", stderr(&o));
        let record = read_json(&out.join("mlyexport-run.json"));
        let last = record["runs"].as_array().and_then(|r| r.last()).cloned();
        assert_eq!(
            last.as_ref().map(|l| l["outcome"].clone()),
            Some("failed".into()),
            "{blocked}: {record}"
        );
        assert!(last.is_some_and(|l| l["finished_at"].is_string()));
    }
}

#[test]
fn rerunning_with_other_filters_is_refused() {
    let env = TestEnv::with_sim(SimConfig::default());
    let b = world_bbox(&env);
    let o = env.fetch(&["--bbox", &bbox_arg(b), "--dry-run"]);
    assert_eq!(o.status.code(), Some(0));
    let o = env.fetch(&["--bbox", &bbox_arg(b), "--dry-run", "--pano", "only"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains(r#"--pano: was "include", now "only""#),
        "{err}"
    );
}

#[test]
fn every_json_written_matches_its_schema() {
    let env = TestEnv::with_sim(SimConfig::default());
    let b = world_bbox(&env);
    let o = env.fetch(&[
        "--bbox",
        &bbox_arg(b),
        "--grid",
        "2x2",
        "--size",
        "256",
        "--since",
        "2016-01-01",
        "--max-images",
        "400",
    ]);
    assert_success(&o);
    assert_schema("run.schema.json", &run_record(&env.out()));
    for line in listing(&env.out()) {
        assert_schema("listing.schema.json", &line);
    }
    let mut checked = 0;
    for f in all_files(&env.out()) {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".json") && name != "mlyexport-run.json" {
            assert_schema("image.schema.json", &read_json(&f));
            checked += 1;
        }
    }
    assert_eq!(checked, 400);
}

#[test]
fn images_without_a_position_are_kept_and_never_placed_at_0_0() {
    let env = TestEnv::with_sim(SimConfig::default());
    let b = world_bbox(&env);
    let o = env.fetch(&["--bbox", &bbox_arg(b), "--dry-run"]);
    assert_success(&o);
    let no_pos: Vec<u64> = env
        .sim()
        .world()
        .images()
        .iter()
        .filter(|i| i.geometry.is_none() && i.computed_geometry.is_none())
        .map(|i| i.id)
        .collect();
    assert!(
        !no_pos.is_empty(),
        "the demo world has images without position"
    );
    let mut found = 0;
    for v in listing(&env.out()) {
        assert!(!(v["lon"] == 0.0 && v["lat"] == 0.0));
        let id = id_of(&v);
        if no_pos.contains(&id) {
            assert!(v["lon"].is_null() && v["lat"].is_null());
            found += 1;
        }
    }
    assert_eq!(found, no_pos.len());
    let rec = run_record(&env.out());
    assert_eq!(
        rec["totals"]["without_position"].as_u64(),
        Some(no_pos.len() as u64)
    );
}

#[test]
fn a_changed_grid_file_at_the_same_path_is_refused() {
    let env = TestEnv::with_sim(SimConfig::default());
    let f = env.path().join("segments.csv");
    std::fs::write(&f, "A,8.50,47.35,8.53,47.39\nB,8.53,47.35,8.56,47.39\n").unwrap();
    let o = env.fetch(&["--grid-file", "segments.csv", "--dry-run"]);
    assert_success(&o);
    // Same outer box and path, other cells: the images would move folders.
    std::fs::write(&f, "A,8.50,47.35,8.56,47.37\nB,8.50,47.37,8.56,47.39\n").unwrap();
    let o = env.fetch(&["--grid-file", "segments.csv", "--dry-run"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("grid cells: was 2 cells"),
        "{}",
        stderr(&o)
    );
}

/// The library's `download_image` makes the folder it is given with its
/// parents, and follows a link the caller chose (only fetch's own grid
/// folders must be real folders).
#[tokio::test]
async fn the_library_downloads_into_a_nested_or_linked_folder() {
    use mlyexport::{api, fetch, model::*};
    let env = TestEnv::with_sim(SimConfig::default());
    let cfg = api::ApiConfig {
        base_url: env.sim().graph_url().parse().unwrap(),
        token: AccessToken::new(mlysim::DEMO_TOKEN).unwrap(),
        connect_timeout: std::time::Duration::from_secs(5),
        read_timeout: std::time::Duration::from_secs(10),
        retry: api::RetryPolicy {
            attempts: 2,
            base: std::time::Duration::from_millis(10),
            max: std::time::Duration::from_millis(50),
        },
        search_per_min: 60_000,
        entity_per_min: 60_000,
        search_cap: 2000,
    };
    let client = api::Client::new(&cfg).unwrap();
    let ids: Vec<u64> = env
        .sim()
        .world()
        .images()
        .iter()
        .take(2)
        .map(|i| i.id)
        .collect();
    let nested = env.path().join("a/b/1");
    let target = env.path().join("elsewhere");
    std::fs::create_dir_all(&target).unwrap();
    let linked = env.path().join("linked");
    std::os::unix::fs::symlink(&target, &linked).unwrap();
    for (id, dir) in ids.iter().zip([&nested, &linked]) {
        let id = ImageId::new(*id).unwrap();
        fetch::download_image(&client, id, ThumbSize::S256, dir)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    }
    assert!(nested.join(format!("{}.jpg", ids[0])).is_file());
    assert!(target.join(format!("{}.json", ids[1])).is_file());
}
