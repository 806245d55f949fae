"""`fetch`, `download_image`, `layers` and `read_images` from Python."""

from __future__ import annotations

import json
import pathlib

import pytest

import mlyexport as mly

SMALL = "8.52,47.36,8.53,47.37"


def test_download_image_writes_jpeg_and_json(env, tmp_path: pathlib.Path) -> None:
    c = mly.Client()
    first = c.images_in_bbox(SMALL, progress=False)[0]
    path = c.download_image(first["id"], output_dir=tmp_path / "d" / "1", size="256")
    assert path == tmp_path / "d" / "1" / f"{first['id']}.jpg"
    assert path.read_bytes()[:2] == b"\xff\xd8"
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["id"] == first["id"] and meta["mlyexport"]["size"] == "256"
    assert not any(k.startswith("thumb_") for k in meta)


def test_fetch_downloads_then_resumes(env, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "downloads"
    run = mly.fetch(bbox=SMALL, grid="2x1", size="256", output=out, progress=False)
    assert run.status == "success"
    assert run.counts["downloaded"] == run.counts["listed"] > 0
    assert [g["grid"] for g in run.grids] == ["1", "2"]
    assert sum(g["listed"] for g in run.grids) == run.counts["listed"]
    assert all(g["listing"] == "verified" for g in run.grids), run.grids
    jpgs = list(out.glob("*/*.jpg"))
    assert len(jpgs) == run.counts["downloaded"]
    # Lose one image: the next run fetches only it.
    jpgs[0].unlink()
    jpgs[0].with_suffix(".json").unlink()
    again = mly.fetch(bbox=SMALL, grid="2x1", size="256", output=out, progress=False)
    assert again.counts["downloaded"] == 1
    assert again.counts["skipped"] == run.counts["listed"] - 1


def test_fetch_dry_run_and_changed_request(env, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "dry"
    run = mly.fetch(bbox=SMALL, dry_run=True, output=out, progress=False)
    assert run.dry_run and run.counts["downloaded"] == 0 and run.estimated_bytes > 0
    assert (out / "listing.jsonl").exists()
    with pytest.raises(mly.Error, match="other settings"):
        mly.fetch(bbox=SMALL, size="256", dry_run=True, output=out, progress=False)


def test_layers_and_read_images(env, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "downloads"
    run = mly.fetch(bbox=SMALL, size="256", output=out, progress=False)
    res = mly.layers(input=out, formats=["gpkg", "geojson"], exif=True)
    assert res.status == "success", res.summary
    names = {p.name for p in res.written}
    assert {"mapillary.gpkg", "images.geojson", "coverage.json"} <= names
    assert all(p.exists() for p in res.written)
    assert int(res.summary["images"]) == run.counts["downloaded"]

    gdf = mly.read_images(out)
    import geopandas

    assert isinstance(gdf, geopandas.GeoDataFrame)
    assert len(gdf) == run.counts["downloaded"]
    assert gdf.crs.to_epsg() == 4326
    placed = gdf[gdf.geometry.notna()]
    assert placed.geometry.x.between(8.5, 8.55).all() and placed.geometry.y.between(47.35, 47.38).all()
    assert str(gdf["captured_at"].dt.tz) == "UTC"
    assert set(gdf["grid"]) == {"1"}
    rows = mly.read_images(out, geo=False)
    assert isinstance(rows, list) and len(rows) == len(gdf)
    assert {"id", "lon", "lat", "captured_at", "file"} <= set(rows[0])
