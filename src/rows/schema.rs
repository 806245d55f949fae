//! The columns of each layer, declared once: name, type, unit, meaning and
//! how to read the value from a row. The GeoPackage (and any OGR dataset),
//! `images.csv`, the GeoJSON files, `coverage.csv`, `coverage.md` and the
//! README's column table all come from these lists ([`markdown`] prints the
//! table; a test compares it with the README). Pure data.

use super::{CellCoverage, ImageRow, SequenceLine, Sym, round_coord, round_to, source_name};
use crate::model::ImageId;
use crate::runrecord::RunEntry;

/// The type of one attribute column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Str,
    /// 32-bit integer.
    Int,
    Int64,
    Real,
    Bool,
    /// UTC with milliseconds (`YYYY-MM-DDTHH:MM:SS.SSSZ`).
    DateTime,
}

#[cfg(test)]
impl Kind {
    /// The name in the README's table.
    fn label(self) -> &'static str {
        match self {
            Kind::Str => "text",
            Kind::Int => "integer",
            Kind::Int64 => "integer (64-bit)",
            Kind::Real => "real",
            Kind::Bool => "boolean",
            Kind::DateTime => "date-time (UTC)",
        }
    }
}

/// One value of one row, before a format renders it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value<'a> {
    Null,
    /// Text; for a [`Kind::DateTime`] column, an RFC 3339 time.
    Text(&'a str),
    Owned(String),
    /// An interned string, resolved by the writer's string table.
    Sym(Sym),
    /// An image id, written as its decimal digits.
    Id(ImageId),
    /// The relative path of the image `id`'s JPEG in grid `grid` (the
    /// writer knows the folder layout).
    Jpg {
        grid: Sym,
        id: ImageId,
    },
    Int(i64),
    Real(f64),
    Bool(bool),
    /// Milliseconds since the epoch, UTC.
    Millis(i64),
}

impl Value<'_> {
    fn sym(s: Sym) -> Self {
        if s.is_none() {
            Value::Null
        } else {
            Value::Sym(s)
        }
    }
    fn int(v: Option<i64>) -> Self {
        v.map_or(Value::Null, Value::Int)
    }
    fn count(v: Option<u64>) -> Self {
        Self::int(v.and_then(|v| i64::try_from(v).ok()))
    }
    fn real(v: Option<f64>) -> Self {
        v.map_or(Value::Null, Value::Real)
    }
    fn bool(v: Option<bool>) -> Self {
        v.map_or(Value::Null, Value::Bool)
    }
    fn millis(v: Option<i64>) -> Self {
        v.map_or(Value::Null, Value::Millis)
    }
}

/// One attribute column: `get` reads its value from a row and the row's
/// position in its layer (from 0).
pub(crate) struct Column<R: 'static> {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    /// Empty when the value has no unit.
    #[cfg_attr(not(test), expect(dead_code, reason = "read for the README's table"))]
    pub(crate) unit: &'static str,
    #[cfg_attr(not(test), expect(dead_code, reason = "read for the README's table"))]
    pub(crate) about: &'static str,
    pub(crate) get: for<'a> fn(&'a R, usize) -> Value<'a>,
}

/// The geometry of a layer's features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Geometry {
    Point,
    LineString,
    MultiPolygon,
    /// A table without geometry.
    None,
}

/// What a writer needs to know of a layer besides its columns.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LayerDef {
    pub(crate) name: &'static str,
    pub(crate) title: &'static str,
    pub(crate) description: &'static str,
    pub(crate) geometry: Geometry,
}

/// One layer: its definition, its attribute columns, and the columns a CSV
/// file writes instead of the geometry, right after the first column.
pub(crate) struct Layer<R: 'static> {
    pub(crate) def: LayerDef,
    pub(crate) columns: &'static [Column<R>],
    pub(crate) csv_geometry: &'static [Column<R>],
}

