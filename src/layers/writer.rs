//! The domain writer: the four layers (`images`, `sequences`, `grid_cells`,
//! `runs`) written into any OGR dataset handed to it, in one transaction, on
//! one thread. What differs between formats (creation options, tables of its
//! own such as a GeoPackage's `layer_styles`, a packed spatial index) is the
//! [`Target`]'s: [`super::gpkg`] is the GeoPackage one. No file names, no
//! threads, no terminal.

use std::ffi::{CStr, CString};

use gdal::spatial_ref::SpatialRef;

use super::ogr::{Feat, Layer, OgrDataset, OgrError, cstring};
use super::schema::{self, Column, Geometry, Kind, LayerDef, Value};
use super::{FileLayout, ImageRow, SequenceLine, Sym, cell_shape, round_coord, rtree};
use crate::rows::{CellCoverage, push_jpg_path};
use crate::runrecord::RunEntry;

/// What one kind of dataset adds to the four layers. A trait rather than an
/// enum so that a target (GeoPackage, PostGIS) lives in its own file.
pub(crate) trait Target {
    /// Runs first in the transaction, before the four layers are created
    /// (PostGIS: the schema's lock, the checks, a missing schema).
    fn begin(&mut self, _ds: &mut OgrDataset) -> Result<(), OgrError> {
        Ok(())
    }

    /// The name one of the four layers is created under (PostGIS: a staged
    /// name, renamed at the swap).
    fn layer_name(&self, layer: &LayerDef) -> String {
        layer.name.to_string()
    }

    /// The creation options of one of the four layers.
    fn layer_options(&self, layer: &LayerDef) -> Vec<String>;

    /// Creates the target's own layers, after the four (GeoPackage:
    /// `layer_styles`).
    fn create_own_layers(&mut self, ds: &mut OgrDataset, srs: &SpatialRef) -> Result<(), OgrError>;

    /// Whether it wants the FID and box of every image point written
    /// (handed to [`Target::finish`]) to build a spatial index itself.
    fn wants_point_index(&self) -> bool;

    /// Writes the target's own rows and indexes after the four layers'
    /// rows, inside the transaction, before the commit.
    fn finish(
        &mut self,
        ds: &mut OgrDataset,
        srs: &SpatialRef,
        points: Vec<rtree::Entry>,
    ) -> Result<(), OgrError>;
}

/// The four layers of one dataset being written: created with one open
/// transaction; images are added in batches, the rest at
/// [`LayerWriter::finish`], which commits. Dropped without `finish`, nothing
/// is committed. Lives on one thread: its raw layer handles are not `Send`.
pub(crate) struct LayerWriter<T: Target> {
    ds: OgrDataset,
    target: T,
    layout: FileLayout,
    /// The reader's string table as C strings, made once each (same handles).
    cstrings: Vec<CString>,
    /// EPSG:4326 in lon, lat order.
    srs: SpatialRef,
    /// The FID and box of every image point written, when the target wants them.
    points: Vec<rtree::Entry>,
    layers: [Layer; 4],
}

/// EPSG:4326 with lon, lat axis order.
pub(crate) fn wgs84(ds: &OgrDataset) -> Result<SpatialRef, OgrError> {
    let mut srs = SpatialRef::from_epsg(4326).map_err(ds.gdal("build EPSG:4326"))?;
    // GDAL 3 uses lat,lon axis order for EPSG:4326 unless told otherwise.
    srs.set_axis_mapping_strategy(gdal::spatial_ref::AxisMappingStrategy::TraditionalGisOrder);
    Ok(srs)
}

impl<T: Target> LayerWriter<T> {
    /// Starts the transaction in `ds` (new and empty), and creates the four
    /// layers and the target's own.
    pub(crate) fn new(
        mut ds: OgrDataset,
        mut target: T,
        layout: FileLayout,
    ) -> Result<Self, OgrError> {
        let srs = wgs84(&ds)?;
        ds.start_transaction()?;
        target.begin(&mut ds)?;
        let mut layers = Vec::with_capacity(4);
        let defs = [
            (
                schema::IMAGES.def,
                schema::IMAGES.fields().collect::<Vec<_>>(),
            ),
            (schema::SEQUENCES.def, schema::SEQUENCES.fields().collect()),
            (
                schema::GRID_CELLS.def,
                schema::GRID_CELLS.fields().collect(),
            ),
            (schema::RUNS.def, schema::RUNS.fields().collect()),
        ];
        for (def, fields) in defs {
            let options = target.layer_options(&def);
            let name = target.layer_name(&def);
            layers.push(ds.create_layer(&name, def.geometry, &srs, &fields, &options)?);
        }
        target.create_own_layers(&mut ds, &srs)?;
        let layers: [Layer; 4] = layers
            .try_into()
            .map_err(|_| ds.other("not four layers".into()))?;
        Ok(Self {
            ds,
            target,
            layout,
            cstrings: Vec::new(),
            srs,
            points: Vec::new(),
            layers,
        })
    }

    /// The target, to adjust it (tests).
    #[cfg(test)]
    pub(crate) fn target_mut(&mut self) -> &mut T {
        &mut self.target
    }

    /// Makes room for the points of `images` images at once (a growing
    /// list would briefly hold twice its size).
    pub(crate) fn reserve(&mut self, images: usize) {
        if self.target.wants_point_index() {
            self.points.reserve_exact(images);
        }
    }

