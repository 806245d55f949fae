//! Polygon study areas: reading a Polygon/MultiPolygon layer with GDAL
//! (reprojected to EPSG:4326) is the only I/O here; testing points and boxes
//! against the polygon is pure. Knows nothing of the network or grids.

use std::path::{Path, PathBuf};

use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::vector::LayerAccess;
use geo::{Area, BooleanOps, BoundingRect, CoordsIter, Intersects};
use geo::{Geometry, MultiPolygon, Point, Polygon, Rect, coord};

use crate::model::{Bbox, LonLat};

/// Why an AOI file cannot be used.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // each variant's #[error] text is its documentation
pub enum AoiError {
    #[error(
        "cannot open `{path}` as a vector file ({message}); give a GeoJSON, GeoPackage or Shapefile"
    )]
    Open { path: PathBuf, message: String },
    #[error("`{path}` has no layer")]
    NoLayer { path: PathBuf },
    #[error("--aoi-where `{filter}` was refused: {message}")]
    Where { filter: String, message: String },
    #[error(
        "`{path}` has no CRS; add one (e.g. a .prj file beside a Shapefile) or convert it to GeoJSON"
    )]
    NoCrs { path: PathBuf },
    #[error("`{path}`: feature {fid} is a {kind}, not a Polygon or MultiPolygon")]
    NotPolygon {
        path: PathBuf,
        fid: u64,
        kind: String,
    },
    #[error("`{path}` has no polygon{hint}")]
    Empty { path: PathBuf, hint: &'static str },
    #[error("`{path}`: cannot reproject to EPSG:4326 ({message})")]
    Reproject { path: PathBuf, message: String },
    #[error(
        "`{path}`: the polygon's extent {extent} is not within -180..180, -90..90 after reprojection"
    )]
    Extent { path: PathBuf, extent: String },
    #[error("cannot use `{path}` as --aoi: {source}")]
    NotRegular {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "`{path}`: {which} has a vertex that is not a finite number (NaN or infinite), before or after reprojection; fix the file"
    )]
    NonFinite { path: PathBuf, which: String },
    #[error(
        "`{path}`: {which} has zero area (less than 1e-12 square degrees, about 0.01 m²); a study area must enclose some ground"
    )]
    ZeroArea { path: PathBuf, which: String },
    #[error(
        "`{path}`: {which} is not a valid polygon ({reason}); it was refused, not repaired: repair it first (QGIS \"Fix geometries\", or `ogr2ogr -makevalid out.gpkg in.gpkg`)"
    )]
    Invalid {
        path: PathBuf,
        which: String,
        reason: String,
    },
    #[error(
        "`{path}`: the polygon's extent {extent} is narrower or lower than 0.000001 degrees (about 0.1 m)"
    )]
    TooSmall { path: PathBuf, extent: String },
}

/// Polygons of less than this many square degrees (about 0.01 m²) have no
/// usable area.
pub(crate) const MIN_AREA_DEG2: f64 = 1e-12;

/// What is wrong with one polygon's numbers, if anything: a NaN or infinite
/// vertex, or no area (collinear or too few points, or less area than
/// [`MIN_AREA_DEG2`]; the area of a self-intersecting ring can cancel out,
/// so [`Aoi::read`] checks validity before calling this).
fn polygon_problem(poly: &Polygon<f64>) -> Option<fn(PathBuf, String) -> AoiError> {
    if poly
        .coords_iter()
        .any(|c| !c.x.is_finite() || !c.y.is_finite())
    {
        return Some(|path, which| AoiError::NonFinite { path, which });
    }
    if is_flat(poly) || poly.unsigned_area() < MIN_AREA_DEG2 {
        return Some(|path, which| AoiError::ZeroArea { path, which });
    }
    None
}

/// True when every vertex of the outer ring lies within 1e-9 degrees of one
/// line (or there are fewer than three distinct vertices).
fn is_flat(poly: &Polygon<f64>) -> bool {
    let pts = &poly.exterior().0;
    let Some(&a) = pts.first() else {
        return true;
    };
    let dist2 = |p: &geo::Coord<f64>| (p.x - a.x).powi(2) + (p.y - a.y).powi(2);
    let Some(&b) = pts.iter().max_by(|p, q| dist2(p).total_cmp(&dist2(q))) else {
        return true;
    };
    let len = dist2(&b).sqrt();
    if len == 0.0 {
        return true;
    }
    let off_line =
        |p: &geo::Coord<f64>| ((b.x - a.x) * (p.y - a.y) - (b.y - a.y) * (p.x - a.x)).abs() / len;
    pts.iter().all(|p| off_line(p) < 1e-9)
}

