"""The chip endpoint serves PNGs from a real chip cache with the outline and date burned in."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from active_learning.settings import Settings
from serving.app import create_app
from serving.chip_render import OUTLINE_RGB
from tests.labeling.chip_cache import write_chip_cache


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    write_chip_cache(tmp_path / "chips", n_buildings=3, n_dates=4, size=16)
    return TestClient(create_app(Settings(work_dir=tmp_path)))


def _png(response) -> np.ndarray:  # type: ignore[no-untyped-def]
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))


def test_chip_is_upscaled_with_outline_and_date_band(client: TestClient) -> None:
    image = _png(client.get("/chips/B000/0.png"))
    assert image.shape == (192, 192, 3)  # 16 px upscaled 12x
    outline = np.all(image == OUTLINE_RGB, axis=-1)
    # the outline follows the footprint square (rows/cols 4..11 of 16 -> 48..143 upscaled)
    assert outline[48:144, 48].all() and outline[48, 48:144].all()
    assert not outline[:40].any() and not outline[150:].any()
    band = image[:18]
    assert (band == 0).mean() > 0.5 and (band == 255).any()  # black band with white date text


def test_date_changes_the_burned_in_text_and_pixels(client: TestClient) -> None:
    first = _png(client.get("/chips/B000/0.png"))
    later = _png(client.get("/chips/B000/3.png"))
    assert not np.array_equal(first[:18], later[:18])  # different date written
    assert first[96, 96].mean() > later[96, 96].mean()  # roof bright, rubble dark


def test_unknown_building_and_date_are_404(client: TestClient) -> None:
    assert client.get("/chips/NOPE/0.png").status_code == 404
    assert client.get("/chips/B000/4.png").status_code == 404
    assert client.get("/chips/B000/-1.png").status_code == 404
    assert client.get("/chips/B000/x.png").status_code == 422


def test_missing_cache_is_503_without_details(tmp_path: Path) -> None:
    app = create_app(Settings(work_dir=tmp_path))
    response = TestClient(app).get("/chips/B000/0.png")
    assert response.status_code == 503
    assert str(tmp_path) not in response.text
