"""Imagery ingestion, chip stacks, the dating network, change-point math, prediction and the MLflow registry.

Modules follow the data flow: ``timeline`` and ``buildings`` (inputs) -> ``chips`` (the ingest pipeline and
the chip cache) -> ``registration`` -> ``datamodule`` (arrays, labels, splits, the DataModule) -> ``network``
-> ``changepoint`` -> ``task`` -> ``calibration`` -> ``predict`` -> ``registry``; ``baseline`` is the
non-learned detector, ``change_features`` a low-capacity damage classifier on pre/post change statistics,
``xbd`` imports real xBD scenes, ``errors`` holds every exception type; ``checkpoints`` makes a killed training
resumable, and ``temporaries`` names the temporary files of every writer (chip cache,
checkpoints, and the service's exports) so that those of killed writers are cleared.

The public names below are re-exported here (``predict``, the function, is not: it shares its name with the
module ``model.predict``). They are imported on first use (PEP 562 ``__getattr__``), so
``import model.timeline`` stays light: the command line starts without loading torch or Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from model.baseline import ChangePointBaseline
    from model.buildings import Building
    from model.calibration import DatingMetrics, dating_metrics
    from model.change_features import ChangeClassifier
    from model.changepoint import gap_log_likelihood, gap_posterior, timed_posterior
    from model.chips import ChipStack, IngestParams, ingest
    from model.datamodule import ChipArrays, ChipDataModule, ChipDataset, GapLabels
    from model.network import DatingNetwork, NetworkConfig
    from model.predict import Predictions, write_posteriors
    from model.registry import ModelRef, Tracking
    from model.task import DatingTask
    from model.timeline import Acquisition, Timeline
    from model.xbd import XbdScene, import_xbd

_SOURCES = {  # name -> module it lives in; the same names as __all__
    "Acquisition": "model.timeline",
    "Building": "model.buildings",
    "ChangeClassifier": "model.change_features",
    "ChangePointBaseline": "model.baseline",
    "ChipArrays": "model.datamodule",
    "ChipDataModule": "model.datamodule",
    "ChipDataset": "model.datamodule",
    "ChipStack": "model.chips",
    "DatingMetrics": "model.calibration",
    "DatingNetwork": "model.network",
    "DatingTask": "model.task",
    "GapLabels": "model.datamodule",
    "IngestParams": "model.chips",
    "ModelRef": "model.registry",
    "NetworkConfig": "model.network",
    "Predictions": "model.predict",
    "Timeline": "model.timeline",
    "Tracking": "model.registry",
    "XbdScene": "model.xbd",
    "dating_metrics": "model.calibration",
    "gap_log_likelihood": "model.changepoint",
    "gap_posterior": "model.changepoint",
    "import_xbd": "model.xbd",
    "ingest": "model.chips",
    "timed_posterior": "model.changepoint",
    "write_posteriors": "model.predict",
}

__all__ = [
    "Acquisition",
    "Building",
    "ChangeClassifier",
    "ChangePointBaseline",
    "ChipArrays",
    "ChipDataModule",
    "ChipDataset",
    "ChipStack",
    "DatingMetrics",
    "DatingNetwork",
    "DatingTask",
    "GapLabels",
    "IngestParams",
    "ModelRef",
    "NetworkConfig",
    "Predictions",
    "Timeline",
    "Tracking",
    "XbdScene",
    "dating_metrics",
    "gap_log_likelihood",
    "gap_posterior",
    "import_xbd",
    "ingest",
    "timed_posterior",
    "write_posteriors",
]


def __getattr__(name: str) -> Any:
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module 'model' has no attribute {name!r}")
    return getattr(importlib.import_module(source), name)
