//! The coverage map: inline SVG in Web Mercator with the grid cells shaded
//! by images per km² (clipped to the study area when there is one), the cells
//! whose listing was not verified hatched, the images as dots (binned into
//! hexagons above [`MAX_DOTS`]), the sequences as thin decimated lines, the
//! study-area outline, a scale bar, and the legend beside it.

use std::collections::BTreeMap;
use std::f64::consts::{FRAC_PI_4, PI};
use std::fmt::Write as _;

use geo::{InteriorPoint, MultiPolygon};

use super::{esc, is_verified, thousands};
use crate::layers::{LayerSet, cell_shape};
use crate::rows::CellCoverage;

/// Width of the map, SVG units (pixels at 100 %).
const WIDTH: f64 = 820.0;
/// Most height of the map.
const MAX_HEIGHT: f64 = 720.0;
/// Margin inside the map frame.
const PAD: f64 = 14.0;
/// Above this many positioned images, points are binned into hexagons.
pub(super) const MAX_DOTS: usize = 3_000;
/// Hexagon columns across the map when binning.
const HEX_COLUMNS: f64 = 46.0;
/// Most sequence vertices drawn in all.
pub(super) const MAX_SEQUENCE_VERTICES: usize = 12_000;
/// Shades of images per km², light to dark (ColorBrewer YlGnBu).
const RAMP: [&str; 6] = [
    "#ffffcc", "#c7e9b4", "#7fcdbb", "#41b6c4", "#2c7fb8", "#253494",
];
/// Fill of a cell without images or without a known area.
const EMPTY: &str = "#e4e4e4";
const DOT: &str = "#e6550d";
const HEX: &str = "#54278f";
/// Mean Earth radius, metres.
const EARTH_M: f64 = 6_371_008.8;
/// Highest latitude of Web Mercator.
const MAX_LAT: f64 = 85.051_128;

/// Web Mercator in radians: `(x, y)`, y up.
fn merc(lon: f64, lat: f64) -> (f64, f64) {
    let phi = lat.clamp(-MAX_LAT, MAX_LAT).to_radians();
    (lon.to_radians(), (FRAC_PI_4 + phi / 2.0).tan().ln())
}

/// From degrees to map pixels.
struct Proj {
    x0: f64,
    y1: f64,
    scale: f64,
    off: (f64, f64),
    height: f64,
    mid_lat: f64,
}

impl Proj {
    /// Fits `[min_lon, min_lat, max_lon, max_lat]` into the map.
    fn fit(e: [f64; 4]) -> Self {
        let (x0, y0) = merc(e[0], e[1]);
        let (x1, y1) = merc(e[2], e[3]);
        let (dx, dy) = ((x1 - x0).max(1e-9), (y1 - y0).max(1e-9));
        let scale = ((WIDTH - 2.0 * PAD) / dx).min((MAX_HEIGHT - 2.0 * PAD) / dy);
        let height = (dy * scale + 2.0 * PAD).max(120.0);
        let off = ((WIDTH - dx * scale) / 2.0, (height - dy * scale) / 2.0);
        Self {
            x0,
            y1,
            scale,
            off,
            height,
            mid_lat: (e[1] + e[3]) / 2.0,
        }
    }
    fn xy(&self, lon: f64, lat: f64) -> (f64, f64) {
        let (x, y) = merc(lon, lat);
        (
            self.off.0 + (x - self.x0) * self.scale,
            self.off.1 + (self.y1 - y) * self.scale,
        )
    }
    /// Ground metres per map pixel at the middle latitude.
    fn metres_per_px(&self) -> f64 {
        EARTH_M * self.mid_lat.to_radians().cos() / self.scale
    }
}

