//! The GeoPackage target: `mapillary.gpkg` (EPSG:4326) with the four layers
//! of [`super::writer`], plus what only a GeoPackage has: its creation
//! options, the `layer_styles` table QGIS reads its default styles from, and
//! the packed spatial index of `images` ([`super::gpkg_index`]). Writes only
//! the path it is given (the caller renames it into place); one thread, one
//! transaction, no terminal, no other files.

use std::path::Path;

use chrono::{DateTime, Utc};
use gdal::DriverManager;
use gdal::spatial_ref::SpatialRef;

use super::ogr::{Feat, Layer, OgrDataset, OgrError};
use super::schema::{Geometry, Kind, LayerDef};
use super::writer::{LayerWriter, Target};
use super::{FileLayout, gpkg_index, iso_ms, rtree, styles};

use Kind::{Bool, DateTime as Dt, Str};

/// Columns of `layer_styles`, as QGIS creates and reads them.
const STYLE_COLS: &[(&str, Kind)] = &[
    ("f_table_catalog", Str),
    ("f_table_schema", Str),
    ("f_table_name", Str),
    ("f_geometry_column", Str),
    ("styleName", Str),
    ("styleQML", Str),
    ("styleSLD", Str),
    ("useAsDefault", Bool),
    ("description", Str),
    ("owner", Str),
    ("ui", Str),
    ("update_time", Dt),
];

/// How a layer's spatial index is made.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Index {
    /// By GDAL, as rows are inserted.
    Gdal,
    /// Packed at the end ([`gpkg_index::write`]).
    Packed,
    /// A table without geometry.
    None,
}

/// The creation options of a GeoPackage layer.
pub(super) fn layer_options(identifier: &str, description: &str, index: Index) -> Vec<String> {
    let mut o = vec![
        format!("IDENTIFIER={identifier}"),
        format!("DESCRIPTION={description}"),
    ];
    if index != Index::None {
        let yes = if index == Index::Gdal { "YES" } else { "NO" };
        o.extend([
            "GEOMETRY_NAME=geom".to_string(),
            format!("SPATIAL_INDEX={yes}"),
            "FID=fid".to_string(),
        ]);
    } else {
        o.push("FID=fid".to_string());
    }
    o
}

/// What a GeoPackage adds to the four layers.
pub(crate) struct Gpkg {
    /// Stamped as the styles' `update_time`.
    as_of: DateTime<Utc>,
    styles: Option<Layer>,
    /// Makes the packed index fail, to test the fallback.
    #[cfg(test)]
    pub(crate) fail_packed_index: bool,
}

impl Gpkg {
    fn refuse_packed(&self) -> bool {
        #[cfg(test)]
        return self.fail_packed_index;
        #[cfg(not(test))]
        false
    }

    fn write_styles(&self, ds: &OgrDataset) -> Result<(), OgrError> {
        let Some(layer) = self.styles else {
            return Ok(());
        };
        for (style, qml) in styles::all() {
            let mut f = Feat::new(layer);
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
            f.create(ds, layer, "insert a layer style")?;
        }
        Ok(())
    }
}

impl Target for Gpkg {
    fn layer_options(&self, layer: &LayerDef) -> Vec<String> {
        // The images' spatial index is packed at the end.
        let index = match layer.geometry {
            Geometry::None => Index::None,
            Geometry::Point => Index::Packed,
            Geometry::LineString | Geometry::MultiPolygon => Index::Gdal,
        };
        layer_options(layer.title, layer.description, index)
    }

    fn create_own_layers(&mut self, ds: &mut OgrDataset, srs: &SpatialRef) -> Result<(), OgrError> {
        let options = [
            "FID=id".to_string(),
            "DESCRIPTION=Default QGIS styles".to_string(),
        ];
        self.styles =
            Some(ds.create_layer("layer_styles", Geometry::None, srs, STYLE_COLS, &options)?);
        Ok(())
    }

    fn wants_point_index(&self) -> bool {
        true
    }

    fn finish(
        &mut self,
        ds: &mut OgrDataset,
        srs: &SpatialRef,
        points: Vec<rtree::Entry>,
    ) -> Result<(), OgrError> {
        self.write_styles(ds)?;
        gpkg_index::write(ds, srs, points, self.refuse_packed())
    }
}

/// Creates a new GeoPackage at `path` (which must not exist) with every
/// layer, and starts the transaction. `as_of` is stamped as the
/// GeoPackage's `last_change` and the styles' `update_time`, so a re-run
/// writes the same bytes.
pub(crate) fn create(
    path: &Path,
    layout: FileLayout,
    as_of: DateTime<Utc>,
) -> Result<LayerWriter<Gpkg>, OgrError> {
    let target = path.display().to_string();
    let gdal = |what: &'static str| {
        let target = target.clone();
        move |source| OgrError::Gdal {
            what: what.to_string(),
            target: target.clone(),
            source,
        }
    };
    // The GeoPackage driver stamps `gpkg_contents.last_change` with this.
    gdal::config::set_config_option("OGR_CURRENT_DATE", &iso_ms(as_of))
        .map_err(gdal("set OGR_CURRENT_DATE"))?;
    let driver = DriverManager::get_driver_by_name("GPKG").map_err(gdal("load the GPKG driver"))?;
    let ds = driver
        .create_vector_only(path)
        .map_err(gdal("create the GeoPackage"))?;
    let gpkg = Gpkg {
        as_of,
        styles: None,
        #[cfg(test)]
        fail_packed_index: false,
    };
    LayerWriter::new(OgrDataset::new(ds, target), gpkg, layout)
}

/// Writes every layer of `set` to a new GeoPackage at `path` in one go.
#[cfg(test)]
pub(crate) fn write(
    path: &Path,
    set: &super::LayerSet,
    as_of: DateTime<Utc>,
) -> Result<(), OgrError> {
    let mut g = create(path, set.layout, as_of)?;
    g.reserve(set.rows.len());
    g.add_strings(set.strings.strings_from(0));
    g.write_images(&set.rows)?;
    g.finish(&set.sequences, &set.cells, &set.runs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::gpkg_index::index_sql;
    use crate::layers::ogr::query_value;
    use gdal::Dataset;
    use gdal::vector::LayerAccess;

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
        assert_eq!(t.timestamp_millis(), 1_600_000_001_000);
        assert_eq!(ds.layer_by_name("layer_styles").unwrap().feature_count(), 4);
    }

    #[test]
    fn a_refused_packed_index_falls_back_to_gdal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.gpkg");
        let set = super::super::geojson::tests::small_set();
        let mut g = create(&path, set.layout, DateTime::UNIX_EPOCH).unwrap();
        g.target_mut().fail_packed_index = true;
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
