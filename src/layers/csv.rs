//! `images.csv`: one line per drawn image with lon, lat and a WKT column, for
//! spreadsheets. Pure: rows in, bytes out; no file access.

use std::io::{self, Write};

use super::{ImageRow, LayerSet, iso_ms_from_millis, round_coord, source_name};

/// The columns of `images.csv`, in order.
pub const COLUMNS: &[&str] = &[
    "id",
    "lon",
    "lat",
    "wkt",
    "sequence",
    "captured_at",
    "compass_angle",
    "computed_compass_angle",
    "direction",
    "is_pano",
    "camera_type",
    "make",
    "model",
    "creator",
    "creator_id",
    "width",
    "height",
    "altitude",
    "grid",
    "file",
    "bytes",
    "position_source",
    "position_offset_m",
];

/// Quotes a CSV value when it holds a comma, a quote or a line break (RFC 4180).
pub fn quote(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn line(set: &LayerSet, r: &ImageRow, out: &mut String) {
    let Some(p) = r.position() else { return };
    let (lon, lat) = (round_coord(p.lon), round_coord(p.lat));
    let s = |sym| set.s(sym).map(quote).unwrap_or_default();
    let vals = [
        r.id.to_string(),
        lon.to_string(),
        lat.to_string(),
        format!("POINT ({lon} {lat})"),
        s(r.sequence),
        opt(r.captured_ms().and_then(iso_ms_from_millis)),
        opt(r.compass_angle()),
        opt(r.computed_compass_angle()),
        opt(r.direction()),
        opt(r.is_pano),
        s(r.camera_type),
        s(r.make),
        s(r.model),
        s(r.creator),
        s(r.creator_id),
        opt(r.width()),
        opt(r.height()),
        opt(r.altitude()),
        s(r.grid),
        opt(set.file_of(r).map(|f| quote(&f))),
        opt(r.bytes()),
        source_name(r.source).to_string(),
        opt(r.offset_m().map(|m| super::round_to(m, 3))),
    ];
    out.push_str(&vals.join(","));
    out.push_str("\r\n");
}

/// The whole CSV: a header, then the drawn images in id order.
pub fn images_csv(set: &LayerSet) -> Vec<u8> {
    super::geojson::to_vec(|w| write_images_csv(set, w))
}

/// Streams `images.csv` into `w`, one line in memory at a time.
pub fn write_images_csv<W: Write + ?Sized>(set: &LayerSet, w: &mut W) -> io::Result<()> {
    w.write_all(COLUMNS.join(",").as_bytes())?;
    w.write_all(b"\r\n")?;
    let mut buf = String::with_capacity(512);
    for r in set.drawn() {
        buf.clear();
        line(set, r, &mut buf);
        w.write_all(buf.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(quote("abc"), "abc");
        assert_eq!(quote("a,b"), "\"a,b\"");
        assert_eq!(quote("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn one_line_per_drawn_image() {
        let set = super::super::geojson::tests::small_set();
        let text = String::from_utf8(images_csv(&set)).unwrap();
        let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 1 + 2, "{text}");
        assert_eq!(lines[0].split(',').count(), COLUMNS.len());
        assert!(
            lines[1].starts_with(
                "1,13.4000001,52.5,POINT (13.4000001 52.5),s1,1970-01-01T00:00:01.000Z,"
            ),
            "{}",
            lines[1]
        );
        assert!(lines[1].contains(",g1/1.jpg,"));
    }
}
