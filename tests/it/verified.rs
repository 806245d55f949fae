//! The default (verified) listing against every behaviour of the API that
//! the public record allows and nobody can confirm: any cap (fixed or fuzzy,
//! from 500 up), a bbox filter on either position, any result order, dense
//! refusals, and tiles that lag the Graph. Under each, the listing equals the
//! simulator's ground truth and every grid says `verified`. A search-only
//! listing, and tiles that drifted, are marked not verified.

use std::collections::BTreeSet;
use std::process::Output;

use mlysim::{
    BadEntity, BboxPosition, EmptyTile, Hostile, ResultOrder, SimConfig, TileDrift, TruthFilter,
    WorldSpec,
};

use crate::common::*;

/// A box through the demo world's hot spot, so that many images lie near
/// its edges and one cell holds more than the cap.
const AREA: [f64; 4] = [8.515, 47.36, 8.5305, 47.378];

/// A 2x2 dry run of `AREA`, with `extra` flags.
fn list(env: &TestEnv, extra: &[&str]) -> Output {
    let mut args = vec![
        "--bbox",
        "8.515,47.36,8.5305,47.378",
        "--grid",
        "2x2",
        "--dry-run",
    ];
    args.extend_from_slice(extra);
    env.fetch(&args)
}

/// Every image of `AREA` by its GPS position, plus the images without any
/// position that a search may return: those inside the area must be listed,
/// those within the outer margin may be.
fn truth(env: &TestEnv) -> (BTreeSet<u64>, BTreeSet<u64>) {
    let w = env.sim().world();
    let f = TruthFilter::default();
    let mut must: BTreeSet<u64> = w.indexed_truth(AREA, &f).into_iter().collect();
    let wide = [
        AREA[0] - 0.002,
        AREA[1] - 0.002,
        AREA[2] + 0.002,
        AREA[3] + 0.002,
    ];
    let placed: BTreeSet<u64> = w.ground_truth(wide, &f).into_iter().collect();
    let may: BTreeSet<u64> = w
        .indexed_truth(wide, &f)
        .into_iter()
        .filter(|id| !placed.contains(id))
        .collect();
    must.extend(w.ground_truth(AREA, &f));
    (must, may)
}

fn listed(env: &TestEnv) -> BTreeSet<u64> {
    let lines = listing(&env.out());
    let ids: BTreeSet<u64> = lines.iter().map(id_of).collect();
    assert_eq!(ids.len(), lines.len(), "an image listed twice");
    ids
}

/// The listing equals the truth; returns the run record.
fn assert_complete(env: &TestEnv, o: &Output, what: &str) -> serde_json::Value {
    assert_success(o);
    let (must, may) = truth(env);
    let got = listed(env);
    let missing: Vec<_> = must.difference(&got).take(5).collect();
    let extra: Vec<_> = got
        .difference(&must)
        .filter(|id| !may.contains(id))
        .take(5)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: missing {} (first {missing:?}), extra {extra:?} of {}",
        must.difference(&got).count(),
        must.len()
    );
    let rec = run_record(&env.out());
    assert_schema("run.schema.json", &rec);
    rec
}

fn assert_verified(rec: &serde_json::Value, what: &str) {
    for g in rec["grids"].as_array().unwrap() {
        assert_eq!(g["listing"], "verified", "{what}: {g:#}");
        assert!(g["verification"]["tile_points"].as_u64().is_some(), "{g:#}");
    }
    assert_eq!(rec["totals"]["unverified_grids"], 0, "{what}");
}

fn sim(cfg: SimConfig) -> TestEnv {
    TestEnv::with_sim(cfg)
}

