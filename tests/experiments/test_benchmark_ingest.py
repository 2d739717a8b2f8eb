"""The ingest benchmark runs on the tiny preset and reports the figures the issue names."""

from __future__ import annotations

import fcntl
import json
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any


def test_tiny_ingest_benchmark_reports_its_figures(tmp_path: Path) -> None:
    from experiments.benchmarks import ingest

    out = tmp_path / "ingest.json"
    figures = ingest.main(
        ["--preset", "tiny", "--seed", "0", "--json", str(out), "--no-mlflow", "--subset", "20"]
    )
    written = json.loads(out.read_text())
    for key in ("buildings", "dates", "chips", "seconds", "chips_per_s", "peak_rss_mb"):
        assert key in written, key
    assert written["chips"] == written["buildings"] * written["dates"] > 0
    assert figures["chips_per_s"] > 0 and figures["peak_rss_mb"] > 0
    assert figures["tiled_vs_per_building_max_abs_diff"] <= 1  # the two read strategies cut the same chips
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def test_folder_lock_serialises_processes_on_the_same_folder(tmp_path: Path) -> None:
    """Another process cannot take the lock while one holds it, and a process waiting in folder_lock goes on as
    soon as it is released. Answers come back through pipes: nothing waits on a clock. (The heavy benchmark
    module is imported inside functions so that the spawned probes start fast.)"""
    import multiprocessing

    from experiments.benchmarks.ingest import folder_lock

    folder = tmp_path / "scenarios" / "district-4"
    log = tmp_path / "log.txt"
    ctx = multiprocessing.get_context("spawn")
    with folder_lock(folder):
        assert _ask(ctx, _try_lock, folder) == "busy"  # fails fast: a non-blocking attempt while held
        waiting, waiter = _start(ctx, _append_under_lock, folder, log)
        log.write_text("first\n")
    assert _ask(ctx, _try_lock, folder) == "free"
    assert waiting.recv() == "first\n"  # what the waiter read once it had the lock
    waiter.join()
    assert waiter.exitcode == 0
    assert log.read_text() == "first\nsecond\n"


def _start(ctx: Any, target: Callable[..., None], *args: Any) -> tuple[Connection, Any]:
    """Start ``target(*args, conn)`` in a process; return the read end of its pipe and the process."""
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=target, args=(*args, send))
    process.start()
    send.close()
    return receive, process


def _ask(ctx: Any, target: Callable[..., None], *args: Any) -> str:
    """Run ``target(*args, conn)`` in another process and return what it sends back."""
    receive, process = _start(ctx, target, *args)
    answer = receive.recv()
    process.join()
    return answer


def _try_lock(folder: Path, conn: Connection) -> None:
    """Try folder_lock's lock file without waiting and report ``busy`` or ``free``."""
    with open(folder.parent / f"{folder.name}.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            conn.send("busy")
        else:
            fcntl.flock(handle, fcntl.LOCK_UN)
            conn.send("free")


def _append_under_lock(folder: Path, log: Path, conn: Connection) -> None:
    from experiments.benchmarks.ingest import folder_lock

    with folder_lock(folder):
        conn.send(log.read_text() if log.exists() else "")
        with log.open("a") as handle:
            handle.write("second\n")
