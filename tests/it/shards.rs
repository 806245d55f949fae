//! `fetch --shard K/N` and array jobs' indexes: N shards run at once into one
//! folder store exactly the images of one run, none twice, with their own
//! records; `status` and `layers` see every shard, and say which is missing;
//! a shard re-run resumes; another N, or a whole fetch, in the same folder is
//! refused; Kubernetes' and AWS Batch's index variables are read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use mlysim::{BboxPosition, SimConfig, WorldSpec};

use crate::common::*;

/// The demo world's bbox as a flag value.
fn area(env: &TestEnv) -> String {
    bbox_arg(env.sim().world().spec().bbox)
}

/// `fetch` into `out` with the area, size 256 and `extra`.
fn fetch_into(env: &TestEnv, out: &Path, extra: &[&str]) -> std::process::Output {
    let a = area(env);
    let mut args = vec!["--bbox", &a, "--size", "256", "--output"];
    let o = out.to_string_lossy().into_owned();
    args.push(&o);
    args.extend_from_slice(extra);
    env.fetch(&args)
}

/// Runs shards 0..n of `extra` at once into `out`; every one must succeed.
fn run_shards(env: &TestEnv, out: &Path, n: u32, extra: &[&str]) {
    let a = area(env);
    let children: Vec<_> = (0..n)
        .map(|k| {
            env.std_cmd(None)
                .args(["fetch", "--bbox", &a, "--size", "256", "--quiet"])
                .arg("--output")
                .arg(out)
                .arg("--shard")
                .arg(format!("{k}/{n}"))
                .args(extra)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawns")
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().expect("waits");
        assert_success(&o);
    }
}

/// Images stored per id, checking that none is stored twice.
fn stored_once(out: &Path) -> BTreeMap<u64, Vec<String>> {
    let got = downloaded_ids(out);
    let twice: Vec<_> = got.iter().filter(|(_, g)| g.len() > 1).take(5).collect();
    assert!(twice.is_empty(), "stored twice: {twice:?}");
    got
}

/// `mlyexport layers --no-exif --format FORMATS` of `dir`.
fn layers(env: &TestEnv, dir: &Path, formats: &str) -> std::process::Output {
    env.cmd()
        .args(["layers", "--format", formats, "--no-exif", "--input"])
        .arg(dir)
        .output()
        .expect("runs")
}

fn status(env: &TestEnv, out: &Path, extra: &[&str]) -> std::process::Output {
    env.cmd()
        .arg("status")
        .arg("--input")
        .arg(out)
        .args(extra)
        .output()
        .expect("runs")
}

#[test]
fn shards_at_once_store_exactly_one_runs_images_and_merge_into_one_set_of_layers() {
    let env = TestEnv::with_sim(small_cap_sim());
    let single = env.path().join("single");
    assert_success(&fetch_into(
        &env,
        &single,
        &["--grid", "3x2", "--search-cap", "100"],
    ));
    let want = stored_once(&single);
    // 6 cells among 4 shards (whole cells), then one grid among 3 (parts).
    let cells = env.path().join("cells");
    run_shards(&env, &cells, 4, &["--grid", "3x2", "--search-cap", "100"]);
    assert_eq!(stored_once(&cells), want, "the shards' images and grids");
    let one_grid = env.path().join("parts");
    run_shards(&env, &one_grid, 3, &["--search-cap", "100"]);
    let got: Vec<u64> = stored_once(&one_grid).into_keys().collect();
    assert_eq!(got, want.keys().copied().collect::<Vec<_>>());

    for k in 0..4 {
        let r = read_json(&cells.join(format!("mlyexport-run.shard-{k}-of-4.json")));
        assert_schema("run.schema.json", &r);
        assert_eq!(r["runs"][0]["shard"], format!("{k}/4"));
    }
    assert_schema(
        "shards.schema.json",
        &read_json(&cells.join("mlyexport-shards.json")),
    );
    let o = status(&env, &cells, &[]);
    assert_success(&o);
    assert!(
        stdout(&o).contains("done: yes (4 of 4 shards finished)"),
        "{}",
        stdout(&o)
    );

    let o = layers(&env, &cells, "gpkg,csv");
    assert_success(&o);
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    let gpkg = gdal::Dataset::open(cells.join("layers/mapillary.gpkg")).expect("opens");
    let sql = "SELECT shard FROM runs ORDER BY shard";
    let mut rs = gpkg
        .execute_sql(sql, None, gdal::vector::sql::Dialect::DEFAULT)
        .expect("runs")
        .expect("rows");
    use gdal::vector::LayerAccess;
    let shards: Vec<String> = rs
        .features()
        .filter_map(|f| f.field_as_string(0).ok().flatten())
        .collect();
    assert_eq!(
        shards,
        ["0/4", "1/4", "2/4", "3/4"],
        "one runs row per shard"
    );
    let coverage = std::fs::read_to_string(cells.join("layers/coverage.csv")).unwrap();
    assert_eq!(
        coverage.lines().count(),
        1 + 6,
        "one row per cell:\n{coverage}"
    );
    let images = std::fs::read_to_string(cells.join("layers/images.csv")).unwrap();
    let single_csv = env.path().join("single-layers");
    let o = env
        .cmd()
        .args(["layers", "--format", "csv", "--no-exif", "--input"])
        .arg(&single)
        .arg("--output")
        .arg(&single_csv)
        .output()
        .expect("runs");
    assert_success(&o);
    let want_csv = std::fs::read_to_string(single_csv.join("images.csv")).unwrap();
    assert_eq!(images.lines().count(), want_csv.lines().count());
}

#[test]
fn a_missing_shard_is_named_by_status_and_marked_by_layers_and_a_rerun_resumes() {
    let env = TestEnv::with_sim(SimConfig::default());
    let out = env.out();
    for k in [0, 2] {
        assert_success(&fetch_into(
            &env,
            &out,
            &["--grid", "3x1", "--shard", &format!("{k}/3")],
        ));
    }
    let o = status(&env, &out, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let text = stdout(&o);
    assert!(text.contains("shard 1/3: not started"), "{text}");
    assert!(text.contains("done: no (2 of 3 shards finished)"), "{text}");
    let json: serde_json::Value = serde_json::from_slice(&status(&env, &out, &["--json"]).stdout)
        .expect("status --json is JSON");
    assert_eq!(json["done"], false);
    assert_eq!(json["shards"][1]["state"], "not_started");
    assert_eq!(json["shards"][0]["state"], "complete");

    let o = layers(&env, &out, "csv");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("shard 1/3 has not run"),
        "{}",
        stderr(&o)
    );
    let coverage = std::fs::read_to_string(out.join("layers/coverage.csv")).unwrap();
    assert_eq!(
        coverage.matches("shard missing").count(),
        1,
        "the missing shard's one cell:\n{coverage}"
    );

    // The shard run alone later; then a re-run of a finished one resumes.
    assert_success(&fetch_into(
        &env,
        &out,
        &["--grid", "3x1", "--shard", "1/3"],
    ));
    assert_success(&status(&env, &out, &[]));
    let o = fetch_into(&env, &out, &["--grid", "3x1", "--shard", "0/3"]);
    assert_success(&o);
    assert!(stdout(&o).contains("downloaded: 0"), "{}", stdout(&o));
    let r = read_json(&out.join("mlyexport-run.shard-0-of-3.json"));
    assert_eq!(r["runs"].as_array().map(Vec::len), Some(2));
}

#[test]
fn another_n_or_a_whole_fetch_in_a_sharded_folder_is_refused() {
    let env = TestEnv::with_sim(SimConfig::default());
    let out = env.out();
    assert_success(&fetch_into(
        &env,
        &out,
        &["--grid", "2x1", "--shard", "0/2", "--dry-run"],
    ));
    let refused = |extra: &[&str], says: &str| {
        let o = fetch_into(&env, &out, extra);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{extra:?}: {}", stderr(&o));
    };
    refused(
        &["--grid", "2x1", "--shard", "1/3"],
        "is fetched in 2 shards, not 3",
    );
    refused(
        &["--grid", "2x1"],
        "is fetched in 2 shards; run `mlyexport fetch --shard K/2`",
    );
    refused(
        &["--grid", "3x1", "--shard", "1/2"],
        "split into shards for another request",
    );
    let whole = env.path().join("whole");
    assert_success(&fetch_into(&env, &whole, &["--grid", "2x1", "--dry-run"]));
    let o = fetch_into(&env, &whole, &["--grid", "2x1", "--shard", "1/2"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("holds an unsharded fetch"),
        "{}",
        stderr(&o)
    );
    let o = fetch_into(
        &env,
        &whole,
        &["--grid", "2x1", "--shard", "0/2", "--max-images", "5"],
    );
    assert!(
        stderr(&o).contains("--max-images cannot be split"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn kubernetes_and_aws_batch_indexes_are_read_with_shards() {
    let env = TestEnv::with_sim(SimConfig::default());
    let a = area(&env);
    let run = |var: &str, index: &str, extra: &[&str]| {
        let mut c = env.cmd();
        c.env(var, index)
            .args([
                "fetch",
                "--bbox",
                &a,
                "--size",
                "256",
                "--dry-run",
                "--quiet",
            ])
            .args(extra);
        if !extra.contains(&"--output") {
            c.args(["--output", "k"]);
        }
        c.output().expect("runs")
    };
    assert_success(&run("JOB_COMPLETION_INDEX", "2", &["--shards", "3"]));
    let r = read_json(&env.path().join("k/mlyexport-run.shard-2-of-3.json"));
    assert_eq!(r["runs"][0]["shard"], "2/3");
    assert_success(&run("AWS_BATCH_JOB_ARRAY_INDEX", "1", &["--shards", "3"]));
    assert!(
        env.path()
            .join("k/mlyexport-run.shard-1-of-3.json")
            .is_file()
    );

    let o = run("JOB_COMPLETION_INDEX", "1", &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--shards N is missing"),
        "{}",
        stderr(&o)
    );
    let o = run("AWS_BATCH_JOB_ARRAY_INDEX", "1", &["--shard", "2/3"]);
    assert!(
        stderr(&o).contains("disagrees with the array job"),
        "{}",
        stderr(&o)
    );
    // `--shard none`: the whole area, whatever the environment says.
    let o = run(
        "JOB_COMPLETION_INDEX",
        "1",
        &["--shard", "none", "--output", "w"],
    );
    assert_success(&o);
    assert!(env.path().join("w/mlyexport-run.json").is_file());
}

/// A child process killed (and reaped) when a failed assertion unwinds.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a slow `fetch` of the demo area (`extra` picks the shard) and waits
/// until its run record says it is running.
fn start_slow_fetch(
    env: &TestEnv,
    out: &Path,
    record: &str,
    extra: &[&str],
) -> std::process::Child {
    let a = area(env);
    let mut child = env
        .std_cmd(None)
        .args([
            "fetch", "--bbox", &a, "--size", "256", "--grid", "2x1", "--quiet",
        ])
        .args(["--concurrency", "1", "--output"])
        .arg(out)
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawns");
    let path = out.join(record);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let running = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|r| {
                r["runs"]
                    .as_array()
                    .and_then(|a| a.last())
                    .is_some_and(|l| l["outcome"] == "running")
            });
        if running {
            return child;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("{record} never said running");
}

/// A record that says `running` is checked against its lock: a live run is
/// `running` (naming its process), a SIGKILLed one `killed`, and one whose
/// lock was taken on another host is not claimed either way.
#[test]
fn status_tells_a_running_shard_from_a_killed_one() {
    let env = TestEnv::with_sim(SimConfig {
        latency: std::time::Duration::from_millis(300),
        ..SimConfig::default()
    });
    for (dir, shard, record, lock, line) in [
        (
            "sharded",
            Some("0/2"),
            "mlyexport-run.shard-0-of-2.json",
            ".mlyexport.shard-0-of-2.lock",
            "shard 0/2: ",
        ),
        (
            "whole",
            None,
            "mlyexport-run.json",
            ".mlyexport.lock",
            "shard 0/1: ",
        ),
    ] {
        let out = env.path().join(dir);
        let extra: Vec<&str> = shard.map_or(vec![], |s| vec!["--shard", s]);
        let mut child = KillOnDrop(start_slow_fetch(&env, &out, record, &extra));
        let o = status(&env, &out, &[]);
        let text = stdout(&o);
        assert_eq!(o.status.code(), Some(1), "{text}");
        let want = format!("{line}running [fetch, pid {} on host ", child.0.id());
        assert!(text.contains(&want), "no `{want}` in:\n{text}");
        let json: serde_json::Value =
            serde_json::from_slice(&status(&env, &out, &["--json"]).stdout).unwrap();
        assert_eq!(json["shards"][0]["holder"]["pid"], child.0.id(), "{json}");

        child.0.kill().unwrap(); // SIGKILL: the record keeps saying running
        child.0.wait().unwrap();
        let text = stdout(&status(&env, &out, &[]));
        assert!(text.contains(&format!("{line}killed (")), "{text}");
        let json: serde_json::Value =
            serde_json::from_slice(&status(&env, &out, &["--json"]).stdout).unwrap();
        assert_eq!(json["shards"][0]["state"], "killed", "{json}");

        // The killed run's lock note, as if written on another node.
        let note = out.join(lock);
        let mut holder = read_json(&note);
        holder["host"] = "node-elsewhere".into();
        holder["boot"] = "00000000".into();
        std::fs::write(&note, holder.to_string()).unwrap();
        let text = stdout(&status(&env, &out, &[]));
        assert!(
            text.contains(&format!(
                "{line}running, or killed (cannot be checked from here"
            )) && text.contains("on host node-elsewhere"),
            "{text}"
        );
    }
}

/// An image without any position, which the API places exactly on the border
/// of two cells that go to different shards: both cells' searches return it
/// and nothing tells where it is. Only the shard that lists it first keeps it
/// (it claims it), so the shards' listings stay disjoint and it is stored
/// once; `layers` sees no duplicate. The shards run one after the other, so
/// the second's listing is what tells (at once, the second could also skip
/// the download only because the first's copy was already on disk). A
/// search-only listing widens the boxes across the border: the margin there
/// is still inside the area, so neither shard leaves the image out as lying
/// outside it.
#[test]
fn a_position_less_image_on_a_shard_border_is_listed_by_one_shard() {
    let probe = TestEnv::with_sim(SimConfig::default());
    let (id, other) = (
        probe.sim().world().images()[7].id,
        probe.sim().world().images()[8].id,
    );
    drop(probe);
    // The search-only listing's border is away from the hot spot, so that
    // the thin searches of the margins are not cut (then nothing is left out).
    let env = TestEnv::with_sim(SimConfig {
        hide: vec![(id, [8.53, 47.37]), (other, [8.55, 47.37])],
        ..SimConfig::default()
    });
    for (out, how, border, id) in [
        ("verified", &[][..], "8.53", id),
        ("search", &["--enumerate", "search"], "8.55", other),
    ] {
        let segments = format!("{out}.csv");
        std::fs::write(
            env.path().join(&segments),
            format!("A,8.50,47.35,{border},47.39\nB,{border},47.35,8.56,47.39\n"),
        )
        .unwrap();
        let mut listed: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
        for k in 0..2 {
            let shard = format!("{k}/2");
            let mut args = vec!["--grid-file", &segments, "--size", "256"];
            args.extend(["--shard", &shard, "--output", out]);
            args.extend_from_slice(how);
            assert_success(&env.fetch(&args));
            let file = env
                .path()
                .join(out)
                .join(format!("listing.shard-{k}-of-2.jsonl"));
            for line in std::fs::read_to_string(file).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                listed.entry(id_of(&v)).or_default().push(k);
            }
        }
        assert_eq!(
            listed.get(&id).map(Vec::len),
            Some(1),
            "{out}: listed by {:?}",
            listed.get(&id)
        );
        let twice: Vec<_> = listed.iter().filter(|(_, k)| k.len() > 1).take(5).collect();
        assert!(twice.is_empty(), "{out}: listed by two shards: {twice:?}");
        let dir = env.path().join(out);
        assert!(
            stored_once(&dir).contains_key(&id),
            "{out}: the hidden image was not stored"
        );
        assert_success(&layers(&env, &dir, "csv"));
    }
}

/// A split file edited by hand (or damaged) is refused when read, naming the
/// file: N = 0 must not read as "done", a huge N must not size anything.
#[test]
fn a_split_file_with_a_bad_count_or_unit_is_refused_by_name() {
    let env = TestEnv::with_sim(SimConfig::default());
    let out = env.out();
    assert_success(&fetch_into(
        &env,
        &out,
        &["--grid", "2x1", "--shard", "0/2", "--dry-run"],
    ));
    let path = out.join("mlyexport-shards.json");
    let good = read_json(&path);
    let mut zero = good.clone();
    zero["split"]["count"] = 0.into();
    let mut huge = good.clone();
    huge["split"]["count"] = 4_000_000_000u64.into();
    let mut stray = good.clone();
    stray["split"]["units"][1]["shard"] = 2.into();
    let mut empty = good.clone();
    empty["split"]["units"] = serde_json::json!([]);
    for (bad, says) in [
        (zero, "between 1 and 10000 (got 0)"),
        (huge, "(got 4000000000)"),
        (stray, "goes to shard 2, but there are 2 shards"),
        (empty, "has no cells or parts"),
    ] {
        std::fs::write(&path, bad.to_string()).unwrap();
        let o = status(&env, &out, &[]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{says}: {}{err}", stdout(&o));
        assert!(
            err.contains("mlyexport-shards.json` is not a valid split"),
            "{err}"
        );
        assert!(err.contains(says) && err.contains("move it away"), "{err}");
        let o = fetch_into(&env, &out, &["--grid", "2x1", "--shard", "1/2"]);
        assert_eq!(o.status.code(), Some(2), "{says}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("is not a valid split"),
            "{}",
            stderr(&o)
        );
    }
}

/// The ids a listing file of `out` holds.
fn listed_ids(out: &Path, file: &str) -> BTreeSet<u64> {
    std::fs::read_to_string(out.join(file))
        .unwrap_or_else(|e| panic!("{file} in {}: {e}", out.display()))
        .lines()
        .map(|l| id_of(&serde_json::from_str(l).expect("a JSON line")))
        .collect()
}

/// An API whose bbox filter uses the computed position, 50 m from the GPS
/// one: an image whose GPS position is in one shard's cell and computed one
/// in another's is returned only by the other's boxes. A border between two
/// shards is searched with the outer margin, so the owner's boxes return it
/// too, and the shards together list what one whole run lists (with a search
/// listing, which has no lookup by id to catch it, and the verified one).
#[test]
fn shards_together_list_what_a_whole_run_lists_when_the_api_filters_on_the_computed_position() {
    let env = TestEnv::with_sim(SimConfig {
        world: WorldSpec::demo().with_computed_offset_m(50.0),
        bbox_position: BboxPosition::Computed,
        ..SimConfig::default()
    });
    for how in [&["--enumerate", "search"][..], &[]] {
        let name = how.join("-");
        let args = |out: &str| {
            let mut a = vec!["--bbox", "8.50,47.35,8.56,47.39", "--grid", "3x1"];
            a.extend_from_slice(&["--dry-run", "--quiet", "--output", out]);
            a.extend_from_slice(how);
            a.into_iter().map(String::from).collect::<Vec<_>>()
        };
        let whole_dir = format!("whole{name}");
        let whole_args = args(&whole_dir);
        assert_success(&env.fetch(&whole_args.iter().map(String::as_str).collect::<Vec<_>>()));
        let whole = listed_ids(&env.path().join(&whole_dir), "listing.jsonl");
        let shard_dir = format!("shards{name}");
        let mut together = BTreeSet::new();
        for k in 0..3 {
            let mut a = args(&shard_dir);
            a.extend(["--shard".to_string(), format!("{k}/3")]);
            assert_success(&env.fetch(&a.iter().map(String::as_str).collect::<Vec<_>>()));
            let file = format!("listing.shard-{k}-of-3.jsonl");
            let mine = listed_ids(&env.path().join(&shard_dir), &file);
            assert!(
                together.is_disjoint(&mine),
                "{name}: shard {k} lists another's"
            );
            together.extend(mine);
        }
        let lost: Vec<_> = whole.difference(&together).take(10).collect();
        assert!(lost.is_empty(), "{name}: the shards lost {lost:?}");
        assert_eq!(together, whole, "{name}");
        assert!(whole.len() > 2000, "{name}: {}", whole.len());
    }
}

/// An array job's index that is not UTF-8 is refused, quoted, rather than
/// taken for unset (which would fetch the whole area in every task).
#[test]
fn a_non_utf8_array_index_is_refused_not_ignored() {
    use std::os::unix::ffi::OsStrExt;
    let env = TestEnv::with_sim(SimConfig::default());
    let a = area(&env);
    let bad = std::ffi::OsStr::from_bytes(b"1\xff");
    let o = env
        .std_cmd(None)
        .args(["fetch", "--bbox", &a, "--dry-run", "--output", "w"])
        .env("SLURM_ARRAY_TASK_ID", bad)
        .env("SLURM_ARRAY_TASK_MIN", "0")
        .env("SLURM_ARRAY_TASK_COUNT", "4")
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("SLURM_ARRAY_TASK_ID=`1\u{fffd}` is not a whole number"),
        "{}",
        stderr(&o)
    );
    assert!(!env.path().join("w/mlyexport-run.json").exists());
}
