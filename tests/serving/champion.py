"""A real champion in a real (temporary) MLflow registry: an untrained dating network, registered and promoted.

Its dates mean nothing; what the tests check is the ML-backend protocol around it (versions, shapes, order).
"""

from __future__ import annotations

import torch

from active_learning.settings import Settings
from model.registry import CHAMPION, MODEL_NAME, ModelRef, log_training_run
from model.task import DatingTask


def register_champion(settings: Settings, chip_size: int = 16, *, seed: int = 0) -> ModelRef:
    """Register a small untrained DatingTask as a new version and give it the ``champion`` alias."""
    torch.manual_seed(seed)
    task = DatingTask(width=8, embed_dim=16, d_model=16, layers=1, heads=2, mc_samples=2, date_context=True)
    tracking = settings.tracking()
    ref = log_training_run(
        task,
        tracking,
        params={"purpose": "service tests"},
        metrics={},
        data_fingerprint="world-fingerprint-0001",
        label_snapshot="none",
        chip_size=chip_size,
    )
    tracking.client().set_registered_model_alias(MODEL_NAME, CHAMPION, ref.version)
    return ref
