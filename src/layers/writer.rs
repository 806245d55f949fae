//! The domain writer: the four layers (`images`, `sequences`, `grid_cells`,
//! `runs`) written into any OGR dataset handed to it, in one transaction, on
//! one thread. What differs between formats (creation options, tables of its
//! own such as a GeoPackage's `layer_styles`, a packed spatial index) is the
//! [`Target`]'s: [`super::gpkg`] is the GeoPackage one. No file names, no
//! threads, no terminal.

use std::ffi::{CStr, CString};

use gdal::spatial_ref::SpatialRef;

use super::ogr::{Feat, Layer, OgrDataset, OgrError, cstring};
use super::schema::{self, Geometry, LayerDef};
use super::{
    FileLayout, ImageRow, SequenceLine, Sym, round_coord, round_to, source_name, write_file_path,
};
use super::{cell_shape, rtree};
use crate::coverage::CellCoverage;
use crate::model::PositionSource;
use crate::runrecord::RunEntry;

/// What one kind of dataset adds to the four layers. A trait rather than an
/// enum so that a target (GeoPackage, PostGIS) lives in its own file.
pub(crate) trait Target {
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
    /// `source_name` of each position source as a C string.
    sources: [CString; 2],
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
        let mut layers = Vec::with_capacity(4);
        for def in [
            schema::IMAGES,
            schema::SEQUENCES,
            schema::GRID_CELLS,
            schema::RUNS,
        ] {
            let options = target.layer_options(&def);
            layers.push(ds.create_layer(def.name, def.geometry, &srs, def.columns, &options)?);
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
            sources: [PositionSource::Computed, PositionSource::Original]
                .map(|p| cstring(source_name(p))),
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
        self.cstrings.get(sym.0 as usize).map(CString::as_c_str)
    }

    /// Appends the drawn images among `rows` (those with a position). One
    /// feature is reused for every row, and interned strings are passed as
    /// C strings made once: this loop is the hot path.
    pub(crate) fn write_images(&mut self, rows: &[ImageRow]) -> Result<(), OgrError> {
        let mut f = Feat::new(self.layers[0]);
        // One buffer for the strings made per row (id, file path), NUL-ended.
        let mut buf = String::new();
        fn nul_ended(buf: &mut String) -> Option<&CStr> {
            buf.push('\0');
            CStr::from_bytes_with_nul(buf.as_bytes()).ok()
        }
        let index = self.target.wants_point_index();
        for r in rows {
            let Some(p) = r.position() else { continue };
            f.clear(schema::IMAGES.columns.len());
            buf.clear();
            let _ = std::fmt::Write::write_fmt(&mut buf, format_args!("{}", r.id));
            f.cstr(0, nul_ended(&mut buf));
            f.cstr(1, self.c(r.sequence));
            f.time_ms(2, r.captured_ms());
            f.real(3, r.compass_angle());
            f.real(4, r.computed_compass_angle());
            f.real(5, r.direction());
            f.bool(6, r.is_pano);
            f.cstr(7, self.c(r.camera_type));
            f.cstr(8, self.c(r.make));
            f.cstr(9, self.c(r.model));
            f.cstr(10, self.c(r.creator));
            f.cstr(11, self.c(r.creator_id));
            f.int(12, r.width().map(i64::from));
            f.int(13, r.height().map(i64::from));
            f.real(14, r.altitude());
            f.cstr(15, self.c(r.grid));
            let grid = self.c(r.grid).and_then(|g| g.to_str().ok()).unwrap_or("");
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
        for l in sequences {
            let mut f = Feat::new(self.layers[1]);
            f.cstr(0, self.c(l.sequence));
            f.int(1, i64::try_from(l.points.len()).ok());
            f.time_ms(2, Some(l.first_ms));
            f.time_ms(3, Some(l.last_ms));
            f.real(4, Some(round_to(l.length_m, 2)));
            f.points(Geometry::LineString, &l.points);
            f.create(&self.ds, self.layers[1], "insert a sequence")?;
        }
        Ok(())
    }

    fn write_cells(&self, cells: &[CellCoverage]) -> Result<(), OgrError> {
        for c in cells {
            let mut f = Feat::new(self.layers[2]);
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
            if let Some(shape) = cell_shape(c) {
                f.multipolygon(&shape);
            }
            f.create(&self.ds, self.layers[2], "insert a grid cell")?;
        }
        Ok(())
    }

    fn write_runs(&self, runs: &[RunEntry]) -> Result<(), OgrError> {
        for (n, run) in runs.iter().enumerate() {
            let mut f = Feat::new(self.layers[3]);
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
            f.str(16, run.shard.as_deref());
            f.create(&self.ds, self.layers[3], "insert a run")?;
        }
        Ok(())
    }
}
