//! Deterministic world generation (sequences of images around hot spots) and ground-truth queries.

use std::collections::HashMap;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const METRES_PER_DEG: f64 = 111_320.0;
const GRID_CELL_DEG: f64 = 0.002;
const START_2015_MS: i64 = 1_420_070_400_000;
const END_2025_MS: i64 = 1_767_139_200_000;
const WRAP_2_32: f64 = 4_294_967_296.0;
/// `WorldSpec::computed_offset_m` of the built-in worlds.
pub const DEFAULT_COMPUTED_OFFSET_M: f64 = 4.0;

/// A Gaussian cluster of sequences; `weight` is relative to the other hot spots and the background.
#[derive(Clone, Debug, PartialEq)]
pub struct Hotspot {
    pub center: [f64; 2],
    pub sigma_deg: f64,
    pub weight: f64,
}

/// Everything that determines a world; the same spec always yields the same world.
#[derive(Clone, Debug, PartialEq)]
pub struct WorldSpec {
    pub seed: u64,
    /// min_lon, min_lat, max_lon, max_lat
    pub bbox: [f64; 4],
    pub images: usize,
    pub hotspots: Vec<Hotspot>,
    /// Relative weight of sequences that start anywhere in `bbox`.
    pub background_weight: f64,
    pub creators: usize,
    pub organizations: usize,
    /// How many images get their original geometry snapped exactly onto a 0.001 degree grid node.
    pub grid_snapped: usize,
    /// The largest distance (metres) of `computed_geometry` from `geometry`; each image's offset
    /// is uniform in [0, this) in a uniform direction. 4 m by default (real data shows 30-50 m).
    pub computed_offset_m: f64,
}

impl WorldSpec {
    /// About 2,600 images around a small town; one hot spot holds more than 2,000 images inside
    /// one 0.005 x 0.005 degree box.
    pub fn demo() -> Self {
        WorldSpec {
            seed: 42,
            bbox: [8.500, 47.350, 8.560, 47.390],
            images: 2_600,
            hotspots: vec![Hotspot {
                center: [8.5305, 47.3705],
                sigma_deg: 0.0006,
                weight: 0.82,
            }],
            background_weight: 0.18,
            creators: 24,
            organizations: 4,
            grid_snapped: 12,
            computed_offset_m: DEFAULT_COMPUTED_OFFSET_M,
        }
    }

    /// Most images in one hot spot of about 0.01 x 0.01 degrees.
    pub fn dense(images: usize) -> Self {
        WorldSpec {
            seed: 7,
            bbox: [2.330, 48.850, 2.370, 48.880],
            images,
            hotspots: vec![Hotspot {
                center: [2.350, 48.865],
                sigma_deg: 0.0018,
                weight: 9.0,
            }],
            background_weight: 1.0,
            creators: 36,
            organizations: 6,
            grid_snapped: (images / 200).max(8),
            computed_offset_m: DEFAULT_COMPUTED_OFFSET_M,
        }
    }

    /// The same spec with computed positions up to `m` metres from the original ones (a value
    /// that is not finite or below 0 counts as 0).
    pub fn with_computed_offset_m(mut self, m: f64) -> Self {
        self.computed_offset_m = m;
        self
    }

