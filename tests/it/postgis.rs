//! `mlyexport layers --format postgis` against a real PostgreSQL 15 +
//! PostGIS 3 (`scripts/pg-up.sh`; `scripts/test.sh` starts one and passes it
//! in `MLYEXPORT_TEST_PG`, otherwise the first test here starts one that stops
//! when this test process ends): rows, geometry and SRID against the
//! GeoPackage of the same run, GiST indexes, QGIS styles loaded headless, a
//! re-run watched by a polling reader (old or new state, never a mix or
//! doubled rows), tables of others left alone, refused connections and
//! refused or leaked passwords.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command as StdCommand, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use gdal::Dataset;
use gdal::vector::LayerAccess;
use serde_json::json;

use crate::common::{TestEnv, bbox_arg, downloaded_ids, python_module, qgis_check};

/// The test cluster: a libpq connection string without password, and the password.
struct Pg {
    conninfo: String,
    password: String,
}

/// The cluster of `MLYEXPORT_TEST_PG`/`MLYEXPORT_TEST_PGPASSWORD`, or one
/// started now (stopped by pg-up.sh's watcher once this process ends).
/// `None` only with `MLYEXPORT_ALLOW_SKIP=1` when none can start.
#[allow(clippy::print_stderr)] // the skip is said where the test output shows it
fn pg() -> Option<&'static Pg> {
    static PG: OnceLock<Option<Pg>> = OnceLock::new();
    PG.get_or_init(|| {
        if let (Ok(conninfo), Ok(password)) = (
            std::env::var("MLYEXPORT_TEST_PG"),
            std::env::var("MLYEXPORT_TEST_PGPASSWORD"),
        ) {
            return Some(Pg { conninfo, password });
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-up.sh");
        let out = StdCommand::new("bash")
            .arg(&script)
            .args(["--watch", &std::process::id().to_string()])
            .stderr(Stdio::piped())
            .output();
        let vars = match &out {
            Ok(o) if o.status.success() => parse_vars(&String::from_utf8_lossy(&o.stdout)),
            _ => Vec::new(),
        };
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        if let (Some(conninfo), Some(password)) =
            (get("MLYEXPORT_TEST_PG"), get("MLYEXPORT_TEST_PGPASSWORD"))
        {
            return Some(Pg { conninfo, password });
        }
        let why = out.map_or_else(
            |e| e.to_string(),
            |o| String::from_utf8_lossy(&o.stderr).into_owned(),
        );
        let note = format!(
            "cannot start PostgreSQL + PostGIS ({why}); apt-get install postgresql-15-postgis-3"
        );
        assert!(
            std::env::var_os("MLYEXPORT_ALLOW_SKIP").is_some_and(|v| v == "1"),
            "{note} (or set MLYEXPORT_ALLOW_SKIP=1 to skip this test)"
        );
        eprintln!("SKIPPED: {note}");
        None
    })
    .as_ref()
}

/// `KEY=value` / `KEY='value'` lines of pg-up.sh.
fn parse_vars(s: &str) -> Vec<(String, String)> {
    s.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect()
}

impl Pg {
    /// `--pg` for `schema`.
    fn arg(&self, schema: &str) -> String {
        format!("PG:{} schema={schema}", self.conninfo)
    }

    /// One SQL statement through psql; its rows, columns split by `|`.
    fn sql(&self, sql: &str) -> Vec<Vec<String>> {
        let out = self.psql().args(["-c", sql]).output().unwrap();
        assert!(out.status.success(), "{sql}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split('|').map(str::to_string).collect())
            .collect()
    }

    fn one(&self, sql: &str) -> String {
        self.sql(sql)
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next())
            .unwrap_or_default()
    }

    fn psql(&self) -> StdCommand {
        let mut c = StdCommand::new("psql");
        c.args([
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &self.conninfo,
        ])
        .env("PGPASSWORD", &self.password)
        .env("PGCONNECT_TIMEOUT", "10");
        c
    }

