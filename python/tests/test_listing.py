"""`Client.images_in_bbox`: the complete, verified listing as typed records."""

from __future__ import annotations

import datetime as dt

import pytest

import mlyexport as mly
from conftest import DEMO_BBOX


def test_listing_goes_beyond_the_cap(env) -> None:
    images = mly.Client().images_in_bbox(DEMO_BBOX, progress=False)
    truth = set(env.ground_truth(DEMO_BBOX))
    ids = {r["id"] for r in images}
    assert len(truth) > 2000, "the demo world must exceed one search's cap"
    assert truth <= ids, f"{len(truth - ids)} images of the ground truth were not listed"
    assert len(ids) == len(images), "an image was listed twice"


def test_records_are_typed_and_have_no_signed_url(env) -> None:
    images = mly.Client().images_in_bbox("8.52,47.36,8.53,47.37", progress=False)
    assert images
    times = [r["captured_at"] for r in images if "captured_at" in r]
    assert times == sorted(times)
    for r in images:
        assert not any(k.startswith("thumb_") for k in r), r.keys()
        assert isinstance(r["id"], str)
        t = r.get("captured_at")
        if t is not None:
            assert isinstance(t, dt.datetime) and t.tzinfo is not None
            assert t.utcoffset() == dt.timedelta(0)
        g = r.get("geometry")
        if g is not None:
            lon, lat = g
            assert isinstance(lon, float) and isinstance(lat, float)
            assert 8.519 <= lon <= 8.531 and 47.359 <= lat <= 47.371


def test_filters_match_the_cli(env) -> None:
    c = mly.Client()
    everything = c.images_in_bbox("8.52,47.36,8.53,47.37", progress=False)
    panos = c.images_in_bbox("8.52,47.36,8.53,47.37", pano="only", progress=False)
    flat = c.images_in_bbox("8.52,47.36,8.53,47.37", pano=False, progress=False)
    assert all(r.get("is_pano") is True for r in panos)
    assert len(panos) + len(flat) == len(everything)
    since = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    recent = c.images_in_bbox("8.52,47.36,8.53,47.37", since=since, progress=False)
    assert all(r["captured_at"] >= since for r in recent)
    assert {r["id"] for r in recent} == {r["id"] for r in everything if r["captured_at"] >= since}


def test_progress_callback_gets_counters(env, capfd) -> None:
    seen = []
    mly.Client().images_in_bbox([8.52, 47.36, 8.53, 47.37], progress=seen.append)
    assert seen and seen[-1]["listed"] > 0
    assert {"phase", "grids_total", "grids_listed", "listed"} <= set(seen[-1])
    out, err = capfd.readouterr()
    assert out == "" and err == "", "nothing prints unless asked"
