"""A child process for the resilience tests: runs one project call and dies at a named point, or under a file
size limit.

``--kill-at module:function[:N]`` (or ``module:Class.method[:N]``) wraps that function so that its N-th call (default 1) kills the process
with SIGKILL: before the call, or after it returns with ``--after``. ``--fsize BYTES`` caps every file the process
writes (``RLIMIT_FSIZE``; Python ignores SIGXFSZ, so a write past the cap fails with EFBIG as on a full disk).
Nothing is timed: the kill happens exactly at the named call. The job is a ``module:function`` called with the
remaining arguments (a ``--name value`` pair becomes a keyword, anything else a positional string); a project
error it raises is printed as ``error: <type>: <message>`` with exit status 1, so the test can read the message.

    python -m tests.resilience.child --kill-at model.chips:_swap_into_place -- \
        tests.resilience.jobs:ingest SCENARIO FOOTPRINTS OUT
"""

from __future__ import annotations

import argparse
import importlib
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def spawn(
    job: str, *args: object, kill_at: str = "", after: bool = False, fsize: int = 0
) -> subprocess.CompletedProcess[str]:
    """Run ``job`` in a child process (this module's ``main``) and wait for it; returns its exit and output."""
    cmd = [sys.executable, "-m", "tests.resilience.child", "--fsize", str(fsize)]
    if kill_at:
        cmd += ["--kill-at", kill_at] + (["--after"] if after else [])
    cmd += [job, "--", *map(str, args)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


def _kill_at(point: str, *, after: bool) -> None:
    module_name, name, *count = point.split(":")
    target = int(count[0]) if count else 1
    *owners, function = name.split(".")
    owner: Any = importlib.import_module(module_name)
    for attribute in owners:  # ``pathlib:Path.rename`` patches a method
        owner = getattr(owner, attribute)
    original: Callable[..., Any] = getattr(owner, function)
    calls = 0

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == target and not after:
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        if calls == target and after:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(owner, function, wrapped)


def _job_arguments(rest: list[str]) -> tuple[list[str], dict[str, str]]:
    args: list[str] = []
    kwargs: dict[str, str] = {}
    items = iter(rest)
    for item in items:
        if item.startswith("--"):
            kwargs[item[2:].replace("-", "_")] = next(items)
        else:
            args.append(item)
    return args, kwargs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kill-at", default="")
    parser.add_argument("--after", action="store_true")
    parser.add_argument("--fsize", type=int, default=0)
    parser.add_argument("job")
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    ns = parser.parse_args(argv)
    module_name, _, function = ns.job.partition(":")
    job = getattr(importlib.import_module(module_name), function)
    if ns.kill_at:
        _kill_at(ns.kill_at, after=ns.after)
    if ns.fsize:
        resource.setrlimit(resource.RLIMIT_FSIZE, (ns.fsize, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    args, kwargs = _job_arguments([r for r in ns.rest if r != "--"])
    try:
        job(*args, **kwargs)
    except Exception as exc:
        if type(exc).__module__.split(".")[0] not in {"model", "labeling", "active_learning", "serving"}:
            raise
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    print("done", flush=True)


if __name__ == "__main__":
    main()
