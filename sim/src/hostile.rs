//! A hostile server (`SimConfig::hostile`): decompression bombs, endless bodies, spreadsheet
//! formulas and terminal escapes in text, redirects of thumbnails to another origin.

use std::sync::OnceLock;

use axum::body::{Body, Bytes};
use flate2::{Compress, Compression, Crc, FlushCompress, Status};

use crate::world::World;

/// What a hostile server does; everything is off by default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hostile {
    /// Every z14 tile answers `tile_bomb()`: about 64 KiB of gzip (always `Content-Encoding:
    /// gzip`) that inflates to about 64 MiB of protobuf: one `image` layer of 32 Mi empty features.
    pub tile_bomb: bool,
    /// Bbox searches answer 200 with a `HUGE_SEARCH_BYTES` JSON body, streamed; answers
    /// alternate between having a `Content-Length` (the 1st, 3rd, ...) and none (chunked).
    pub huge_search_body: bool,
    /// The CDN answers every valid thumbnail URL with a 200 `image/jpeg` of `HUGE_THUMB_BYTES`
    /// (a JFIF header, then zeros), streamed, `Content-Length` set.
    pub huge_thumbnail: bool,
    /// Text fields carry spreadsheet formulas and terminal escapes (`FORMULA_MAKE`,
    /// `FORMULA_MODEL`, `FORMULA_USERNAME`); every error message of the Graph and tiles hosts
    /// ends with `ESCAPE_SUFFIX`.
    pub formula_text: bool,
    /// The CDN answers every thumbnail request with 302 to this origin plus the same path and
    /// query (e.g. `http://127.0.0.1:9` or `https://evil.example`).
    pub redirect_thumbs_to: Option<String>,
    /// An entity call for an id the Graph does not know (a stale tile id,
    /// `tiles_stale`) answers 200 with this instead of the 404-like error.
    pub unknown_entity: Option<BadEntity>,
    /// Tiles answer as if empty (the record leaves open what an empty tile
    /// or a tile refused for its token gets).
    pub empty_tiles: Option<EmptyTile>,
}

/// How [`Hostile::empty_tiles`] answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmptyTile {
    /// Every tile (any zoom) answers 200 with an empty body.
    Body,
    /// Every z14 tile answers 404 (lower zooms are served as usual).
    NotFound,
}

/// A 200 answer an entity call should not get (the record: "incorrect data
/// in fields (e.g. the image URL in the ID field)", and the worry of an error
/// envelope on HTTP 200).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadEntity {
    /// `{"id": "https://..."}`: the image URL in the id field.
    UrlAsId,
    /// A pretty-printed `{"error": {... code 2 ...}}`.
    ErrorEnvelope,
    /// `{}`.
    Empty,
}

impl BadEntity {
    /// The body served.
    pub fn body(self, id: &str) -> String {
        match self {
            BadEntity::UrlAsId => format!("{{\"id\": \"https://images.example/{id}.jpg\"}}"),
            BadEntity::ErrorEnvelope => "{\n  \"error\": {\n    \"message\": \"An unexpected error has occurred.\",\n    \"code\": 2,\n    \"is_transient\": true\n  }\n}".to_string(),
            BadEntity::Empty => "{}".to_string(),
        }
    }
}

/// `make` of every image with `formula_text`.
pub const FORMULA_MAKE: &str = "=HYPERLINK(\"http://evil.example\",\"x\")";
/// `model` of every image with `formula_text`.
pub const FORMULA_MODEL: &str = "+1-2";
/// `creator.username` of every creator with `formula_text`.
pub const FORMULA_USERNAME: &str = "@SUM(A1)\u{1b}]0;pwned\u{7}";
/// Appended to every Graph and tile error message with `formula_text`.
pub const ESCAPE_SUFFIX: &str = "\u{1b}]0;owned\u{7}\u{1b}[2J";

/// Size of a `huge_search_body` answer (256 MiB).
pub const HUGE_SEARCH_BYTES: u64 = 256 << 20;
/// Size of a `huge_thumbnail` answer (200 MiB).
pub const HUGE_THUMB_BYTES: u64 = 200 << 20;
/// Features of the tile bomb's `image` layer (each `0x12 0x00`, 64 MiB in all).
pub const BOMB_FEATURES: u64 = 32 << 20;

const CHUNK: usize = 64 << 10;
const BOMB_SEGMENT: usize = 1 << 20;

/// The world as served with `formula_text`: `make`, `model` (where present) and every
/// creator's username replaced; ids, positions and sequence keys unchanged.
pub fn formula_world(world: &World) -> World {
    world.map_images(|img| {
        img.make = img.make.as_ref().map(|_| FORMULA_MAKE.into());
        img.model = img.model.as_ref().map(|_| FORMULA_MODEL.into());
        img.creator.username = FORMULA_USERNAME.into();
    })
}

/// The gzip body of the tile bomb, built once per process (about 64 KiB).
pub fn tile_bomb() -> Bytes {
    static BOMB: OnceLock<Bytes> = OnceLock::new();
    BOMB.get_or_init(|| Bytes::from(build_bomb())).clone()
}