/// A number with one decimal, without a trailing `.0`.
fn n1(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r.fract() == 0.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

/// The smallest of 1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10 times a power of ten that is at least `x`.
pub(super) fn nice_ceil(x: f64) -> f64 {
    if !x.is_finite() || x <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(x.log10().floor());
    [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|v| *v >= x * (1.0 - 1e-12))
        .unwrap_or(10.0 * p)
}

/// The largest of 1, 2, 5 times a power of ten that is at most `x`.
fn nice_floor(x: f64) -> f64 {
    let p = 10f64.powf(x.log10().floor());
    [5.0, 2.0, 1.0]
        .iter()
        .map(|m| m * p)
        .find(|v| *v <= x)
        .unwrap_or(p)
}

/// The box to draw: every cell's box, else the positioned images'.
fn extent(set: &LayerSet) -> Option<[f64; 4]> {
    let boxes = set.cells.iter().filter_map(|c| c.bbox);
    let b = boxes.reduce(|a, b| a.union(&b)).map(<[f64; 4]>::from);
    let mut e = b.or_else(|| {
        crate::layers::extent(set.drawn().filter_map(|r| r.position())).map(Into::into)
    })?;
    for (lo, hi) in [(0, 2), (1, 3)] {
        if e[hi] - e[lo] < 1e-4 {
            let mid = (e[hi] + e[lo]) / 2.0;
            e[lo] = mid - 5e-5;
            e[hi] = mid + 5e-5;
        }
    }
    Some(e)
}

/// The map and its legend.
pub(super) fn render(set: &LayerSet, aoi: Option<&MultiPolygon<f64>>) -> String {
    let Some(e) = extent(set) else {
        return "<p class=\"note\">No map: no grid cell has a box and no image has a position.</p>"
            .into();
    };
    let p = Proj::fit(e);
    let step = class_step(&set.cells);
    let mut svg = String::with_capacity(32 * 1024);
    let _ = writeln!(
        svg,
        "<svg class=\"map\" role=\"img\" aria-label=\"coverage map\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\"><defs><pattern id=\"hatch\" width=\"11\" height=\"11\" \
         patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\"><rect width=\"1.6\" \
         height=\"11\" fill=\"#b2182b\" fill-opacity=\"0.6\"/></pattern></defs>",
        w = WIDTH,
        h = n1(p.height)
    );
    let drawn = cells_to_draw(&set.cells);
    svg.push_str(&cells_svg(&drawn, &p, step));
    let seq = sequences_svg(set, &p);
    svg.push_str(&seq.svg);
    let points = points_svg(set, &p);
    svg.push_str(&points.svg);
    if let Some(a) = aoi {
        let _ = writeln!(
            svg,
            "<path class=\"aoi\" d=\"{}\" fill=\"none\" stroke=\"#111\" stroke-width=\"2\" \
             stroke-dasharray=\"9 3 2 3\" pointer-events=\"none\"/>",
            path_d(a, &p)
        );
    }
    svg.push_str(&labels_svg(&drawn, &p));
    svg.push_str(&scale_bar(&p));
    svg.push_str("</svg>\n");
    let mut legend = legend(step, &points, &seq, aoi.is_some(), &set.cells);
    if drawn.len() < set.cells.len() {
        let _ = write!(
            legend,
            "<p class=\"note\">{} of {} grid cells drawn: the unverified ones, then those with \
             most images. Every cell is in coverage.csv and the GeoPackage.</p>",
            thousands(drawn.len() as u64),
            thousands(set.cells.len() as u64)
        );
    }
    format!("{svg}{legend}")
}

/// Most grid cells drawn on the map: each is a path with a title, and beyond
/// this many the page would grow by megabytes without showing more.
pub(super) const MAX_CELLS: usize = 10_000;

/// The cells to draw: all up to [`MAX_CELLS`], else the unverified ones
/// first (a gap must not vanish from the map), then those with most images,
/// in their given order.
fn cells_to_draw(cells: &[CellCoverage]) -> Vec<&CellCoverage> {
    if cells.len() <= MAX_CELLS {
        return cells.iter().collect();
    }
    let mut order: Vec<usize> = (0..cells.len()).collect();
    order.sort_by_key(|&i| {
        (
            is_verified(&cells[i]),
            std::cmp::Reverse(cells[i].downloaded),
        )
    });
    order.truncate(MAX_CELLS);
    order.sort_unstable();
    order.into_iter().map(|i| &cells[i]).collect()
}

/// Images per km² of one class of the shading (equal steps up to the densest cell).
fn class_step(cells: &[CellCoverage]) -> f64 {
    let max = cells
        .iter()
        .filter_map(|c| c.images_per_km2)
        .fold(0.0, f64::max);
    nice_ceil(max / RAMP.len() as f64)
}

fn shade(c: &CellCoverage, step: f64) -> &'static str {
    match c.images_per_km2 {
        Some(d) if d > 0.0 && c.downloaded > 0 => {
            let i = ((d / step).ceil() as usize).clamp(1, RAMP.len()) - 1;
            RAMP[i]
        }
        _ => EMPTY,
    }
}

