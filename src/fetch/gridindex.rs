//! Which grid owns a position, fast for any number of grids (an R-tree over
//! the grid boxes), with exactly the rule of [`crate::plan::Plan::owner`].

use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{AABB, RTree};

use crate::model::LonLat;
use crate::plan::Plan;

type Entry = GeomWithData<Rectangle<[f64; 2]>, usize>;

/// The grid boxes of a plan, indexed.
pub(crate) struct GridIndex {
    tree: RTree<Entry>,
}

impl GridIndex {
    pub(crate) fn new(plan: &Plan) -> Self {
        let entries = plan
            .grids()
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let b = g.bbox;
                let r =
                    Rectangle::from_corners([b.min_lon(), b.min_lat()], [b.max_lon(), b.max_lat()]);
                GeomWithData::new(r, i)
            })
            .collect();
        GridIndex {
            tree: RTree::bulk_load(entries),
        }
    }

    /// The index of the grid owning `p` in `plan` (the plan this index was
    /// built from): the first grid whose half-open box holds it, else the
    /// first whose closed box does.
    pub(crate) fn owner(&self, plan: &Plan, p: LonLat) -> Option<usize> {
        let at = AABB::from_point([p.lon, p.lat]);
        let mut half_open = None::<usize>;
        let mut closed = None::<usize>;
        for e in self.tree.locate_in_envelope_intersecting(&at) {
            let i = e.data;
            if plan.grids()[i].bbox.contains_half_open(p) {
                half_open = Some(half_open.map_or(i, |h| h.min(i)));
            }
            closed = Some(closed.map_or(i, |c| c.min(i)));
        }
        half_open.or(closed)
    }

    /// Whether any grid's closed box holds `p`.
    pub(crate) fn covers(&self, p: LonLat) -> bool {
        let at = AABB::from_point([p.lon, p.lat]);
        self.tree
            .locate_in_envelope_intersecting(&at)
            .next()
            .is_some()
    }
}

/// Known image positions (from the vector tiles), indexed for box queries.
pub(super) struct PointIndex {
    tree: RTree<[f64; 2]>,
}

impl PointIndex {
    pub(super) fn new(points: &[LonLat]) -> Self {
        PointIndex {
            tree: RTree::bulk_load(points.iter().map(|p| [p.lon, p.lat]).collect()),
        }
    }

    fn envelope(b: &crate::model::Bbox) -> AABB<[f64; 2]> {
        AABB::from_corners([b.min_lon(), b.min_lat()], [b.max_lon(), b.max_lat()])
    }

    /// The positions inside the closed box `b`.
    pub(super) fn within(&self, b: &crate::model::Bbox) -> Vec<LonLat> {
        self.tree
            .locate_in_envelope(&Self::envelope(b))
            .filter_map(|p| LonLat::new(p[0], p[1]))
            .collect()
    }

    /// How many positions lie inside the closed box `b`.
    pub(super) fn count(&self, b: &crate::model::Bbox) -> usize {
        self.tree.locate_in_envelope(&Self::envelope(b)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan;

    #[test]
    fn agrees_with_the_plan_on_edges_corners_and_outside() {
        let area: crate::model::Bbox = "8.5,47.3,8.6,47.4".parse().unwrap();
        let p = Plan::new(plan::cut(&area, 5, 4).unwrap()).unwrap();
        let idx = GridIndex::new(&p);
        for i in 0..=40 {
            for j in 0..=40 {
                let q =
                    LonLat::new(8.5 + f64::from(i) * 0.0025, 47.3 + f64::from(j) * 0.0025).unwrap();
                assert_eq!(idx.owner(&p, q), p.owner(q), "{q:?}");
                assert_eq!(idx.covers(q), p.owner(q).is_some());
            }
        }
        let out = LonLat::new(8.7, 47.35).unwrap();
        assert_eq!(idx.owner(&p, out), None);
    }
}
