"""Footprint loading: GeoJSON, GeoPackage, Shapefile, polygons or points, reprojected; bad features rejected."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pytest
import shapely

from model.buildings import load_footprints, read_footprints
from model.errors import FootprintError, IngestWarning
from tests.model.conftest import UTM, X0, Y0, square, write_footprints


@pytest.mark.parametrize("suffix", [".gpkg", ".geojson", ".shp"])
def test_polygons_from_every_format(tmp_path: Path, suffix: str) -> None:
    geoms = [square(X0 + 10, Y0 - 10, 4), square(X0 + 40, Y0 - 40, 6)]
    path = write_footprints(tmp_path / f"fp{suffix}", ["A", "B"], geoms)
    buildings = load_footprints(path, UTM)
    assert [b.id for b in buildings] == ["A", "B"]
    assert buildings[1].footprint.area == pytest.approx(144.0)
    assert buildings[0].attributes["grade"] == "x"


def test_reprojected_to_the_working_crs(tmp_path: Path) -> None:
    utm = gpd.GeoSeries([square(X0 + 10, Y0 - 10, 5)], crs=UTM)
    path = write_footprints(tmp_path / "fp.geojson", ["A"], list(utm.to_crs("EPSG:4326")), crs="EPSG:4326")
    (building,) = load_footprints(path, UTM)
    assert building.footprint.centroid.distance(shapely.Point(X0 + 10, Y0 - 10)) < 0.01
    assert building.footprint.area == pytest.approx(100.0, rel=1e-3)


def test_points_become_squares(tmp_path: Path) -> None:
    path = write_footprints(
        tmp_path / "pts.gpkg", ["P1", "P2"], [shapely.Point(X0, Y0), shapely.Point(X0 + 5, Y0)]
    )
    buildings = load_footprints(path, UTM, point_size_m=12.0)
    assert buildings[0].footprint.bounds == pytest.approx((X0 - 6, Y0 - 6, X0 + 6, Y0 + 6))
    assert all(b.footprint.area == pytest.approx(144.0) for b in buildings)


def test_duplicate_ids_keep_the_first_and_are_reported(tmp_path: Path) -> None:
    geoms = [square(X0 + i * 10, Y0 - 10, 3) for i in range(5)]
    path = write_footprints(tmp_path / "fp.gpkg", ["A", "B", "A", "C", "B"], geoms)
    buildings, problems = read_footprints(path, UTM)
    assert [b.id for b in buildings] == ["A", "B", "C"]
    assert buildings[0].footprint.centroid.x == pytest.approx(X0)
    assert [(p.kind, p.subject) for p in problems] == [("duplicate_id", "A"), ("duplicate_id", "B")]
    with pytest.warns(IngestWarning, match=r"fp\.gpkg: 2 buildings repeat an id .*\(ids A, B\); give each"):
        load_footprints(path, UTM)


def test_missing_ids_and_lines_rejected(tmp_path: Path) -> None:
    geoms = [square(X0, Y0, 3), shapely.LineString([(X0, Y0), (X0 + 5, Y0)]), square(X0 + 9, Y0, 3)]
    frame = gpd.GeoDataFrame({"id": ["A", "L", None]}, geometry=geoms, crs=UTM)
    frame.to_file(tmp_path / "fp.gpkg", layer="buildings")
    buildings, problems = read_footprints(tmp_path / "fp.gpkg", UTM)
    assert [b.id for b in buildings] == ["A"]
    assert sorted((p.kind, p.subject) for p in problems) == [
        ("bad_geometry", "L"),
        ("missing_id", "feature 3"),
    ]


def test_without_id_column_rows_are_numbered(tmp_path: Path) -> None:
    frame = gpd.GeoDataFrame(
        {"name": ["x", "y"]}, geometry=[square(X0, Y0, 2), square(X0 + 9, Y0, 2)], crs=UTM
    )
    frame.to_file(tmp_path / "fp.geojson", driver="GeoJSON")
    assert [b.id for b in load_footprints(tmp_path / "fp.geojson", UTM)] == ["0", "1"]
    named = load_footprints(tmp_path / "fp.geojson", UTM, id_column="name")
    assert [b.id for b in named] == ["x", "y"]
    with pytest.raises(FootprintError, match="no column 'nope'"):
        load_footprints(tmp_path / "fp.geojson", UTM, id_column="nope")


def test_empty_footprint_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.geojson"
    path.write_text('{"type": "FeatureCollection", "features": []}')
    with pytest.raises(FootprintError, match=r"empty\.geojson: the footprint file holds no features"):
        load_footprints(path, UTM)


def test_unreadable_or_missing_file(tmp_path: Path) -> None:
    (tmp_path / "bad.gpkg").write_bytes(b"not a geopackage")
    with pytest.raises(FootprintError, match=r"bad\.gpkg: cannot read the footprints"):
        load_footprints(tmp_path / "bad.gpkg", UTM)
    with pytest.raises(FootprintError, match="does not exist"):
        load_footprints(tmp_path / "nope.gpkg", UTM)