/// The SVG path data of a (multi)polygon: every ring, closed.
fn path_d(shape: &MultiPolygon<f64>, p: &Proj) -> String {
    let mut d = String::new();
    for poly in &shape.0 {
        for ring in std::iter::once(poly.exterior()).chain(poly.interiors()) {
            for (i, c) in ring.0.iter().enumerate() {
                let (x, y) = p.xy(c.x, c.y);
                let _ = write!(d, "{}{} {}", if i == 0 { "M" } else { "L" }, n1(x), n1(y));
            }
            d.push('Z');
        }
    }
    d
}

/// The hover text of a cell.
fn cell_title(c: &CellCoverage) -> String {
    let o = |v: Option<f64>, unit: &str| v.map_or("unknown".into(), |v| format!("{v}{unit}"));
    let mut t = format!(
        "Grid {}\nlisting: {}\nimages: {} downloaded",
        c.grid,
        c.listing,
        thousands(c.downloaded)
    );
    if let Some(l) = c.listed {
        let _ = write!(t, ", {} listed", thousands(l));
    }
    if let Some(f) = c.failed.filter(|f| *f > 0) {
        let _ = write!(t, ", {} failed", thousands(f));
    }
    let _ = write!(
        t,
        "\nimages per km²: {}\narea: {}\npanorama share: {}\nnewest capture: {}\nmonths since newest: {}\nsequences: {}, creators: {}",
        o(c.images_per_km2, ""),
        o(c.area_km2, " km²"),
        c.pano_share
            .map_or("unknown".into(), |s| format!("{:.0} %", s * 100.0)),
        c.last_capture.as_deref().unwrap_or("none"),
        o(c.months_since_newest, ""),
        c.sequences,
        c.creators
    );
    t
}

fn cells_svg(cells: &[&CellCoverage], p: &Proj, step: f64) -> String {
    let mut out = String::from("<g class=\"cells\" stroke=\"#444\" stroke-width=\"1\">\n");
    let mut hatch = String::new();
    for c in cells {
        let Some(shape) = cell_shape(c) else { continue };
        let d = path_d(&shape, p);
        let _ = writeln!(
            out,
            "<path class=\"cell\" d=\"{d}\" fill=\"{}\" fill-rule=\"evenodd\"><title>{}</title></path>",
            shade(c, step),
            esc(&cell_title(c))
        );
        if !is_verified(c) {
            let _ = writeln!(
                hatch,
                "<path class=\"unverified\" d=\"{d}\" fill=\"url(#hatch)\" fill-rule=\"evenodd\" \
                 stroke=\"#b2182b\" stroke-width=\"2\" stroke-dasharray=\"6 3\"/>"
            );
        }
    }
    out.push_str("</g>\n<g pointer-events=\"none\">");
    out.push_str(&hatch);
    out.push_str("</g>\n");
    out
}

/// Grid name, images and density at each cell's inner point, when it fits.
fn labels_svg(cells: &[&CellCoverage], p: &Proj) -> String {
    let mut out = String::from(
        "<g class=\"labels\" text-anchor=\"middle\" paint-order=\"stroke\" stroke=\"#fff\" \
         stroke-width=\"3\" stroke-linejoin=\"round\" fill=\"#111\" pointer-events=\"none\">\n",
    );
    for c in cells {
        let (Some(shape), Some(b)) = (cell_shape(c), c.bbox) else {
            continue;
        };
        let (x0, y0) = p.xy(b.min_lon(), b.max_lat());
        let (x1, y1) = p.xy(b.max_lon(), b.min_lat());
        let (w, h) = (x1 - x0, y1 - y0);
        if w < 28.0 || h < 16.0 {
            continue;
        }
        let size = (w / 9.0).clamp(9.0, 16.0);
        // A plain box is labelled near its top (its middle often holds the
        // images); a clipped one at a point surely inside it.
        let (x, y) = match (&c.shape, shape.interior_point()) {
            (Some(_), Some(at)) => p.xy(at.x(), at.y()),
            (None, _) if h > 6.0 * size => ((x0 + x1) / 2.0, y0 + 2.2 * size),
            (None, _) => ((x0 + x1) / 2.0, (y0 + y1) / 2.0),
            (Some(_), None) => continue,
        };
        let mut lines = vec![format!(
            "<tspan font-weight=\"700\">Grid {}</tspan>",
            esc(&c.grid)
        )];
        if h > 3.5 * size && w > 6.0 * size {
            lines.push(format!("{} images", thousands(c.downloaded)));
            if let Some(d) = c.images_per_km2 {
                lines.push(format!("{} /km²", thousands(d.round() as u64)));
            }
            if !is_verified(c) {
                lines.push(format!(
                    "<tspan fill=\"#b2182b\">{}</tspan>",
                    short_listing(c.listing)
                ));
            }
        }
        let top = y - (lines.len() as f64 - 1.0) * size * 0.6;
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" font-size=\"{}\">",
            n1(x),
            n1(top),
            n1(size)
        );
        for (i, l) in lines.iter().enumerate() {
            let dy = if i == 0 {
                "0.35em".to_string()
            } else {
                "1.2em".to_string()
            };
            let _ = write!(out, "<tspan x=\"{}\" dy=\"{dy}\">{l}</tspan>", n1(x));
        }
        out.push_str("</text>\n");
    }
    out.push_str("</g>\n");
    out
}

