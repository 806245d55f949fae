//! Study-area planning: grid files, cutting a bbox into numbered cells, which
//! cell owns an image, and splitting search boxes. Pure: no I/O.

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::{Bbox, GridId, MIN_AREA_SIDE_DEG, ModelError, below_min_side};

/// The API refuses boxes of this many square degrees or more.
pub(crate) const MAX_SEARCH_AREA_DEG2: f64 = 0.01;
/// A search box narrower or lower than this (degrees, about 1.1 m at the
/// equator) is not split any further; if still at the cap it is `truncated`.
pub(crate) const MIN_SEARCH_SIDE_DEG: f64 = 0.00001;
/// Most cells a grid may have.
pub(crate) const MAX_CELLS: usize = 100_000;
/// Largest grid file read, in bytes.
pub(crate) const MAX_GRID_FILE_BYTES: u64 = 16 << 20;
/// Most lines a grid file may have (comments and blank lines included).
pub(crate) const MAX_GRID_FILE_LINES: usize = 1_000_000;

/// Errors in a study-area description.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum PlanError {
    #[error("line {line}: {message}; expected `ID,min_lon,min_lat,max_lon,max_lat`")]
    GridLine { line: usize, message: String },
    #[error("line {line}: grid id `{id}` appears twice (first on line {first})")]
    DuplicateGrid {
        line: usize,
        id: String,
        first: usize,
    },
    #[error(
        "line {line}: grid id `{id}` differs only in case from `{other}` on line {first}; their folders would be one on a case-insensitive file system (Windows, macOS): rename one"
    )]
    CaseCollision {
        line: usize,
        id: String,
        other: String,
        first: usize,
    },
    #[error("the grid file has no grid lines")]
    EmptyGridFile,
    #[error("the grid file has more than {max} lines; split the study area into several runs")]
    TooManyLines { max: usize },
    #[error(
        "cells of {cols}x{rows} over this bbox would be narrower or lower than {min} degrees (about 0.1 m); use fewer cells"
    )]
    CellTooSmall { cols: u32, rows: u32, min: f64 },
    #[error(transparent)]
    Area(#[from] ModelError),
    #[error("grid `{0}` must be COLSxROWS with each between 1 and 1000, e.g. `4x3`")]
    GridSpec(String),
    #[error("cell size `{0}` must be a length such as `500m` or `2km`, at least 10 m")]
    CellSize(String),
    #[error("{cells} cells is too many (at most {max}); use a larger cell size")]
    TooManyCells { cells: usize, max: usize },
}

/// One grid cell: an id (its folder name) and its box.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Grid {
    pub id: GridId,
    pub bbox: Bbox,
}

/// The grid cells of a study area, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    grids: Vec<Grid>,
    area: Bbox,
    /// For a shard's plan: the whole plan's cells, which decide ownership.
    scope: Option<Arc<Scope>>,
}

/// A shard's part of a larger plan: every box of the whole plan, in its
/// order (ownership follows it), and for each the index of the cell in this
/// part's `grids`, when the part lists it.
#[derive(Debug, PartialEq)]
struct Scope {
    all: Vec<Bbox>,
    local: Vec<Option<usize>>,
}

impl Plan {
    /// A plan from cells in order (not empty).
    pub(crate) fn new(grids: Vec<Grid>) -> Option<Self> {
        let area = grids.iter().map(|g| g.bbox).reduce(|a, b| a.union(&b))?;
        Some(Self {
            grids,
            area,
            scope: None,
        })
    }

    /// The part `mine` (indexes into `all`, in order) of the plan of cells
    /// `all`: it lists only those cells, but a position belongs to one of
    /// them only when the whole plan's rule gives it to one of them, so that
    /// the parts of one plan own disjoint sets of positions whose union is
    /// the whole plan's. `None` when `mine` is empty or out of range.
    pub(crate) fn scoped(all: Vec<Grid>, mine: &[usize]) -> Option<Self> {
        let mut local = vec![None; all.len()];
        let mut grids = Vec::with_capacity(mine.len());
        for &i in mine {
            *local.get_mut(i)? = Some(grids.len());
            grids.push(all[i].clone());
        }
        let area = grids.iter().map(|g| g.bbox).reduce(|a, b| a.union(&b))?;
        let all = all.into_iter().map(|g| g.bbox).collect();
        Some(Self {
            grids,
            area,
            scope: Some(Arc::new(Scope { all, local })),
        })
    }

