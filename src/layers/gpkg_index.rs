//! The spatial index of a GeoPackage's `images` layer, written as GDAL
//! would write it (same R*Tree table, triggers and extension row, learnt from
//! GDAL itself) but packed in one go ([`super::rtree::pack`]) instead of one
//! insert per image; with GDAL's own, slow, index as the fallback. SQL
//! through GDAL on the writer's thread, inside its transaction.

use gdal::errors::GdalError;
use gdal::spatial_ref::SpatialRef;
use gdal::vector::LayerOptions;
use gdal::{Dataset, DriverManager};
use gdal_sys::OGRwkbGeometryType;

use super::gpkg::Index;
use super::ogr::{OgrDataset, OgrError, exec, query, query_value, sync_layer, vsi_unlink};
use super::rtree;

/// The SQL with which this GDAL makes a GeoPackage spatial index on
/// `images.geom`: the R*Tree table, its triggers and its `gpkg_extensions` row.
pub(super) struct IndexSql {
    create: String,
    pub(super) triggers: Vec<String>,
    extension: [Option<String>; 5],
}

/// Asks GDAL for the SQL of the `images` spatial index: GDAL makes one in a
/// scratch GeoPackage in memory, and its schema is read back. So the index
/// has exactly the triggers this GDAL (and its `validate_gpkg`) expects.
pub(super) fn index_sql(srs: &SpatialRef) -> Result<IndexSql, GdalError> {
    static SCRATCH: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = SCRATCH.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = format!("/vsimem/mlyexport-index-{}-{n}.gpkg", std::process::id());
    let driver = DriverManager::get_driver_by_name("GPKG")?;
    let options = super::gpkg::layer_options("images", "", Index::Gdal);
    let scratch_options: Vec<&str> = options.iter().map(String::as_str).collect();
    let result = (|| {
        let mut ds = driver.create_vector_only(&path)?;
        let layer = ds.create_layer(LayerOptions {
            name: "images",
            srs: Some(srs),
            ty: OGRwkbGeometryType::wkbPoint,
            options: Some(&scratch_options),
        })?;
        // Syncing makes GDAL create the index.
        sync_layer(&layer);
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
    vsi_unlink(&path);
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

/// Writes the spatial index of `images`: packed ([`write_packed`]), or,
/// should SQLite refuse that (a build that forbids writing an R*Tree's
/// tables, or one without JSON), by GDAL itself, slowly, after removing
/// what the packed attempt left. `refuse_packed` makes the packed attempt
/// fail (to test the fallback).
pub(crate) fn write(
    ds: &OgrDataset,
    srs: &SpatialRef,
    points: Vec<rtree::Entry>,
    refuse_packed: bool,
) -> Result<(), OgrError> {
    let packed = write_packed(ds, srs, points);
    let packed = if refuse_packed {
        packed.and(Err(ds.other("packed index refused (test)".into())))
    } else {
        packed
    };
    let Err(refused) = packed else {
        return Ok(());
    };
    gdal_index(ds.dataset()).map_err(|e| {
        ds.other(format!(
            "{refused}; GDAL could not index the images either: {e}"
        ))
    })
}

/// Removes what a packed attempt left and lets GDAL index `images`.
fn gdal_index(ds: &Dataset) -> Result<(), GdalError> {
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
}

/// Writes the spatial index of `images` as GDAL would (same table,
/// triggers and extension row, in the open transaction), but packs the
/// R*Tree's nodes in one go ([`rtree::pack`]) rather than inserting each
/// image into it, which was most of the GeoPackage's writing time.
fn write_packed(
    w: &OgrDataset,
    srs: &SpatialRef,
    points: Vec<rtree::Entry>,
) -> Result<(), OgrError> {
    let sql = index_sql(srs).map_err(w.gdal("learn GDAL's spatial index SQL"))?;
    let ds = w.dataset();
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
        .and_then(|size| rtree::pack(points, size, |n| sink.add(&n)))
        .ok_or_else(|| {
            w.other(format!(
                "SQLite made R*Tree nodes of {node_size:?} bytes; cannot pack them"
            ))
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
    .map_err(&write)
}
