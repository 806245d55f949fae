//! GeoJSON (RFC 7946) bytes of the `images`, `sequences` and `grid_cells`
//! layers: lon,lat order, no `crs` member, counter-clockwise outer rings,
//! coordinates rounded to 7 decimals. Pure: no file access.

use std::io::{self, Write};

use serde_json::{Map, Value, json};

use super::schema::{self, Column, Layer, Value as Cell};
use super::{LayerSet, round_coord};
use crate::model::LonLat;
use crate::rows::{CellCoverage, Lookup};

fn pos(p: LonLat) -> Value {
    json!([round_coord(p.lon), round_coord(p.lat)])
}

/// Streams a FeatureCollection, one feature in memory at a time.
fn collection<W: Write + ?Sized>(
    w: &mut W,
    name: &str,
    features: impl Iterator<Item = Value>,
) -> io::Result<()> {
    write!(
        w,
        "{{\"type\":\"FeatureCollection\",\"name\":{},\"features\":[",
        json!(name)
    )?;
    for (i, f) in features.enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        serde_json::to_writer(&mut *w, &f)?;
    }
    w.write_all(b"]}\n")
}

/// The bytes a writer function produces, in memory (for tests and small sets).
#[cfg(test)]
pub(crate) fn to_vec(write: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> Vec<u8> {
    let mut v = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = write(&mut v);
    v
}

/// The properties of `row` (the `n`th of its layer): one per column, in order.
fn properties<R: 'static>(layer: &Layer<R>, row: &R, n: usize, lookup: &Lookup<'_>) -> Value {
    properties_of(layer.columns.iter(), row, n, lookup)
}

/// The properties of a grid cell. The last column comes second: so it has
/// been since the cells were serialised whole and their `bbox` was swapped
/// out for the last key; kept, so that the file stays byte-identical.
fn cell_properties(c: &CellCoverage, n: usize, lookup: &Lookup<'_>) -> Value {
    let cols = schema::GRID_CELLS.columns;
    let Some((last, rest)) = cols.split_last() else {
        return Value::Object(Map::new());
    };
    let (first, middle) = rest.split_at(1.min(rest.len()));
    let order = first.iter().chain([last]).chain(middle);
    properties_of(order, c, n, lookup)
}

fn properties_of<'c, R: 'static>(
    cols: impl Iterator<Item = &'c Column<R>>,
    row: &R,
    n: usize,
    lookup: &Lookup<'_>,
) -> Value {
    let mut m = Map::new();
    for c in cols {
        let v = (c.get)(row, n);
        let json = match &v {
            Cell::Null => Value::Null,
            Cell::Int(i) => json!(i),
            Cell::Real(x) => json!(x),
            Cell::Bool(b) => json!(b),
            _ => lookup
                .text(&v)
                .map_or(Value::Null, |t| Value::String(t.into_owned())),
        };
        m.insert(c.name.into(), json);
    }
    Value::Object(m)
}

/// `images.geojson`: a Point per image with a position, in id order.
#[cfg(test)]
pub(crate) fn images(set: &LayerSet) -> Vec<u8> {
    to_vec(|w| write_images(set, w))
}

/// Streams `images.geojson` into `w`.
pub(crate) fn write_images<W: Write + ?Sized>(set: &LayerSet, w: &mut W) -> io::Result<()> {
    let lookup = set.lookup();
    let features = set.drawn().enumerate().filter_map(|(n, r)| {
        let p = r.position()?;
        Some(json!({
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": pos(p)},
            "properties": properties(&schema::IMAGES, r, n, &lookup),
        }))
    });
    collection(w, "images", features)
}

/// `sequences.geojson`: a LineString per sequence, in capture order.
#[cfg(test)]
pub(crate) fn sequences(set: &LayerSet) -> Vec<u8> {
    to_vec(|w| write_sequences(set, w))
}

/// Streams `sequences.geojson` into `w`.
pub(crate) fn write_sequences<W: Write + ?Sized>(set: &LayerSet, w: &mut W) -> io::Result<()> {
    let lookup = set.lookup();
    let features = set.sequences.iter().enumerate().map(|(n, l)| {
        let points: Vec<Value> = l.points.iter().map(|&p| pos(p)).collect();
        json!({
            "type": "Feature",
            "geometry": {"type": "LineString", "coordinates": points},
            "properties": properties(&schema::SEQUENCES, l, n, &lookup),
        })
    });
    collection(w, "sequences", features)
}

/// `grid_cells.geojson`: a Polygon (counter-clockwise ring) per grid cell
/// with its coverage figures; a cell without a known box has a null geometry.
#[cfg(test)]
pub(crate) fn grid_cells(set: &LayerSet) -> Vec<u8> {
    to_vec(|w| write_grid_cells(set, w))
}

