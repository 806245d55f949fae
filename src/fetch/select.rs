//! The select stage (pure): orders the listed images by grid, capture time
//! and id, counts them per grid, thins them along their sequences
//! (`--min-spacing`), then keeps the first `--max-images`. Also the rough
//! size of what is kept, for `--dry-run`.

use super::spill::Listed;
use crate::model::ThumbSize;
use crate::thin::{self, ThinInput};

/// What the select stage keeps, and its counts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Selection {
    /// The images to download, in order.
    pub kept: Vec<Listed>,
    /// Images listed, before thinning and `--max-images`.
    pub listed: u64,
    /// Listed images without any position.
    pub without_position: u64,
    /// Images listed per grid (plan order).
    pub listed_per_grid: Vec<u64>,
    /// Images left out by thinning per grid.
    pub thinned_per_grid: Vec<u64>,
}

/// Selects from `items` of a plan of `grids` grids.
pub(crate) fn select(
    mut items: Vec<Listed>,
    grids: usize,
    min_spacing_m: Option<f64>,
    max_images: Option<u64>,
) -> Selection {
    items.sort_by_key(|l| (l.grid, l.captured_ms, l.id));
    let mut listed_per_grid = vec![0u64; grids];
    for l in &items {
        listed_per_grid[l.grid as usize] += 1;
    }
    let listed = items.len() as u64;
    let without_position = items.iter().filter(|l| !l.has_position).count() as u64;
    let mut thinned_per_grid = vec![0u64; grids];
    if let Some(min_m) = min_spacing_m {
        thin_out(&mut items, min_m, &mut thinned_per_grid);
    }
    if let Some(max) = max_images {
        items.truncate(usize::try_from(max).unwrap_or(usize::MAX));
    }
    Selection {
        kept: items,
        listed,
        without_position,
        listed_per_grid,
        thinned_per_grid,
    }
}

/// Drops the images thinning leaves out, counting them per grid.
fn thin_out(items: &mut Vec<Listed>, min_m: f64, thinned: &mut [u64]) {
    let input: Vec<ThinInput> = items
        .iter()
        .map(|l| ThinInput {
            sequence: l.seq,
            captured_ms: l.captured_ms,
            id: l.id,
            position: l.position,
        })
        .collect();
    let mut keep = thin::thin(&input, min_m).into_iter();
    items.retain(|l| {
        let kept = keep.next().unwrap_or(true);
        if !kept {
            thinned[l.grid as usize] += 1;
        }
        kept
    });
}

impl Selection {
    /// A rough size of the kept images.
    pub(crate) fn estimated_bytes(&self, size: ThumbSize) -> u64 {
        self.kept
            .iter()
            .map(|l| estimate_bytes(size, l.width, l.height))
            .sum()
    }
}

/// A rough size of one image: measured averages per rendition; originals by
/// their pixel count at about 0.2 bytes per pixel.
fn estimate_bytes(size: ThumbSize, w: Option<u32>, h: Option<u32>) -> u64 {
    match size {
        ThumbSize::S256 => 12_000,
        ThumbSize::S1024 => 150_000,
        ThumbSize::S2048 => 500_000,
        ThumbSize::Original => match (w, h) {
            (Some(w), Some(h)) => (f64::from(w) * f64::from(h) * 0.2) as u64,
            _ => 2_000_000,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ImageId, LonLat};

    /// Image `id` of grid `grid`, captured at `ms`, in sequence 0 at `lon`
    /// (or without a position).
    fn item(id: u64, grid: u32, ms: i64, lon: Option<f64>) -> Listed {
        let position = lon.map(|x| LonLat::new(x, 48.0).unwrap());
        Listed {
            grid,
            id: ImageId::new(id).unwrap(),
            captured_ms: ms,
            url: None,
            slot: Default::default(),
            position,
            has_position: position.is_some(),
            seq: Some(0),
            width: Some(1000),
            height: Some(500),
        }
    }

    fn ids(s: &Selection) -> Vec<u64> {
        s.kept.iter().map(|l| l.id.get()).collect()
    }

    #[test]
    fn ordered_by_grid_time_and_id_and_counted_per_grid() {
        let items = vec![
            item(9, 1, 5, Some(2.0)),
            item(3, 0, 7, None),
            item(2, 0, 7, Some(2.0)),
            item(8, 0, 1, Some(2.0)),
        ];
        let s = select(items, 3, None, None);
        assert_eq!(ids(&s), [8, 2, 3, 9]);
        assert_eq!(s.listed, 4);
        assert_eq!(s.without_position, 1);
        assert_eq!(s.listed_per_grid, [3, 1, 0]);
        assert_eq!(s.thinned_per_grid, [0, 0, 0]);
        let s = select(s.kept, 3, None, Some(2));
        assert_eq!(ids(&s), [8, 2]);
        assert_eq!(s.listed, 4, "counted before --max-images");
    }

    #[test]
    fn thinning_comes_before_max_images_and_is_counted_per_grid() {
        // One sequence: 1 m apart in grid 0, then 1 km away in grid 1.
        let m = 1.0 / 73_000.0; // about a metre of longitude at 48°
        let items = vec![
            item(1, 0, 1, Some(2.0)),
            item(2, 0, 2, Some(2.0 + m)),
            item(3, 0, 3, Some(2.0 + 2.0 * m)),
            item(4, 1, 4, Some(2.02)),
            item(5, 1, 5, Some(2.02 + m)),
        ];
        let s = select(items, 2, Some(10.0), Some(2));
        assert_eq!(ids(&s), [1, 4]);
        assert_eq!(s.thinned_per_grid, [2, 1]);
        assert_eq!(s.listed_per_grid, [3, 2]);
    }

    #[test]
    fn estimates() {
        let s = select(
            vec![item(1, 0, 0, None), item(2, 0, 0, None)],
            1,
            None,
            None,
        );
        assert_eq!(s.estimated_bytes(ThumbSize::S256), 24_000);
        assert_eq!(s.estimated_bytes(ThumbSize::Original), 200_000);
        assert_eq!(
            estimate_bytes(ThumbSize::Original, None, Some(3)),
            2_000_000
        );
    }
}
