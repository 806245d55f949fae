//! The old tool's (mapillary-download) folders as it really writes them:
//! `layers` reads them, `adopt` converts them in place.

use std::fs;
use std::path::Path;

use serde_json::{Value, json};

use crate::common::*;

/// The segments of the hand-made old folder: id and box.
pub const SEGMENTS: &[(&str, [f64; 4])] = &[
    ("1", [13.0, 52.0, 13.1, 52.1]),
    ("2", [13.1, 52.0, 13.2, 52.1]),
    ("3", [13.2, 52.0, 13.3, 52.1]),
];

/// A real JPEG of `w` x `h` pixels.
pub fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(w, h, image::Rgb([90, 120, 150]));
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
        .encode_image(&img)
        .unwrap();
    out
}

/// The old tool's JSON for image `id` (`indent=2`, its keys, computed values).
pub fn old_json(id: u64, lon: f64, lat: f64) -> String {
    let v = json!({
        "image_name": format!("{id}.jpg"),
        "latitude": lat,
        "longitude": lon,
        "captured_at": 1_600_000_000_000_i64 + id as i64,
        "heading": 45.5,
        "camera_parameters": [0.85, 0.0, 0.0],
        "camera_type": "perspective",
        "computed_rotation": [0.1, 0.2, 0.3],
        "annotations": []
    });
    serde_json::to_string_pretty(&v).unwrap()
}

/// Writes one old image: `<seg>/jsons/<id>.json` and `<seg>/images/<id>.jpg`.
pub fn put(seg: &Path, id: u64, lon: f64, lat: f64, jpg: &[u8]) {
    fs::create_dir_all(seg.join("jsons")).unwrap();
    fs::create_dir_all(seg.join("images")).unwrap();
    fs::write(seg.join(format!("jsons/{id}.json")), old_json(id, lon, lat)).unwrap();
    fs::write(seg.join(format!("images/{id}.jpg")), jpg).unwrap();
}

/// The HTML page a CDN answers for an expired URL, as the old tool saved it.
pub const HTML_PAGE: &[u8] =
    b"<!DOCTYPE html><html><body><h1>403 Forbidden</h1>URL signature expired</body></html>";

/// An old folder: three segments and the segments file; segment 1 holds a
/// good image, one at (0, 0) and an HTML page saved as `.jpg`; segment 2 a
/// good image and a truncated JPEG; segment 3 empty `images/` and `jsons/`;
/// a stray file in segment 1 and one at the top.
pub fn make_old_folder(root: &Path, segments_file: bool) {
    if segments_file {
        let lines: Vec<String> = SEGMENTS
            .iter()
            .map(|(id, b)| format!("{id},{},{},{},{}", b[0], b[1], b[2], b[3]))
            .collect();
        fs::create_dir_all(root).unwrap();
        fs::write(
            root.join("study_area_segments.txt"),
            lines.join("\n") + "\n",
        )
        .unwrap();
    }
    let good = jpeg(32, 24);
    let s1 = root.join("1");
    put(&s1, 101, 13.05, 52.05, &good);
    put(&s1, 102, 0.0, 0.0, &good);
    put(&s1, 103, 13.06, 52.06, HTML_PAGE);
    fs::write(s1.join("images/notes.txt"), b"my notes").unwrap();
    let s2 = root.join("2");
    put(&s2, 201, 13.15, 52.05, &good);
    put(&s2, 202, 13.16, 52.06, &good[..good.len() / 2]);
    fs::create_dir_all(root.join("3/jsons")).unwrap();
    fs::create_dir_all(root.join("3/images")).unwrap();
    fs::write(root.join("readme.txt"), b"downloaded in 2023").unwrap();
}

fn layers(env: &TestEnv, input: &Path) -> std::process::Output {
    env.cmd()
        .args([
            "layers",
            "--format",
            "geojson",
            "--as-of",
            "2024-01-01",
            "--input",
        ])
        .arg(input)
        .output()
        .unwrap()
}

fn coverage_grid<'a>(doc: &'a Value, grid: &str) -> &'a Value {
    doc["grids"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["grid"] == grid)
        .unwrap_or_else(|| panic!("grid {grid} in {doc}"))
}

