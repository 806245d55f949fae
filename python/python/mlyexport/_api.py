"""The pipeline: :class:`Client`, :func:`fetch`, :func:`layers`, :func:`read_images`."""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Union

from . import _core
from ._args import BboxLike, DateLike, bbox_text, date_text, flags, pano_text
from ._progress import ProgressArg, Reporter

PathLike = Union[str, "os.PathLike[str]"]
Record = Dict[str, Any]


class Client:
    """A Mapillary Graph API client, configured like ``mlyexport fetch``.

    The token is found like the CLI's: ``token=``, ``token_file=``, the environment variable
    ``MAPILLARY_TOKEN``, or a line ``MAPILLARY_TOKEN=...`` in ``.env`` in the current folder.
    It is never printed, logged or written. ``api_url``/``tiles_url`` default to
    ``MLYEXPORT_API_URL``/``MLYEXPORT_TILES_URL`` or the real Mapillary hosts.
    """

    def __init__(
        self,
        token: Optional[str] = None,
        *,
        token_file: Optional[PathLike] = None,
        api_url: Optional[str] = None,
        tiles_url: Optional[str] = None,
        timeout: Optional[int] = None,
        retries: Optional[int] = None,
        search_rate: Optional[int] = None,
        entity_rate: Optional[int] = None,
    ) -> None:
        self._flags = flags(
            token=token,
            token_file=token_file,
            api_url=api_url,
            tiles_url=tiles_url,
            timeout=timeout,
            retries=retries,
            search_rate=search_rate,
            entity_rate=entity_rate,
        )
        self._core = _core.Client(self._flags)

    def __repr__(self) -> str:
        return "mlyexport.Client(<token hidden>)"

    def images_in_bbox(
        self,
        bbox: BboxLike,
        *,
        since: Optional[DateLike] = None,
        until: Optional[DateLike] = None,
        pano: Union[str, bool, None] = None,
        creator: Optional[str] = None,
        organization: Optional[Union[str, int]] = None,
        progress: ProgressArg = None,
    ) -> List[Record]:
        """Every image in ``bbox`` (``"w,s,e,n"`` or four numbers) passing the filters: the
        complete listing beyond the API's 2,000-result cap, verified against the vector tiles
        (the same engine as :func:`fetch`), sorted by capture time then id.

        Each record holds every API field except the signed thumbnail URLs; ``captured_at``
        is a timezone-aware UTC ``datetime`` and ``geometry``/``computed_geometry`` are
        ``(lon, lat)`` float tuples. ``pano`` is ``"include"`` (default), ``"only"`` or
        ``"exclude"`` (or True/False). ``progress``: None shows a tqdm bar on a terminal or in
        a notebook when tqdm is installed, True always (if installed), False never, or a
        callable receiving a dict of counters.
        """
        images: List[Record] = self._listing(bbox, since, until, pano, creator, organization, progress, True)["images"]
        return images

    def _listing(
        self,
        bbox: BboxLike,
        since: Optional[DateLike],
        until: Optional[DateLike],
        pano: Union[str, bool, None],
        creator: Optional[str],
        organization: Optional[Union[str, int]],
        progress: ProgressArg,
        typed: bool,
    ) -> Dict[str, Any]:
        argv = flags(
            bbox=bbox_text(bbox),
            since=None if since is None else date_text("since", since),
            until=None if until is None else date_text("until", until),
            pano=pano_text(pano),
            creator=creator,
            organization=organization,
        )
        with Reporter(progress) as rep:
            return self._core.images_in_bbox(argv, typed, rep.callback)

    def download_image(
        self,
        image_id: Union[int, str],
        output_dir: PathLike = "downloads/1",
        size: str = "original",
    ) -> pathlib.Path:
        """Downloads one image into ``output_dir`` as ``<id>.jpg`` with ``<id>.json`` (every
        API field plus what mlyexport adds), atomically; returns the JPEG's path. ``size`` is
        ``256``, ``1024``, ``2048`` or ``original``."""
        return pathlib.Path(self._core.download_image(str(image_id), os.fspath(output_dir), str(size)))


@dataclass
class FetchRun:
    """What :func:`fetch` did: the CLI's summary as Python objects."""

    status: str
    """``success``, or ``partial`` when some images failed or a grid's listing is incomplete."""
    output: pathlib.Path
    dry_run: bool
    counts: Dict[str, Any]
    """listed, downloaded, skipped, failed, failed_by_reason, without_position, bytes, calls..."""
    grids: List[Dict[str, Any]]
    """Per grid: grid, bbox, listing completeness, listed, downloaded, failed, verification..."""
    estimated_bytes: int = 0
    warnings: List[str] = field(default_factory=list)


