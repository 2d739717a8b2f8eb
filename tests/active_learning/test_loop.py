"""The campaign loop: rounds over the store, both modes, and every kind of bad input a labeler can send."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from active_learning.errors import CampaignError
from active_learning.loop import Campaign, campaign_status
from active_learning.posterior import Status
from active_learning.retirement import FLAG_MODEL_SETTLED
from active_learning.store import Store
from tests.active_learning.campaign_kit import (
    FakeModel,
    Faults,
    FaultyLabeler,
    config,
    open_store,
    pool_labeler,
    stray,
    truths,
)


def _pull_counts(store: Store, campaign: str = "t") -> Counter[str]:
    total: Counter[str] = Counter()
    for r in store.rounds(campaign):
        total.update(r.summary.get("pull", {}))
    return total


def _answers_in_store(store: Store) -> list[str]:
    return sorted(a.external_id for a in store.annotations(include_retracted=True))


def test_a_verify_campaign_settles_buildings_only_with_two_agreeing_human_reviews(tmp_path: Path) -> None:
    ts = truths(40)
    store = open_store(tmp_path / "s.db", ts)
    labeler = pool_labeler(ts)
    model = FakeModel(ts, accuracy=0.9)
    reports = Campaign(store, labeler, config(), model=model).run(40)
    assert reports[-1].done
    assert reports[0].summary["selected"][0][2] == "seed" and reports[0].selected == 24  # 12, twice each
    latest = store.latest_decisions()
    settled = [d.decision for d in latest.values() if d.decision.status is Status.SETTLED]
    assert len(settled) > 20
    for d in settled:
        agreeing = {r.volunteer_id for r in d.reviews if r.agrees}
        assert d.n_consistent >= 2 and len(agreeing) >= 2, d
        assert FLAG_MODEL_SETTLED not in d.flags
    # exactly once: every answer the platform produced is stored, and nothing else
    assert _answers_in_store(store) == sorted(labeler.answered())
    keys = [r.request_key for r in store.requests("t")]
    assert len(keys) == len(set(keys)) == len(labeler.tasks())
    assert model.trained and model.trained[1][1] == "fake/1"  # retrained warm-started from the champion
    truth = {t.building_id: t.true_gap for t in ts}
    posts = store.latest_posteriors()
    assert sum(posts[b].map_gap == g for b, g in truth.items()) / len(ts) > 0.85
    status = campaign_status(store, "t")
    assert status.rounds == len(reports) and status.open_round is None and status.lock is None


def test_an_estimate_campaign_lets_the_model_settle_and_audits_a_random_share(tmp_path: Path) -> None:
    ts = truths(60, seed=6)
    store = open_store(tmp_path / "s.db", ts)
    cfg = config(mode="estimate", model_confidence=0.85, estimate_audit_share=0.3)
    Campaign(store, pool_labeler(ts, seed=6), cfg, model=FakeModel(ts, accuracy=0.9)).run(40)
    latest = store.latest_decisions()
    model_settled = [d for d in latest.values() if FLAG_MODEL_SETTLED in d.decision.flags]
    assert model_settled and all(d.decision.n_reviews == 0 for d in model_settled)
    audited = store.audit_buildings("t", "estimate")
    assert audited and all(latest[b].decision.n_reviews > 0 for b in audited)  # sent to volunteers anyway
    audit = campaign_status(store, "t").audit
    assert audit["judged"] > 0 and audit["lo90"] <= audit["accuracy"] <= audit["hi90"]
    verify_store = open_store(tmp_path / "v.db", ts)
    Campaign(verify_store, pool_labeler(ts, seed=6), config(), model=FakeModel(ts, accuracy=0.9)).run(40)
    assert store.annotation_count() < verify_store.annotation_count()  # the model saved human effort


def test_answers_for_buildings_never_sent_are_quarantined_not_counted(store_url: str) -> None:
    ts = truths(30)
    store = open_store(store_url, ts)  # a whole campaign round on SQLite and on PostgreSQL
    never_sent = next(t.building_id for t in ts[::-1])
    faults = Faults(
        unsolicited={1: stray(never_sent, "v-stranger", "x:1"), 2: stray("b-unknown", "v-x", "x:2")}
    )
    campaign = Campaign(store, FaultyLabeler(pool_labeler(ts), faults), config(seed_size=5))
    campaign.run_round()
    campaign.run_round()
    reasons = {q.external_id: q.reason for q in store.quarantine()}
    assert "never sent" in reasons["x:1"] and "unknown building" in reasons["x:2"]
    assert store.quarantine()[0].payload["volunteer_id"] == "v-stranger"  # kept with its payload
    assert "x:1" not in _answers_in_store(store)
    counts = _pull_counts(store)
    assert counts["unsolicited"] == 1 and counts["invalid"] == 1
    assert counts["received"] == counts["answered"] + counts["unsolicited"] + counts["invalid"]


def test_an_answer_delivered_twice_or_a_second_review_by_one_volunteer_counts_once(tmp_path: Path) -> None:
    ts = truths(30)
    store = open_store(tmp_path / "s.db", ts)
    faults = Faults(duplicate_on={2}, repeat_reviewer_on={3})
    labeler = FaultyLabeler(pool_labeler(ts), faults)
    campaign = Campaign(store, labeler, config(seed_size=6, batch_size=6))
    for _ in range(3):
        campaign.run_round()
    counts = _pull_counts(store)
    assert counts["redelivered"] == 1 and counts["repeat_reviewer"] == 1
    assert counts["answered"] == len(labeler.inner.answered())  # each platform answer counted once
    assert _answers_in_store(store) == sorted(labeler.inner.answered())
    (repeat,) = [q for q in store.quarantine() if q.field == "volunteer_id"]
    assert "not independent" in repeat.reason and repeat.external_id.endswith(":again")


def test_an_answer_after_the_building_settled_is_kept_and_the_building_decided_again(tmp_path: Path) -> None:
    ts = truths(30)
    store = open_store(tmp_path / "s.db", ts)
    labeler = FaultyLabeler(pool_labeler(ts), Faults(), store)
    campaign = Campaign(store, labeler, config(), model=FakeModel(ts, accuracy=0.95))
    while not any(d.decision.status is Status.SETTLED for d in store.latest_decisions().values()):
        campaign.run_round()
    settled = next(b for b, d in store.latest_decisions().items() if d.decision.status is Status.SETTLED)
    assert all(r.status in ("answered", "withdrawn") for r in store.requests("t", building_id=settled))
    late = stray(settled, "v-late", "late:1")
    labeler.faults.extra[labeler.pulls + 1] = lambda s: late
    report = campaign.run_round()
    assert report.pull["after_settled"] == 1
    assert "late:1" in _answers_in_store(store)
    assert store.latest_decisions()[settled].decision.n_reviews >= 3  # the new evidence was weighed


def test_tasks_deleted_on_the_platform_are_counted_and_their_buildings_asked_again(tmp_path: Path) -> None:
    ts = truths(30)
    store = open_store(tmp_path / "s.db", ts)
    labeler = FaultyLabeler(pool_labeler(ts), Faults(gone_on={2: 3}))
    campaign = Campaign(store, labeler, config(seed_size=8, batch_size=8))
    campaign.run_round()
    report = campaign.run_round()
    assert report.pull["tasks_gone"] == 3
    gone = store.requests("t", status="gone")
    assert len(gone) == 3 and all(r.close_reason == "task deleted on the platform" for r in gone)
    for _ in range(6):
        campaign.run_round()
    asked_again = {r.building_id for r in store.requests("t") if r.status != "gone"}
    assert {r.building_id for r in gone} <= asked_again
    assert _answers_in_store(store) == sorted(labeler.inner.answered())


def test_an_answer_for_a_task_deleted_on_the_platform_is_kept_and_counted_once(tmp_path: Path) -> None:
    ts = truths(30)
    store = open_store(tmp_path / "s.db", ts)
    labeler = FaultyLabeler(pool_labeler(ts), Faults(gone_on={2: 2}, answer_gone_on={3}))
    campaign = Campaign(store, labeler, config(seed_size=8, batch_size=8))
    for _ in range(4):
        campaign.run_round()
    late = sorted(f"tab:{ref}" for ref in labeler.gone)
    assert len(late) == 2
    assert _answers_in_store(store) == sorted([*labeler.inner.answered(), *late])  # nothing lost
    counts = _pull_counts(store)
    kinds = ("answered", "redelivered", "unsolicited", "repeat_reviewer", "for_gone_task", "after_settled",
             "surplus", "invalid", "conversion_failed")  # fmt: skip
    assert counts["received"] == sum(counts[k] for k in kinds)  # each answer counted under one heading
    answering = [r.answer_external_id for r in store.requests("t") if r.answer_external_id]
    assert len(answering) == len(set(answering))  # no answer closes two requests
    assert (
        counts["tasks_gone"] == 2 and counts["for_gone_task"] == 2
    )  # the re-asked request was answered first
    assert not set(late) & set(answering)  # a deleted task's answer closes no request of the new task
    (building,) = set(labeler.gone.values())
    reviews = {a.external_id for a in store.annotations(building_id=building)}
    assert set(late) <= reviews  # kept as evidence of its building


def test_a_labeler_down_mid_round_is_waited_for_and_caught_up(tmp_path: Path) -> None:
    ts = truths(30)
    store = open_store(tmp_path / "s.db", ts)
    sleeps: list[float] = []
    labeler = FaultyLabeler(pool_labeler(ts), Faults(down_pulls={2, 3, 4}, down_pushes={2}))
    campaign = Campaign(store, labeler, config(seed_size=8, batch_size=8), sleep=sleeps.append)
    campaign.run_round()
    report = campaign.run_round()  # pull fails three times, push once, then both go through
    assert sleeps == [2.0, 4.0, 8.0, 2.0]
    assert report.summary["retries_pull"] == 3 and report.summary["retries_push"] == 1
    assert report.pull["answered"] == 16  # the seed batch: 8 buildings, min_reviews (2) requests each

    # down for longer than the campaign waits: the round stops, saved; the next run catches up
    labeler.faults.down_pulls |= set(range(labeler.pulls + 1, labeler.pulls + 30))
    short = Campaign(store, labeler, config(seed_size=8, batch_size=8, max_wait_s=20), sleep=sleeps.append)
    with pytest.raises(
        CampaignError, match="unavailable during pull .* rerun `striketracker campaign round`"
    ):
        short.run_round()
    stuck = store.open_round("t")
    assert stuck is not None and stuck.stage == "started"
    labeler.faults.down_pulls.clear()
    resumed = short.run_round()
    assert resumed.round_id == stuck.id and resumed.resumed_from == "started"
    assert _answers_in_store(store) == sorted(labeler.inner.answered())
    assert store.lock("t") is None


def test_every_round_is_a_child_run_of_the_campaigns_parent_run_in_mlflow(tmp_path: Path) -> None:
    from active_learning.campaign_log import EXPERIMENT
    from model.registry import Tracking

    ts = truths(30)
    store = open_store(tmp_path / "s.db", ts)
    tracking = Tracking(f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=str(tmp_path / "artifacts"))
    campaign = Campaign(
        store, pool_labeler(ts), config(), model=FakeModel(ts, accuracy=0.95), tracking=tracking
    )
    for _ in range(3):
        campaign.run_round()
    client = tracking.client()
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.campaign = 't'")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and store.campaign("t").mlflow_run_id == parents[0].info.run_id
    assert parents[0].data.params["mode"] == "verify"
    assert sorted(int(r.data.tags["round_id"]) for r in children) == [r.id for r in store.rounds("t")]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    last = max(children, key=lambda r: int(r.data.tags["round_id"]))
    status = campaign_status(store, "t")
    assert last.data.metrics["annotations"] == status.annotations
    assert last.data.metrics["settled"] == status.statuses.get("settled", 0)
    assert {"contested", "in_review", "selected"} <= set(last.data.metrics)
    assert any("labels_used" in r.data.metrics for r in children)  # the rounds that trained a model
    champion = store.round(int(last.data.tags["round_id"])).model_version
    assert champion and last.data.params["model_version"] == champion
    artifacts = {a.path for a in client.list_artifacts(last.info.run_id)}
    assert "acquisition_scores.png" in artifacts
    history = client.get_metric_history(parents[0].info.run_id, "annotations")
    assert [m.step for m in history] == [r.id for r in store.rounds("t")]  # the curve over rounds, once each