    /// A bbox alone: one grid named `1`.
    pub(crate) fn single(bbox: Bbox) -> Self {
        let id = GridId::numbered(1);
        Self {
            grids: vec![Grid { id, bbox }],
            area: bbox,
            scope: None,
        }
    }

    /// The boxes that decide ownership, in order, each with the index of its
    /// cell in [`Plan::grids`] when this plan lists it: the plan's own cells,
    /// or for a shard's part the whole plan's.
    pub(crate) fn ownership(&self) -> Vec<(Bbox, Option<usize>)> {
        match &self.scope {
            None => self
                .grids
                .iter()
                .enumerate()
                .map(|(i, g)| (g.bbox, Some(i)))
                .collect(),
            Some(s) => s.all.iter().copied().zip(s.local.iter().copied()).collect(),
        }
    }

    pub(crate) fn grids(&self) -> &[Grid] {
        &self.grids
    }

    /// The box around every cell.
    pub(crate) fn area(&self) -> Bbox {
        self.area
    }

    /// The index of the cell that owns an image at `p`, if any.
    ///
    /// The rule: the first cell, in order, whose half-open box
    /// `[min_lon, max_lon) x [min_lat, max_lat)` contains `p`; failing that
    /// (a point on an outer north or east edge), the first cell whose closed
    /// box contains it. So every point of the area belongs to exactly one
    /// cell, and an image on an edge shared by two cells belongs to the cell
    /// east or north of the edge.
    /// For a shard's part, the owner in the whole plan, when it is one of
    /// this part's cells.
    #[cfg(test)]
    pub(crate) fn owner(&self, p: crate::model::LonLat) -> Option<usize> {
        let boxes = self.ownership();
        let i = boxes
            .iter()
            .position(|(b, _)| b.contains_half_open(p))
            .or_else(|| boxes.iter().position(|(b, _)| b.contains_closed(p)))?;
        boxes[i].1
    }
}

/// Parses a grid file: `ID,min_lon,min_lat,max_lon,max_lat` per line. Blank
/// lines and lines starting with `#` are skipped; a first line whose second
/// field is not a number is a header.
pub(crate) fn parse_grid_file(text: &str) -> Result<Vec<Grid>, PlanError> {
    let mut grids: Vec<Grid> = Vec::new();
    // Folded id -> (line, index into `grids`): duplicates in O(1) each.
    let mut seen: HashMap<String, (usize, usize)> = HashMap::new();
    let mut seen_content = false;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        if line_no > MAX_GRID_FILE_LINES {
            return Err(PlanError::TooManyLines {
                max: MAX_GRID_FILE_LINES,
            });
        }
        let line = raw.trim().trim_start_matches('\u{feff}');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let first = !seen_content;
        seen_content = true;
        let Some(grid) = parse_grid_line(line, line_no, first)? else {
            continue; // header
        };
        if let Some(&(first, at)) = seen.get(&grid.id.folded()) {
            let other = grids[at].id.to_string();
            let id = grid.id.to_string();
            return Err(if other == id {
                PlanError::DuplicateGrid {
                    line: line_no,
                    id,
                    first,
                }
            } else {
                PlanError::CaseCollision {
                    line: line_no,
                    id,
                    other,
                    first,
                }
            });
        }
        seen.insert(grid.id.folded(), (line_no, grids.len()));
        grids.push(grid);
    }
    if grids.is_empty() {
        return Err(PlanError::EmptyGridFile);
    }
    Ok(grids)
}

/// One non-blank, non-comment grid file line; `None` for the header (a
/// first line whose second field is not a number).
fn parse_grid_line(line: &str, line_no: usize, first: bool) -> Result<Option<Grid>, PlanError> {
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    if first && fields.len() >= 2 && fields[1].parse::<f64>().is_err() {
        return Ok(None);
    }
    let err = |message: String| PlanError::GridLine {
        line: line_no,
        message,
    };
    if fields.len() != 5 {
        let shown: String = line.chars().take(80).collect();
        return Err(err(format!("`{shown}` has {} fields, not 5", fields.len())));
    }
    let id: GridId = fields[0]
        .parse()
        .map_err(|e: ModelError| err(e.to_string()))?;
    let bbox: Bbox = fields[1..]
        .join(",")
        .parse()
        .map_err(|e: ModelError| err(e.to_string()))?;
    Ok(Some(Grid { id, bbox }))
}

