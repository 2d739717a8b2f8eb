"""The LightningDataModule: chip cache + label table -> block-split train/val loaders and a predict loader."""

from __future__ import annotations

import dataclasses
import functools

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from model.datamodule.arrays import ChipArrays
from model.datamodule.dataset import ChipDataset
from model.datamodule.labels import GapLabels
from model.datamodule.splits import split_by_blocks
from model.errors import DataMismatchError, LabelError

__all__ = ["ChipDataModule"]


class ChipDataModule(L.LightningDataModule):
    """Chip cache + label table -> block-split train/val loaders, and a predict loader over every building.

    Args:
        cache: chip cache folder (or pass ``chip_arrays``), or a list of them: several scenes trained at once
            (:meth:`ChipArrays.concat`; same number of dates, unique building ids).
        labels: label CSV (or pass ``gap_labels``), or one per cache, in the same order (each read against
            its own scene's dates; ``block_id`` values are kept apart per scene).
        val_fraction: share of labelled buildings (by whole blocks) held out for validation.
        block_size_m: grid cell for block splits when the labels carry no ``block_id``.
        batch_size: buildings per batch.
        num_workers: DataLoader workers.
        seed: split seed.
        class_balance: weight the loss so damaged and intact buildings count equally.
        label_noise: uniform floor mixed into soft (crowd) label rows for training, see
            :meth:`GapLabels.with_label_noise`.
        calibration_label_noise: the (smaller) floor of the validation labels the temperature is fitted on. A
            large floor makes confident disagreement with the crowd cheap, and the fitted temperature then
            collapses towards a needlessly sharp posterior once the network fits its labels well.
        calibration_prior_buildings: validation buildings the temperature fit must see before it outweighs
            the prior belief that the trained network is calibrated (:func:`model.calibration.shrink_temperature`).
            On the district benchmark (120-160 validation buildings, crowd labels) fitted temperatures of
            0.6-1.6 made ECE on the unseen scenario worse than no scaling on most seed pairs.
        expected_fingerprint: refuse a cache with another fingerprint (e.g. the one a model was trained on).
        pseudo_labels: optional label CSV of *pseudo-labels* (e.g. a previous model's confident posteriors on
            unlabelled buildings, :func:`model.predict.pseudo_labels`). They only ever join the training rows:
            buildings that have a real label, or lie in a validation block, are dropped from them, so validation
            and the temperature stay fitted on real labels.
        pseudo_weight: loss weight of a pseudo-labelled building relative to a labelled one.
        chip_arrays / gap_labels / pseudo_gap_labels: in-memory data instead of paths (benchmarks, tests).
    """

    def __init__(
        self,
        cache: str | list[str] | None = None,
        labels: str | list[str] | None = None,
        val_fraction: float = 0.2,
        block_size_m: float = 200.0,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        class_balance: bool = True,
        label_noise: float = 0.1,
        calibration_label_noise: float = 0.03,
        calibration_prior_buildings: float = 1000.0,
        expected_fingerprint: str | None = None,
        pseudo_labels: str | None = None,
        pseudo_weight: float = 0.5,
        chip_arrays: ChipArrays | None = None,
        gap_labels: GapLabels | None = None,
        pseudo_gap_labels: GapLabels | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["chip_arrays", "gap_labels", "pseudo_gap_labels"])
        if not 0.0 < pseudo_weight <= 1.0:
            raise LabelError(f"pseudo_weight must be in (0, 1], got {pseudo_weight}")
        self.cache = cache
        self.labels_path = labels
        self.val_fraction = val_fraction
        self.block_size_m = block_size_m
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.class_balance = class_balance
        self.label_noise = label_noise
        self.calibration_label_noise = calibration_label_noise
        if calibration_prior_buildings < 0:
            raise LabelError(f"calibration_prior_buildings must be >= 0, got {calibration_prior_buildings}")
        self.calibration_prior_buildings = calibration_prior_buildings
        self.expected_fingerprint = expected_fingerprint
        self._chips = chip_arrays
        self._labels = gap_labels
        self.pseudo_labels_path = pseudo_labels
        self.pseudo_weight = pseudo_weight
        self._pseudo = pseudo_gap_labels
        self.train_rows: np.ndarray | None = None
        self.val_rows: np.ndarray | None = None
        self.pseudo: GapLabels | None = None
        """The pseudo-labels kept for training (after :meth:`setup`), or None."""

    @property
    def chips(self) -> ChipArrays:
        """The chip arrays (opened on first use)."""
        if self._chips is None:
            if not self.cache:
                raise LabelError("ChipDataModule needs a chip cache: pass cache=PATH or chip_arrays")
            caches = [self.cache] if isinstance(self.cache, str) else list(self.cache)
            self._chips = ChipArrays.concat([ChipArrays.open(c) for c in caches])
        if self.expected_fingerprint and self._chips.fingerprint != self.expected_fingerprint:
            raise DataMismatchError(
                f"chip cache fingerprint {self._chips.fingerprint[:12]} differs from the expected "
                f"{self.expected_fingerprint[:12]}; the cache comes from another scenario or ingestion"
            )
        return self._chips

    @property
    def labels(self) -> GapLabels:
        """The label table (read on first use), checked against the cache's timeline."""
        if self._labels is None:
            if not self.labels_path:
                raise LabelError("ChipDataModule needs labels: pass labels=PATH (CSV) or gap_labels")
            self._labels = self._read_labels(self.labels_path)
        if self._labels.n_gaps != self.chips.n_dates + 1:
            raise DataMismatchError(
                f"labels have {self._labels.n_gaps} gaps but the chip cache has {self.chips.n_dates} dates; "
                "the labels belong to another timeline"
            )
        return self._labels

    def _read_labels(self, paths: str | list[str]) -> GapLabels:
        """One label CSV, or one per scene read against that scene's dates and joined in scene order."""
        if isinstance(paths, str):
            return GapLabels.read_csv(paths, self.chips.dates)
        scenes = self.chips.scenes or (self.chips,)
        if len(paths) != len(scenes):
            raise LabelError(
                f"{len(paths)} label files for {len(scenes)} chip caches; give one label CSV per cache, in order"
            )
        parts = []
        for k, (path, scene) in enumerate(zip(paths, scenes, strict=True)):
            part = GapLabels.read_csv(path, scene.dates)
            if part.block_ids is not None and len(scenes) > 1:
                part = dataclasses.replace(part, block_ids=tuple(f"s{k}:{b}" for b in part.block_ids))
            parts.append(part)
        return functools.reduce(GapLabels.concat, parts)

    @property
    def training_labels(self) -> GapLabels:
        """The labels as the loss sees them (soft rows with the label-noise floor)."""
        return self.labels.with_label_noise(self.label_noise)

    @property
    def calibration_labels(self) -> GapLabels:
        """The labels as the temperature fit sees them (soft rows with the calibration floor)."""
        return self.labels.with_label_noise(self.calibration_label_noise)

    def blocks(self) -> np.ndarray:
        """Spatial block of every labelled building."""
        labels = self.labels
        if labels.block_ids is not None:
            return np.asarray(labels.block_ids)
        return self.chips.blocks(self.chips.positions(labels.building_ids), self.block_size_m)

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict" or self.train_rows is not None:
            return
        labels = self.labels
        self.positions = self.chips.positions(labels.building_ids)
        self.train_rows, self.val_rows = split_by_blocks(self.blocks(), self.val_fraction, self.seed)
        self.weights = labels.class_weights() if self.class_balance else np.ones(len(labels.building_ids))
        self.pseudo = self._training_pseudo_labels(self.val_rows)

    def _training_pseudo_labels(self, val_rows: np.ndarray) -> GapLabels | None:
        """The pseudo-labels usable for training: not labelled for real, not near a validation building.

        "Near" is the same ``block_size_m`` grid cell of chip origins as a validation building (whatever block
        keys the labels carry), or, for a cache without origins, the same ``block_id``.
        """
        pseudo = self._pseudo
        if pseudo is None and self.pseudo_labels_path is not None:
            pseudo = GapLabels.read_csv(self.pseudo_labels_path, self.chips.dates)
        if pseudo is None:
            return None
        if pseudo.n_gaps != self.chips.n_dates + 1:
            raise DataMismatchError(
                f"pseudo-labels have {pseudo.n_gaps} gaps but the chip cache has {self.chips.n_dates} dates; "
                "they belong to another timeline"
            )
        if self.chips.origins is not None:
            cells = self.chips.blocks(np.arange(len(self.chips.building_ids)), self.block_size_m)
            near_val = np.isin(
                cells[self.chips.positions(pseudo.building_ids)], cells[self.positions[val_rows]]
            )
        elif pseudo.block_ids is not None and self.labels.block_ids is not None:
            near_val = np.isin(np.asarray(pseudo.block_ids), self.blocks()[val_rows])
        else:
            raise LabelError(
                "the chip cache has no chip origins and the pseudo-labels no block_id column; add block_id to "
                "the labels and the pseudo-labels"
            )
        labelled = np.isin(np.asarray(pseudo.building_ids), np.asarray(self.labels.building_ids))
        keep = np.flatnonzero(~labelled & ~near_val)
        return pseudo.subset(keep) if len(keep) else None

    def _dataset(self, rows: np.ndarray) -> ChipDataset:
        labels = self.training_labels.subset(rows)
        return ChipDataset(self.chips, self.positions[rows], labels, self.weights[rows])

    def _train_dataset(self) -> ChipDataset:
        """Labelled training rows, plus the kept pseudo-labels at ``pseudo_weight``."""
        assert self.train_rows is not None
        if self.pseudo is None:
            return self._dataset(self.train_rows)
        labels = self.training_labels.subset(self.train_rows)
        pseudo = self.pseudo.with_label_noise(self.label_noise)
        pseudo_weights = pseudo.class_weights() if self.class_balance else np.ones(len(pseudo.building_ids))
        return ChipDataset(
            self.chips,
            np.concatenate([self.positions[self.train_rows], self.chips.positions(pseudo.building_ids)]),
            labels.concat(pseudo),
            np.concatenate([self.weights[self.train_rows], self.pseudo_weight * pseudo_weights]),
        )

    def train_dataloader(self) -> DataLoader[dict[str, torch.Tensor]]:
        assert self.train_rows is not None
        return DataLoader(
            self._train_dataset(),
            batch_size=self.batch_size,
            shuffle=True,
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def val_dataloader(self) -> DataLoader[dict[str, torch.Tensor]]:
        assert self.val_rows is not None
        return DataLoader(
            self._dataset(self.val_rows), batch_size=self.batch_size, num_workers=self.num_workers
        )

    def predict_dataloader(self) -> DataLoader[dict[str, torch.Tensor]]:
        rows = np.arange(len(self.chips.building_ids))
        return DataLoader(
            ChipDataset(self.chips, rows), batch_size=self.batch_size, num_workers=self.num_workers
        )