/// A listing state short enough for a map label.
fn short_listing(label: &str) -> String {
    if label.starts_with("assumed complete") {
        "not verified".into()
    } else {
        esc(label)
    }
}

/// What the points layer drew, for the legend.
struct Drawn {
    svg: String,
    /// Positioned images.
    points: usize,
    /// Hexagons and the most images in one, when binned.
    hexes: Option<(usize, u32)>,
}

fn points_svg(set: &LayerSet, p: &Proj) -> Drawn {
    let points = set.drawn().count();
    if points > MAX_DOTS {
        return hexes_svg(set, p, points);
    }
    let mut d = String::with_capacity(points * 12);
    for r in set.drawn() {
        if let Some(pos) = r.position() {
            let (x, y) = p.xy(pos.lon, pos.lat);
            let _ = write!(d, "M{} {}h0", n1(x), n1(y));
        }
    }
    let svg = format!(
        "<path class=\"points\" d=\"{d}\" stroke=\"{DOT}\" stroke-width=\"2.6\" \
         stroke-linecap=\"round\" stroke-opacity=\"0.8\" pointer-events=\"none\"/>\n"
    );
    Drawn {
        svg,
        points,
        hexes: None,
    }
}

/// The centre of the pointy-top hexagon (radius `r`) holding `(x, y)`, as (column, row).
pub(super) fn hex_of(x: f64, y: f64, r: f64) -> (i32, i32) {
    let w = 3f64.sqrt() * r;
    let row = (y / (1.5 * r)).round() as i32;
    let mut best = (0, 0, f64::INFINITY);
    for rr in row - 1..=row + 1 {
        let offset = if rr.rem_euclid(2) == 1 { w / 2.0 } else { 0.0 };
        let col = ((x - offset) / w).round() as i32;
        let (cx, cy) = (f64::from(col) * w + offset, f64::from(rr) * 1.5 * r);
        let d2 = (x - cx).powi(2) + (y - cy).powi(2);
        if d2 < best.2 {
            best = (col, rr, d2);
        }
    }
    (best.0, best.1)
}

fn hexes_svg(set: &LayerSet, p: &Proj, points: usize) -> Drawn {
    let r = WIDTH / (HEX_COLUMNS * 3f64.sqrt());
    let w = 3f64.sqrt() * r;
    let mut bins: BTreeMap<(i32, i32), u32> = BTreeMap::new();
    for pos in set.drawn().filter_map(|r| r.position()) {
        let (x, y) = p.xy(pos.lon, pos.lat);
        *bins.entry(hex_of(x, y, r)).or_default() += 1;
    }
    let max = bins.values().copied().max().unwrap_or(1);
    let mut hex_d = String::new();
    for k in 0..6 {
        let a = PI / 180.0 * (60.0 * f64::from(k) - 30.0);
        let _ = write!(
            hex_d,
            "{}{} {}",
            if k == 0 { "M" } else { "L" },
            n1(r * a.cos()),
            n1(r * a.sin())
        );
    }
    let mut svg = format!(
        "<defs><path id=\"hx\" d=\"{hex_d}Z\"/></defs>\n<g class=\"hexes\" fill=\"{HEX}\" \
         stroke=\"#fff\" stroke-width=\"0.4\">\n"
    );
    for (&(col, row), &n) in &bins {
        let offset = if row.rem_euclid(2) == 1 { w / 2.0 } else { 0.0 };
        let (cx, cy) = (f64::from(col) * w + offset, f64::from(row) * 1.5 * r);
        let _ = writeln!(
            svg,
            "<use href=\"#hx\" x=\"{}\" y=\"{}\" fill-opacity=\"{:.2}\"><title>{} images</title></use>",
            n1(cx),
            n1(cy),
            hex_opacity(n, max),
            thousands(u64::from(n))
        );
    }
    svg.push_str("</g>\n");
    Drawn {
        svg,
        points,
        hexes: Some((bins.len(), max)),
    }
}

