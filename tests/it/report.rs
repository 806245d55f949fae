//! `report.html`: its structure (one shape per grid cell, every text escaped,
//! nothing fetched from outside the file, no token), its size at a million
//! images (built in memory and given to the pure renderer), and a real
//! browser: headless Chromium renders the page written by `layers` after a
//! fetch from the simulator, with a non-blank map and no console message.

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::time::Instant;

use chrono::{DateTime, Utc};
use mlyexport::coverage;
use mlyexport::layers::html::{Report, render};
use mlyexport::layers::{FileLayout, GridInfo, ImageRow, Interner, LayerSet, sequence_lines};
use mlyexport::model::{Bbox, ImageId, LonLat, PositionSource};
use mlyexport::record::ImageRecord;
use mlyexport::runrecord::{Counts, Outcome, RunEntry};
use serde_json::json;

const HOSTILE: &str = "<script>alert(1)</script>";

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// `cols` x `rows` grid cells over a box in Berlin; cell 2 is named
/// [`HOSTILE`]; every third cell is not verified.
fn grids(cols: usize, rows: usize) -> Vec<GridInfo> {
    let (x0, y0, w, h) = (13.30, 52.45, 0.20 / cols as f64, 0.10 / rows as f64);
    let labels = ["verified", "assumed complete (not verified)", "truncated"];
    (0..cols * rows)
        .map(|i| {
            let (c, r) = ((i % cols) as f64, (i / cols) as f64);
            let top = y0 + 0.10 - r * h;
            GridInfo {
                grid: if i == 1 {
                    HOSTILE.into()
                } else {
                    (i + 1).to_string()
                },
                bbox: Bbox::new(x0 + c * w, top - h, x0 + (c + 1.0) * w, top).ok(),
                shape: None,
                listing: labels[i % 3],
                listed: Some(10),
                failed: Some(0),
            }
        })
        .collect()
}

/// `n` images spread over the grids, in sequences of 50, by three creators
/// (one named [`HOSTILE`]), captured over six years.
fn layer_set(n: usize, cols: usize, rows: usize) -> LayerSet {
    let grids = grids(cols, rows);
    let base = ImageRecord::from_value(&json!({
        "id": "1", "captured_at": 1_600_000_000_000i64, "is_pano": false,
        "geometry": {"type": "Point", "coordinates": [13.4, 52.5]},
    }))
    .unwrap();
    let mut strings = Interner::default();
    let mut out = Vec::with_capacity(n);
    let cells = grids.len();
    for i in 0..n {
        let g = &grids[i % cells];
        let b = g.bbox.unwrap();
        let k = (i / cells) as f64;
        // A walk inside the cell (a golden-ratio sequence: spread, deterministic).
        let fx = (k * 0.618_033_988_75).fract() * 0.98 + 0.01;
        let fy = (k * 0.754_877_666_2).fract() * 0.98 + 0.01;
        let mut r = base.clone();
        r.id = ImageId::new(i as u64 + 1).unwrap();
        r.original_position =
            LonLat::new(b.min_lon() + fx * b.width(), b.min_lat() + fy * b.height());
        r.computed_position = r.original_position.filter(|_| i % 4 != 0);
        r.captured_at = DateTime::from_timestamp_millis(
            1_500_000_000_000 + (i as i64 % 6) * 31_557_600_000 + i as i64,
        );
        r.is_pano = Some(i % 5 == 0);
        r.sequence = Some(format!("seq{}", i / 50));
        r.creator_username = Some(["alice", HOSTILE, "bob"][i % 3].into());
        let row = ImageRow::from_record(&r, &g.grid, true, PositionSource::Computed, &mut strings)
            .unwrap();
        out.push(row);
    }
    let as_of = t("2026-11-30T00:00:00Z");
    let run = RunEntry {
        tool_version: format!("0.1.0{HOSTILE}"),
        command_line: ["mlyexport", "fetch", "--token", "MLY|4242|secret", HOSTILE]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        api_url: "https://graph.mapillary.com".into(),
        started_at: t("2026-11-29T10:00:00Z"),
        finished_at: Some(t("2026-11-29T10:05:00Z")),
        outcome: Outcome::Complete,
        dry_run: false,
        counts: Counts::default(),
    };
    LayerSet {
        cells: coverage::compute(&grids, &out, &strings, as_of),
        sequences: sequence_lines(&out, &strings),
        rows: out,
        strings,
        layout: FileLayout::Grid,
        runs: vec![run],
    }
}