/// Parses `COLSxROWS`.
pub(crate) fn parse_grid_spec(s: &str) -> Result<(u32, u32), PlanError> {
    let err = || PlanError::GridSpec(s.to_string());
    let (c, r) = s.trim().split_once(['x', 'X']).ok_or_else(err)?;
    let c: u32 = c.trim().parse().map_err(|_| err())?;
    let r: u32 = r.trim().parse().map_err(|_| err())?;
    if !(1..=1000).contains(&c) || !(1..=1000).contains(&r) {
        return Err(err());
    }
    Ok((c, r))
}

/// Parses a cell size such as `500m` or `2km` into metres (at least 10 m).
pub(crate) fn parse_cell_size(s: &str) -> Result<f64, PlanError> {
    parse_length_m(s)
        .filter(|m| *m >= 10.0)
        .ok_or_else(|| PlanError::CellSize(s.to_string()))
}

/// Parses a length with a unit, `500m`, `2km` or `0.5 km`, into metres.
/// `None` when it is not a finite, positive length with `m` or `km`.
pub(crate) fn parse_length_m(s: &str) -> Option<f64> {
    let t = s.trim().to_ascii_lowercase();
    let (num, scale) = if let Some(n) = t.strip_suffix("km") {
        (n, 1000.0)
    } else {
        (t.strip_suffix('m')?, 1.0)
    };
    let m = num.trim().parse::<f64>().ok()? * scale;
    (m.is_finite() && m > 0.0).then_some(m)
}

/// Columns and rows of cells about `metres` on a side over `bbox`, measured
/// at the box's middle latitude.
pub(crate) fn grid_for_cell_size(bbox: &Bbox, metres: f64) -> Result<(u32, u32), PlanError> {
    let mid = bbox.min_lat() + bbox.height() / 2.0;
    let m_per_deg_lat = 111_320.0;
    let m_per_deg_lon = 111_320.0 * mid.to_radians().cos().max(1e-6);
    let cols = (bbox.width() * m_per_deg_lon / metres).ceil().max(1.0);
    let rows = (bbox.height() * m_per_deg_lat / metres).ceil().max(1.0);
    let cells = cols * rows;
    if cells > MAX_CELLS as f64 {
        return Err(PlanError::TooManyCells {
            cells: cells.min(usize::MAX as f64) as usize,
            max: MAX_CELLS,
        });
    }
    Ok((cols as u32, rows as u32))
}

/// Cuts `bbox` into `cols` x `rows` equal cells numbered 1..N in reading
/// order: row by row from the north-west corner, west to east, then north
/// to south.
pub(crate) fn cut(bbox: &Bbox, cols: u32, rows: u32) -> Result<Vec<Grid>, PlanError> {
    let n = cols as usize * rows as usize;
    if n > MAX_CELLS {
        return Err(PlanError::TooManyCells {
            cells: n,
            max: MAX_CELLS,
        });
    }
    let (w, h) = (
        bbox.width() / f64::from(cols.max(1)),
        bbox.height() / f64::from(rows.max(1)),
    );
    let too_small = PlanError::CellTooSmall {
        cols,
        rows,
        min: MIN_AREA_SIDE_DEG,
    };
    if cols == 0 || rows == 0 || below_min_side(w) || below_min_side(h) {
        return Err(too_small);
    }
    let edge_x = |i: u32| {
        if i == cols {
            bbox.max_lon()
        } else {
            bbox.min_lon() + w * f64::from(i)
        }
    };
    let edge_y = |j: u32| {
        if j == rows {
            bbox.max_lat()
        } else {
            bbox.min_lat() + h * f64::from(j)
        }
    };
    let mut out = Vec::with_capacity(n);
    for r in 0..rows {
        let top = rows - r; // rows counted from the north
        for c in 0..cols {
            let b = Bbox::new(edge_x(c), edge_y(top - 1), edge_x(c + 1), edge_y(top))
                .map_err(|_| too_small.clone())?;
            let id = GridId::numbered(out.len() + 1);
            out.push(Grid { id, bbox: b });
        }
    }
    Ok(out)
}

