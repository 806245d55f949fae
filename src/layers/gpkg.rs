//! Writes `mapillary.gpkg` (EPSG:4326) through GDAL: `images`, `sequences`,
//! `grid_cells`, `runs` and `layer_styles`, on one thread in one transaction.
//! Writes only the path it is given (the caller renames it into place); no
//! threads, no terminal, no other files.

use std::ffi::{CStr, CString, c_int};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Timelike, Utc};
use gdal::errors::GdalError;
use gdal::spatial_ref::SpatialRef;
use gdal::vector::{LayerAccess, LayerOptions};
use gdal::{Dataset, DriverManager};
use gdal_sys::{OGRFieldSubType, OGRFieldType, OGRwkbGeometryType};

use super::rtree;
use super::styles;
use super::{
    FileLayout, ImageRow, SequenceLine, iso_ms, round_coord, round_to, source_name, write_file_path,
};
use crate::coverage::CellCoverage;
use crate::model::{LonLat, PositionSource};
use crate::runrecord::RunEntry;

/// Errors while writing the GeoPackage.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GpkgError {
    #[error("cannot write `{path}`: {message}")]
    Other { path: PathBuf, message: String },
    #[error("GDAL failed to {what} in `{path}`: {source}")]
    Gdal {
        what: String,
        path: PathBuf,
        source: GdalError,
    },
    #[error("GDAL failed to {what} in `{path}` (OGR error {code})")]
    Ogr {
        what: String,
        path: PathBuf,
        code: i32,
    },
}

/// The type of one attribute column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Str,
    Int,
    Int64,
    Real,
    Bool,
    /// UTC with milliseconds (`YYYY-MM-DDTHH:MM:SS.SSSZ`).
    DateTime,
}

/// One attribute column of a layer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Col(pub &'static str, pub Kind);

use Kind::{Bool, DateTime as Dt, Int, Int64, Real, Str};

