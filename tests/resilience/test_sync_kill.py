"""A Label Studio sync killed with SIGKILL, before or just after the store committed what it pulled: the rerun
stores every annotation exactly once (annotations and the sync cursor commit in one transaction)."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest

from active_learning.loop import Campaign
from active_learning.store import Store
from labeling import LabelStudioClient, ProjectSettings, TaskSpec, signup_volunteer
from labeling.convert import states_to_result
from serving.sync import sync_project
from tests.live_services import LiveLabelStudio
from tests.resilience.child import spawn

pytestmark = pytest.mark.integration

DAYS = (dt.date(2017, 2, 3), dt.date(2017, 6, 14), dt.date(2017, 8, 20))
DATES = tuple(d.isoformat() for d in DAYS)
SECRET = "sync-pseudonym-key"
STATES = [("intact", "intact", "destroyed"), ("intact", "damaged", "destroyed"), ("intact",) * 3]


@pytest.mark.parametrize(
    ("kill_at", "after"),
    [("labeling.queue:LabelStudioQueue.pull", True), ("active_learning.store:Store.ingest", True)],
    ids=["pulled-not-stored", "stored-not-acknowledged"],
)
def test_a_sync_killed_mid_way_stores_every_annotation_once_on_rerun(
    label_studio: LiveLabelStudio, tmp_path: Path, kill_at: str, after: bool
) -> None:
    admin = label_studio.client
    pid = admin.create_project(ProjectSettings(title=f"sync-kill-{uuid.uuid4().hex[:8]}", overlap=5))
    volunteers: list[LabelStudioClient] = []
    try:
        specs = [TaskSpec(b, DATES) for b in ("A", "B", "C")]
        tasks = admin.push(pid, specs, public_base_url="http://127.0.0.1:9", model_version="none").created
        invite = admin.invite_token()
        for i in range(2):
            email = f"sk{i}-{uuid.uuid4().hex[:6]}@striketracker.test"
            volunteers.append(LabelStudioClient(label_studio.url, signup_volunteer(
                label_studio.url, invite, email, f"Sync-{i}-pass-7q")))  # fmt: skip
        for v in volunteers:
            for building, states in zip("ABC", STATES, strict=True):
                v.submit(tasks[building], states_to_result(states))
        store_url = f"sqlite:///{tmp_path / 'store.db'}"
        Campaign.register_buildings(Store.open(store_url), ["A", "B", "C"], DAYS)
        token = tmp_path / "token"
        token.write_text(label_studio.server.config.api_token)
        killed = spawn("tests.resilience.jobs:sync", label_studio.url, token, pid, store_url, SECRET,
                       kill_at=kill_at, after=after)  # fmt: skip
        assert killed.returncode == -9, killed.stderr[-2000:]
        store = Store.open(store_url)
        stored_by_the_killed_run = len(store.annotations())
        rerun = sync_project(admin, store, pid, secret=SECRET.encode())
        assert rerun.quarantined == 0, rerun
        assert rerun.inserted == 6 - stored_by_the_killed_run
        ids = [a.external_id for a in store.annotations(include_retracted=True)]
        assert len(ids) == 6 and len(set(ids)) == 6
        again = sync_project(admin, store, pid, secret=SECRET.encode(), full=True)
        assert again.inserted == 0 and len(store.annotations(include_retracted=True)) == 6
        assert stored_by_the_killed_run == (6 if "ingest" in kill_at else 0)
    finally:
        for v in volunteers:
            v.close()
        admin.delete_project(pid)
