"""Benchmark: a real Label Studio server's start-up, task push and annotation pull.

Run ``python -m experiments.benchmarks.labelstudio --preset {tiny,district,city} --seed N --json PATH``.

A fresh server (pinned release, the isolated env of ``striketracker labelstudio install``, a new data dir under
``.work/bench``, a free loopback port) is started and restarted, then, on the same seeded buildings:

- ``push_bulk``: 2,000 tasks with embedded predictions in one import call (headline ``push_2000_s``);
- ``push_chunked``: the same 2,000 into another project, 250 tasks per call;
- ``push_again``: the 2,000 pushed again to the first project (must create nothing: idempotent);
- ``import_annotations``: 6,000 annotations (2,000 tasks x 3 volunteers) created fast by importing tasks with
  annotations embedded (``completed_by`` = three real volunteer accounts, 1,000 tasks per call);
- ``pull_full_export``: pull all 6,000 through one export call (headline ``pull_6000_s``);
- ``pull_full_paged``: the same through the Data Manager task list, 1,000 tasks per page;
- ``pull_noop``: incremental re-pull with nothing changed; ``pull_incremental``: after updating a few
  annotations, the incremental pull (only tasks updated since the cursor are read).

Presets change the timeline length (6 / 15 / 25 dates), so payloads grow; counts stay 2,000 and 6,000 so figures
compare. ``--config`` picks the projects' labeling config (``compact``, the default, or ``per_date``): it shapes
the task data (the compact config carries its date choices) and the embedded predictions. Times are wall-clock seconds on this machine. A bar chart PNG is written beside the JSON and logged
to MLflow with the figures.
"""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from active_learning.settings import Settings
from experiments.benchmarks.report import benchmark_parser, report
from labeling import (
    CONFIGS,
    LabelStudioClient,
    LabelStudioServer,
    ProjectSettings,
    ServerConfig,
    SyncState,
    TaskSpec,
    legacy_token_from_secret,
    signup_volunteer,
)
from labeling.convert import states_to_result, task_payload

__all__ = ["main", "run"]

N_TASKS = 2000
N_VOLUNTEERS = 3
DATES = {"tiny": 6, "district": 15, "city": 25}
UPDATES = {"tiny": 20, "district": 30, "city": 30}
STATES = ("intact", "damaged", "destroyed", "not_visible")
console = Console()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _specs(rng: np.random.Generator, n_dates: int) -> list[TaskSpec]:
    base = dt.date(2017, 2, 3)
    dates = tuple((base + dt.timedelta(days=17 * t)).isoformat() for t in range(n_dates))
    gaps = rng.integers(0, n_dates + 1, N_TASKS)
    scores = rng.uniform(0.0, 1.0, N_TASKS)
    return [
        TaskSpec(
            f"B{i:06d}",
            dates,
            tuple("intact" if t < g else "destroyed" for t in range(n_dates)),
            score=float(s),
        )
        for i, (g, s) in enumerate(zip(gaps, scores, strict=True))
    ]


def run(preset: str, seed: int, work_dir: Path, kind: str = "compact") -> dict[str, Any]:
    """Run every arm and return the figures (``kind``: the projects' labeling config)."""
    if preset not in DATES:
        raise SystemExit(f"unknown preset {preset!r}; use one of {sorted(DATES)}")
    rng = np.random.default_rng(seed)
    n_dates = DATES[preset]
    root = work_dir / "bench" / f"labelstudio-{preset}-{seed}-{uuid.uuid4().hex[:6]}"
    config = ServerConfig(
        root=root,
        env=work_dir / "labelstudio" / "label-studio-env",
        admin_email="admin@striketracker.bench",
        admin_password=uuid.uuid4().hex,
        api_token=legacy_token_from_secret(uuid.uuid4().hex),
        port=_free_port(),
    )
    server = LabelStudioServer(config)
    figures: dict[str, Any] = {
        "preset": preset,
        "seed": seed,
        "config": kind,
        "n_tasks": N_TASKS,
        "n_dates": n_dates,
    }
    with console.status("installing Label Studio (idempotent)"):
        server.install()
    try:
        with console.status("first start on a fresh data dir (migrations)"):
            figures["first_start_s"], _ = _timed(lambda: server.start(timeout=600))
        server.stop()
        with console.status("restart on the same data dir"):
            figures["restart_s"], _ = _timed(lambda: server.start(timeout=300))
        client = LabelStudioClient(config.url, config.api_token, timeout=600)
        figures.update(_push_and_pull(client, config.url, rng, n_dates, UPDATES[preset], kind))
        client.close()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    return figures


