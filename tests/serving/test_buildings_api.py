"""``GET /api/buildings`` and ``GET /api/buildings/{id}``: the dated buildings and one building's evidence."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from tests.serving.world import DATES, World


def _ids(response) -> list[str]:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.text
    return [f["id"] for f in response.json()["features"]]


def test_geojson_lists_every_dated_building_with_its_properties(client: TestClient) -> None:
    r = client.get("/api/buildings")
    assert r.headers["content-type"] == "application/geo+json"
    body = r.json()
    assert body["type"] == "FeatureCollection" and body["coordinates"] == "lonlat" and body["count"] == 5
    features = {f["id"]: f for f in body["features"]}
    assert set(features) == {"B000", "B001", "B002", "B003", "B004"}  # B005 has no posterior yet
    b000 = features["B000"]
    lon, lat = b000["geometry"]["coordinates"]
    assert 38.9 < lon < 39.1 and 35.9 < lat < 36.0  # Raqqa, reprojected from UTM 37N
    p = b000["properties"]
    assert (p["status"], p["map_gap"], p["reviews"], p["flags"]) == ("settled", 3, 3, [])
    assert (p["last_intact_date"], p["first_damaged_date"]) == (DATES[2].isoformat(), DATES[3].isoformat())
    assert (p["earliest_date"], p["latest_date"]) == (DATES[2].isoformat(), DATES[3].isoformat())
    assert p["confidence"] == pytest.approx(0.96) and p["detail_url"] == "/api/buildings/B000"
    assert features["B002"]["properties"]["model_version"] == "striketracker-dating/1"
    not_damaged = features["B003"]["properties"]
    assert not_damaged["map_gap"] == 5 and not_damaged["first_damaged_date"] is None


def test_footprints_are_polygons_in_lonlat(client: TestClient) -> None:
    features = client.get("/api/buildings", params={"geometry": "footprint"}).json()["features"]
    assert {f["geometry"]["type"] for f in features} == {"Polygon"}
    ring = features[0]["geometry"]["coordinates"][0]
    lons = [x for x, _ in ring]
    assert 0 < max(lons) - min(lons) < 0.001  # an 8 m square


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "contested"}, ["B001"]),
        ({"status": ["settled", "unlabelled"]}, ["B000", "B003", "B004"]),
        ({"flag": "model_conflict"}, ["B002"]),
        ({"flag": "any"}, ["B001", "B002", "B004"]),
        # possibly destroyed in the range: the 90% runs of B001 (all gaps) and B002 (gaps 0..4) are wide
        ({"after": DATES[3].isoformat()}, ["B000", "B001", "B002", "B003"]),
        ({"before": DATES[0].isoformat()}, ["B001", "B002", "B004"]),
        ({"after": DATES[1].isoformat(), "before": DATES[2].isoformat()}, ["B001", "B002", "B003"]),
        ({"status": "settled", "flag": "low_reliability"}, ["B004"]),
    ],
)
def test_filters(client: TestClient, params: dict[str, object], expected: list[str]) -> None:
    assert _ids(client.get("/api/buildings", params=params)) == expected


def test_bbox_keeps_the_buildings_inside(client: TestClient) -> None:
    lon, lat = client.get("/api/buildings").json()["features"][0]["geometry"]["coordinates"]
    box = f"{lon - 1e-5},{lat - 1e-5},{lon + 1e-5},{lat + 1e-5}"
    assert _ids(client.get("/api/buildings", params={"bbox": box})) == ["B000"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"bbox": "1,2,3"}, "bbox"),
        ({"bbox": "5,0,1,1"}, "bbox"),
        ({"bbox": "a,b,c,d"}, "bbox"),
        ({"status": "destroyed"}, "status"),
        ({"flag": "angry"}, "flag"),
        ({"after": "2017-13-01"}, "after"),
        ({"after": "2017-05-01", "before": "2017-04-01"}, "after"),
        ({"geometry": "hexagon"}, "geometry"),
    ],
)
def test_bad_query_is_422_naming_the_field(client: TestClient, params: dict[str, str], field: str) -> None:
    r = client.get("/api/buildings", params=params)
    assert r.status_code == 422
    assert [d["loc"][:2] for d in r.json()["detail"]] == [["query", field]]
    assert "input" not in json.dumps(r.json())


def test_detail_carries_every_piece_of_evidence(client: TestClient) -> None:
    r = client.get("/api/buildings/B000")
    assert r.status_code == 200
    d = r.json()
    assert d["dates"] == [x.isoformat() for x in DATES]
    assert d["properties"]["status"] == "settled" and d["geometry"]["type"] == "Polygon"
    post = d["posterior"]
    assert post["version"] == 1 and post["map_gap"] == 3 and post["aggregator"] == "hand-written"
    assert sum(g["probability"] for g in post["gaps"]) == pytest.approx(1.0)
    assert post["gaps"][3]["last_intact_date"] == DATES[2].isoformat()
    answers = {a["volunteer_id"]: a for a in d["annotations"]}
    assert set(answers) == {"v-a", "v-b", "v-c"}
    assert answers["v-a"]["states"] == ["intact", "intact", "intact", "destroyed", "destroyed"]
    assert answers["v-a"]["admitted_gaps"] == [3] and answers["v-a"]["agrees_with_map"] is True
    assert answers["v-c"]["agrees_with_map"] is False
    assert answers["v-a"]["external_id"] == "sim:B000:v-a" and not answers["v-a"]["retracted"]
    (decision,) = d["decisions"]
    assert decision["status"] == "settled" and decision["round_id"] == 1 and decision["reason"]
    assert [c["url"] for c in d["chips"]] == [f"/chips/B000/{t}.png" for t in range(5)]
    assert d["chips"][2]["image_sha256"] == "02" + "ab" * 31
    assert d["chip_cache_fingerprint"] == "world-fingerprint-0001"
    assert client.get(d["chips"][4]["url"]).headers["content-type"] == "image/png"


def test_registered_building_without_posterior_has_empty_evidence(client: TestClient) -> None:
    d = client.get("/api/buildings/B005").json()
    assert d["posterior"] is None and d["properties"] is None and d["annotations"] == []
    assert len(d["chips"]) == 5


def test_unknown_building_is_404_without_echo(client: TestClient, world: World) -> None:
    r = client.get("/api/buildings/NOPE-1234")
    assert r.status_code == 404 and r.json() == {"detail": "unknown building"}
    assert client.get("/api/buildings/" + "x" * 200).status_code == 422


def test_buildings_without_chip_cache_have_no_geometry(world: World) -> None:
    from serving.app import create_app

    settings = world.settings.model_copy(update={"chip_cache": world.cache.parent / "nowhere"})
    with TestClient(create_app(settings)) as client:
        body = client.get("/api/buildings").json()
        assert body["coordinates"] == "none" and {f["geometry"] for f in body["features"]} == {None}
        detail = client.get("/api/buildings/B000").json()
        assert detail["chips"] == [] and len(detail["dates"]) == 5  # dates from the store