    /// A 0.2 x 0.2 degree area with several hot spots of different sizes.
    pub fn city(images: usize) -> Self {
        WorldSpec {
            seed: 1234,
            bbox: [13.300, 52.420, 13.500, 52.620],
            images,
            hotspots: vec![
                Hotspot {
                    center: [13.405, 52.520],
                    sigma_deg: 0.004,
                    weight: 4.0,
                },
                Hotspot {
                    center: [13.350, 52.500],
                    sigma_deg: 0.002,
                    weight: 2.0,
                },
                Hotspot {
                    center: [13.460, 52.560],
                    sigma_deg: 0.006,
                    weight: 2.0,
                },
                Hotspot {
                    center: [13.330, 52.590],
                    sigma_deg: 0.0015,
                    weight: 1.0,
                },
                Hotspot {
                    center: [13.480, 52.450],
                    sigma_deg: 0.003,
                    weight: 1.0,
                },
            ],
            background_weight: 3.0,
            creators: 48,
            organizations: 8,
            grid_snapped: (images / 200).max(8),
            computed_offset_m: DEFAULT_COMPUTED_OFFSET_M,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Creator {
    pub id: u64,
    pub username: Arc<str>,
}

/// One simulated image. `None` means the field is absent from API answers.
#[derive(Clone, Debug, PartialEq)]
pub struct SimImage {
    pub id: u64,
    pub sequence: Arc<str>,
    pub geometry: Option<[f64; 2]>,
    pub computed_geometry: Option<[f64; 2]>,
    /// Where the search index places the image: `geometry`, or a hidden spot when it has none.
    pub index_pos: [f64; 2],
    pub compass_angle: f64,
    pub computed_compass_angle: Option<f64>,
    /// As served: a negative altitude appears wrapped as 2^32 + value.
    pub altitude: Option<f64>,
    pub computed_altitude: Option<f64>,
    pub captured_at: i64,
    pub is_pano: bool,
    pub make: Option<Arc<str>>,
    pub model: Option<Arc<str>>,
    pub creator: Creator,
    pub organization: Option<u64>,
    pub width: u32,
    pub height: u32,
    pub exif_orientation: u8,
    pub quality_score: f64,
    pub atomic_scale: Option<f64>,
    pub camera_parameters: Option<[f64; 3]>,
    pub computed_rotation: Option<[f64; 3]>,
    pub merge_cc: Option<u64>,
    pub mesh_id: u64,
    pub sfm_cluster_id: u64,
    pub detection_ids: Vec<u64>,
}

/// Which position of an image a bbox search filters on (and clips, and orders by).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BboxPosition {
    /// The original `geometry` (the hidden index position for images without one).
    #[default]
    Original,
    /// The `computed_geometry`; images without one fall back to their original position (the
    /// hidden index position for images without any geometry).
    Computed,
}

impl SimImage {
    /// Where a bbox search with this position rule places the image.
    pub fn search_pos(&self, pos: BboxPosition) -> [f64; 2] {
        match pos {
            BboxPosition::Original => self.index_pos,
            BboxPosition::Computed => self.computed_geometry.unwrap_or(self.index_pos),
        }
    }

    pub fn camera_type(&self) -> &'static str {
        if self.is_pano {
            "equirectangular"
        } else {
            "perspective"
        }
    }
}

/// Filters of the ground truth; they mean exactly what the server's search filters mean
/// (time bounds are inclusive).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TruthFilter {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub pano: Option<bool>,
    pub creator: Option<String>,
    pub organization: Option<String>,
}

impl TruthFilter {
    pub fn accepts(&self, img: &SimImage) -> bool {
        self.since_ms.is_none_or(|t| img.captured_at >= t)
            && self.until_ms.is_none_or(|t| img.captured_at <= t)
            && self.pano.is_none_or(|p| img.is_pano == p)
            && self
                .creator
                .as_deref()
                .is_none_or(|c| &*img.creator.username == c)
            && self
                .organization
                .as_deref()
                .is_none_or(|o| img.organization.map(|v| v.to_string()).as_deref() == Some(o))
    }
}

/// The generated images plus the indexes the server uses.
#[derive(Debug)]
pub struct World {
    spec: WorldSpec,
    images: Vec<SimImage>,
    by_id: HashMap<u64, u32>,
    grid: HashMap<(i64, i64), Vec<u32>>,
    sequences: HashMap<Arc<str>, Vec<u32>>,
    /// The largest distance (degrees, per axis) of any `geometry` or `computed_geometry` from
    /// its image's `index_pos`: how far beyond a box the grid must be searched.
    margin_deg: f64,
}

/// A move of `SimConfig::moves` names an image the world does not have.
#[derive(Clone, Debug, PartialEq)]
pub struct UnknownImage(pub u64);

impl std::fmt::Display for UnknownImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot move or hide image {}: the world has no such image; use an id from World::images()",
            self.0
        )
    }
}

impl std::error::Error for UnknownImage {}

pub fn in_box(p: [f64; 2], b: [f64; 4]) -> bool {
    p[0] >= b[0] && p[0] <= b[2] && p[1] >= b[1] && p[1] <= b[3]
}

/// The per-axis distance of an image's served positions from its index position.
fn position_spread(img: &SimImage) -> f64 {
    [img.geometry, img.computed_geometry]
        .into_iter()
        .flatten()
        .map(|p| {
            (p[0] - img.index_pos[0])
                .abs()
                .max((p[1] - img.index_pos[1]).abs())
        })
        .fold(0.0, f64::max)
}

fn cell(v: f64) -> i64 {
    (v / GRID_CELL_DEG).floor() as i64
}

