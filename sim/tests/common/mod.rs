//! Shared helpers of the simulator's HTTP tests: a tiny independent MVT decoder (written from
//! the MVT 2.1 `vector_tile.proto`) and property accessors.
#![allow(dead_code)]

use std::collections::HashMap;

// ---------------------------------------------------------------- a tiny MVT decoder

pub struct Reader<'a> {
    pub b: &'a [u8],
    pub i: usize,
}

impl<'a> Reader<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Reader { b, i: 0 }
    }
    pub fn done(&self) -> bool {
        self.i >= self.b.len()
    }
    pub fn varint(&mut self) -> u64 {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.b[self.i];
            self.i += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return v;
            }
        }
        panic!("varint too long");
    }
    pub fn key(&mut self) -> (u64, u64) {
        let k = self.varint();
        (k >> 3, k & 7)
    }
    pub fn bytes(&mut self) -> &'a [u8] {
        let n = self.varint() as usize;
        let s = &self.b[self.i..self.i + n];
        self.i += n;
        s
    }
    pub fn skip(&mut self, wire: u64) {
        match wire {
            0 => {
                self.varint();
            }
            1 => self.i += 8,
            2 => {
                self.bytes();
            }
            5 => self.i += 4,
            w => panic!("wire type {w}"),
        }
    }
    pub fn packed(&mut self) -> Vec<u32> {
        let mut r = Reader::new(self.bytes());
        let mut out = Vec::new();
        while !r.done() {
            out.push(r.varint() as u32);
        }
        out
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Str(String),
    Int(i64),
    Bool(bool),
    Other,
}

#[derive(Debug, Default)]
pub struct Feature {
    pub id: Option<u64>,
    pub tags: Vec<u32>,
    pub kind: u64,
    pub geometry: Vec<u32>,
}

#[derive(Debug, Default)]
pub struct Layer {
    pub name: String,
    pub version: u64,
    pub extent: u64,
    pub keys: Vec<String>,
    pub values: Vec<Val>,
    pub features: Vec<Feature>,
}

pub fn decode_value(b: &[u8]) -> Val {
    let mut r = Reader::new(b);
    let mut v = Val::Other;
    while !r.done() {
        match r.key() {
            (1, 2) => v = Val::Str(String::from_utf8(r.bytes().to_vec()).unwrap()),
            (4, 0) => v = Val::Int(r.varint() as i64),
            (7, 0) => v = Val::Bool(r.varint() != 0),
            (_, w) => r.skip(w),
        }
    }
    v
}

pub fn decode_feature(b: &[u8]) -> Feature {
    let mut r = Reader::new(b);
    let mut f = Feature::default();
    while !r.done() {
        match r.key() {
            (1, 0) => f.id = Some(r.varint()),
            (2, 2) => f.tags = r.packed(),
            (3, 0) => f.kind = r.varint(),
            (4, 2) => f.geometry = r.packed(),
            (_, w) => r.skip(w),
        }
    }
    f
}

pub fn decode_layer(b: &[u8]) -> Layer {
    let mut r = Reader::new(b);
    let mut l = Layer {
        version: 1,
        extent: 4096,
        ..Layer::default()
    };
    while !r.done() {
        match r.key() {
            (15, 0) => l.version = r.varint(),
            (1, 2) => l.name = String::from_utf8(r.bytes().to_vec()).unwrap(),
            (2, 2) => l.features.push(decode_feature(r.bytes())),
            (3, 2) => l.keys.push(String::from_utf8(r.bytes().to_vec()).unwrap()),
            (4, 2) => l.values.push(decode_value(r.bytes())),
            (5, 0) => l.extent = r.varint(),
            (_, w) => r.skip(w),
        }
    }
    l
}

pub fn decode_tile(b: &[u8]) -> Vec<Layer> {
    let mut r = Reader::new(b);
    let mut out = Vec::new();
    while !r.done() {
        match r.key() {
            (3, 2) => out.push(decode_layer(r.bytes())),
            (_, w) => r.skip(w),
        }
    }
    out
}

pub fn unzigzag(v: u32) -> i32 {
    ((v >> 1) as i32) ^ -((v & 1) as i32)
}

/// All vertices of a Point or LineString geometry, in tile units.
pub fn vertices(geom: &[u32]) -> Vec<(i32, i32)> {
    let (mut x, mut y, mut i) = (0i32, 0i32, 0usize);
    let mut out = Vec::new();
    while i < geom.len() {
        let (cmd, count) = (geom[i] & 7, geom[i] >> 3);
        i += 1;
        assert!(cmd == 1 || cmd == 2, "command {cmd}");
        for _ in 0..count {
            x += unzigzag(geom[i]);
            y += unzigzag(geom[i + 1]);
            i += 2;
            out.push((x, y));
        }
    }
    out
}

impl Feature {
    pub fn props(&self, l: &Layer) -> HashMap<String, Val> {
        self.tags
            .chunks(2)
            .map(|kv| {
                (
                    l.keys[kv[0] as usize].clone(),
                    l.values[kv[1] as usize].clone(),
                )
            })
            .collect()
    }
}

pub fn int(p: &HashMap<String, Val>, k: &str) -> i64 {
    match p.get(k) {
        Some(Val::Int(v)) => *v,
        other => panic!("{k}: {other:?}"),
    }
}

pub fn string(p: &HashMap<String, Val>, k: &str) -> String {
    match p.get(k) {
        Some(Val::Str(v)) => v.clone(),
        other => panic!("{k}: {other:?}"),
    }
}

pub fn boolean(p: &HashMap<String, Val>, k: &str) -> bool {
    match p.get(k) {
        Some(Val::Bool(v)) => *v,
        other => panic!("{k}: {other:?}"),
    }
}
