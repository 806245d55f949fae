//! The charts, as inline SVG: captures per year per grid (a table of shaded
//! counts), the panorama share and the months since the newest capture per
//! grid (bars), and where the positions came from (one stacked bar). At most
//! [`MAX_GRIDS`] grids and [`MAX_YEARS`] years are drawn; the rest are summed
//! or named in a note, so the size does not grow with the folder.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use chrono::{DateTime, Datelike};

use super::{esc, thousands};
use crate::layers::{LayerSet, Sym};
use crate::model::PositionSource;

/// Most grids drawn per chart (the others are summed or noted).
pub(super) const MAX_GRIDS: usize = 24;
/// Most years drawn (older ones are summed into one column).
pub(super) const MAX_YEARS: usize = 16;
const CHART_W: f64 = 540.0;
const ROW_H: f64 = 19.0;
const LABEL_W: f64 = 96.0;

/// The four charts in a grid of two columns.
pub(super) fn render(set: &LayerSet) -> String {
    let mut out = String::from("<h2>Charts</h2>\n<div class=\"charts\">\n");
    out.push_str(&years_chart(set));
    out.push_str(&bars_chart(
        "Panorama share per grid",
        set.cells
            .iter()
            .map(|c| (c.grid.as_str(), c.pano_share.map(|s| s * 100.0))),
        100.0,
        "#8c6bb1",
        |v| format!("{v:.0} %"),
    ));
    let months_max = set
        .cells
        .iter()
        .filter_map(|c| c.months_since_newest)
        .fold(1.0, f64::max);
    out.push_str(&bars_chart(
        "Months since the newest capture per grid",
        set.cells
            .iter()
            .map(|c| (c.grid.as_str(), c.months_since_newest)),
        months_max,
        "#d95f0e",
        |v| format!("{v:.1}"),
    ));
    out.push_str(&source_chart(set));
    out.push_str("</div>\n");
    out
}

fn label(s: &str) -> String {
    let short: String = s.chars().take(14).collect();
    let more = if short.len() < s.len() { "…" } else { "" };
    format!("{}{more}", esc(&short))
}

/// Captures per year per grid: counts by grid (row) and year (column).
struct YearTable {
    years: Vec<i32>,
    /// Per grid in cell order, then one row of every other grid.
    rows: Vec<(String, BTreeMap<i32, u64>)>,
    older: Option<i32>,
}

fn year_table(set: &LayerSet) -> YearTable {
    let index: HashMap<&str, usize> = set
        .cells
        .iter()
        .enumerate()
        .map(|(i, c)| (c.grid.as_str(), i.min(MAX_GRIDS)))
        .collect();
    let mut cache: HashMap<Sym, Option<usize>> = HashMap::new();
    let mut counts: Vec<BTreeMap<i32, u64>> = vec![BTreeMap::new(); MAX_GRIDS + 1];
    for r in &set.rows {
        let Some(year) = r
            .captured_ms()
            .and_then(DateTime::from_timestamp_millis)
            .map(|t| t.year())
        else {
            continue;
        };
        let slot = *cache
            .entry(r.grid)
            .or_insert_with(|| set.s(r.grid).and_then(|g| index.get(g).copied()));
        if let Some(i) = slot.and_then(|i| counts.get_mut(i)) {
            *i.entry(year).or_default() += 1;
        }
    }
    let first = counts.iter().filter_map(|m| m.keys().next()).min();
    let last = counts.iter().filter_map(|m| m.keys().next_back()).max();
    let all: Vec<i32> = match (first, last) {
        (Some(&a), Some(&b)) => (a..=b).collect(),
        _ => Vec::new(),
    };
    let (years, older) = if all.len() > MAX_YEARS {
        let cut = all[all.len() - MAX_YEARS + 1];
        for m in &mut counts {
            let old: u64 = m.range(..cut).map(|(_, n)| n).sum();
            m.retain(|y, _| *y >= cut);
            if old > 0 {
                m.insert(cut - 1, old);
            }
        }
        let mut y: Vec<i32> = all[all.len() - MAX_YEARS + 1..].to_vec();
        y.insert(0, cut - 1);
        (y, Some(cut - 1))
    } else {
        (all, None)
    };
    let mut rows: Vec<(String, BTreeMap<i32, u64>)> = set
        .cells
        .iter()
        .take(MAX_GRIDS)
        .zip(counts.iter())
        .map(|(c, m)| (c.grid.clone(), m.clone()))
        .collect();
    if set.cells.len() > MAX_GRIDS {
        let rest = set.cells.len() - MAX_GRIDS;
        rows.push((format!("{rest} other grids"), counts[MAX_GRIDS].clone()));
    }
    YearTable { years, rows, older }
}

