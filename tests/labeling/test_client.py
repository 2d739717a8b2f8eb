"""Client error handling: retries with backoff, clear messages, nothing sent twice that may have been applied.

Transient failures are injected with httpx's mock transport (the success paths run against the real server in
test_integration.py); "server down" uses a real closed loopback port.
"""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from labeling.client import LabelStudioClient, ProjectSettings, SyncState
from labeling.config import labeling_config
from labeling.convert import TaskSpec, states_to_result
from labeling.errors import AuthenticationError, ConfigError, LabelStudioAPIError
from tests.labeling.fake_labelstudio import FakeLabelStudio, personal_access_token

TOKEN = "0" * 40


def _client(handler, sleeps: list[float], retries: int = 4) -> LabelStudioClient:  # type: ignore[no-untyped-def]
    def with_project(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path == "/api/projects/1/":  # push reads the config once
            return httpx.Response(200, json={"id": 1, "label_config": labeling_config()})
        return handler(request)

    return LabelStudioClient(
        "http://ls.test",
        TOKEN,
        client=httpx.Client(transport=httpx.MockTransport(with_project)),
        retries=retries,
        backoff=0.5,
        sleep=sleeps.append,
    )


def test_transient_errors_are_retried_with_exponential_backoff() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers["Authorization"])
        if len(calls) < 3:
            return httpx.Response(503)
        return httpx.Response(200, json={"id": 1, "email": "a@b"})

    sleeps: list[float] = []
    assert _client(handler, sleeps).whoami()["id"] == 1
    assert sleeps == [0.5, 1.0]
    assert calls == [f"Token {TOKEN}"] * 3


def test_server_down_gives_clear_error_after_retries() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps: list[float] = []
    client = LabelStudioClient(
        f"http://127.0.0.1:{port}", TOKEN, retries=3, backoff=0.01, sleep=sleeps.append
    )
    with pytest.raises(LabelStudioAPIError, match="unreachable after 3 attempts") as info:
        client.whoami()
    assert "striketracker labelstudio start" in str(info.value)
    assert TOKEN not in str(info.value)
    assert sleeps == [0.01, 0.02]


def test_wrong_token_is_not_retried_and_names_the_fix() -> None:
    sleeps: list[float] = []
    client = _client(lambda r: httpx.Response(401, json={"detail": "Invalid token."}), sleeps)
    with pytest.raises(AuthenticationError, match="refused the API token") as info:
        client.whoami()
    assert sleeps == [] and TOKEN not in str(info.value)


def test_empty_token_is_refused_up_front() -> None:
    with pytest.raises(AuthenticationError, match="no Label Studio API token"):
        LabelStudioClient("http://ls.test", "")


def test_import_timing_out_is_checked_before_every_new_attempt() -> None:
    imports: list[int] = []
    listings: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/tasks/":
            listings.append(1)
            return httpx.Response(200, json={"total": 0, "tasks": []})
        imports.append(1)
        raise httpx.ReadTimeout("slow", request=request)

    sleeps: list[float] = []
    with pytest.raises(LabelStudioAPIError, match="unreachable after 4 attempts") as info:
        _client(handler, sleeps).push(
            1, [TaskSpec("B1", ("2017-01-01",))], public_base_url="http://h", model_version="m"
        )
    assert "ReadTimeout after the request was sent" in str(info.value)
    assert imports == [1] * 4 and len(listings) == 1 + 4  # the inventory, then one check per lost answer
    assert sleeps == [0.5, 1.0, 2.0]