#[test]
fn layers_reads_the_old_tools_segments() {
    let env = TestEnv::new();
    let root = env.path().join("downloads");
    make_old_folder(&root, true);
    let out = layers(&env, &root);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}\n{}", stdout(&out));
    assert!(err.contains("103.jpg") && err.contains("HTML"), "{err}");
    assert!(
        err.contains("202.jpg") && err.contains("truncated"),
        "{err}"
    );
    let gj = read_json(&root.join("layers/images.geojson"));
    let feats = gj["features"].as_array().unwrap();
    let ids: Vec<String> = feats
        .iter()
        .map(|f| f["properties"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["101", "201"], "{gj}");
    let f = &feats[0]["properties"];
    assert_eq!(f["position_source"], "computed");
    assert_eq!(f["file"], "1/images/101.jpg");
    assert_eq!(feats[0]["geometry"]["coordinates"], json!([13.05, 52.05]));
    let cov = read_json(&root.join("layers/coverage.json"));
    let g1 = coverage_grid(&cov, "1");
    assert_eq!(g1["bbox"], json!([13.0, 52.0, 13.1, 52.1]));
    assert_eq!(g1["failed"], 1, "{g1}");
    assert_eq!(coverage_grid(&cov, "2")["failed"], 1);
    assert_eq!(
        coverage_grid(&cov, "3")["bbox"],
        json!([13.2, 52.0, 13.3, 52.1])
    );
    // Nothing of the user's was changed.
    assert_eq!(fs::read(root.join("1/images/103.jpg")).unwrap(), HTML_PAGE);
}

#[test]
fn layers_without_segments_file_shows_unknown_boxes() {
    let env = TestEnv::new();
    let root = env.path().join("downloads");
    make_old_folder(&root, false);
    let out = layers(&env, &root);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let cov = read_json(&root.join("layers/coverage.json"));
    assert!(coverage_grid(&cov, "1")["bbox"].is_null(), "{cov}");
    // A single run: `jsons/` and `images/` at the top, grid `1`.
    let single = env.path().join("single");
    put(&single, 7, 2.35, 48.85, &jpeg(8, 8));
    let out = layers(&env, &single);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let gj = read_json(&single.join("layers/images.geojson"));
    assert_eq!(gj["features"][0]["properties"]["file"], "images/7.jpg");
}

