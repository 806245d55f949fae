//! Hostile or broken input (issue #10, items 5-10): no panic on any input,
//! bounded reads of special files, reserved grid names, unusable polygons,
//! API text that is data and never markup, and network hygiene checked
//! against tiny hand-written HTTP servers on loopback.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mlysim::SimConfig;
use serde_json::{Value, json};

use crate::common::*;

const TOKEN: &str = "MLY|4242|hostile";

/// Checks a refusal: exit 2, no panic, stderr mentions `expect`.
fn assert_refused(o: &Output, expect: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "expected exit 2; stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.to_lowercase().contains(&expect.to_lowercase()),
        "stderr should mention `{expect}`:\n{err}"
    );
}

/// A tiny HTTP/1.1 server on loopback: answers every request with
/// `answer(request head)` and records each request head. One connection at
/// a time, closed after each answer; runs until the test process ends.
fn serve(answer: impl Fn(&str) -> String + Send + 'static) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let reply = answer(&head);
            log.lock().unwrap().push(head);
            let _ = s.write_all(reply.as_bytes());
        }
    });
    (port, seen)
}

fn http(status: &str, headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// `mlyexport fetch` against `api` with a token and no simulator.
fn fetch_against(env: &TestEnv, api: &str, extra: &[&str]) -> Output {
    env.cmd()
        .env("MAPILLARY_TOKEN", TOKEN)
        .args(["fetch", "--bbox", "8.5,47.35,8.51,47.36", "--api-url", api])
        .args(["--retries", "1", "--timeout", "5"])
        .args(extra)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap()
}

#[test]
fn api_messages_reach_the_terminal_without_escape_sequences() {
    let hostile = "boom \u{1b}]0;owned\u{7}\u{1b}[2J\u{1b}[31m end\r\u{8}";
    let body = json!({"error": {"message": hostile, "type": "OAuthException", "code": 100}});
    let body = body.to_string();
    let (port, seen) = serve(move |_| http("400 Bad Request", "", &body));
    let env = TestEnv::new();
    let o = fetch_against(&env, &format!("http://127.0.0.1:{port}"), &[]);
    assert_refused(&o, "boom");
    let err = stderr(&o);
    assert!(err.contains("boom  end"), "{err}");
    for c in ['\u{1b}', '\u{7}', '\u{8}', '\r'] {
        assert!(!err.contains(c), "{c:?} reached the terminal: {err:?}");
    }
    assert!(!seen.lock().unwrap().is_empty());
}

#[test]
fn the_token_never_follows_a_redirect_to_another_origin() {
    let (other, other_seen) = serve(|_| http("200 OK", "", "{\"data\":[]}"));
    let (port, seen) = serve(move |_| {
        http(
            "302 Found",
            &format!("Location: http://127.0.0.1:{other}/images?bbox=1,1,2,2\r\n"),
            "",
        )
    });
    let env = TestEnv::new();
    let o = fetch_against(&env, &format!("http://127.0.0.1:{port}"), &[]);
    assert_refused(&o, "refused for safety");
    assert!(stderr(&o).contains("another origin"), "{}", stderr(&o));
    assert!(!stderr(&o).contains(TOKEN));
    let asked = seen.lock().unwrap();
    assert!(
        asked
            .iter()
            .all(|h| h.to_lowercase().contains("authorization: oauth")),
        "the API itself gets the token: {asked:?}"
    );
    let leaked = other_seen.lock().unwrap();
    assert!(leaked.is_empty(), "the other origin was asked: {leaked:?}");
    assert!(
        !env.out().exists(),
        "nothing is written when the preflight fails"
    );
}

#[test]
fn a_box_that_collapses_is_refused_not_a_panic() {
    let env = TestEnv::with_sim(SimConfig::default());
    let o = env.fetch(&["--bbox", "10,0,11,1e-20"]);
    assert_refused(&o, "about 0.1 m");
    let o = env.fetch(&["--bbox", "10,0,10.0000001,1", "--grid", "2x2"]);
    assert_refused(&o, "0.1 m");
    let o = env.fetch(&["--bbox", "10,0,10.00001,1", "--grid", "1000x1"]);
    assert_refused(&o, "use fewer cells");
    assert!(all_files(env.path()).is_empty());
}

#[test]
fn non_utf8_paths_are_taken_and_never_panic() {
    let env = TestEnv::with_sim(SimConfig::default());
    let bad = |s: &[u8]| OsStr::from_bytes(s).to_os_string();
    let out = bad(b"out-\xff");
    let o = env
        .cmd()
        .args(["fetch", "--bbox", "8.50,47.35,8.501,47.351", "--dry-run"])
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    assert_success(&o);
    assert!(env.path().join(&out).join("mlyexport-run.json").is_file());
    for (flag, name) in [
        ("--grid-file", bad(b"grid-\xfe.csv")),
        ("--aoi", bad(b"area-\xfe.geojson")),
        ("--token-file", bad(b"token-\xfe")),
    ] {
        let mut cmd = env.cmd();
        cmd.arg("fetch");
        if flag != "--grid-file" {
            cmd.args(["--bbox", "8.50,47.35,8.501,47.351"]);
        }
        let o = cmd.arg(flag).arg(&name).output().unwrap();
        assert_refused(&o, &name.to_string_lossy());
    }
    for sub in ["layers", "exif"] {
        let o = env
            .cmd()
            .args([sub, "--input"])
            .arg(bad(b"missing-\xfd"))
            .output()
            .unwrap();
        assert_ne!(o.status.code(), Some(101), "{sub}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{sub}: {}", stderr(&o));
    }
}

/// Makes a FIFO at `p`.
fn mkfifo(p: &Path) {
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        p,
        rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
    )
    .unwrap();
}