/// Columns of `images`, in order.
pub(crate) const IMAGE_COLS: &[Col] = &[
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
pub(crate) const SEQUENCE_COLS: &[Col] = &[
    Col("sequence", Str),
    Col("image_count", Int),
    Col("start_time", Dt),
    Col("end_time", Dt),
    Col("length_m", Real),
];

/// Columns of `grid_cells`.
pub(crate) const CELL_COLS: &[Col] = &[
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
pub(crate) const RUN_COLS: &[Col] = &[
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
];

/// Columns of `layer_styles`, as QGIS creates and reads them.
const STYLE_COLS: &[Col] = &[
    Col("f_table_catalog", Str),
    Col("f_table_schema", Str),
    Col("f_table_name", Str),
    Col("f_geometry_column", Str),
    Col("styleName", Str),
    Col("styleQML", Str),
    Col("styleSLD", Str),
    Col("useAsDefault", Bool),
    Col("description", Str),
    Col("owner", Str),
    Col("ui", Str),
    Col("update_time", Dt),
];

struct Writer<'p> {
    path: &'p Path,
}

impl Writer<'_> {
    fn gdal(&self, what: &str) -> impl Fn(GdalError) -> GpkgError + '_ {
        let what = what.to_string();
        move |source| GpkgError::Gdal {
            what: what.clone(),
            path: self.path.to_path_buf(),
            source,
        }
    }
    fn check(&self, code: gdal_sys::OGRErr::Type, what: &str) -> Result<(), GpkgError> {
        if code == gdal_sys::OGRErr::OGRERR_NONE {
            Ok(())
        } else {
            Err(GpkgError::Ogr {
                what: what.to_string(),
                path: self.path.to_path_buf(),
                code: code as i32,
            })
        }
    }

    /// Creates a layer with its columns and returns its raw handle, which
    /// stays valid while the dataset lives.
    fn layer(
        &self,
        ds: &mut Dataset,
        name: &str,
        ty: OGRwkbGeometryType::Type,
        srs: &SpatialRef,
        cols: &[Col],
        options: &[&str],
    ) -> Result<gdal_sys::OGRLayerH, GpkgError> {
        let spatial = ty != OGRwkbGeometryType::wkbNone;
        let layer = ds
            .create_layer(LayerOptions {
                name,
                srs: spatial.then_some(srs),
                ty,
                options: Some(options),
            })
            .map_err(self.gdal(&format!("create layer `{name}`")))?;
        // SAFETY: the handle is used only while `ds` lives (inside `write`).
        let h = unsafe { layer.c_layer() };
        for &Col(col, kind) in cols {
            let (ty, sub) = match kind {
                Str => (OGRFieldType::OFTString, OGRFieldSubType::OFSTNone),
                Int => (OGRFieldType::OFTInteger, OGRFieldSubType::OFSTNone),
                Int64 => (OGRFieldType::OFTInteger64, OGRFieldSubType::OFSTNone),
                Real => (OGRFieldType::OFTReal, OGRFieldSubType::OFSTNone),
                Bool => (OGRFieldType::OFTInteger, OGRFieldSubType::OFSTBoolean),
                Dt => (OGRFieldType::OFTDateTime, OGRFieldSubType::OFSTNone),
            };
            let c_name = cstring(col);
            // SAFETY: `c_name` outlives the call; the field definition is
            // copied by OGR_L_CreateField and destroyed right after.
            let code = unsafe {
                let fd = gdal_sys::OGR_Fld_Create(c_name.as_ptr(), ty);
                gdal_sys::OGR_Fld_SetSubType(fd, sub);
                let code = gdal_sys::OGR_L_CreateField(h, fd, 1);
                gdal_sys::OGR_Fld_Destroy(fd);
                code
            };
            self.check(code, &format!("create field `{col}` of `{name}`"))?;
        }
        Ok(h)
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn cstring(s: &str) -> CString {
    CString::new(s).unwrap_or_else(|_| CString::new(s.replace('\0', "")).unwrap_or_default())
}

/// One feature being filled; destroyed on drop.
struct Feat(gdal_sys::OGRFeatureH);

impl Feat {
    fn new(layer: gdal_sys::OGRLayerH) -> Self {
        // SAFETY: `layer` is a live layer handle; the feature is destroyed in Drop.
        Self(unsafe { gdal_sys::OGR_F_Create(gdal_sys::OGR_L_GetLayerDefn(layer)) })
    }
    fn str(&mut self, i: usize, v: Option<&str>) {
        if let Some(v) = v {
            let c = cstring(v);
            // SAFETY: valid feature and field index (columns are created in order).
            unsafe { gdal_sys::OGR_F_SetFieldString(self.0, i as c_int, c.as_ptr()) }
        }
    }
    fn int(&mut self, i: usize, v: Option<i64>) {
        if let Some(v) = v {
            // SAFETY: as above; OGR converts for 32-bit integer fields.
            unsafe { gdal_sys::OGR_F_SetFieldInteger64(self.0, i as c_int, v) }
        }
    }
    fn real(&mut self, i: usize, v: Option<f64>) {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            // SAFETY: as above.
            unsafe { gdal_sys::OGR_F_SetFieldDouble(self.0, i as c_int, v) }
        }
    }
    fn bool(&mut self, i: usize, v: Option<bool>) {
        self.int(i, v.map(i64::from));
    }
    fn time(&mut self, i: usize, v: Option<DateTime<Utc>>) {
        if let Some(t) = v {
            let sec = t.second() as f32 + (t.timestamp_subsec_millis() as f32) / 1000.0;
            // SAFETY: as above; time-zone flag 100 means UTC.
            unsafe {
                gdal_sys::OGR_F_SetFieldDateTimeEx(
                    self.0,
                    i as c_int,
                    t.year(),
                    t.month() as c_int,
                    t.day() as c_int,
                    t.hour() as c_int,
                    t.minute() as c_int,
                    sec,
                    100,
                );
            }
        }
    }
    fn time_ms(&mut self, i: usize, ms: Option<i64>) {
        self.time(i, ms.and_then(DateTime::from_timestamp_millis));
    }
    fn time_iso(&mut self, i: usize, s: Option<&str>) {
        let t = s
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc));
        self.time(i, t);
    }
    /// Sets a geometry built from `points`: a point, a line or a polygon ring.
    fn geometry(&mut self, ty: OGRwkbGeometryType::Type, points: &[LonLat]) {
        // SAFETY: the new geometries are handed to OGR, which takes ownership
        // (SetGeometryDirectly, AddGeometryDirectly).
        unsafe {
            let part_ty = if ty == OGRwkbGeometryType::wkbPolygon {
                OGRwkbGeometryType::wkbLinearRing
            } else {
                ty
            };
            let g = gdal_sys::OGR_G_CreateGeometry(part_ty);
            for p in points {
                gdal_sys::OGR_G_AddPoint_2D(g, round_coord(p.lon), round_coord(p.lat));
            }
            let g = if ty == OGRwkbGeometryType::wkbPolygon {
                let poly = gdal_sys::OGR_G_CreateGeometry(ty);
                gdal_sys::OGR_G_AddGeometryDirectly(poly, g);
                poly
            } else {
                g
            };
            gdal_sys::OGR_F_SetGeometryDirectly(self.0, g);
        }
    }
    /// Sets a MultiPolygon geometry: each polygon's exterior ring first
    /// (counter-clockwise), then its holes.
    fn multipolygon(&mut self, mp: &geo::MultiPolygon<f64>) {
        // SAFETY: as in `geometry`: OGR takes ownership of each new part.
        unsafe {
            let multi = gdal_sys::OGR_G_CreateGeometry(OGRwkbGeometryType::wkbMultiPolygon);
            for poly in &mp.0 {
                let g = gdal_sys::OGR_G_CreateGeometry(OGRwkbGeometryType::wkbPolygon);
                for ring in std::iter::once(poly.exterior()).chain(poly.interiors()) {
                    let r = gdal_sys::OGR_G_CreateGeometry(OGRwkbGeometryType::wkbLinearRing);
                    for c in ring.coords() {
                        gdal_sys::OGR_G_AddPoint_2D(r, round_coord(c.x), round_coord(c.y));
                    }
                    gdal_sys::OGR_G_AddGeometryDirectly(g, r);
                }
                gdal_sys::OGR_G_AddGeometryDirectly(multi, g);
            }
            gdal_sys::OGR_F_SetGeometryDirectly(self.0, multi);
        }
    }
    /// Sets the first `n` fields to NULL and unsets the FID, so the feature can
    /// be reused. Every row then sets the same fields, and GDAL reuses one
    /// prepared INSERT statement instead of preparing one per shape of row.
    fn clear(&mut self, n: usize) {
        // SAFETY: valid feature; indexes below the field count.
        unsafe {
            for i in 0..n {
                gdal_sys::OGR_F_SetFieldNull(self.0, i as c_int);
            }
            gdal_sys::OGR_F_SetFID(self.0, -1);
        }
    }
    fn cstr(&mut self, i: usize, v: Option<&CStr>) {
        if let Some(v) = v {
            // SAFETY: valid feature and field index; OGR copies the string.
            unsafe { gdal_sys::OGR_F_SetFieldString(self.0, i as c_int, v.as_ptr()) }
        }
    }
    /// Writes the feature as a new row, keeping it for reuse.
    fn create(
        &mut self,
        w: &Writer<'_>,
        layer: gdal_sys::OGRLayerH,
        what: &str,
    ) -> Result<(), GpkgError> {
        // SAFETY: live layer and feature handles.
        let code = unsafe { gdal_sys::OGR_L_CreateFeature(layer, self.0) };
        w.check(code, what)
    }
}

