//! Per-grid coverage figures from the layer rows and the run record, and their
//! CSV, JSON and Markdown renderings. Pure fold, bytes out: no file, GDAL or
//! terminal access.

use geo::ChamberlainDuquetteArea;
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::model::LonLat;
use crate::rows::csv::{push_header, push_line};
use crate::rows::schema::GRID_CELLS;
use crate::rows::{
    CellCoverage, FileLayout, GridInfo, ImageRow, Interner, Lookup, Sym, iso_ms, round_to,
};

/// Version of `coverage.json` (`schemas/coverage.schema.json`).
pub(crate) const COVERAGE_SCHEMA_VERSION: u32 = 1;

/// Errors of the coverage renderings.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CoverageError {
    #[error("cannot serialise the coverage of grid `{grid}` to JSON: {source}")]
    Json {
        grid: String,
        source: serde_json::Error,
    },
}

/// Mean days per month, for "months since the newest capture".
const DAYS_PER_MONTH: f64 = 365.2425 / 12.0;

#[derive(Default)]
struct Acc {
    downloaded: u64,
    without_position: u64,
    panoramas: u64,
    pano_known: u64,
    first: Option<i64>,
    last: Option<i64>,
    sequences: HashSet<Sym>,
    creators: HashSet<Sym>,
    /// Per sequence: (capture ms, id, position) of its positioned, timed images.
    tracks: HashMap<Sym, Vec<(i64, u64, LonLat)>>,
}

/// Folds the rows into one [`CellCoverage`] per grid, in the order of
/// `grids`; rows of a grid not in `grids` are ignored (the caller lists every
/// grid). `as_of` is the reference time for `months_since_newest`.
pub(crate) fn compute(
    grids: &[GridInfo],
    rows: &[ImageRow],
    strings: &Interner,
    as_of: DateTime<Utc>,
) -> Vec<CellCoverage> {
    let mut accs: HashMap<&str, Acc> = grids
        .iter()
        .map(|g| (g.grid.as_str(), Acc::default()))
        .collect();
    for r in rows {
        let Some(acc) = strings.get(r.grid).and_then(|g| accs.get_mut(g)) else {
            continue;
        };
        acc.downloaded += 1;
        if r.position().is_none() {
            acc.without_position += 1;
        }
        if let Some(p) = r.is_pano {
            acc.pano_known += 1;
            acc.panoramas += u64::from(p);
        }
        if let Some(t) = r.captured_ms() {
            acc.first = Some(acc.first.map_or(t, |f| f.min(t)));
            acc.last = Some(acc.last.map_or(t, |l| l.max(t)));
        }
        if !r.sequence.is_none() {
            acc.sequences.insert(r.sequence);
            if let (Some(t), Some(p)) = (r.captured_ms(), r.position()) {
                acc.tracks
                    .entry(r.sequence)
                    .or_default()
                    .push((t, r.id.get(), p));
            }
        }
        if !r.creator.is_none() {
            acc.creators.insert(r.creator);
        } else if !r.creator_id.is_none() {
            acc.creators.insert(r.creator_id);
        }
    }
    grids
        .iter()
        .map(|g| {
            let acc = accs.remove(g.grid.as_str()).unwrap_or_default();
            finish(g, acc, as_of)
        })
        .collect()
}

fn finish(g: &GridInfo, mut acc: Acc, as_of: DateTime<Utc>) -> CellCoverage {
    let mut gaps: Vec<f64> = Vec::new();
    for track in acc.tracks.values_mut() {
        track.sort_by_key(|&(t, id, _)| (t, id));
        gaps.extend(track.windows(2).map(|w| w[0].2.distance_m(w[1].2)));
    }
    let area = match &g.shape {
        Some(shape) => Some(shape.chamberlain_duquette_unsigned_area() / 1e6),
        None => g.bbox.map(|b| b.area_km2()),
    }
    .filter(|a| *a > 0.0);
    let to_time = |ms: Option<i64>| ms.and_then(DateTime::from_timestamp_millis);
    let last = to_time(acc.last);
    CellCoverage {
        grid: g.grid.clone(),
        bbox: g.bbox,
        shape: g.shape.clone(),
        listed: g.listed,
        downloaded: acc.downloaded,
        failed: g.failed,
        listing: g.listing,
        listing_complete: (g.listing != "unknown").then_some(
            matches!(g.listing, "verified" | "complete")
                || g.listing.starts_with("assumed complete"),
        ),
        without_position: acc.without_position,
        panoramas: acc.panoramas,
        pano_share: (acc.pano_known > 0)
            .then(|| round_to(acc.panoramas as f64 / acc.pano_known as f64, 4)),
        first_capture: to_time(acc.first).map(iso_ms),
        last_capture: last.map(iso_ms),
        months_since_newest: last.map(|l| {
            let days = (as_of - l).num_milliseconds() as f64 / 86_400_000.0;
            round_to(days / DAYS_PER_MONTH, 2)
        }),
        sequences: acc.sequences.len() as u64,
        creators: acc.creators.len() as u64,
        area_km2: area.map(|a| round_to(a, 6)),
        images_per_km2: area.map(|a| round_to(acc.downloaded as f64 / a, 3)),
        median_spacing_m: median(&mut gaps).map(|m| round_to(m, 2)),
    }
}

