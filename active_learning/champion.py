"""The dating model as a campaign uses it: predict with the champion, train a warm-started candidate, promote.

:class:`CampaignModel` is the protocol the loop needs; :class:`RegistryModel` implements it with the project's
model package: training through the LightningCLI config (``model.training.run_cli``, warm-started from the
champion's weights), the MLflow registry (``candidate`` and ``champion`` aliases, ``model.registry.promote`` on
the campaign's audit set) and batch prediction (``model.predict``) of every building of the chip cache.

Trained models and their predictions are cached on disk by what determines them (config, epochs, the labels'
snapshot, the chip cache's fingerprint and the warm-start parent): training again on the same labels reuses the
trained network instead of spending minutes on it, so benchmark arms that share their first labels (``verify``
and ``estimate`` start from the same seed batch) share that model honestly, and a round killed mid-training is
not retrained from scratch if it had finished. Each registry still gets its own logged and registered version.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from active_learning.errors import CampaignError

if TYPE_CHECKING:  # the model package (torch, Lightning, MLflow) loads when a RegistryModel is used
    from model.datamodule import ChipArrays
    from model.registry import Tracking
    from model.task import DatingTask

__all__ = ["CampaignModel", "ModelOutput", "PromotionOutcome", "RegistryModel", "TrainingSet"]

_KEY_TAG = "campaign_train_key"


@dataclass(frozen=True)
class ModelOutput:
    """A model's posteriors for every building of the chip cache.

    Attributes:
        version: the registry label (``striketracker-dating/3``).
        building_ids: buildings, in row order.
        probs: ``[N, T + 1]`` calibrated gap posteriors.
        bald: ``[N]`` epistemic uncertainty (nats).
    """

    version: str
    building_ids: tuple[str, ...]
    probs: np.ndarray
    bald: np.ndarray


@dataclass(frozen=True)
class TrainingSet:
    """Soft gap labels for training: crowd posteriors (without the model) of human-reviewed buildings.

    Attributes:
        building_ids: the labelled buildings.
        probs: ``[N, T + 1]`` their crowd posteriors.
        grade: ``[N]`` 0 damaged, 1 destroyed, -1 unknown or not damaged.
        block_ids: spatial blocks (validation splits by whole blocks).
    """

    building_ids: tuple[str, ...]
    probs: np.ndarray
    grade: np.ndarray
    block_ids: tuple[str, ...] | None = None


@dataclass(frozen=True)
class PromotionOutcome:
    """The candidate against the champion on the audit set."""

    promoted: bool
    champion: str
    reason: str
    candidate_exact: float
    champion_exact: float | None


class CampaignModel(Protocol):
    """What the campaign loop needs from the dating model."""

    def champion(self) -> str | None:
        """The champion's registry label, or None before the first promotion."""
        ...

    def predict(self, version: str) -> ModelOutput:
        """Posteriors of every building by this version."""
        ...

    def train(self, labels: TrainingSet, *, warm_start: str | None, run_name: str) -> str:
        """Train a candidate (warm-started from ``warm_start``), register it; returns its label."""
        ...

    def promote(self, candidate: str, audit_ids: Sequence[str], audit_gaps: np.ndarray) -> PromotionOutcome:
        """Make the candidate champion if it beats the champion on the audit set (or there is none)."""
        ...

    def first_champion(self, candidate: str) -> PromotionOutcome:
        """Make the first candidate champion (there is no champion to compare with)."""
        ...


