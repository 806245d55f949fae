//! Search boxes (pure): which sides of a box face the outside of the area,
//! how far a box is widened there, and how a box is cut into boxes that each
//! hold at most a target number of known points ("packed full" strips, not
//! halves). No I/O; used by the verified listing and the search fallback.
//!
//! Why widen only outer sides: whichever position the API's bbox filter uses
//! (the GPS `geometry` or the computed one), an image is returned by the box
//! that holds *that* position. Boxes tile the area without gaps, and every
//! answer is offered to the grid that owns the image's documented position,
//! so an image whose two positions lie in neighbouring boxes is found by one
//! of them. Only where the area ends can the filtered position fall outside
//! every box; there each box is widened by [`OUTER_MARGIN_M`].

use crate::model::{Bbox, LonLat};
use crate::plan::{MAX_SEARCH_AREA_DEG2, MIN_SEARCH_SIDE_DEG};

/// How far (metres) a search box is widened on the sides where the area
/// ends: twice the largest offset between an image's computed and GPS
/// positions seen in real data (30–50 m), so that an API filtering on either
/// position returns every image of the area.
pub(crate) const OUTER_MARGIN_M: f64 = 100.0;

/// Metres per degree of latitude (and of longitude at the equator).
const M_PER_DEG: f64 = 111_320.0;

/// Which sides of a box face the outside of the searched area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Outer {
    pub west: bool,
    pub south: bool,
    pub east: bool,
    pub north: bool,
}

impl Outer {
    /// Every side faces out (a lone box).
    #[cfg(test)]
    pub(crate) const ALL: Outer = Outer {
        west: true,
        south: true,
        east: true,
        north: true,
    };
}

/// A margin in degrees: `lon` is wider than `lat` away from the equator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Margin {
    pub lon: f64,
    pub lat: f64,
}

impl Margin {
    /// `metres` at latitude `lat` (degrees); capped near the poles.
    pub(crate) fn metres(metres: f64, lat: f64) -> Margin {
        let cos = lat.to_radians().cos().max(0.01);
        Margin {
            lon: metres / (M_PER_DEG * cos),
            lat: metres / M_PER_DEG,
        }
    }

    #[cfg(test)]
    pub(crate) const ZERO: Margin = Margin { lon: 0.0, lat: 0.0 };
}

/// One box to search: the part of the area it covers (`cell`) and which of
/// its sides face outside (those are widened when asked).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SearchBox {
    pub cell: Bbox,
    pub outer: Outer,
}

/// An axis to cut along.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Axis {
    Lon,
    Lat,
}

impl SearchBox {
    pub(crate) fn new(cell: Bbox, outer: Outer) -> Self {
        SearchBox { cell, outer }
    }

    /// The box sent to the API: the cell widened by `m` on its outer sides,
    /// clamped to the globe.
    pub(crate) fn asked(&self, m: Margin) -> Bbox {
        let o = self.outer;
        let grow = |on: bool, d: f64| if on { d } else { 0.0 };
        let c = &self.cell;
        Bbox::new(
            (c.min_lon() - grow(o.west, m.lon)).max(-180.0),
            (c.min_lat() - grow(o.south, m.lat)).max(-90.0),
            (c.max_lon() + grow(o.east, m.lon)).min(180.0),
            (c.max_lat() + grow(o.north, m.lat)).min(90.0),
        )
        .unwrap_or(*c)
    }

    /// Whether the box can still be cut in two along both axes.
    pub(crate) fn can_split(&self) -> bool {
        self.cell.width() >= 2.0 * MIN_SEARCH_SIDE_DEG
            && self.cell.height() >= 2.0 * MIN_SEARCH_SIDE_DEG
    }

    /// The four quarters; each keeps the outer sides it shares with this box.
    pub(crate) fn quarters(&self) -> [SearchBox; 4] {
        let mid_lon = (self.cell.min_lon() + self.cell.max_lon()) / 2.0;
        let (w, e) = self.cut(Axis::Lon, mid_lon);
        let split_lat =
            |b: SearchBox| b.cut(Axis::Lat, (b.cell.min_lat() + b.cell.max_lat()) / 2.0);
        let ((ws, wn), (es, en)) = (split_lat(w), split_lat(e));
        [wn, en, ws, es]
    }

