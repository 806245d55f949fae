//! `report.html` in a real browser: headless Chromium renders the page
//! written by `layers` after a fetch from the simulator, with a non-blank
//! map and no console message. (The renderer's structure and size tests sit
//! beside it: `src/layers/html/scale_tests.rs`.)

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

/// Every place a page could name another resource points inside the file.
fn assert_offline(html: &str) {
    let lower = html.to_lowercase();
    for bad in [
        "http:", "https:", "file:", "//", "@import", "<link", "<img", "<iframe", "<object",
        "<script",
    ] {
        assert!(!lower.contains(bad), "`{bad}` found in the page");
    }
    for attr in ["href=\"", "src=\"", "url("] {
        for (i, _) in lower.match_indices(attr) {
            let rest = &lower[i + attr.len()..];
            assert!(
                rest.starts_with('#'),
                "{attr}{} points outside",
                &rest[..20.min(rest.len())]
            );
        }
    }
}

/// Whether `chromium` runs. When it does not, the test fails (the setup
/// script installs it), unless `MLYEXPORT_ALLOW_SKIP=1` lets it be skipped.
#[allow(clippy::print_stderr)]
fn chromium_available() -> bool {
    let why = match StdCommand::new("chromium").arg("--version").output() {
        Ok(o) if o.status.success() => return true,
        Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
        Err(e) => e.to_string(),
    };
    let note = format!("chromium does not run ({why}); bash scripts/setup.sh installs it");
    assert!(
        std::env::var_os("MLYEXPORT_ALLOW_SKIP").is_some_and(|v| v == "1"),
        "{note} (or set MLYEXPORT_ALLOW_SKIP=1 to skip this test)"
    );
    eprintln!("SKIPPED: {note}");
    false
}

/// Screenshots `page` with headless Chromium into `png`; returns its stderr.
pub fn screenshot(page: &Path, png: &Path, profile: &Path, size: &str) -> String {
    let url = format!("file://{}", page.display());
    let o = StdCommand::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("--window-size={size}"))
        .arg(url)
        .output()
        .expect("chromium runs");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "chromium failed: {err}");
    err
}

/// Share of pixels of the screenshot in the box `[x0, y0, x1, y1)` that are clearly not white
/// (some channel below 235: shaded cells, dots, lines).
fn ink_share(png: &Path, [x0, y0, x1, y1]: [u32; 4]) -> f64 {
    let img = image::open(png).expect("a screenshot").to_rgb8();
    let (mut ink, mut all) = (0u64, 0u64);
    for y in y0..y1.min(img.height()) {
        for x in x0..x1.min(img.width()) {
            all += 1;
            ink += u64::from(img.get_pixel(x, y).0.iter().any(|c| *c < 235));
        }
    }
    ink as f64 / all.max(1) as f64
}

#[test]
fn report_renders_in_headless_chromium() {
    use crate::common::{TestEnv, bbox_arg, downloaded_ids};
    if !chromium_available() {
        return;
    }
    let env = TestEnv::with_sim(mlysim::SimConfig::default());
    let w = env.sim().world().spec().bbox;
    let b = [w[0], w[1], (w[0] + w[2]) / 2.0, (w[1] + w[3]) / 2.0];
    let o = env.fetch(&["--bbox", &bbox_arg(b), "--grid", "3x1", "--size", "256"]);
    assert!(matches!(o.status.code(), Some(0 | 1)), "{o:?}");
    assert!(!downloaded_ids(&env.out()).is_empty());
    // The default formats include the report.
    let o = env.cmd().args(["layers", "--no-exif"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let page: PathBuf = env.out().join("layers").join("report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(html.matches("class=\"cell\"").count(), 3);
    assert_offline(&html);

    // JPEG: the `image` crate is built with its JPEG decoder only.
    let png = env.path().join("report.jpeg");
    let err = screenshot(
        &page,
        &png,
        &env.path().join("chromium-profile"),
        "1200,1600",
    );
    let console: Vec<&str> = err
        .lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
        .collect();
    assert!(console.is_empty(), "console messages: {console:#?}");
    // The map sits at the top left, under the title (about 140 to 860 px down).
    let share = ink_share(&png, [40, 160, 820, 820]);
    assert!(
        share > 0.3,
        "the map area is blank ({share:.3} of it inked)"
    );
    // The page below the map (charts) is drawn too.
    let charts = ink_share(&png, [20, 900, 1180, 1200]);
    assert!(charts > 0.02, "no charts ({charts:.3} inked)");
}
