"""A drop-in for the old ``mapillary-download`` tool's ``MapillaryDownloader``.

Change one import line::

    from mlyexport.compat import MapillaryDownloader

The methods keep the old signatures and the old output layout (``images/<id>.jpg`` and
``jsons/<id>.json``, which ``mlyexport layers`` reads). What changes: listings are complete
beyond the API's 2,000-result cap, the token is never printed, signed thumbnail URLs are never
returned, and failures raise :class:`mlyexport.Error` subclasses with messages instead of
failing an ``assert``.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Union

from ._api import Client
from ._errors import ApiError

__all__ = ["MapillaryDownloader"]

# Fields the old tool's JSON is made from.
_OLD_FIELDS = "id,computed_geometry,computed_compass_angle,captured_at,camera_parameters,camera_type,computed_rotation"


class MapillaryDownloader:
    """The old tool's downloader on the mlyexport engine.

    ``access_token`` (or ``client_token``) is optional: without it the token is found like
    the CLI's (``MAPILLARY_TOKEN`` or ``.env``).
    """

    def __init__(self, access_token: Optional[str] = None, **client_options: Any) -> None:
        token = access_token or client_options.pop("client_token", None)
        self._client = Client(token, **client_options)

    def __repr__(self) -> str:
        return "MapillaryDownloader(<token hidden>)"

    def get_images_in_bbox(self, bbox: Union[str, Sequence[float]], fields: str = "id") -> List[Dict[str, Any]]:
        """Every image in ``bbox`` (``"w,s,e,n"`` or four numbers) as the API's dicts holding
        ``id`` and the requested ``fields`` (comma-separated) that the listing carries; signed
        thumbnail URLs are never returned. Complete beyond the API's cap."""
        return self._list(bbox, fields, None)

    def get_images_by_user_in_bbox(
        self, username: str, bbox: Union[str, Sequence[float]], fields: str = "id"
    ) -> List[Dict[str, Any]]:
        """:meth:`get_images_in_bbox` for the images uploaded by ``username``."""
        return self._list(bbox, fields, username)

    def _list(self, bbox: Union[str, Sequence[float]], fields: str, creator: Optional[str]) -> List[Dict[str, Any]]:
        wanted = [f.strip() for f in fields.split(",") if f.strip()]
        listing = self._client._listing(bbox, None, None, None, creator, None, False, False)
        keep = ["id"] + [f for f in wanted if f != "id"]
        return [{k: img[k] for k in keep if k in img} for img in listing["images"]]

    def download_image(self, image_id: Union[int, str], output_dir: Union[str, "os.PathLike[str]"]) -> str:
        """Downloads the original-size image into ``<output_dir>/images/<id>.jpg`` and writes
        the old tool's ``<output_dir>/jsons/<id>.json``; returns the JPEG's path. Both writes
        are atomic, the JPEG first."""
        out = pathlib.Path(output_dir)
        images, jsons = out / "images", out / "jsons"
        images.mkdir(parents=True, exist_ok=True)
        jsons.mkdir(parents=True, exist_ok=True)
        meta = self._client._core.image_fields(str(image_id), _OLD_FIELDS)
        image_id = str(meta.get("id", image_id))
        tmp = tempfile.mkdtemp(prefix=".mlyexport-tmp-", dir=out)
        try:
            jpg = self._client.download_image(image_id, output_dir=tmp, size="original")
            target = images / f"{image_id}.jpg"
            os.replace(jpg, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        _write_atomic(jsons / f"{image_id}.json", json.dumps(old_json(image_id, meta), indent=2))
        return os.fspath(target)


def old_json(image_id: str, meta: Dict[str, Any]) -> Dict[str, Any]:
    """The old tool's JSON for one image: its computed position and heading (0, 0 without a
    computed position), capture time in epoch milliseconds, and no ``id`` key."""
    coords = (meta.get("computed_geometry") or {}).get("coordinates") or [0, 0]
    if len(coords) < 2:
        raise ApiError(f"image {image_id}: computed_geometry {coords!r} is not a point")
    return {
        "image_name": f"{image_id}.jpg",
        "latitude": coords[1],
        "longitude": coords[0],
        "captured_at": meta.get("captured_at"),
        "heading": meta.get("computed_compass_angle"),
        "camera_parameters": meta.get("camera_parameters"),
        "camera_type": meta.get("camera_type"),
        "computed_rotation": meta.get("computed_rotation"),
        "annotations": [],
    }


def _write_atomic(path: pathlib.Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".mlyexport-tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