/// Raw deflate of `data` from an empty history, ending byte-aligned (sync flush) or final.
fn deflate_segment(data: &[u8], last: bool) -> Vec<u8> {
    let mut c = Compress::new(Compression::best(), false);
    let mut out: Vec<u8> = Vec::with_capacity(data.len() / 64 + 1024);
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(64 << 10);
        }
        let done = c.total_in() as usize;
        match c.compress_vec(&data[done.min(data.len())..], &mut out, flush) {
            Ok(Status::StreamEnd) | Err(_) => break,
            // A flush is complete when it leaves output space unused.
            Ok(_) if !last && c.total_in() as usize == data.len() && out.len() < out.capacity() => {
                break;
            }
            Ok(_) => {}
        }
    }
    out
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A gzip member of: tile header, then `BOMB_FEATURES` empty features in 1 MiB segments, each
/// compressed once and repeated (a back-reference never reaches before its segment), then the
/// layer's extent and version. The CRC is combined from the parts.
fn build_bomb() -> Vec<u8> {
    let trailer: &[u8] = &[0x28, 0x80, 0x20, 0x78, 0x02];
    let name: &[u8] = &[0x0a, 0x05, b'i', b'm', b'a', b'g', b'e'];
    let layer_len = name.len() as u64 + 2 * BOMB_FEATURES + trailer.len() as u64;
    let mut head = vec![0x1a];
    put_varint(&mut head, layer_len);
    head.extend_from_slice(name);
    let segment: Vec<u8> = [0x12u8, 0x00].repeat(BOMB_SEGMENT / 2);
    let repeats = 2 * BOMB_FEATURES / BOMB_SEGMENT as u64;
    let mut crc = Crc::new();
    crc.update(&head);
    let mut seg_crc = Crc::new();
    seg_crc.update(&segment);
    for _ in 0..repeats {
        crc.combine(&seg_crc);
    }
    crc.update(trailer);
    let packed = deflate_segment(&segment, false);
    let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 0xff];
    gz.extend(deflate_segment(&head, false));
    for _ in 0..repeats {
        gz.extend_from_slice(&packed);
    }
    gz.extend(deflate_segment(trailer, true));
    gz.extend_from_slice(&crc.sum().to_le_bytes());
    gz.extend_from_slice(&crc.amount().to_le_bytes());
    gz
}

/// A body of `total` bytes: `head`, then `fill` repeated (cut to fit), then `tail`, streamed in
/// shared chunks so memory stays at one chunk.
fn streamed(head: &'static [u8], fill: &[u8], tail: &'static [u8], total: u64) -> Body {
    let mut chunk = Vec::with_capacity(CHUNK);
    while chunk.len() + fill.len() <= CHUNK {
        chunk.extend_from_slice(fill);
    }
    let chunk = Bytes::from(chunk);
    let middle = total - head.len() as u64 - tail.len() as u64;
    let full = middle / chunk.len() as u64;
    let rest = (middle % chunk.len() as u64) as usize;
    let parts = std::iter::once(Bytes::from_static(head))
        .chain(std::iter::repeat_n(chunk.clone(), full as usize))
        .chain(std::iter::once(chunk.slice(..rest)))
        .chain(std::iter::once(Bytes::from_static(tail)))
        .map(Ok::<Bytes, std::io::Error>);
    Body::from_stream(futures_util::stream::iter(parts))
}

/// The `huge_search_body` answer's body: `{"data":[` and `{"id":"…"},` objects (padded with
/// spaces so each fill unit is 32 bytes), closed so the whole is valid JSON of exactly
/// `HUGE_SEARCH_BYTES`.
pub fn huge_search_body() -> Body {
    const FILL: &[u8] = b"{\"id\":\"100000000000001\"},      ";
    streamed(
        b"{\"data\":[",
        FILL,
        b"{\"id\":\"100000000000001\"}]}",
        HUGE_SEARCH_BYTES,
    )
}

/// The `huge_thumbnail` answer's body: SOI and a JFIF APP0 segment, then zeros, exactly
/// `HUGE_THUMB_BYTES`.
pub fn huge_thumbnail() -> Body {
    const JFIF: &[u8] = &[
        0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, 0x01, 0x01, 0x00, 0x00,
        0x01, 0x00, 0x01, 0x00, 0x00,
    ];
    streamed(JFIF, &[0u8; 64], b"", HUGE_THUMB_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn bomb_is_small_and_inflates_to_a_valid_tile_header() {
        let gz = tile_bomb();
        assert!(gz.len() < 200 << 10, "{}", gz.len());
        let mut d = flate2::read::GzDecoder::new(&gz[..]);
        let mut buf = vec![0u8; 1 << 16];
        let (mut total, mut first) = (0u64, Vec::new());
        loop {
            let n = d.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            if first.is_empty() {
                first = buf[..16].to_vec();
            }
            total += n as u64;
        }
        assert_eq!(total, 2 * BOMB_FEATURES + 17);
        assert_eq!(&first[..1], &[0x1a]);
        assert_eq!(&first[5..12], b"\x0a\x05image");
        assert_eq!(&first[12..16], &[0x12, 0, 0x12, 0]);
    }
}