/// GEOS validity of `g` (self-intersections, crossing rings, bad holes);
/// when not valid, GDAL's reason, e.g. `Self-intersection at or near point
/// 8.505 47.355`, caught instead of printed.
fn validity(g: &gdal::vector::Geometry) -> Result<(), String> {
    let caught = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = std::sync::Arc::clone(&caught);
    gdal::config::set_error_handler(move |_, _, msg| {
        if let Ok(mut v) = sink.lock() {
            v.push(msg.to_string());
        }
    });
    let ok = g.is_valid();
    gdal::config::remove_error_handler();
    if ok {
        return Ok(());
    }
    let reason = caught.lock().map(|v| v.join("; ")).unwrap_or_default();
    Err(if reason.is_empty() {
        "it crosses itself, or its rings touch or overlap".into()
    } else {
        reason
    })
}

/// A feature's finite, non-flat parts, or why they cannot be used.
fn check_finite_and_flat(parts: &[Polygon<f64>], path: &Path, fid: u64) -> Result<(), AoiError> {
    for poly in parts {
        let bad = poly
            .coords_iter()
            .any(|c| !c.x.is_finite() || !c.y.is_finite());
        let which = format!("feature {fid}");
        if bad {
            return Err(AoiError::NonFinite {
                path: path.to_path_buf(),
                which,
            });
        }
        if is_flat(poly) {
            return Err(AoiError::ZeroArea {
                path: path.to_path_buf(),
                which,
            });
        }
    }
    Ok(())
}

/// A study-area polygon in EPSG:4326 (x = lon, y = lat, degrees).
#[derive(Debug, Clone)]
pub struct Aoi {
    shape: MultiPolygon<f64>,
    bbox: Bbox,
    /// Where it came from: the path, and the filter when one was given.
    pub source: String,
}

impl Aoi {
    /// Reads every Polygon/MultiPolygon feature of the first layer of `path`
    /// (those matching `filter`, an OGR SQL WHERE clause, when given).
    pub fn read(path: &Path, filter: Option<&str>) -> Result<Aoi, AoiError> {
        let p = || path.to_path_buf();
        crate::input::check_not_special(path)
            .map_err(|source| AoiError::NotRegular { path: p(), source })?;
        let ds = gdal::Dataset::open(path).map_err(|e| AoiError::Open {
            path: p(),
            message: e.to_string(),
        })?;
        let mut layer = ds.layer(0).map_err(|_| AoiError::NoLayer { path: p() })?;
        if let Some(f) = filter {
            layer.set_attribute_filter(f).map_err(|e| AoiError::Where {
                filter: f.to_string(),
                message: e.to_string(),
            })?;
        }
        let ct = to_wgs84(&layer, path)?;
        let mut polys: Vec<Polygon<f64>> = Vec::new();
        for feature in layer.features() {
            let fid = feature.fid().unwrap_or(0);
            if let Some(g) = feature.geometry() {
                polys.extend(feature_polygons(g, fid, &ct, path)?);
            }
        }
        let hint = if filter.is_some() {
            " matching --aoi-where"
        } else {
            ""
        };
        let source = match filter {
            Some(f) => format!("{} where {f}", path.display()),
            None => path.display().to_string(),
        };
        Aoi::new(MultiPolygon(polys), source).map_err(|e| match e {
            AoiError::Empty { .. } => AoiError::Empty { path: p(), hint },
            AoiError::Extent { extent, .. } => AoiError::Extent { path: p(), extent },
            AoiError::TooSmall { extent, .. } => AoiError::TooSmall { path: p(), extent },
            AoiError::NonFinite { which, .. } => AoiError::NonFinite { path: p(), which },
            AoiError::ZeroArea { which, .. } => AoiError::ZeroArea { path: p(), which },
            other => other,
        })
    }

    /// An AOI from a multipolygon already in EPSG:4326. Refuses a polygon
    /// with a NaN or infinite vertex, one of zero area, and an extent out of
    /// range or under 0.1 m wide or high. Validity (self-intersection) is
    /// checked by [`Aoi::read`] with GEOS.
    pub(crate) fn new(shape: MultiPolygon<f64>, source: String) -> Result<Aoi, AoiError> {
        let path = || PathBuf::from(&source);
        for (i, poly) in shape.0.iter().enumerate() {
            if let Some(make) = polygon_problem(poly) {
                return Err(make(path(), format!("polygon {}", i + 1)));
            }
        }
        let rect = shape.bounding_rect().ok_or_else(|| AoiError::Empty {
            path: path(),
            hint: "",
        })?;
        let corners = [rect.min().x, rect.min().y, rect.max().x, rect.max().y];
        let extent = format!("{corners:?}");
        let bbox = Bbox::new(corners[0], corners[1], corners[2], corners[3]).map_err(|_| {
            AoiError::Extent {
                path: path(),
                extent: extent.clone(),
            }
        })?;
        bbox.check_min_side().map_err(|_| AoiError::TooSmall {
            path: path(),
            extent,
        })?;
        Ok(Aoi {
            shape,
            bbox,
            source,
        })
    }

