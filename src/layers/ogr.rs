//! The OGR/GDAL calls the layer writers make, and every `unsafe` block of
//! `layers`: a dataset with its transaction, layers created with typed
//! columns, one reusable feature, SQL through GDAL, and `/vsimem/` files.
//! Knows nothing of images or GeoPackages: [`super::writer`] fills the
//! layers, [`super::gpkg`] adds what only a GeoPackage has. One thread only:
//! the raw handles are not `Send`.

use std::ffi::{CStr, CString, c_int};

use chrono::{DateTime, Datelike, Timelike, Utc};
use gdal::Dataset;
use gdal::errors::GdalError;
use gdal::spatial_ref::SpatialRef;
use gdal::vector::{LayerAccess, LayerOptions};
use gdal_sys::{OGRFieldSubType, OGRFieldType, OGRwkbGeometryType};

use super::round_coord;
use super::schema::{Geometry, Kind};
use crate::model::LonLat;

/// Errors of OGR while writing layers into a dataset, naming the dataset
/// by its label (a GeoPackage's path).
#[derive(Debug, thiserror::Error)]
pub(crate) enum OgrError {
    #[error("cannot write `{target}`: {message}")]
    Other { target: String, message: String },
    #[error("GDAL failed to {what} in `{target}`: {source}")]
    Gdal {
        what: String,
        target: String,
        source: GdalError,
    },
    #[error("GDAL failed to {what} in `{target}` (OGR error {code})")]
    Ogr {
        what: String,
        target: String,
        code: i32,
    },
}

/// An OGR dataset being written, and the label its errors name it by
/// (never a secret: a path, or a connection string without its password).
pub(crate) struct OgrDataset {
    ds: Dataset,
    target: String,
    /// A transaction is open: rolled back on drop (GDAL's PostgreSQL driver
    /// would commit it when the dataset closes).
    in_transaction: bool,
}

impl OgrDataset {
    /// Wraps an open, writable dataset.
    pub(crate) fn new(ds: Dataset, target: String) -> Self {
        Self {
            ds,
            target,
            in_transaction: false,
        }
    }

    /// The GDAL dataset, for SQL.
    pub(crate) fn dataset(&self) -> &Dataset {
        &self.ds
    }

    /// Maps a GDAL error of doing `what` into an [`OgrError`].
    pub(crate) fn gdal(&self, what: &str) -> impl Fn(GdalError) -> OgrError + '_ {
        let what = what.to_string();
        move |source| OgrError::Gdal {
            what: what.clone(),
            target: self.target.clone(),
            source,
        }
    }

    /// An [`OgrError::Other`] about this dataset.
    pub(crate) fn other(&self, message: String) -> OgrError {
        OgrError::Other {
            target: self.target.clone(),
            message,
        }
    }

    fn check(&self, code: gdal_sys::OGRErr::Type, what: &str) -> Result<(), OgrError> {
        check(code, &self.target, what)
    }

    /// Starts the one transaction of the write.
    pub(crate) fn start_transaction(&mut self) -> Result<(), OgrError> {
        // SAFETY: a live dataset handle; committed in `commit`, rolled back
        // in Drop when the dataset is closed without it.
        let code = unsafe { gdal_sys::GDALDatasetStartTransaction(self.ds.c_dataset(), 0) };
        self.check(code, "start a transaction")?;
        self.in_transaction = true;
        Ok(())
    }

    /// Commits the transaction and closes the dataset.
    pub(crate) fn commit(mut self) -> Result<(), OgrError> {
        // SAFETY: a live dataset handle with the transaction started.
        let code = unsafe { gdal_sys::GDALDatasetCommitTransaction(self.ds.c_dataset()) };
        self.check(code, "commit the transaction")?;
        self.in_transaction = false;
        Ok(())
    }

    /// Creates a layer with its columns, in order, and returns its handle.
    pub(crate) fn create_layer(
        &mut self,
        name: &str,
        geometry: Geometry,
        srs: &SpatialRef,
        cols: &[(&str, Kind)],
        options: &[String],
    ) -> Result<Layer, OgrError> {
        let ty = wkb_type(geometry);
        let options: Vec<&str> = options.iter().map(String::as_str).collect();
        let target = &self.target;
        let layer = self
            .ds
            .create_layer(LayerOptions {
                name,
                srs: (geometry != Geometry::None).then_some(srs),
                ty,
                options: Some(&options),
            })
            .map_err(|source| OgrError::Gdal {
                what: format!("create layer `{name}`"),
                target: target.clone(),
                source,
            })?;
        // SAFETY: the handle stays valid while the dataset lives; `Layer`
        // is used only by the writer that owns the dataset.
        let h = unsafe { layer.c_layer() };
        for &(col, kind) in cols {
            let (ty, sub) = field_type(kind);
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
            check(code, target, &format!("create field `{col}` of `{name}`"))?;
        }
        Ok(Layer(h))
    }
}