impl Drop for Feat {
    fn drop(&mut self) {
        // SAFETY: created by OGR_F_Create and not destroyed elsewhere.
        unsafe { gdal_sys::OGR_F_Destroy(self.0) }
    }
}

/// Which geometry a layer has, as its creation options see it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Geom {
    /// A `geom` column with GDAL's spatial index.
    Indexed,
    /// A `geom` column whose index is written at the end (`write_images_index`).
    IndexedLater,
    None,
}

fn layer_options(identifier: &str, description: &str, geom: Geom) -> Vec<String> {
    let mut o = vec![
        format!("IDENTIFIER={identifier}"),
        format!("DESCRIPTION={description}"),
    ];
    if geom != Geom::None {
        let index = if geom == Geom::Indexed { "YES" } else { "NO" };
        o.extend([
            "GEOMETRY_NAME=geom".to_string(),
            format!("SPATIAL_INDEX={index}"),
            "FID=fid".to_string(),
        ]);
    } else {
        o.push("FID=fid".to_string());
    }
    o
}

/// A GeoPackage being written: created with all its layers and one open
/// transaction; images are added in batches, the rest at [`GpkgWriter::finish`],
/// which commits. Dropped without `finish`, nothing is committed. Lives on one
/// thread: its raw layer handles are not `Send`.
pub(crate) struct GpkgWriter {
    ds: Dataset,
    path: PathBuf,
    layout: FileLayout,
    as_of: DateTime<Utc>,
    /// The reader's string table as C strings, made once each (same handles).
    cstrings: Vec<CString>,
    /// `source_name` of each position source as a C string.
    sources: [CString; 2],
    /// EPSG:4326 in lon, lat order.
    srs: SpatialRef,
    images: gdal_sys::OGRLayerH,
    /// The id and box of every image point written, for its spatial index.
    index: Vec<rtree::Entry>,
    /// Makes the packed index fail, to test the fallback.
    #[cfg(test)]
    fail_packed_index: bool,
    seqs: gdal_sys::OGRLayerH,
    cells: gdal_sys::OGRLayerH,
    runs: gdal_sys::OGRLayerH,
    styles: gdal_sys::OGRLayerH,
}