    /// The two parts of the box on either side of `at` (degrees) along `axis`.
    fn cut(&self, axis: Axis, at: f64) -> (SearchBox, SearchBox) {
        let c = &self.cell;
        let o = self.outer;
        match axis {
            Axis::Lon => (
                SearchBox::new(
                    bbox(c.min_lon(), c.min_lat(), at, c.max_lat()),
                    Outer { east: false, ..o },
                ),
                SearchBox::new(
                    bbox(at, c.min_lat(), c.max_lon(), c.max_lat()),
                    Outer { west: false, ..o },
                ),
            ),
            Axis::Lat => (
                SearchBox::new(
                    bbox(c.min_lon(), c.min_lat(), c.max_lon(), at),
                    Outer { north: false, ..o },
                ),
                SearchBox::new(
                    bbox(c.min_lon(), at, c.max_lon(), c.max_lat()),
                    Outer { south: false, ..o },
                ),
            ),
        }
    }
}

fn bbox(a: f64, b: f64, c: f64, d: f64) -> Bbox {
    Bbox::new(a, b, c, d).expect("a part of a valid box is valid")
}

/// Which sides of `cell` face outside the area, where `covered` says whether
/// a position is inside the area: a side faces out when any of nine points
/// just beyond it (half the margin out) is not covered.
pub(crate) fn outer_sides(cell: &Bbox, m: Margin, covered: impl Fn(LonLat) -> bool) -> Outer {
    let beyond = |along: &dyn Fn(f64) -> (f64, f64)| {
        (0..=8).any(|i| {
            let (lon, lat) = along(f64::from(i) / 8.0);
            LonLat::new(lon, lat).is_none_or(|p| !covered(p))
        })
    };
    let (w, s, e, n) = (
        cell.min_lon(),
        cell.min_lat(),
        cell.max_lon(),
        cell.max_lat(),
    );
    let lon_at = |t: f64| w + (e - w) * t;
    let lat_at = |t: f64| s + (n - s) * t;
    Outer {
        west: beyond(&|t| (w - m.lon / 2.0, lat_at(t))),
        east: beyond(&|t| (e + m.lon / 2.0, lat_at(t))),
        south: beyond(&|t| (lon_at(t), s - m.lat / 2.0)),
        north: beyond(&|t| (lon_at(t), n + m.lat / 2.0)),
    }
}

/// The strips a box is widened by on its outer sides (corners included in
/// the north and south strips), merged with the strips of other boxes on
/// the same side and line, and cut under the API's area limit.
pub(crate) fn margin_strips(boxes: impl Iterator<Item = (SearchBox, Margin)>) -> Vec<Bbox> {
    let mut merged: Vec<(u8, f64, Bbox)> = Vec::new();
    for (b, m) in boxes {
        let a = b.asked(m);
        let c = &b.cell;
        let o = b.outer;
        let sides = [
            (
                o.north,
                0u8,
                c.max_lat(),
                (a.min_lon(), c.max_lat(), a.max_lon(), a.max_lat()),
            ),
            (
                o.south,
                1,
                c.min_lat(),
                (a.min_lon(), a.min_lat(), a.max_lon(), c.min_lat()),
            ),
            (
                o.west,
                2,
                c.min_lon(),
                (a.min_lon(), c.min_lat(), c.min_lon(), c.max_lat()),
            ),
            (
                o.east,
                3,
                c.max_lon(),
                (c.max_lon(), c.min_lat(), a.max_lon(), c.max_lat()),
            ),
        ];
        for (on, side, line, (w, s, e, n)) in sides {
            let Ok(strip) = Bbox::new(w, s, e, n) else {
                continue;
            };
            if !on {
                continue;
            }
            match merged.iter_mut().find(|(k, l, _)| *k == side && *l == line) {
                Some((_, _, u)) => *u = u.union(&strip),
                None => merged.push((side, line, strip)),
            }
        }
    }
    let mut out = Vec::new();
    for (_, _, strip) in merged {
        halve_below_area_limit(strip, &mut out);
    }
    out
}

/// `strip`, halved across its longer side until each part is below the
/// search area limit, into `out`.
fn halve_below_area_limit(strip: Bbox, out: &mut Vec<Bbox>) {
    let mut todo = vec![strip];
    while let Some(b) = todo.pop() {
        if b.area_deg2() < MAX_SEARCH_AREA_DEG2 {
            out.push(b);
        } else if b.width() >= b.height() {
            let mid = (b.min_lon() + b.max_lon()) / 2.0;
            todo.push(bbox(b.min_lon(), b.min_lat(), mid, b.max_lat()));
            todo.push(bbox(mid, b.min_lat(), b.max_lon(), b.max_lat()));
        } else {
            let mid = (b.min_lat() + b.max_lat()) / 2.0;
            todo.push(bbox(b.min_lon(), b.min_lat(), b.max_lon(), mid));
            todo.push(bbox(b.min_lon(), mid, b.max_lon(), b.max_lat()));
        }
    }
}

