"""A small campaign against a real Label Studio server through LabelStudioQueue: push, two volunteers annotate
through the API, pull, settle, withdraw, and a task an admin deleted is noticed."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest

from active_learning.labelers import QueueLabeler
from active_learning.loop import Campaign, CampaignConfig
from active_learning.posterior import Status
from active_learning.store import Store
from labeling import LabelStudioClient, ProjectSettings, signup_volunteer
from labeling.convert import states_to_result
from labeling.queue import LabelStudioQueue
from tests.live_services import LiveLabelStudio

pytestmark = pytest.mark.integration

DATES = (dt.date(2017, 2, 3), dt.date(2017, 4, 1), dt.date(2017, 6, 14), dt.date(2017, 8, 20))
SECRET = b"campaign-pseudonym-key"
AGREED = ("intact", "intact", "destroyed", "destroyed")  # gap 2, bracketed by both reviews


def test_a_campaign_round_trip_through_label_studio(label_studio: LiveLabelStudio, tmp_path: Path) -> None:
    admin = label_studio.client
    pid = admin.create_project(ProjectSettings(title=f"campaign-{uuid.uuid4().hex[:8]}", overlap=5))
    volunteers = []
    try:
        invite = admin.invite_token()
        for i in range(2):
            token = signup_volunteer(
                label_studio.url,
                invite,
                f"cv{i}-{uuid.uuid4().hex[:6]}@striketracker.test",
                f"Campaign-{i}-pass-7q",
            )
            volunteers.append(LabelStudioClient(label_studio.url, token))
        store = Store.open(f"sqlite:///{tmp_path / 'store.db'}")
        Campaign.register_buildings(store, ["A", "B", "C"], DATES)
        queue = LabelStudioQueue(admin, pid, secret=SECRET, public_base_url="http://127.0.0.1:9")
        config = CampaignConfig(name="ls", seed_size=3, batch_size=3, confidence=0.6, random_share=0.0)
        campaign = Campaign(store, QueueLabeler(queue), config)

        first = campaign.run_round()  # the seed batch: two requests per building (min_reviews), one task each
        assert first.selected == 6
        tasks = {b: t for t, (b, _) in admin.task_inventory(pid).items()}
        assert set(tasks) == {"A", "B", "C"}
        assert {r.task_ref for r in store.requests("ls")} == {str(t) for t in tasks.values()}

        for v in volunteers:  # both agree on A and B; only the first looks at C
            v.submit(tasks["A"], states_to_result(AGREED, comment="roof gone in June"))
            v.submit(tasks["B"], states_to_result(AGREED))
        volunteers[0].submit(tasks["C"], states_to_result(("intact",) * 4))

        second = campaign.run_round()
        assert second.pull["received"] == 5 and second.pull["answered"] == 5 and "surplus" not in second.pull
        latest = store.latest_decisions()
        assert latest["A"].decision.status is Status.SETTLED and latest["A"].decision.n_consistent == 2
        assert (
            latest["B"].decision.status is Status.SETTLED and latest["C"].decision.status is Status.IN_REVIEW
        )
        assert {b for b, _ in admin.task_inventory(pid).values()} == {"C"}  # settled buildings withdrawn
        assert {a.comment for a in store.annotations(building_id="A")} == {"roof gone in June"}
        assert len({a.volunteer_id for a in store.annotations()}) == 2 and store.cursor(
            "campaign:ls:labelstudio"
        )

        admin.delete_task(tasks["C"])  # an admin deletes a task the campaign still waits on
        third = campaign.run_round()
        assert third.pull.get("tasks_gone") == 1  # withdrawn tasks A and B are not counted as gone
        assert len(store.annotations()) == 5  # the reviews the deleted and withdrawn tasks held stay
        assert [r.status for r in store.requests("ls", building_id="C")] == ["answered", "gone", "open"]
        assert "C" in {b for b, _ in admin.task_inventory(pid).values()}  # asked again: a new task
    finally:
        for v in volunteers:
            v.close()
        admin.delete_project(pid)