    /// Adds strings interned by the reader since the last call, in order.
    pub(crate) fn add_strings(&mut self, new: &[Box<str>]) {
        self.cstrings.extend(new.iter().map(|s| cstring(s)));
    }

    fn c(&self, sym: Sym) -> Option<&CStr> {
        self.cstrings.get(sym.index()).map(CString::as_c_str)
    }

    /// Appends the drawn images among `rows` (those with a position). One
    /// feature is reused for every row, and interned strings are passed as
    /// C strings made once: this loop is the hot path.
    pub(crate) fn write_images(&mut self, rows: &[ImageRow]) -> Result<(), OgrError> {
        let mut f = Feat::new(self.layers[0]);
        let mut buf = String::new();
        let index = self.target.wants_point_index();
        for (n, r) in rows.iter().enumerate() {
            let Some(p) = r.position() else { continue };
            f.clear(schema::IMAGES.columns.len());
            self.fill(&mut f, schema::IMAGES.columns, r, n, &mut buf);
            f.points(Geometry::Point, &[p]);
            let fid = f.create(&self.ds, self.layers[0], "insert an image")?;
            if index {
                self.points.push(rtree::Entry::point(
                    fid,
                    round_coord(p.lon),
                    round_coord(p.lat),
                ));
            }
        }
        Ok(())
    }

    /// Sets the fields of `f` to the values of `row` (the `n`th of its
    /// layer) in `cols`; `buf` holds the C strings made for it.
    fn fill<R>(&self, f: &mut Feat, cols: &[Column<R>], row: &R, n: usize, buf: &mut String) {
        for (i, c) in cols.iter().enumerate() {
            match (c.get)(row, n) {
                Value::Null => {}
                Value::Text(s) if c.kind == Kind::DateTime => f.time_iso(i, Some(s)),
                Value::Text(s) => f.cstr(i, nul_ended(buf, s)),
                Value::Owned(s) => f.cstr(i, nul_ended(buf, &s)),
                Value::Sym(s) => f.cstr(i, self.c(s)),
                Value::Id(id) => {
                    buf.clear();
                    let _ = std::fmt::Write::write_fmt(buf, format_args!("{id}\0"));
                    f.cstr(i, CStr::from_bytes_with_nul(buf.as_bytes()).ok());
                }
                Value::Jpg { grid, id } => {
                    let grid = self.c(grid).and_then(|g| g.to_str().ok()).unwrap_or("");
                    buf.clear();
                    push_jpg_path(buf, self.layout, grid, id);
                    buf.push('\0');
                    f.cstr(i, CStr::from_bytes_with_nul(buf.as_bytes()).ok());
                }
                Value::Int(v) => f.int(i, Some(v)),
                Value::Real(v) => f.real(i, Some(v)),
                Value::Bool(v) => f.bool(i, Some(v)),
                Value::Millis(ms) => f.time_ms(i, Some(ms)),
            }
        }
    }

    /// Writes the sequences, grid cells and runs, then the target's own
    /// rows, and commits.
    pub(crate) fn finish(
        mut self,
        sequences: &[SequenceLine],
        cells: &[CellCoverage],
        runs: &[RunEntry],
    ) -> Result<(), OgrError> {
        self.write_sequences(sequences)?;
        self.write_cells(cells)?;
        self.write_runs(runs)?;
        let points = std::mem::take(&mut self.points);
        self.target.finish(&mut self.ds, &self.srs, points)?;
        self.ds.commit()
    }

    fn write_sequences(&self, sequences: &[SequenceLine]) -> Result<(), OgrError> {
        let mut buf = String::new();
        for (n, l) in sequences.iter().enumerate() {
            let mut f = Feat::new(self.layers[1]);
            self.fill(&mut f, schema::SEQUENCES.columns, l, n, &mut buf);
            f.points(Geometry::LineString, &l.points);
            f.create(&self.ds, self.layers[1], "insert a sequence")?;
        }
        Ok(())
    }

    fn write_cells(&self, cells: &[CellCoverage]) -> Result<(), OgrError> {
        let mut buf = String::new();
        for (n, c) in cells.iter().enumerate() {
            let mut f = Feat::new(self.layers[2]);
            self.fill(&mut f, schema::GRID_CELLS.columns, c, n, &mut buf);
            if let Some(shape) = cell_shape(c) {
                f.multipolygon(&shape);
            }
            f.create(&self.ds, self.layers[2], "insert a grid cell")?;
        }
        Ok(())
    }

    fn write_runs(&self, runs: &[RunEntry]) -> Result<(), OgrError> {
        let mut buf = String::new();
        for (n, run) in runs.iter().enumerate() {
            let mut f = Feat::new(self.layers[3]);
            self.fill(&mut f, schema::RUNS.columns, run, n, &mut buf);
            f.create(&self.ds, self.layers[3], "insert a run")?;
        }
        Ok(())
    }
}

/// `s` into `buf` as a C string (without any NUL bytes it holds).
fn nul_ended<'b>(buf: &'b mut String, s: &str) -> Option<&'b CStr> {
    buf.clear();
    buf.extend(s.chars().filter(|&c| c != '\0'));
    buf.push('\0');
    CStr::from_bytes_with_nul(buf.as_bytes()).ok()
}
