#!/usr/bin/python3
"""Opens a mlyexport GeoPackage, or the PostGIS schema `layers --format postgis`
wrote, headless in QGIS (Debian's python3-qgis) and checks every layer: valid,
EPSG:4326 (spatial layers), and its default style from `layer_styles` loads.
Prints one JSON object per layer; exits 1 on any failure, 3 when PyQGIS cannot
be imported.

usage: QT_QPA_PLATFORM=offscreen /usr/bin/python3 scripts/qgis_check.py FILE.gpkg
       QT_QPA_PLATFORM=offscreen /usr/bin/python3 scripts/qgis_check.py "PG:host=... dbname=... user=..." SCHEMA
       (QGIS' own postgres provider; the password comes from PGPASSWORD or ~/.pgpass)
"""
import json
import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
try:
    from qgis.core import QgsApplication, QgsDataSourceUri, QgsRenderContext, QgsVectorLayer
except ImportError as e:  # pragma: no cover
    print(json.dumps({"error": f"cannot import qgis.core: {e}"}))
    sys.exit(3)

EXPECTED = {
    "images": ("RuleRenderer", True),
    "sequences": ("singleSymbol", True),
    "grid_cells": ("graduatedSymbol", True),
    "runs": (None, False),
}


def open_layer(path, schema, name, spatial):
    """The layer through the GeoPackage's ogr provider, or QGIS' postgres provider."""
    if not path.startswith("PG:"):
        return QgsVectorLayer(f"{path}|layername={name}", name, "ogr")
    uri = QgsDataSourceUri(path[3:])
    uri.setDataSource(schema, name, "geom" if spatial else "")
    uri.setKeyColumn("fid")
    return QgsVectorLayer(uri.uri(False), name, "postgres")


def main(path, schema=None):
    app = QgsApplication([], False)
    app.initQgis()
    ok = True
    for name, (renderer, spatial) in EXPECTED.items():
        layer = open_layer(path, schema, name, spatial)
        res = {"layer": name, "valid": layer.isValid()}
        if layer.isValid():
            res["features"] = layer.featureCount()
            res["crs"] = layer.crs().authid() if spatial else None
            msg, loaded = layer.loadDefaultStyle()
            res["style_loaded"] = bool(loaded)
            res["style_message"] = msg
            r = layer.renderer()
            res["renderer"] = r.type() if (r is not None and spatial) else None
            if renderer == "graduatedSymbol" and r is not None:
                res["classes"] = len(r.ranges())
                res["class_attribute"] = r.classAttribute()
            if renderer == "RuleRenderer" and r is not None:
                rules = r.rootRule().children()
                res["rules"] = [x.filterExpression() for x in rules]
                syms = [x.symbol() for x in rules if x.symbol() is not None]
                res["symbols"] = [s.symbolLayer(0).layerType() for s in syms]
                # Which rule draws each feature: panoramas must get their own.
                ctx = QgsRenderContext()
                r.startRender(ctx, layer.fields())
                per_rule = {}
                for f in layer.getFeatures():
                    keys = [k for k in r.legendKeysForFeature(f, ctx) if k != "{mlyexport-root}"]
                    key = f"{'pano' if f['is_pano'] else 'image'}->{','.join(keys)}"
                    per_rule[key] = per_rule.get(key, 0) + 1
                r.stopRender(ctx)
                res["features_per_rule"] = per_rule
                res["rotation_active"] = any(
                    s.symbolLayer(0).dataDefinedProperties().isActive(s.symbolLayer(0).PropertyAngle)
                    for s in syms
                )
            good = res["style_loaded"] and (not spatial or res["crs"] == "EPSG:4326")
            good = good and (renderer is None or res["renderer"] == renderer)
        else:
            good = False
        res["ok"] = bool(good)
        ok = ok and good
        print(json.dumps(res))
        del layer
    return 0 if ok else 1


if __name__ == "__main__":
    code = main(*sys.argv[1:3])
    sys.stdout.flush()
    # exitQgis() can crash headless at interpreter shutdown; the checks are done.
    os._exit(code)