impl GpkgWriter {
    /// Creates a new GeoPackage at `path` (which must not exist) with every
    /// layer, and starts the transaction. `as_of` is stamped as the
    /// GeoPackage's `last_change` and the styles' `update_time`, so a re-run
    /// writes the same bytes.
    pub(crate) fn create(
        path: &Path,
        layout: FileLayout,
        as_of: DateTime<Utc>,
    ) -> Result<Self, GpkgError> {
        let w = Writer { path };
        // The GeoPackage driver stamps `gpkg_contents.last_change` with this.
        gdal::config::set_config_option("OGR_CURRENT_DATE", &iso_ms(as_of))
            .map_err(w.gdal("set OGR_CURRENT_DATE"))?;
        let driver =
            DriverManager::get_driver_by_name("GPKG").map_err(w.gdal("load the GPKG driver"))?;
        let mut ds = driver
            .create_vector_only(path)
            .map_err(w.gdal("create the GeoPackage"))?;
        let mut srs = SpatialRef::from_epsg(4326).map_err(w.gdal("build EPSG:4326"))?;
        // GDAL 3 uses lat,lon axis order for EPSG:4326 unless told otherwise.
        srs.set_axis_mapping_strategy(gdal::spatial_ref::AxisMappingStrategy::TraditionalGisOrder);
        // One transaction for everything: layers, features, styles.
        // SAFETY: a live dataset handle; committed in `finish`, rolled back
        // by SQLite when the dataset is closed without it.
        let code = unsafe { gdal_sys::GDALDatasetStartTransaction(ds.c_dataset(), 0) };
        w.check(code, "start a transaction")?;

        let opts = layer_options;
        // The images' spatial index is packed at the end (see `write_images_index`).
        let images_o = opts(
            "Mapillary images",
            "One point per downloaded image",
            Geom::IndexedLater,
        );
        let seq_o = opts(
            "Mapillary sequences",
            "Lines through each sequence's images in capture order",
            Geom::Indexed,
        );
        let cells_o = opts(
            "Grid cells",
            "Grid cells with coverage figures",
            Geom::Indexed,
        );
        let runs_o = opts("Fetch runs", "Provenance of each fetch run", Geom::None);
        let styles_o = vec![
            "FID=id".to_string(),
            "DESCRIPTION=Default QGIS styles".to_string(),
        ];
        let images = w.layer(
            &mut ds,
            "images",
            OGRwkbGeometryType::wkbPoint,
            &srs,
            IMAGE_COLS,
            &strs(&images_o),
        )?;
        let seqs = w.layer(
            &mut ds,
            "sequences",
            OGRwkbGeometryType::wkbLineString,
            &srs,
            SEQUENCE_COLS,
            &strs(&seq_o),
        )?;
        let cells = w.layer(
            &mut ds,
            "grid_cells",
            OGRwkbGeometryType::wkbMultiPolygon,
            &srs,
            CELL_COLS,
            &strs(&cells_o),
        )?;
        let runs = w.layer(
            &mut ds,
            "runs",
            OGRwkbGeometryType::wkbNone,
            &srs,
            RUN_COLS,
            &strs(&runs_o),
        )?;
        let style_layer = w.layer(
            &mut ds,
            "layer_styles",
            OGRwkbGeometryType::wkbNone,
            &srs,
            STYLE_COLS,
            &strs(&styles_o),
        )?;

        Ok(Self {
            ds,
            path: path.to_path_buf(),
            layout,
            as_of,
            cstrings: Vec::new(),
            sources: [PositionSource::Computed, PositionSource::Original]
                .map(|p| cstring(source_name(p))),
            srs,
            images,
            index: Vec::new(),
            #[cfg(test)]
            fail_packed_index: false,
            seqs,
            cells,
            runs,
            styles: style_layer,
        })
    }

    /// Makes room for the spatial index of `images` image points at once
    /// (a growing list would briefly hold twice its size).
    pub(crate) fn reserve(&mut self, images: usize) {
        self.index.reserve_exact(images);
    }

    /// Adds strings interned by the reader since the last call, in order.
    pub(crate) fn add_strings(&mut self, new: &[Box<str>]) {
        self.cstrings.extend(new.iter().map(|s| cstring(s)));
    }

