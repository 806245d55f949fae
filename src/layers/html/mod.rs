//! `report.html`: one self-contained page (inline CSS and SVG, no script, no
//! URL out of the file) with the coverage map, charts, the coverage table and
//! the run's provenance. Pure: the layer set in, a string out. Every text
//! from the API or a file is HTML-escaped; the size is bounded whatever the
//! number of images or grid cells (points are binned, sequence vertices
//! decimated, cells beyond a cap and long lists cut with a note).

mod charts;
mod map;

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::layers::{LayerSet, iso_ms};
use crate::rows::CellCoverage;
use crate::runrecord::RunEntry;

/// Most coverage-table rows written (the rest are in `coverage.csv`).
pub(crate) const MAX_TABLE_ROWS: usize = 500;
/// Most runs listed in the provenance (the newest ones).
pub(crate) const MAX_RUNS: usize = 20;

/// What the report shows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Report<'a> {
    pub set: &'a LayerSet,
    /// The study-area polygon (`fetch --aoi`), drawn as an outline.
    pub aoi: Option<&'a geo::MultiPolygon<f64>>,
    /// Reference time of "months since the newest capture".
    pub as_of: DateTime<Utc>,
    /// `computed` or `original`: the position asked for.
    pub position: &'a str,
    /// Version of the tool writing the report.
    pub version: &'a str,
}

/// The whole page.
pub(crate) fn render(r: &Report<'_>) -> String {
    let mut out = String::with_capacity(64 * 1024);
    out.push_str(HEAD);
    header(r, &mut out);
    out.push_str("<section class=\"mapbox\">");
    out.push_str(&map::render(r.set, r.aoi));
    out.push_str("</section>\n");
    out.push_str(&charts::render(r.set));
    table(&r.set.cells, &mut out);
    provenance(r, &mut out);
    out.push_str(FOOT);
    out
}