class RegistryModel:
    """:class:`CampaignModel` over the chip cache, a LightningCLI config and an MLflow registry.

    Args:
        chip_cache: the chip cache of the campaign's buildings.
        config: the LightningCLI training YAML.
        tracking: the MLflow store (runs and registry).
        cache_dir: trained models and predictions by content (shared between benchmark arms).
        epochs: training epochs from scratch (None: the config's).
        warm_epochs: training epochs when warm-started (None: ``epochs``).
        threads: torch CPU threads (None: torch's default).
    """

    def __init__(
        self,
        chip_cache: Path,
        config: Path,
        tracking: Tracking,
        cache_dir: Path,
        *,
        epochs: int | None = None,
        warm_epochs: int | None = None,
        threads: int | None = None,
    ) -> None:
        if not Path(config).is_file():
            raise CampaignError(f"training config {config} not found; pass an existing LightningCLI YAML")
        self.chip_cache = Path(chip_cache)
        self.config = Path(config)
        self.tracking = tracking
        self.cache_dir = Path(cache_dir)
        self.epochs = epochs
        self.warm_epochs = warm_epochs if warm_epochs is not None else epochs
        self.threads = threads
        self._chips: ChipArrays | None = None

    @property
    def chips(self) -> ChipArrays:
        from model.datamodule import ChipArrays

        if self._chips is None:
            self._chips = ChipArrays.open(self.chip_cache)
        return self._chips

    def champion(self) -> str | None:
        from model.errors import ChampionMissingError
        from model.registry import model_ref

        try:
            return model_ref(self.tracking).label
        except ChampionMissingError:
            return None

    def _key_of(self, version: str) -> str:
        from model.registry import MODEL_NAME

        number = version.rsplit("/", 1)[-1]
        mv = self.tracking.client().get_model_version(MODEL_NAME, number)
        return str(
            (mv.tags or {}).get(_KEY_TAG)
            or f"registry-{re.sub(r'[^A-Za-z0-9]+', '-', self.tracking.tracking_uri)}-{number}"
        )

    def predict(self, version: str) -> ModelOutput:
        from model.predict import predict
        from model.registry import load_model

        key = self._key_of(version)
        path = self.cache_dir / key / f"predictions-{self.chips.fingerprint[:16]}.npz"
        if not path.exists():
            task, _ = load_model(self.tracking, version=version.rsplit("/", 1)[-1])
            self._threads()
            out = predict(task, self.chips, progress=False)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp.npz")
            np.savez(tmp, building_ids=np.asarray(out.building_ids), probs=out.probs, bald=out.bald)
            os.replace(tmp, path)
        with np.load(path, allow_pickle=False) as data:
            return ModelOutput(
                version, tuple(str(b) for b in data["building_ids"]), data["probs"], data["bald"]
            )

    def train(self, labels: TrainingSet, *, warm_start: str | None, run_name: str) -> str:
        import torch

        from model.datamodule import GapLabels
        from model.registry import MODEL_NAME, load_model, log_training_run
        from model.training import run_cli

        chips = self.chips
        gap_labels = GapLabels.from_soft(labels.building_ids, labels.probs, labels.grade, labels.block_ids)
        epochs = self.warm_epochs if warm_start else self.epochs
        parent = self._key_of(warm_start) if warm_start else ""
        key = hashlib.sha256(
            json.dumps(
                [self.config.read_text(), epochs, parent, gap_labels.snapshot_id, chips.fingerprint]
            ).encode()
        ).hexdigest()[:20]
        folder = self.cache_dir / key
        model_file = folder / "model.pt"
        if model_file.exists():
            task = torch.load(model_file, weights_only=False)
            meta = json.loads((folder / "meta.json").read_text())
            ref = log_training_run(
                task,
                self.tracking,
                params={"warm_start": warm_start or "", "cached_from": key, **meta.get("params", {})},
                metrics=meta.get("metrics", {}),
                data_fingerprint=chips.fingerprint,
                label_snapshot=gap_labels.snapshot_id,
                chip_size=int(chips.chips.shape[-1]),
                run_name=run_name,
            )
        else:
            folder.mkdir(parents=True, exist_ok=True)
            csv = gap_labels.write_csv(folder / "labels.csv", chips.dates)
            args = [
                "--config",
                str(self.config),
                "--data.cache",
                str(self.chip_cache),
                "--data.labels",
                str(csv),
            ]
            args += ["--trainer.enable_progress_bar", "false"]
            if epochs is not None:
                args += ["--trainer.max_epochs", str(epochs)]
            init: DatingTask | None = None
            if warm_start:
                init, _ = load_model(self.tracking, version=warm_start.rsplit("/", 1)[-1])
            self._threads()
            # no checkpoints: a campaign retrain takes minutes, so a round killed mid-training retrains from the
            # start when it resumes (the round's state lives in the store); `striketracker train` resumes
            result = run_cli(args, tracking=self.tracking, run_name=run_name, init_from=init)
            if result.model is None:
                raise CampaignError("training registered no model; the campaign needs an MLflow registry")
            ref = result.model
            metrics = result.val_metrics.as_dict("val_cal_") if result.val_metrics is not None else {}
            params = {"temperature": result.temperature, "train_buildings": result.train_buildings}
            tmp = folder / ".model.pt.tmp"
            torch.save(result.task, tmp)
            (folder / "meta.json").write_text(json.dumps({"metrics": metrics, "params": params}))
            os.replace(tmp, model_file)
        self.tracking.client().set_model_version_tag(MODEL_NAME, ref.version, _KEY_TAG, key)
        return ref.label

    def promote(self, candidate: str, audit_ids: Sequence[str], audit_gaps: np.ndarray) -> PromotionOutcome:
        from model.calibration import dating_metrics
        from model.predict import predict
        from model.registry import promote

        chips = self.chips
        rows = chips.positions(list(audit_ids))
        gaps = np.asarray(audit_gaps)

        def evaluate(task: DatingTask):  # type: ignore[no-untyped-def]
            return dating_metrics(predict(task, chips, rows, progress=False).probs, gaps, chips.dates)

        decision = promote(
            self.tracking,
            evaluate,
            audit_id=f"{chips.fingerprint[:16]}:{hashlib.sha256(','.join(audit_ids).encode()).hexdigest()[:12]}",
            candidate=candidate.rsplit("/", 1)[-1],
        )
        champion = self.champion() or candidate
        return PromotionOutcome(
            decision.promoted,
            champion,
            decision.reason,
            decision.candidate_metrics.exact_gap_accuracy,
            decision.champion_metrics.exact_gap_accuracy if decision.champion_metrics else None,
        )

    def first_champion(self, candidate: str) -> PromotionOutcome:
        """Make the first candidate champion (no champion and no audit set yet)."""
        from model.registry import CHAMPION, MODEL_NAME

        self.tracking.client().set_registered_model_alias(MODEL_NAME, CHAMPION, candidate.rsplit("/", 1)[-1])
        return PromotionOutcome(
            True, candidate, f"no champion yet; {candidate} becomes the first champion", 0.0, None
        )

    def _threads(self) -> None:
        import torch

        if self.threads:
            torch.set_num_threads(self.threads)
