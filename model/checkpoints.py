"""Resumable training: one checkpoint per training, written by rename, so a killed ``train`` resumes on rerun.

A real-city training runs for hours, so a rerun after a crash or a kill resumes from the checkpoint of the last
finished epoch (Lightning's ``trainer.fit(ckpt_path=...)``: weights, optimiser, scheduler and epoch counter)
instead of starting over. Each training has its own folder under the checkpoint root, named by
:func:`training_key` (the configuration, the chip cache fingerprint, the label snapshot and the content of any
other input file), so a rerun with other data or settings never resumes from a foreign checkpoint. The folder
holds one file, ``last.ckpt``, replaced after every epoch; it is deleted once the model is registered.

Lightning's own "atomic" save stages a checkpoint in the system's temporary folder and moves it, which copies into
the final name when that folder lies on another file system (a kill then leaves a truncated ``last.ckpt``);
:class:`RenamedCheckpointIO` writes to a temporary name beside the checkpoint instead
(:func:`model.temporaries.writer_tag`, cleared when its writer is dead) and renames it. A checkpoint that still
cannot be read is set aside, not resumed from. There is no "best" checkpoint: the model a later command loads is
the registered one, never a file from here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_warn

from model.temporaries import WRITER_TAG, clear_dead_temporaries, writer_tag

__all__ = ["LAST", "RenamedCheckpointIO", "Resume", "resume_point", "track_checkpoints", "training_key"]

LAST = "last.ckpt"


class RenamedCheckpointIO(TorchCheckpointIO):
    """:class:`TorchCheckpointIO` that writes each checkpoint to a temporary name beside it, then renames it."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        """Write ``checkpoint`` to ``path`` whole or not at all (fsync, then ``os.replace``)."""
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options (got {storage_options!r})")
        final = Path(path)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".{final.name}.{writer_tag()}.part"
        try:
            with tmp.open("wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class Resume:
    """Where a training keeps its checkpoint, and whether it resumes from one.

    Attributes:
        folder: this training's checkpoint folder.
        checkpoint: the checkpoint to resume from, or None (a fresh start).
        epochs_done: epochs the checkpoint has finished (0 on a fresh start).
    """

    folder: Path
    checkpoint: Path | None = None
    epochs_done: int = 0

    def clear(self) -> None:
        """Delete the folder: the training is finished and its model registered."""
        shutil.rmtree(self.folder, ignore_errors=True)


def training_key(
    config: Mapping[str, Any], *, fingerprints: Sequence[str], files: Sequence[Path] = ()
) -> str:
    """A name for one training: the same settings on the same data give the same key, anything else another.

    Args:
        config: the training settings (model, data, trainer; without loggers or callbacks, which vary per run).
        fingerprints: content fingerprints of the data (chip cache fingerprint, label snapshot id).
        files: other input files, hashed by content (a path can be rewritten between runs).
    """
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for fingerprint in fingerprints:
        digest.update(fingerprint.encode())
    for file in files:
        digest.update(Path(file).read_bytes())
    return digest.hexdigest()[:16]


def resume_point(root: Path, key: str) -> Resume:
    """The checkpoint folder of training ``key`` under ``root``, and its checkpoint if one can be resumed from.

    Temporaries of killed writers are removed first; a ``last.ckpt`` that cannot be read (written by something
    other than :class:`RenamedCheckpointIO`) is renamed ``last.ckpt.unreadable`` with a warning and the training
    starts over.
    """
    folder = Path(root) / key
    clear_dead_temporaries(folder, rf"\.{LAST}\.{WRITER_TAG}\.part")
    path = folder / LAST
    if not path.is_file():
        return Resume(folder)
    try:
        epoch = torch.load(path, map_location="cpu", weights_only=False)["epoch"]
    except (OSError, RuntimeError, EOFError, KeyError, TypeError, pickle.UnpicklingError) as exc:
        with contextlib.suppress(FileNotFoundError):  # another rank of the same training set it aside first
            os.replace(path, path.with_name(f"{LAST}.unreadable"))
        rank_zero_warn(f"{path}: cannot read this checkpoint ({exc}); set aside, training starts over")
        return Resume(folder)
    return Resume(folder, path, int(epoch) + 1)


def track_checkpoints(trainer: L.Trainer, resume: Resume) -> None:
    """Save ``last.ckpt`` of ``resume.folder`` after every epoch of ``trainer`` (written by rename)."""
    trainer.strategy.checkpoint_io = RenamedCheckpointIO()
    trainer.callbacks.append(  # type: ignore[attr-defined]
        ModelCheckpoint(
            dirpath=resume.folder,
            filename=Path(LAST).stem,
            save_top_k=1,
            enable_version_counter=False,
        )
    )
