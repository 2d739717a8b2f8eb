"""The per-building torch dataset over a chip cache: chips, mask, validity, day offsets and targets."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from model.datamodule.arrays import ChipArrays
from model.datamodule.labels import (
    GapLabels,
)
from model.errors import LabelError

__all__ = ["ChipDataset"]


class ChipDataset(Dataset[dict[str, torch.Tensor]]):
    """One item per building: its chips, mask, validity, day offsets and (when labelled) its targets."""

    def __init__(
        self,
        chips: ChipArrays,
        rows: np.ndarray,
        labels: GapLabels | None = None,
        weights: np.ndarray | None = None,
    ) -> None:
        self.chips = chips
        self.rows = np.asarray(rows, dtype=np.int64)
        self.labels = labels
        self.weights = weights
        self.days = torch.from_numpy(chips.days())
        self.scene_days = [torch.from_numpy(scene.days()) for scene in chips.scenes]
        self.scene_of_rows = chips.scene_of_rows
        if labels is not None and len(labels.building_ids) != len(self.rows):
            raise LabelError(f"{len(labels.building_ids)} label rows for {len(self.rows)} buildings")

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        row = int(self.rows[i])
        item = {
            "chips": torch.from_numpy(np.array(self.chips.read(row))),
            "mask": torch.from_numpy(np.array(self.chips.mask[row])),
            "valid": torch.from_numpy(np.array(self.chips.valid[row], dtype=np.float32)),
            "days": self.scene_days[self.scene_of_rows[row]] if self.scene_days else self.days,
            "row": torch.tensor(row),
        }
        if self.labels is not None:
            item["target"] = torch.from_numpy(self.labels.target[i])
            item["interval"] = torch.tensor(bool(self.labels.interval[i]))
            item["grade"] = torch.tensor(int(self.labels.grade[i]))
            w = 1.0 if self.weights is None else float(self.weights[i])
            item["weight"] = torch.tensor(w, dtype=torch.float32)
        return item
