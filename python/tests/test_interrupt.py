"""Ctrl-C: KeyboardInterrupt within a second, the folder resumable; the GIL is released."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import threading
import time

import mlyexport as mly
from conftest import DEMO_BBOX

CHILD = textwrap.dedent(
    """
    import sys, time
    import mlyexport as mly
    said = False
    def progress(snap):
        global said
        if not said and snap["downloaded"] >= 20:
            said = True
            print("downloading", flush=True)
    try:
        mly.fetch(bbox=sys.argv[1], size="256", output=sys.argv[2], concurrency=4, progress=progress)
    except KeyboardInterrupt:
        print("interrupted", time.monotonic(), flush=True)
        sys.exit(130)
    print("finished", flush=True)
    """
)


def test_ctrl_c_raises_keyboard_interrupt_and_resumes(slow_sim, sim, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "downloads"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, **slow_sim.env()}
    child = subprocess.Popen(
        [sys.executable, str(script), DEMO_BBOX, str(out)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    line = child.stdout.readline().strip()
    assert line == "downloading", (line, child.stderr.read() if child.stderr else "")
    sent = time.monotonic()
    child.send_signal(signal.SIGINT)
    line = child.stdout.readline().split()
    assert line and line[0] == "interrupted", line
    assert float(line[1]) - sent < 1.0, f"KeyboardInterrupt after {float(line[1]) - sent:.2f} s"
    assert child.wait(timeout=15) == 130
    record = json.loads((out / "mlyexport-run.json").read_text())
    assert record["runs"][-1]["outcome"] == "interrupted"
    assert not [p for p in out.rglob("*") if p.name.startswith(".mlyexport-tmp-")]

    # The same world served fast: the next call resumes and finishes.
    for k, v in sim.env().items():
        os.environ[k] = v
    before = len(list(out.glob("*/*.jpg")))
    assert before >= 20
    run = mly.fetch(bbox=DEMO_BBOX, size="256", output=out, progress=False)
    assert run.status == "success"
    assert run.counts["skipped"] == before
    assert run.counts["downloaded"] + run.counts["skipped"] == run.counts["listed"]


def test_the_gil_is_released_during_a_listing(env) -> None:
    done = threading.Event()
    client = mly.Client()

    def work() -> None:
        client.images_in_bbox(DEMO_BBOX, progress=False)
        done.set()

    t = threading.Thread(target=work)
    t.start()
    ticks = 0
    while not done.is_set():
        ticks += 1
    t.join()
    assert ticks > 10_000, f"the main thread ran only {ticks} loops while the listing ran"