fn gauss(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A computed-position offset in [0, max_m) metres (0 when `max_m` is not a positive number;
/// one draw is consumed either way so the rest of the world does not change).
fn offset_m(rng: &mut ChaCha8Rng, max_m: f64) -> f64 {
    if max_m.is_finite() && max_m > 0.0 {
        rng.random_range(0.0..max_m)
    } else {
        let _: f64 = rng.random_range(0.0..1.0);
        0.0
    }
}

fn random_id(rng: &mut ChaCha8Rng, taken: &mut std::collections::HashSet<u64>) -> u64 {
    loop {
        let id = rng.random_range(100_000_000_000_000u64..10_000_000_000_000_000u64);
        if taken.insert(id) {
            return id;
        }
    }
}

fn sequence_key(rng: &mut ChaCha8Rng) -> String {
    const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..22)
        .map(|_| ALNUM[rng.random_range(0..ALNUM.len())] as char)
        .collect()
}

const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "ra", "zen", "tor", "vi", "sel", "dun", "pa", "quo", "rix", "ne", "bal",
];

struct Camera {
    make: &'static str,
    model: &'static str,
    width: u32,
    height: u32,
    pano: bool,
}

const CAMERAS: &[Camera] = &[
    Camera {
        make: "Apple",
        model: "iPhone 12",
        width: 4032,
        height: 3024,
        pano: false,
    },
    Camera {
        make: "samsung",
        model: "SM-G991B",
        width: 4000,
        height: 3000,
        pano: false,
    },
    Camera {
        make: "GoPro",
        model: "HERO9 Black",
        width: 4000,
        height: 3000,
        pano: false,
    },
    Camera {
        make: "Garmin",
        model: "VIRB Ultra 30",
        width: 2048,
        height: 1536,
        pano: false,
    },
    Camera {
        make: "GoPro",
        model: "Fusion",
        width: 5760,
        height: 2880,
        pano: true,
    },
    Camera {
        make: "Insta360",
        model: "ONE X2",
        width: 6080,
        height: 3040,
        pano: true,
    },
];