    /// Appends the drawn images among `rows` (those with a position). One
    /// feature is reused for every row, and interned strings are passed as
    /// C strings made once: this loop is the GeoPackage's hot path.
    pub(crate) fn write_images(&mut self, rows: &[ImageRow]) -> Result<(), GpkgError> {
        let w = Writer { path: &self.path };
        let cs = &self.cstrings;
        let c = |sym: super::Sym| cs.get(sym.0 as usize).map(CString::as_c_str);
        let mut f = Feat::new(self.images);
        // One buffer for the strings made per row (id, file path), NUL-ended.
        let mut buf = String::new();
        fn nul_ended(buf: &mut String) -> Option<&CStr> {
            buf.push('\0');
            CStr::from_bytes_with_nul(buf.as_bytes()).ok()
        }
        for r in rows {
            let Some(p) = r.position() else { continue };
            f.clear(IMAGE_COLS.len());
            buf.clear();
            let _ = std::fmt::Write::write_fmt(&mut buf, format_args!("{}", r.id));
            f.cstr(0, nul_ended(&mut buf));
            f.cstr(1, c(r.sequence));
            f.time_ms(2, r.captured_ms());
            f.real(3, r.compass_angle());
            f.real(4, r.computed_compass_angle());
            f.real(5, r.direction());
            f.bool(6, r.is_pano);
            f.cstr(7, c(r.camera_type));
            f.cstr(8, c(r.make));
            f.cstr(9, c(r.model));
            f.cstr(10, c(r.creator));
            f.cstr(11, c(r.creator_id));
            f.int(12, r.width().map(i64::from));
            f.int(13, r.height().map(i64::from));
            f.real(14, r.altitude());
            f.cstr(15, c(r.grid));
            let grid = c(r.grid).and_then(|g| g.to_str().ok()).unwrap_or("");
            if write_file_path(self.layout, grid, r, &mut buf) {
                f.cstr(16, nul_ended(&mut buf));
            }
            f.int(17, r.bytes().and_then(|b| i64::try_from(b).ok()));
            let source = match r.source {
                PositionSource::Computed => &self.sources[0],
                PositionSource::Original => &self.sources[1],
            };
            f.cstr(18, Some(source));
            f.real(19, r.offset_m().map(|m| round_to(m, 3)));
            f.geometry(OGRwkbGeometryType::wkbPoint, &[p]);
            f.create(&w, self.images, "insert an image")?;
            // SAFETY: a live feature; OGR set its FID to the row inserted.
            let fid = unsafe { gdal_sys::OGR_F_GetFID(f.0) };
            self.index.push(rtree::Entry::point(
                fid,
                round_coord(p.lon),
                round_coord(p.lat),
            ));
        }
        Ok(())
    }

    /// Writes the sequences, grid cells, runs and styles, and commits.
    pub(crate) fn finish(
        mut self,
        sequences: &[SequenceLine],
        cells: &[CellCoverage],
        runs: &[RunEntry],
    ) -> Result<(), GpkgError> {
        let w = Writer { path: &self.path };
        for l in sequences {
            let mut f = Feat::new(self.seqs);
            f.cstr(
                0,
                self.cstrings
                    .get(l.sequence.0 as usize)
                    .map(CString::as_c_str),
            );
            f.int(1, i64::try_from(l.points.len()).ok());
            f.time_ms(2, Some(l.first_ms));
            f.time_ms(3, Some(l.last_ms));
            f.real(4, Some(round_to(l.length_m, 2)));
            f.geometry(OGRwkbGeometryType::wkbLineString, &l.points);
            f.create(&w, self.seqs, "insert a sequence")?;
        }
        for c in cells {
            let mut f = Feat::new(self.cells);
            let i = |v: Option<u64>| v.and_then(|v| i64::try_from(v).ok());
            f.str(0, Some(&c.grid));
            f.int(1, i(c.listed));
            f.int(2, i(Some(c.downloaded)));
            f.int(3, i(c.failed));
            f.str(4, Some(c.listing));
            f.bool(5, c.listing_complete);
            f.int(6, i(Some(c.without_position)));
            f.int(7, i(Some(c.panoramas)));
            f.real(8, c.pano_share);
            f.time_iso(9, c.first_capture.as_deref());
            f.time_iso(10, c.last_capture.as_deref());
            f.real(11, c.months_since_newest);
            f.int(12, i(Some(c.sequences)));
            f.int(13, i(Some(c.creators)));
            f.real(14, c.area_km2);
            f.real(15, c.images_per_km2);
            f.real(16, c.median_spacing_m);
            if let Some(shape) = super::cell_shape(c) {
                f.multipolygon(&shape);
            }
            f.create(&w, self.cells, "insert a grid cell")?;
        }
        for (n, run) in runs.iter().enumerate() {
            let mut f = Feat::new(self.runs);
            let i = |v: u64| i64::try_from(v).ok();
            let k = &run.counts;
            f.int(0, i64::try_from(n + 1).ok());
            f.str(1, Some(&run.tool_version));
            f.str(2, Some(&run.command_line.join(" ")));
            f.str(3, Some(&run.api_url));
            f.time(4, Some(run.started_at));
            f.time(5, run.finished_at);
            f.str(
                6,
                serde_json::to_value(run.outcome)
                    .ok()
                    .as_ref()
                    .and_then(|v| v.as_str()),
            );
            f.bool(7, Some(run.dry_run));
            for (j, v) in [
                k.listed,
                k.downloaded,
                k.skipped,
                k.failed,
                k.without_position,
                k.bytes,
                k.search_calls,
                k.entity_calls,
            ]
            .into_iter()
            .enumerate()
            {
                f.int(8 + j, i(v));
            }
            f.create(&w, self.runs, "insert a run")?;
        }
        for (style, qml) in styles::all() {
            let mut f = Feat::new(self.styles);
            f.str(0, Some(""));
            f.str(1, Some(""));
            f.str(2, Some(style.table));
            f.str(3, Some(style.geometry_column));
            f.str(4, Some(style.name));
            f.str(5, Some(&qml));
            f.str(6, Some(""));
            f.bool(7, Some(true));
            f.str(8, Some(style.description));
            f.str(9, Some(""));
            f.str(10, None);
            f.time(11, Some(self.as_of));
            f.create(&w, self.styles, "insert a layer style")?;
        }
        self.write_images_index()?;
        let w = Writer { path: &self.path };
        // SAFETY: a live dataset handle with the transaction started in `create`.
        let code = unsafe { gdal_sys::GDALDatasetCommitTransaction(self.ds.c_dataset()) };
        w.check(code, "commit the transaction")?;
        drop(self.ds);
        Ok(())
    }
}