impl<R> Layer<R> {
    /// Names and types of the attribute columns, in order.
    pub(crate) fn fields(&self) -> impl Iterator<Item = (&'static str, Kind)> + '_ {
        self.columns.iter().map(|c| (c.name, c.kind))
    }

    /// The columns of a CSV file: the first, the geometry's, then the rest.
    pub(crate) fn csv_columns(&self) -> impl Iterator<Item = &Column<R>> + '_ {
        let (first, rest) = self.columns.split_at(1.min(self.columns.len()));
        first.iter().chain(self.csv_geometry).chain(rest)
    }
}

macro_rules! col {
    ($name:literal, $kind:ident, $unit:literal, $about:literal, $get:expr) => {
        Column {
            name: $name,
            kind: Kind::$kind,
            unit: $unit,
            about: $about,
            get: $get,
        }
    };
}

/// `images`: one point per downloaded image with a position.
pub(crate) static IMAGES: Layer<ImageRow> = Layer {
    def: LayerDef {
        name: "images",
        title: "Mapillary images",
        description: "One point per downloaded image",
        geometry: Geometry::Point,
    },
    columns: &[
        col!("id", Str, "", "Mapillary image id", |r, _| Value::Id(r.id)),
        col!("sequence", Str, "", "sequence id", |r, _| Value::sym(
            r.sequence
        )),
        col!("captured_at", DateTime, "", "capture time", |r, _| {
            Value::millis(r.captured_ms())
        }),
        col!(
            "compass_angle",
            Real,
            "°",
            "camera compass angle, clockwise from north",
            |r, _| { Value::real(r.compass_angle()) }
        ),
        col!(
            "computed_compass_angle",
            Real,
            "°",
            "SfM-computed compass angle",
            |r, _| { Value::real(r.computed_compass_angle()) }
        ),
        col!(
            "direction",
            Real,
            "°",
            "the compass angle of the position used (else the other)",
            |r, _| { Value::real(r.direction()) }
        ),
        col!("is_pano", Bool, "", "panorama", |r, _| Value::bool(
            r.is_pano
        )),
        col!(
            "camera_type",
            Str,
            "",
            "perspective, fisheye, equirectangular, spherical",
            |r, _| { Value::sym(r.camera_type) }
        ),
        col!("make", Str, "", "camera make", |r, _| Value::sym(r.make)),
        col!("model", Str, "", "camera model", |r, _| Value::sym(r.model)),
        col!("creator", Str, "", "uploader's user name", |r, _| {
            Value::sym(r.creator)
        }),
        col!("creator_id", Str, "", "uploader's user id", |r, _| {
            Value::sym(r.creator_id)
        }),
        col!(
            "width",
            Int,
            "px",
            "width of the original upload",
            |r, _| { Value::int(r.width().map(i64::from)) }
        ),
        col!(
            "height",
            Int,
            "px",
            "height of the original upload",
            |r, _| { Value::int(r.height().map(i64::from)) }
        ),
        col!("altitude", Real, "m", "altitude above sea level", |r, _| {
            Value::real(r.altitude())
        }),
        col!(
            "grid",
            Str,
            "",
            "grid cell (folder) of the image",
            |r, _| Value::sym(r.grid)
        ),
        col!(
            "file",
            Str,
            "",
            "the JPEG, relative to the input folder; empty when not on disk",
            |r, _| {
                if r.has_jpg {
                    Value::Jpg {
                        grid: r.grid,
                        id: r.id,
                    }
                } else {
                    Value::Null
                }
            }
        ),
        col!(
            "bytes",
            Int64,
            "bytes",
            "size of the JPEG as downloaded",
            |r, _| Value::count(r.bytes())
        ),
        col!(
            "position_source",
            Str,
            "",
            "`computed` or `original`: the position drawn",
            |r, _| { Value::Text(source_name(r.source)) }
        ),
        col!(
            "position_offset_m",
            Real,
            "m",
            "distance between the original and the computed position",
            |r, _| { Value::real(r.offset_m().map(|m| round_to(m, 3))) }
        ),
    ],
    csv_geometry: &[
        col!(
            "lon",
            Real,
            "°",
            "longitude, WGS 84, 7 decimals",
            |r, _| { Value::real(r.position().map(|p| round_coord(p.lon))) }
        ),
        col!("lat", Real, "°", "latitude, WGS 84, 7 decimals", |r, _| {
            Value::real(r.position().map(|p| round_coord(p.lat)))
        }),
        col!(
            "wkt",
            Str,
            "",
            "the point as WKT",
            |r, _| match r.position() {
                Some(p) => Value::Owned(format!(
                    "POINT ({} {})",
                    round_coord(p.lon),
                    round_coord(p.lat)
                )),
                None => Value::Null,
            }
        ),
    ],
};