/// The median (mean of the two middle values for an even count).
pub(crate) fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// `coverage.csv`: a header line, then one line per grid (RFC 4180 quoting;
/// text neutralised for spreadsheets, numbers kept, see
/// [`crate::rows::csv::text_cell`]); the columns are [`GRID_CELLS`]'.
pub(crate) fn to_csv(cells: &[CellCoverage]) -> Vec<u8> {
    let strings = Interner::default();
    let lookup = no_strings(&strings);
    let mut out = String::new();
    push_header(&mut out, GRID_CELLS.csv_columns());
    for (n, c) in cells.iter().enumerate() {
        push_line(&mut out, GRID_CELLS.csv_columns(), c, n, &lookup);
    }
    out.into_bytes()
}

/// Cells have no interned strings and no JPEG paths.
fn no_strings(strings: &Interner) -> Lookup<'_> {
    Lookup {
        strings,
        layout: FileLayout::Grid,
    }
}

/// `coverage.md`: a Markdown table with one row per grid (the columns of
/// [`GRID_CELLS`], without the box).
pub(crate) fn to_markdown(cells: &[CellCoverage], as_of: DateTime<Utc>) -> Vec<u8> {
    let mut out = format!(
        "# Coverage per grid cell\n\nAs of {}. Empty cells mean unknown. `listing` is `verified` when the listing was checked against the vector tiles, `assumed complete (not verified)` when it was not; `listing_complete` is false when images may be missing.\n\n",
        iso_ms(as_of)
    );
    let cols = GRID_CELLS.columns;
    let names: Vec<&str> = cols.iter().map(|c| c.name).collect();
    out.push_str(&format!("| {} |\n", names.join(" | ")));
    out.push_str(&format!(
        "|{}\n",
        cols.iter().map(|_| "---|").collect::<String>()
    ));
    let strings = Interner::default();
    let lookup = no_strings(&strings);
    for (n, c) in cells.iter().enumerate() {
        let vals: Vec<String> = cols
            .iter()
            .map(|col| {
                let v = (col.get)(c, n);
                md_cell(&lookup.text(&v).unwrap_or_default())
            })
            .collect();
        out.push_str(&format!("| {} |\n", vals.join(" | ")));
    }
    out.into_bytes()
}

/// Untrusted text (a grid name from a run record) as one Markdown table
/// cell: a line break or other control character cannot end the row, a `|`
/// cannot end the cell, and a `<` cannot open raw HTML.
fn md_cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '|' => out.push_str("\\|"),
            '<' => out.push_str("&lt;"),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

#[derive(Serialize)]
struct CoverageDoc<'a> {
    schema_version: u32,
    as_of: String,
    position: &'a str,
    grids: &'a [CellCoverage],
}