def fetch(
    *,
    bbox: Optional[BboxLike] = None,
    grid: Optional[str] = None,
    grid_file: Optional[PathLike] = None,
    cell_size: Optional[str] = None,
    aoi: Optional[PathLike] = None,
    aoi_where: Optional[str] = None,
    output: Optional[PathLike] = None,
    size: Optional[str] = None,
    since: Optional[DateLike] = None,
    until: Optional[DateLike] = None,
    pano: Union[str, bool, None] = None,
    creator: Optional[str] = None,
    organization: Optional[Union[str, int]] = None,
    max_images: Optional[int] = None,
    min_spacing: Optional[str] = None,
    position: Optional[str] = None,
    concurrency: Optional[int] = None,
    dry_run: bool = False,
    enumerate: Optional[str] = None,
    tile_budget: Optional[int] = None,
    audit: bool = False,
    token: Optional[str] = None,
    token_file: Optional[PathLike] = None,
    api_url: Optional[str] = None,
    tiles_url: Optional[str] = None,
    search_rate: Optional[int] = None,
    entity_rate: Optional[int] = None,
    timeout: Optional[int] = None,
    retries: Optional[int] = None,
    progress: ProgressArg = None,
) -> FetchRun:
    """``mlyexport fetch`` from Python: lists every grid and downloads the images, resumably.

    Every keyword is the CLI flag of the same name (``grid_file`` is ``--grid-file``); an
    argument left at None takes the CLI's default (``output="downloads"``,
    ``size="original"``, ``concurrency=32``...) and goes through the same checks. Ctrl-C
    raises ``KeyboardInterrupt`` after saving the state: call again to resume. Raises
    :class:`ConfigError` for bad arguments, :class:`TokenError`, :class:`ApiError`,
    :class:`ListingError` or :class:`Error`.
    """
    argv = flags(
        bbox=None if bbox is None else bbox_text(bbox),
        grid=grid,
        grid_file=grid_file,
        cell_size=cell_size,
        aoi=aoi,
        aoi_where=aoi_where,
        output=output,
        size=size,
        since=None if since is None else date_text("since", since),
        until=None if until is None else date_text("until", until),
        pano=pano_text(pano),
        creator=creator,
        organization=organization,
        max_images=max_images,
        min_spacing=min_spacing,
        position=position,
        concurrency=concurrency,
        dry_run=dry_run,
        enumerate=enumerate,
        tile_budget=tile_budget,
        audit=audit,
        token=token,
        token_file=token_file,
        api_url=api_url,
        tiles_url=tiles_url,
        search_rate=search_rate,
        entity_rate=entity_rate,
        timeout=timeout,
        retries=retries,
    )
    argv.append("--quiet")
    with Reporter(progress) as rep:
        r = _core.fetch(argv, rep.callback)
    return FetchRun(
        status=r["status"],
        output=pathlib.Path(r["output"]),
        dry_run=r["dry_run"],
        counts=r["counts"],
        grids=r["grids"],
        estimated_bytes=r["estimated_bytes"],
        warnings=r["warnings"],
    )


@dataclass
class LayersResult:
    """What :func:`layers` did."""

    status: str
    """``success``, or ``partial`` when some files could not be read or tagged."""
    summary: Dict[str, str]
    """The CLI's summary lines (images, drawn, sequences, grid cells, exif counts...)."""
    written: List[pathlib.Path]


def layers(
    *,
    input: PathLike = "downloads",
    formats: Optional[Union[str, Sequence[str]]] = None,
    output: Optional[PathLike] = None,
    exif: bool = True,
    position: Optional[str] = None,
    as_of: Optional[DateLike] = None,
) -> LayersResult:
    """``mlyexport layers`` from Python: GPS EXIF into the JPEGs (unless ``exif=False``), then
    the GIS layers (``formats``: any of ``gpkg``, ``geojson``, ``csv``; default ``gpkg``) and
    the coverage summary into ``output`` (default ``<input>/layers``). Prints nothing."""
    fmt = [formats] if isinstance(formats, str) else formats
    argv = flags(
        input=input,
        format=None if fmt is None else list(fmt),
        output=output,
        no_exif=not exif,
        position=position,
        as_of=None if as_of is None else date_text("as_of", as_of),
    )
    r = _core.layers(argv)
    out = pathlib.Path(output) if output is not None else pathlib.Path(input) / "layers"
    return LayersResult(
        status=r["status"],
        summary=r["summary"],
        written=[out / name for name in r["written"]],
    )


def read_images(
    input: PathLike = "downloads",
    *,
    position: str = "computed",
    geo: Optional[bool] = None,
) -> Any:
    """The images of a folder written by :func:`fetch` (or the old Python tool) as a table.

    A ``geopandas.GeoDataFrame`` (points in EPSG:4326, ``captured_at`` in UTC) when geopandas is
    installed, else a list of dicts; ``geo=False`` forces the list, ``geo=True`` requires
    geopandas. ``position`` chooses the ``computed`` (default) or ``original`` position;
    images without one have no geometry. Files that cannot be read are skipped; their
    messages are in ``.attrs["problems"]`` (GeoDataFrame) or not returned (list).
    """
    cols = _core.read_records(os.fspath(input), position)
    problems: List[str] = cols.pop("problems")
    if geo is not False:
        try:
            import geopandas as gpd  # type: ignore[import-untyped,unused-ignore]
            import pandas as pd  # type: ignore[import-untyped,unused-ignore]
        except ImportError:
            if geo:
                raise
        else:
            return _frame(gpd, pd, cols, problems)
    names = list(cols)
    return [dict(zip(names, row)) for row in zip(*(cols[n] for n in names))]


def _frame(gpd: Any, pd: Any, cols: Dict[str, List[Any]], problems: List[str]) -> Any:
    from shapely.geometry import Point  # type: ignore[import-untyped,unused-ignore]

    geometry = [
        None if lon is None or lat is None else Point(lon, lat) for lon, lat in zip(cols["lon"], cols["lat"])
    ]
    cols["captured_at"] = pd.to_datetime(pd.Series(cols["captured_at"], dtype="object"), utc=True)
    cols["file"] = [None if f is None else os.fspath(f) for f in cols["file"]]
    gdf = gpd.GeoDataFrame(cols, geometry=geometry, crs="EPSG:4326")
    gdf.attrs["problems"] = problems
    return gdf

