"""The type stubs match the module (mypy's stubtest) and type-check as a user would use them."""

from __future__ import annotations

import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent


def test_stubtest_finds_no_difference() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "mlyexport", "--allowlist", str(HERE / "stubtest-allowlist.txt")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_typed_pipeline_passes_mypy(tmp_path: pathlib.Path) -> None:
    user = tmp_path / "pipeline.py"
    user.write_text(
        "import mlyexport as mly\n"
        "from mlyexport.compat import MapillaryDownloader\n"
        "def main() -> None:\n"
        "    client = mly.Client()\n"
        "    images = client.images_in_bbox('1,2,3,4', since='2021-01-01', pano='exclude')\n"
        "    path = client.download_image(images[0]['id'], output_dir='d/1', size='1024')\n"
        "    print(path.name)\n"
        "    run = mly.fetch(bbox='1,2,3,4', grid='2x2', dry_run=True)\n"
        "    n: int = run.counts['listed']\n"
        "    out = mly.layers(input='downloads', formats=['gpkg', 'geojson'], exif=True)\n"
        "    print(n, out.written, mly.read_images('downloads'))\n"
        "    MapillaryDownloader('t').download_image(1, 'old')\n"
    )
    r = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(user)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout + r.stderr