    /// The box around the polygon.
    pub(crate) fn bbox(&self) -> Bbox {
        self.bbox
    }

    /// True when `p` is inside the polygon or on its boundary (holes excluded).
    pub fn contains(&self, p: LonLat) -> bool {
        self.shape.intersects(&Point::new(p.lon, p.lat))
    }

    /// True when the box and the polygon share any point.
    pub(crate) fn intersects_box(&self, b: &Bbox) -> bool {
        self.shape.intersects(&rect(b))
    }

    /// The part of `b` inside the polygon.
    pub(crate) fn clip_box(&self, b: &Bbox) -> MultiPolygon<f64> {
        self.shape
            .intersection(&MultiPolygon(vec![rect(b).to_polygon()]))
    }

    /// The polygon as a GeoJSON geometry object (for the run record).
    pub(crate) fn to_geojson(&self) -> serde_json::Value {
        let geom = geojson::Geometry::new(geojson::Value::from(&self.shape));
        serde_json::to_value(geom).unwrap_or(serde_json::Value::Null)
    }
}

fn rect(b: &Bbox) -> Rect<f64> {
    Rect::new(
        coord! { x: b.min_lon(), y: b.min_lat() },
        coord! { x: b.max_lon(), y: b.max_lat() },
    )
}

fn kind_name(g: &Geometry<f64>) -> &'static str {
    match g {
        Geometry::Point(_) => "Point",
        Geometry::Line(_) | Geometry::LineString(_) => "LineString",
        Geometry::MultiPoint(_) => "MultiPoint",
        Geometry::MultiLineString(_) => "MultiLineString",
        Geometry::GeometryCollection(_) => "GeometryCollection",
        Geometry::Rect(_) => "Rect",
        Geometry::Triangle(_) => "Triangle",
        Geometry::Polygon(_) | Geometry::MultiPolygon(_) => "Polygon",
    }
}

/// The transformation from `layer`'s CRS to WGS 84 in lon, lat order.
fn to_wgs84(layer: &gdal::vector::Layer<'_>, path: &Path) -> Result<CoordTransform, AoiError> {
    let p = || path.to_path_buf();
    let mut src = layer
        .spatial_ref()
        .ok_or_else(|| AoiError::NoCrs { path: p() })?;
    let mut dst = SpatialRef::from_epsg(4326).map_err(|e| AoiError::Reproject {
        path: p(),
        message: e.to_string(),
    })?;
    dst.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    src.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    CoordTransform::new(&src, &dst).map_err(|e| AoiError::Reproject {
        path: p(),
        message: e.to_string(),
    })
}

