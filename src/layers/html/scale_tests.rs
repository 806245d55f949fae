//! The report's structure at scale, built in memory and given to the pure
//! renderer: one shape per grid cell, every text escaped, nothing fetched
//! from outside the file, no token, and its size at a million images.
//! (Moved from `tests/it/report.rs` when `layers::html` became crate-private.)
use std::time::Instant;

use super::{Report, render};
use crate::coverage;
use crate::layers::{FileLayout, GridInfo, ImageRow, Interner, LayerSet, sequence_lines};
use crate::model::{Bbox, ImageId, LonLat, PositionSource};
use crate::record::ImageRecord;
use crate::runrecord::{Counts, Outcome, RunEntry};
use chrono::{DateTime, Utc};
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
        shard: None,
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

#[test]
#[allow(clippy::print_stderr)]
fn a_grid_of_a_quarter_million_cells_draws_the_unverified_and_the_fullest() {
    let mut set = layer_set(20_000, 500, 500);
    for (i, c) in set.cells.iter_mut().enumerate() {
        c.listing = if i % 1000 == 7 {
            "truncated"
        } else {
            "verified"
        };
    }
    let start = Instant::now();
    let html = report(&set);
    eprintln!(
        "250,000 cells: rendered in {:.1?}, {} bytes",
        start.elapsed(),
        html.len()
    );
    let unverified = set.cells.iter().filter(|c| c.listing != "verified").count();
    assert_eq!(unverified, 250);
    assert_eq!(
        html.matches("class=\"cell\"").count(),
        super::map::MAX_CELLS
    );
    assert_eq!(html.matches("class=\"unverified\"").count(), unverified);
    assert!(html.contains("10\u{2009}000 of 250\u{2009}000 grid cells drawn"));
    assert!(html.len() < 20_000_000, "{} bytes", html.len());
    assert_offline(&html);
}
