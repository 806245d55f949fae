//! The columns of each layer, declared once: name and type, in order. The
//! writers ([`super::writer`] for GeoPackage and any OGR dataset) create
//! their columns from these lists. Pure data.

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

/// One attribute column of a layer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Col(pub(crate) &'static str, pub(crate) Kind);

/// The geometry of a layer's features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Geometry {
    Point,
    LineString,
    MultiPolygon,
    /// A table without geometry.
    None,
}

/// One layer: its name, a title and a description (for the GeoPackage's
/// contents and for humans), its geometry and its columns.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LayerDef {
    pub(crate) name: &'static str,
    pub(crate) title: &'static str,
    pub(crate) description: &'static str,
    pub(crate) geometry: Geometry,
    pub(crate) columns: &'static [Col],
}

/// `images`: one point per downloaded image with a position.
pub(crate) const IMAGES: LayerDef = LayerDef {
    name: "images",
    title: "Mapillary images",
    description: "One point per downloaded image",
    geometry: Geometry::Point,
    columns: IMAGE_COLS,
};

/// `sequences`: a line per sequence through its images in capture order.
pub(crate) const SEQUENCES: LayerDef = LayerDef {
    name: "sequences",
    title: "Mapillary sequences",
    description: "Lines through each sequence's images in capture order",
    geometry: Geometry::LineString,
    columns: SEQUENCE_COLS,
};

/// `grid_cells`: each grid cell with its coverage figures.
pub(crate) const GRID_CELLS: LayerDef = LayerDef {
    name: "grid_cells",
    title: "Grid cells",
    description: "Grid cells with coverage figures",
    geometry: Geometry::MultiPolygon,
    columns: CELL_COLS,
};

/// `runs`: one row per fetch run (a table).
pub(crate) const RUNS: LayerDef = LayerDef {
    name: "runs",
    title: "Fetch runs",
    description: "Provenance of each fetch run",
    geometry: Geometry::None,
    columns: RUN_COLS,
};

use Kind::{Bool, DateTime as Dt, Int, Int64, Real, Str};

/// Columns of `images`, in order.
const IMAGE_COLS: &[Col] = &[
    Col("id", Str),
    Col("sequence", Str),
    Col("captured_at", Dt),
    Col("compass_angle", Real),
    Col("computed_compass_angle", Real),
    Col("direction", Real),
    Col("is_pano", Bool),
    Col("camera_type", Str),
    Col("make", Str),
    Col("model", Str),
    Col("creator", Str),
    Col("creator_id", Str),
    Col("width", Int),
    Col("height", Int),
    Col("altitude", Real),
    Col("grid", Str),
    Col("file", Str),
    Col("bytes", Int64),
    Col("position_source", Str),
    Col("position_offset_m", Real),
];

/// Columns of `sequences`.
const SEQUENCE_COLS: &[Col] = &[
    Col("sequence", Str),
    Col("image_count", Int),
    Col("start_time", Dt),
    Col("end_time", Dt),
    Col("length_m", Real),
];

/// Columns of `grid_cells`.
const CELL_COLS: &[Col] = &[
    Col("grid", Str),
    Col("listed", Int64),
    Col("downloaded", Int64),
    Col("failed", Int64),
    Col("listing", Str),
    Col("listing_complete", Bool),
    Col("without_position", Int64),
    Col("panoramas", Int64),
    Col("pano_share", Real),
    Col("first_capture", Dt),
    Col("last_capture", Dt),
    Col("months_since_newest", Real),
    Col("sequences", Int64),
    Col("creators", Int64),
    Col("area_km2", Real),
    Col("images_per_km2", Real),
    Col("median_spacing_m", Real),
];

/// Columns of `runs`.
const RUN_COLS: &[Col] = &[
    Col("run", Int),
    Col("tool_version", Str),
    Col("command_line", Str),
    Col("api_url", Str),
    Col("started_at", Dt),
    Col("finished_at", Dt),
    Col("outcome", Str),
    Col("dry_run", Bool),
    Col("listed", Int64),
    Col("downloaded", Int64),
    Col("skipped", Int64),
    Col("failed", Int64),
    Col("without_position", Int64),
    Col("bytes", Int64),
    Col("search_calls", Int64),
    Col("entity_calls", Int64),
    // `K/N` for a run of shard K of N; empty for a whole fetch.
    Col("shard", Str),
];