#[test]
fn special_and_huge_grid_files_end_at_once_with_a_clear_error() {
    let env = TestEnv::with_sim(SimConfig::default());
    mkfifo(&env.path().join("grid.fifo"));
    std::fs::create_dir(env.path().join("grid.dir")).unwrap();
    let huge = std::fs::File::create(env.path().join("huge.csv")).unwrap();
    huge.set_len(17 << 20).unwrap();
    drop(huge);
    for (path, expect) in [
        ("/dev/zero", "character device"),
        ("grid.fifo", "FIFO"),
        ("grid.dir", "folder"),
        ("huge.csv", "larger than 16777216 bytes"),
    ] {
        let t = Instant::now();
        let o = env
            .cmd()
            .args(["fetch", "--grid-file", path])
            .timeout(Duration::from_secs(30))
            .output()
            .unwrap();
        assert_refused(&o, expect);
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{path}: {:?}",
            t.elapsed()
        );
    }
    mkfifo(&env.path().join("token.fifo"));
    std::fs::write(env.path().join("token.big"), vec![b'x'; 100 << 10]).unwrap();
    for (file, expect) in [
        ("token.fifo", "FIFO"),
        ("token.big", "larger than 65536 bytes"),
    ] {
        let bbox = "8.5,47.35,8.51,47.36";
        let o = env
            .cmd()
            .args(["fetch", "--bbox", bbox, "--token-file", file])
            .timeout(Duration::from_secs(30))
            .output()
            .unwrap();
        assert_refused(&o, expect);
    }
    mkfifo(&env.path().join("aoi.fifo"));
    let o = env
        .cmd()
        .args(["fetch", "--aoi", "aoi.fifo"])
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap();
    assert_refused(&o, "FIFO");
}

#[test]
fn reserved_and_case_colliding_grid_names_are_refused() {
    let env = TestEnv::with_sim(SimConfig::default());
    for name in [
        "jsons",
        "images",
        "layers",
        "Layers",
        "mlyexport-run",
        "MLYEXPORTx",
    ] {
        let file = env.path().join("g.csv");
        std::fs::write(&file, format!("{name},8.5,47.35,8.51,47.36\n")).unwrap();
        let o = env.fetch(&["--grid-file", "g.csv"]);
        assert_refused(&o, "reserved");
        assert!(stderr(&o).contains(name), "{}", stderr(&o));
    }
    std::fs::write(
        env.path().join("g.csv"),
        "North,8.5,47.35,8.51,47.36\nnorth,8.51,47.35,8.52,47.36\n",
    )
    .unwrap();
    let o = env.fetch(&["--grid-file", "g.csv"]);
    assert_refused(&o, "differs only in case");
    assert!(!env.out().exists());
}