/// Opacity of a hexagon: logarithmic in its count, 0.2 to 0.9.
fn hex_opacity(n: u32, max: u32) -> f64 {
    if max <= 1 {
        return 0.6;
    }
    0.2 + 0.7 * f64::from(n).ln() / f64::from(max).ln()
}

/// What the sequence layer drew, for the legend.
struct Lines {
    svg: String,
    drawn: usize,
    total: usize,
    vertices: usize,
    all_vertices: usize,
}

fn sequences_svg(set: &LayerSet, p: &Proj) -> Lines {
    let all_vertices: usize = set.sequences.iter().map(|s| s.points.len()).sum();
    let stride = all_vertices.div_ceil(MAX_SEQUENCE_VERTICES).max(1);
    let mut d = String::new();
    let (mut drawn, mut vertices) = (0, 0);
    for s in &set.sequences {
        if vertices >= MAX_SEQUENCE_VERTICES {
            break;
        }
        let last = s.points.len().saturating_sub(1);
        let mut line: Vec<(String, String)> = Vec::new();
        for (i, pt) in s.points.iter().enumerate() {
            if i % stride != 0 && i != last {
                continue;
            }
            let (x, y) = p.xy(pt.lon, pt.lat);
            let v = (n1(x), n1(y));
            if line.last() != Some(&v) {
                line.push(v);
            }
        }
        if line.len() < 2 {
            continue;
        }
        for (i, (x, y)) in line.iter().enumerate() {
            let _ = write!(d, "{}{x} {y}", if i == 0 { "M" } else { " " });
            if i == 0 {
                d.push('L');
            }
        }
        drawn += 1;
        vertices += line.len();
    }
    let svg = format!(
        "<path class=\"sequences\" d=\"{d}\" fill=\"none\" stroke=\"#333\" stroke-width=\"0.8\" \
         stroke-opacity=\"0.55\" stroke-linejoin=\"round\" pointer-events=\"none\"/>\n"
    );
    Lines {
        svg,
        drawn,
        total: set.sequences.len(),
        vertices,
        all_vertices,
    }
}

/// A bar of a round length near 130 px, bottom left.
fn scale_bar(p: &Proj) -> String {
    let mpp = p.metres_per_px();
    if !mpp.is_finite() || mpp <= 0.0 {
        return String::new();
    }
    let m = nice_floor(130.0 * mpp);
    let px = m / mpp;
    let label = if m >= 1000.0 {
        format!("{} km", m / 1000.0)
    } else {
        format!("{m} m")
    };
    let (x, y) = (PAD + 6.0, p.height - PAD - 4.0);
    format!(
        "<g class=\"scale\" pointer-events=\"none\"><rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"26\" \
         fill=\"#fff\" fill-opacity=\"0.8\"/><path d=\"M{} {}v6h{}v-6\" fill=\"none\" stroke=\"#111\" \
         stroke-width=\"1.5\"/><text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">{}</text></g>\n",
        n1(x - 6.0),
        n1(y - 20.0),
        n1(px + 12.0),
        n1(x),
        n1(y - 6.0),
        n1(px),
        n1(x + px / 2.0),
        n1(y - 9.0),
        esc(&label)
    )
}

fn swatch(fill: &str, extra: &str) -> String {
    format!(
        "<svg width=\"22\" height=\"14\"><rect x=\"1\" y=\"1\" width=\"20\" height=\"12\" \
         fill=\"{fill}\" stroke=\"#444\" stroke-width=\"0.8\" {extra}/></svg>"
    )
}