fn years_chart(set: &LayerSet) -> String {
    let t = year_table(set);
    let mut out = String::from("<figure><figcaption>Captures per year per grid</figcaption>\n");
    if t.years.is_empty() {
        out.push_str("<p class=\"note\">No image has a capture time.</p></figure>\n");
        return out;
    }
    let cols = t.years.len() as f64;
    let cell_w = ((CHART_W - LABEL_W) / cols).min(56.0);
    let h = ROW_H * (t.rows.len() as f64 + 1.0) + 4.0;
    let max = t
        .rows
        .iter()
        .flat_map(|(_, m)| m.values().copied())
        .max()
        .unwrap_or(1)
        .max(1);
    let _ = writeln!(
        out,
        "<svg class=\"chart\" width=\"{CHART_W}\" height=\"{h}\" viewBox=\"0 0 {CHART_W} {h}\" font-size=\"11\">"
    );
    for (j, y) in t.years.iter().enumerate() {
        let name = if Some(*y) == t.older {
            format!("≤{y}")
        } else {
            y.to_string()
        };
        let x = LABEL_W + cell_w * (j as f64 + 0.5);
        let _ = write!(
            out,
            "<text x=\"{x:.1}\" y=\"13\" text-anchor=\"middle\">{name}</text>"
        );
    }
    for (i, (grid, m)) in t.rows.iter().enumerate() {
        let y = ROW_H * (i as f64 + 1.0);
        let _ = write!(
            out,
            "\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LABEL_W - 6.0,
            y + 13.0,
            label(grid)
        );
        for (j, yr) in t.years.iter().enumerate() {
            let n = m.get(yr).copied().unwrap_or(0);
            let x = LABEL_W + cell_w * j as f64;
            let a = if n == 0 {
                0.0
            } else {
                0.12 + 0.88 * (n as f64).ln_1p() / (max as f64).ln_1p()
            };
            let ink = if a > 0.55 { "#fff" } else { "#222" };
            let _ = write!(
                out,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#2c7fb8\" \
                 fill-opacity=\"{a:.2}\" stroke=\"#ddd\"><title>{}, {yr}: {} images</title></rect>",
                cell_w - 1.0,
                ROW_H - 1.0,
                esc(grid),
                thousands(n)
            );
            if n > 0 && cell_w >= 26.0 {
                let _ = write!(
                    out,
                    "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"{ink}\">{}</text>",
                    x + cell_w / 2.0,
                    y + 13.0,
                    compact(n)
                );
            }
        }
    }
    out.push_str("\n</svg></figure>\n");
    out
}