/// `sequences`: a line per sequence through its images in capture order.
pub(crate) static SEQUENCES: Layer<SequenceLine> = Layer {
    def: LayerDef {
        name: "sequences",
        title: "Mapillary sequences",
        description: "Lines through each sequence's images in capture order",
        geometry: Geometry::LineString,
    },
    columns: &[
        col!("sequence", Str, "", "sequence id", |l, _| Value::sym(
            l.sequence
        )),
        col!("image_count", Int, "", "images on the line", |l, _| {
            Value::int(i64::try_from(l.points.len()).ok())
        }),
        col!("start_time", DateTime, "", "first capture", |l, _| {
            Value::Millis(l.first_ms)
        }),
        col!("end_time", DateTime, "", "last capture", |l, _| {
            Value::Millis(l.last_ms)
        }),
        col!(
            "length_m",
            Real,
            "m",
            "great-circle length, 2 decimals",
            |l, _| { Value::Real(round_to(l.length_m, 2)) }
        ),
    ],
    csv_geometry: &[],
};

/// `grid_cells`: each grid cell with its coverage figures (also
/// `coverage.csv` and `coverage.md`).
pub(crate) static GRID_CELLS: Layer<CellCoverage> = Layer {
    def: LayerDef {
        name: "grid_cells",
        title: "Grid cells",
        description: "Grid cells with coverage figures",
        geometry: Geometry::MultiPolygon,
    },
    columns: &[
        col!("grid", Str, "", "grid cell id", |c, _| Value::Text(&c.grid)),
        col!("listed", Int64, "", "images the listing found", |c, _| {
            Value::count(c.listed)
        }),
        col!(
            "downloaded",
            Int64,
            "",
            "images whose metadata was read",
            |c, _| { Value::count(Some(c.downloaded)) }
        ),
        col!(
            "failed",
            Int64,
            "",
            "images that failed to download in the last run",
            |c, _| { Value::count(c.failed) }
        ),
        col!(
            "listing",
            Str,
            "",
            "`verified`, `complete`, `truncated`, `failed`, `pending`, `unknown`, ...",
            |c, _| { Value::Text(c.listing) }
        ),
        col!(
            "listing_complete",
            Bool,
            "",
            "false when images may be missing",
            |c, _| { Value::bool(c.listing_complete) }
        ),
        col!(
            "without_position",
            Int64,
            "",
            "images without a position (not drawn)",
            |c, _| { Value::count(Some(c.without_position)) }
        ),
        col!("panoramas", Int64, "", "panoramas", |c, _| Value::count(
            Some(c.panoramas)
        )),
        col!(
            "pano_share",
            Real,
            "0..1",
            "panoramas among images whose kind is known, 4 decimals",
            |c, _| { Value::real(c.pano_share) }
        ),
        col!("first_capture", DateTime, "", "oldest capture", |c, _| {
            c.first_capture.as_deref().map_or(Value::Null, Value::Text)
        }),
        col!("last_capture", DateTime, "", "newest capture", |c, _| {
            c.last_capture.as_deref().map_or(Value::Null, Value::Text)
        }),
        col!(
            "months_since_newest",
            Real,
            "months",
            "mean months (30.44 days) from the newest capture to `--as-of`",
            |c, _| { Value::real(c.months_since_newest) }
        ),
        col!("sequences", Int64, "", "distinct sequences", |c, _| {
            Value::count(Some(c.sequences))
        }),
        col!("creators", Int64, "", "distinct creators", |c, _| {
            Value::count(Some(c.creators))
        }),
        col!(
            "area_km2",
            Real,
            "km²",
            "area of the cell on the sphere, 6 decimals",
            |c, _| { Value::real(c.area_km2) }
        ),
        col!(
            "images_per_km2",
            Real,
            "1/km²",
            "images per km², 3 decimals",
            |c, _| { Value::real(c.images_per_km2) }
        ),
        col!(
            "median_spacing_m",
            Real,
            "m",
            "median distance between consecutive images of a sequence",
            |c, _| { Value::real(c.median_spacing_m) }
        ),
    ],
    csv_geometry: &[
        col!(
            "min_lon",
            Real,
            "°",
            "west edge of the cell's box",
            |c, _| bbox(c, 0)
        ),
        col!("min_lat", Real, "°", "south edge", |c, _| bbox(c, 1)),
        col!("max_lon", Real, "°", "east edge", |c, _| bbox(c, 2)),
        col!("max_lat", Real, "°", "north edge", |c, _| bbox(c, 3)),
    ],
};