/// The polygons of feature `fid`'s geometry `g`, reprojected by `ct` and
/// checked (polygons only, finite, valid, not degenerate).
fn feature_polygons(
    g: &gdal::vector::Geometry,
    fid: u64,
    ct: &CoordTransform,
    path: &Path,
) -> Result<Vec<Polygon<f64>>, AoiError> {
    let p = || path.to_path_buf();
    let g = g.transform(ct).map_err(|e| AoiError::Reproject {
        path: p(),
        message: e.to_string(),
    })?;
    let parts = match g.to_geo() {
        Ok(Geometry::Polygon(poly)) => vec![poly],
        Ok(Geometry::MultiPolygon(mp)) => mp.0,
        Ok(other) => {
            return Err(AoiError::NotPolygon {
                path: p(),
                fid,
                kind: kind_name(&other).into(),
            });
        }
        Err(_) => {
            return Err(AoiError::NotPolygon {
                path: p(),
                fid,
                kind: g.geometry_name(),
            });
        }
    };
    let which = || format!("feature {fid}");
    check_finite_and_flat(&parts, path, fid)?;
    if let Err(reason) = validity(&g) {
        return Err(AoiError::Invalid {
            path: p(),
            which: which(),
            reason,
        });
    }
    if let Some(make) = parts.iter().find_map(polygon_problem) {
        return Err(make(p(), which()));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::{LineString, polygon};

    fn one(coords: &[(f64, f64)]) -> Result<Aoi, AoiError> {
        let ring = LineString::from(coords.to_vec());
        Aoi::new(MultiPolygon(vec![Polygon::new(ring, vec![])]), "t".into())
    }

    #[test]
    fn non_finite_zero_area_and_tiny_polygons_are_refused() {
        let nan = one(&[(0.0, 0.0), (1.0, 0.0), (f64::NAN, 1.0), (0.0, 0.0)]);
        assert!(matches!(nan, Err(AoiError::NonFinite { .. })));
        let inf = one(&[(0.0, 0.0), (f64::INFINITY, 0.0), (1.0, 1.0), (0.0, 0.0)]);
        assert!(matches!(inf, Err(AoiError::NonFinite { .. })));
        let flat = one(&[(0.0, 0.0), (1.0, 1.0), (2.0, 2.0), (0.0, 0.0)]);
        let e = flat.unwrap_err();
        assert!(matches!(e, AoiError::ZeroArea { .. }), "{e}");
        assert!(e.to_string().contains("zero area"), "{e}");
        let sliver = one(&[(0.0, 0.0), (1e-7, 0.0), (1e-7, 1.0), (0.0, 1.0), (0.0, 0.0)]);
        assert!(matches!(sliver, Err(AoiError::TooSmall { .. })));
        assert!(one(&[(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 0.0)]).is_ok());
    }

    fn square_with_hole() -> Aoi {
        let outer = LineString::from(vec![
            (0.0, 0.0),
            (4.0, 0.0),
            (4.0, 4.0),
            (0.0, 4.0),
            (0.0, 0.0),
        ]);
        let hole = LineString::from(vec![
            (1.0, 1.0),
            (3.0, 1.0),
            (3.0, 3.0),
            (1.0, 3.0),
            (1.0, 1.0),
        ]);
        let far = polygon![(x: 10.0, y: 10.0), (x: 11.0, y: 10.0), (x: 11.0, y: 11.0), (x: 10.0, y: 11.0)];
        Aoi::new(
            MultiPolygon(vec![Polygon::new(outer, vec![hole]), far]),
            "test".into(),
        )
        .unwrap()
    }

    #[test]
    fn points_in_holes_and_parts() {
        let a = square_with_hole();
        let p = |x, y| LonLat::new(x, y).unwrap();
        assert!(a.contains(p(0.5, 0.5)));
        assert!(a.contains(p(0.0, 2.0)), "the boundary counts");
        assert!(!a.contains(p(2.0, 2.0)), "holes are outside");
        assert!(a.contains(p(10.5, 10.5)));
        assert!(!a.contains(p(7.0, 7.0)));
        assert_eq!(a.bbox(), Bbox::new(0.0, 0.0, 11.0, 11.0).unwrap());
    }

    #[test]
    fn boxes_touching_and_clipped() {
        let a = square_with_hole();
        assert!(a.intersects_box(&Bbox::new(3.5, 3.5, 5.0, 5.0).unwrap()));
        assert!(
            !a.intersects_box(&Bbox::new(1.5, 1.5, 2.5, 2.5).unwrap()),
            "inside the hole"
        );
        assert!(!a.intersects_box(&Bbox::new(6.0, 6.0, 7.0, 7.0).unwrap()));
        let clipped = a.clip_box(&Bbox::new(3.0, 3.0, 5.0, 5.0).unwrap());
        assert!((clipped.unsigned_area() - 1.0).abs() < 1e-9);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn coord() -> impl Strategy<Value = f64> {
            prop_oneof![
                8 => -10.0..10.0f64,
                1 => any::<f64>(),
                1 => prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(0.0), Just(1e-9)],
            ]
        }

        proptest! {
            #[test]
            fn polygons_are_accepted_usable_or_refused(
                rings in proptest::collection::vec(
                    proptest::collection::vec((coord(), coord()), 0..8), 0..3)
            ) {
                let polys: Vec<Polygon<f64>> = rings
                    .into_iter()
                    .map(|r| Polygon::new(LineString::from(r), vec![]))
                    .collect();
                match Aoi::new(MultiPolygon(polys), "p".into()) {
                    Ok(a) => {
                        prop_assert!(a.bbox().check_min_side().is_ok());
                        prop_assert!(!a.to_geojson().is_null());
                        let _ = a.contains(LonLat::new(0.0, 0.0).unwrap());
                        let _ = a.clip_box(&a.bbox());
                    }
                    Err(e) => prop_assert!(!e.to_string().is_empty()),
                }
            }
        }
    }
}