/// The SQL with which this GDAL makes a GeoPackage spatial index on
/// `images.geom`: the R*Tree table, its triggers and its `gpkg_extensions` row.
struct IndexSql {
    create: String,
    triggers: Vec<String>,
    extension: [Option<String>; 5],
}

/// Rows of one SQL query, each as its columns' strings.
fn query(ds: &Dataset, sql: &str) -> Result<Vec<Vec<Option<String>>>, GdalError> {
    let Some(mut rs) = ds.execute_sql(sql, None, gdal::vector::sql::Dialect::DEFAULT)? else {
        return Ok(Vec::new());
    };
    let n = rs.defn().fields().count();
    let mut rows = Vec::new();
    for f in rs.features() {
        rows.push(
            (0..n)
                .map(|i| f.field_as_string(i).ok().flatten())
                .collect(),
        );
    }
    Ok(rows)
}

/// The first column of the first row of an SQL query, if any.
fn query_value(ds: &Dataset, sql: &str) -> Result<Option<String>, GdalError> {
    Ok(query(ds, sql)?
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next().flatten()))
}

/// Runs a statement that returns no rows.
fn exec(ds: &Dataset, sql: &str) -> Result<(), GdalError> {
    ds.execute_sql(sql, None, gdal::vector::sql::Dialect::DEFAULT)
        .map(drop)
}

/// Asks GDAL for the SQL of the `images` spatial index: GDAL makes one in a
/// scratch GeoPackage in memory, and its schema is read back. So the index
/// has exactly the triggers this GDAL (and its `validate_gpkg`) expects.
fn index_sql(srs: &SpatialRef) -> Result<IndexSql, GdalError> {
    static SCRATCH: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = SCRATCH.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = format!("/vsimem/mlyexport-index-{}-{n}.gpkg", std::process::id());
    let driver = DriverManager::get_driver_by_name("GPKG")?;
    let result = (|| {
        let mut ds = driver.create_vector_only(&path)?;
        let layer = ds.create_layer(LayerOptions {
            name: "images",
            srs: Some(srs),
            ty: OGRwkbGeometryType::wkbPoint,
            options: Some(&strs(&layer_options("images", "", Geom::Indexed))),
        })?;
        // SAFETY: a live layer of `ds`; syncing makes GDAL create the index.
        unsafe { gdal_sys::OGR_L_SyncToDisk(layer.c_layer()) };
        let create = query_value(
            &ds,
            "SELECT sql FROM sqlite_master WHERE name = 'rtree_images_geom'",
        )?;
        let triggers = query(
            &ds,
            "SELECT sql FROM sqlite_master WHERE type = 'trigger' \
             AND name LIKE 'rtree_images_geom_%' ORDER BY name",
        )?;
        let ext = query(
            &ds,
            "SELECT table_name, column_name, extension_name, definition, scope \
             FROM gpkg_extensions WHERE extension_name = 'gpkg_rtree_index'",
        )?
        .into_iter()
        .next()
        .unwrap_or_default();
        let missing = || GdalError::BadArgument("GDAL made no spatial index to copy".into());
        let mut extension: [Option<String>; 5] = Default::default();
        for (slot, v) in extension.iter_mut().zip(ext) {
            *slot = v;
        }
        if extension[0].is_none() || triggers.is_empty() {
            return Err(missing());
        }
        Ok(IndexSql {
            create: create.ok_or_else(missing)?,
            triggers: triggers
                .into_iter()
                .filter_map(|r| r.into_iter().flatten().next())
                .collect(),
            extension,
        })
    })();
    let c = cstring(&path);
    // SAFETY: a NUL-terminated path; unlinking a missing file is harmless.
    unsafe { gdal_sys::VSIUnlink(c.as_ptr()) };
    result
}

