//! JPEG marker walking: finds the segments before the first scan, the frame
//! size and the start of the entropy-coded data, and checks the end-of-image
//! marker. Pure: reads a byte slice, never decodes or re-encodes pixels.
//! Bounded whatever the file holds: only its first [`MAX_HEAD`] bytes are
//! walked, and at most [`MAX_SEGMENTS`] segments are kept (a run of
//! standalone markers counts as one).

use super::ExifError;

/// The identifier that opens an EXIF APP1 payload.
pub(crate) const EXIF_HEADER: &[u8] = b"Exif\0\0";
/// The identifier that opens a standard XMP APP1 payload.
pub(crate) const XMP_HEADER: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
/// Largest payload of a segment: its 16-bit length counts itself (2 bytes).
pub(crate) const MAX_PAYLOAD: usize = 65_533;
/// Bytes before the first scan beyond which a file is not tagged. A JPEG's
/// metadata (EXIF, XMP, ICC, tables) takes far less; more is a malformed or
/// hostile file, such as megabytes of fill bytes or standalone markers.
pub(crate) const MAX_HEAD: usize = 4 << 20;
/// Segments before the first scan beyond which a file is not tagged (ICC
/// profiles, the longest honest case, are split into at most 255).
pub(crate) const MAX_SEGMENTS: usize = 4096;

/// One marker segment before the first scan, as byte ranges of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment {
    /// The marker code (the byte after `FF`).
    pub marker: u8,
    /// Offset of the segment's first byte (fill bytes included).
    pub start: usize,
    /// Offset of the payload (after the length field); `end` for standalone markers.
    pub payload: usize,
    /// Offset just past the segment.
    pub end: usize,
}

impl Segment {
    pub(super) fn payload<'a>(&self, jpeg: &'a [u8]) -> &'a [u8] {
        &jpeg[self.payload..self.end]
    }
    pub(super) fn is_app1_with(&self, jpeg: &[u8], header: &[u8]) -> bool {
        self.marker == 0xE1 && self.payload(jpeg).starts_with(header)
    }
}

/// The structure of a JPEG file up to its first scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Segments between SOI and the first SOS, in file order.
    pub segments: Vec<Segment>,
    /// Offset of the first SOS segment; everything from here on is copied verbatim.
    pub scan_start: usize,
    /// Frame size from the SOF header, pixels.
    pub width: u32,
    pub height: u32,
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn is_standalone(marker: u8) -> bool {
    matches!(marker, 0x01 | 0xD0..=0xD8)
}

/// Adds the standalone marker `start..end` to `segments`, into the previous
/// segment when that is a run of standalone markers ending at `start`.
fn push_standalone(
    segments: &mut Vec<Segment>,
    marker: u8,
    start: usize,
    end: usize,
) -> Result<(), ExifError> {
    match segments.last_mut() {
        Some(last) if is_standalone(last.marker) && last.end == start => {
            last.payload = end;
            last.end = end;
            Ok(())
        }
        _ => push_segment(
            segments,
            Segment {
                marker,
                start,
                payload: end,
                end,
            },
        ),
    }
}

fn push_segment(segments: &mut Vec<Segment>, seg: Segment) -> Result<(), ExifError> {
    if segments.len() >= MAX_SEGMENTS {
        return Err(ExifError::TooManySegments {
            limit: MAX_SEGMENTS,
        });
    }
    segments.push(seg);
    Ok(())
}

fn is_sof(marker: u8) -> bool {
    matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC)
}

/// Walks the markers of `jpeg` up to the first scan and checks that the file
/// ends with the end-of-image marker (`FF D9`), which catches truncated files
/// that a decoder would accept.
#[cfg(test)]
pub(crate) fn parse(jpeg: &[u8]) -> Result<Layout, ExifError> {
    let last_two = [jpeg.len().saturating_sub(2), jpeg.len().saturating_sub(1)]
        .map(|i| jpeg.get(i).copied().unwrap_or(0));
    let head = &jpeg[..jpeg.len().min(MAX_HEAD)];
    parse_head(head, jpeg.len() as u64, last_two)?.ok_or(ExifError::Truncated { offset: 0 })
}

