"""The Python side of the demo (scripts/demo.sh): the same engine as the CLI, from Python.

Reads the folder the CLI's fetch wrote as a GeoDataFrame, lists a bbox beyond the API's cap as
typed records, downloads one image, and writes one image the old tool's way (compat layer).
Usage: python demo.py DOWNLOADS_DIR   (token and simulator URLs from the environment)
"""

import pathlib
import sys

import mlyexport as mly
from mlyexport.compat import MapillaryDownloader


def main() -> None:
    downloads = pathlib.Path(sys.argv[1])
    gdf = mly.read_images(downloads)
    print(f"python: read_images: {len(gdf)} images in {gdf['grid'].nunique()} grids ({type(gdf).__name__})")

    client = mly.Client()
    images = client.images_in_bbox("8.50,47.35,8.56,47.39", pano="exclude", progress=False)
    first = images[0]
    print(f"python: images_in_bbox: {len(images)} images (every one, verified), first {first['id']} "
          f"captured {first['captured_at'].isoformat()} at {first.get('geometry')}")
    path = client.download_image(first["id"], output_dir=downloads.parent / "python" / "1", size="256")
    print(f"python: download_image: {path}")

    old = MapillaryDownloader()
    jpg = old.download_image(first["id"], str(downloads.parent / "old-tool"))
    print(f"python: compat download_image (old layout): {jpg}")


if __name__ == "__main__":
    main()