/// An SQL string literal.
fn sql_text(v: Option<&str>) -> String {
    v.map_or_else(
        || "NULL".to_string(),
        |v| format!("'{}'", v.replace('\'', "''")),
    )
}

/// Statements are cut at about this many bytes of SQL.
const SQL_BATCH: usize = 1 << 20;

/// Writes packed R*Tree nodes into the shadow tables of `rtree_images_geom`
/// as they come, a megabyte of SQL at a time: the nodes (as `VALUES` with
/// blob literals), and each entry's leaf and each node's parent, which SQLite
/// reads from a JSON object (`{"node":[ids]}`), several times faster than the
/// same rows as `VALUES` lists through GDAL.
struct IndexSink<'d> {
    ds: &'d Dataset,
    nodes: String,
    leaves: String,
    parents: String,
}

impl<'d> IndexSink<'d> {
    const NODES: &'static str = "INSERT INTO \"rtree_images_geom_node\"(nodeno, data) VALUES ";

    fn new(ds: &'d Dataset) -> Self {
        Self {
            ds,
            nodes: String::new(),
            leaves: String::new(),
            parents: String::new(),
        }
    }

    fn add(&mut self, n: &rtree::Node) -> Result<(), GdalError> {
        use std::fmt::Write as _;
        let sep = if self.nodes.is_empty() {
            Self::NODES
        } else {
            ","
        };
        let _ = write!(
            self.nodes,
            "{sep}({}, X'{}')",
            n.number,
            hex::encode(&n.data)
        );
        let map = if n.leaf {
            &mut self.leaves
        } else {
            &mut self.parents
        };
        let sep = if map.is_empty() { "" } else { "," };
        let _ = write!(map, "{sep}\"{}\":[", n.number);
        for (i, id) in n.ids().enumerate() {
            let _ = write!(map, "{}{id}", if i == 0 { "" } else { "," });
        }
        map.push(']');
        self.flush(false)
    }

    fn flush(&mut self, all: bool) -> Result<(), GdalError> {
        let full = |s: &String| !s.is_empty() && (all || s.len() >= SQL_BATCH);
        if full(&self.nodes) {
            exec(self.ds, &self.nodes)?;
            self.nodes.clear();
        }
        for (table, cols, map) in [
            ("rtree_images_geom_rowid", "rowid, nodeno", &mut self.leaves),
            (
                "rtree_images_geom_parent",
                "nodeno, parentnode",
                &mut self.parents,
            ),
        ] {
            if full(map) {
                exec(
                    self.ds,
                    &format!(
                        "INSERT INTO \"{table}\"({cols}) SELECT m.value, CAST(g.key AS INTEGER) \
                         FROM json_each('{{{map}}}') AS g, json_each(g.value) AS m"
                    ),
                )?;
                map.clear();
            }
        }
        Ok(())
    }
}

impl GpkgWriter {
    /// Writes the spatial index of `images`: packed ([`Self::write_packed_index`]),
    /// or, should SQLite refuse that (a build that forbids writing an R*Tree's
    /// tables, or one without JSON), by GDAL itself, slowly, after removing
    /// what the packed attempt left.
    fn write_images_index(&mut self) -> Result<(), GpkgError> {
        let packed = self.write_packed_index();
        #[cfg(test)]
        let packed = if self.fail_packed_index {
            packed.and(Err(GpkgError::Other {
                path: self.path.clone(),
                message: "packed index refused (test)".into(),
            }))
        } else {
            packed
        };
        let Err(refused) = packed else {
            return Ok(());
        };
        let ds = &self.ds;
        let gdal_index = || -> Result<(), GdalError> {
            let triggers = query(
                ds,
                "SELECT name FROM sqlite_master WHERE type = 'trigger' \
                 AND name LIKE 'rtree_images_geom_%'",
            )?;
            for name in triggers.into_iter().flatten().flatten() {
                exec(
                    ds,
                    &format!("DROP TRIGGER IF EXISTS \"{}\"", name.replace('"', "\"\"")),
                )?;
            }
            exec(ds, "DROP TABLE IF EXISTS \"rtree_images_geom\"")?;
            exec(
                ds,
                "DELETE FROM gpkg_extensions WHERE lower(table_name) = 'images' \
                 AND extension_name = 'gpkg_rtree_index'",
            )?;
            query(ds, "SELECT CreateSpatialIndex('images', 'geom')").map(drop)
        };
        gdal_index().map_err(|e| GpkgError::Other {
            path: self.path.clone(),
            message: format!("{refused}; GDAL could not index the images either: {e}"),
        })
    }