const HEAD: &str = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>Mapillary coverage report</title><style>\n\
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;color:#222;margin:0;background:#fff}\n\
main{max-width:1160px;margin:0 auto;padding:14px 20px}\n\
h1{font-size:22px;margin:4px 0}h2{font-size:16px;margin:18px 0 6px}\n\
.sub{color:#555;margin:0 0 8px}.warn{color:#b2182b;font-weight:600}\n\
.mapbox{display:flex;gap:14px;align-items:flex-start;flex-wrap:wrap}\n\
.map{border:1px solid #bbb;background:#f7f7f4;max-width:100%;height:auto}\n\
.legend{font-size:12px;min-width:200px;max-width:230px}.legend svg{vertical-align:middle}\n\
.legend h3{font-size:13px;margin:8px 0 3px}.legend div{margin:2px 0}\n\
.charts{display:grid;grid-template-columns:1fr 1fr;gap:8px 24px}\n\
.charts figure{margin:0}.charts figcaption{font-weight:600;margin:6px 0 2px}\n\
.note{color:#666;font-size:12px}\n\
table{border-collapse:collapse;font-size:12px;margin:4px 0}\n\
th,td{border:1px solid #ccc;padding:2px 6px;text-align:right;vertical-align:top}\n\
th{background:#eee}td.t{text-align:left}td.d{white-space:nowrap}code{font-size:12px;word-break:break-all}\n\
svg text{font-family:inherit}\n\
</style></head><body><main>\n";

const FOOT: &str = "<footer><p class=\"lic\">Imagery and metadata: <b>Mapillary contributors</b>, \
licensed under <b>CC BY-SA 4.0</b> (Creative Commons Attribution-ShareAlike 4.0 International). \
Give this attribution, and share derived data under the same licence.</p></footer>\n\
</main></body></html>\n";

/// Escapes `&`, `<`, `>`, `"` and `'` for text and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// Thousands separated by a thin space: `1 234 567`.
pub(crate) fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push('\u{2009}');
        }
        out.push(c);
    }
    out
}

/// Whether a grid's listing was verified against the vector tiles.
pub(crate) fn is_verified(c: &CellCoverage) -> bool {
    c.listing == "verified"
}

fn header(r: &Report<'_>, out: &mut String) {
    let set = r.set;
    let drawn = set.drawn().count();
    let cells = &set.cells;
    let verified = cells.iter().filter(|c| is_verified(c)).count();
    let _ = write!(
        out,
        "<h1>Mapillary coverage report</h1>\n<p class=\"sub\">{} images ({} with a position, drawn), \
         {} sequences, {} grid cells; positions: {}; as of {}. \
         Imagery &copy; Mapillary contributors, CC BY-SA 4.0.</p>\n",
        thousands(set.rows.len() as u64),
        thousands(drawn as u64),
        thousands(set.sequences.len() as u64),
        thousands(cells.len() as u64),
        esc(r.position),
        esc(&iso_ms(r.as_of)),
    );
    let n = cells.len();
    if verified == n {
        let _ = writeln!(
            out,
            "<p>Listing: every grid cell's listing was <b>verified</b> against the vector tiles.</p>"
        );
    } else {
        let _ = writeln!(
            out,
            "<p class=\"warn\">Listing: {} of {} grid cells not verified (hatched on the map): \
             images may be missing there.</p>",
            n - verified,
            n
        );
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// The coverage table, as in `coverage.md` (without the box corners).
fn table(cells: &[CellCoverage], out: &mut String) {
    const COLS: [&str; 17] = [
        "grid",
        "listed",
        "downloaded",
        "failed",
        "listing",
        "without position",
        "panoramas",
        "pano share",
        "first capture",
        "last capture",
        "months since newest",
        "sequences",
        "creators",
        "area km²",
        "images per km²",
        "median spacing m",
        "listing complete",
    ];
    out.push_str("<h2>Coverage per grid cell</h2>\n<table><thead><tr>");
    for c in COLS {
        let _ = write!(out, "<th>{c}</th>");
    }
    out.push_str("</tr></thead><tbody>\n");
    for c in cells.iter().take(MAX_TABLE_ROWS) {
        let day = |s: &Option<String>| s.as_deref().map(|s| s.get(..10).unwrap_or(s).to_string());
        let vals = [
            opt(c.listed),
            c.downloaded.to_string(),
            opt(c.failed),
            c.listing.to_string(),
            c.without_position.to_string(),
            c.panoramas.to_string(),
            opt(c.pano_share),
            opt(day(&c.first_capture)),
            opt(day(&c.last_capture)),
            opt(c.months_since_newest),
            c.sequences.to_string(),
            c.creators.to_string(),
            opt(c.area_km2),
            opt(c.images_per_km2),
            opt(c.median_spacing_m),
            opt(c.listing_complete),
        ];
        let _ = write!(out, "<tr><td class=\"t\">{}</td>", esc(&c.grid));
        for (i, v) in vals.iter().enumerate() {
            let class = match i {
                3 => " class=\"t\"",
                7 | 8 => " class=\"d\"",
                _ => "",
            };
            let _ = write!(out, "<td{class}>{}</td>", esc(v));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n");
    if cells.len() > MAX_TABLE_ROWS {
        let _ = writeln!(
            out,
            "<p class=\"note\">The first {MAX_TABLE_ROWS} of {} grid cells; every one is in \
             <code>coverage.csv</code>.</p>",
            cells.len()
        );
    }
}

fn run_row(i: usize, run: &RunEntry, out: &mut String) {
    let outcome = serde_json::to_value(run.outcome)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "<tr><td>{}</td><td class=\"t\">{}</td><td class=\"t\">{}</td><td class=\"t\">{}</td>\
         <td class=\"t\">{}{}</td><td class=\"t\"><code>{}</code></td></tr>",
        i + 1,
        esc(&run.tool_version),
        esc(&iso_ms(run.started_at)),
        esc(&run.finished_at.map(iso_ms).unwrap_or_default()),
        esc(&outcome),
        if run.dry_run { " (dry run)" } else { "" },
        esc(&run.shown_command()),
    );
}

fn provenance(r: &Report<'_>, out: &mut String) {
    let runs = &r.set.runs;
    let _ = writeln!(
        out,
        "<h2>Provenance</h2>\n<p>Report written by mlyexport {} (<code>layers</code>, positions: {}). \
         The fetch runs into this folder, from its run record (token hidden):</p>",
        esc(r.version),
        esc(r.position),
    );
    if runs.is_empty() {
        out.push_str("<p class=\"note\">No run record: the folder was not written by <code>mlyexport fetch</code>, or its record could not be read.</p>\n");
        return;
    }
    out.push_str(
        "<table><thead><tr><th>run</th><th>tool version</th><th>started</th><th>finished</th>\
         <th>outcome</th><th>command line</th></tr></thead><tbody>\n",
    );
    let skip = runs.len().saturating_sub(MAX_RUNS);
    for (i, run) in runs.iter().enumerate().skip(skip) {
        run_row(i, run, out);
    }
    out.push_str("</tbody></table>\n");
    if skip > 0 {
        let _ = writeln!(
            out,
            "<p class=\"note\">The newest {MAX_RUNS} of {} runs; every one is in \
             <code>mlyexport-run.json</code>.</p>",
            runs.len()
        );
    }
    let mut labels: Vec<(&str, usize)> = Vec::new();
    for c in &r.set.cells {
        match labels.iter_mut().find(|(l, _)| *l == c.listing) {
            Some((_, n)) => *n += 1,
            None => labels.push((c.listing, 1)),
        }
    }
    let text: Vec<String> = labels
        .iter()
        .map(|(l, n)| format!("{n} {}", esc(l)))
        .collect();
    let _ = writeln!(out, "<p>Listing per grid cell: {}.</p>", text.join(", "));
}

#[cfg(test)]
mod scale_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(esc("a\u{1}b"), "a\u{fffd}b");
    }

    #[test]
    fn separates_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1\u{2009}234\u{2009}567");
    }
}
