//! Cross-check of the simulator's tiles with a maintained MVT decoder (`geozero`, `with-mvt`):
//! layer headers, Feature.id counter, property value types, positions and the image id set.

use std::collections::{BTreeSet, HashMap};

use geozero::mvt::{Message, Tile};
use geozero::{ColumnValue, FeatureProcessor, GeomProcessor, PropertyProcessor};
use mlysim::tiles::{self, Tileset};
use mlysim::{World, WorldSpec};

#[derive(Clone, Debug, PartialEq)]
enum Prop {
    Long(i64),
    Str(String),
    Bool(bool),
}

/// One decoded feature: its properties and its vertices in tile units.
type Decoded = (HashMap<String, Prop>, Vec<(f64, f64)>);

#[derive(Default)]
struct Collect {
    features: Vec<Decoded>,
}

impl GeomProcessor for Collect {
    fn xy(&mut self, x: f64, y: f64, _idx: usize) -> geozero::error::Result<()> {
        self.features.last_mut().unwrap().1.push((x, y));
        Ok(())
    }
}

impl PropertyProcessor for Collect {
    fn property(&mut self, _i: usize, name: &str, v: &ColumnValue) -> geozero::error::Result<bool> {
        let p = match v {
            ColumnValue::Long(n) => Prop::Long(*n),
            ColumnValue::String(s) => Prop::Str(s.to_string()),
            ColumnValue::Bool(b) => Prop::Bool(*b),
            other => panic!("{name}: unexpected value type {other:?}"),
        };
        self.features
            .last_mut()
            .unwrap()
            .0
            .insert(name.to_string(), p);
        Ok(false)
    }
}

impl FeatureProcessor for Collect {
    fn feature_begin(&mut self, _idx: u64) -> geozero::error::Result<()> {
        self.features.push(Default::default());
        Ok(())
    }
}

fn long(p: &HashMap<String, Prop>, k: &str) -> i64 {
    match p.get(k) {
        Some(Prop::Long(n)) => *n,
        other => panic!("{k}: {other:?}"),
    }
}

#[test]
fn geozero_decodes_a_dense_z14_tile_to_the_world_data() {
    let world = World::generate(&WorldSpec::dense(20_000));
    let (x, y) = tiles::tile_of(2.350, 48.865, 14);
    for ts in [Tileset::Public, Tileset::ComputedPublic] {
        let body = tiles::render(&world, ts, 14, x, y).unwrap();
        let tile = Tile::decode(&body[..]).unwrap();
        let names: Vec<&str> = tile.layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["sequence", "image"]);
        let fids: Vec<u64> = tile
            .layers
            .iter()
            .flat_map(|l| l.features.iter().map(|f| f.id.unwrap()))
            .collect();
        assert_eq!(fids, (0..fids.len() as u64).collect::<Vec<_>>());
        for l in &tile.layers {
            assert_eq!(l.version, 2);
            assert_eq!(l.extent, Some(4096));
        }

        let mut seq = Collect::default();
        geozero::mvt::process(&tile.layers[0], &mut seq).unwrap();
        for (p, coords) in &seq.features {
            assert!(coords.len() >= 2);
            assert!(matches!(p.get("id"), Some(Prop::Str(s)) if s.len() == 22));
            let first = world.get(long(p, "image_id") as u64).unwrap();
            assert_eq!(long(p, "captured_at"), first.captured_at);
            assert!(matches!(p.get("is_pano"), Some(Prop::Bool(_))));
        }

        let mut img = Collect::default();
        geozero::mvt::process(&tile.layers[1], &mut img).unwrap();
        let mut ids = BTreeSet::new();
        for (p, coords) in &img.features {
            let i = world.get(long(p, "id") as u64).unwrap();
            assert_eq!(long(p, "captured_at"), i.captured_at);
            assert_eq!(long(p, "compass_angle"), ts.compass(i));
            assert_eq!(
                p.get("sequence_id"),
                Some(&Prop::Str(i.sequence.to_string()))
            );
            assert_eq!(p.get("is_pano"), Some(&Prop::Bool(i.is_pano)));
            assert_eq!(
                p.get("organization_id"),
                i.organization.map(|o| Prop::Long(o as i64)).as_ref()
            );
            let pos = ts.position(i).unwrap();
            let [lon, lat] = tiles::tile_point_to_lonlat(14, x, y, coords[0].0, coords[0].1);
            assert!((lon - pos[0]).abs() < 1e-5 && (lat - pos[1]).abs() < 1e-5);
            ids.insert(i.id);
        }
        let want: BTreeSet<u64> = world
            .images()
            .iter()
            .filter(|i| {
                ts.position(i)
                    .is_some_and(|p| tiles::tile_of(p[0], p[1], 14) == (x, y))
            })
            .map(|i| i.id)
            .collect();
        assert!(want.len() > 5_000, "{}", want.len());
        assert!(
            ids == want,
            "{}: {} vs {}",
            ts.name(),
            ids.len(),
            want.len()
        );
    }
}
