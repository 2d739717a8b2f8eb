"""``/api/queue``, ``/api/campaign``, ``/api/timeline`` and the weekly destruction counts behind the timeline."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from fastapi.testclient import TestClient

from serving.timeline import destruction_timeline
from tests.serving.world import World


def test_review_queue_puts_contested_first_and_drops_judged_buildings(
    client: TestClient, auth: dict[str, str]
) -> None:
    q = client.get("/api/queue").json()
    assert q["kind"] == "review" and [i["building_id"] for i in q["items"]] == ["B001", "B002", "B004"]
    assert q["items"][0]["flags"] == ["contested"] and q["total"] == 3
    assert client.post("/api/buildings/B001/verdict", json={"gap": 2}, headers=auth).status_code == 201
    assert [i["building_id"] for i in client.get("/api/queue").json()["items"]] == ["B002", "B004"]


def test_labeling_queue_is_open_buildings_least_confident_first(client: TestClient) -> None:
    q = client.get("/api/queue", params={"kind": "labeling", "limit": 1}).json()
    assert q["total"] == 2 and [i["building_id"] for i in q["items"]] == ["B002"]  # 0.6 before B003's 0.8
    assert client.get("/api/queue", params={"limit": 0}).status_code == 422


def test_campaign_counts_and_audit(client: TestClient, auth: dict[str, str]) -> None:
    c = client.get("/api/campaign").json()
    assert c["annotations_spent"] == 9 and c["expert_verdicts"] == 0 and c["buildings"] == 5
    assert c["statuses"] == {"contested": 1, "in_review": 1, "settled": 2, "unlabelled": 1}
    assert (c["settled"], c["contested"], c["flagged"]) == (2, 1, 3)
    assert [(r["kind"], r["note"]) for r in c["rounds"]] == [("aggregation", "5 buildings decided")]
    assert c["audit"] == {
        "buildings": 0,
        "exact": 0,
        "within_one": 0,
        "accuracy": None,
        "within_one_accuracy": None,
    }
    # researchers check B001 (system said gap 2) and B002 (system said gap 1): one exact, one off by two
    client.post("/api/buildings/B001/verdict", json={"gap": 2}, headers=auth)
    client.post("/api/buildings/B002/verdict", json={"gap": 3}, headers=auth)
    c = client.get("/api/campaign").json()
    assert c["expert_verdicts"] == 2 and c["annotations_spent"] == 9 and c["statuses"]["expert"] == 2
    assert c["audit"] == {
        "buildings": 2,
        "exact": 1,
        "within_one": 1,
        "accuracy": 0.5,
        "within_one_accuracy": 0.5,
    }


def test_campaign_reads_the_campaign_tables(client: TestClient, world: World) -> None:
    """A campaign's rounds, requests, model events and estimate-mode audit as the campaign loop stores them."""
    store = world.store
    assert client.get("/api/campaign").json()["campaigns"] == []
    store.create_campaign("district", "estimate", "labelstudio", {"batch": 3})
    done = store.start_round("campaign", {"batch": 3}, campaign="district")
    store.add_requests(
        "district", done,
        [{"request_key": f"{b}#0", "building_id": b, "kind": "acquired", "acquisition": "entropy", "score": 0.5,
          "rank": i} for i, b in enumerate(["B001", "B002", "B003"])],
    )  # fmt: skip
    first, *_ = [r.id for r in store.requests("district")]
    store.mark_requests([first], "answered", reason="reviewed")
    store.record_model_event("district", "trained", round_id=done, model_version="striketracker-dating/2")
    store.record_model_event("district", "kept", round_id=done, model_version="striketracker-dating/1")
    # the model said gap 3 for B000 (the volunteers agree) and gap 1 for B004 (they said 0); B003 is unjudged
    audit = {"B000": {"model_gap": 3}, "B004": {"model_gap": 1}, "B003": {"model_gap": 5}}
    store.add_audit_buildings("district", "estimate", audit, round_id=done, detail=audit)
    store.update_round(done, stage="done", model_version="striketracker-dating/1", finished=True)
    interrupted = store.start_round("campaign", campaign="district")
    store.update_round(interrupted, stage="pulled")

    c = client.get("/api/campaign").json()
    (run,) = c["campaigns"]
    assert (run["name"], run["mode"], run["labeler"]) == ("district", "estimate", "labelstudio")
    assert run["rounds"] == 1
    assert (run["open_round"], run["open_stage"]) == (interrupted, "pulled")
    assert run["requests"] == {"answered": 1, "to_push": 2} and run["reviews_answered"] == 1
    assert run["champion"] == "striketracker-dating/1"
    assert run["model_events"] == {"kept": 1, "trained": 1}
    assert run["audit"]["accuracy"] == 0.5 and run["audit"]["judged"] == 2 and run["audit"]["sample"] == 3
    assert run["audit"]["lo90"] < 0.5 < run["audit"]["hi90"]
    rounds = {r["id"]: r for r in c["rounds"]}
    assert rounds[done]["campaign"] == "district" and rounds[done]["stage"] == "done"
    assert rounds[interrupted]["finished_at"] is None


def test_timeline_endpoint_counts_every_building_once(client: TestClient) -> None:
    t = client.get("/api/timeline").json()
    assert t["band"] == 0.9 and t["buildings"] == 5
    total = sum(w["expected"] for w in t["weeks"]) + t["before_first_image"] + t["not_damaged"]
    assert total == pytest.approx(5.0, abs=0.02)
    assert t["weeks"][0]["week_start"] == "2017-01-30"  # the Monday of the first image's week
    assert all(w["lo"] <= w["hi"] for w in t["weeks"])


def test_certain_destruction_lands_in_its_weeks_with_a_tight_band() -> None:
    dates = [dt.date(2017, 6, 5), dt.date(2017, 6, 12), dt.date(2017, 6, 26)]  # Mondays
    probs = np.array([[0, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0], [1.0, 0, 0, 0]])
    t = destruction_timeline([(dates, probs)], draws=200)
    assert t.week_starts == (
        dt.date(2017, 6, 5),
        dt.date(2017, 6, 12),
        dt.date(2017, 6, 19),
        dt.date(2017, 6, 26),
    )
    # building 0: a day in 6-11 June (week 0) or 12 June (week 1); building 1: 13-26 June, two weeks and a day
    assert t.expected.sum() == pytest.approx(2.0)
    assert t.expected[0] == pytest.approx(6 / 7) and t.expected[3] == pytest.approx(1 / 14)
    assert (t.before_first, t.not_damaged, t.buildings) == (1.0, 1.0, 4)
    assert np.all(t.lo <= t.expected + 1e-9) and np.all(t.expected <= t.hi + 1e-9)
    assert t.hi.max() <= 2


def test_band_widens_with_uncertainty(rng: np.random.Generator) -> None:
    dates = [dt.date(2017, 1, 2) + dt.timedelta(days=14 * k) for k in range(6)]
    sure = np.tile(np.eye(7)[3], (50, 1))
    unsure = rng.dirichlet(np.ones(7), size=50)
    width_sure = destruction_timeline([(dates, sure)]).hi - destruction_timeline([(dates, sure)]).lo
    width_unsure = destruction_timeline([(dates, unsure)]).hi - destruction_timeline([(dates, unsure)]).lo
    assert width_unsure.sum() > width_sure.sum()