fn report(set: &LayerSet) -> String {
    render(&Report {
        set,
        aoi: None,
        as_of: t("2026-11-30T00:00:00Z"),
        position: "computed",
        version: "0.1.0",
    })
}

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

#[test]
fn report_draws_one_shape_per_cell_escapes_every_text_and_stays_offline() {
    let set = layer_set(1_200, 4, 3);
    let html = report(&set);
    assert_eq!(html.matches("class=\"cell\"").count(), 12);
    let unverified = set.cells.iter().filter(|c| c.listing != "verified").count();
    assert_eq!(unverified, 8);
    assert_eq!(html.matches("class=\"unverified\"").count(), unverified);
    // Each cell's hover text names it and its figures.
    assert_eq!(html.matches("<title>Grid ").count(), 12);
    assert!(
        html.contains("images per km²:"),
        "no density in the hover text"
    );
    // Dots, not hexagons, below the binning threshold.
    assert!(html.contains("class=\"points\"") && !html.contains("id=\"hx\""));
    // Hostile texts are shown, escaped, and never become markup.
    assert!(!html.to_lowercase().contains("<script"), "unescaped markup");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    // The token never appears, even when a run record kept it.
    assert!(!html.contains("secret") && !html.contains("MLY|"));
    assert!(html.contains("--token ****"));
    assert_offline(&html);
    for needed in [
        "CC BY-SA 4.0",
        "Mapillary contributors",
        "Captures per year per grid",
        "Panorama share per grid",
        "Months since the newest capture per grid",
        "Source of the positions",
        "Coverage per grid cell",
        "Provenance",
        "class=\"scale\"",
        "not verified",
    ] {
        assert!(html.contains(needed), "`{needed}` is missing");
    }
}

#[test]
#[allow(clippy::print_stderr)]
fn report_stays_under_two_megabytes_at_a_million_images() {
    let start = Instant::now();
    let set = layer_set(1_000_000, 10, 10);
    let built = start.elapsed();
    let start = Instant::now();
    let html = report(&set);
    let rendered = start.elapsed();
    eprintln!(
        "1,000,000 images, 100 cells, {} sequences: built in {built:.1?}, rendered in {rendered:.1?}, {} bytes",
        set.sequences.len(),
        html.len()
    );
    assert!(html.len() < 2_000_000, "{} bytes", html.len());
    assert_eq!(html.matches("class=\"cell\"").count(), 100);
    assert!(html.contains("id=\"hx\""), "points are not binned");
    assert!(!html.contains("class=\"points\""));
    assert_offline(&html);
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

#[test]
fn report_draws_cells_clipped_to_the_aoi_and_its_outline() {
    let mut set = layer_set(300, 2, 1);
    // A triangle over the west half of the area: cell 1 is clipped to it.
    let aoi = geo::MultiPolygon(vec![geo::Polygon::new(
        vec![
            (13.30, 52.45),
            (13.40, 52.45),
            (13.30, 52.55),
            (13.30, 52.45),
        ]
        .into(),
        vec![],
    )]);
    set.cells[0].shape = Some(aoi.clone());
    let html = render(&Report {
        set: &set,
        aoi: Some(&aoi),
        as_of: t("2026-11-30T00:00:00Z"),
        position: "original",
        version: "0.1.0",
    });
    assert_eq!(html.matches("class=\"cell\"").count(), 2);
    assert_eq!(html.matches("class=\"aoi\"").count(), 1);
    assert!(html.contains("study area (AOI)"));
    // The clipped cell is drawn as its triangle: three corners and the closing one.
    let cell = html.split("class=\"cell\" d=\"").nth(1).unwrap();
    let d = &cell[..cell.find('"').unwrap()];
    assert_eq!(d.matches(['M', 'L']).count(), 4, "{d}");
    assert_offline(&html);
}