    /// The GDAL dataset of the database (the password in the test's own string).
    fn dataset(&self) -> Dataset {
        let name = format!("PG:{} password='{}'", self.conninfo, self.password);
        Dataset::open_ex(
            &name,
            gdal::DatasetOptions {
                open_flags: gdal::GdalOpenFlags::GDAL_OF_VECTOR,
                ..Default::default()
            },
        )
        .unwrap()
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `mlyexport layers --no-exif ARGS` on `input` with `PGPASSWORD` set.
fn layers(env: &TestEnv, input: &Path, password: &str, args: &[&str]) -> Output {
    env.cmd()
        .arg("layers")
        .arg("--input")
        .arg(input)
        .arg("--no-exif")
        .args(args)
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .unwrap()
}

/// `mlyexport layers --no-exif --format postgis` of `input` into `schema`
/// of the test cluster, with its password in `PGPASSWORD`.
fn to_schema(env: &TestEnv, input: &Path, pg: &Pg, schema: &str) -> Output {
    let arg = pg.arg(schema);
    layers(
        env,
        input,
        &pg.password,
        &["--format", "postgis", "--pg", &arg],
    )
}

/// The stderr of a run that must have been refused (exit 2).
fn refused(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(2), "{}", text(o));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_no_secret(o: &Output, secret: &str) {
    let all = text(o);
    assert!(!all.contains(secret), "the password was printed:\n{all}");
}

/// A `fetch`-layout folder of `n` synthetic images in 4 grids, 25 per sequence.
fn synth_downloads(root: &Path, from: usize, n: usize) {
    for i in from..from + n {
        let grid = format!("g{}", i % 4);
        let dir = root.join(&grid);
        std::fs::create_dir_all(&dir).unwrap();
        let id = 5_000_000 + i as u64;
        let v = json!({
            "id": id.to_string(), "captured_at": 1_600_000_000_000_i64 + i as i64 * 1000,
            "geometry": {"type": "Point", "coordinates": [13.4 + (i % 97) as f64 * 1e-4, 52.5 + (i / 97) as f64 * 1e-4]},
            "compass_angle": 10.0, "sequence": format!("s{}", i / 25), "is_pano": i % 10 == 0,
            "mlyexport": {"schema_version": 1, "grid": grid},
        });
        std::fs::write(
            dir.join(format!("{id}.json")),
            serde_json::to_vec(&v).unwrap(),
        )
        .unwrap();
    }
}

fn count_rows(ds: &Dataset, layer: &str) -> u64 {
    ds.layer_by_name(layer).unwrap().feature_count()
}

#[test]
fn postgis_layers_match_the_geopackage_after_a_real_fetch() {
    let Some(pg) = pg() else { return };
    let env = TestEnv::with_sim(mlysim::SimConfig::default());
    let w = env.sim().world().spec().bbox;
    let b = [w[0], w[1], (w[0] + w[2]) / 2.0, (w[1] + w[3]) / 2.0];
    let o = env.fetch(&["--bbox", &bbox_arg(b), "--grid", "2x2", "--size", "256"]);
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", text(&o));
    assert!(!downloaded_ids(&env.out()).is_empty(), "{}", text(&o));

    let schema = "t_fetch";
    let arg = pg.arg(schema);
    let o = layers(
        &env,
        &env.out(),
        &pg.password,
        &["--format", "gpkg,postgis", "--pg", &arg],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_no_secret(&o, &pg.password);
    let gpkg = Dataset::open(env.out().join("layers/mapillary.gpkg")).unwrap();
    for table in ["images", "sequences", "grid_cells", "runs"] {
        let n: u64 = pg
            .one(&format!("SELECT count(*) FROM {schema}.{table}"))
            .parse()
            .unwrap();
        assert_eq!(n, count_rows(&gpkg, table), "{table}");
        assert!(n > 0, "{table} is empty");
    }
    // Geometry: SRID 4326 declared and on every row; the points equal the GeoPackage's.
    for (table, ty) in [
        ("images", "POINT"),
        ("sequences", "LINESTRING"),
        ("grid_cells", "MULTIPOLYGON"),
    ] {
        let row = pg.sql(&format!(
            "SELECT srid, type FROM geometry_columns WHERE f_table_schema = '{schema}' AND f_table_name = '{table}'"
        ));
        assert_eq!(
            row,
            vec![vec!["4326".to_string(), ty.to_string()]],
            "{table}"
        );
        let bad = pg.one(&format!(
            "SELECT count(*) FROM {schema}.{table} WHERE ST_SRID(geom) <> 4326 OR NOT ST_IsValid(geom)"
        ));
        assert_eq!(bad, "0", "{table}");
        let gist = pg.one(&format!(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = '{schema}' AND tablename = '{table}' AND indexdef LIKE '%USING gist (geom)%'"
        ));
        assert_eq!(gist, "1", "{table} has no GiST index");
    }
    let pg_points: Vec<Vec<String>> = pg.sql(&format!(
        "SELECT id, ST_X(geom)::numeric(12,7), ST_Y(geom)::numeric(12,7), \
         round(extract(epoch FROM captured_at) * 1000)::bigint, is_pano FROM {schema}.images ORDER BY id"
    ));
    let mut gpkg_points: Vec<Vec<String>> = gpkg
        .layer_by_name("images")
        .unwrap()
        .features()
        .map(|f| {
            let p = f.geometry().unwrap().get_point(0);
            let idx = |n: &str| f.field_index(n).unwrap();
            // OGR's text of a datetime keeps the milliseconds (its DateTime does not).
            let t = f.field_as_string(idx("captured_at")).unwrap().unwrap();
            let t = chrono::NaiveDateTime::parse_from_str(
                t.trim_end_matches("+00"),
                "%Y/%m/%d %H:%M:%S%.f",
            )
            .unwrap();
            let pano = f.field_as_integer(idx("is_pano")).unwrap().unwrap();
            vec![
                f.field_as_string(idx("id")).unwrap().unwrap(),
                format!("{:.7}", p.0),
                format!("{:.7}", p.1),
                t.and_utc().timestamp_millis().to_string(),
                if pano == 1 { "t" } else { "f" }.to_string(),
            ]
        })
        .collect();
    gpkg_points.sort();
    assert_eq!(pg_points, gpkg_points);
    // Same columns and types as the GeoPackage layer, in order (plus fid and geom).
    let cols = pg.sql(&format!(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = '{schema}' AND table_name = 'images' ORDER BY ordinal_position"
    ));
    let names: Vec<&str> = cols.iter().map(|c| c[0].as_str()).collect();
    let gpkg_names: Vec<String> = gpkg
        .layer_by_name("images")
        .unwrap()
        .defn()
        .fields()
        .map(|f| f.name())
        .collect();
    assert_eq!(names[0], "fid");
    assert_eq!(names[1..names.len() - 1], gpkg_names);
    let ty = |n: &str| cols.iter().find(|c| c[0] == n).unwrap()[1].clone();
    assert_eq!(ty("captured_at"), "timestamp with time zone");
    assert_eq!(ty("is_pano"), "boolean");
    assert_eq!(ty("bytes"), "bigint");
    assert_eq!(ty("width"), "integer");
    assert_eq!(ty("compass_angle"), "double precision");
    // Through GDAL's reader too: the layer is found with EPSG:4326.
    let ds = pg.dataset();
    let l = ds.layer_by_name(&format!("{schema}.images")).unwrap();
    assert_eq!(l.spatial_ref().unwrap().auth_code().unwrap(), 4326);

    // A re-run replaces, never appends.
    let o = to_schema(&env, &env.out(), pg, schema);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let n: u64 = pg
        .one(&format!("SELECT count(*) FROM {schema}.images"))
        .parse()
        .unwrap();
    assert_eq!(n, count_rows(&gpkg, "images"));
    let dup = pg.one(&format!(
        "SELECT count(*) FROM (SELECT id FROM {schema}.images GROUP BY id HAVING count(*) > 1) d"
    ));
    assert_eq!(dup, "0");
    let styles = pg.one(&format!(
        "SELECT count(*) FROM layer_styles WHERE f_table_schema = '{schema}' AND f_table_catalog = current_database()"
    ));
    assert_eq!(styles, "4");
    assert_eq!(staged_left(pg, schema), "", "staged names left behind");
    for name in ["images_pkey", "runs_fid_seq", "grid_cells_geom_geom_idx"] {
        let found = pg.one(&format!(
            "SELECT to_regclass('{schema}.{name}') IS NOT NULL"
        ));
        assert_eq!(found, "t", "{name} after the swap");
    }
    qgis_loads_the_styled_tables(pg, schema, count_rows(&gpkg, "images"));
}

/// QGIS' own postgres provider (`scripts/qgis_check.py`) opens each table
/// with its default style from `layer_styles`.
fn qgis_loads_the_styled_tables(pg: &Pg, schema: &str, images: u64) {
    if !python_module("qgis.core", "python3-qgis qgis-providers") {
        return;
    }
    let source = format!("PG:{}", pg.conninfo);
    let results = qgis_check(
        source.as_ref(),
        &[schema],
        &[("PGPASSWORD", pg.password.as_str())],
    );
    let by = |name: &str| results.iter().find(|r| r["layer"] == name).unwrap();
    assert_eq!(by("images")["crs"], "EPSG:4326");
    assert_eq!(by("images")["renderer"], "RuleRenderer");
    assert_eq!(by("images")["rotation_active"], true);
    assert_eq!(by("images")["features"], images);
    assert_eq!(by("grid_cells")["renderer"], "graduatedSymbol");
    assert_eq!(by("grid_cells")["class_attribute"], "images_per_km2");
    assert_eq!(by("sequences")["renderer"], "singleSymbol");
}

/// Polls the four counts in one statement, through one psql session, until
/// `stop`; returns every distinct answer seen (or error line).
fn poll_counts(pg: &Pg, schema: &str, stop: &AtomicBool) -> Vec<String> {
    let mut child = StdCommand::new("sh")
        .args([
            "-c",
            "exec psql -X -q -At -d \"$1\" 2>&1",
            "sh",
            &pg.conninfo,
        ])
        .env("PGPASSWORD", &pg.password)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let q = format!(
        "SELECT (SELECT count(*) FROM {schema}.images), (SELECT count(*) FROM {schema}.sequences), \
         (SELECT count(*) FROM {schema}.grid_cells), (SELECT count(DISTINCT id) FROM {schema}.images);\n"
    );
    let mut seen: Vec<String> = Vec::new();
    let mut polls = 0;
    while !stop.load(Ordering::SeqCst) {
        stdin.write_all(q.as_bytes()).unwrap();
        stdin.flush().unwrap();
        let line = lines.next().unwrap().unwrap();
        polls += 1;
        if !seen.contains(&line) {
            seen.push(line);
        }
    }
    drop(stdin);
    let _ = child.wait();
    seen.push(format!("polls: {polls}"));
    seen
}

#[test]
fn a_rerun_swaps_in_one_transaction_for_a_polling_reader() {
    let Some(pg) = pg() else { return };
    let env = TestEnv::new();
    let input = env.path().join("downloads");
    synth_downloads(&input, 0, 3000);
    let schema = "t_swap";
    let o = to_schema(&env, &input, pg, schema);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let old = pg.sql(&format!(
        "SELECT (SELECT count(*) FROM {schema}.images), (SELECT count(*) FROM {schema}.sequences), \
         (SELECT count(*) FROM {schema}.grid_cells), (SELECT count(DISTINCT id) FROM {schema}.images)"
    ))[0]
        .join("|");
    assert_eq!(old, "3000|120|4|3000");
    synth_downloads(&input, 3000, 6000);
    // The user makes their own default style for `images`, as QGIS' "save as default" does.
    pg.sql(&format!(
        "DELETE FROM layer_styles WHERE f_table_schema = '{schema}' AND styleName = 'mine'; \
         UPDATE layer_styles SET useAsDefault = false WHERE f_table_schema = '{schema}' AND f_table_name = 'images'; \
         INSERT INTO layer_styles(f_table_catalog, f_table_schema, f_table_name, f_geometry_column, styleName, styleQML, useAsDefault) \
         SELECT current_database(), '{schema}', 'images', 'geom', 'mine', styleQML, true FROM layer_styles \
         WHERE f_table_schema = '{schema}' AND f_table_name = 'images'"
    ));

    let stop = AtomicBool::new(false);
    let (seen, rerun) = std::thread::scope(|s| {
        let poller = s.spawn(|| poll_counts(pg, schema, &stop));
        std::thread::sleep(std::time::Duration::from_millis(200));
        let o = to_schema(&env, &input, pg, schema);
        std::thread::sleep(std::time::Duration::from_millis(200));
        stop.store(true, Ordering::SeqCst);
        (poller.join().unwrap(), o)
    });
    assert_eq!(rerun.status.code(), Some(0), "{}", text(&rerun));
    let new = "9000|360|4|9000".to_string();
    let states: Vec<&String> = seen.iter().filter(|l| !l.starts_with("polls:")).collect();
    assert_eq!(
        states,
        vec![&old, &new],
        "every answer the reader saw: {seen:?}"
    );
    let polls: usize = seen.last().unwrap()["polls: ".len()..].parse().unwrap();
    assert!(polls >= 20, "the reader hardly polled: {seen:?}");
    // The re-run replaced its own styles and left the user's default the default.
    let styles = pg.sql(&format!(
        "SELECT styleName, useAsDefault FROM layer_styles WHERE f_table_schema = '{schema}' \
         AND f_table_name = 'images' ORDER BY styleName"
    ));
    assert_eq!(styles, vec![vec!["images", "f"], vec!["mine", "t"]]);
    let ours = pg.one(&format!(
        "SELECT count(*) FROM layer_styles WHERE f_table_schema = '{schema}' AND useAsDefault AND styleName <> 'mine'"
    ));
    assert_eq!(
        ours, "3",
        "sequences, grid_cells and runs keep their default styles"
    );
}

#[test]
fn tables_that_mlyexport_did_not_write_are_never_dropped() {
    let Some(pg) = pg() else { return };
    let env = TestEnv::new();
    let input = env.path().join("downloads");
    synth_downloads(&input, 0, 50);
    pg.sql("CREATE SCHEMA IF NOT EXISTS t_foreign");
    pg.sql("CREATE TABLE IF NOT EXISTS t_foreign.sequences (precious text)");
    pg.sql("INSERT INTO t_foreign.sequences VALUES ('keep me')");
    let o = to_schema(&env, &input, pg, "t_foreign");
    let err = refused(&o);
    assert!(
        err.contains("t_foreign.sequences") && err.contains("schema="),
        "{err}"
    );
    assert_eq!(
        pg.one("SELECT precious FROM t_foreign.sequences"),
        "keep me"
    );
    assert_eq!(
        pg.one("SELECT count(*) FROM pg_tables WHERE schemaname = 't_foreign'"),
        "1"
    );
}

#[test]
fn refused_connections_name_the_server_and_never_the_password() {
    let Some(pg) = pg() else { return };
    let env = TestEnv::new();
    let input = env.path().join("downloads");
    synth_downloads(&input, 0, 10);
    // A port where nothing listens: bind one, note it, release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down =
        format!("PG:host=127.0.0.1 port={port} dbname=mlyexport user=mlyexport schema=t_down");
    let secret = "zz-unique-secret-4711";
    let o = layers(
        &env,
        &input,
        secret,
        &["--format", "postgis", "--pg", &down],
    );
    let err = refused(&o);
    for want in ["127.0.0.1", &port.to_string(), "mlyexport", "pg_isready"] {
        assert!(err.contains(want), "no `{want}` in: {err}");
    }
    assert_no_secret(&o, secret);
    assert!(
        !input.join("layers/coverage.csv").exists(),
        "wrote outputs before connecting"
    );

    // The right server, a wrong password: the same kind of message, no password shown.
    let arg = pg.arg("t_auth");
    let o = layers(&env, &input, secret, &["--format", "postgis", "--pg", &arg]);
    let err = refused(&o);
    assert!(
        err.contains("password authentication failed") && err.contains("PGPASSWORD"),
        "{err}"
    );
    assert_no_secret(&o, secret);
    assert_no_secret(&o, &pg.password);
}

/// `conninfo`'s `key=value` pairs.
fn conn_value<'a>(conninfo: &'a str, key: &str) -> &'a str {
    conninfo
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key} in {conninfo}"))
}