impl Drop for OgrDataset {
    fn drop(&mut self) {
        if self.in_transaction {
            // SAFETY: a live dataset handle with an open transaction; the
            // result is moot (the dataset closes next).
            unsafe { gdal_sys::GDALDatasetRollbackTransaction(self.ds.c_dataset()) };
        }
    }
}

/// Keeps GDAL's messages on this thread off stderr and out of any `CPL_LOG`
/// file while it lives, debug messages too (a PostgreSQL error or GDAL's
/// `CPL_DEBUG` output may quote the connection string); errors still reach
/// GDAL's last-error message, which callers redact.
pub(crate) struct QuietGdal {
    /// The handler stack is per thread: the guard must not move.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl QuietGdal {
    /// Pushes GDAL's quiet handler on this thread until dropped.
    pub(crate) fn new() -> Self {
        // SAFETY: pushes GDAL's own quiet handler on this thread's handler
        // stack; popped in Drop on the same thread (the type is not Send).
        unsafe { gdal_sys::CPLPushErrorHandler(Some(drop_message)) };
        Self {
            _not_send: std::marker::PhantomData,
        }
    }
}

/// A GDAL error handler that drops every message, debug ones included
/// (GDAL's own `CPLQuietErrorHandler` still prints those).
unsafe extern "C" fn drop_message(
    _class: gdal_sys::CPLErr::Type,
    _code: std::ffi::c_int,
    _msg: *const std::ffi::c_char,
) {
}

impl Drop for QuietGdal {
    fn drop(&mut self) {
        // SAFETY: pops the handler pushed in `new`, on the same thread.
        unsafe { gdal_sys::CPLPopErrorHandler() }
    }
}

/// An OGR return code as a result.
fn check(code: gdal_sys::OGRErr::Type, target: &str, what: &str) -> Result<(), OgrError> {
    if code == gdal_sys::OGRErr::OGRERR_NONE {
        Ok(())
    } else {
        Err(OgrError::Ogr {
            what: what.to_string(),
            target: target.to_string(),
            code: code as i32,
        })
    }
}

fn wkb_type(g: Geometry) -> OGRwkbGeometryType::Type {
    match g {
        Geometry::Point => OGRwkbGeometryType::wkbPoint,
        Geometry::LineString => OGRwkbGeometryType::wkbLineString,
        Geometry::MultiPolygon => OGRwkbGeometryType::wkbMultiPolygon,
        Geometry::None => OGRwkbGeometryType::wkbNone,
    }
}

fn field_type(kind: Kind) -> (OGRFieldType::Type, OGRFieldSubType::Type) {
    match kind {
        Kind::Str => (OGRFieldType::OFTString, OGRFieldSubType::OFSTNone),
        Kind::Int => (OGRFieldType::OFTInteger, OGRFieldSubType::OFSTNone),
        Kind::Int64 => (OGRFieldType::OFTInteger64, OGRFieldSubType::OFSTNone),
        Kind::Real => (OGRFieldType::OFTReal, OGRFieldSubType::OFSTNone),
        Kind::Bool => (OGRFieldType::OFTInteger, OGRFieldSubType::OFSTBoolean),
        Kind::DateTime => (OGRFieldType::OFTDateTime, OGRFieldSubType::OFSTNone),
    }
}

/// A layer of an [`OgrDataset`]; valid while that dataset is open.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layer(gdal_sys::OGRLayerH);

/// A C string of `s`, without any NUL bytes it holds.
pub(crate) fn cstring(s: &str) -> CString {
    CString::new(s).unwrap_or_else(|_| CString::new(s.replace('\0', "")).unwrap_or_default())
}

/// One feature being filled; destroyed on drop.
pub(crate) struct Feat(gdal_sys::OGRFeatureH);