def test_push_skips_buildings_already_in_the_project() -> None:
    imported: list[list[dict]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/tasks/":
            return httpx.Response(200, json={"total": 1, "tasks": [{"id": 9, "data": {"building_id": "B1"}}]})
        if request.url.path.endswith("/import"):
            body = json.loads(request.content)
            first = 10 + sum(len(c) for c in imported)
            imported.append(body)
            return httpx.Response(
                201, json={"task_ids": list(range(first, first + len(body))), "prediction_count": 0}
            )
        raise AssertionError(request.url.path)

    specs = [TaskSpec(b, ("2017-01-01",)) for b in ("B1", "B2", "B3", "B2")]
    result = _client(handler, []).push(1, specs, public_base_url="http://h", model_version="m", chunk_size=1)
    assert result.existing == {"B1": 9}
    assert result.created == {"B2": 10, "B3": 11}
    assert [len(c) for c in imported] == [1, 1]
    assert result.state.building_tasks() == {"B1": 9, "B2": 10, "B3": 11}
    with pytest.raises(ConfigError, match="chunk_size=0"):
        _client(handler, []).push(1, specs, public_base_url="http://h", model_version="m", chunk_size=0)


def test_other_api_errors_carry_status_and_reason() -> None:
    client = _client(lambda r: httpx.Response(400, json={"validation_errors": {"x": ["bad"]}}), [])
    with pytest.raises(LabelStudioAPIError, match="HTTP 400") as info:
        client.project(3)
    assert info.value.status == 400 and "bad" in str(info.value)


def test_sync_state_round_trips_through_json() -> None:
    state = SyncState(3, {1: "B1", 2: "B2"}, {10: "2026-01-01T00:00:00Z"}, {1: (10,)}, "2026-01-01T00:00:00Z")
    assert SyncState.from_json(state.to_json()) == state


SPECS = [TaskSpec(f"B{i}", ("2017-01-01", "2017-02-01")) for i in range(3)]


def _fake_client(
    fake: FakeLabelStudio, token: str = TOKEN, sleeps: list[float] | None = None
) -> LabelStudioClient:
    return LabelStudioClient(
        "http://ls.test",
        token,
        client=fake.client(),
        backoff=0.5,
        sleep=(sleeps if sleeps is not None else []).append,
    )


def _buildings(fake: FakeLabelStudio) -> list[str]:
    return sorted(t["data"]["building_id"] for t in fake.tasks.values())


@pytest.mark.parametrize("status", [502, 503, 504, "timeout"])
def test_import_committed_but_answered_by_a_proxy_error_creates_no_duplicates(status: int | str) -> None:
    fake = FakeLabelStudio(commit_then_fail=[status])
    result = _fake_client(fake).push(1, SPECS, public_base_url="http://h", model_version="m")
    assert _buildings(fake) == ["B0", "B1", "B2"]
    assert result.created == {t["data"]["building_id"]: tid for tid, t in fake.tasks.items()}
    assert fake.calls.count("POST /api/projects/1/import") == 1


def test_import_refused_before_it_ran_is_sent_again_after_checking() -> None:
    fake = FakeLabelStudio(fail_before=[504, 429])
    sleeps: list[float] = []
    result = _fake_client(fake, sleeps=sleeps).push(1, SPECS, public_base_url="http://h", model_version="m")
    assert _buildings(fake) == ["B0", "B1", "B2"] and len(result.created) == 3
    imports = [i for i, c in enumerate(fake.calls) if c == "POST /api/projects/1/import"]
    assert len(imports) == 3
    # after the 504 the project's tasks are listed again (the import might have run); a 429 never ran
    assert "GET /api/tasks/" in fake.calls[imports[0] : imports[1]]
    assert "GET /api/tasks/" not in fake.calls[imports[1] : imports[2]]
    assert sleeps == [0.5, 1.0]


def test_annotation_committed_but_answered_504_is_not_created_twice() -> None:
    fake = FakeLabelStudio()
    client = _fake_client(fake)
    (tid,) = client.push(1, SPECS[:1], public_base_url="http://h", model_version="m").created.values()
    fake.commit_then_fail = [504]
    result = states_to_result(("intact", "destroyed"))
    aid = client.submit(tid, result)
    assert [a["id"] for a in fake.tasks[tid]["annotations"]] == [aid]


def test_stale_access_token_is_refreshed_and_the_call_retried_once() -> None:
    fake = FakeLabelStudio(expire_after=2)  # the server stops accepting each access token after 2 uses
    sleeps: list[float] = []
    client = _fake_client(fake, personal_access_token(), sleeps)
    for _ in range(5):
        assert client.whoami()["id"] == 1
    assert fake.refreshes == 3 and sleeps == []
    assert fake.calls.count("GET /api/current-user/whoami") == 7  # 5 calls + 2 retries after a refresh


def test_access_token_refused_even_when_fresh_fails_after_one_refresh() -> None:
    fake = FakeLabelStudio(expire_after=0)  # no access token is ever accepted
    with pytest.raises(AuthenticationError, match="refused the API token") as info:
        _fake_client(fake, personal_access_token()).whoami()
    assert fake.refreshes == 2 and fake.calls.count("GET /api/current-user/whoami") == 2
    assert "personal access token" in str(info.value)


def test_project_and_webhook_committed_but_answered_504_are_not_created_twice() -> None:
    fake = FakeLabelStudio(commit_then_fail=[504, "timeout"])
    client = _fake_client(fake)
    fake.projects[0] = {"id": 0, "title": "campaign", "label_config": ""}  # an older namesake
    pid = client.create_project(ProjectSettings(title="campaign"))
    assert sorted(fake.projects) == [0, pid] and client.find_project("campaign") == pid
    hook = client.add_webhook(pid, "http://127.0.0.1:9/hook", "s3cret")
    assert list(fake.webhooks) == [hook]