impl World {
    pub fn generate(spec: &WorldSpec) -> World {
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
        let mut taken = std::collections::HashSet::new();
        let creators: Vec<Creator> = (0..spec.creators.max(1))
            .map(|i| {
                let a = SYLLABLES[rng.random_range(0..SYLLABLES.len())];
                let b = SYLLABLES[rng.random_range(0..SYLLABLES.len())];
                Creator {
                    id: random_id(&mut rng, &mut taken),
                    username: format!("{a}{b}{i}").into(),
                }
            })
            .collect();
        let orgs: Vec<u64> = (0..spec.organizations.max(1))
            .map(|_| random_id(&mut rng, &mut taken))
            .collect();
        let total_weight =
            spec.background_weight + spec.hotspots.iter().map(|h| h.weight).sum::<f64>();
        let [bx0, by0, bx1, by1] = spec.bbox;
        let mut images: Vec<SimImage> = Vec::with_capacity(spec.images);
        let mut plan: Vec<(Option<Hotspot>, usize)> = Vec::new();
        let mut assigned = 0usize;
        for h in &spec.hotspots {
            let share = h.weight / total_weight.max(f64::MIN_POSITIVE);
            let quota = ((spec.images as f64 * share).round() as usize).min(spec.images - assigned);
            assigned += quota;
            plan.push((Some(h.clone()), quota));
        }
        plan.push((None, spec.images - assigned));
        for (hotspot, quota) in plan {
            let target = images.len() + quota;
            while images.len() < target {
                let len = rng.random_range(20..=300).min(target - images.len());
                let (mut lon, mut lat) = match &hotspot {
                    Some(h) => (
                        h.center[0] + gauss(&mut rng) * h.sigma_deg,
                        h.center[1] + gauss(&mut rng) * h.sigma_deg,
                    ),
                    None => (rng.random_range(bx0..=bx1), rng.random_range(by0..=by1)),
                };
                lon = lon.clamp(bx0, bx1);
                lat = lat.clamp(by0, by1);
                let seq: Arc<str> = sequence_key(&mut rng).into();
                let creator = creators[rng.random_range(0..creators.len())].clone();
                let organization = rng
                    .random_bool(0.3)
                    .then(|| orgs[rng.random_range(0..orgs.len())]);
                let pano = rng.random_bool(0.1);
                let cams: Vec<&Camera> = CAMERAS.iter().filter(|c| c.pano == pano).collect();
                let cam = cams[rng.random_range(0..cams.len())];
                let has_make = !rng.random_bool(0.1);
                let base_alt = rng.random_range(20.0..900.0);
                let focal = rng.random_range(0.6..1.1);
                let merge_cc = rng.random_range(1u64 << 60..u64::MAX >> 1);
                let mut heading: f64 = rng.random_range(0.0..360.0);
                let mut t = rng.random_range(START_2015_MS..END_2025_MS);
                for _ in 0..len {
                    let id = random_id(&mut rng, &mut taken);
                    let computed = (!rng.random_bool(0.05)).then(|| {
                        let d = offset_m(&mut rng, spec.computed_offset_m) / METRES_PER_DEG;
                        let a = rng.random_range(0.0..std::f64::consts::TAU);
                        [
                            lon + d * a.cos() / lat.to_radians().cos(),
                            lat + d * a.sin(),
                        ]
                    });
                    let compass = heading.rem_euclid(360.0);
                    let altitude = if rng.random_bool(0.05) {
                        None
                    } else if rng.random_bool(0.02) {
                        Some(WRAP_2_32 - rng.random_range(0.5..30.0))
                    } else {
                        Some(base_alt + rng.random_range(-3.0..3.0))
                    };
                    let orientation = if rng.random_bool(0.9) { 1 } else { 3 };
                    images.push(SimImage {
                        id,
                        sequence: seq.clone(),
                        geometry: Some([lon, lat]),
                        computed_geometry: computed,
                        index_pos: [lon, lat],
                        compass_angle: compass,
                        computed_compass_angle: computed
                            .map(|_| (compass + rng.random_range(-4.0..4.0)).rem_euclid(360.0)),
                        altitude,
                        computed_altitude: computed.map(|_| base_alt + rng.random_range(-8.0..8.0)),
                        captured_at: t,
                        is_pano: pano,
                        make: has_make.then(|| cam.make.into()),
                        model: has_make.then(|| cam.model.into()),
                        creator: creator.clone(),
                        organization,
                        width: cam.width,
                        height: cam.height,
                        exif_orientation: orientation,
                        quality_score: rng.random_range(0.3..1.0),
                        atomic_scale: computed.map(|_| rng.random_range(0.9..1.1)),
                        camera_parameters: (!pano).then(|| {
                            [
                                focal,
                                rng.random_range(-0.0001..0.0001),
                                rng.random_range(-0.0001..0.0001),
                            ]
                        }),
                        computed_rotation: computed.map(|_| {
                            [
                                rng.random_range(-1.6..1.6),
                                rng.random_range(-0.1..0.1),
                                rng.random_range(-0.1..0.1),
                            ]
                        }),
                        merge_cc: computed.map(|_| merge_cc),
                        mesh_id: random_id(&mut rng, &mut taken),
                        sfm_cluster_id: random_id(&mut rng, &mut taken),
                        detection_ids: (0..rng.random_range(0..3))
                            .map(|_| random_id(&mut rng, &mut taken))
                            .collect(),
                    });
                    t += rng.random_range(1_000..=3_000);
                    let step = rng.random_range(3.0..15.0) / METRES_PER_DEG;
                    heading += gauss(&mut rng) * 12.0;
                    if let Some(h) = &hotspot {
                        let (dx, dy) = (h.center[0] - lon, h.center[1] - lat);
                        if (dx * dx + dy * dy).sqrt() > 2.5 * h.sigma_deg {
                            heading = dy.atan2(dx).to_degrees() + gauss(&mut rng) * 20.0;
                        }
                    }
                    let (nlon, nlat) = (
                        lon + step * heading.to_radians().cos() / lat.to_radians().cos(),
                        lat + step * heading.to_radians().sin(),
                    );
                    if in_box([nlon, nlat], spec.bbox) {
                        (lon, lat) = (nlon, nlat);
                    } else {
                        heading += 180.0;
                    }
                }
            }
        }
        let n = images.len();
        if n > 0 {
            for _ in 0..spec.grid_snapped {
                let img = &mut images[rng.random_range(0..n)];
                let snap = |v: f64| (v * 1000.0).round() / 1000.0;
                let p = [snap(img.index_pos[0]), snap(img.index_pos[1])];
                img.geometry = Some(p);
                img.index_pos = p;
            }
            let hidden = if n >= 100 { (n / 500).max(1) } else { 0 };
            for _ in 0..hidden {
                let img = &mut images[rng.random_range(0..n)];
                img.geometry = None;
                img.computed_geometry = None;
                img.computed_altitude = None;
                img.computed_compass_angle = None;
            }
        }
        World::index(spec.clone(), images)
    }