impl Feat {
    /// A new, empty feature of `layer`.
    pub(crate) fn new(layer: Layer) -> Self {
        // SAFETY: `layer` is a live layer handle; the feature is destroyed in Drop.
        Self(unsafe { gdal_sys::OGR_F_Create(gdal_sys::OGR_L_GetLayerDefn(layer.0)) })
    }
    pub(crate) fn str(&mut self, i: usize, v: Option<&str>) {
        if let Some(v) = v {
            let c = cstring(v);
            self.cstr(i, Some(&c));
        }
    }
    pub(crate) fn cstr(&mut self, i: usize, v: Option<&CStr>) {
        if let Some(v) = v {
            // SAFETY: valid feature and field index (columns are created in
            // order); OGR copies the string.
            unsafe { gdal_sys::OGR_F_SetFieldString(self.0, i as c_int, v.as_ptr()) }
        }
    }
    pub(crate) fn int(&mut self, i: usize, v: Option<i64>) {
        if let Some(v) = v {
            // SAFETY: as above; OGR converts for 32-bit integer fields.
            unsafe { gdal_sys::OGR_F_SetFieldInteger64(self.0, i as c_int, v) }
        }
    }
    pub(crate) fn real(&mut self, i: usize, v: Option<f64>) {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            // SAFETY: as above.
            unsafe { gdal_sys::OGR_F_SetFieldDouble(self.0, i as c_int, v) }
        }
    }
    pub(crate) fn bool(&mut self, i: usize, v: Option<bool>) {
        self.int(i, v.map(i64::from));
    }
    pub(crate) fn time(&mut self, i: usize, v: Option<DateTime<Utc>>) {
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
    pub(crate) fn time_ms(&mut self, i: usize, ms: Option<i64>) {
        self.time(i, ms.and_then(DateTime::from_timestamp_millis));
    }
    pub(crate) fn time_iso(&mut self, i: usize, s: Option<&str>) {
        let t = s
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc));
        self.time(i, t);
    }
    /// Sets a point or a line through `points`, coordinates rounded.
    pub(crate) fn points(&mut self, geometry: Geometry, points: &[LonLat]) {
        // SAFETY: the new geometry is handed to OGR, which takes ownership
        // (SetGeometryDirectly).
        unsafe {
            let g = gdal_sys::OGR_G_CreateGeometry(wkb_type(geometry));
            for p in points {
                gdal_sys::OGR_G_AddPoint_2D(g, round_coord(p.lon), round_coord(p.lat));
            }
            gdal_sys::OGR_F_SetGeometryDirectly(self.0, g);
        }
    }
    /// Sets a MultiPolygon geometry: each polygon's exterior ring first
    /// (counter-clockwise), then its holes.
    pub(crate) fn multipolygon(&mut self, mp: &geo::MultiPolygon<f64>) {
        // SAFETY: OGR takes ownership of each new part (AddGeometryDirectly,
        // SetGeometryDirectly).
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
    pub(crate) fn clear(&mut self, n: usize) {
        // SAFETY: valid feature; indexes below the field count.
        unsafe {
            for i in 0..n {
                gdal_sys::OGR_F_SetFieldNull(self.0, i as c_int);
            }
            gdal_sys::OGR_F_SetFID(self.0, -1);
        }
    }
    /// Writes the feature into `layer` of `ds` as a new row, keeping it for
    /// reuse; returns the row's FID.
    pub(crate) fn create(
        &mut self,
        ds: &OgrDataset,
        layer: Layer,
        what: &str,
    ) -> Result<i64, OgrError> {
        // SAFETY: live layer and feature handles; OGR sets the FID of the
        // feature to the row inserted.
        let (code, fid) = unsafe {
            let code = gdal_sys::OGR_L_CreateFeature(layer.0, self.0);
            (code, gdal_sys::OGR_F_GetFID(self.0))
        };
        ds.check(code, what)?;
        Ok(fid)
    }
}

impl Drop for Feat {
    fn drop(&mut self) {
        // SAFETY: created by OGR_F_Create and not destroyed elsewhere.
        unsafe { gdal_sys::OGR_F_Destroy(self.0) }
    }
}

/// Makes OGR write out what it holds of a layer (for a GeoPackage: creates
/// its spatial index tables).
pub(crate) fn sync_layer(layer: &gdal::vector::Layer<'_>) {
    // SAFETY: a live layer, borrowed from its dataset for the call.
    unsafe { gdal_sys::OGR_L_SyncToDisk(layer.c_layer()) };
}

/// Removes a `/vsimem/` (or any GDAL virtual) file; a missing one is fine.
pub(crate) fn vsi_unlink(path: &str) {
    let c = cstring(path);
    // SAFETY: a NUL-terminated path; unlinking a missing file is harmless.
    unsafe { gdal_sys::VSIUnlink(c.as_ptr()) };
}

/// Rows of one SQL query, each as its columns' strings.
pub(crate) fn query(ds: &Dataset, sql: &str) -> Result<Vec<Vec<Option<String>>>, GdalError> {
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
pub(crate) fn query_value(ds: &Dataset, sql: &str) -> Result<Option<String>, GdalError> {
    Ok(query(ds, sql)?
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next().flatten()))
}

/// Runs a statement that returns no rows.
pub(crate) fn exec(ds: &Dataset, sql: &str) -> Result<(), GdalError> {
    ds.execute_sql(sql, None, gdal::vector::sql::Dialect::DEFAULT)
        .map(drop)
}