fn adopt(env: &TestEnv, root: &Path, extra: &[&str]) -> std::process::Output {
    env.cmd()
        .arg("adopt")
        .arg("--input")
        .arg(root)
        .args(extra)
        .output()
        .unwrap()
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    all_files(dir)
        .into_iter()
        .filter(|p| !p.ends_with(".mlyexport.lock"))
        .map(|p| {
            let b = fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}

#[test]
fn adopt_dry_run_changes_nothing() {
    let env = TestEnv::new();
    let root = env.path().join("downloads");
    make_old_folder(&root, true);
    let before = snapshot(&root);
    let out = adopt(&env, &root, &["--dry-run"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).contains("would adopt: 3"), "{}", stdout(&out));
    assert_eq!(snapshot(&root), before);
}

#[test]
fn adopt_converts_in_place_and_loses_nothing() {
    let env = TestEnv::new();
    let root = env.path().join("downloads");
    make_old_folder(&root, true);
    let before = snapshot(&root);
    let out = adopt(&env, &root, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(stdout(&out).contains("adopted: 3"), "{}", stdout(&out));
    assert!(
        err.contains("1/images/103.jpg") && err.contains("HTML"),
        "{err}"
    );
    assert!(
        err.contains("2/images/202.jpg") && err.contains("truncated"),
        "{err}"
    );
    assert!(err.contains("notes.txt"), "{err}");
    assert_adopted(&root);
    // Nothing lost: every old file's bytes are somewhere in the folder.
    let after = snapshot(&root);
    for (path, bytes) in &before {
        assert!(
            after.iter().any(|(_, b)| b == bytes),
            "{} lost",
            path.display()
        );
    }
    // A re-run changes nothing more.
    let out = adopt(&env, &root, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_adopted(&root);
    // layers now reads it as mlyexport's folder.
    let out = layers(&env, &root);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let gj = read_json(&root.join("layers/images.geojson"));
    // 102 has no position: counted, not drawn.
    assert_eq!(gj["features"].as_array().unwrap().len(), 2, "{gj}");
    let cov = read_json(&root.join("layers/coverage.json"));
    assert_eq!(coverage_grid(&cov, "1")["downloaded"], 2, "{cov}");
}

fn assert_adopted(root: &Path) {
    let good = jpeg(32, 24);
    for (grid, id) in [("1", 101), ("1", 102), ("2", 201)] {
        let jpg = root.join(format!("{grid}/{id}.jpg"));
        assert_eq!(fs::read(&jpg).unwrap(), good, "{}", jpg.display());
        let rec = read_json(&root.join(format!("{grid}/{id}.json")));
        assert_schema("image.schema.json", &rec);
        assert_eq!(rec["id"], id.to_string());
        let m = &rec["mlyexport"];
        assert_eq!(m["imported_from"], "old tool");
        assert_eq!(m["original_path"], format!("{grid}/images/{id}.jpg"));
        assert_eq!(m["bytes"], good.len());
        assert_eq!(
            (m["pixel_width"].as_u64(), m["pixel_height"].as_u64()),
            (Some(32), Some(24))
        );
        assert_eq!(m["grid"], grid);
        assert!(
            root.join(format!(".mlyexport-adopted/{grid}/jsons/{id}.json"))
                .is_file()
        );
    }
    let zero = read_json(&root.join("1/102.json"));
    assert!(zero.get("computed_geometry").is_none(), "{zero}");
    assert_eq!(zero["mlyexport"]["warnings"], json!(["no_position"]));
    let one = read_json(&root.join("1/101.json"));
    assert_eq!(
        one["computed_geometry"]["coordinates"],
        json!([13.05, 52.05])
    );
    assert_eq!(one["computed_compass_angle"], 45.5);
    // Broken ones and the stray file stay where they were.
    assert_eq!(fs::read(root.join("1/images/103.jpg")).unwrap(), HTML_PAGE);
    assert!(root.join("1/jsons/103.json").is_file());
    assert!(root.join("2/images/202.jpg").is_file());
    assert!(root.join("1/images/notes.txt").is_file());
    let report = read_json(&root.join("adopt-report.json"));
    let broken = broken_paths(&report);
    assert_eq!(broken, ["1/images/103.jpg", "2/images/202.jpg"]);
}

#[test]
fn adopt_finishes_what_a_killed_run_left_half_done() {
    let env = TestEnv::new();
    let root = env.path().join("downloads");
    make_old_folder(&root, true);
    // A run killed between the JPEG's rename and its JSON: 101 moved, no JSON;
    // and one killed after the JSON, before moving the old JSON: 201.
    fs::rename(root.join("1/images/101.jpg"), root.join("1/101.jpg")).unwrap();
    let out = adopt(&env, &root, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    fs::rename(
        root.join(".mlyexport-adopted/2/jsons/201.json"),
        root.join("2/jsons/201.json"),
    )
    .unwrap();
    let out = adopt(&env, &root, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_adopted(&root);
}

/// The old tool's JSON for a record `mlyexport fetch` wrote (its computed
/// position, or (0, 0) without one).
fn old_json_of(rec: &Value) -> String {
    let c = &rec["computed_geometry"]["coordinates"];
    let v = json!({
        "image_name": format!("{}.jpg", rec["id"].as_str().unwrap()),
        "latitude": c[1].as_f64().unwrap_or(0.0),
        "longitude": c[0].as_f64().unwrap_or(0.0),
        "captured_at": rec["captured_at"],
        "heading": rec["computed_compass_angle"],
        "camera_parameters": [], "camera_type": rec["camera_type"],
        "computed_rotation": [], "annotations": []
    });
    serde_json::to_string_pretty(&v).unwrap()
}

#[test]
fn fetch_after_adopt_fills_only_the_gaps() {
    use mlysim::{SimConfig, TruthFilter};
    let env = TestEnv::with_sim(SimConfig::default());
    let b = env.sim().world().spec().bbox;
    let mid = ((b[0] + b[2]) / 2.0 * 1000.0).round() / 1000.0;
    let segments = format!(
        "1,{},{},{mid},{}\n2,{mid},{},{},{}\n",
        b[0], b[1], b[3], b[1], b[2], b[3]
    );
    // A reference fetch gives real JPEGs and records to build the old folder from.
    let reference = env.path().join("reference");
    fs::create_dir_all(&reference).unwrap();
    fs::write(reference.join("segs.txt"), &segments).unwrap();
    let o = env.fetch(&["--grid-file", "reference/segs.txt", "--output", "reference"]);
    assert_success(&o);
    // The old folder: every other image of each grid (the cap and limit lost
    // the rest), one saved as an HTML page.
    let old = env.path().join("downloads");
    fs::create_dir_all(&old).unwrap();
    fs::write(old.join("study_area_segments.txt"), &segments).unwrap();
    let mut kept = Vec::new();
    let mut html = None;
    for (id, grids) in downloaded_ids(&reference) {
        let grid = &grids[0];
        if id.is_multiple_of(2) {
            continue;
        }
        let seg = old.join(grid);
        fs::create_dir_all(seg.join("jsons")).unwrap();
        fs::create_dir_all(seg.join("images")).unwrap();
        let rec = read_json(&reference.join(format!("{grid}/{id}.json")));
        fs::write(seg.join(format!("jsons/{id}.json")), old_json_of(&rec)).unwrap();
        let jpg = if html.is_none() {
            html = Some(id);
            HTML_PAGE.to_vec()
        } else {
            kept.push((grid.clone(), id));
            fs::read(reference.join(format!("{grid}/{id}.jpg"))).unwrap()
        };
        fs::write(seg.join(format!("images/{id}.jpg")), jpg).unwrap();
    }
    assert!(kept.len() > 10, "{kept:?}");
    let o = env
        .cmd()
        .args(["adopt", "--input", "downloads"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let rec = run_record(&old);
    assert_schema("run.schema.json", &rec);
    assert_eq!(rec["grids"][0]["listing"], "imported");
    assert_eq!(rec["runs"][0]["outcome"], "imported");
    let o = env.fetch(&[
        "--grid-file",
        "downloads/study_area_segments.txt",
        "--output",
        "downloads",
    ]);
    assert_success(&o);
    // Complete against the simulator's ground truth, each image once.
    let got = downloaded_ids(&old);
    let truth = env.sim().world().indexed_truth(b, &TruthFilter::default());
    assert_eq!(got.len(), truth.len());
    assert!(got.values().all(|g| g.len() == 1), "{got:?}");
    // Adopted good images were not downloaded again; the broken one was.
    for (grid, id) in &kept {
        let r = read_json(&old.join(format!("{grid}/{id}.json")));
        assert_eq!(r["mlyexport"]["imported_from"], "old tool", "{r}");
    }
    let h = html.unwrap();
    let g = &got[&h][0];
    let r = read_json(&old.join(format!("{g}/{h}.json")));
    assert!(r["mlyexport"].get("imported_from").is_none(), "{r}");
    // The first real fetch downloaded exactly what the old tool missed or broke.
    let missed = truth.len() - kept.len();
    assert!(
        stdout(&o).contains(&format!("downloaded: {missed}\n")),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains(&format!("skipped (already there): {}\n", kept.len())));
    let rec = run_record(&old);
    assert_eq!(rec["runs"][1]["counts"]["downloaded"], missed as u64);
    // Per grid: what the old tool had missed (or left broken) there.
    let per = stdout(&o)
        .lines()
        .find_map(|l| l.strip_prefix("downloaded per grid: ").map(String::from))
        .unwrap_or_else(|| panic!("no per-grid line: {}", stdout(&o)));
    let sum: usize = per
        .split(", ")
        .map(|kv| kv.rsplit(": ").next().unwrap().parse::<usize>().unwrap())
        .sum();
    assert_eq!(sum, missed, "{per}");
}

/// Copies `from` into `to`, recursively.
pub(crate) fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn the_hand_made_fixture_is_read_and_adopted() {
    let env = TestEnv::new();
    let root = env.path().join("downloads");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/old-tool"),
        &root,
    );
    let out = layers(&env, &root);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("103.jpg") && err.contains("202.jpg"), "{err}");
    let out = adopt(&env, &root, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).contains("adopted: 3"), "{}", stdout(&out));
    assert_schema("run.schema.json", &run_record(&root));
}

/// A single run of the old tool: `jsons/` and `images/` at the top become
/// grid `1`, which does not exist yet.
#[test]
fn adopt_takes_a_single_run_at_the_top() {
    let env = TestEnv::new();
    let root = env.path().join("single");
    put(&root, 7, 2.35, 48.85, &jpeg(8, 8));
    let before = snapshot(&root);
    let out = adopt(&env, &root, &["--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("would adopt: 1"), "{}", stdout(&out));
    assert_eq!(snapshot(&root), before);
    let out = adopt(&env, &root, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("adopted: 1"), "{}", stdout(&out));
    assert_eq!(fs::read(root.join("1/7.jpg")).unwrap(), jpeg(8, 8));
    let rec = read_json(&root.join("1/7.json"));
    assert_schema("image.schema.json", &rec);
    assert_eq!(rec["mlyexport"]["original_path"], "images/7.jpg");
    assert!(root.join(".mlyexport-adopted/1/jsons/7.json").is_file());
    assert!(!root.join("images").exists() && !root.join("jsons").exists());
}

/// One JPEG over the read bound (256 MiB; sparse here) is left in place and
/// named, never the end of the whole run, dry or not.
#[test]
fn adopt_leaves_a_too_large_jpeg_and_goes_on() {
    let env = TestEnv::new();
    let root = env.path().join("downloads");
    make_old_folder(&root, true);
    put(&root.join("1"), 104, 13.07, 52.07, b"");
    let big = fs::File::create(root.join("1/images/104.jpg")).unwrap();
    big.set_len((256 << 20) + 1).unwrap();
    drop(big);
    for (extra, verb) in [(&["--dry-run"][..], "would adopt: 3"), (&[], "adopted: 3")] {
        let out = adopt(&env, &root, extra);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(stdout(&out).contains(verb), "{}", stdout(&out));
        assert!(
            stdout(&out).contains("broken (left in place): 3"),
            "{}",
            stdout(&out)
        );
        assert!(
            err.contains("1/images/104.jpg") && err.contains("larger than"),
            "{err}"
        );
        assert!(!err.contains("permissions"), "{err}");
    }
    for done in ["1/101.json", "1/102.json", "2/201.json"] {
        assert!(root.join(done).is_file(), "{done}");
    }
    assert!(root.join("1/images/104.jpg").is_file());
    assert!(root.join("1/jsons/104.json").is_file());
    let report = read_json(&root.join("adopt-report.json"));
    let broken = broken_paths(&report);
    assert_eq!(
        broken,
        ["1/images/103.jpg", "1/images/104.jpg", "2/images/202.jpg"]
    );
}

/// `000031.json` is not image 31's JSON: left with that reason, not read as
/// `31.json`.
#[test]
fn adopt_leaves_padded_ids_with_the_reason() {
    let env = TestEnv::new();
    let root = env.path().join("downloads");
    put(&root.join("1"), 5, 13.05, 52.05, &jpeg(8, 8));
    fs::write(root.join("1/jsons/000031.json"), old_json(31, 13.05, 52.05)).unwrap();
    fs::write(root.join("1/images/0005.jpg"), jpeg(8, 8)).unwrap();
    let out = adopt(&env, &root, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(stdout(&out).contains("adopted: 1"), "{}", stdout(&out));
    for name in ["1/jsons/000031.json", "1/images/0005.jpg"] {
        assert!(
            err.contains(&format!("{name}: names image `")) && err.contains("leading zeros"),
            "{name}: {err}"
        );
        assert!(root.join(name).is_file());
    }
    assert!(!err.contains("cannot read"), "{err}");
    assert_eq!(fs::read(root.join("1/5.jpg")).unwrap(), jpeg(8, 8));
}

/// The paths of `adopt-report.json`'s `broken` list, in order.
fn broken_paths(report: &serde_json::Value) -> Vec<&str> {
    report["broken"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["path"].as_str().unwrap())
        .collect()
}