/// Streams `grid_cells.geojson` into `w`.
pub(crate) fn write_grid_cells<W: Write + ?Sized>(set: &LayerSet, w: &mut W) -> io::Result<()> {
    let lookup = set.lookup();
    let features = set.cells.iter().enumerate().map(|(n, c)| {
        let rings = |p: &geo::Polygon<f64>| -> Vec<Value> {
            std::iter::once(p.exterior())
                .chain(p.interiors())
                .map(|r| {
                    let pts: Vec<Value> = r
                        .coords()
                        .map(|c| json!([round_coord(c.x), round_coord(c.y)]))
                        .collect();
                    Value::Array(pts)
                })
                .collect()
        };
        let geometry = match super::cell_shape(c) {
            None => Value::Null,
            Some(mp) if c.shape.is_none() && mp.0.len() == 1 => {
                json!({"type": "Polygon", "coordinates": rings(&mp.0[0])})
            }
            Some(mp) => {
                let polys: Vec<Value> = mp.0.iter().map(|p| Value::Array(rings(p))).collect();
                json!({"type": "MultiPolygon", "coordinates": polys})
            }
        };
        let props = cell_properties(c, n, &lookup);
        json!({"type": "Feature", "geometry": geometry, "properties": props})
    });
    collection(w, "grid_cells", features)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::layers::{FileLayout, GridInfo, ImageRow, Interner, sequence_lines};
    use crate::model::{Bbox, PositionSource};
    use crate::record::ImageRecord;

    /// Two positioned images of one sequence and one without position.
    pub(crate) fn small_set() -> LayerSet {
        let mut strings = Interner::default();
        let mk = |v: Value| ImageRecord::from_value(&v).unwrap();
        let recs = [
            mk(
                json!({"id": "2", "sequence": "s1", "captured_at": 1_600_000_002_000_i64,
                "geometry": {"type": "Point", "coordinates": [13.40000012345, 52.5001]},
                "compass_angle": 90.0, "is_pano": true}),
            ),
            mk(
                json!({"id": "1", "sequence": "s1", "captured_at": 1_600_000_001_000_i64,
                "geometry": {"type": "Point", "coordinates": [13.40000006, 52.5]},
                "compass_angle": 45.0, "is_pano": false, "make": "Go,Pro"}),
            ),
            mk(json!({"id": "3", "sequence": "s1"})),
        ];
        let mut rows: Vec<ImageRow> = recs
            .iter()
            .map(|r| {
                ImageRow::from_record(r, "g1", true, PositionSource::Computed, &mut strings)
                    .unwrap()
            })
            .collect();
        rows.sort_by_key(|r| r.id);
        let sequences = sequence_lines(&rows, &strings);
        let grids = [GridInfo {
            grid: "g1".into(),
            bbox: Bbox::new(13.3, 52.4, 13.5, 52.6).ok(),
            shape: None,
            listing: "complete",
            listed: Some(3),
            failed: Some(0),
        }];
        let cells = crate::coverage::compute(&grids, &rows, &strings, chrono::DateTime::UNIX_EPOCH);
        LayerSet {
            rows,
            strings,
            layout: FileLayout::Grid,
            sequences,
            cells,
            runs: Vec::new(),
        }
    }

    #[test]
    fn images_are_rfc7946_points() {
        let set = small_set();
        let v: Value = serde_json::from_slice(&images(&set)).unwrap();
        assert_eq!(v["type"], "FeatureCollection");
        assert!(v.get("crs").is_none());
        let f = v["features"].as_array().unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0]["properties"]["id"], "1");
        assert_eq!(f[0]["geometry"]["coordinates"], json!([13.4000001, 52.5]));
        assert_eq!(
            f[1]["geometry"]["coordinates"],
            json!([13.4000001, 52.5001])
        );
        assert_eq!(
            f[0]["properties"]["captured_at"],
            "2020-09-13T12:26:41.000Z"
        );
        assert_eq!(f[0]["properties"]["file"], "g1/1.jpg");
        assert_eq!(f[0]["properties"]["position_source"], "original");
    }

    #[test]
    fn sequences_and_cells() {
        let set = small_set();
        let s: Value = serde_json::from_slice(&sequences(&set)).unwrap();
        assert_eq!(s["features"][0]["properties"]["image_count"], 2);
        assert_eq!(s["features"][0]["geometry"]["type"], "LineString");
        let c: Value = serde_json::from_slice(&grid_cells(&set)).unwrap();
        let ring = c["features"][0]["geometry"]["coordinates"][0]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(ring.len(), 5);
        assert_eq!(ring[0], ring[4]);
        // Shoelace: a positive signed area means counter-clockwise.
        let pts: Vec<(f64, f64)> = ring
            .iter()
            .map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap()))
            .collect();
        let area2: f64 = pts
            .windows(2)
            .map(|w| w[0].0 * w[1].1 - w[1].0 * w[0].1)
            .sum();
        assert!(area2 > 0.0);
        assert_eq!(c["features"][0]["properties"]["downloaded"], 3);
        assert!(c["features"][0]["properties"].get("bbox").is_none());
    }
}
