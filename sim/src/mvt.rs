//! A small Mapbox Vector Tile v2 protobuf encoder: varints, zigzag, packed geometry commands and
//! per-layer keys/values tables.
//!
//! Field numbers follow `vector_tile.proto` of the MVT 2.1 specification:
//! `Tile.layers = 3`; `Layer { name = 1, features = 2, keys = 3, values = 4, extent = 5,
//! version = 15 }`; `Feature { id = 1, tags = 2 (packed), type = 3, geometry = 4 (packed) }`;
//! `Value { string_value = 1, int_value = 4, bool_value = 7 }` (the other kinds are not needed).

use std::collections::HashMap;

/// Geometry type of a feature (`Tile.GeomType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeomType {
    Point = 1,
    LineString = 2,
}

/// A property value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    Str(&'a str),
    Int(i64),
    Bool(bool),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum ValueKey {
    Str(Box<str>),
    Int(i64),
    Bool(bool),
}

const WIRE_VARINT: u32 = 0;
const WIRE_LEN: u32 = 2;
const CMD_MOVE_TO: u32 = 1;
const CMD_LINE_TO: u32 = 2;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_key(out: &mut Vec<u8>, field: u32, wire: u32) {
    put_varint(out, u64::from((field << 3) | wire));
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, WIRE_LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_packed(out: &mut Vec<u8>, field: u32, values: &[u32]) {
    if values.is_empty() {
        return;
    }
    put_key(out, field, WIRE_LEN);
    let len: usize = values.iter().map(|&v| varint_len(u64::from(v))).sum();
    put_varint(out, len as u64);
    for &v in values {
        put_varint(out, u64::from(v));
    }
}

/// Zigzag encoding of a geometry parameter.
pub fn zigzag(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

fn command(id: u32, count: u32) -> u32 {
    (id & 0x7) | (count << 3)
}

/// Builds one layer; features get their MVT id from the caller.
pub struct LayerBuilder {
    name: String,
    extent: u32,
    features: Vec<u8>,
    count: usize,
    keys: Vec<String>,
    key_index: HashMap<String, u32>,
    values: Vec<u8>,
    value_index: HashMap<ValueKey, u32>,
    tags: Vec<u32>,
    geometry: Vec<u32>,
    feature: Vec<u8>,
}

impl LayerBuilder {
    pub fn new(name: &str, extent: u32) -> LayerBuilder {
        LayerBuilder {
            name: name.to_string(),
            extent,
            features: Vec::new(),
            count: 0,
            keys: Vec::new(),
            key_index: HashMap::new(),
            values: Vec::new(),
            value_index: HashMap::new(),
            tags: Vec::new(),
            geometry: Vec::new(),
            feature: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn key(&mut self, k: &str) -> u32 {
        if let Some(&i) = self.key_index.get(k) {
            return i;
        }
        let i = self.keys.len() as u32;
        self.keys.push(k.to_string());
        self.key_index.insert(k.to_string(), i);
        i
    }

    fn value(&mut self, v: Value<'_>) -> u32 {
        let key = match v {
            Value::Str(s) => ValueKey::Str(s.into()),
            Value::Int(n) => ValueKey::Int(n),
            Value::Bool(b) => ValueKey::Bool(b),
        };
        if let Some(&i) = self.value_index.get(&key) {
            return i;
        }
        let i = self.value_index.len() as u32;
        let mut msg = Vec::with_capacity(16);
        match v {
            Value::Str(s) => put_bytes(&mut msg, 1, s.as_bytes()),
            Value::Int(n) => {
                put_key(&mut msg, 4, WIRE_VARINT);
                put_varint(&mut msg, n as u64);
            }
            Value::Bool(b) => {
                put_key(&mut msg, 7, WIRE_VARINT);
                put_varint(&mut msg, u64::from(b));
            }
        }
        put_bytes(&mut self.values, 4, &msg);
        self.value_index.insert(key, i);
        i
    }

    fn push_feature(&mut self, id: u64, kind: GeomType, props: &[(&str, Value<'_>)]) {
        self.tags.clear();
        for &(k, v) in props {
            let ki = self.key(k);
            let vi = self.value(v);
            self.tags.push(ki);
            self.tags.push(vi);
        }
        self.feature.clear();
        put_key(&mut self.feature, 1, WIRE_VARINT);
        put_varint(&mut self.feature, id);
        put_packed(&mut self.feature, 2, &self.tags);
        put_key(&mut self.feature, 3, WIRE_VARINT);
        put_varint(&mut self.feature, kind as u64);
        put_packed(&mut self.feature, 4, &self.geometry);
        put_bytes(&mut self.features, 2, &self.feature);
        self.count += 1;
    }

    /// A Point feature at tile coordinates (x right, y down, 0..extent inside the tile).
    pub fn add_point(&mut self, id: u64, p: (i32, i32), props: &[(&str, Value<'_>)]) {
        self.geometry.clear();
        self.geometry
            .extend([command(CMD_MOVE_TO, 1), zigzag(p.0), zigzag(p.1)]);
        self.push_feature(id, GeomType::Point, props);
    }

    /// A LineString feature through `points` (at least two; coordinates may lie outside the
    /// extent).
    pub fn add_line(&mut self, id: u64, points: &[(i32, i32)], props: &[(&str, Value<'_>)]) {
        debug_assert!(points.len() >= 2);
        self.geometry.clear();
        let (x0, y0) = points[0];
        self.geometry
            .extend([command(CMD_MOVE_TO, 1), zigzag(x0), zigzag(y0)]);
        self.geometry
            .push(command(CMD_LINE_TO, (points.len() - 1) as u32));
        let mut cur = (x0, y0);
        for &(x, y) in &points[1..] {
            self.geometry
                .extend([zigzag(x.wrapping_sub(cur.0)), zigzag(y.wrapping_sub(cur.1))]);
            cur = (x, y);
        }
        self.push_feature(id, GeomType::LineString, props);
    }

    /// Appends the layer (field 3 of `Tile`) to a tile buffer.
    pub fn finish_into(self, tile: &mut Vec<u8>) {
        let mut layer =
            Vec::with_capacity(self.features.len() + self.values.len() + 64 + self.name.len());
        put_bytes(&mut layer, 1, self.name.as_bytes());
        layer.extend_from_slice(&self.features);
        for k in &self.keys {
            put_bytes(&mut layer, 3, k.as_bytes());
        }
        layer.extend_from_slice(&self.values);
        put_key(&mut layer, 5, WIRE_VARINT);
        put_varint(&mut layer, u64::from(self.extent));
        put_key(&mut layer, 15, WIRE_VARINT);
        put_varint(&mut layer, 2);
        put_bytes(tile, 3, &layer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_zigzag() {
        let mut v = Vec::new();
        put_varint(&mut v, 300);
        assert_eq!(v, [0xac, 0x02]);
        for n in [0u64, 1, 127, 128, 16_383, 16_384, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, n);
            assert_eq!(b.len(), varint_len(n), "{n}");
        }
        assert_eq!(zigzag(0), 0);
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
        assert_eq!(zigzag(-2), 3);
        assert_eq!(zigzag(i32::MIN), u32::MAX);
    }

    #[test]
    fn point_layer_bytes_match_the_spec_example() {
        // The MVT spec's example point at (25, 17): MoveTo(1) = 9, zigzag 50, 34.
        let mut l = LayerBuilder::new("p", 4096);
        l.add_point(0, (25, 17), &[("k", Value::Bool(true))]);
        let mut tile = Vec::new();
        l.finish_into(&mut tile);
        assert_eq!(tile[0], 0x1a);
        let geom = [0x22, 3, 9, 50, 34];
        assert!(tile.windows(geom.len()).any(|w| w == geom));
    }

    #[test]
    fn values_are_interned() {
        let mut l = LayerBuilder::new("x", 4096);
        for i in 0..10 {
            l.add_point(
                i,
                (1, 1),
                &[
                    ("a", Value::Int(5)),
                    ("b", Value::Str("s")),
                    ("c", Value::Int(5)),
                ],
            );
        }
        assert_eq!(l.keys.len(), 3);
        assert_eq!(l.value_index.len(), 2);
        assert_eq!(l.len(), 10);
    }
}
