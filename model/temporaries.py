"""Temporaries named by their writer, so that a later run can tell those of killed writers and clear them.

A writer that is killed with SIGKILL cannot clean up: its half-written temporary (a chip cache being built, an
export or a checkpoint before its rename) is never read, because only a rename gives it its final name, but it
would hold its disk space forever. Every such temporary carries a :func:`writer_tag`, ``<host>-<pid>-<random>``;
:func:`clear_dead_temporaries` removes those whose writer ran on this host and is gone, and never touches a live
writer's (its process still exists) or another host's (its process cannot be checked from here). The same tag on
an MLflow run lets training tell a run whose process was killed (:func:`writer_alive`).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import uuid
from pathlib import Path

__all__ = ["WRITER_TAG", "clear_dead_temporaries", "writer_alive", "writer_tag"]

WRITER_TAG = r"(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]{8}"
"""The regular expression of a :func:`writer_tag`, for building the pattern of a temporary's name."""


def writer_tag() -> str:
    """``<host>-<pid>-<random>``: names this process's temporaries so a later run can tell dead ones."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def writer_alive(tag: str) -> bool:
    """Whether the writer of ``tag`` may still be running: True unless it ran on this host and its pid is gone.

    A tag that is not a :func:`writer_tag`, or comes from another host, counts as alive (it cannot be checked).
    """
    match = re.fullmatch(WRITER_TAG, tag)
    return match is None or not _dead(match["host"], int(match["pid"]))


def _dead(host: str, pid: int) -> bool:
    """Whether process ``pid`` of ``host`` is known to be gone (only this host's processes can be checked)."""
    if host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, owned by another user
    return False


def clear_dead_temporaries(folder: Path, pattern: str) -> list[Path]:
    """Remove the files and folders in ``folder`` whose name matches ``pattern`` and whose writer is dead.

    Args:
        folder: where the temporaries lie (a missing folder has none).
        pattern: a regular expression matching a whole name, with :data:`WRITER_TAG` in it (the ``host`` and
            ``pid`` groups), e.g. ``rf"\\.dated\\.{WRITER_TAG}\\.part.*"``.

    Returns:
        The temporaries removed.
    """
    if not folder.is_dir():
        return []
    compiled = re.compile(pattern)
    removed = []
    for sibling in sorted(folder.iterdir()):
        match = compiled.fullmatch(sibling.name)
        if match is None or not _dead(match["host"], int(match["pid"])):
            continue
        if sibling.is_dir() and not sibling.is_symlink():
            shutil.rmtree(sibling, ignore_errors=True)
        else:
            sibling.unlink(missing_ok=True)
        removed.append(sibling)
    return removed