/// Splits a box into quarters until each, widened by `margin_deg` on every
/// side (as it will be searched), is under the API's area limit.
#[cfg(test)]
pub(crate) fn initial_boxes(bbox: Bbox, margin_deg: f64) -> Vec<Bbox> {
    let mut out = Vec::new();
    let mut todo = vec![bbox];
    while let Some(b) = todo.pop() {
        if b.expanded(margin_deg).area_deg2() >= MAX_SEARCH_AREA_DEG2 {
            todo.extend(b.quarters());
        } else {
            out.push(b);
        }
    }
    out.sort_by(|a, b| {
        (b.max_lat(), a.min_lon())
            .partial_cmp(&(a.max_lat(), b.min_lon()))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LonLat;

    fn bb(s: &str) -> Bbox {
        s.parse().unwrap()
    }

    #[test]
    fn grid_file_with_header_comments_and_errors() {
        let text = "id,min_lon,min_lat,max_lon,max_lat\n# comment\n\nA,0,0,1,1\nB, 1,0,2,1\n";
        let g = parse_grid_file(text).unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(g[1].id.as_str(), "B");
        let e = parse_grid_file("A,0,0,1,1\nB,0,0,1\n").unwrap_err();
        assert!(matches!(e, PlanError::GridLine { line: 2, .. }), "{e}");
        let e = parse_grid_file("A,0,0,1,1\nA,1,1,2,2\n").unwrap_err();
        assert!(matches!(e, PlanError::DuplicateGrid { line: 2, .. }));
        let e = parse_grid_file("../x,0,0,1,1\n").unwrap_err();
        assert!(e.to_string().contains("line 1"));
        assert_eq!(parse_grid_file("# only\n"), Err(PlanError::EmptyGridFile));
    }

    #[test]
    fn cut_numbers_from_north_west() {
        let g = cut(&bb("0,0,2,2"), 2, 2).unwrap();
        let ids: Vec<&str> = g.iter().map(|g| g.id.as_str()).collect();
        assert_eq!(ids, ["1", "2", "3", "4"]);
        assert_eq!(g[0].bbox, bb("0,1,1,2"));
        assert_eq!(g[1].bbox, bb("1,1,2,2"));
        assert_eq!(g[3].bbox, bb("1,0,2,1"));
    }

    #[test]
    fn every_point_has_exactly_one_owner() {
        let plan = Plan::new(cut(&bb("0,0,2,2"), 2, 2).unwrap()).unwrap();
        let p = |x, y| LonLat::new(x, y).unwrap();
        assert_eq!(plan.owner(p(1.0, 1.0)), Some(1)); // shared corner: north-east cell
        assert_eq!(plan.owner(p(1.0, 0.5)), Some(3));
        assert_eq!(plan.owner(p(2.0, 2.0)), Some(1)); // outer corner still owned
        assert_eq!(plan.owner(p(0.0, 0.0)), Some(2));
        assert_eq!(plan.owner(p(2.5, 0.0)), None);
    }

    #[test]
    fn specs_and_sizes() {
        assert_eq!(parse_grid_spec("4x3"), Ok((4, 3)));
        assert!(parse_grid_spec("0x3").is_err());
        assert!(parse_grid_spec("4*3").is_err());
        assert_eq!(parse_cell_size("500m"), Ok(500.0));
        assert_eq!(parse_cell_size("2km"), Ok(2000.0));
        assert!(parse_cell_size("5m").is_err());
        assert!(parse_cell_size("500").is_err());
        let (c, r) = grid_for_cell_size(&bb("0,0,0.009,0.009"), 500.0).unwrap();
        assert_eq!((c, r), (3, 3));
    }

    #[test]
    fn big_boxes_are_split_below_the_area_limit() {
        let boxes = initial_boxes(bb("0,0,0.3,0.2"), 0.0);
        assert!(boxes.iter().all(|b| b.area_deg2() < MAX_SEARCH_AREA_DEG2));
        let total: f64 = boxes.iter().map(Bbox::area_deg2).sum();
        assert!((total - 0.06).abs() < 1e-9);
        let widened = initial_boxes(bb("0,0,0.1,0.099"), 0.001);
        assert!(
            widened
                .iter()
                .all(|b| b.expanded(0.001).area_deg2() < MAX_SEARCH_AREA_DEG2)
        );
    }

    #[test]
    fn grid_ids_differing_in_case_or_reserved_are_refused() {
        let e = parse_grid_file("Ab,0,0,1,1\naB,1,1,2,2\n").unwrap_err();
        assert!(
            matches!(
                e,
                PlanError::CaseCollision {
                    line: 2,
                    first: 1,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("case-insensitive"), "{e}");
        for name in ["jsons", "Images", "LAYERS", "mlyexport-x"] {
            let e = parse_grid_file(&format!("{name},0,0,1,1\n")).unwrap_err();
            assert!(e.to_string().contains("reserved"), "{e}");
        }
        let e = parse_grid_file("A,10,0,11,1e-20\n").unwrap_err();
        assert!(e.to_string().contains("0.1 m"), "{e}");
    }

    #[test]
    fn many_lines_are_fast_and_bounded() {
        let text: String = (0..100_000)
            .map(|i| format!("g{i},{},0,{},1\n", i % 100, i % 100 + 1))
            .collect();
        let t = std::time::Instant::now();
        assert_eq!(parse_grid_file(&text).unwrap().len(), 100_000);
        // A set, not the old pairwise scan (minutes in a debug build); the
        // bound is loose because the test machine is shared.
        assert!(t.elapsed().as_secs() < 30, "{:?}", t.elapsed());
        let blank = "\n".repeat(MAX_GRID_FILE_LINES + 1);
        assert!(matches!(
            parse_grid_file(&blank),
            Err(PlanError::TooManyLines { .. })
        ));
    }

    #[test]
    fn cells_too_small_are_refused() {
        let b = bb("10,0,10.00001,0.00001");
        assert!(matches!(
            cut(&b, 1000, 1),
            Err(PlanError::CellTooSmall { .. })
        ));
        assert!(cut(&b, 10, 10).is_ok());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn grid_files_never_panic(text in "(\\PC{0,40}\n){0,8}") {
                if let Ok(grids) = parse_grid_file(&text) {
                    prop_assert!(!grids.is_empty());
                }
            }

            #[test]
            fn grid_lines_near_valid_never_panic(
                lines in proptest::collection::vec(
                    ("[A-Za-z0-9_.-]{0,6}", proptest::collection::vec("-?[0-9]{0,3}(\\.[0-9]{0,3})?|NaN|inf|1e-20|x", 0..6)),
                    0..6,
                )
            ) {
                let text: String = lines
                    .iter()
                    .map(|(id, f)| format!("{id},{}\n", f.join(",")))
                    .collect();
                let _ = parse_grid_file(&text);
            }

            #[test]
            fn generated_grid_files_parse(cells in proptest::collection::vec(
                (-179.0..179.0f64, -89.0..89.0f64, 0.001..1.0f64), 1..20)
            ) {
                let text: String = cells
                    .iter()
                    .enumerate()
                    .map(|(i, (x, y, s))| format!("c{i},{x},{y},{},{}\n", x + s, y + s))
                    .collect();
                let grids = parse_grid_file(&text).map_err(|e| TestCaseError::fail(format!("{e}")))?;
                prop_assert_eq!(grids.len(), cells.len());
            }

            #[test]
            fn cutting_never_panics(
                x in -180.0..180.0f64, y in -90.0..90.0f64,
                w in prop_oneof![1e-6..1e-5f64, 1e-5..10.0f64],
                cols in 0u32..1200, rows in 0u32..1200,
            ) {
                let Ok(b) = Bbox::new(x, y, (x + w).min(180.0), (y + w).min(90.0)) else {
                    return Ok(());
                };
                if let Ok(cells) = cut(&b, cols, rows) {
                    prop_assert_eq!(cells.len(), cols as usize * rows as usize);
                    prop_assert!(cells.iter().all(|c| c.bbox.check_min_side().is_ok()));
                }
            }
        }
    }
}
