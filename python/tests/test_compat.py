"""`mlyexport.compat.MapillaryDownloader`: the old tool's API and output layout."""

from __future__ import annotations

import json
import pathlib
import subprocess

import mlyexport as mly
from conftest import DEMO_BBOX, binary
from mlyexport.compat import MapillaryDownloader

OLD_KEYS = [
    "image_name",
    "latitude",
    "longitude",
    "captured_at",
    "heading",
    "camera_parameters",
    "camera_type",
    "computed_rotation",
    "annotations",
]


def test_get_images_in_bbox_is_complete(env) -> None:
    images = MapillaryDownloader().get_images_in_bbox(DEMO_BBOX)
    truth = set(env.ground_truth(DEMO_BBOX))
    assert len(images) > 2000
    assert truth <= {i["id"] for i in images}
    assert all(set(i) == {"id"} for i in images)


def test_fields_and_user_filter(env) -> None:
    d = MapillaryDownloader(env.env()["MAPILLARY_TOKEN"])
    images = d.get_images_in_bbox([8.52, 47.36, 8.53, 47.37], fields="id,captured_at,geometry,thumb_1024_url")
    assert images and all("thumb_1024_url" not in i for i in images)
    with_user = [i for i in mly.Client().images_in_bbox("8.52,47.36,8.53,47.37", progress=False) if "creator" in i]
    user = with_user[0]["creator"]["username"]
    mine = d.get_images_by_user_in_bbox(user, "8.52,47.36,8.53,47.37", fields="id,creator")
    assert mine and all(i["creator"]["username"] == user for i in mine)
    # Raw API values, as the old tool returned them.
    assert isinstance(images[0]["captured_at"], int)
    assert images[0]["geometry"]["type"] == "Point"


def test_download_image_writes_the_old_layout(env, tmp_path: pathlib.Path) -> None:
    d = MapillaryDownloader()
    ids = [i["id"] for i in d.get_images_in_bbox("8.52,47.36,8.53,47.37")[:5]]
    assert len(ids) == 5
    out = tmp_path / "old"
    for image_id in ids:
        path = d.download_image(image_id, str(out))
        assert path == str(out / "images" / f"{image_id}.jpg")
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(f"{i}.jpg" for i in ids)
    assert sorted(p.name for p in (out / "jsons").iterdir()) == sorted(f"{i}.json" for i in ids)
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    for image_id in ids:
        text = (out / "jsons" / f"{image_id}.json").read_text()
        data = json.loads(text)
        assert list(data) == OLD_KEYS
        assert text == json.dumps(data, indent=2)
        assert data["image_name"] == f"{image_id}.jpg" and data["annotations"] == []
        assert isinstance(data["captured_at"], int)
        meta = mly.Client()._core.image_fields(image_id, "computed_geometry,computed_compass_angle")
        lon, lat = meta["computed_geometry"]["coordinates"] if "computed_geometry" in meta else (0, 0)
        assert (data["longitude"], data["latitude"]) == (lon, lat)
        assert data["heading"] == meta.get("computed_compass_angle")

    # `mlyexport layers` (the CLI binary and the Python call) imports it.
    cli = subprocess.run(
        [str(binary("mlyexport")), "layers", "--input", str(out), "--format", "geojson", "--no-exif"],
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 0, cli.stderr
    assert f"images: {len(ids)}" in cli.stdout
    res = mly.layers(input=out, formats="csv")
    assert res.status == "success" and res.summary["images"] == str(len(ids))
    gdf = mly.read_images(out)
    assert sorted(gdf["id"]) == sorted(ids)