fn polygon_file(env: &TestEnv, name: &str, ring: &str) -> String {
    let text = format!(
        r#"{{"type":"FeatureCollection","features":[{{"type":"Feature","properties":{{}},"geometry":{{"type":"Polygon","coordinates":[[{ring}]]}}}}]}}"#
    );
    std::fs::write(env.path().join(name), text).unwrap();
    name.to_string()
}

#[test]
fn unusable_polygons_are_refused_with_the_reason() {
    let env = TestEnv::with_sim(SimConfig::default());
    let cases = [
        (
            "nan.geojson",
            "[8.5,47.35],[8.51,47.35],[NaN,47.36],[8.5,47.35]",
            "not a finite number",
        ),
        (
            "flat.geojson",
            "[8.5,47.35],[8.51,47.36],[8.52,47.37],[8.5,47.35]",
            "zero area",
        ),
        (
            "bowtie.geojson",
            "[8.5,47.35],[8.51,47.36],[8.51,47.35],[8.5,47.36],[8.5,47.35]",
            "refused, not repaired",
        ),
    ];
    for (name, ring, expect) in cases {
        let file = polygon_file(&env, name, ring);
        let o = env.fetch(&["--aoi", &file, "--dry-run"]);
        assert_refused(&o, expect);
        assert!(!env.out().exists(), "{name}");
    }
}

#[test]
fn layers_neutralises_formulas_and_does_not_hang_on_a_fifo_listing() {
    let env = TestEnv::new();
    let root = env.out();
    std::fs::create_dir_all(root.join("g1")).unwrap();
    let v = json!({
        "id": "77", "captured_at": 1_563_721_072_184_i64,
        "geometry": {"type": "Point", "coordinates": [-73.9, 40.7]},
        "sequence": "@seq", "make": "=HYPERLINK(\"http://evil.example\",\"click\")",
        "model": "-2+3", "creator": {"username": "+alice", "id": "42"},
    });
    std::fs::write(root.join("g1/77.json"), v.to_string()).unwrap();
    mkfifo(&root.join("listing.jsonl"));
    let o = env
        .cmd()
        .args([
            "layers",
            "--input",
            "downloads",
            "--no-exif",
            "--format",
            "csv",
        ])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert_success(&o);
    let csv = std::fs::read_to_string(root.join("layers/images.csv")).unwrap();
    let line = csv.lines().nth(1).unwrap();
    assert!(
        line.starts_with("77,-73.9,40.7,POINT (-73.9 40.7),'@seq,"),
        "{line}"
    );
    assert!(
        line.contains(r#""'=HYPERLINK(""http://evil.example"",""click"")""#),
        "{line}"
    );
    assert!(
        line.contains(",'-2+3,") && line.contains(",'+alice,42,"),
        "{line}"
    );
    let cov = std::fs::read_to_string(root.join("layers/coverage.csv")).unwrap();
    assert!(cov.lines().nth(1).unwrap().starts_with("g1,"), "{cov}");
}

/// A JPEG with a real header, and its bytes.
fn real_jpeg(dir: &Path, name: &str) -> Vec<u8> {
    let bytes = crate::adopt::jpeg(8, 8);
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), &bytes).unwrap();
    bytes
}