/// `mlyexport layers --format postgis --pg PG_ARG` with no `PGPASSWORD`,
/// `HOME` at `home` and the extra libpq variables `vars`.
fn layers_without_pgpassword(
    env: &TestEnv,
    input: &Path,
    home: &Path,
    pg_arg: &str,
    vars: &[(&str, &Path)],
) -> Output {
    let mut cmd = env.cmd();
    cmd.arg("layers")
        .arg("--input")
        .arg(input)
        .args(["--no-exif", "--format", "postgis", "--pg", pg_arg])
        .env_remove("PGPASSWORD")
        .env_remove("PGPASSFILE")
        .env_remove("PGSERVICE")
        .env_remove("PGSERVICEFILE")
        .env("HOME", home)
        .env("PGCONNECT_TIMEOUT", "10");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[cfg(unix)]
fn private_file(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The two password sources besides `PGPASSWORD`, each alone: `~/.pgpass`
/// (found through `HOME`) and a service file entry (`PGSERVICEFILE`,
/// `service=NAME` in `--pg`). Neither password is printed; without any
/// source the refusal names all three.
#[cfg(unix)]
#[test]
fn pgpass_and_service_files_supply_the_password() {
    let Some(pg) = pg() else { return };
    let env = TestEnv::new();
    let input = env.path().join("downloads");
    synth_downloads(&input, 0, 30);
    let (host, port) = (
        conn_value(&pg.conninfo, "host"),
        conn_value(&pg.conninfo, "port"),
    );
    let (db, user) = (
        conn_value(&pg.conninfo, "dbname"),
        conn_value(&pg.conninfo, "user"),
    );

    // No source at all: refused, and told where a password can come from.
    let empty_home = env.path().join("home-empty");
    std::fs::create_dir_all(&empty_home).unwrap();
    let o = layers_without_pgpassword(&env, &input, &empty_home, &pg.arg("t_nopw"), &[]);
    let err = refused(&o);
    for way in ["PGPASSWORD", "~/.pgpass", "service"] {
        assert!(err.contains(way), "no `{way}` in: {err}");
    }

    // ~/.pgpass, mode 0600 (libpq ignores a file others can read).
    let home = env.path().join("home-pgpass");
    std::fs::create_dir_all(&home).unwrap();
    let line = format!("{host}:{port}:{db}:{user}:{}\n", pg.password);
    private_file(&home.join(".pgpass"), &line);
    let o = layers_without_pgpassword(&env, &input, &home, &pg.arg("t_pgpass"), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_no_secret(&o, &pg.password);
    assert_eq!(pg.one("SELECT count(*) FROM t_pgpass.images"), "30");

    // A service file entry holding the whole connection and the password.
    let services = env.path().join("pg_service.conf");
    let entry = format!(
        "[mlytest]\nhost={host}\nport={port}\ndbname={db}\nuser={user}\npassword={}\n",
        pg.password
    );
    private_file(&services, &entry);
    let o = layers_without_pgpassword(
        &env,
        &input,
        &empty_home,
        "PG:service=mlytest schema=t_service",
        &[("PGSERVICEFILE", &services)],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_no_secret(&o, &pg.password);
    assert_eq!(pg.one("SELECT count(*) FROM t_service.images"), "30");
    let styled = "SELECT count(*) FROM layer_styles WHERE f_table_schema = 't_service'";
    assert_eq!(pg.one(styled), "4");
}

#[test]
fn a_password_in_the_flag_is_refused_and_not_echoed() {
    let env = TestEnv::new();
    let input = env.path().join("downloads");
    synth_downloads(&input, 0, 3);
    let secret = "hunter2-in-argv";
    for flag in [
        format!("PG:host=127.0.0.1 dbname=x password={secret}"),
        format!("PG:host=127.0.0.1 dbname=x PASSWORD = '{secret} two'"),
        format!("PG:postgresql://ann:{secret}@127.0.0.1/x"),
    ] {
        let o = layers(&env, &input, "", &["--format", "postgis", "--pg", &flag]);
        let err = refused(&o);
        for way in ["PGPASSWORD", "~/.pgpass", "service"] {
            assert!(err.contains(way), "no `{way}` in: {err}");
        }
        assert_no_secret(&o, secret);
    }
    // --format postgis without --pg, and --pg without postgis: told what to add.
    let o = layers(&env, &input, "", &["--format", "postgis"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--pg"),
        "{}",
        text(&o)
    );
    let o = layers(
        &env,
        &input,
        "",
        &["--format", "gpkg", "--pg", "PG:dbname=x"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("postgis"),
        "{}",
        text(&o)
    );
}

/// The relations of `schema` still under a staged name, comma-separated.
fn staged_left(pg: &Pg, schema: &str) -> String {
    pg.one(&format!(
        "SELECT string_agg(relname, ', ') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = '{schema}' AND relname LIKE '%mlyexport_new%'"
    ))
}

#[test]
fn a_failed_run_leaves_the_old_tables_and_no_staged_table() {
    let Some(pg) = pg() else { return };
    let env = TestEnv::new();
    let good = env.path().join("good");
    synth_downloads(&good, 0, 40);
    let schema = "t_abort";
    let o = to_schema(&env, &good, pg, schema);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // Only unreadable metadata: the run fails after the tables were begun.
    let bad = env.path().join("bad/g0");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("1.json"), b"{\"id\": trunc").unwrap();
    let o = to_schema(&env, bad.parent().unwrap(), pg, schema);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(
        pg.one(&format!("SELECT count(*) FROM {schema}.images")),
        "40"
    );
    assert_eq!(staged_left(pg, schema), "", "a staged table was left");

    // A user's table under a staged name is refused before any work, and kept.
    pg.sql(&format!(
        "CREATE TABLE {schema}.runs__mlyexport_new (x int)"
    ));
    let o = to_schema(&env, &good, pg, schema);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("`runs__mlyexport_new`"),
        "{}",
        text(&o)
    );
    assert_eq!(staged_left(pg, schema), "runs__mlyexport_new");
    pg.sql(&format!("DROP TABLE {schema}.runs__mlyexport_new"));
    let o = to_schema(&env, &good, pg, schema);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// A role that may create tables in an existing schema, and nothing in the
/// database, writes and re-writes it (the tables are staged in that schema).
#[test]
#[allow(clippy::print_stderr)] // a cluster from outside may not allow it: said, not failed
fn a_role_with_create_on_the_schema_only_writes_it() {
    let Some(pg) = pg() else { return };
    if pg.one("SELECT rolcreaterole FROM pg_roles WHERE rolname = current_user") != "t" {
        eprintln!("SKIPPED: the test user may not create roles (scripts/pg-up.sh's may)");
        return;
    }
    let env = TestEnv::new();
    let input = env.path().join("downloads");
    synth_downloads(&input, 0, 30);
    let (role, password) = ("mlyexport_schema_only", "schema-only-pw-42");
    pg.sql(&format!(
        "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') \
         THEN CREATE ROLE {role} LOGIN PASSWORD '{password}'; END IF; END$$"
    ));
    pg.sql("DROP SCHEMA IF EXISTS t_granted CASCADE");
    pg.sql(&format!(
        "CREATE SCHEMA t_granted; GRANT USAGE, CREATE ON SCHEMA t_granted TO {role}"
    ));
    assert_eq!(
        pg.one(&format!(
            "SELECT has_database_privilege('{role}', current_database(), 'CREATE')"
        )),
        "f"
    );
    let conninfo = pg
        .conninfo
        .replace("user=mlyexport", &format!("user={role}"));
    let run = |schema: &str| {
        let arg = format!("PG:{conninfo} schema={schema}");
        layers(
            &env,
            &input,
            password,
            &["--format", "postgis", "--pg", &arg],
        )
    };
    let refused_with = |o: &Output, fix: &str| {
        let err = refused(o);
        assert!(err.contains(fix), "{err}");
    };
    // `layer_styles` is shared (made here by the test user's run, when
    // missing): without rights on it, refused before any work.
    let seed = to_schema(&env, &input, pg, "t_granted_seed");
    assert_eq!(seed.status.code(), Some(0), "{}", text(&seed));
    pg.sql("DROP SCHEMA t_granted_seed CASCADE");
    pg.sql(&format!(
        "REVOKE ALL ON layer_styles FROM {role}; REVOKE ALL ON SEQUENCE layer_styles_id_seq FROM {role}"
    ));
    refused_with(
        &run("t_granted"),
        "GRANT SELECT, INSERT, DELETE ON layer_styles",
    );
    let made = "SELECT to_regclass('t_granted.images') IS NULL";
    assert_eq!(pg.one(made), "t");
    pg.sql(&format!(
        "GRANT SELECT, INSERT, DELETE ON layer_styles TO {role}; \
         GRANT USAGE ON SEQUENCE layer_styles_id_seq TO {role}"
    ));
    for round in 1..=2 {
        let o = run("t_granted");
        assert_eq!(o.status.code(), Some(0), "round {round}: {}", text(&o));
    }
    let as_role = Pg {
        conninfo: conninfo.clone(),
        password: password.to_string(),
    };
    assert_eq!(as_role.one("SELECT count(*) FROM t_granted.images"), "30");
    assert_eq!(staged_left(pg, "t_granted"), "");
    // A schema that does not exist needs the database's CREATE right: refused.
    refused_with(&run("t_not_there"), "GRANT CREATE ON DATABASE");
    pg.sql("DROP SCHEMA t_granted CASCADE");
}

#[test]
fn a_rerun_keeps_grants_and_refuses_early_what_would_stop_the_swap() {
    let Some(pg) = pg() else { return };
    let env = TestEnv::new();
    let input = env.path().join("downloads");
    synth_downloads(&input, 0, 60);
    pg.sql("DROP SCHEMA IF EXISTS t_keep CASCADE");
    pg.sql("CREATE SCHEMA t_keep");
    // PUBLIC stands for the readers (no role needs to be made).
    // Default privileges of the target schema apply to a first run's tables
    // (PostgreSQL applies them when the staged tables are created).
    pg.sql("ALTER DEFAULT PRIVILEGES IN SCHEMA t_keep GRANT SELECT ON TABLES TO PUBLIC");
    let o = to_schema(&env, &input, pg, "t_keep");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let can_read = |t: &str| {
        pg.one(&format!(
            "SELECT has_table_privilege('public', 't_keep.{t}', 'SELECT')"
        ))
    };
    assert_eq!(can_read("images"), "t", "default privileges on a first run");
    pg.sql("ALTER DEFAULT PRIVILEGES IN SCHEMA t_keep REVOKE SELECT ON TABLES FROM PUBLIC");
    pg.sql("GRANT UPDATE ON t_keep.runs TO PUBLIC");
    pg.sql("GRANT UPDATE (id) ON t_keep.images TO PUBLIC");
    pg.sql("GRANT USAGE ON SEQUENCE t_keep.runs_fid_seq TO PUBLIC");
    let o = to_schema(&env, &input, pg, "t_keep");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(can_read("images"), "t", "a re-run keeps the grants");
    for (right, what) in [
        (
            "has_table_privilege('public', 't_keep.runs', 'UPDATE')",
            "on a table",
        ),
        (
            "has_column_privilege('public', 't_keep.images', 'id', 'UPDATE')",
            "on a column",
        ),
        (
            "has_sequence_privilege('public', 't_keep.runs_fid_seq', 'USAGE')",
            "on a sequence",
        ),
    ] {
        assert_eq!(pg.one(&format!("SELECT {right}")), "t", "{what}");
    }
    assert_eq!(
        pg.one("SELECT has_column_privilege('public', 't_keep.images', 'sequence', 'UPDATE')"),
        "f"
    );

    // A view on a table: refused before any work, the tables unchanged.
    pg.sql("CREATE VIEW t_keep.recent AS SELECT fid FROM t_keep.images");
    let o = to_schema(&env, &input, pg, "t_keep");
    let err = refused(&o);
    assert!(
        err.contains("view `t_keep.recent`") && err.contains("drop them"),
        "{err}"
    );
    pg.sql("DROP VIEW t_keep.recent");

    // Any other object that depends on the tables, their types or sequences
    // (here a default that takes ids from ours): refused before any work.
    pg.sql("CREATE TABLE t_keep.counter (n bigint DEFAULT nextval('t_keep.images_fid_seq'))");
    let o = to_schema(&env, &input, pg, "t_keep");
    let err = refused(&o);
    assert!(
        err.contains("`default value for column n of table t_keep.counter` (on `t_keep.images`)"),
        "{err}"
    );
    pg.sql("DROP TABLE t_keep.counter");

    // A type that has a table's name would stop the rename at the end.
    pg.sql("DROP SCHEMA IF EXISTS t_typed CASCADE");
    pg.sql("CREATE SCHEMA t_typed; CREATE TYPE t_typed.runs AS ENUM ('x')");
    let o = to_schema(&env, &input, pg, "t_typed");
    let err = refused(&o);
    assert!(err.contains("`runs` in schema `t_typed`"), "{err}");
    pg.sql("DROP SCHEMA t_typed CASCADE");

    // A table kept under another name keeps its index names: refused early.
    pg.sql("ALTER TABLE t_keep.runs RENAME TO runs_2025");
    let o = to_schema(&env, &input, pg, "t_keep");
    let err = refused(&o);
    assert!(
        err.contains("`runs_pkey` (of table `runs_2025`)") && err.contains("RENAME TO"),
        "{err}"
    );
    pg.sql("ALTER INDEX t_keep.runs_pkey RENAME TO runs_2025_pkey");
    pg.sql("ALTER SEQUENCE t_keep.runs_fid_seq RENAME TO runs_2025_fid_seq");
    let o = to_schema(&env, &input, pg, "t_keep");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        pg.one("SELECT count(*) FROM t_keep.runs_2025"),
        pg.one("SELECT count(*) FROM t_keep.runs")
    );

    refuses_old_tables_of_another_owner(&env, &input, pg);

    // A reader's open transaction: the swap tries for 2 s at a time and
    // steps back in between, so another reader is held up 2 s at most.
    let mut reader = pg
        .psql()
        .args([
            "-c",
            "SELECT count(*) FROM t_keep.images; SELECT pg_sleep(6)",
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let started = std::time::Instant::now();
    let run = std::thread::scope(|s| {
        let run = s.spawn(|| to_schema(&env, &input, pg, "t_keep"));
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let quick = "SET statement_timeout = '3s'; SELECT count(*) FROM t_keep.images";
        assert_eq!(pg.one(quick), "60", "a reader during the wait");
        run.join().unwrap()
    });
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    // Tries of 2 s timed out and were rolled back until the reader ended.
    assert!(
        started.elapsed().as_secs_f64() > 4.5,
        "{:?}",
        started.elapsed()
    );
    assert!(reader.wait().unwrap().success());
    pg.sql("DROP SCHEMA t_keep CASCADE");
}

/// An old table that the user may not drop (neither it nor its schema is
/// owned by a role whose rights the user has) is refused before any work:
/// the swap's `DROP TABLE` would fail at the very end. Needs `CREATEROLE`
/// (pg-up.sh gives it) to make that role.
#[allow(clippy::print_stderr)] // a cluster from outside may not allow it: said, not failed
fn refuses_old_tables_of_another_owner(env: &TestEnv, input: &Path, pg: &Pg) {
    if pg.one("SELECT rolcreaterole FROM pg_roles WHERE rolname = current_user") != "t" {
        eprintln!("SKIPPED: the test user may not create roles (scripts/pg-up.sh's may)");
        return;
    }
    let other = "mlyexport_other";
    pg.sql(&format!(
        "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{other}') \
         THEN CREATE ROLE {other} NOLOGIN; END IF; END$$"
    ));
    // `as_other` runs SQL with the user briefly a member of the other role.
    let as_other = |sql: &str| {
        pg.sql(&format!("GRANT {other} TO current_user"));
        pg.sql(sql);
        pg.sql(&format!("REVOKE {other} FROM current_user"));
    };
    as_other("DROP SCHEMA IF EXISTS t_theirs CASCADE");
    as_other(&format!("CREATE SCHEMA t_theirs AUTHORIZATION {other}"));
    as_other("GRANT CREATE, USAGE ON SCHEMA t_theirs TO current_user");
    let o = to_schema(env, input, pg, "t_theirs");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    as_other(&format!("ALTER TABLE t_theirs.sequences OWNER TO {other}"));
    let o = to_schema(env, input, pg, "t_theirs");
    let err = refused(&o);
    assert!(
        err.contains(&format!(
            "drop the old table `t_theirs.sequences`, owned by `{other}`"
        )) && err.contains("OWNER TO"),
        "{err}"
    );
    as_other("DROP SCHEMA t_theirs CASCADE");

    // Tables of a team role the user is a member of stay the team's.
    pg.sql(&format!(
        "GRANT {other} TO current_user; GRANT CREATE ON SCHEMA t_keep TO {other}"
    ));
    let o = to_schema(env, input, pg, "t_keep");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for t in ["images", "sequences", "grid_cells", "runs"] {
        pg.sql(&format!("ALTER TABLE t_keep.{t} OWNER TO {other}"));
    }
    let o = to_schema(env, input, pg, "t_keep");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let owners = "SELECT string_agg(DISTINCT tableowner, ',') FROM pg_tables WHERE schemaname = 't_keep' \
                  AND tablename IN ('images', 'sequences', 'grid_cells', 'runs')";
    assert_eq!(pg.one(owners), other);
    for t in ["images", "sequences", "grid_cells", "runs"] {
        pg.sql(&format!("ALTER TABLE t_keep.{t} OWNER TO current_user"));
    }
    pg.sql(&format!(
        "REVOKE {other} FROM current_user; REVOKE CREATE ON SCHEMA t_keep FROM {other}"
    ));
}
