//! `images.csv`: one line per drawn image with lon, lat and a WKT column, for
//! spreadsheets. Pure: rows in, bytes out; no file access. Text that came
//! from the API is neutralised for spreadsheets ([`text_cell`]).

use std::io::{self, Write};

use super::{ImageRow, LayerSet, iso_ms_from_millis, round_coord, source_name};

/// The columns of `images.csv`, in order.
pub(crate) const COLUMNS: &[&str] = &[
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
pub(crate) fn quote(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}

/// A text cell made safe for spreadsheets, then quoted: text starting with
/// `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'` (the
/// OWASP advice), so that a spreadsheet shows it as text instead of running
/// it as a formula. A plain decimal number such as `-73.9` or `+1e-3` is
/// left alone: it is a number, and spreadsheets read it as one.
pub(crate) fn text_cell(v: &str) -> String {
    quote(&neutralise(v))
}

/// `v` with a leading `'` when a spreadsheet could take it for a formula.
pub(crate) fn neutralise(v: &str) -> std::borrow::Cow<'_, str> {
    let risky = v.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if risky && !is_plain_number(v) {
        format!("'{v}").into()
    } else {
        v.into()
    }
}

/// True for `[+-]digits[.digits][e[+-]digits]` (at least one digit before
/// the exponent), what spreadsheets read as a number and nothing else.
pub(crate) fn is_plain_number(v: &str) -> bool {
    let b = v.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    let mut n = digits(&mut i);
    if b.get(i) == Some(&b'.') {
        i += 1;
        n += digits(&mut i);
    }
    if n == 0 {
        return false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn line(set: &LayerSet, r: &ImageRow, out: &mut String) {
    let Some(p) = r.position() else { return };
    let (lon, lat) = (round_coord(p.lon), round_coord(p.lat));
    let s = |sym| set.s(sym).map(text_cell).unwrap_or_default();
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
        opt(set.file_of(r).map(|f| text_cell(&f))),
        opt(r.bytes()),
        source_name(r.source).to_string(),
        opt(r.offset_m().map(|m| super::round_to(m, 3))),
    ];
    out.push_str(&vals.join(","));
    out.push_str("\r\n");
}

/// The whole CSV: a header, then the drawn images in id order.
#[cfg(test)]
pub(crate) fn images_csv(set: &LayerSet) -> Vec<u8> {
    super::geojson::to_vec(|w| write_images_csv(set, w))
}

/// Streams `images.csv` into `w`, one line in memory at a time.
pub(crate) fn write_images_csv<W: Write + ?Sized>(set: &LayerSet, w: &mut W) -> io::Result<()> {
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
    fn formulas_are_neutralised_and_numbers_kept() {
        assert_eq!(
            text_cell("=HYPERLINK(\"http://x\",\"y\")"),
            "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\""
        );
        for v in [
            "+cmd", "-2+3", "@SUM(A1)", "\tx", "\rx", "-", "+", "-inf", "-1e", "--1",
        ] {
            assert_eq!(neutralise(v), format!("'{v}"), "{v:?}");
        }
        for v in ["-73.9", "+1", "-1e-3", "12", "-.5", "Canon", "", "a=b"] {
            assert_eq!(neutralise(v), v, "{v:?}");
        }
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

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn no_text_cell_starts_a_formula(v in "\\PC{0,12}|[=+@-]\\PC{0,8}|[\t\r].{0,5}") {
                let n = neutralise(&v);
                let risky = n.starts_with(['=', '+', '-', '@', '\t', '\r']);
                prop_assert!(!risky || is_plain_number(&n), "{n:?}");
                let prefixed = format!("'{}", v);
                prop_assert!(n == v.as_str() || n == prefixed.as_str());
            }

            #[test]
            fn numbers_stay_numbers(x in any::<f64>().prop_filter("finite", |x| x.is_finite())) {
                let s = x.to_string();
                prop_assert_eq!(neutralise(&s), s.clone());
            }
        }
    }
}