fn bbox(c: &CellCoverage, i: usize) -> Value<'static> {
    Value::real(c.bbox.map(|b| <[f64; 4]>::from(b)[i]))
}

/// `runs`: one row per fetch run (a table).
pub(crate) static RUNS: Layer<RunEntry> = Layer {
    def: LayerDef {
        name: "runs",
        title: "Fetch runs",
        description: "Provenance of each fetch run",
        geometry: Geometry::None,
    },
    columns: &[
        col!("run", Int, "", "1, 2, ... in order", |_, n| {
            Value::int(i64::try_from(n + 1).ok())
        }),
        col!("tool_version", Str, "", "mlyexport version", |r, _| {
            Value::Text(&r.tool_version)
        }),
        col!(
            "command_line",
            Str,
            "",
            "the command line (token hidden)",
            |r, _| { Value::Owned(r.shown_command()) }
        ),
        col!("api_url", Str, "", "Graph API root", |r, _| Value::Text(
            &r.api_url
        )),
        col!("started_at", DateTime, "", "start", |r, _| {
            Value::Millis(r.started_at.timestamp_millis())
        }),
        col!(
            "finished_at",
            DateTime,
            "",
            "end; empty when it did not finish",
            |r, _| { Value::millis(r.finished_at.map(|t| t.timestamp_millis())) }
        ),
        col!(
            "outcome",
            Str,
            "",
            "`complete`, `partial`, `interrupted`, `failed`, ...",
            |r, _| {
                match serde_json::to_value(r.outcome) {
                    Ok(serde_json::Value::String(s)) => Value::Owned(s),
                    _ => Value::Null,
                }
            }
        ),
        col!("dry_run", Bool, "", "listed only", |r, _| Value::Bool(
            r.dry_run
        )),
        col!("listed", Int64, "", "images listed", |r, _| Value::count(
            Some(r.counts.listed)
        )),
        col!("downloaded", Int64, "", "images downloaded", |r, _| {
            Value::count(Some(r.counts.downloaded))
        }),
        col!("skipped", Int64, "", "images already on disk", |r, _| {
            Value::count(Some(r.counts.skipped))
        }),
        col!("failed", Int64, "", "images that failed", |r, _| {
            Value::count(Some(r.counts.failed))
        }),
        col!(
            "without_position",
            Int64,
            "",
            "images without a position",
            |r, _| { Value::count(Some(r.counts.without_position)) }
        ),
        col!("bytes", Int64, "bytes", "bytes downloaded", |r, _| {
            Value::count(Some(r.counts.bytes))
        }),
        col!("search_calls", Int64, "", "Graph API searches", |r, _| {
            Value::count(Some(r.counts.search_calls))
        }),
        col!(
            "entity_calls",
            Int64,
            "",
            "Graph API look-ups by id",
            |r, _| { Value::count(Some(r.counts.entity_calls)) }
        ),
        col!(
            "shard",
            Str,
            "",
            "`K/N` for a run of shard K of N (from 0); empty for a whole fetch",
            |r, _| r.shard.as_deref().map_or(Value::Null, Value::Text)
        ),
    ],
    csv_geometry: &[],
};

