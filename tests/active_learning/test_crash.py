"""A campaign round killed with SIGKILL at any point resumes on rerun with nothing lost or duplicated, and a
second loop process on the same campaign refuses to run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from active_learning.lock import CampaignLock, CampaignLockedError
from active_learning.store import Store
from tests.active_learning.campaign_kit import open_store, truths

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 4


def _child(folder: Path, kill_at: str = "", rounds: int = ROUNDS) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "tests.active_learning.campaign_child", "--store", str(folder / "store.db"),
           "--platform", str(folder / "platform.json"), "--rounds", str(rounds)]  # fmt: skip
    if kill_at:
        cmd += ["--kill-at", kill_at]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # children start faster
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)


def _state(folder: Path) -> dict[str, object]:
    """Everything that must come out the same: annotations, requests, the platform's tasks and answers."""
    store = Store.open(f"sqlite:///{folder / 'store.db'}")
    platform = json.loads((folder / "platform.json").read_text())
    return {
        "annotations": sorted((a.external_id, a.states) for a in store.annotations(include_retracted=True)),
        "requests": sorted((r.request_key, r.building_id, r.status, r.task_ref) for r in store.requests("t")),
        "tasks": platform["tasks"],
        "answers": [e["external_id"] for e in platform["log"]],
        "rounds": [(r.id, r.stage, r.finished_at is not None) for r in store.rounds("t")],
        "quarantine": len(store.quarantine()),
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("reference")
    done = _child(folder)
    assert done.returncode == 0, done.stderr[-3000:]
    return _state(folder)


# a round commits about 22 times (lock and heartbeats, the stage after every step, posteriors and decisions,
# requests); round 1 is commits ~5-22, round 2 (the first answers, the first model, decisions again) ~23-47.
# The points fall in every step of those rounds, before and after the commit, and after the platform applied a
# push or a pull whose result never reached the loop.
KILL_POINTS = ["commit:5", "committed:15", "commit:26", "committed:30", "commit:35", "committed:40",
               "commit:45", "platform:2", "platform:3"]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", KILL_POINTS)
def test_a_round_killed_at_any_point_resumes_without_losing_or_duplicating(
    kill_at: str, reference: dict[str, object], tmp_path: Path
) -> None:
    killed = _child(tmp_path, kill_at)
    assert (
        killed.returncode == -9
    ), f"{kill_at} was never reached: {killed.stdout[-500:]} {killed.stderr[-2000:]}"
    rerun = _child(tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert _state(tmp_path) == reference


def test_a_second_loop_process_refuses_with_the_holder_and_the_fix(tmp_path: Path) -> None:
    ts = truths(24)
    store = open_store(tmp_path / "store.db", ts)
    with CampaignLock(store, "t", heartbeat_s=0.5, stale_after_s=30):
        busy = _child(tmp_path, rounds=1)
        assert busy.returncode != 0
        assert f"pid {os.getpid()}" in busy.stderr and "campaign unlock" in busy.stderr
        with pytest.raises(CampaignLockedError, match="another loop process"):
            CampaignLock(store, "t").acquire()
    assert store.lock("t") is None
    assert _child(tmp_path, rounds=1).returncode == 0  # free again once the holder is done