/// `coverage.json`: `{schema_version, as_of, position, grids: [...]}`, pretty-printed.
pub(crate) fn to_json(
    cells: &[CellCoverage],
    as_of: DateTime<Utc>,
    position: &str,
) -> Result<Vec<u8>, CoverageError> {
    let doc = CoverageDoc {
        schema_version: COVERAGE_SCHEMA_VERSION,
        as_of: iso_ms(as_of),
        position,
        grids: cells,
    };
    let mut v = serde_json::to_vec_pretty(&doc).map_err(|source| CoverageError::Json {
        grid: cells.first().map(|c| c.grid.clone()).unwrap_or_default(),
        source,
    })?;
    v.push(b'\n');
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Bbox;
    use crate::model::PositionSource;
    use crate::rows::tests::{T0, rec};

    #[test]
    fn a_markdown_cell_cannot_break_its_row() {
        assert_eq!(
            md_cell("a|b\n| x | <img>\u{1b}"),
            "a\\|b\u{fffd}\\| x \\| &lt;img>\u{fffd}"
        );
    }

    fn grid(name: &str, bbox: Option<Bbox>) -> GridInfo {
        GridInfo {
            grid: name.into(),
            bbox,
            shape: None,
            listing: "complete",
            listed: Some(5),
            failed: Some(1),
        }
    }

    #[test]
    fn folds_per_grid() {
        let mut s = Interner::default();
        let mut rows = Vec::new();
        // Three images 0.001° of latitude apart (about 111 m) in sequence a,
        // one in sequence b by another creator, one without position.
        for (i, lat) in [0.0, 0.001, 0.003].iter().enumerate() {
            let r = rec(i as u64 + 1, "a", 1000 * i as i64, 0.0, *lat);
            rows.push(
                ImageRow::from_record(&r, "g1", true, PositionSource::Original, &mut s).unwrap(),
            );
        }
        let mut r = rec(10, "b", 86_400_000 * 61, 0.5, 0.5);
        r.creator_username = Some("bob".into());
        rows.push(ImageRow::from_record(&r, "g1", true, PositionSource::Original, &mut s).unwrap());
        let mut r = rec(11, "c", 0, 0.0, 0.0);
        r.original_position = None;
        r.computed_position = None;
        rows.push(ImageRow::from_record(&r, "g1", true, PositionSource::Original, &mut s).unwrap());
        let other = rec(12, "z", 0, 5.0, 5.0);
        rows.push(
            ImageRow::from_record(&other, "g9", true, PositionSource::Original, &mut s).unwrap(),
        );

        let b = Bbox::new(0.0, 0.0, 1.0, 1.0).unwrap();
        let grids = [grid("g1", Some(b)), grid("empty", None)];
        let as_of = DateTime::from_timestamp_millis(T0 + 86_400_000 * 91).unwrap();
        let c = compute(&grids, &rows, &s, as_of);
        assert_eq!(c.len(), 2);
        let g = &c[0];
        assert_eq!(g.downloaded, 5);
        assert_eq!(g.without_position, 1);
        // ids 2 and 10 are panoramas (even ids), of 5 known.
        assert_eq!(g.panoramas, 2);
        assert_eq!(g.pano_share, Some(0.4));
        assert_eq!(g.sequences, 3);
        assert_eq!(g.creators, 2);
        assert_eq!(g.first_capture.as_deref(), Some("2020-09-13T12:26:40.000Z"));
        assert_eq!(
            g.months_since_newest,
            Some(round_to(30.0 / DAYS_PER_MONTH, 2))
        );
        // Gaps 111.2 m and 222.4 m: median 166.8.
        assert!(
            (g.median_spacing_m.unwrap() - 166.8).abs() < 0.2,
            "{:?}",
            g.median_spacing_m
        );
        assert!((g.area_km2.unwrap() - 12_364.0).abs() < 10.0);
        assert_eq!(g.listing_complete, Some(true));
        let e = &c[1];
        assert_eq!(
            (e.downloaded, e.area_km2, e.median_spacing_m),
            (0, None, None)
        );
    }

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn renders_csv_md_json() {
        let s = Interner::default();
        let grids = [grid("g,1", Bbox::new(0.0, 0.0, 1.0, 1.0).ok())];
        let as_of = DateTime::from_timestamp_millis(0).unwrap();
        let c = compute(&grids, &[], &s, as_of);
        let csv = String::from_utf8(to_csv(&c)).unwrap();
        assert!(csv.starts_with("grid,min_lon,"));
        assert!(
            csv.contains("\"g,1\",0,0,1,1,5,0,1,complete,true,0,0,,,"),
            "{csv}"
        );
        let md = String::from_utf8(to_markdown(&c, as_of)).unwrap();
        assert!(md.contains("| g,1 |"));
        let json: serde_json::Value =
            serde_json::from_slice(&to_json(&c, as_of, "computed").unwrap()).unwrap();
        assert_eq!(
            json["grids"][0]["bbox"],
            serde_json::json!([0.0, 0.0, 1.0, 1.0])
        );
        assert_eq!(json["as_of"], "1970-01-01T00:00:00.000Z");
    }
}
