//! Spatial thinning along sequences: which images to keep so that kept
//! images of a sequence are at least a given distance apart. Pure.

use crate::model::{ImageId, LonLat};

/// One listed image, as thinning sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ThinInput {
    /// Index of the image's sequence (any stable number), `None` when unknown.
    pub sequence: Option<u32>,
    pub captured_ms: i64,
    pub id: ImageId,
    pub position: Option<LonLat>,
}

/// Returns, for each input, whether to keep it. Along each sequence in
/// capture order (ties by id) the first image is kept, then each image at
/// least `min_m` metres from the last kept one. Images without a sequence
/// or a position are kept. Deterministic: the input order does not matter.
pub(crate) fn thin(items: &[ThinInput], min_m: f64) -> Vec<bool> {
    let mut keep = vec![true; items.len()];
    let mut order: Vec<usize> = (0..items.len())
        .filter(|&i| items[i].sequence.is_some() && items[i].position.is_some())
        .collect();
    order.sort_by_key(|&i| (items[i].sequence, items[i].captured_ms, items[i].id));
    let mut last: Option<(u32, LonLat)> = None;
    for i in order {
        let (seq, pos) = (
            items[i].sequence.expect("filtered"),
            items[i].position.expect("filtered"),
        );
        match last {
            Some((s, p)) if s == seq && p.distance_m(pos) < min_m => keep[i] = false,
            _ => last = Some((seq, pos)),
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(seq: u32, t: i64, id: u64, lon_m: f64) -> ThinInput {
        // About 1.11 m per 0.00001 degree of longitude at the equator.
        ThinInput {
            sequence: Some(seq),
            captured_ms: t,
            id: ImageId::new(id).unwrap(),
            position: LonLat::new(lon_m / 111_195.0, 0.0),
        }
    }

    #[test]
    fn keeps_first_then_every_far_enough() {
        let items: Vec<ThinInput> = (0..10)
            .map(|i| item(1, i, 100 + i as u64, i as f64 * 4.0))
            .collect();
        let keep = thin(&items, 10.0);
        let kept: Vec<usize> = (0..10).filter(|&i| keep[i]).collect();
        assert_eq!(kept, vec![0, 3, 6, 9]);
        for w in kept.windows(2) {
            let d = items[w[0]]
                .position
                .unwrap()
                .distance_m(items[w[1]].position.unwrap());
            assert!(d >= 10.0, "{d}");
        }
    }

    #[test]
    fn order_independent_and_per_sequence() {
        let mut items: Vec<ThinInput> = (0..6)
            .map(|i| item(1 + (i % 2) as u32, i, 10 + i as u64, 0.0))
            .collect();
        let a = thin(&items, 5.0);
        items.reverse();
        let mut b = thin(&items, 5.0);
        b.reverse();
        assert_eq!(a, b);
        assert_eq!(a.iter().filter(|k| **k).count(), 2, "one per sequence");
    }

    #[test]
    fn unknown_sequence_or_position_is_kept() {
        let mut x = item(1, 0, 5, 0.0);
        x.sequence = None;
        let mut y = item(1, 1, 6, 0.0);
        y.position = None;
        assert_eq!(
            thin(&[x, y, item(1, 2, 7, 0.0)], 10.0),
            vec![true, true, true]
        );
    }
}