/// Linked `images/`, `jsons/` and grid folders pointing outside the folder:
/// `exif` and `adopt` name each one and never write, move or read through it.
#[test]
fn linked_folders_are_named_and_never_followed() {
    use crate::adopt::{old_json, put};
    use std::os::unix::fs::symlink;
    let env = TestEnv::new();
    let outside = env.path().join("outside");
    let imgs = real_jpeg(&outside.join("imgs"), "7.jpg");
    let grid_jpg = real_jpeg(&outside.join("grid"), "8.jpg");
    std::fs::write(
        outside.join("grid/8.json"),
        json!({"id": "8", "geometry": {"type": "Point", "coordinates": [2.3, 48.8]}}).to_string(),
    )
    .unwrap();
    // The old tool's single run whose `images/` is a link out.
    let single = env.path().join("single");
    std::fs::create_dir_all(single.join("jsons")).unwrap();
    std::fs::write(single.join("jsons/7.json"), old_json(7, 2.35, 48.85)).unwrap();
    symlink(outside.join("imgs"), single.join("images")).unwrap();
    // mlyexport's layout with a linked grid folder beside a real one.
    let ours = env.path().join("ours");
    symlink(outside.join("grid"), {
        std::fs::create_dir_all(&ours).unwrap();
        ours.join("g2")
    })
    .unwrap();
    real_jpeg(&ours.join("g1"), "9.jpg");
    std::fs::write(
        ours.join("g1/9.json"),
        json!({"id": "9", "geometry": {"type": "Point", "coordinates": [2.3, 48.8]}}).to_string(),
    )
    .unwrap();
    for (root, link) in [(&single, "images"), (&ours, "g2")] {
        let o = env
            .cmd()
            .arg("exif")
            .arg("--input")
            .arg(root)
            .output()
            .unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!("{link}`: a symbolic link to a folder")),
            "{err}"
        );
        assert!(
            stdout(&o).contains("not read (see the warnings): 1"),
            "{}",
            stdout(&o)
        );
    }
    assert_eq!(std::fs::read(outside.join("imgs/7.jpg")).unwrap(), imgs);
    assert_eq!(std::fs::read(outside.join("grid/8.jpg")).unwrap(), grid_jpg);
    // adopt: a segment whose `images/` and one whose `jsons/` link out.
    let old = env.path().join("old");
    put(&old.join("1"), 101, 13.05, 52.05, &crate::adopt::jpeg(8, 8));
    std::fs::create_dir_all(old.join("2/jsons")).unwrap();
    std::fs::write(old.join("2/jsons/7.json"), old_json(7, 2.35, 48.85)).unwrap();
    symlink(outside.join("imgs"), old.join("2/images")).unwrap();
    std::fs::create_dir_all(outside.join("jsons")).unwrap();
    std::fs::write(outside.join("jsons/8.json"), old_json(8, 2.35, 48.85)).unwrap();
    std::fs::create_dir_all(old.join("3")).unwrap();
    symlink(outside.join("jsons"), old.join("3/jsons")).unwrap();
    symlink(outside.join("grid"), old.join("3/images")).unwrap();
    for dry in [true, false] {
        let mut cmd = env.cmd();
        cmd.arg("adopt").arg("--input").arg(&old);
        if dry {
            cmd.arg("--dry-run");
        }
        let o = cmd.output().unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        for link in ["2/images", "3/jsons", "3/images"] {
            assert!(
                err.contains(&format!("{link}: a symbolic link to a folder")),
                "{link}: {err}"
            );
        }
    }
    assert!(old.join("1/101.jpg").is_file());
    assert_eq!(std::fs::read(outside.join("imgs/7.jpg")).unwrap(), imgs);
    assert_eq!(std::fs::read(outside.join("grid/8.jpg")).unwrap(), grid_jpg);
    assert!(outside.join("jsons/8.json").is_file());
    assert!(old.join("2/jsons/7.json").is_file() && !old.join("2/7.jpg").exists());
}

