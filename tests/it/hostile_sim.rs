//! The simulator's hostile mode against the real binary: a decompression
//! bomb for a tile, a search body of 256 MiB, thumbnails of 200 MiB, and
//! spreadsheet formulas and terminal escapes in every text field. Each ends
//! in bounded memory with a clear outcome; API text never reaches a CSV cell
//! or the terminal as markup.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;

use mlysim::{Hostile, SimConfig, TruthFilter};

use crate::common::*;

/// About 150 images at the edge of the demo world's hot spot.
const SMALL: [f64; 4] = [8.531, 47.371, 8.534, 47.374];

fn hostile(h: Hostile) -> TestEnv {
    TestEnv::with_sim(SimConfig {
        hostile: h,
        ..SimConfig::default()
    })
}

/// Runs `mlyexport ARGS` under `/usr/bin/time`; returns the output and the
/// peak resident memory in MB.
fn run_measured(env: &TestEnv, args: &[&str]) -> (Output, u64) {
    let bin = assert_cmd::cargo::cargo_bin("mlyexport");
    let report = env.path().join("rss.txt");
    let out = env
        .std_cmd(Some(Path::new("/usr/bin/time")))
        .arg("-o")
        .arg(&report)
        .args(["-f", "%M"])
        .arg(bin)
        .args(args)
        .output()
        .expect("runs under /usr/bin/time");
    let kb: u64 = std::fs::read_to_string(&report)
        .unwrap_or_default()
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(u64::MAX);
    (out, kb / 1024)
}

fn truth(env: &TestEnv) -> BTreeSet<u64> {
    env.sim()
        .world()
        .indexed_truth(SMALL, &TruthFilter::default())
        .into_iter()
        .collect()
}

#[test]
fn a_tile_bomb_is_refused_and_the_grid_is_listed_by_searches_not_verified() {
    let env = hostile(Hostile {
        tile_bomb: true,
        ..Hostile::default()
    });
    let bb = bbox_arg(SMALL);
    let (o, mb) = run_measured(&env, &["fetch", "--bbox", &bb, "--dry-run"]);
    assert_success(&o);
    assert!(mb < 300, "peak RSS {mb} MB");
    let got: BTreeSet<u64> = listing(&env.out()).iter().map(id_of).collect();
    assert_eq!(got, truth(&env));
    let rec = run_record(&env.out());
    let g = &rec["grids"][0];
    assert_eq!(g["listing"], "assumed_complete", "{g:#}");
    let why = g["verification"]["not_verified_because"].as_str().unwrap();
    assert!(
        why.contains("not decoded") || why.contains("larger than"),
        "{why}"
    );
    assert!(
        stderr(&o).contains("could not be verified"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_huge_search_body_fails_the_box_in_bounded_memory() {
    let env = hostile(Hostile {
        huge_search_body: true,
        ..Hostile::default()
    });
    let bb = bbox_arg(SMALL);
    let (o, mb) = run_measured(
        &env,
        &[
            "fetch",
            "--bbox",
            &bb,
            "--dry-run",
            "--retries",
            "2",
            "--enumerate",
            "search",
        ],
    );
    assert!(mb < 400, "peak RSS {mb} MB");
    // The preflight search meets it first: nothing is written, a clear error.
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("larger than") || stderr(&o).contains("bad response body"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_huge_thumbnail_fails_that_image_in_bounded_memory() {
    let env = hostile(Hostile {
        huge_thumbnail: true,
        ..Hostile::default()
    });
    let bb = bbox_arg(SMALL);
    let (o, mb) = run_measured(
        &env,
        &["fetch", "--bbox", &bb, "--size", "256", "--retries", "1"],
    );
    assert!(mb < 600, "peak RSS {mb} MB");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(downloaded_ids(&env.out()).is_empty());
    let rec = run_record(&env.out());
    assert_eq!(
        rec["totals"]["failed"].as_u64(),
        Some(truth(&env).len() as u64)
    );
}

#[test]
fn formulas_and_escapes_from_the_api_stay_data() {
    let env = TestEnv::with_sim(SimConfig {
        hostile: Hostile {
            formula_text: true,
            ..Hostile::default()
        },
        faults: mlysim::Faults {
            http500: 0.2,
            ..mlysim::Faults::default()
        },
        ..SimConfig::default()
    });
    let bb = bbox_arg(SMALL);
    let o = env.fetch(&["--bbox", &bb, "--size", "256", "--retries", "20"]);
    assert_success(&o);
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
    for out in [&o, &l] {
        for text in [stdout(out), stderr(out)] {
            assert!(
                !text.contains('\u{1b}') && !text.contains('\u{7}'),
                "{text:?}"
            );
        }
    }
    let csv = std::fs::read_to_string(env.out().join("layers/images.csv")).unwrap();
    assert!(csv.contains("HYPERLINK"), "the make is there");
    for cell in csv.lines().flat_map(|l| l.split(',')) {
        let c = cell.trim_start_matches('"');
        assert!(
            !c.starts_with('=') && !c.starts_with('@') && !c.starts_with("+1-2"),
            "a live formula: {cell}"
        );
    }
}
