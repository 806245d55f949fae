"""Keyword arguments to ``mlyexport`` CLI flags, so Python gets the CLI's defaults and checks."""

from __future__ import annotations

import datetime as _dt
import os
from typing import Any, List, Optional, Sequence, Union

from ._errors import ConfigError

BboxLike = Union[str, Sequence[float]]
DateLike = Union[str, _dt.date, _dt.datetime]


def bbox_text(bbox: BboxLike) -> str:
    """``"w,s,e,n"`` from a string or a sequence of four numbers (lon, lat order)."""
    if isinstance(bbox, str):
        return bbox
    try:
        values = [float(v) for v in bbox]
    except (TypeError, ValueError):
        raise ConfigError(
            f"bbox {bbox!r} must be 'min_lon,min_lat,max_lon,max_lat' or four numbers"
        ) from None
    if len(values) != 4:
        raise ConfigError(f"bbox {bbox!r} must have four numbers: min_lon, min_lat, max_lon, max_lat")
    return ",".join(repr(v) for v in values)


def date_text(name: str, value: DateLike) -> str:
    """A date or timezone-aware datetime as the CLI's ``--since``/``--until`` text."""
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ConfigError(
                f"{name}={value!r} is a naive datetime; give it a timezone (e.g. tzinfo=datetime.timezone.utc)"
            )
        utc = value.astimezone(_dt.timezone.utc)
        return utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, _dt.date):
        return value.isoformat()
    return str(value)


def pano_text(value: Union[str, bool, None]) -> Optional[str]:
    """``pano=True`` is ``only``, ``False`` is ``exclude``; strings pass through."""
    if value is True:
        return "only"
    if value is False:
        return "exclude"
    return value


def flags(**kwargs: Any) -> List[str]:
    """``--name=value`` per keyword (underscores become dashes); None is left out so the
    CLI default applies, True is a bare flag, False is left out, lists are comma-joined."""
    out: List[str] = []
    for name, value in kwargs.items():
        flag = "--" + name.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            out.append(flag)
        elif isinstance(value, (list, tuple)):
            out.append(f"{flag}={','.join(str(v) for v in value)}")
        elif isinstance(value, os.PathLike):
            out.append(f"{flag}={os.fspath(value)}")
        else:
            out.append(f"{flag}={value}")
    return out
