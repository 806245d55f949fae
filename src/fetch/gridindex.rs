//! Which grid owns a position, fast for any number of grids (an R-tree over
//! the grid boxes), with exactly the rule of [`crate::plan::Plan::owner`].

use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{AABB, RTree};

use crate::model::{Bbox, LonLat};
use crate::plan::Plan;

type Entry = GeomWithData<Rectangle<[f64; 2]>, usize>;

/// The grid boxes of a plan, indexed. For a shard's part of a plan, the
/// whole plan's boxes decide ownership and coverage.
pub(crate) struct GridIndex {
    /// Every box deciding ownership, by its place in the ownership order.
    tree: RTree<Entry>,
    boxes: Vec<(Bbox, Option<usize>)>,
}

fn entries(boxes: impl Iterator<Item = Bbox>) -> Vec<Entry> {
    boxes
        .enumerate()
        .map(|(i, b)| {
            let r = Rectangle::from_corners([b.min_lon(), b.min_lat()], [b.max_lon(), b.max_lat()]);
            GeomWithData::new(r, i)
        })
        .collect()
}

impl GridIndex {
    pub(crate) fn new(plan: &Plan) -> Self {
        let boxes = plan.ownership();
        let tree = RTree::bulk_load(entries(boxes.iter().map(|(b, _)| *b)));
        GridIndex { tree, boxes }
    }

    /// The index of the grid owning `p` in `plan` (the plan this index was
    /// built from): the first grid whose half-open box holds it, else the
    /// first whose closed box does. For a shard's part: that grid of the
    /// whole plan, when the part lists it.
    pub(crate) fn owner(&self, _plan: &Plan, p: LonLat) -> Option<usize> {
        let at = AABB::from_point([p.lon, p.lat]);
        let mut half_open = None::<usize>;
        let mut closed = None::<usize>;
        for e in self.tree.locate_in_envelope_intersecting(&at) {
            let i = e.data;
            if self.boxes[i].0.contains_half_open(p) {
                half_open = Some(half_open.map_or(i, |h| h.min(i)));
            }
            closed = Some(closed.map_or(i, |c| c.min(i)));
        }
        self.boxes[half_open.or(closed)?].1
    }

    /// Whether any grid's closed box holds `p`; for a shard's part, any grid
    /// of the whole plan. So for the verified listing a border between two
    /// shards is an inner side, searched without the outer margin, as in a
    /// whole fetch: an image whose GPS position lies on this side and whose
    /// computed one across it (were the API's bbox filter to use the
    /// computed one) is still listed by the lookup by id of what the tiles
    /// show here.
    pub(crate) fn covers(&self, p: LonLat) -> bool {
        self.holding(p).next().is_some()
    }

    /// Whether the closed box of a grid this plan lists holds `p`: for a
    /// shard's part, one of its own cells (or parts). A search-only listing
    /// has no lookup by id, so for it a border between two shards is an
    /// outer side (see [`crate::fetch::search`]).
    pub(crate) fn covers_own(&self, p: LonLat) -> bool {
        self.holding(p).any(|i| self.boxes[i].1.is_some())
    }

    /// The boxes whose closed box holds `p`, by their place in the order.
    fn holding(&self, p: LonLat) -> impl Iterator<Item = usize> + '_ {
        let at = AABB::from_point([p.lon, p.lat]);
        self.tree
            .locate_in_envelope_intersecting(&at)
            .map(|e| e.data)
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
                assert_eq!(idx.covers_own(q), idx.covers(q));
            }
        }
        let out = LonLat::new(8.7, 47.35).unwrap();
        assert_eq!(idx.owner(&p, out), None);
    }

    #[test]
    fn a_shards_part_owns_and_covers_by_the_whole_plan_and_tells_its_own_cells() {
        let area: crate::model::Bbox = "8.5,47.3,8.6,47.4".parse().unwrap();
        let all = plan::cut(&area, 5, 4).unwrap();
        let part = Plan::scoped(all.clone(), &[1, 2, 7, 13]).unwrap();
        let idx = GridIndex::new(&part);
        for i in 0..=40 {
            for j in 0..=40 {
                let q =
                    LonLat::new(8.5 + f64::from(i) * 0.0025, 47.3 + f64::from(j) * 0.0025).unwrap();
                assert_eq!(idx.owner(&part, q), part.owner(q), "{q:?}");
                assert_eq!(idx.covers(q), area.contains_closed(q), "{q:?}");
                let own = [1, 2, 7, 13]
                    .iter()
                    .any(|&i| all[i].bbox.contains_closed(q));
                assert_eq!(idx.covers_own(q), own, "{q:?}");
            }
        }
    }
}
