//! Integrity under concurrent use and hostile input (issue #10, items 1, 2
//! and 7c): readers holding JPEGs open during the EXIF pass, kept modes and
//! owners, one run per folder (refused at once, naming the holder), temp
//! files of live runs kept, and a pathological JPEG walked in bounded memory.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mlysim::SimConfig;
use sha2::{Digest, Sha256};

use crate::common::*;
use crate::exif::{Folder, make_jpeg, record};

fn sha(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

/// The pid of a process that has exited.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().expect("runs `true`");
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn readers_holding_jpegs_open_keep_their_bytes() {
    let f = Folder::new();
    // Enough files that each worker replaces a run of them (the issue saw
    // 161 of 184 held handles read another image).
    let paths: Vec<PathBuf> = (1..=200)
        .map(|i| f.add(record(i, 10.0, 50.0), &make_jpeg(40, 30, i as u32, 85)))
        .collect();
    let held: Vec<(fs::File, Vec<u8>)> = paths
        .iter()
        .map(|p| (fs::File::open(p).unwrap(), sha(&fs::read(p).unwrap())))
        .collect();
    let out = f.run(&[]).success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout);
    assert!(stdout.contains("written: 200"), "{stdout}");
    for ((mut file, before), p) in held.into_iter().zip(&paths) {
        let mut now = Vec::new();
        file.read_to_end(&mut now).unwrap();
        assert!(
            sha(&now) == before,
            "a handle held on {} reads other bytes",
            p.display()
        );
        assert!(
            sha(&fs::read(p).unwrap()) != before,
            "{} not tagged",
            p.display()
        );
    }
}

#[test]
fn a_replaced_jpeg_keeps_its_mode_without_setuid_and_its_owner() {
    let f = Folder::new();
    let suid = f.add(record(1, 10.0, 50.0), &make_jpeg(32, 24, 1, 85));
    let group = f.add(record(2, 10.0, 50.0), &make_jpeg(32, 24, 2, 85));
    let owned = f.add(record(3, 10.0, 50.0), &make_jpeg(32, 24, 3, 85));
    fs::set_permissions(&suid, fs::Permissions::from_mode(0o4755)).unwrap();
    fs::set_permissions(&group, fs::Permissions::from_mode(0o2640)).unwrap();
    // Only root (or the owner, for a group of theirs) may give a file away.
    let chowned = std::os::unix::fs::chown(&owned, Some(1234), Some(5678)).is_ok();
    f.run(&[]).success();
    let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(mode(&suid), 0o755);
    assert_eq!(mode(&group), 0o640);
    if chowned {
        let m = fs::metadata(&owned).unwrap();
        assert_eq!((m.uid(), m.gid()), (1234, 5678), "owner not kept");
    }
}

