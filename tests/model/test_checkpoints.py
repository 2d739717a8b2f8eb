"""Training checkpoints: written whole or not at all, unreadable ones never resumed from, one key per training."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
import torch

from model.checkpoints import LAST, RenamedCheckpointIO, resume_point, training_key


def test_a_failed_save_leaves_the_previous_checkpoint_whole_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "key" / LAST
    io = RenamedCheckpointIO()
    io.save_checkpoint({"epoch": 0, "state": torch.ones(3)}, path)
    with pytest.raises((TypeError, AttributeError, RuntimeError)):
        io.save_checkpoint({"epoch": 1, "lock": threading.Lock()}, path)  # cannot be pickled: fails mid-way
    assert [p.name for p in path.parent.iterdir()] == [LAST]
    assert torch.load(path, weights_only=False)["epoch"] == 0


def test_the_resume_point_is_the_last_whole_checkpoint_and_an_unreadable_one_is_set_aside(
    tmp_path: Path,
) -> None:
    assert resume_point(tmp_path, "k").checkpoint is None
    RenamedCheckpointIO().save_checkpoint({"epoch": 2}, tmp_path / "k" / LAST)
    dead = tmp_path / "k" / f".{LAST}.{socket.gethostname()}-999999999-0123abcd.part"  # no such pid
    dead.write_bytes(b"half")
    resume = resume_point(tmp_path, "k")
    assert resume.checkpoint == tmp_path / "k" / LAST and resume.epochs_done == 3
    assert not dead.exists()
    (tmp_path / "k" / LAST).write_bytes(b"PK\x03\x04 truncated")  # what a non-atomic writer leaves
    with pytest.warns(UserWarning, match="cannot read this checkpoint"):
        assert resume_point(tmp_path, "k").checkpoint is None
    assert sorted(p.name for p in (tmp_path / "k").iterdir()) == [f"{LAST}.unreadable"]
    resume.clear()
    assert not (tmp_path / "k").exists()


def test_the_key_changes_with_the_settings_the_data_and_the_input_files(tmp_path: Path) -> None:
    pseudo = tmp_path / "pseudo.csv"
    pseudo.write_text("a")
    key = training_key({"model": {"width": 16}}, fingerprints=["cache", "labels"], files=[pseudo])
    assert key == training_key({"model": {"width": 16}}, fingerprints=["cache", "labels"], files=[pseudo])
    assert key != training_key({"model": {"width": 32}}, fingerprints=["cache", "labels"], files=[pseudo])
    assert key != training_key({"model": {"width": 16}}, fingerprints=["cache", "labels2"], files=[pseudo])
    pseudo.write_text("b")
    assert key != training_key({"model": {"width": 16}}, fingerprints=["cache", "labels"], files=[pseudo])