#[test]
fn complete_and_verified_whatever_the_cap() {
    let caps = [
        (500, false, 0.0),
        (1000, true, 0.3),
        (1500, false, 0.0),
        (2000, true, 0.06),
    ];
    for (cap, fuzzy_cap, cap_fuzz) in caps {
        let env = sim(SimConfig {
            cap,
            fuzzy_cap,
            cap_fuzz,
            ..SimConfig::default()
        });
        let o = list(&env, &[]);
        let what = format!("cap {cap} fuzzy {fuzzy_cap}");
        let rec = assert_complete(&env, &o, &what);
        assert_verified(&rec, &what);
        assert!(
            stdout(&o).contains("listing: verified (4 of 4 grids)"),
            "{}",
            stdout(&o)
        );
        if cap < 1500 {
            // The short answers were filled in: by lookups or by smaller boxes.
            let t = &rec["totals"];
            let extra = t["reconciled"].as_u64().unwrap() + t["search_calls"].as_u64().unwrap();
            assert!(extra > 4, "{what}: {t:#}");
        }
    }
}

#[test]
fn complete_when_the_bbox_filter_uses_the_computed_position() {
    let env = sim(SimConfig {
        world: WorldSpec::demo().with_computed_offset_m(50.0),
        bbox_position: BboxPosition::Computed,
        ..SimConfig::default()
    });
    let o = list(&env, &[]);
    let rec = assert_complete(&env, &o, "computed bbox filter");
    assert_verified(&rec, "computed bbox filter");
    // The same world with a search-only listing also finds the edge images
    // (the outer margin), but says it is not verified.
    let env2 = sim(SimConfig {
        world: WorldSpec::demo().with_computed_offset_m(50.0),
        bbox_position: BboxPosition::Computed,
        ..SimConfig::default()
    });
    let o = list(&env2, &["--enumerate", "search"]);
    assert_complete(&env2, &o, "computed bbox filter, search only");
}

#[test]
fn complete_whatever_the_order_of_results() {
    for order in [
        ResultOrder::Random,
        ResultOrder::ByTime,
        ResultOrder::EdgeFirst,
    ] {
        let env = sim(SimConfig {
            cap: 800,
            fuzzy_cap: true,
            result_order: order,
            ..SimConfig::default()
        });
        let o = list(&env, &[]);
        let rec = assert_complete(&env, &o, &format!("{order:?}"));
        assert_verified(&rec, &format!("{order:?}"));
    }
}

#[test]
fn complete_when_dense_boxes_are_refused() {
    let env = sim(SimConfig {
        dense_refusal: Some(600),
        ..SimConfig::default()
    });
    let o = list(&env, &[]);
    let rec = assert_complete(&env, &o, "refusals above 600");
    assert_verified(&rec, "refusals above 600");
    let refused = env
        .sim()
        .stats()
        .errors_by_kind
        .get("dense_refusal")
        .copied();
    assert!(refused.unwrap_or(0) > 0, "a box was refused");
}

#[test]
fn complete_when_the_tiles_lag_the_graph() {
    let env = sim(SimConfig {
        tiles_missing: 200,
        tiles_stale: 200,
        ..SimConfig::default()
    });
    let o = list(&env, &[]);
    let rec = assert_complete(&env, &o, "tiles lagging");
    assert_verified(&rec, "tiles lagging");
    let grids = rec["grids"].as_array().unwrap();
    let sum = |k: &str| -> u64 {
        grids
            .iter()
            .map(|g| g["verification"][k].as_u64().unwrap())
            .sum()
    };
    let (must, _) = truth(&env);
    let lagging = env
        .sim()
        .tiles_missing_ids()
        .into_iter()
        .filter(|id| must.contains(id))
        .count() as u64;
    assert!(lagging > 0, "some lagging images lie in the area");
    assert!(sum("only_in_search") >= lagging, "{grids:#?}");
    assert!(
        sum("not_in_graph") > 0,
        "stale tile ids were looked up: {grids:#?}"
    );
}

