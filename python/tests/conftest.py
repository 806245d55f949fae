"""Fixtures: the Mapillary API simulator `mlysim` started as a subprocess (loopback only)."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
from typing import Dict, Iterator, List

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOKEN = "MLY|4242|0123456789abcdef0123456789abcdef"
# The demo world's area (2,600 images, more than one search's 2,000 cap).
DEMO_BBOX = "8.50,47.35,8.56,47.39"


def binary(name: str) -> pathlib.Path:
    """`target/<profile>/<name>`: MLYEXPORT_PROFILE's, else the newest build."""
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    profile = os.environ.get("MLYEXPORT_PROFILE")
    found = [target / p / name for p in ([profile] if profile else ["release", "debug"])]
    found = [p for p in found if p.exists()]
    if not found:
        pytest.fail(f"{name} is not built: run `cargo build --bins` (or scripts/python-setup.sh) first")
    return max(found, key=lambda p: p.stat().st_mtime)


class Sim:
    """A running simulator: its URLs and process."""

    def __init__(self, args: List[str]) -> None:
        self.proc = subprocess.Popen(
            [str(binary("mlysim")), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        urls: Dict[str, str] = {}
        assert self.proc.stdout is not None
        while len(urls) < 3:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"mlysim {args} exited before printing its URLs")
            key, _, value = line.strip().partition("=")
            urls[key] = value
        self.graph_url = urls["graph_url"]
        self.tiles_url = urls["tiles_url"]

    def env(self) -> Dict[str, str]:
        return {
            "MAPILLARY_TOKEN": TOKEN,
            "MLYEXPORT_API_URL": self.graph_url,
            "MLYEXPORT_TILES_URL": self.tiles_url,
            "MLYEXPORT_TEST_NO_RETRY_DELAY": "1",
        }

    def ground_truth(self, bbox: str) -> List[str]:
        out = subprocess.run(
            [str(binary("mlysim")), "--world", "demo", "--ground-truth", bbox],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return [line.strip() for line in out.splitlines() if line.strip()]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="session")
def sim() -> Iterator[Sim]:
    s = Sim(["--world", "demo"])
    yield s
    s.stop()


@pytest.fixture(scope="session")
def slow_sim() -> Iterator[Sim]:
    """The demo world answering slowly, so a fetch is still running when interrupted."""
    s = Sim(["--world", "demo", "--latency-ms", "150"])
    yield s
    s.stop()


@pytest.fixture
def env(sim: Sim, monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> Sim:
    """The simulator's URLs and token in the environment; the current folder a fresh one."""
    for k, v in sim.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    return sim
