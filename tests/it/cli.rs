//! Bad inputs: each gives a clear error naming the bad value, exit 2, and
//! writes nothing.

use mlysim::SimConfig;

use crate::common::*;

/// Runs `fetch ARGS` in a fresh env and checks exit 2, the message, and that
/// no file appeared besides `keep`.
fn refused(env: &TestEnv, args: &[&str], expect: &str) {
    let before = all_files(env.path());
    let o = env.fetch(args);
    let err = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{args:?} should fail with 2; stderr: {err}"
    );
    assert!(
        err.to_lowercase().contains(&expect.to_lowercase()),
        "{args:?}: stderr should mention `{expect}`:\n{err}"
    );
    assert!(o.stdout.is_empty(), "{args:?} printed to stdout");
    assert_eq!(all_files(env.path()), before, "{args:?} wrote files");
}

#[test]
fn bad_inputs_are_clear_errors_that_write_nothing() {
    let env = TestEnv::with_sim(SimConfig::default());
    std::fs::write(
        env.path().join("bad-grid.csv"),
        "id,a,b,c,d\nA,8.5,47.35,8.51,47.36\nB,8.5,47.35,8.51\n",
    )
    .unwrap();
    std::fs::write(
        env.path().join("dupe-grid.csv"),
        "A,8.5,47.35,8.51,47.36\nA,8.51,47.35,8.52,47.36\n",
    )
    .unwrap();
    std::fs::write(env.path().join("a-file"), "x").unwrap();
    let ok = "8.50,47.35,8.51,47.36";
    let cases: &[(&[&str], &str)] = &[
        (
            &["--bbox", "8.5,47.35,8.51"],
            "four comma-separated numbers",
        ),
        (&["--bbox", "8.51,47.35,8.50,47.36"], "min_lon > max_lon"),
        (&["--bbox", "8.50,47.36,8.51,47.35"], "min_lat > max_lat"),
        (&["--bbox", "8.5,95,8.6,96"], "latitudes in -90..=90"),
        (
            &["--bbox", "8.5,47.35,east,47.36"],
            "`east` is not a number",
        ),
        (&["--bbox", "8.5,47.35,8.5,47.36"], "zero width"),
        (&["--grid-file", "bad-grid.csv"], "line 3"),
        (&["--grid-file", "dupe-grid.csv"], "appears twice"),
        (&["--grid-file", "missing.csv"], "missing.csv"),
        (&["--bbox", ok, "--size", "512"], "512"),
        (&["--bbox", ok, "--grid", "0x3"], "COLSxROWS"),
        (&["--bbox", ok, "--cell-size", "5"], "500m"),
        (&["--bbox", ok, "--since", "last year"], "not a date"),
        (
            &[
                "--bbox",
                ok,
                "--since",
                "2022-01-01",
                "--until",
                "2021-01-01",
            ],
            "after --until",
        ),
        (&["--bbox", ok, "--pano", "sometimes"], "sometimes"),
        (&["--bbox", ok, "--organization", "acme"], "numeric id"),
        (
            &["--bbox", ok, "--concurrency", "0"],
            "--concurrency must be at least 1",
        ),
        (&["--bbox", ok, "--output", "a-file/sub"], "not writable"),
        (
            &["--bbox", ok, "--api-url", "http://graph.example.com"],
            "only https",
        ),
        (
            &["--bbox", ok, "--grid-file", "bad-grid.csv"],
            "cannot be used with",
        ),
        (
            &[
                "--bbox",
                ok,
                "--token",
                "MLY|4242|00000000000000000000000000000000",
            ],
            "refused the access token",
        ),
        (
            &["--bbox", ok, "--token", "MLY|bogus"],
            "refused the access token",
        ),
    ];
    for (args, expect) in cases {
        refused(&env, args, expect);
    }
}

#[test]
fn a_missing_token_says_where_to_put_one() {
    let env = TestEnv::with_sim(SimConfig::default());
    let o = env
        .cmd()
        .env_remove("MAPILLARY_TOKEN")
        .args(["fetch", "--bbox", "8.5,47.35,8.51,47.36"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("MAPILLARY_TOKEN") && err.contains(".env") && err.contains("--token-file"),
        "{err}"
    );
    assert!(all_files(env.path()).is_empty());
}

#[test]
fn the_token_is_read_from_dotenv_and_token_files() {
    let env = TestEnv::with_sim(SimConfig::default());
    let bbox = "8.50,47.35,8.501,47.351";
    std::fs::write(
        env.path().join(".env"),
        format!("# secrets\nMAPILLARY_TOKEN=\"{}\"\n", mlysim::DEMO_TOKEN),
    )
    .unwrap();
    let o = env
        .cmd()
        .env_remove("MAPILLARY_TOKEN")
        .args(["fetch", "--bbox", bbox, "--dry-run"])
        .output()
        .unwrap();
    assert_success(&o);
    std::fs::remove_file(env.path().join(".env")).unwrap();
    std::fs::write(
        env.path().join("token.txt"),
        format!("{}\n", mlysim::DEMO_TOKEN),
    )
    .unwrap();
    let o = env
        .cmd()
        .env_remove("MAPILLARY_TOKEN")
        .args([
            "fetch",
            "--bbox",
            bbox,
            "--dry-run",
            "--token-file",
            "token.txt",
        ])
        .output()
        .unwrap();
    assert_success(&o);
}

#[test]
fn help_has_examples_and_exit_codes() {
    let env = TestEnv::new();
    let o = env.cmd().args(["fetch", "--help"]).output().unwrap();
    let out = stdout(&o);
    assert!(
        out.contains("Examples:") && out.contains("--bbox=-73.99"),
        "{out}"
    );
    let o = env.cmd().arg("--help").output().unwrap();
    assert!(stdout(&o).contains("130 interrupted"));
}