#[test]
fn a_search_only_listing_is_marked_not_verified() {
    let env = sim(SimConfig::default());
    for (flags, why) in [
        (vec!["--enumerate", "search"], "--enumerate search"),
        (vec!["--tile-budget", "2"], "--tile-budget"),
    ] {
        let _ = std::fs::remove_dir_all(env.out());
        let o = list(&env, &flags);
        let rec = assert_complete(&env, &o, why);
        for g in rec["grids"].as_array().unwrap() {
            assert_eq!(g["listing"], "assumed_complete", "{why}: {g:#}");
        }
        assert_eq!(rec["totals"]["verified_grids"], 0);
        let out = stdout(&o);
        assert!(
            out.contains(
                "listing: NOT VERIFIED: 0 of 4 grids verified, 4 assumed complete (not verified)"
            ),
            "{out}"
        );
        let err = stderr(&o);
        assert!(
            err.contains("warning: the listing was not verified") && err.contains(why),
            "{err}"
        );
        assert_eq!(err.matches("warning:").count(), 1, "{err}");
    }
}

#[test]
fn tile_schema_drift_is_loud_and_never_verified() {
    for drift in [
        TileDrift::BlankIds,
        TileDrift::NonNumericIds,
        TileDrift::NoImageLayer,
        TileDrift::WrongTypes,
    ] {
        let env = sim(SimConfig {
            tile_drift: Some(drift),
            ..SimConfig::default()
        });
        let o = list(&env, &[]);
        // The grids fall back to searches alone, which still list them.
        let rec = assert_complete(&env, &o, &format!("{drift:?}"));
        let grids = rec["grids"].as_array().unwrap();
        // A grid whose tiles hold no image at all shows no drift.
        for g in grids.iter().filter(|g| g["listed"].as_u64() > Some(0)) {
            assert_ne!(g["listing"], "verified", "{drift:?}: {g:#}");
            let v = &g["verification"];
            assert!(v["tile_drift"].as_u64().unwrap() > 0, "{drift:?}: {g:#}");
            assert!(
                v["not_verified_because"]
                    .as_str()
                    .unwrap()
                    .contains("unexpected shape"),
                "{drift:?}: {g:#}"
            );
        }
        let err = stderr(&o);
        assert!(
            err.contains("could not be verified against the vector tiles"),
            "{drift:?}: {err}"
        );
        assert!(stdout(&o).contains("NOT VERIFIED"), "{drift:?}");
    }
}

#[test]
fn a_search_only_listing_splits_on_a_cap_signature() {
    // A fixed cap of 800, below the search-only split threshold (1,000):
    // only the equal answers of several boxes give it away.
    let env = sim(SimConfig {
        world: WorldSpec::dense(6_000),
        cap: 800,
        ..SimConfig::default()
    });
    let b = env.sim().world().spec().bbox;
    let o = env.fetch(&[
        "--bbox",
        &bbox_arg(b),
        "--grid",
        "2x2",
        "--dry-run",
        "--enumerate",
        "search",
    ]);
    assert_success(&o);
    let truth: BTreeSet<u64> = env
        .sim()
        .world()
        .indexed_truth(b, &TruthFilter::default())
        .into_iter()
        .collect();
    assert_eq!(listed(&env), truth);
    let rec = run_record(&env.out());
    assert!(
        rec["grids"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["listing"] == "assumed_complete")
    );
}

/// Images missing from the tiles fill a capped answer and push tile-known
/// images out of it: the answer is no shorter than the tiles' count, so only
/// counting the tile-known ids it holds shows the cut (found by an audit:
/// 15 of 1,023 images were lost at cap 1500 with 300 lagging).
#[test]
fn complete_when_lagging_images_fill_a_capped_answer() {
    let orders = [
        (1500, 300, ResultOrder::EdgeFirst),
        (800, 300, ResultOrder::EdgeFirst),
        (1500, 300, ResultOrder::UntiledLast),
        (800, 300, ResultOrder::UntiledLast),
    ];
    for (cap, missing, result_order) in orders {
        let env = sim(SimConfig {
            cap,
            tiles_missing: missing,
            result_order,
            ..SimConfig::default()
        });
        let o = list(&env, &[]);
        let what = format!("cap {cap}, {missing} images not in the tiles, {result_order:?}");
        let rec = assert_complete(&env, &o, &what);
        assert_verified(&rec, &what);
    }
}

