"""mlyexport for Python: Mapillary street-level imagery as GIS-ready research data.

The same Rust engine as the ``mlyexport`` command line (no subprocess)::

    import mlyexport as mly
    client = mly.Client()                      # token=, token_file=, MAPILLARY_TOKEN or .env
    images = client.images_in_bbox("13.40,52.51,13.42,52.52", since="2022-01-01")
    path = client.download_image(images[0]["id"], output_dir="downloads/1", size="1024")
    run = mly.fetch(bbox="13.40,52.51,13.42,52.52", grid="2x2", size="1024")
    out = mly.layers(input="downloads", formats=["gpkg", "geojson"], exif=True)
    gdf = mly.read_images("downloads")         # a GeoDataFrame when geopandas is installed

Nothing prints unless asked (``progress=``); Ctrl-C raises ``KeyboardInterrupt`` and leaves
the folder resumable; every error is a :class:`mlyexport.Error`.
"""

from ._api import Client, FetchRun, LayersResult, fetch, layers, read_images
from ._core import __version__
from ._errors import ApiError, ConfigError, Error, ListingError, TokenError

__all__ = [
    "Client",
    "FetchRun",
    "LayersResult",
    "fetch",
    "layers",
    "read_images",
    "Error",
    "TokenError",
    "ApiError",
    "ListingError",
    "ConfigError",
    "__version__",
]
