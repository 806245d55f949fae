"""Progress reporting: a tqdm bar (terminal or notebook), a callback, or nothing."""

from __future__ import annotations

import sys
from typing import Any, Callable, Dict, Optional, Union

Snapshot = Dict[str, Any]
ProgressArg = Union[bool, None, Callable[[Snapshot], Any]]


def _interactive() -> bool:
    try:
        from IPython import get_ipython  # type: ignore[import-not-found]

        if get_ipython() is not None:
            return True
    except ImportError:
        pass
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


class _Bar:
    """Turns the engine's counters into a tqdm bar per phase."""

    def __init__(self, tqdm: Any) -> None:
        self._tqdm = tqdm
        self._bar: Any = None
        self._phase = ""

    def __call__(self, snap: Snapshot) -> None:
        phase = snap.get("phase", "listing")
        if phase == "downloading":
            total, n = snap["to_download"], snap["downloaded"] + snap["skipped"] + snap["failed"]
            unit = "img"
        else:
            total, n = snap.get("grids_total") or None, snap.get("grids_listed", 0)
            unit = "grid"
        if phase != self._phase and phase != "done":
            self.close()
            self._bar = self._tqdm(total=total, desc=phase, unit=unit, leave=False)
            self._phase = phase
        if self._bar is None:
            return
        if total and self._bar.total != total:
            self._bar.total = total
        self._bar.n = n
        self._bar.set_postfix(listed=snap.get("listed", 0), refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class Reporter:
    """What a long call reports to; use as a context manager."""

    def __init__(self, progress: ProgressArg) -> None:
        self.callback: Optional[Callable[[Snapshot], Any]] = None
        self._bar: Optional[_Bar] = None
        if callable(progress):
            self.callback = progress
        elif progress is True or (progress is None and _interactive()):
            try:
                from tqdm.auto import tqdm  # type: ignore[import-untyped,unused-ignore]
            except ImportError:
                return
            self._bar = _Bar(tqdm)
            self.callback = self._bar

    def __enter__(self) -> "Reporter":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