fn legend(step: f64, pts: &Drawn, seq: &Lines, aoi: bool, cells: &[CellCoverage]) -> String {
    let mut out = String::from("<div class=\"legend\"><h3>Images per km² (grid cell)</h3>\n");
    for (i, c) in RAMP.iter().enumerate() {
        let (lo, hi) = (step * i as f64, step * (i + 1) as f64);
        let text = if i + 1 == RAMP.len() {
            format!("over {}", n1(lo))
        } else {
            format!("{} – {}", n1(lo), n1(hi))
        };
        let _ = writeln!(out, "<div>{} {text}</div>", swatch(c, ""));
    }
    let _ = writeln!(out, "<div>{} no images</div>", swatch(EMPTY, ""));
    let unverified = cells.iter().filter(|c| !is_verified(c)).count();
    let _ = writeln!(
        out,
        "<div>{} listing not verified ({unverified} cells): assumed complete, truncated, failed, pending or unknown</div>",
        swatch("url(#hatch)", "stroke-dasharray=\"4 2\"")
    );
    out.push_str("<h3>Images</h3>\n");
    match pts.hexes {
        None => {
            let _ = writeln!(
                out,
                "<div><svg width=\"22\" height=\"14\"><circle cx=\"11\" cy=\"7\" r=\"2.2\" fill=\"{DOT}\"/></svg> \
                 one image ({} drawn)</div>",
                thousands(pts.points as u64)
            );
        }
        Some((bins, max)) => {
            let _ = writeln!(
                out,
                "<div>{} {} images in {} hexagons, 1 to {} per hexagon (darker: more)</div>",
                swatch(HEX, "fill-opacity=\"0.6\""),
                thousands(pts.points as u64),
                thousands(bins as u64),
                thousands(u64::from(max))
            );
        }
    }
    let simplified = if seq.vertices < seq.all_vertices {
        format!(
            ", simplified to {} of {} vertices",
            thousands(seq.vertices as u64),
            thousands(seq.all_vertices as u64)
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "<div><svg width=\"22\" height=\"14\"><path d=\"M1 11L8 4L14 9L21 3\" fill=\"none\" stroke=\"#333\"/></svg> \
         sequence ({} of {} drawn{simplified})</div>",
        thousands(seq.drawn as u64),
        thousands(seq.total as u64)
    );
    if aoi {
        out.push_str(
            "<div><svg width=\"22\" height=\"14\"><path d=\"M1 7H21\" stroke=\"#111\" stroke-width=\"2\" \
             stroke-dasharray=\"9 3 2 3\"/></svg> study area (AOI)</div>\n",
        );
    }
    out.push_str(
        "<p class=\"note\">Web Mercator. Hover a grid cell for its figures. Imagery &copy; Mapillary \
         contributors, CC BY-SA 4.0.</p></div>\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_numbers() {
        assert_eq!(nice_ceil(0.0), 1.0);
        assert_eq!(nice_ceil(3.0), 3.0);
        assert_eq!(nice_ceil(57.7), 60.0);
        assert_eq!(nice_ceil(21.0), 25.0);
        assert_eq!(nice_ceil(100.0), 100.0);
        assert_eq!(nice_floor(370.0), 200.0);
        assert_eq!(nice_floor(0.7), 0.5);
    }

    #[test]
    fn hexagons_hold_their_centres_and_neighbours_differ() {
        let r = 10.0;
        let w = 3f64.sqrt() * r;
        assert_eq!(hex_of(0.0, 0.0, r), (0, 0));
        assert_eq!(hex_of(w, 0.0, r), (1, 0));
        assert_eq!(hex_of(w / 2.0, 15.0, r), (0, 1));
        assert_eq!(hex_of(w * 0.45, 0.0, r), (0, 0));
        assert_eq!(hex_of(w * 0.55, 0.0, r), (1, 0));
    }

    #[test]
    fn projection_keeps_the_aspect_and_the_frame() {
        let p = Proj::fit([8.50, 47.35, 8.56, 47.39]);
        let (x0, y0) = p.xy(8.50, 47.39);
        let (x1, y1) = p.xy(8.56, 47.35);
        assert!(x0 >= PAD - 1e-9 && x1 <= WIDTH - PAD + 1e-9);
        assert!(y0 >= 0.0 && y1 <= p.height);
        // 0.06° of longitude at 47.37° is about 4.5 km; 0.04° of latitude about 4.45 km.
        let ratio = (x1 - x0) / (y1 - y0);
        assert!((ratio - 1.01).abs() < 0.03, "{ratio}");
    }
}