/// Capture times far outside any plausible range (year -1199, 255479, 9999)
/// are absent, with a warning in the record: no malformed EXIF dates, no GDAL
/// errors on stderr under --quiet, no nonsense coverage ages.
#[test]
fn absurd_capture_times_are_absent_not_malformed() {
    let env = TestEnv::new();
    let g = env.out().join("g1");
    let times = [
        json!(-99_999_999_999_999_i64),
        json!(8_000_000_000_000_000_i64),
        json!("9999-12-31T00:00:00Z"),
    ];
    for (i, t) in times.iter().enumerate() {
        let id = i + 1;
        real_jpeg(&g, &format!("{id}.jpg"));
        let v = json!({"id": id.to_string(), "captured_at": t, "sequence": "s",
            "geometry": {"type": "Point", "coordinates": [2.35 + i as f64 * 1e-4, 48.85]}});
        std::fs::write(g.join(format!("{id}.json")), v.to_string()).unwrap();
    }
    let o = env
        .cmd()
        .args([
            "layers",
            "--input",
            "downloads",
            "--quiet",
            "--format",
            "gpkg",
        ])
        .args(["--format", "geojson", "--as-of", "2024-01-01"])
        .output()
        .unwrap();
    assert_success(&o);
    assert_eq!(stderr(&o), "");
    for id in 1..=3 {
        let jpg = std::fs::read(g.join(format!("{id}.jpg"))).unwrap();
        let text = String::from_utf8_lossy(&jpg);
        assert!(
            !text.contains("-1199:") && !text.contains("255479:"),
            "{id}"
        );
        assert!(!text.contains("9999:12:31"), "{id}");
    }
    let cov = read_json(&env.out().join("layers/coverage.json"));
    let g1 = &cov["grids"][0];
    assert!(g1["months_since_newest"].is_null(), "{g1}");
    let gj = read_json(&env.out().join("layers/images.geojson"));
    for f in gj["features"].as_array().unwrap() {
        assert!(f["properties"]["captured_at"].is_null(), "{f}");
    }
}

/// Names of digits that are not an image's own (`000031.json`, `0005.jpg`, a
/// folder `26.json`, an id beyond u64) are named as not read, never taken for
/// another image's file.
#[test]
fn padded_and_impossible_ids_are_named_not_misread() {
    let env = TestEnv::new();
    let g = env.out().join("g1");
    std::fs::create_dir_all(g.join("26.json")).unwrap();
    let rec = |id: u64| {
        json!({"id": id.to_string(), "captured_at": 1_600_000_000_000_i64,
            "geometry": {"type": "Point", "coordinates": [2.35, 48.85]}})
        .to_string()
    };
    for (name, id) in [
        ("000031.json", 31),
        ("5.json", 5),
        ("00032.json", 32),
        ("32.json", 32),
    ] {
        std::fs::write(g.join(name), rec(id)).unwrap();
    }
    real_jpeg(&g, "0005.jpg");
    std::fs::write(g.join("99999999999999999999.json"), rec(9)).unwrap();
    let o = env
        .cmd()
        .args([
            "layers",
            "--input",
            "downloads",
            "--no-exif",
            "--format",
            "geojson",
        ])
        .args(["--as-of", "2024-01-01"])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    for (name, why) in [
        ("000031.json", "names image `31` with leading zeros"),
        ("00032.json", "names image `32` with leading zeros"),
        ("0005.jpg", "names image `5` with leading zeros"),
        ("26.json", "a folder named like an image file"),
        (
            "99999999999999999999.json",
            "named like an image file, but not an image id",
        ),
    ] {
        assert!(err.contains(&format!("g1/{name}`: {why}")), "{name}: {err}");
    }
    assert!(
        !err.contains("duplicate") && !err.contains("cannot read"),
        "{err}"
    );
    assert!(
        stdout(&o).contains("not read (see the warnings): 5"),
        "{}",
        stdout(&o)
    );
    let gj = read_json(&env.out().join("layers/images.geojson"));
    let props: Vec<(String, Value)> = gj["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let p = &f["properties"];
            (p["id"].as_str().unwrap().to_string(), p["file"].clone())
        })
        .collect();
    assert_eq!(
        props,
        [
            ("5".to_string(), Value::Null),
            ("32".to_string(), Value::Null)
        ]
    );
}

/// Untrusted text never starts a line of its own: a folder named to look like
/// a second warning stays inside the one naming it.
#[test]
fn a_folder_name_cannot_forge_a_warning_line() {
    let env = TestEnv::new();
    let root = env.out();
    crate::adopt::put(&root.join("1"), 5, 13.05, 52.05, &crate::adopt::jpeg(8, 8));
    std::fs::create_dir_all(root.join("5\nwarning: all good")).unwrap();
    let o = env
        .cmd()
        .args(["adopt", "--dry-run", "--input", "downloads"])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("all good"), "{err}");
    for line in err.lines() {
        assert!(!line.starts_with("warning: all good"), "{err}");
    }
}