/// A count in at most about four characters: `950`, `12k`, `3.4M`.
fn compact(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..10_000 => format!("{:.1}k", n as f64 / 1e3),
        10_000..1_000_000 => format!("{}k", n / 1_000),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

/// Horizontal bars, one per grid (the first [`MAX_GRIDS`]).
fn bars_chart<'a>(
    title: &str,
    items: impl Iterator<Item = (&'a str, Option<f64>)>,
    max: f64,
    color: &str,
    fmt: impl Fn(f64) -> String,
) -> String {
    let items: Vec<(&str, Option<f64>)> = items.collect();
    let shown = items.len().min(MAX_GRIDS);
    let h = ROW_H * shown as f64 + 6.0;
    let bar_w = CHART_W - LABEL_W - 70.0;
    let mut out = format!(
        "<figure><figcaption>{}</figcaption>\n<svg class=\"chart\" width=\"{CHART_W}\" height=\"{h}\" \
         viewBox=\"0 0 {CHART_W} {h}\" font-size=\"11\">",
        esc(title)
    );
    for (i, (grid, v)) in items.iter().take(shown).enumerate() {
        let y = ROW_H * i as f64 + 2.0;
        let _ = write!(
            out,
            "\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LABEL_W - 6.0,
            y + 12.0,
            label(grid)
        );
        match v {
            Some(v) => {
                let w = (v / max).clamp(0.0, 1.0) * bar_w;
                let _ = write!(
                    out,
                    "<rect x=\"{LABEL_W}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"{color}\">\
                     <title>{}: {}</title></rect><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                    ROW_H - 5.0,
                    esc(grid),
                    esc(&fmt(*v)),
                    LABEL_W + w + 4.0,
                    y + 12.0,
                    esc(&fmt(*v))
                );
            }
            None => {
                let _ = write!(
                    out,
                    "<text x=\"{LABEL_W}\" y=\"{:.1}\" fill=\"#888\">unknown</text>",
                    y + 12.0
                );
            }
        }
    }
    out.push_str("\n</svg>");
    if items.len() > shown {
        let _ = write!(
            out,
            "<p class=\"note\">The first {shown} of {} grids; see the table.</p>",
            items.len()
        );
    }
    out.push_str("</figure>\n");
    out
}

/// Where the drawn positions came from: one stacked bar, plus the images without one.
fn source_chart(set: &LayerSet) -> String {
    let (mut computed, mut original, mut none) = (0u64, 0u64, 0u64);
    for r in &set.rows {
        match (r.position().is_some(), r.source) {
            (false, _) => none += 1,
            (true, PositionSource::Computed) => computed += 1,
            (true, PositionSource::Original) => original += 1,
        }
    }
    let total = (computed + original + none).max(1) as f64;
    let bar_w = CHART_W - 20.0;
    let mut out = String::from(
        "<figure><figcaption>Source of the positions</figcaption>\n<svg class=\"chart\" \
         width=\"540\" height=\"94\" viewBox=\"0 0 540 94\" font-size=\"11\">",
    );
    let mut x = 10.0;
    let parts = [
        ("computed (SfM)", computed, "#1b9e77"),
        ("original (camera GPS)", original, "#7570b3"),
        ("without position", none, "#bbb"),
    ];
    for (i, (name, n, color)) in parts.iter().enumerate() {
        let w = *n as f64 / total * bar_w;
        if w > 0.0 {
            let _ = write!(
                out,
                "<rect x=\"{x:.1}\" y=\"6\" width=\"{w:.1}\" height=\"22\" fill=\"{color}\"><title>{name}: {}</title></rect>",
                thousands(*n)
            );
        }
        x += w;
        let ly = 38.0 + 18.0 * i as f64;
        let _ = write!(
            out,
            "<rect x=\"10\" y=\"{ly}\" width=\"12\" height=\"12\" fill=\"{color}\"/>\
             <text x=\"28\" y=\"{:.1}\">{name}: {} ({:.0} %)</text>",
            ly + 10.0,
            thousands(*n),
            *n as f64 / total * 100.0
        );
    }
    out.push_str("\n</svg></figure>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_counts() {
        assert_eq!(compact(950), "950");
        assert_eq!(compact(1_234), "1.2k");
        assert_eq!(compact(56_000), "56k");
        assert_eq!(compact(3_400_000), "3.4M");
    }

    #[test]
    fn labels_are_escaped_and_cut() {
        assert_eq!(label("<b>"), "&lt;b&gt;");
        assert_eq!(label("abcdefghijklmnopq"), "abcdefghijklmn…");
    }
}
