//! The layers: the sequence lines through the image rows, the set every
//! format is written from, and the writers of each format. This file is
//! pure: no files, no GDAL, no threads (those live in `read`, `gpkg` and
//! `commands::layers`); it must not touch the terminal or the network. The
//! rows themselves and their columns are the crate's `rows` module's.

pub(crate) mod csv;
pub(crate) mod geojson;
pub(crate) mod gpkg;
mod gpkg_index;
pub(crate) mod html;
pub(crate) mod ogr;
pub(crate) mod pg_sink;
pub(crate) mod postgis;
pub(crate) mod rtree;
pub mod run;
pub(crate) mod styles;
pub(crate) mod writer;

use std::collections::HashMap;

use crate::model::{Bbox, ImageId, LonLat};
use crate::runrecord::RunEntry;

pub use crate::rows::LayersError;
pub(crate) use crate::rows::{
    FileLayout, GridInfo, ImageRow, Interner, SequenceLine, Sym, iso_ms, round_coord, schema,
    source_name,
};
pub use run::{LayersReport, run};

/// Everything the writers need, built once and shared by every format.
#[derive(Debug, Clone)]
pub(crate) struct LayerSet {
    /// Image rows in scan order (grid, then id), including those without a position.
    pub rows: Vec<ImageRow>,
    pub strings: Interner,
    pub layout: FileLayout,
    pub sequences: Vec<SequenceLine>,
    pub cells: Vec<crate::rows::CellCoverage>,
    pub runs: Vec<RunEntry>,
}

impl LayerSet {
    /// What turns the rows' values into text.
    pub(crate) fn lookup(&self) -> crate::rows::Lookup<'_> {
        crate::rows::Lookup {
            strings: &self.strings,
            layout: self.layout,
        }
    }
    /// The string of a handle.
    pub(crate) fn s(&self, sym: Sym) -> Option<&str> {
        self.strings.get(sym)
    }
    /// Rows that have a position, in row order.
    pub(crate) fn drawn(&self) -> impl Iterator<Item = &ImageRow> {
        self.rows.iter().filter(|r| r.position().is_some())
    }
}

/// The capture-ordered lines of every sequence with at least two positioned,
/// timed images; sorted by sequence id. Images without a sequence, a position
/// or a capture time are left out of the lines.
pub(crate) fn sequence_lines(rows: &[ImageRow], strings: &Interner) -> Vec<SequenceLine> {
    let mut groups: HashMap<Sym, Vec<(i64, ImageId, LonLat)>> = HashMap::new();
    for r in rows {
        if let (false, Some(p), Some(t)) = (r.sequence.is_none(), r.position(), r.captured_ms()) {
            groups.entry(r.sequence).or_default().push((t, r.id, p));
        }
    }
    let mut lines: Vec<SequenceLine> = groups
        .into_iter()
        .filter(|(_, v)| v.len() >= 2)
        .map(|(seq, mut v)| {
            v.sort_by_key(|&(t, id, _)| (t, id));
            let points: Vec<LonLat> = v.iter().map(|&(_, _, p)| p).collect();
            let length_m = points.windows(2).map(|w| w[0].distance_m(w[1])).sum();
            SequenceLine {
                sequence: seq,
                first_ms: v[0].0,
                last_ms: v[v.len() - 1].0,
                points,
                length_m,
            }
        })
        .collect();
    lines.sort_by(|a, b| strings.get(a.sequence).cmp(&strings.get(b.sequence)));
    lines
}

/// The box around the given positions, `None` when there are fewer than two
/// distinct ones on each axis.
pub(crate) fn extent(points: impl Iterator<Item = LonLat>) -> Option<Bbox> {
    let mut b: Option<[f64; 4]> = None;
    for p in points {
        let e = b.get_or_insert([p.lon, p.lat, p.lon, p.lat]);
        e[0] = e[0].min(p.lon);
        e[1] = e[1].min(p.lat);
        e[2] = e[2].max(p.lon);
        e[3] = e[3].max(p.lat);
    }
    let [a, b2, c, d] = b?;
    Bbox::new(a, b2, c, d).ok()
}

/// A cell's drawn shape: its AOI-clipped polygon, else its box;
/// exterior rings counter-clockwise, holes clockwise (RFC 7946 / OGC).
pub(crate) fn cell_shape(c: &crate::rows::CellCoverage) -> Option<geo::MultiPolygon<f64>> {
    use geo::orient::{Direction, Orient};
    let shape = match (&c.shape, c.bbox) {
        (Some(s), _) => s.clone(),
        (None, Some(b)) => {
            let ring: Vec<(f64, f64)> = b.ring().iter().map(|&[x, y]| (x, y)).collect();
            geo::MultiPolygon(vec![geo::Polygon::new(ring.into(), vec![])])
        }
        (None, None) => return None,
    };
    Some(shape.orient(Direction::Default))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::PositionSource;
    use crate::rows::iso_ms_from_millis;
    use crate::rows::tests::{T0, rec};

    #[test]
    fn sequences_follow_capture_order_and_need_two_points() {
        let mut s = Interner::default();
        let recs = [
            rec(3, "b", 3000, 0.0, 0.002),
            rec(1, "b", 1000, 0.0, 0.0),
            rec(2, "b", 2000, 0.0, 0.001),
            rec(4, "a", 5000, 1.0, 1.0),
        ];
        let rows: Vec<ImageRow> = recs
            .iter()
            .map(|r| ImageRow::from_record(r, "g", true, PositionSource::Original, &mut s).unwrap())
            .collect();
        let lines = sequence_lines(&rows, &s);
        assert_eq!(lines.len(), 1);
        let l = &lines[0];
        assert_eq!(s.get(l.sequence), Some("b"));
        assert_eq!(
            l.points.iter().map(|p| p.lat).collect::<Vec<_>>(),
            vec![0.0, 0.001, 0.002]
        );
        assert_eq!((l.first_ms, l.last_ms), (T0 + 1000, T0 + 3000));
        assert!((l.length_m - 222.4).abs() < 0.5, "{}", l.length_m);
    }

    #[test]
    fn rounding_and_times() {
        assert_eq!(round_coord(13.123456789), 13.1234568);
        assert_eq!(round_coord(-0.00000004), -0.0);
        assert_eq!(
            iso_ms_from_millis(1563721072184).unwrap(),
            "2019-07-21T14:57:52.184Z"
        );
        assert!(extent([LonLat::new(1.0, 1.0).unwrap()].into_iter()).is_none());
    }
}
