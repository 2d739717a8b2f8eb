"""Label Studio -> store of record, against a real server: insert, re-pull, edit, delete, reconcile."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from active_learning import State
from active_learning.store import Store
from labeling import LabelStudioClient, ProjectSettings, TaskSpec, signup_volunteer
from labeling.convert import states_to_result
from serving.sync import cursor_key, sync_project
from tests.live_services import LiveLabelStudio

pytestmark = pytest.mark.integration

DATES = ("2017-02-03", "2017-03-01", "2017-04-01", "2017-05-01")
SECRET = b"pseudonym-key-for-the-test"


def test_sync_keeps_every_review_as_evidence(label_studio: LiveLabelStudio, tmp_path: Path) -> None:
    admin = label_studio.client
    pid = admin.create_project(ProjectSettings(title=f"sync-{uuid.uuid4().hex[:8]}", overlap=2))
    try:
        ids = ("S1", "S2", "S3")
        pushed = admin.push(
            pid, [TaskSpec(b, DATES) for b in ids], public_base_url="http://127.0.0.1:9", model_version="m0"
        )
        tasks = dict(pushed.created)
        token = signup_volunteer(
            label_studio.url,
            admin.invite_token(),
            f"sync-{uuid.uuid4().hex[:6]}@striketracker.test",
            "Sync-pass-81x",
        )
        volunteer = LabelStudioClient(label_studio.url, token)
        first = ("intact", "intact", "destroyed", "destroyed")
        ann = {b: volunteer.submit(tasks[b], states_to_result(first)) for b in ids}

        store = Store.open(f"sqlite:///{tmp_path / 'store.db'}")
        store.add_buildings(["S1", "S2"], n_dates=len(DATES))  # S3 is unknown to the store

        report = sync_project(admin, store, pid, secret=SECRET)
        assert (report.inserted, report.quarantined) == (2, 1)
        assert [q.building_id for q in store.quarantine()] == ["S3"]  # kept with its reason, not lost
        stored = {a.building_id: a for a in store.annotations()}
        assert stored["S1"].states == (State.INTACT, State.INTACT, State.DESTROYED, State.DESTROYED)
        assert stored["S1"].source == "labelstudio" and stored["S1"].external_id == f"ls:{ann['S1']}"
        assert "@" not in stored["S1"].volunteer_id  # pseudonymous
        assert store.cursor(cursor_key(pid))  # the cursor lives in the store, written with the annotations

        again = sync_project(admin, store, pid, secret=SECRET)
        assert (again.inserted, again.updated) == (0, 0)

        edited = ("intact", "damaged", "destroyed", "destroyed")
        volunteer.update_annotation(ann["S1"], states_to_result(edited))
        volunteer.delete_annotation(ann["S2"])
        report = sync_project(admin, store, pid, secret=SECRET)
        assert (report.updated, report.retracted) == (1, 1)
        assert [a.building_id for a in store.annotations()] == ["S1"]
        assert store.annotations()[0].states[1] == State.DAMAGED
        assert store.revisions(f"ls:{ann['S1']}")[0][1][1] == State.INTACT
        assert len(store.annotations(include_retracted=True)) == 2

        # `sync --full` re-reads every task and the store dedupes: nothing stored changes, nothing is counted twice
        full = sync_project(admin, store, pid, secret=SECRET, full=True)
        assert (full.inserted, full.updated, full.unchanged, full.retracted) == (0, 0, 1, 0)
        assert len(store.quarantine()) == 1

        # a fresh store (no cursor) reads everything instead of silently skipping it
        fresh = Store.open(f"sqlite:///{tmp_path / 'fresh.db'}")
        fresh.add_buildings(["S1", "S2", "S3"], n_dates=len(DATES))
        assert sync_project(admin, fresh, pid, secret=SECRET).inserted == 2  # S1 edited, S3; S2 was deleted
        volunteer.close()
    finally:
        admin.delete_project(pid)