/// Splits a box in quarters until each, as asked, is under the API's area
/// limit (outer sides widened by `m`).
pub(crate) fn under_area_limit(b: SearchBox, m: Margin) -> Vec<SearchBox> {
    let mut out = Vec::new();
    let mut todo = vec![b];
    while let Some(b) = todo.pop() {
        if b.asked(m).area_deg2() >= MAX_SEARCH_AREA_DEG2 && b.can_split() {
            todo.extend(b.quarters());
        } else {
            out.push(b);
        }
    }
    out
}

/// Cuts `b` into boxes whose asked box (outer sides widened by `m`) holds at
/// most `target` of `points`, filling each box up to `target` rather than
/// halving: strips along the longer side, each as wide as the points allow,
/// then the same inside any strip still over the target. A box is left over
/// the target only where the points cannot be told apart (many at one
/// coordinate) or the box is at the smallest size.
pub(crate) fn pack(b: SearchBox, points: &[LonLat], target: usize, m: Margin) -> Vec<SearchBox> {
    let asked = b.asked(m);
    let mine: Vec<LonLat> = points
        .iter()
        .copied()
        .filter(|p| asked.contains_closed(*p))
        .collect();
    let mut out = Vec::new();
    pack_into(b, mine, target.max(1), m, &mut out, 0);
    out
}

fn pack_into(
    b: SearchBox,
    mut pts: Vec<LonLat>,
    target: usize,
    m: Margin,
    out: &mut Vec<SearchBox>,
    depth: u32,
) {
    if pts.len() <= target || !b.can_split() || depth > 8 {
        out.push(b);
        return;
    }
    let c = b.cell;
    let mid_lat = (c.min_lat() + c.max_lat()) / 2.0;
    let axis = if c.width() * mid_lat.to_radians().cos() >= c.height() {
        Axis::Lon
    } else {
        Axis::Lat
    };
    let coord = |p: &LonLat| match axis {
        Axis::Lon => p.lon,
        Axis::Lat => p.lat,
    };
    pts.sort_by(|a, b| coord(a).total_cmp(&coord(b)));
    let coords: Vec<f64> = pts.iter().map(coord).collect();
    let strips = strips(b, axis, &coords, target, m);
    let single = strips.len() == 1;
    for s in strips {
        let asked = s.asked(m);
        let inside: Vec<LonLat> = pts
            .iter()
            .copied()
            .filter(|p| asked.contains_closed(*p))
            .collect();
        if single {
            // The points could not be cut along this axis: try the other
            // way once by quarters, which always make progress.
            for q in s.quarters() {
                let qa = q.asked(m);
                let qi = inside
                    .iter()
                    .copied()
                    .filter(|p| qa.contains_closed(*p))
                    .collect();
                pack_into(q, qi, target, m, out, depth + 1);
            }
            return;
        }
        pack_into(s, inside, target, m, out, depth + 1);
    }
}

