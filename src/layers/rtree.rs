//! Packs boxes into the shadow tables of an SQLite R*Tree (the GeoPackage
//! spatial index) bottom-up, by sort-tile-recursive packing, instead of
//! inserting them one at a time: SQLite 3.40's one-at-a-time inserts took
//! about 10 µs per image, more than writing the image row itself. Pure:
//! numbers and bytes only; `gpkg` writes the nodes through GDAL.
//!
//! Node format (SQLite's `rtree.c`): 2 bytes tree depth (root only), 2 bytes
//! cell count, then cells of an 8-byte id (an entry's id in a leaf, a child
//! node's number above) and minx, maxx, miny, maxy as 32-bit floats, all
//! big-endian. The root is node 1.

/// One box to index: a row id and its bounds as 32-bit floats
/// (`[minx, maxx, miny, maxy]`, degrees), rounded outwards.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Entry {
    pub id: i64,
    pub bounds: [f32; 4],
}

impl Entry {
    /// The entry of a point (x = lon, y = lat), with its coordinates rounded
    /// to 32-bit floats the way SQLite's R*Tree rounds them (down for the
    /// minimum, up for the maximum), so the box always contains the point.
    pub(crate) fn point(id: i64, x: f64, y: f64) -> Self {
        Self {
            id,
            bounds: [down(x), up(x), down(y), up(y)],
        }
    }

    fn center(&self) -> (f32, f32) {
        let [x0, x1, y0, y1] = self.bounds;
        (x0 / 2.0 + x1 / 2.0, y0 / 2.0 + y1 / 2.0)
    }
}

// SQLite's rtreeValueDown / rtreeValueUp: a float no greater (no smaller)
// than the double, nudged by one part in 2^23 when the cast went the wrong way.
const RND_TOWARDS: f64 = 1.0 - 1.0 / 8_388_608.0;
const RND_AWAY: f64 = 1.0 + 1.0 / 8_388_608.0;

fn down(d: f64) -> f32 {
    let f = d as f32;
    if f64::from(f) > d {
        (d * if d < 0.0 { RND_AWAY } else { RND_TOWARDS }) as f32
    } else {
        f
    }
}

fn up(d: f64) -> f32 {
    let f = d as f32;
    if f64::from(f) < d {
        (d * if d < 0.0 { RND_TOWARDS } else { RND_AWAY }) as f32
    } else {
        f
    }
}

/// Bytes of a cell: an 8-byte id and four 4-byte coordinates.
const CELL: usize = 8 + 4 * 4;

/// One node of the packed tree.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    /// Its number (the `nodeno` of `<rtree>_node`); the root is 1.
    pub number: i64,
    /// Whether its cells are entries (else child nodes).
    pub leaf: bool,
    /// The node's bytes, exactly as long as SQLite's node size.
    pub data: Vec<u8>,
}

impl Node {
    /// The ids in its cells: entry ids in a leaf, child node numbers above.
    pub(crate) fn ids(&self) -> impl Iterator<Item = i64> + '_ {
        let n = usize::from(u16::from_be_bytes([self.data[2], self.data[3]]));
        (0..n).map(|i| {
            let at = 4 + i * CELL;
            let mut b = [0u8; 8];
            b.copy_from_slice(&self.data[at..at + 8]);
            i64::from_be_bytes(b)
        })
    }
}

/// Packs `entries` into nodes of `node_size` bytes (the length SQLite gave
/// the empty root when the R*Tree was created), handing each node to `emit`
/// as soon as it is made (so the nodes never all sit in memory), the root
/// last. Nodes are filled evenly, as full as they can be. `None` when
/// `node_size` holds fewer than two cells; an error of `emit` stops the packing.
pub(crate) fn pack<E>(
    mut entries: Vec<Entry>,
    node_size: usize,
    mut emit: impl FnMut(Node) -> Result<(), E>,
) -> Option<Result<(), E>> {
    let cap = node_size.checked_sub(4)? / CELL;
    if cap < 2 || cap > usize::from(u16::MAX) {
        return None;
    }
    let mut next = 2i64;
    let mut depth = 0u16;
    Some(loop {
        let leaf = depth == 0;
        if entries.len() <= cap {
            break emit(node(1, leaf, depth, &entries, node_size));
        }
        let groups = tile(&mut entries, cap);
        let mut parents = Vec::with_capacity(groups.len());
        for g in groups {
            let cells = &entries[g];
            parents.push(Entry {
                id: next,
                bounds: union(cells),
            });
            if let Err(e) = emit(node(next, leaf, 0, cells, node_size)) {
                return Some(Err(e));
            }
            next += 1;
        }
        entries = parents;
        depth += 1;
    })
}

/// [`pack`] into a list, the root first.
#[cfg(test)]
pub(crate) fn pack_all(entries: Vec<Entry>, node_size: usize) -> Option<Vec<Node>> {
    let mut nodes = Vec::new();
    pack(entries, node_size, |n| {
        nodes.push(n);
        Ok::<(), ()>(())
    })?
    .ok()?;
    nodes.rotate_right(1);
    Some(nodes)
}