/// Like [`parse`] from the first bytes of a file of `file_len` bytes (`head`)
/// and its last two bytes, so the compressed data need not be read.
/// `Ok(None)`: the segments run past `head`; read more and ask again. Never
/// asks for more than [`MAX_HEAD`] bytes: beyond, the file is refused.
pub(crate) fn parse_head(
    head: &[u8],
    file_len: u64,
    last_two: [u8; 2],
) -> Result<Option<Layout>, ExifError> {
    let jpeg = head;
    let short = (head.len() as u64) < file_len;
    let more = || {
        if head.len() >= MAX_HEAD {
            Err(ExifError::HeadTooLong { limit: MAX_HEAD })
        } else {
            Ok(None)
        }
    };
    check_ends(jpeg, file_len, last_two)?;
    let mut segments = Vec::new();
    let mut size = None;
    let mut pos = 2;
    loop {
        let start = pos;
        if short && pos + 4 > jpeg.len() {
            return more();
        }
        let Some((marker, after)) = read_marker(jpeg, pos, short)? else {
            return more();
        };
        pos = after;
        match marker {
            0xD9 => return Err(ExifError::NoScan),
            0x00 => {
                return Err(ExifError::BadMarker {
                    offset: start,
                    found: "FF 00".into(),
                });
            }
            m if is_standalone(m) => {
                push_standalone(&mut segments, marker, start, pos)?;
                continue;
            }
            _ => {}
        }
        let Some(len) = segment_len(jpeg, pos, start, short, file_len)? else {
            return more();
        };
        let seg = Segment {
            marker,
            start,
            payload: pos + 2,
            end: pos + len,
        };
        if is_sof(marker) {
            size = Some(frame_size(seg.payload(jpeg), start)?);
        }
        if marker == 0xDA {
            let (width, height) = size.ok_or(ExifError::NoFrame)?;
            return Ok(Some(Layout {
                segments,
                scan_start: start,
                width,
                height,
            }));
        }
        push_segment(&mut segments, seg)?;
        pos = seg.end;
    }
}

/// The marker at `pos` (after its `FF` and any fill bytes) and the offset
/// after it; `None` when the head ends first and more of the file may follow.
fn read_marker(jpeg: &[u8], mut pos: usize, short: bool) -> Result<Option<(u8, usize)>, ExifError> {
    let start = pos;
    if jpeg.get(pos) != Some(&0xFF) {
        return Err(ExifError::BadMarker {
            offset: pos,
            found: jpeg
                .get(pos)
                .map_or_else(|| "end of file".into(), |b| format!("{b:02X}")),
        });
    }
    while jpeg.get(pos) == Some(&0xFF) {
        pos += 1; // the marker's FF and any fill bytes
    }
    match jpeg.get(pos) {
        Some(&marker) => Ok(Some((marker, pos + 1))),
        None if short => Ok(None),
        None => Err(ExifError::Truncated { offset: start }),
    }
}

/// The length of the segment whose length field is at `pos` (the segment
/// starts at `start`); `None` when the head ends first and the file goes on.
fn segment_len(
    jpeg: &[u8],
    pos: usize,
    start: usize,
    short: bool,
    file_len: u64,
) -> Result<Option<usize>, ExifError> {
    if short && pos + 2 > jpeg.len() {
        return Ok(None);
    }
    let len = match jpeg.get(pos..pos + 2) {
        Some(b) => usize::from(u16::from_be_bytes([b[0], b[1]])),
        None => return Err(ExifError::Truncated { offset: start }),
    };
    if len < 2 {
        return Err(ExifError::Truncated { offset: start });
    }
    if pos + len > jpeg.len() {
        return if short && (pos + len) as u64 <= file_len {
            Ok(None)
        } else {
            Err(ExifError::Truncated { offset: start })
        };
    }
    Ok(Some(len))
}

/// A JPEG starts with SOI (`FF D8`) and ends with EOI (`FF D9`).
fn check_ends(jpeg: &[u8], file_len: u64, last_two: [u8; 2]) -> Result<(), ExifError> {
    if file_len < 4 || jpeg.len() < 2 || jpeg[0] != 0xFF || jpeg[1] != 0xD8 {
        return Err(ExifError::NotJpeg(hex(&jpeg[..jpeg.len().min(4)])));
    }
    if last_two != [0xFF, 0xD9] {
        return Err(ExifError::NoEndMarker(hex(&last_two)));
    }
    Ok(())
}

