"""Where buildings are drawn: footprints in lon/lat, chip centres without footprints, plain coordinates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.chips import ChipStack
from serving.geometry import locate_buildings
from tests.serving.world import CENTRES, IDS, build_world


def _edit_manifest(cache: Path, **changes: object) -> None:
    path = cache / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def test_footprints_are_read_and_reprojected(tmp_path: Path) -> None:
    world = build_world(tmp_path)
    loc = locate_buildings(ChipStack.open(world.cache))
    assert loc.mode == "lonlat" and loc.crs == "EPSG:4326" and loc.note == ""
    assert loc.source == f"footprints {world.footprints}"
    assert set(loc.shapes) == set(IDS) and {g.geom_type for g in loc.shapes.values()} == {"Polygon"}
    lon, lat = loc.points["B000"]
    assert 38.9 < lon < 39.1 and 35.9 < lat < 36.0


def test_a_relative_footprint_path_resolves_against_the_cache_ancestors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = build_world(tmp_path)
    _edit_manifest(world.cache, footprints={"path": world.footprints.name})  # relative to where ingest ran
    monkeypatch.chdir("/")
    assert (
        locate_buildings(ChipStack.open(world.cache)).source
        == f"footprints {tmp_path / world.footprints.name}"
    )


def test_missing_footprints_fall_back_to_chip_centres_and_say_so(tmp_path: Path) -> None:
    world = build_world(tmp_path, footprints=False)
    loc = locate_buildings(ChipStack.open(world.cache))
    assert loc.mode == "lonlat" and loc.source == "chip centres"
    assert "6 of 6 buildings have no footprint" in loc.note and "chip centres" in loc.note
    assert {g.geom_type for g in loc.shapes.values()} == {"Point"}
    assert loc.points["B001"][0] > loc.points["B000"][0]  # east of it, as in UTM


def test_no_georeference_gives_plain_coordinates(tmp_path: Path) -> None:
    world = build_world(tmp_path)
    _edit_manifest(world.cache, crs="")
    loc = locate_buildings(ChipStack.open(world.cache))
    assert loc.mode == "plain" and loc.crs is None and "no usable georeference" in loc.note
    assert loc.points["B000"] == pytest.approx(CENTRES[0])


def test_no_footprints_nor_origins_lay_chips_on_a_grid(tmp_path: Path) -> None:
    world = build_world(tmp_path, footprints=False)
    _edit_manifest(world.cache, chip_origin=None)
    loc = locate_buildings(ChipStack.open(world.cache))
    assert loc.mode == "plain" and "grid in cache order" in loc.note
    assert len(set(loc.points.values())) == len(IDS)


def test_plain_mode_reaches_the_api(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from serving.app import create_app

    world = build_world(tmp_path)
    _edit_manifest(world.cache, crs="")
    with TestClient(create_app(world.settings)) as client:
        body = client.get("/api/buildings").json()
    assert body["coordinates"] == "plain" and "not on a map of the Earth" in body["note"]
    assert body["features"][0]["geometry"]["coordinates"] == pytest.approx(list(CENTRES[0]))