    fn index(spec: WorldSpec, images: Vec<SimImage>) -> World {
        let mut by_id = HashMap::with_capacity(images.len());
        let mut grid: HashMap<(i64, i64), Vec<u32>> = HashMap::new();
        let mut sequences: HashMap<Arc<str>, Vec<u32>> = HashMap::new();
        for (i, img) in images.iter().enumerate() {
            by_id.insert(img.id, i as u32);
            grid.entry((cell(img.index_pos[0]), cell(img.index_pos[1])))
                .or_default()
                .push(i as u32);
            sequences
                .entry(img.sequence.clone())
                .or_default()
                .push(i as u32);
        }
        for v in sequences.values_mut() {
            v.sort_by_key(|&i| images[i as usize].captured_at);
        }
        let margin_deg = images.iter().map(position_spread).fold(0.0, f64::max);
        World {
            spec,
            images,
            by_id,
            grid,
            sequences,
            margin_deg,
        }
    }

    /// The same world with some images moved: `geometry` (and the index position) becomes the
    /// given `[lon, lat]`; `computed_geometry` moves by the same amount (keeps its offset).
    /// Images without geometry get one.
    pub fn with_moves(&self, moves: &[(u64, [f64; 2])]) -> Result<World, UnknownImage> {
        let mut images = self.images.clone();
        for &(id, to) in moves {
            let &i = self.by_id.get(&id).ok_or(UnknownImage(id))?;
            let img = &mut images[i as usize];
            let (dx, dy) = (to[0] - img.index_pos[0], to[1] - img.index_pos[1]);
            img.computed_geometry = img.computed_geometry.map(|c| [c[0] + dx, c[1] + dy]);
            img.geometry = Some(to);
            img.index_pos = to;
        }
        Ok(World::index(self.spec.clone(), images))
    }

    /// The same world with some images' positions hidden: they lose `geometry` and
    /// `computed_geometry` (and what comes with the latter) and are indexed at the given
    /// `[lon, lat]`, where bbox searches find them.
    pub fn with_hidden(&self, hide: &[(u64, [f64; 2])]) -> Result<World, UnknownImage> {
        let mut images = self.images.clone();
        for &(id, at) in hide {
            let &i = self.by_id.get(&id).ok_or(UnknownImage(id))?;
            let img = &mut images[i as usize];
            img.geometry = None;
            img.computed_geometry = None;
            img.computed_altitude = None;
            img.computed_compass_angle = None;
            img.index_pos = at;
        }
        Ok(World::index(self.spec.clone(), images))
    }

    /// The same world with `f` applied to every image (ids and positions must not change).
    pub(crate) fn map_images(&self, f: impl Fn(&mut SimImage)) -> World {
        let mut images = self.images.clone();
        images.iter_mut().for_each(f);
        World::index(self.spec.clone(), images)
    }

    /// How far (degrees, per axis) an image's served positions may lie from its index position.
    pub fn margin_deg(&self) -> f64 {
        self.margin_deg
    }

    pub fn spec(&self) -> &WorldSpec {
        &self.spec
    }

    pub fn images(&self) -> &[SimImage] {
        &self.images
    }

    pub fn get(&self, id: u64) -> Option<&SimImage> {
        self.by_id.get(&id).map(|&i| &self.images[i as usize])
    }

    /// Images of a sequence in capture order (empty for an unknown sequence).
    pub fn sequence(&self, key: &str) -> Vec<&SimImage> {
        self.sequences
            .get(key)
            .map(|v| v.iter().map(|&i| &self.images[i as usize]).collect())
            .unwrap_or_default()
    }

    /// All images the search index places in the closed bbox, including images without
    /// geometry at their hidden position. Order: unspecified.
    pub fn indexed_in(&self, bbox: [f64; 4]) -> Vec<&SimImage> {
        let mut out = Vec::new();
        let (cx0, cy0, cx1, cy1) = (cell(bbox[0]), cell(bbox[1]), cell(bbox[2]), cell(bbox[3]));
        let cells = (cx1 - cx0 + 1).saturating_mul(cy1 - cy0 + 1);
        if cells > self.grid.len() as i64 {
            out.extend(self.images.iter().filter(|i| in_box(i.index_pos, bbox)));
            return out;
        }
        for cx in cx0..=cx1 {
            for cy in cy0..=cy1 {
                if let Some(v) = self.grid.get(&(cx, cy)) {
                    out.extend(
                        v.iter()
                            .map(|&i| &self.images[i as usize])
                            .filter(|i| in_box(i.index_pos, bbox)),
                    );
                }
            }
        }
        out
    }

