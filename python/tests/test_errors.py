"""The exception hierarchy and the CLI's validation messages."""

from __future__ import annotations

import datetime as dt
import pathlib

import pytest

import mlyexport as mly


def test_hierarchy() -> None:
    for cls in (mly.TokenError, mly.ApiError, mly.ListingError, mly.ConfigError):
        assert issubclass(cls, mly.Error)
    assert issubclass(mly.Error, Exception)
    assert issubclass(mly.ConfigError, ValueError)


def test_no_token_is_a_token_error(env, monkeypatch) -> None:
    monkeypatch.delenv("MAPILLARY_TOKEN")
    with pytest.raises(mly.TokenError, match="MAPILLARY_TOKEN"):
        mly.Client()


def test_dotenv_token_is_read(env, monkeypatch, tmp_path: pathlib.Path) -> None:
    token = env.env()["MAPILLARY_TOKEN"]
    monkeypatch.delenv("MAPILLARY_TOKEN")
    (tmp_path / ".env").write_text(f"MAPILLARY_TOKEN={token}\n")
    assert mly.Client().images_in_bbox("8.52,47.36,8.521,47.361", progress=False) is not None


def test_refused_token_is_a_token_error_without_the_token(env) -> None:
    bad = "MLY|1|ffffffffffffffffffffffffffffffff"
    with pytest.raises(mly.TokenError) as e:
        mly.Client(token=bad).images_in_bbox("8.52,47.36,8.53,47.37", progress=False)
    assert bad not in str(e.value) and "ffffffff" not in repr(e.value)


def test_bad_arguments_name_the_value(env) -> None:
    c = mly.Client()
    with pytest.raises(mly.ConfigError, match="yesterday"):
        c.images_in_bbox("8.52,47.36,8.53,47.37", since="yesterday")
    with pytest.raises(mly.ConfigError, match="after"):
        c.images_in_bbox("8.52,47.36,8.53,47.37", since="2024-01-01", until="2023-01-01")
    with pytest.raises(mly.ConfigError, match="naive"):
        c.images_in_bbox("8.52,47.36,8.53,47.37", since=dt.datetime(2024, 1, 1))
    with pytest.raises(mly.ConfigError, match="8.53,47.36,8.52,47.37|min"):
        c.images_in_bbox("8.53,47.36,8.52,47.37")
    with pytest.raises(mly.ConfigError, match="huge"):
        c.download_image(1, "x", size="huge")
    with pytest.raises(mly.ConfigError, match="concurrency"):
        mly.fetch(bbox="8.52,47.36,8.53,47.37", concurrency=0, progress=False)
    with pytest.raises(mly.ConfigError, match="pano|sometimes"):
        mly.fetch(bbox="8.52,47.36,8.53,47.37", pano="sometimes", progress=False)


def test_unknown_image_is_an_api_error(env) -> None:
    with pytest.raises(mly.ApiError, match="not found"):
        mly.Client().download_image(999999999999, "x")


def test_layers_on_a_missing_folder(env) -> None:
    with pytest.raises(mly.Error, match="does not exist"):
        mly.layers(input="nowhere")


def test_client_repr_hides_the_token(env) -> None:
    assert "4242" not in repr(mly.Client(token=env.env()["MAPILLARY_TOKEN"]))
