"""Labels and chips for training: the chip arrays, the gap-label table, spatial-block splits and the DataModule.

One module per concept: :mod:`model.datamodule.arrays` (:class:`ChipArrays`, the cache as the network reads it),
:mod:`model.datamodule.labels` (:class:`GapLabels` and its CSV format), :mod:`model.datamodule.splits`
(spatial-block splits), :mod:`model.datamodule.dataset` (:class:`ChipDataset`) and
:mod:`model.datamodule.module` (:class:`ChipDataModule`).
"""

from model.datamodule.arrays import ChipArrays
from model.datamodule.dataset import ChipDataset
from model.datamodule.labels import GRADES, GapLabels, read_audit_gaps
from model.datamodule.module import ChipDataModule
from model.datamodule.splits import spatial_blocks, split_by_blocks

__all__ = [
    "GRADES",
    "ChipArrays",
    "ChipDataModule",
    "ChipDataset",
    "GapLabels",
    "read_audit_gaps",
    "spatial_blocks",
    "split_by_blocks",
]