/// Width and height, pixels, from a start-of-frame segment's payload `p`
/// (the segment at `start`); zero sizes are refused.
fn frame_size(p: &[u8], start: usize) -> Result<(u32, u32), ExifError> {
    if p.len() < 5 {
        return Err(ExifError::Truncated { offset: start });
    }
    let h = u32::from(u16::from_be_bytes([p[1], p[2]]));
    let w = u32::from(u16::from_be_bytes([p[3], p[4]]));
    if w == 0 || h == 0 {
        return Err(ExifError::ZeroSize {
            width: w,
            height: h,
        });
    }
    Ok((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SOI, APP0, SOF0 (3x2), SOS with two bytes of data, EOI.
    pub(crate) fn tiny() -> Vec<u8> {
        let mut v = vec![0xFF, 0xD8];
        v.extend([0xFF, 0xE0, 0x00, 0x07, b'J', b'F', b'I', b'F', 0]);
        v.extend([0xFF, 0xC0, 0x00, 0x0B, 8, 0, 2, 0, 3, 1, 1, 0x11, 0]);
        v.extend([0xFF, 0xDA, 0x00, 0x08, 1, 1, 0, 0, 0x3F, 0, 0x12, 0x34]);
        v.extend([0xFF, 0xD9]);
        v
    }

    #[test]
    fn a_head_too_short_asks_for_more() {
        let j = tiny();
        let end = [0xFF, 0xD9];
        let n = j.len() as u64;
        for cut in 2..12 {
            assert_eq!(parse_head(&j[..cut], n, end).unwrap(), None, "cut at {cut}");
        }
        let whole = parse(&j).unwrap();
        // Once the scan header is in the head, the rest is not needed.
        assert_eq!(parse_head(&j[..34], n, end).unwrap(), Some(whole));
        // The end marker is checked from the last two bytes alone.
        assert!(matches!(
            parse_head(&j[..34], n, [0x12, 0x34]),
            Err(ExifError::NoEndMarker(_))
        ));
    }

    #[test]
    fn walks_segments_and_finds_the_frame() {
        let j = tiny();
        let l = parse(&j).unwrap();
        assert_eq!(l.segments.len(), 2);
        assert_eq!(l.segments[0].marker, 0xE0);
        assert_eq!(l.segments[0].payload(&j), b"JFIF\0");
        assert_eq!((l.width, l.height), (3, 2));
        assert_eq!(&j[l.scan_start..l.scan_start + 2], &[0xFF, 0xDA]);
    }

    #[test]
    fn rejects_broken_files() {
        assert!(matches!(parse(b"GIF89a.."), Err(ExifError::NotJpeg(s)) if s == "47 49 46 38"));
        let j = tiny();
        assert!(matches!(
            parse(&j[..j.len() - 1]),
            Err(ExifError::NoEndMarker(_))
        ));
        let mut cut = j[..8].to_vec();
        cut.extend([0xFF, 0xD9]);
        assert!(matches!(parse(&cut), Err(ExifError::Truncated { .. })));
        let mut no_sof = j[..11].to_vec();
        no_sof.extend(&j[24..]);
        assert!(matches!(parse(&no_sof), Err(ExifError::NoFrame)));
        let mut garbage = j.clone();
        garbage[11] = 0x12;
        assert!(matches!(
            parse(&garbage),
            Err(ExifError::BadMarker { offset: 11, .. })
        ));
    }

    #[test]
    fn standalone_markers_are_one_segment_and_kept_byte_for_byte() {
        let j = tiny();
        let mut odd = j[..2].to_vec();
        odd.extend([0xFF, 0xD0, 0xFF, 0xFF, 0xD7, 0xFF, 0x01]);
        odd.extend(&j[2..]);
        let l = parse(&odd).unwrap();
        assert_eq!(l.segments.len(), 3);
        assert_eq!((l.segments[0].start, l.segments[0].end), (2, 9));
        assert_eq!(l.segments[1].marker, 0xE0);
    }

    #[test]
    fn a_pathological_marker_stream_is_refused_within_the_bound() {
        // Megabytes of standalone markers, then of fill bytes: the walk stops
        // at MAX_HEAD, whatever the file's length.
        for filler in [[0xFF, 0xD0], [0xFF, 0xFF]] {
            let mut j = vec![0xFF, 0xD8];
            while j.len() < MAX_HEAD + 10 {
                j.extend(filler);
            }
            j.extend([0xFF, 0xD9]);
            assert!(matches!(
                parse(&j),
                Err(ExifError::HeadTooLong { limit: MAX_HEAD })
            ));
            let end = [0xFF, 0xD9];
            let n = 64 << 20;
            assert_eq!(parse_head(&j[..1 << 20], n, end).unwrap(), None);
            assert!(matches!(
                parse_head(&j[..MAX_HEAD], n, end),
                Err(ExifError::HeadTooLong { .. })
            ));
        }
        // Alternating tiny segments cannot grow the segment list without end.
        let mut j = vec![0xFF, 0xD8];
        for _ in 0..=MAX_SEGMENTS {
            j.extend([0xFF, 0xD0, 0xFF, 0xFE, 0x00, 0x02]);
        }
        j.extend(&tiny()[2..]);
        assert!(matches!(
            parse(&j),
            Err(ExifError::TooManySegments {
                limit: MAX_SEGMENTS
            })
        ));
    }
}
