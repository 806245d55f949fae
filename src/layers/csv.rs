//! `images.csv`: one line per drawn image with lon, lat and a WKT column, for
//! spreadsheets; the columns are [`IMAGES`]'s. Pure: rows in, bytes out; no
//! file access. Text that came from the API is neutralised for spreadsheets
//! ([`crate::rows::csv::text_cell`]).

use std::io::{self, Write};

use super::LayerSet;
use crate::rows::csv::{push_header, push_line};
use crate::rows::schema::IMAGES;

/// The whole CSV: a header, then the drawn images in id order.
#[cfg(test)]
pub(crate) fn images_csv(set: &LayerSet) -> Vec<u8> {
    super::geojson::to_vec(|w| write_images_csv(set, w))
}

/// Streams `images.csv` into `w`, one line in memory at a time.
pub(crate) fn write_images_csv<W: Write + ?Sized>(set: &LayerSet, w: &mut W) -> io::Result<()> {
    let mut buf = String::with_capacity(512);
    push_header(&mut buf, IMAGES.csv_columns());
    w.write_all(buf.as_bytes())?;
    let lookup = set.lookup();
    for (n, r) in set.drawn().enumerate() {
        buf.clear();
        push_line(&mut buf, IMAGES.csv_columns(), r, n, &lookup);
        w.write_all(buf.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_drawn_image() {
        let set = super::super::geojson::tests::small_set();
        let text = String::from_utf8(images_csv(&set)).unwrap();
        let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 1 + 2, "{text}");
        assert_eq!(lines[0].split(',').count(), IMAGES.csv_columns().count());
        assert!(
            lines[1].starts_with(
                "1,13.4000001,52.5,POINT (13.4000001 52.5),s1,2020-09-13T12:26:41.000Z,"
            ),
            "{}",
            lines[1]
        );
        assert!(lines[1].contains(",g1/1.jpg,"));
    }
}