/// Sort-tile-recursive: sorts `entries` into vertical slices by x, each
/// slice by y, and cuts them into runs of at most `cap` (slices and runs as
/// even as possible, so no node is less than half full).
fn tile(entries: &mut [Entry], cap: usize) -> Vec<std::ops::Range<usize>> {
    let n = entries.len();
    let nodes = n.div_ceil(cap);
    let slices = (nodes as f64).sqrt().ceil() as usize;
    entries.sort_unstable_by(|a, b| a.center().0.total_cmp(&b.center().0));
    let mut groups = Vec::with_capacity(nodes);
    for s in 0..slices {
        let (start, end) = (n * s / slices, n * (s + 1) / slices);
        let slice = &mut entries[start..end];
        slice.sort_unstable_by(|a, b| a.center().1.total_cmp(&b.center().1));
        let k = slice.len().div_ceil(cap);
        for i in 0..k {
            groups.push(start + slice.len() * i / k..start + slice.len() * (i + 1) / k);
        }
    }
    groups
}

fn union(cells: &[Entry]) -> [f32; 4] {
    cells.iter().fold(
        [
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ],
        |[x0, x1, y0, y1], e| {
            [
                x0.min(e.bounds[0]),
                x1.max(e.bounds[1]),
                y0.min(e.bounds[2]),
                y1.max(e.bounds[3]),
            ]
        },
    )
}

fn node(number: i64, leaf: bool, depth: u16, cells: &[Entry], size: usize) -> Node {
    let mut data = vec![0u8; size];
    data[0..2].copy_from_slice(&depth.to_be_bytes());
    let count = u16::try_from(cells.len()).unwrap_or(u16::MAX);
    data[2..4].copy_from_slice(&count.to_be_bytes());
    for (i, e) in cells.iter().enumerate() {
        let at = 4 + i * CELL;
        data[at..at + 8].copy_from_slice(&e.id.to_be_bytes());
        for (j, v) in e.bounds.iter().enumerate() {
            data[at + 8 + 4 * j..at + 12 + 4 * j].copy_from_slice(&v.to_be_bytes());
        }
    }
    Node { number, leaf, data }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn cells(n: &Node) -> Vec<Entry> {
        let count = usize::from(u16::from_be_bytes([n.data[2], n.data[3]]));
        (0..count)
            .map(|i| {
                let at = 4 + i * CELL;
                let f = |k: usize| {
                    f32::from_be_bytes(n.data[at + 8 + 4 * k..at + 12 + 4 * k].try_into().unwrap())
                };
                Entry {
                    id: i64::from_be_bytes(n.data[at..at + 8].try_into().unwrap()),
                    bounds: [f(0), f(1), f(2), f(3)],
                }
            })
            .collect()
    }

    #[test]
    fn rounding_contains_the_point() {
        for v in [0.0, 13.377_123_4, -0.1, -179.999_999_9, 89.123_456_7, 1e-9] {
            let e = Entry::point(1, v, v);
            assert!(
                f64::from(e.bounds[0]) <= v && v <= f64::from(e.bounds[1]),
                "{v}"
            );
        }
        // Exactly representable values are kept as they are.
        assert_eq!(Entry::point(1, 0.5, -2.0).bounds, [0.5, 0.5, -2.0, -2.0]);
    }

    #[test]
    fn a_few_entries_make_a_leaf_root() {
        let nodes = pack_all(vec![Entry::point(7, 1.0, 2.0)], 1228).unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!((nodes[0].number, nodes[0].leaf), (1, true));
        assert_eq!(nodes[0].data.len(), 1228);
        assert_eq!(&nodes[0].data[..4], &[0, 0, 0, 1]);
        assert_eq!(nodes[0].ids().collect::<Vec<_>>(), [7]);
        let empty = pack_all(Vec::new(), 1228).unwrap();
        assert_eq!(empty[0].data, vec![0; 1228]);
        assert!(pack_all(Vec::new(), 40).is_none());
    }

    /// Every entry sits in exactly one leaf, every node's box in its
    /// parent's cell contains the node's cells, all leaves are equally deep,
    /// and nodes are at least half full.
    #[test]
    fn the_tree_is_a_valid_rtree() {
        let n = 20_000;
        let entries: Vec<Entry> = (0..n)
            .map(|i| {
                let t = i as f64;
                Entry::point(
                    i + 1,
                    (t * 0.618_034).fract() * 2.0 - 1.0,
                    (t * 0.414_214).fract(),
                )
            })
            .collect();
        let nodes = pack_all(entries.clone(), 1228).unwrap();
        let cap = (1228 - 4) / CELL;
        let by_no: BTreeMap<i64, &Node> = nodes.iter().map(|n| (n.number, n)).collect();
        assert_eq!(by_no.len(), nodes.len(), "node numbers are unique");
        assert_eq!(nodes[0].number, 1);
        let depth = u16::from_be_bytes([nodes[0].data[0], nodes[0].data[1]]);
        let mut seen = BTreeSet::new();
        // Walk from the root, checking containment and leaf depth.
        let mut stack = vec![(1i64, None::<[f32; 4]>, 0u16)];
        while let Some((no, bound, level)) = stack.pop() {
            let node = by_no[&no];
            let cs = cells(node);
            if no != 1 {
                assert!(cs.len() >= cap / 2, "node {no} has {} cells", cs.len());
            }
            if let Some(b) = bound {
                assert_eq!(union(&cs), b, "parent cell of {no} is its union");
            }
            assert_eq!(node.leaf, level == depth);
            for c in cs {
                if node.leaf {
                    assert!(seen.insert(c.id), "entry {} twice", c.id);
                } else {
                    stack.push((c.id, Some(c.bounds), level + 1));
                }
            }
        }
        assert_eq!(seen.len(), n as usize);
        let originals: BTreeMap<i64, [f32; 4]> = entries.iter().map(|e| (e.id, e.bounds)).collect();
        for leaf in nodes.iter().filter(|n| n.leaf) {
            for c in cells(leaf) {
                assert_eq!(originals[&c.id], c.bounds);
            }
        }
    }
}
