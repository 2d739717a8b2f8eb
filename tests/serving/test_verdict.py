"""``POST /api/buildings/{id}/verdict``: a researcher's verdict becomes gold; bad verdicts change nothing."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from active_learning.aggregation import GapDawidSkene
from active_learning.posterior import Status
from active_learning.schema import State
from active_learning.store import Store
from tests.serving.world import DATES, N_DATES, World


def _stored(store: Store) -> tuple[int, int, int, int]:
    """Annotations, quarantined, posterior versions, decisions: what a refused verdict must not change."""
    history = sum(len(store.posterior_history(b)) for b in store.building_dates())
    return (
        len(store.annotations(include_retracted=True)),
        len(store.quarantine()),
        history,
        len(store.decisions()),
    )


def test_verdict_is_stored_as_gold_and_moves_the_building(
    client: TestClient, world: World, auth: dict[str, str]
) -> None:
    r = client.post(
        "/api/buildings/B001/verdict",
        json={"gap": 3, "reviewer": "ana", "note": "crater visible"},
        headers=auth,
    )
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["status"] == "expert" and out["map_gap"] == 3 and out["posterior_version"] == 2
    assert (
        out["external_id"].startswith("expert:")
        and "ana" in out["reason"]
        and "crater visible" in out["reason"]
    )

    (gold,) = [a for a in world.store.annotations() if a.source == "expert"]
    assert gold.building_id == "B001" and gold.external_id == out["external_id"]
    assert gold.volunteer_id == "expert-ana"
    assert gold.states == (State.INTACT,) * 3 + (State.DESTROYED,) * 2
    latest = world.store.latest_posteriors()["B001"]
    assert latest.status == Status.EXPERT and latest.map_gap == 3 and latest.confidence == pytest.approx(1.0)
    assert latest.interval == (DATES[2], DATES[3])
    assert latest.n_reviews == 5  # the volunteers' reviews are kept as evidence, not replaced
    decision = world.store.decisions("B001")[-1]
    assert decision.status == Status.EXPERT and decision.n_consistent == 1  # only v-d said gap 3

    feature = client.get("/api/buildings", params={"status": "expert"}).json()["features"]
    assert [f["id"] for f in feature] == ["B001"]
    assert "B001" not in [q["building_id"] for q in client.get("/api/queue").json()["items"]]

    # the next aggregation takes the verdict as gold: the building is clamped to the verdict's gap
    table = world.store.annotations_table()
    fit = GapDawidSkene().fit(table, N_DATES, building_ids=list(world.store.building_dates()))
    row = fit.index_of(["B001"])[0]
    assert bool(fit.gold_[row]) and int(fit.map_gap_[row]) == 3


@pytest.mark.parametrize(
    ("body", "gap", "states"),
    [
        ({"first_damaged_date": DATES[1].isoformat(), "grade": "damaged"}, 1, "iDDDD"),
        ({"not_damaged": True}, N_DATES, "iiiii"),
        ({"gap": 0}, 0, "XXXXX"),
        ({"gap": 2, "not_visible": [1, 2]}, 2, "i??XX"),
    ],
)
def test_verdict_forms(
    client: TestClient, world: World, auth: dict[str, str], body: dict[str, object], gap: int, states: str
) -> None:
    r = client.post("/api/buildings/B002/verdict", json=body, headers=auth)
    assert r.status_code == 201, r.text
    code = {"i": State.INTACT, "D": State.DAMAGED, "X": State.DESTROYED, "?": State.NOT_VISIBLE}
    (gold,) = [a for a in world.store.annotations() if a.source == "expert"]
    assert gold.states == tuple(code[c] for c in states)
    latest = world.store.latest_posteriors()["B002"]
    if "not_visible" in body:
        # dates 1 and 2 unjudged: gaps 1, 2, 3 stay possible, in the proportions of the earlier posterior
        assert [round(p, 3) for p in latest.probs] == pytest.approx(
            [0, 0.6 / 0.76, 0.08 / 0.76, 0.08 / 0.76, 0, 0], abs=1e-3
        )
        assert latest.map_gap == 1
    else:
        assert latest.map_gap == gap and latest.confidence == pytest.approx(1.0)


def test_a_new_verdict_supersedes_the_earlier_one(
    client: TestClient, world: World, auth: dict[str, str]
) -> None:
    first = client.post("/api/buildings/B001/verdict", json={"gap": 3}, headers=auth).json()
    second = client.post("/api/buildings/B001/verdict", json={"gap": 4}, headers=auth).json()
    assert second["superseded"] == [first["external_id"]]
    live = [a for a in world.store.annotations() if a.source == "expert"]
    assert [a.external_id for a in live] == [second["external_id"]]
    everything = [
        a.external_id for a in world.store.annotations(include_retracted=True) if a.source == "expert"
    ]
    assert everything == [first["external_id"], second["external_id"]]  # the first is kept, retracted
    detail = client.get("/api/buildings/B001").json()
    retracted = [a for a in detail["annotations"] if a["retracted"]]
    assert [a["external_id"] for a in retracted] == [first["external_id"]]
    assert second["external_id"] in retracted[0]["retracted_reason"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"gap": N_DATES + 1}, "gap"),
        ({"gap": -1}, "gap"),
        ({"gap": "three"}, "gap"),
        ({"first_damaged_date": "2017-03-06"}, "first_damaged_date"),
        ({"first_damaged_date": "not a date"}, "first_damaged_date"),
        ({"gap": 2, "not_visible": [N_DATES]}, "not_visible"),
        ({"gap": 2, "not_visible": list(range(N_DATES))}, "not_visible"),
        ({"gap": 2, "grade": "vaporised"}, "grade"),
        ({"gap": 2, "reviewer": "Ana Smith <ana@example.org>"}, "reviewer"),
        ({"gap": 2, "note": "x" * 2001}, "note"),
        ({"gap": 2, "colour": "red"}, "colour"),
    ],
)
def test_bad_verdict_is_422_naming_the_field_and_stores_nothing(
    client: TestClient, world: World, auth: dict[str, str], body: dict[str, object], field: str
) -> None:
    before = _stored(world.store)
    r = client.post("/api/buildings/B001/verdict", json=body, headers=auth)
    assert r.status_code == 422, r.text
    assert [d["loc"][:2] for d in r.json()["detail"]] == [["body", field]]
    assert _stored(world.store) == before


@pytest.mark.parametrize(
    "body", [{}, {"gap": 1, "not_damaged": True}, {"gap": 1, "first_damaged_date": "2017-02-03"}]
)
def test_verdict_needs_exactly_one_answer(
    client: TestClient, world: World, auth: dict[str, str], body: dict[str, object]
) -> None:
    before = _stored(world.store)
    r = client.post("/api/buildings/B001/verdict", json=body, headers=auth)
    assert r.status_code == 422 and "exactly one of" in r.json()["detail"][0]["msg"]
    assert _stored(world.store) == before


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b""])
def test_malformed_body_is_422(
    client: TestClient, world: World, auth: dict[str, str], content: bytes
) -> None:
    before = _stored(world.store)
    r = client.post(
        "/api/buildings/B001/verdict", content=content, headers={**auth, "Content-Type": "application/json"}
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][0] == "body"
    assert _stored(world.store) == before


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic dGVzdDp0ZXN0"},
        {"Authorization": "Bearer"},
    ],
)
def test_missing_or_wrong_token_is_401_and_stores_nothing(
    client: TestClient, world: World, headers: dict[str, str]
) -> None:
    before = _stored(world.store)
    r = client.post("/api/buildings/B001/verdict", json={"gap": 3}, headers=headers)
    assert r.status_code == 401 and r.json() == {"detail": "missing or invalid bearer token"}
    assert r.headers["www-authenticate"] == "Bearer"
    assert _stored(world.store) == before


def test_unknown_building_verdict_is_404(client: TestClient, world: World, auth: dict[str, str]) -> None:
    before = _stored(world.store)
    r = client.post("/api/buildings/NOPE/verdict", json={"gap": 3}, headers=auth)
    assert r.status_code == 404 and r.json() == {"detail": "unknown building"}
    assert _stored(world.store) == before


def test_oversized_bodies_are_413_before_being_read(
    client: TestClient, world: World, auth: dict[str, str]
) -> None:
    before = _stored(world.store)
    limit = world.settings.max_request_bytes
    big = {"gap": 3, "note": "x" * (limit + 10)}
    r = client.post("/api/buildings/B001/verdict", json=big, headers=auth)
    assert r.status_code == 413 and r.json() == {"detail": "request body too large"}

    def chunks():  # no Content-Length: the limit is enforced while reading
        yield b'{"gap": 3, "note": "'
        for _ in range(limit // 1000 + 2):
            yield b"y" * 1000
        yield b'"}'

    r = client.post(
        "/api/buildings/B001/verdict", content=chunks(), headers={**auth, "Content-Type": "application/json"}
    )
    assert r.status_code == 413
    assert client.post("/webhooks/labelstudio", content=b"x" * (limit + 1)).status_code == 413
    assert _stored(world.store) == before
