//! Default QGIS styles (QML) of each layer, stored in the GeoPackage's
//! `layer_styles` table: image points as arrows rotated by their direction,
//! panoramas as distinct circles, sequences as lines, grid cells graded by
//! images per km². Pure text: no file or GDAL access.

/// A default style of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LayerStyle {
    pub table: &'static str,
    /// The geometry column, empty for a table without geometry.
    pub geometry_column: &'static str,
    pub name: &'static str,
    pub description: &'static str,
}

const HEAD: &str = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n<qgis version=\"3.22.0\" styleCategories=\"AllStyleCategories\">\n";

fn opt(name: &str, value: &str) -> String {
    format!("<Option name=\"{name}\" type=\"QString\" value=\"{value}\"/>")
}

fn marker(name: &str, shape: &str, color: &str, size: &str, rotate: bool) -> String {
    let dd = if rotate {
        "<data_defined_properties><Option type=\"Map\"><Option name=\"name\" type=\"QString\" value=\"\"/>\
<Option name=\"properties\" type=\"Map\"><Option name=\"angle\" type=\"Map\">\
<Option name=\"active\" type=\"bool\" value=\"true\"/>\
<Option name=\"expression\" type=\"QString\" value=\"coalesce(&quot;direction&quot;, 0)\"/>\
<Option name=\"type\" type=\"int\" value=\"3\"/></Option></Option>\
<Option name=\"type\" type=\"QString\" value=\"collection\"/></Option></data_defined_properties>"
    } else {
        ""
    };
    format!(
        "<symbol type=\"marker\" name=\"{name}\" alpha=\"1\" clip_to_extent=\"1\" force_rhr=\"0\">\
<layer class=\"SimpleMarker\" enabled=\"1\" locked=\"0\" pass=\"0\"><Option type=\"Map\">{}{}{}{}{}{}{}{}{}</Option>{dd}</layer></symbol>",
        opt("angle", "0"),
        opt("color", color),
        opt("name", shape),
        opt("outline_color", "35,35,35,255"),
        opt("outline_style", "solid"),
        opt("outline_width", "0.2"),
        opt("outline_width_unit", "MM"),
        opt("size", size),
        opt("size_unit", "MM"),
    )
}

fn fill(name: &str, color: &str) -> String {
    format!(
        "<symbol type=\"fill\" name=\"{name}\" alpha=\"0.55\" clip_to_extent=\"1\" force_rhr=\"0\">\
<layer class=\"SimpleFill\" enabled=\"1\" locked=\"0\" pass=\"0\"><Option type=\"Map\">{}{}{}{}{}</Option></layer></symbol>",
        opt("color", color),
        opt("outline_color", "80,80,80,255"),
        opt("outline_style", "solid"),
        opt("outline_width", "0.3"),
        opt("style", "solid"),
    )
}

/// Classes of images per km² for the grid cells: (lower, upper, colour).
pub(crate) const DENSITY_CLASSES: &[(f64, f64, &str)] = &[
    (0.0, 1.0, "255,255,204,255"),
    (1.0, 10.0, "255,237,160,255"),
    (10.0, 50.0, "254,217,118,255"),
    (50.0, 100.0, "254,178,76,255"),
    (100.0, 500.0, "253,141,60,255"),
    (500.0, 1000.0, "240,59,32,255"),
    (1000.0, 1.0e12, "189,0,38,255"),
];

/// The QML of the `images` layer.
pub(crate) fn images_qml() -> String {
    let rules = "<rules key=\"{mlyexport-root}\">\
<rule key=\"{mlyexport-pano}\" filter=\"&quot;is_pano&quot;\" label=\"Panorama\" symbol=\"0\"/>\
<rule key=\"{mlyexport-image}\" filter=\"ELSE\" label=\"Image (arrow: viewing direction)\" symbol=\"1\"/>\
</rules>";
    format!(
        "{HEAD}<renderer-v2 type=\"RuleRenderer\" symbollevels=\"0\" enableorderby=\"0\" forceraster=\"0\">{rules}<symbols>{}{}</symbols></renderer-v2>\n\
<layerGeometryType>0</layerGeometryType>\n</qgis>\n",
        marker("0", "circle", "227,26,28,255", "3", false),
        marker("1", "arrow", "31,120,180,255", "4.5", true),
    )
}