    /// Writes the spatial index of `images` as GDAL would (same table,
    /// triggers and extension row, in the open transaction), but packs the
    /// R*Tree's nodes in one go ([`rtree::pack`]) rather than inserting each
    /// image into it, which was most of the GeoPackage's writing time.
    fn write_packed_index(&mut self) -> Result<(), GpkgError> {
        let index = std::mem::take(&mut self.index);
        let w = Writer { path: &self.path };
        let sql = index_sql(&self.srs).map_err(w.gdal("learn GDAL's spatial index SQL"))?;
        let ds = &self.ds;
        exec(ds, &sql.create).map_err(w.gdal("create the images' spatial index"))?;
        let node_size = query_value(
            ds,
            "SELECT length(data) FROM \"rtree_images_geom_node\" WHERE nodeno = 1",
        )
        .map_err(w.gdal("read the spatial index's node size"))?
        .and_then(|v| v.parse::<usize>().ok());
        let write = w.gdal("write the images' spatial index");
        exec(ds, "DELETE FROM \"rtree_images_geom_node\"").map_err(&write)?;
        let mut sink = IndexSink::new(ds);
        node_size
            .and_then(|size| rtree::pack(index, size, |n| sink.add(&n)))
            .ok_or_else(|| GpkgError::Other {
                path: self.path.clone(),
                message: format!(
                    "SQLite made R*Tree nodes of {node_size:?} bytes; cannot pack them"
                ),
            })?
            .and_then(|()| sink.flush(true))
            .map_err(&write)?;
        for t in &sql.triggers {
            exec(ds, t).map_err(&write)?;
        }
        let values: Vec<String> = sql
            .extension
            .iter()
            .map(|v| sql_text(v.as_deref()))
            .collect();
        exec(
            ds,
            &format!(
                "INSERT INTO gpkg_extensions(table_name, column_name, extension_name, definition, scope) \
                 VALUES ({})",
                values.join(", ")
            ),
        )
        .map_err(&write)?;
        Ok(())
    }
}

/// Writes every layer of `set` to a new GeoPackage at `path` in one go.
#[cfg(test)]
pub(crate) fn write(
    path: &Path,
    set: &super::LayerSet,
    as_of: DateTime<Utc>,
) -> Result<(), GpkgError> {
    let mut g = GpkgWriter::create(path, set.layout, as_of)?;
    g.reserve(set.rows.len());
    g.add_strings(set.strings.strings_from(0));
    g.write_images(&set.rows)?;
    g.finish(&set.sequences, &set.cells, &set.runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.gpkg");
        let set = super::super::geojson::tests::small_set();
        write(&path, &set, DateTime::UNIX_EPOCH).unwrap();
        let ds = Dataset::open(&path).unwrap();
        let mut images = ds.layer_by_name("images").unwrap();
        assert_eq!(images.feature_count(), 2);
        let f = images.features().next().unwrap();
        assert_eq!(f.field_as_string(0).unwrap().as_deref(), Some("1"));
        let t = f.field_as_datetime(2).unwrap().unwrap();
        assert_eq!(t.timestamp_millis(), 1000);
        assert_eq!(ds.layer_by_name("layer_styles").unwrap().feature_count(), 4);
    }

    #[test]
    fn a_refused_packed_index_falls_back_to_gdal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.gpkg");
        let set = super::super::geojson::tests::small_set();
        let mut g = GpkgWriter::create(&path, set.layout, DateTime::UNIX_EPOCH).unwrap();
        g.fail_packed_index = true;
        g.add_strings(set.strings.strings_from(0));
        g.write_images(&set.rows).unwrap();
        g.finish(&set.sequences, &set.cells, &set.runs).unwrap();
        let ds = Dataset::open(&path).unwrap();
        let one = |sql: &str| query_value(&ds, sql).unwrap().unwrap();
        assert_eq!(one("SELECT rtreecheck('rtree_images_geom')"), "ok");
        assert_eq!(one("SELECT count(*) FROM rtree_images_geom"), "2");
        assert_eq!(
            one("SELECT count(*) FROM gpkg_extensions WHERE table_name = 'images'"),
            "1"
        );
        let srs = SpatialRef::from_epsg(4326).unwrap();
        let gdal_triggers = index_sql(&srs).unwrap().triggers.len();
        assert_eq!(
            one(
                "SELECT count(*) FROM sqlite_master WHERE name LIKE 'rtree_images_geom_%' AND type = 'trigger'"
            ),
            gdal_triggers.to_string()
        );
    }
}
