//! Vector tiles that lag the Graph: images the Graph serves but the tiles do not show yet
//! (`SimConfig::tiles_missing`), and deleted images the tiles still show (`tiles_stale`).

use std::collections::HashSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::world::{SimImage, World, in_box};

const METRES_PER_DEG: f64 = 111_320.0;
const STALE_SEED: u64 = 0x57a1_e1d5;

/// Which images the tiles leave out and which unknown ones they add.
#[derive(Debug, Default)]
pub struct TileLag {
    missing: HashSet<u64>,
    missing_ids: Vec<u64>,
    stale: Vec<SimImage>,
    stale_ids: Vec<u64>,
}

/// Images with at least one served position, sorted by id.
fn positioned(world: &World) -> Vec<&SimImage> {
    let mut v: Vec<&SimImage> = world
        .images()
        .iter()
        .filter(|i| i.geometry.is_some())
        .collect();
    v.sort_unstable_by_key(|i| i.id);
    v
}

/// `n` items spread evenly over `items` (every k-th, starting half a step in).
fn spread<'a>(items: &[&'a SimImage], n: usize, start_half: bool) -> Vec<&'a SimImage> {
    let n = n.min(items.len());
    if n == 0 {
        return Vec::new();
    }
    let k = items.len() / n;
    let first = if start_half { k / 2 } else { 0 };
    (0..n).map(|i| items[first + i * k]).collect()
}

impl TileLag {
    /// Chooses `missing` images of the world (every k-th positioned image by id) and invents
    /// `stale` deleted ones (near every k-th positioned image, from its sequence).
    pub fn new(world: &World, missing: usize, stale: usize) -> TileLag {
        if missing == 0 && stale == 0 {
            return TileLag::default();
        }
        let all = positioned(world);
        let mut missing_ids: Vec<u64> = spread(&all, missing, true).iter().map(|i| i.id).collect();
        missing_ids.sort_unstable();
        let stale = stale_images(world, &spread(&all, stale, false));
        let mut stale_ids: Vec<u64> = stale.iter().map(|i| i.id).collect();
        stale_ids.sort_unstable();
        TileLag {
            missing: missing_ids.iter().copied().collect(),
            missing_ids,
            stale,
            stale_ids,
        }
    }

    /// True when the tiles leave this image out.
    pub fn is_missing(&self, id: u64) -> bool {
        !self.missing.is_empty() && self.missing.contains(&id)
    }

    /// Sorted ids of the images the tiles leave out.
    pub fn missing_ids(&self) -> &[u64] {
        &self.missing_ids
    }

    /// Sorted ids of the deleted images the tiles still show.
    pub fn stale_ids(&self) -> &[u64] {
        &self.stale_ids
    }

    /// The deleted images the tiles still show (only in the z14 `image` layer).
    pub fn stale(&self) -> &[SimImage] {
        &self.stale
    }
}

/// One deleted image per base: the base's sequence, creator and camera, captured 500 ms
/// later, placed 1-3 m away (inside the world), with a fresh id the world does not know.
fn stale_images(world: &World, bases: &[&SimImage]) -> Vec<SimImage> {
    let mut rng = ChaCha8Rng::seed_from_u64(world.spec().seed ^ STALE_SEED);
    let mut taken = HashSet::new();
    let b = world.spec().bbox;
    bases
        .iter()
        .map(|base| {
            let id = loop {
                let id = rng.random_range(100_000_000_000_000u64..10_000_000_000_000_000u64);
                if world.get(id).is_none() && taken.insert(id) {
                    break id;
                }
            };
            let d = rng.random_range(1.0..3.0) / METRES_PER_DEG;
            let a = rng.random_range(0.0..std::f64::consts::TAU);
            let shift = |p: [f64; 2]| {
                let q = [
                    p[0] + d * a.cos() / p[1].to_radians().cos(),
                    p[1] + d * a.sin(),
                ];
                if in_box(q, b) { q } else { p }
            };
            let mut img = (*base).clone();
            img.id = id;
            img.geometry = img.geometry.map(shift);
            img.computed_geometry = img.computed_geometry.map(shift);
            img.index_pos = img.geometry.unwrap_or(img.index_pos);
            img.captured_at += 500;
            img
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WorldSpec;

    #[test]
    fn lag_sets_are_deterministic_spread_and_disjoint_from_the_graph() {
        let w = World::generate(&WorldSpec::demo());
        let a = TileLag::new(&w, 40, 30);
        let b = TileLag::new(&w, 40, 30);
        assert_eq!(a.missing_ids(), b.missing_ids());
        assert_eq!(a.stale_ids(), b.stale_ids());
        assert_eq!(a.missing_ids().len(), 40);
        assert_eq!(a.stale_ids().len(), 30);
        assert!(a.missing_ids().iter().all(|&id| w.get(id).is_some()));
        assert!(a.stale_ids().iter().all(|&id| w.get(id).is_none()));
        for s in a.stale() {
            assert!(in_box(s.geometry.unwrap(), w.spec().bbox));
            assert!(!w.sequence(&s.sequence).is_empty());
        }
        assert!(TileLag::new(&w, 0, 0).missing_ids().is_empty());
        assert_eq!(TileLag::new(&w, 1_000_000, 0).missing_ids().len(), 2595);
    }
}