/// The QML of the `sequences` layer.
pub(crate) fn sequences_qml() -> String {
    format!(
        "{HEAD}<renderer-v2 type=\"singleSymbol\" symbollevels=\"0\" enableorderby=\"0\" forceraster=\"0\"><symbols>\
<symbol type=\"line\" name=\"0\" alpha=\"0.8\" clip_to_extent=\"1\" force_rhr=\"0\">\
<layer class=\"SimpleLine\" enabled=\"1\" locked=\"0\" pass=\"0\"><Option type=\"Map\">{}{}{}{}</Option></layer></symbol>\
</symbols></renderer-v2>\n<layerGeometryType>1</layerGeometryType>\n</qgis>\n",
        opt("line_color", "51,160,44,255"),
        opt("line_style", "solid"),
        opt("line_width", "0.6"),
        opt("line_width_unit", "MM"),
    )
}

/// The QML of the `grid_cells` layer: graduated by `images_per_km2`.
pub(crate) fn grid_cells_qml() -> String {
    let mut ranges = String::new();
    let mut symbols = String::new();
    for (i, (lo, hi, color)) in DENSITY_CLASSES.iter().enumerate() {
        let label = if *hi >= 1.0e12 {
            format!("{lo} or more images/km²")
        } else {
            format!("{lo} to {hi} images/km²")
        };
        ranges.push_str(&format!(
            "<range symbol=\"{i}\" lower=\"{lo:.6}\" upper=\"{hi:.6}\" label=\"{label}\" render=\"true\"/>"
        ));
        symbols.push_str(&fill(&i.to_string(), color));
    }
    format!(
        "{HEAD}<renderer-v2 type=\"graduatedSymbol\" attr=\"images_per_km2\" graduatedMethod=\"GraduatedColor\" symbollevels=\"0\" enableorderby=\"0\" forceraster=\"0\">\
<ranges>{ranges}</ranges><symbols>{symbols}</symbols><classificationMethod id=\"Fixed\"/></renderer-v2>\n\
<layerGeometryType>2</layerGeometryType>\n</qgis>\n"
    )
}

/// The QML of the non-spatial `runs` table (field aliases only).
pub(crate) fn runs_qml() -> String {
    format!(
        "{HEAD}<aliases><alias field=\"command_line\" index=\"2\" name=\"Command line\"/></aliases>\n</qgis>\n"
    )
}

/// Every default style, one per layer.
pub(crate) fn all() -> Vec<(LayerStyle, String)> {
    let s = |table, geometry_column, description, qml: String| {
        (
            LayerStyle {
                table,
                geometry_column,
                name: table,
                description,
            },
            qml,
        )
    };
    vec![
        s(
            "images",
            "geom",
            "Arrows rotated by the viewing direction; panoramas as red circles",
            images_qml(),
        ),
        s("sequences", "geom", "Sequence lines", sequences_qml()),
        s(
            "grid_cells",
            "geom",
            "Grid cells graded by images per km²",
            grid_cells_qml(),
        ),
        s("runs", "", "Fetch runs", runs_qml()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn styles_are_well_formed_enough() {
        for (style, qml) in all() {
            assert!(qml.starts_with("<!DOCTYPE qgis"), "{}", style.table);
            assert_eq!(qml.matches("<qgis ").count(), 1);
            assert!(qml.trim_end().ends_with("</qgis>"));
            let opens = qml.matches("<symbol ").count();
            assert_eq!(opens, qml.matches("</symbol>").count(), "{}", style.table);
        }
        assert!(images_qml().contains("coalesce(&quot;direction&quot;, 0)"));
        assert_eq!(
            grid_cells_qml().matches("<range ").count(),
            DENSITY_CLASSES.len()
        );
    }
}