    /// The images a bbox search with this position rule finds in the closed bbox (before its
    /// other filters). Order: unspecified.
    pub fn search_in(&self, bbox: [f64; 4], pos: BboxPosition) -> Vec<&SimImage> {
        match pos {
            BboxPosition::Original => self.indexed_in(bbox),
            BboxPosition::Computed => {
                let m = self.margin_deg;
                let grown = [bbox[0] - m, bbox[1] - m, bbox[2] + m, bbox[3] + m];
                let mut v = self.indexed_in(grown);
                v.retain(|i| in_box(i.search_pos(pos), bbox));
                v
            }
        }
    }

    /// Sorted ids that a complete bbox search with this position rule returns: like
    /// `indexed_truth` (which is the `Original` case), on the chosen position.
    pub fn search_truth(
        &self,
        bbox: [f64; 4],
        filter: &TruthFilter,
        pos: BboxPosition,
    ) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .search_in(bbox, pos)
            .into_iter()
            .filter(|i| filter.accepts(i))
            .map(|i| i.id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Sorted ids whose original geometry lies in the closed bbox and pass the filter.
    pub fn ground_truth(&self, bbox: [f64; 4], filter: &TruthFilter) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .indexed_in(bbox)
            .into_iter()
            .filter(|i| i.geometry.is_some() && filter.accepts(i))
            .map(|i| i.id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Like `ground_truth`, but also counts images without geometry where the index hides them:
    /// exactly the set a complete bbox search returns.
    pub fn indexed_truth(&self, bbox: [f64; 4], filter: &TruthFilter) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .indexed_in(bbox)
            .into_iter()
            .filter(|i| filter.accepts(i))
            .map(|i| i.id)
            .collect();
        ids.sort_unstable();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic() {
        let spec = WorldSpec::demo();
        let a = World::generate(&spec);
        let b = World::generate(&spec);
        assert_eq!(a.images(), b.images());
        let mut other = spec.clone();
        other.seed += 1;
        let c = World::generate(&other);
        assert_ne!(a.images()[0].id, c.images()[0].id);
    }

    #[test]
    fn demo_world_has_expected_shape() {
        let w = World::generate(&WorldSpec::demo());
        let n = w.images().len();
        assert_eq!(n, WorldSpec::demo().images);
        let ids: std::collections::HashSet<u64> = w.images().iter().map(|i| i.id).collect();
        assert_eq!(ids.len(), n);
        for img in w.images() {
            assert!((100_000_000_000_000..10_000_000_000_000_000).contains(&img.id));
            assert_eq!(img.sequence.len(), 22);
            assert!(
                img.sequence
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            );
            assert!(in_box(img.index_pos, w.spec().bbox));
        }
        assert!(w.images().iter().any(|i| i.geometry.is_none()));
        assert!(
            w.images()
                .iter()
                .any(|i| i.altitude.is_some_and(|a| a > 4e9))
        );
        let on_grid = w
            .images()
            .iter()
            .filter_map(|i| i.geometry)
            .filter(|g| g.iter().all(|v| (v * 1000.0).round() / 1000.0 == *v))
            .count();
        assert!(on_grid >= 5, "{on_grid}");
        let h = &WorldSpec::demo().hotspots[0];
        let b = [
            h.center[0] - 0.0025,
            h.center[1] - 0.0025,
            h.center[0] + 0.0025,
            h.center[1] + 0.0025,
        ];
        assert!(w.indexed_in(b).len() > 2000, "{}", w.indexed_in(b).len());
    }

    #[test]
    fn sequences_are_ordered_and_spaced() {
        let w = World::generate(&WorldSpec::city(3000));
        let img = &w.images()[0];
        let seq = w.sequence(&img.sequence);
        assert!(seq.len() >= 20);
        for pair in seq.windows(2) {
            let dt = pair[1].captured_at - pair[0].captured_at;
            assert!((1_000..=3_000).contains(&dt));
        }
        assert!(w.sequence("nope").is_empty());
    }

    #[test]
    fn grid_query_matches_full_scan() {
        let w = World::generate(&WorldSpec::city(5000));
        let b = [13.40, 52.51, 13.41, 52.53];
        let mut scan: Vec<u64> = w
            .images()
            .iter()
            .filter(|i| i.geometry.is_some_and(|g| in_box(g, b)))
            .map(|i| i.id)
            .collect();
        scan.sort_unstable();
        assert_eq!(w.ground_truth(b, &TruthFilter::default()), scan);
    }
}