def _push_and_pull(
    client: LabelStudioClient, url: str, rng: np.random.Generator, n_dates: int, n_updates: int, kind: str
) -> dict[str, Any]:
    f: dict[str, Any] = {}
    specs = _specs(rng, n_dates)
    base_url = "http://127.0.0.1:8000"
    secret = b"benchmark-pseudonym-key"
    a = client.create_project(ProjectSettings(title="bench-push-bulk", config=kind))
    b = client.create_project(ProjectSettings(title="bench-push-chunked", config=kind))
    with console.status("push 2,000 tasks + predictions, one call"):
        f["push_2000_s"], bulk = _timed(
            lambda: client.push(
                a, specs, public_base_url=base_url, model_version="bench-1", chunk_size=N_TASKS
            )
        )
    assert len(bulk.created) == N_TASKS and bulk.predictions == N_TASKS
    with console.status("push 2,000 tasks + predictions, 250 per call"):
        f["push_2000_chunked_s"], chunked = _timed(
            lambda: client.push(b, specs, public_base_url=base_url, model_version="bench-1", chunk_size=250)
        )
    assert len(chunked.created) == N_TASKS
    with console.status("push the same 2,000 again (idempotent)"):
        f["push_again_s"], again = _timed(
            lambda: client.push(a, specs, public_base_url=base_url, model_version="bench-1")
        )
    f["push_again_created"] = len(again.created)
    f["push_tasks_per_s"] = N_TASKS / f["push_2000_s"]

    invite = client.invite_token()
    users = []
    for i in range(N_VOLUNTEERS):
        token = signup_volunteer(
            url, invite, f"bench-volunteer{i}@striketracker.bench", f"Bench-{i}-{uuid.uuid4().hex}"
        )
        volunteer = LabelStudioClient(url, token)
        users.append(int(volunteer.whoami()["id"]))
        volunteer.close()
    c = client.create_project(ProjectSettings(title="bench-pull", config=kind))
    items = []
    for spec in specs:
        item = task_payload(spec, public_base_url=base_url, model_version="bench-1", kind=kind)
        item["annotations"] = [
            {
                "result": states_to_result([STATES[int(s)] for s in rng.integers(0, 4, n_dates)]),
                "completed_by": user,
            }
            for user in users
        ]
        items.append(item)

    def import_all() -> int:
        n = 0
        for start in range(0, len(items), 1000):
            chunk = items[start : start + 1000]
            client.import_tasks(c, chunk)
            n += sum(len(item["annotations"]) for item in chunk)
        return n

    with console.status("create 6,000 annotations (import with annotations embedded)"):
        f["import_6000_annotations_s"], f["annotations_created"] = _timed(import_all)

    with console.status("pull 6,000 annotations (one export call)"):
        f["pull_6000_s"], full = _timed(lambda: client.pull(c, secret=secret))
    f["pulled_annotations"] = len(full.annotations)
    f["pulled_volunteers"] = len({x.volunteer_id for x in full.annotations})
    f["pull_annotations_per_s"] = len(full.annotations) / f["pull_6000_s"]
    with console.status("pull 6,000 annotations (paged task list)"):
        start_state = SyncState(c, cursor="1970-01-01T00:00:00Z")
        f["pull_6000_paged_s"], paged = _timed(lambda: client.pull(c, secret=secret, state=start_state))
    f["pulled_annotations_paged"] = len(paged.annotations)
    with console.status("incremental pull, nothing changed"):
        f["pull_noop_s"], noop = _timed(lambda: client.pull(c, secret=secret, state=full.state))
    f["pull_noop_annotations"] = len(noop.annotations)
    ids = sorted(full.state.seen)
    chosen = rng.choice(len(ids), size=n_updates, replace=False)
    for k in chosen:
        client.update_annotation(ids[int(k)], states_to_result(("destroyed",) * n_dates))
    with console.status(f"incremental pull after {n_updates} updates"):
        f["pull_incremental_s"], inc = _timed(lambda: client.pull(c, secret=secret, state=noop.state))
    f["pull_incremental_annotations"] = len(inc.annotations)
    f["pull_incremental_tasks_read"] = inc.tasks_fetched
    for project in (a, b, c):
        client.delete_project(project)
    return f


def _plot(figures: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [
        "first_start_s",
        "restart_s",
        "push_2000_s",
        "push_2000_chunked_s",
        "push_again_s",
        "import_6000_annotations_s",
        "pull_6000_s",
        "pull_6000_paged_s",
        "pull_noop_s",
        "pull_incremental_s",
    ]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    values = [figures[k] for k in keys]
    ax.barh(keys, values, color=["#888"] * 2 + ["#3a7"] * 3 + ["#aaa"] + ["#37a"] * 4)
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:.2f}", va="center", fontsize=8)
    ax.axvline(10, color="#3a7", ls="--", lw=0.8, label="push target 10 s")
    ax.axvline(15, color="#37a", ls=":", lw=0.8, label="pull target 15 s")
    ax.invert_yaxis()
    ax.set_xlabel("seconds (wall clock)")
    ax.set_title(
        f"Label Studio 1.23.2, {figures['preset']} preset ({figures['n_dates']} dates/task), seed {figures['seed']}"
    )
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point."""
    parser = benchmark_parser(__doc__.splitlines()[0] if __doc__ else None, presets=sorted(DATES))
    parser.add_argument("--config", choices=list(CONFIGS), default="compact", help="the labeling config")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    figures = run(args.preset, args.seed, settings.work_dir, args.config)
    png = (
        args.json or settings.work_dir / "bench" / f"labelstudio-{args.preset}-{args.seed}.json"
    ).with_suffix(".png")
    png.parent.mkdir(parents=True, exist_ok=True)
    _plot(figures, png)
    report(
        "labelstudio",
        figures,
        args,
        console=console,
        title=f"Label Studio benchmark ({args.preset}, seed {args.seed})",
        headline=(
            f"push 2,000 tasks: {figures['push_2000_s']:.2f} s (target < 10 s); "
            f"pull 6,000 annotations: {figures['pull_6000_s']:.2f} s (target < 15 s)"
        ),
        artifacts=[png],
    )
    return figures


if __name__ == "__main__":
    main()
