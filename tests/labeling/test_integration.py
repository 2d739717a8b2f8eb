"""Against a real Label Studio server: project setup, push, annotations by several volunteers, pull, webhooks."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import jwt
import label_studio_sdk.tokens.client_ext
import numpy as np
import pytest
from label_studio_sdk import LabelStudio

from labeling import (
    AuthenticationError,
    ConfigError,
    LabelStudioClient,
    ProjectSettings,
    SyncState,
    TaskSpec,
    signup_volunteer,
    volunteer_id,
)
from labeling.convert import states_to_result
from tests.live_services import LiveLabelStudio, LiveService

pytestmark = pytest.mark.integration

MODEL_VERSION = "it-model-1"
STATES = ("intact", "damaged", "destroyed", "not_visible")


@dataclass
class Volunteer:
    email: str
    password: str
    client: LabelStudioClient
    user_id: int


@dataclass
class World:
    ls: LiveLabelStudio
    service: LiveService
    project_id: int
    volunteers: list[Volunteer]
    scores: dict[str, float]
    state: SyncState | None = None


def _specs(ids: tuple[str, ...], dates: tuple[str, ...], scores: dict[str, float]) -> list[TaskSpec]:
    out = []
    for k, bid in enumerate(ids):
        gap = k % (len(dates) + 1)
        states = tuple("intact" if t < gap else "destroyed" for t in range(len(dates)))
        out.append(TaskSpec(bid, dates, states, score=scores[bid]))
    return out


def _expected_states(v: int, building_index: int, n_dates: int) -> tuple[str, ...]:
    gap = (building_index + v) % (n_dates + 1)
    return tuple("intact" if t < gap else ("damaged" if t == gap else "destroyed") for t in range(n_dates))


@pytest.fixture(scope="module")
def world(label_studio: LiveLabelStudio, service: LiveService) -> Iterator[World]:
    client = label_studio.client
    pid = client.create_project(
        ProjectSettings(title=f"it-{uuid.uuid4().hex[:8]}", overlap=3, config="per_date")
    )
    invite = client.invite_token()
    volunteers = []
    for i in range(3):
        email, password = f"volunteer{i}@striketracker.test", f"Volunteer-{i}-pass-9f3"
        token = signup_volunteer(label_studio.url, invite, email, password)
        vc = LabelStudioClient(label_studio.url, token)
        volunteers.append(Volunteer(email, password, vc, int(vc.whoami()["id"])))
    rng = np.random.default_rng(7)
    scores = {
        b: float(s)
        for b, s in zip(service.building_ids, rng.uniform(0.05, 0.95, len(service.building_ids)), strict=True)
    }
    try:
        yield World(label_studio, service, pid, volunteers, scores)
    finally:
        for v in volunteers:
            v.client.close()
        client.delete_project(pid)


def test_project_is_set_up_for_independent_uncertainty_sampled_reviews(world: World) -> None:
    project = world.ls.client.project(world.project_id)
    assert project["maximum_annotations"] == 3
    assert project["sampling"] == "Uncertainty sampling"
    assert project["show_collab_predictions"] is False
    assert project["show_instruction"] is True and "not_visible" in project["expert_instruction"]
    assert "Repeater" in project["label_config"]
    with pytest.raises(ConfigError, match="rejected the labeling config"):
        world.ls.client.validate_config(
            '<View><Choices name="s" toName="nowhere"><Choice value="a"/></Choices></View>'
        )


def test_push_200_tasks_with_predictions_and_no_duplicates(world: World) -> None:
    client, svc = world.ls.client, world.service
    specs = _specs(svc.building_ids[:220], svc.dates, world.scores)
    first = client.push(world.project_id, specs[:200], public_base_url=svc.url, model_version=MODEL_VERSION)
    assert len(first.created) == 200 and first.existing == {} and first.predictions == 200
    assert client.project(world.project_id)["model_version"] == MODEL_VERSION
    again = client.push(
        world.project_id, specs, public_base_url=svc.url, model_version=MODEL_VERSION, chunk_size=50
    )
    assert len(again.created) == 20 and again.existing == first.created
    inventory = client.task_inventory(world.project_id)
    buildings = [b for b, _ in inventory.values()]
    assert len(buildings) == 220 and len(set(buildings)) == 220
    task = client.task(first.created["B000"])
    assert task["data"]["timeline"][2]["url"] == f"{svc.url}/chips/B000/2.png"
    (pred,) = task["predictions"]
    assert pred["model_version"] == MODEL_VERSION and pred["score"] == pytest.approx(world.scores["B000"])
    world.state = again.state


def test_volunteer_is_served_the_most_uncertain_building_first(world: World) -> None:
    v = world.volunteers[0]
    task = v.client.next_task(world.project_id)
    lowest = min(world.scores[b] for b in world.service.building_ids[:220])
    assert world.scores[task["data"]["building_id"]] == pytest.approx(lowest)
    assert not task.get("predictions")  # suggestions hidden from volunteers


def test_annotations_sync_incrementally_and_reconcile_missed_webhooks(world: World) -> None:
    client, svc = world.ls.client, world.service
    assert world.state is not None
    tasks = world.state.building_tasks()
    n = len(svc.dates)
    hook = client.add_webhook(world.project_id, f"{svc.url}/webhooks/labelstudio", svc.webhook_secret)
    svc.events.clear()
    submitted: dict[int, tuple[str, str, tuple[str, ...]]] = {}
    for vi, v in enumerate(world.volunteers):
        for k in range(10):
            bid = svc.building_ids[k]
            states = _expected_states(vi, k, n)
            aid = v.client.submit(tasks[bid], states_to_result(states, comment=f"v{vi}"), lead_time=3.0)
            submitted[aid] = (bid, volunteer_id(v.user_id, svc.pseudonym_secret), states)

    pulled = client.pull(world.project_id, secret=svc.pseudonym_secret, state=world.state)
    assert pulled.problems == () and pulled.deleted == ()
    assert sorted(a.external_id for a in pulled.annotations) == sorted(f"ls:{i}" for i in submitted)
    for a in pulled.annotations:
        bid, vid, states = submitted[int(a.external_id[3:])]
        assert (a.building_id, a.volunteer_id, a.states) == (bid, vid, states)
        assert "@" not in a.volunteer_id
    assert len({a.volunteer_id for a in pulled.annotations}) == 3
    created = [a.external_id for e in svc.events if e.action == "ANNOTATION_CREATED" for a in e.annotations]
    assert sorted(created) == sorted(a.external_id for a in pulled.annotations)

    again = client.pull(world.project_id, secret=svc.pseudonym_secret, state=pulled.state)
    assert again.annotations == () and again.deleted == () and again.deleted_buildings == ()

    first_id = min(submitted)
    new_states = ("destroyed",) * n
    world.volunteers[0].client.update_annotation(first_id, states_to_result(new_states))
    updated = client.pull(world.project_id, secret=svc.pseudonym_secret, state=again.state)
    assert [(a.external_id, a.states) for a in updated.annotations] == [(f"ls:{first_id}", new_states)]
    assert any(e.action == "ANNOTATION_UPDATED" for e in svc.events)

    gone = max(submitted)
    world.volunteers[2].client.delete_annotation(gone)
    after_delete = client.pull(world.project_id, secret=svc.pseudonym_secret, state=updated.state)
    assert after_delete.annotations == () and after_delete.deleted == (f"ls:{gone}",)
    assert any(e.deleted == (f"ls:{gone}",) for e in svc.events)

    # webhooks stop (receiver removed); the pull still sees everything, bad parts reported
    client.delete_webhook(hook)
    events_before = len(svc.events)
    bad_result = [
        r for r in states_to_result(("intact",) * n) if r["from_name"] not in ("state_1", f"state_{n - 1}")
    ]
    bad_result.append(
        {"from_name": "state_1", "to_name": "img_1", "type": "choices", "value": {"choices": ["vaporised"]}}
    )
    bad_bid = svc.building_ids[11]
    bad_id = world.volunteers[1].client.submit(tasks[bad_bid], bad_result)
    doomed_bid = svc.building_ids[12]
    doomed_ann = world.volunteers[1].client.submit(tasks[doomed_bid], states_to_result(("intact",) * n))
    mid = client.pull(world.project_id, secret=svc.pseudonym_secret, state=after_delete.state)
    client.delete_task(tasks[doomed_bid])
    late = client.pull(world.project_id, secret=svc.pseudonym_secret, state=mid.state)
    assert len(svc.events) == events_before
    (bad,) = [a for a in mid.annotations if a.external_id == f"ls:{bad_id}"]
    assert bad.states[1] == "not_visible" and bad.states[-1] == "not_visible" and bad.states[0] == "intact"
    assert any("'vaporised'" in p and f"annotation {bad_id}" in p for p in mid.problems)
    assert late.deleted_buildings == (doomed_bid,) and late.deleted == (f"ls:{doomed_ann}",)

    # a full reconciliation pass from scratch sees exactly the annotations that still exist
    full = client.pull(world.project_id, secret=svc.pseudonym_secret, state=None)
    expected = (set(submitted) - {gone}) | {bad_id}
    assert {a.external_id for a in full.annotations} == {f"ls:{i}" for i in expected}
    assert (
        client.pull(world.project_id, secret=svc.pseudonym_secret, state=full.state, full=True).annotations
        == ()
    )


def test_webhook_with_wrong_secret_is_rejected_by_the_service(world: World) -> None:
    url = f"{world.service.url}/webhooks/labelstudio"
    assert (
        httpx.post(
            url, json={"action": "ANNOTATION_CREATED"}, headers={"X-Striketracker-Secret": "nope"}
        ).status_code
        == 401
    )
    ok = {"X-Striketracker-Secret": world.service.webhook_secret}
    assert httpx.post(url, content=b"{broken", headers=ok).status_code == 400


def test_wrong_token_and_server_reuse(label_studio: LiveLabelStudio) -> None:
    with pytest.raises(AuthenticationError, match="refused the API token"):
        LabelStudioClient(label_studio.url, "f" * 40).whoami()
    pid = label_studio.server.status().pid
    again = label_studio.server.start(timeout=10)
    assert again.pid == pid and again.healthy


class _ClockTenMinutesBehind(dt.datetime):
    """This machine's clock as label-studio-sdk reads it, ten minutes behind the server's."""

    @classmethod
    def now(cls, tz: dt.tzinfo | None = None) -> _ClockTenMinutesBehind:
        real = dt.datetime.now(tz)
        return cls.fromtimestamp(real.timestamp() - 600, tz)


def test_personal_access_token_recovers_from_a_stale_access_token(
    label_studio: LiveLabelStudio, service: LiveService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Label Studio expires an access token after 5 minutes; a long push or pull must not die of it.

    The stale token is the real one this client got, aged by 6 minutes and signed again with the server's own
    key (what the server sees after a 6-minute campaign); the server rejects it for real.
    """
    legacy = signup_volunteer(
        label_studio.url,
        label_studio.client.invite_token(),
        f"pat-user-{uuid.uuid4().hex[:6]}@striketracker.test",  # a new user: no personal access token yet
        "Pat-user-pass-4e1",
    )
    tokens = LabelStudio(base_url=label_studio.url, api_key=legacy).tokens
    pat = str(tokens.create().token)
    statuses: list[tuple[str, int]] = []
    http = httpx.Client(
        timeout=120,
        event_hooks={"response": [lambda r: statuses.append((r.request.url.path, r.status_code))]},
    )
    client = LabelStudioClient(label_studio.url, pat, client=http)
    pid = client.create_project(ProjectSettings(title=f"pat-{uuid.uuid4().hex[:8]}", overlap=1))
    env_file = (label_studio.server.config.data_dir / ".env").read_text().splitlines()
    signing_key = next(line.split("=", 1)[1] for line in env_file if line.startswith("SECRET_KEY="))
    cache = client._sdk._client_wrapper._tokens_client  # where label-studio-sdk keeps the access token

    def age_access_token() -> None:
        claims = jwt.decode(cache._access_token, signing_key, algorithms=["HS256"])  # really the server's
        aged = {**claims, "iat": claims["iat"] - 360, "exp": claims["iat"] - 60}
        cache._access_token = jwt.encode(aged, signing_key, algorithm="HS256")

    specs = _specs(service.building_ids[:4], service.dates, {b: 0.5 for b in service.building_ids[:4]})
    try:
        # clocks agree: the SDK sees the token is past its exp and exchanges the PAT before sending anything
        age_access_token()
        statuses.clear()
        client.push(pid, specs[:2], public_base_url=service.url, model_version="pat-1")
        assert ("/api/token/refresh/", 200) in statuses
        assert all(code != 401 for _, code in statuses)

        # this machine's clock lags: the stale token is sent, the server refuses it, the client refreshes once
        monkeypatch.setattr(label_studio_sdk.tokens.client_ext, "datetime", _ClockTenMinutesBehind)
        age_access_token()
        statuses.clear()
        pushed = client.push(pid, specs, public_base_url=service.url, model_version="pat-1")
        assert len(pushed.created) == 2 and len(pushed.existing) == 2
        assert statuses[0][1] == 401 and statuses[1] == ("/api/token/refresh/", 200)
        assert [code for _, code in statuses].count(401) == 1
        pulled = client.pull(pid, secret=service.pseudonym_secret)
        assert pulled.state.building_tasks().keys() == {s.building_id for s in specs}
    finally:
        monkeypatch.undo()
        client.delete_project(pid)
        client.close()