/// Cuts `b` along `axis` into strips whose asked range holds at most
/// `target` of the sorted `coords` where the coordinates allow.
fn strips(b: SearchBox, axis: Axis, coords: &[f64], target: usize, m: Margin) -> Vec<SearchBox> {
    let (lo, hi, m_lo, m_hi, step) = match axis {
        Axis::Lon => (
            b.cell.min_lon(),
            b.cell.max_lon(),
            if b.outer.west { m.lon } else { 0.0 },
            if b.outer.east { m.lon } else { 0.0 },
            MIN_SEARCH_SIDE_DEG,
        ),
        Axis::Lat => (
            b.cell.min_lat(),
            b.cell.max_lat(),
            if b.outer.south { m.lat } else { 0.0 },
            if b.outer.north { m.lat } else { 0.0 },
            MIN_SEARCH_SIDE_DEG,
        ),
    };
    let mut out = Vec::new();
    let mut rest = b;
    let mut start = lo;
    loop {
        let from = if start == lo { start - m_lo } else { start };
        let first = coords.partition_point(|&x| x < from);
        let remaining = coords.len() - coords.partition_point(|&x| x <= hi + m_hi);
        let in_rest = coords.len() - first - remaining;
        if in_rest <= target {
            out.push(rest);
            return out;
        }
        // The strip ends between the target-th and the next point from
        // `from`, moved back past points on the same coordinate (tile
        // positions are quantised), so that no point lies on the cut.
        let mut j = first + target;
        while j > first + 1 && coords[j - 1] == coords[j] {
            j -= 1;
        }
        let mut end = (coords[j - 1] + coords[j]) / 2.0;
        if end - start < step {
            end = start + step;
        }
        if end >= hi - step {
            out.push(rest);
            return out;
        }
        let (strip, after) = rest.cut(axis, end);
        out.push(strip);
        rest = after;
        start = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bb(a: f64, b: f64, c: f64, d: f64) -> Bbox {
        Bbox::new(a, b, c, d).unwrap()
    }

    fn count(b: &Bbox, pts: &[LonLat]) -> usize {
        pts.iter().filter(|p| b.contains_closed(**p)).count()
    }

    /// A deterministic cloud: a dense Gaussian-ish spot plus a sparse background.
    fn cloud(n: usize, seed: u64) -> Vec<LonLat> {
        let mut s = seed;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64) / ((1u64 << 53) as f64)
        };
        (0..n)
            .map(|i| {
                let (u, v) = (next(), next());
                if i % 10 == 0 {
                    LonLat::new(8.50 + 0.04 * u, 47.35 + 0.03 * v).unwrap()
                } else {
                    let (a, r) = (u * std::f64::consts::TAU, (v.max(1e-9)).sqrt() * 0.004);
                    LonLat::new(8.52 + r * a.cos(), 47.365 + r * a.sin()).unwrap()
                }
            })
            .collect()
    }

    fn covers_without_gaps(parts: &[SearchBox], whole: &Bbox) {
        let area: f64 = parts.iter().map(|p| p.cell.area_deg2()).sum();
        assert!(
            (area - whole.area_deg2()).abs() < 1e-12,
            "{area} vs {}",
            whole.area_deg2()
        );
        for p in parts {
            assert!(
                whole.contains_closed(LonLat::new(p.cell.min_lon(), p.cell.min_lat()).unwrap())
            );
        }
    }

    #[test]
    fn a_dense_spot_is_packed_near_the_lower_bound() {
        let area = bb(8.50, 47.35, 8.54, 47.38);
        let pts = cloud(12_000, 7);
        let m = Margin::metres(OUTER_MARGIN_M, 47.36);
        let b = SearchBox::new(area, Outer::ALL);
        let parts = pack(b, &pts, 1500, m);
        covers_without_gaps(&parts, &area);
        for p in &parts {
            assert!(count(&p.asked(m), &pts) <= 1500, "{:?}", p);
        }
        // The lower bound is 8 boxes; halving would need 16.
        assert!(parts.len() <= 10, "{} boxes", parts.len());
        // Every point of the area is in some part.
        for p in pts.iter().filter(|p| area.contains_closed(**p)) {
            assert!(parts.iter().any(|b| b.cell.contains_closed(*p)));
        }
    }

    #[test]
    fn inner_sides_are_not_widened_and_outer_ones_are() {
        let area = bb(8.50, 47.35, 8.54, 47.38);
        let m = Margin::metres(100.0, 47.36);
        let b = SearchBox::new(area, Outer::ALL);
        let [nw, ne, sw, se] = b.quarters();
        assert_eq!(
            nw.outer,
            Outer {
                east: false,
                south: false,
                ..Outer::ALL
            }
        );
        assert_eq!(
            se.outer,
            Outer {
                west: false,
                north: false,
                ..Outer::ALL
            }
        );
        let a = nw.asked(m);
        assert!((a.max_lat() - (47.38 + m.lat)).abs() < 1e-12);
        assert!((a.max_lon() - nw.cell.max_lon()).abs() < 1e-12);
        assert!(ne.cell.min_lon() == nw.cell.max_lon() && sw.cell.max_lat() == nw.cell.min_lat());
        // 100 m is about 0.0009 degrees of latitude and 0.0013 of longitude at 47 N.
        assert!(
            (m.lat - 0.000_898).abs() < 1e-5 && (m.lon - 0.001_32).abs() < 2e-5,
            "{m:?}"
        );
    }

    #[test]
    fn outer_sides_follow_the_covered_area() {
        // Two cells side by side: the shared edge is inner for both.
        let west = bb(0.0, 0.0, 0.01, 0.01);
        let whole = bb(0.0, 0.0, 0.02, 0.01);
        let m = Margin::metres(100.0, 0.0);
        let o = outer_sides(&west, m, |p| whole.contains_closed(p));
        assert_eq!(
            o,
            Outer {
                east: false,
                ..Outer::ALL
            }
        );
        // Part of the neighbour missing: the side faces out.
        let half = bb(0.0, 0.0, 0.02, 0.005);
        let o = outer_sides(&west, m, |p| {
            half.contains_closed(p) || west.contains_closed(p)
        });
        assert!(o.east && o.north);
    }

    #[test]
    fn margin_strips_merge_per_side() {
        let area = bb(8.50, 47.35, 8.54, 47.38);
        let m = Margin::metres(100.0, 47.36);
        let parts = SearchBox::new(area, Outer::ALL).quarters();
        let strips = margin_strips(parts.iter().map(|p| (*p, m)));
        assert_eq!(strips.len(), 4, "{strips:?}");
        let ring: f64 = strips.iter().map(Bbox::area_deg2).sum();
        let whole = SearchBox::new(area, Outer::ALL).asked(m).area_deg2() - area.area_deg2();
        assert!((ring - whole).abs() < 1e-12, "{ring} vs {whole}");
        for s in &strips {
            assert!(
                !area.contains_half_open(
                    LonLat::new(
                        (s.min_lon() + s.max_lon()) / 2.0,
                        (s.min_lat() + s.max_lat()) / 2.0
                    )
                    .unwrap()
                )
            );
        }
    }

    #[test]
    fn quantised_positions_are_not_cut_through() {
        // Positions on a coarse lattice (as tiles give them): many share a latitude.
        let area = bb(8.50, 47.35, 8.54, 47.38);
        let pts: Vec<LonLat> = cloud(12_000, 3)
            .into_iter()
            .map(|p| LonLat::new((p.lon * 2e4).round() / 2e4, (p.lat * 2e4).round() / 2e4).unwrap())
            .collect();
        let m = Margin::metres(OUTER_MARGIN_M, 47.36);
        let parts = pack(SearchBox::new(area, Outer::ALL), &pts, 1500, m);
        assert!(parts.len() <= 10, "{} boxes", parts.len());
        for p in &parts {
            assert!(count(&p.asked(m), &pts) <= 1500);
        }
    }

    #[test]
    fn points_on_one_coordinate_end_in_quarters_not_a_loop() {
        let area = bb(0.0, 0.0, 0.01, 0.01);
        let pts = vec![LonLat::new(0.005, 0.005).unwrap(); 50];
        let parts = pack(SearchBox::new(area, Outer::ALL), &pts, 10, Margin::ZERO);
        covers_without_gaps(&parts, &area);
        assert!(parts.len() < 200);
    }

    #[test]
    fn a_box_over_the_area_limit_is_quartered() {
        let b = SearchBox::new(bb(0.0, 0.0, 0.2, 0.2), Outer::ALL);
        let m = Margin::metres(100.0, 0.1);
        let parts = under_area_limit(b, m);
        covers_without_gaps(&parts, &b.cell);
        assert!(
            parts
                .iter()
                .all(|p| p.asked(m).area_deg2() < MAX_SEARCH_AREA_DEG2)
        );
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]
            #[test]
            fn packing_covers_the_box_and_meets_the_target(
                n in 0usize..3000, seed in any::<u64>(), target in 50usize..2000,
                w in 0.001f64..0.05, h in 0.001f64..0.05,
            ) {
                let area = bb(8.5, 47.35, 8.5 + w, 47.35 + h);
                let pts: Vec<LonLat> = cloud(n, seed)
                    .into_iter()
                    .map(|p| LonLat::new(8.5 + (p.lon - 8.5) / 0.04 * w, 47.35 + (p.lat - 47.35) / 0.03 * h).unwrap())
                    .collect();
                let m = Margin::metres(100.0, 47.35);
                let parts = pack(SearchBox::new(area, Outer::ALL), &pts, target, m);
                covers_without_gaps(&parts, &area);
                // Every point lies inside the area, so only boxes at the
                // smallest strip width may stay over the target.
                for p in &parts {
                    let c = count(&p.asked(m), &pts);
                    let tiny = p.cell.width().min(p.cell.height()) < 4.0 * MIN_SEARCH_SIDE_DEG;
                    prop_assert!(c <= target || tiny, "{c} > {target} in {:?}", p.cell);
                }
            }
        }
    }
}
