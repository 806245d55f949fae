//! Killing a fetch at any moment (SIGKILL) or stopping it with Ctrl-C, then
//! running the same command again: nothing partial, lost or duplicated.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use mlysim::{SimConfig, TruthFilter};
use sha2::{Digest, Sha256};

use crate::common::*;

const AREA: [f64; 4] = [8.5305, 47.3705, 8.533, 47.373];

fn sim_config() -> SimConfig {
    SimConfig {
        latency: Duration::from_millis(15),
        ..SimConfig::default()
    }
}

fn spawn(env: &TestEnv) -> std::process::Child {
    env.std_cmd(None)
        .args([
            "fetch",
            "--bbox",
            &bbox_arg(AREA),
            "--grid",
            "2x2",
            "--size",
            "256",
            "--concurrency",
            "8",
            "--quiet",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawns")
}

/// Every JPEG in place is complete, and every JSON in place matches its JPEG.
fn assert_no_partial_files(out: &Path) {
    for f in all_files(out) {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".jpg") {
            let b = std::fs::read(&f).unwrap();
            assert!(
                b.starts_with(&[0xFF, 0xD8]) && b.ends_with(&[0xFF, 0xD9]),
                "partial JPEG {}",
                f.display()
            );
        }
        if name.ends_with(".json") && !name.starts_with("mlyexport-run") {
            let meta = read_json(&f);
            let jpg =
                std::fs::read(f.with_extension("jpg")).expect("a JSON is written after its JPEG");
            assert_eq!(
                meta["mlyexport"]["sha256"].as_str().unwrap(),
                hex::encode(Sha256::digest(&jpg))
            );
        }
    }
    if out.join("mlyexport-run.json").exists() {
        run_record(out);
    }
}

#[test]
fn sigkill_at_any_moment_then_resume_loses_and_duplicates_nothing() {
    let env = TestEnv::with_sim(sim_config());
    let truth: BTreeSet<u64> = env
        .sim()
        .world()
        .indexed_truth(AREA, &TruthFilter::default())
        .into_iter()
        .collect();
    assert!(truth.len() > 300);
    // Kill points from early (listing) to late (downloads), varied per run.
    let seed = std::process::id() as u64;
    for (i, base_ms) in [40u64, 120, 300, 500, 700, 900].iter().enumerate() {
        let jitter = (seed.wrapping_mul(2654435761).wrapping_add(i as u64 * 97)) % 80;
        let mut child = spawn(&env);
        if i >= 2 {
            // Later kills fall in the downloads, however slow the listing
            // is on a loaded machine: wait for the listing file first.
            let listing = env.out().join("listing.jsonl");
            for _ in 0..400 {
                if listing.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            std::fs::remove_file(&listing).ok();
        }
        std::thread::sleep(Duration::from_millis(base_ms + jitter));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert_no_partial_files(&env.out());
    }
    let status = spawn(&env).wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_no_partial_files(&env.out());
    let got = downloaded_ids(&env.out());
    assert!(got.values().all(|g| g.len() == 1), "an image in two grids");
    assert_eq!(got.keys().copied().collect::<BTreeSet<_>>(), truth);
    let temp_left = all_files(&env.out())
        .iter()
        .filter(|f| {
            f.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".mlyexport-tmp")
        })
        .count();
    assert_eq!(temp_left, 0, "temp files are cleaned up");
    let rec = run_record(&env.out());
    assert_eq!(
        rec["totals"]["downloaded"].as_u64(),
        Some(truth.len() as u64)
    );
    assert!(rec["runs"].as_array().unwrap().len() >= 2);
}

#[test]
fn ctrl_c_saves_state_exits_130_and_resumes() {
    let env = TestEnv::with_sim(sim_config());
    let mut child = spawn(&env);
    // Wait until downloads have started.
    let mut waited = 0;
    while downloaded_ids(&env.out()).len() < 20 && waited < 200 {
        std::thread::sleep(Duration::from_millis(25));
        waited += 1;
    }
    let pid = child.id().to_string();
    Command::new("kill").args(["-INT", &pid]).status().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert_no_partial_files(&env.out());
    let rec = run_record(&env.out());
    assert_eq!(rec["runs"][0]["outcome"], "interrupted");
    let before = downloaded_ids(&env.out()).len();
    env.sim().reset_stats();
    assert_eq!(spawn(&env).wait().unwrap().code(), Some(0));
    let truth = env
        .sim()
        .world()
        .indexed_truth(AREA, &TruthFilter::default());
    assert_eq!(downloaded_ids(&env.out()).len(), truth.len());
    assert_eq!(
        env.sim().stats().thumbs_served as usize,
        truth.len() - before,
        "only the missing images are fetched again"
    );
}

/// A 2x1 fetch of `AREA` with `sim`'s URLs; returns its output.
fn fetch_2x1(env: &TestEnv, sim: &mlysim::Sim) -> std::process::Output {
    env.cmd()
        .env("MLYEXPORT_API_URL", sim.graph_url())
        .env("MLYEXPORT_TILES_URL", sim.tiles_url())
        .args([
            "fetch",
            "--bbox",
            &bbox_arg(AREA),
            "--grid",
            "2x1",
            "--size",
            "256",
        ])
        .output()
        .expect("runs")
}

/// An image whose position the API moved into another grid between two runs
/// is not downloaded again: it stays in the folder where it was stored,
/// once, and `layers` reads the folder without complaint.
#[test]
fn an_image_that_moved_to_another_grid_is_stored_once() {
    let env = TestEnv::with_sim(SimConfig::default());
    assert_success(&fetch_2x1(&env, env.sim()));
    let first = downloaded_ids(&env.out());
    let (&id, _) = first
        .iter()
        .find(|(_, g)| g == &&vec!["1".to_string()])
        .expect("an image in grid 1");
    // Grid 2 is the east half of AREA.
    let east = [AREA[2] - 0.0002, (AREA[1] + AREA[3]) / 2.0];
    let moved = mlysim::Sim::spawn(SimConfig {
        moves: vec![(id, east)],
        ..SimConfig::default()
    })
    .unwrap();
    let o = fetch_2x1(&env, &moved);
    assert_success(&o);
    let text = stdout(&o);
    assert!(
        text.contains("kept in their first grid (moved): 1"),
        "{text}"
    );
    assert!(text.contains("downloaded: 0"), "{text}");
    let second = downloaded_ids(&env.out());
    assert_eq!(second.len(), first.len());
    assert_eq!(
        second[&id],
        vec!["1".to_string()],
        "stays where it was stored"
    );
    assert!(
        second.values().all(|g| g.len() == 1),
        "an image stored twice"
    );
    let listed = listing(&env.out());
    let line = listed.iter().find(|l| id_of(l) == id).unwrap();
    assert_eq!(line["grid"], "2", "the listing says where it lies now");
    let l = env
        .cmd()
        .args([
            "layers",
            "--input",
            env.out().to_str().unwrap(),
            "--format",
            "csv",
        ])
        .output()
        .unwrap();
    assert_success(&l);
}

/// A stored image is checked, not trusted: a JPEG of the wrong size, a JSON
/// naming another id and a JSON that does not parse are fetched again.
#[test]
fn a_broken_stored_image_is_fetched_again() {
    let env = TestEnv::with_sim(SimConfig::default());
    assert_success(&fetch_2x1(&env, env.sim()));
    let got = downloaded_ids(&env.out());
    let mut it = got.iter();
    let mut path = |ext: &str| {
        let (id, g) = it.next().unwrap();
        env.out().join(&g[0]).join(format!("{id}.{ext}"))
    };
    let (short, other, garbage) = (path("jpg"), path("json"), path("json"));
    let jpg = std::fs::read(&short).unwrap();
    std::fs::write(&short, &jpg[..jpg.len() / 2]).unwrap();
    let mut v = read_json(&other);
    v["id"] = serde_json::json!("1");
    std::fs::write(&other, v.to_string()).unwrap();
    std::fs::write(&garbage, "{\"id\": ").unwrap();
    let o = fetch_2x1(&env, env.sim());
    assert_success(&o);
    assert!(stdout(&o).contains("downloaded: 3"), "{}", stdout(&o));
    assert_no_partial_files(&env.out());
    assert_eq!(std::fs::read(&short).unwrap().len(), jpg.len());
    let fixed = read_json(&other);
    assert_eq!(
        fixed["mlyexport"]["bytes"].as_u64().unwrap() as usize,
        std::fs::read(other.with_extension("jpg")).unwrap().len()
    );
    read_json(&garbage);
}