/// The README's column table: one Markdown table per layer.
#[cfg(test)]
pub(crate) fn markdown() -> String {
    let mut out = String::new();
    table(&mut out, &IMAGES, "GeoPackage, GeoJSON, `images.csv`");
    table(&mut out, &SEQUENCES, "GeoPackage, GeoJSON");
    table(
        &mut out,
        &GRID_CELLS,
        "GeoPackage, GeoJSON, `coverage.csv`, `coverage.md`, `coverage.json`",
    );
    table(&mut out, &RUNS, "GeoPackage");
    out
}

#[cfg(test)]
fn table<R>(out: &mut String, layer: &Layer<R>, formats: &str) {
    use std::fmt::Write as _;
    let d = &layer.def;
    let _ = writeln!(
        out,
        "`{}` ({formats}): {}.\n",
        d.name,
        d.description.to_lowercase()
    );
    out.push_str("| column | type | unit | meaning |\n|---|---|---|---|\n");
    let csv_only = layer.csv_geometry.iter().map(|c| (c, " (CSV only)"));
    for (c, note) in layer.columns.iter().map(|c| (c, "")).chain(csv_only) {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {}{note} |",
            c.name,
            c.kind.label(),
            c.unit,
            c.about
        );
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's table between its markers is [`markdown`]'s. To update
    /// it: `MLYEXPORT_WRITE_README=1 cargo test --lib readme_column_table`.
    #[test]
    fn readme_column_table_is_the_schema() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let (begin, end) = ("<!-- columns: begin -->\n", "<!-- columns: end -->");
        let start = readme
            .find(begin)
            .expect("README has the columns: begin marker")
            + begin.len();
        let stop = readme
            .find(end)
            .expect("README has the columns: end marker");
        let want = format!("\n{}", markdown());
        if std::env::var_os("MLYEXPORT_WRITE_README").is_some() {
            let new = format!("{}{want}{}", &readme[..start], &readme[stop..]);
            std::fs::write(path, new).unwrap();
            return;
        }
        assert!(
            readme[start..stop] == want,
            "README's column table differs from the schema; run \
             `MLYEXPORT_WRITE_README=1 cargo test --lib readme_column_table`. Expected:\n{want}"
        );
    }

    /// `coverage.json` serialises [`CellCoverage`] with serde: its keys are
    /// the schema's columns plus `bbox`.
    #[test]
    fn coverage_json_keys_are_the_schema() {
        let c = CellCoverage {
            grid: "1".into(),
            bbox: None,
            shape: None,
            listed: None,
            downloaded: 0,
            failed: None,
            listing: "unknown",
            listing_complete: None,
            without_position: 0,
            panoramas: 0,
            pano_share: None,
            first_capture: None,
            last_capture: None,
            months_since_newest: None,
            sequences: 0,
            creators: 0,
            area_km2: None,
            images_per_km2: None,
            median_spacing_m: None,
        };
        let v = serde_json::to_value(&c).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want: Vec<&str> = GRID_CELLS.fields().map(|(n, _)| n).collect();
        want.insert(1, "bbox");
        assert_eq!(keys, want);
    }
}