/// A cap below half the asked `limit` that cuts only images the tiles do
/// not know leaves no count short. With the API's `paging.next` on the cut
/// answer (the record leaves open whether bbox searches ever page) and
/// without it, a verified box holding such images is split when its answer
/// is as large as a cap may be (60 of 1,024 images were lost silently before).
#[test]
fn complete_when_a_low_cap_cuts_only_images_the_tiles_lack() {
    for bbox_paging in [true, false] {
        let env = sim(SimConfig {
            cap: 300,
            tiles_missing: 1000,
            result_order: ResultOrder::UntiledLast,
            bbox_paging,
            ..SimConfig::default()
        });
        let o = list(&env, &["--box-target", "200"]);
        let what = format!("cap 300, paging {bbox_paging}");
        let rec = assert_complete(&env, &o, &what);
        assert_verified(&rec, &what);
    }
}

/// An entity call answered 200 with something that is not the image's
/// record (the record: "the image URL in the ID field"; an error envelope
/// on HTTP 200) is counted as unresolved, so the grid is not verified and
/// the run says so, never dropped unseen as before.
#[test]
fn a_lookup_answered_with_something_else_is_unresolved_and_loud() {
    for bad in [
        BadEntity::UrlAsId,
        BadEntity::ErrorEnvelope,
        BadEntity::Empty,
    ] {
        let env = sim(SimConfig {
            tiles_stale: 40,
            hostile: Hostile {
                unknown_entity: Some(bad),
                ..Hostile::default()
            },
            ..SimConfig::default()
        });
        let o = list(&env, &["--retries", "1"]);
        assert_eq!(o.status.code(), Some(1), "{bad:?}: {}", stdout(&o));
        let rec = run_record(&env.out());
        let why: Vec<&str> = rec["grids"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|g| g["verification"]["not_verified_because"].as_str())
            .collect();
        assert!(
            why.iter().any(|w| w.contains("could not be looked up")),
            "{bad:?}: {why:?}"
        );
    }
}

/// A tiles host that answers every tile 200 with an empty body, or every
/// z14 tile 404 (the record leaves open what an empty or refused tile gets),
/// must not make an empty census look verified: the searches find images
/// inside tiles that read as empty, so those grids are listed by searches
/// alone and marked not verified (before: 826 of 1,023 images were lost at
/// cap 800, exit 0; a 404 was still taken as verified after the first fix).
#[test]
fn tiles_that_all_read_empty_are_never_taken_as_verified() {
    for empty in [EmptyTile::Body, EmptyTile::NotFound] {
        tiles_read_empty(empty);
    }
}

fn tiles_read_empty(empty: EmptyTile) {
    let env = sim(SimConfig {
        cap: 800,
        hostile: Hostile {
            empty_tiles: Some(empty),
            ..Hostile::default()
        },
        ..SimConfig::default()
    });
    let o = list(&env, &[]);
    assert!(
        stdout(&o).contains("listing: NOT VERIFIED"),
        "{}",
        stdout(&o)
    );
    let rec = run_record(&env.out());
    // A grid whose search found nothing is verified empty by that search.
    for g in rec["grids"].as_array().unwrap() {
        if g["listed"].as_u64() > Some(0) {
            assert_ne!(g["listing"], "verified", "{g:#}");
        }
    }
    let got = listed(&env);
    let (must, _) = truth(&env);
    assert!(
        must.is_subset(&got),
        "{} missing",
        must.difference(&got).count()
    );
}

/// An answer too small to look like a cap (below the 50 a cap signature
/// needs) that the API says goes on (`paging.next`) is split: only the
/// paging tells, as the cap cuts only images the tiles lack.
#[test]
fn a_verified_answer_that_says_it_goes_on_is_split() {
    let env = sim(SimConfig {
        cap: 30,
        tiles_missing: 1000,
        result_order: ResultOrder::UntiledLast,
        bbox_paging: true,
        ..SimConfig::default()
    });
    let o = list(&env, &["--box-target", "20"]);
    let rec = assert_complete(&env, &o, "cap 30 with paging");
    assert_verified(&rec, "cap 30 with paging");
}