/// Every file under `dir` with its content.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    all_files(dir)
        .into_iter()
        .map(|p| {
            let b = fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}

#[test]
fn a_locked_folder_is_refused_at_once_and_left_untouched() {
    let f = Folder::new();
    f.add(record(1, 10.0, 50.0), &make_jpeg(32, 24, 1, 85));
    let lock = mlyexport::lock::FolderLock::acquire(&f.root(), "fetch").unwrap();
    let before = snapshot(&f.root());
    let started = Instant::now();
    let out = f.run(&["--input", "downloads"]).code(2);
    assert!(started.elapsed() < Duration::from_secs(10), "not at once");
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    let holder = format!(
        "is in use by another mlyexport run (fetch, pid {} on host {}, started 20",
        std::process::id(),
        mlyexport::lock::host_name()
    );
    assert!(stderr.contains(&holder), "{stderr}");
    assert!(
        stderr.contains("wait for it to finish, or stop it"),
        "{stderr}"
    );
    assert!(snapshot(&f.root()) == before, "the refused run wrote");
    drop(lock);
    f.run(&[]).success();
}

#[test]
fn a_lock_file_of_a_dead_run_does_not_block() {
    let f = Folder::new();
    f.add(record(1, 10.0, 50.0), &make_jpeg(32, 24, 1, 85));
    let note = format!(
        r#"{{"pid":{},"host":"{}","command":"fetch","started_at":"2026-11-30T09:00:00Z"}}"#,
        dead_pid(),
        mlyexport::lock::host_name()
    );
    fs::write(f.root().join(".mlyexport.lock"), note).unwrap();
    f.run(&[]).success();
    assert!(!f.root().join(".mlyexport.lock").exists(), "lock file left");
}

/// A fetch that runs for a while: the simulator answers slowly.
fn slow_fetch(env: &TestEnv) -> Child {
    env.std_cmd(None)
        .args(["fetch", "--bbox", "8.5305,47.3705,8.533,47.373"])
        .args(["--grid", "2x2", "--size", "256", "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawns")
}

/// Waits until the lock file in `dir` names a holder.
fn wait_for_lock(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if fs::read_to_string(dir.join(".mlyexport.lock")).is_ok_and(|t| t.ends_with('}')) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the first run never took its lock");
}

#[test]
fn two_runs_on_one_folder_the_second_is_refused_naming_the_first() {
    let env = TestEnv::with_sim(SimConfig {
        latency: Duration::from_millis(500),
        ..SimConfig::default()
    });
    let mut first = slow_fetch(&env);
    wait_for_lock(&env.out());
    let holder = format!(
        "in use by another mlyexport run (fetch, pid {} on host {}, started 20",
        first.id(),
        mlyexport::lock::host_name()
    );
    for args in [
        vec!["exif", "--input", "downloads"],
        vec!["layers", "--input", "downloads"],
        vec![
            "fetch",
            "--bbox",
            "8.5305,47.3705,8.533,47.373",
            "--dry-run",
        ],
    ] {
        let started = Instant::now();
        let o = env.cmd().args(&args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(&holder), "{args:?}: {}", stderr(&o));
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{args:?} waited"
        );
    }
    // A killed holder leaves its lock file, which no longer blocks.
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(env.out().join(".mlyexport.lock").exists());
    let o = env
        .cmd()
        .args(["exif", "--input", "downloads"])
        .output()
        .unwrap();
    assert!(!stderr(&o).contains("in use"), "{}", stderr(&o));
}

#[test]
fn temp_files_of_live_runs_survive_and_those_of_dead_runs_go() {
    let f = Folder::new();
    f.add(record(1, 10.0, 50.0), &make_jpeg(32, 24, 1, 85));
    let g1 = f.root().join("g1");
    let mut live = Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("runs `sleep`");
    let live_name = format!("{}a", mlyexport::lock::temp_name_prefix(live.id()));
    let dead_name = format!("{}b", mlyexport::lock::temp_name_prefix(dead_pid()));
    // No owner in the name (an older version's): the lock proves it is stale.
    let legacy_name = ".mlyexport-tmp-x7Hq2a";
    for dir in [&f.root(), &g1] {
        for n in [&live_name, &dead_name, legacy_name] {
            fs::write(dir.join(n), b"temp").unwrap();
        }
    }
    f.run(&[]).success();
    let survived = |n: &str| [&f.root(), &g1].map(|d| d.join(n).exists());
    live.kill().unwrap();
    live.wait().unwrap();
    assert_eq!(
        survived(&live_name),
        [true, true],
        "a live run's temp files went"
    );
    assert_eq!(survived(&dead_name), [false, false]);
    assert_eq!(survived(legacy_name), [false, false]);
}

/// Peak resident memory of a running child in KiB (`VmHWM`), polled until it
/// exits; the high-water mark only grows, so the last reading is the peak up
/// to then.
fn run_and_watch_peak(mut cmd: Command) -> (std::process::Output, u64) {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = PathBuf::from(format!("/proc/{}/status", child.id()));
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            use std::sync::atomic::Ordering;
            while !done.load(Ordering::Relaxed) {
                let kb = fs::read_to_string(&status).ok().and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("VmHWM:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                });
                if let Some(kb) = kb {
                    peak.fetch_max(kb, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let out = child.wait_with_output().unwrap();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    watcher.join().unwrap();
    (out, peak.load(std::sync::atomic::Ordering::Relaxed))
}

#[test]
fn a_jpeg_of_64_mib_of_restart_markers_is_skipped_in_bounded_memory() {
    let f = Folder::new();
    let good = f.add(record(1, 10.0, 50.0), &make_jpeg(32, 24, 1, 85));
    let mut hostile = vec![0xFF, 0xD8];
    hostile.extend([0xFF, 0xD0].repeat(32 << 20));
    hostile.extend([0xFF, 0xD9]);
    let bad = f.add(record(2, 10.0, 50.0), &hostile);
    drop(hostile);
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("mlyexport"));
    cmd.args(["exif", "--input"])
        .arg(f.root())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    let (out, peak_kib) = run_and_watch_peak(cmd);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("2.jpg") && err.contains("not a JPEG we can tag"),
        "{err}"
    );
    assert!(peak_kib > 0, "no memory reading of the run");
    assert!(
        peak_kib < 200 * 1024,
        "the pass peaked at {} MiB",
        peak_kib / 1024
    );
    assert_eq!(fs::metadata(&bad).unwrap().len(), (64 << 20) + 4);
    assert!(String::from_utf8_lossy(&out.stdout).contains("written: 1"));
    assert!(fs::read(&good).unwrap().windows(4).any(|w| w == b"Exif"));
}

#[test]
fn a_grid_folder_that_is_a_link_is_refused_and_never_written_through() {
    let env = TestEnv::with_sim(SimConfig::default());
    let b = env.sim().world().spec().bbox;
    let (w, h) = ((b[2] - b[0]) / 4.0, (b[3] - b[1]) / 4.0);
    let bbox = bbox_arg([b[0] + w, b[1] + h, b[0] + 2.0 * w, b[1] + 2.0 * h]);
    let elsewhere = env.path().join("elsewhere");
    fs::create_dir_all(&elsewhere).unwrap();
    fs::create_dir_all(env.out()).unwrap();
    std::os::unix::fs::symlink(&elsewhere, env.out().join("1")).unwrap();
    let o = env.fetch(&["--bbox", &bbox, "--size", "256", "--quiet"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("downloads/1`: a grid folder that is a link") && err.contains("fix: "),
        "{err}"
    );
    assert!(all_files(&elsewhere).is_empty(), "written through the link");
    // With the link gone, the same fetch goes through: a link that is not
    // one of its grids is not its concern.
    fs::remove_file(env.out().join("1")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, env.out().join("qgis")).unwrap();
    let o = env.fetch(&["--bbox", &bbox, "--size", "256", "--quiet"]);
    assert_success(&o);
    assert!(!downloaded_ids(&env.out()).is_empty());
    assert!(all_files(&elsewhere).is_empty());
}
