"""Training can start from another model's weights (the campaign warm-starts candidates from the champion)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.errors import ModelConfigError
from model.training import run_cli
from tests.model.dating_data import exact_labels, synthetic_chips, write_cache

CONFIG = Path(__file__).resolve().parents[2] / "experiments" / "configs" / "tiny.yaml"


def test_training_starts_from_the_given_weights(rng: np.random.Generator, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    arrays, gaps = synthetic_chips(rng, n=12, n_dates=4, size=16)
    cache = write_cache(arrays, tmp_path / "cache")
    labels = exact_labels(arrays, gaps).write_csv(tmp_path / "labels.csv", arrays.dates)
    args = ["--config", str(CONFIG), "--data.cache", str(cache), "--data.labels", str(labels),
            "--trainer.enable_progress_bar", "false"]  # fmt: skip
    parent = run_cli([*args, "--trainer.fast_dev_run", "true"]).task
    untrained = run_cli([*args, "--trainer.max_epochs", "0"], init_from=parent).task
    for name, value in parent.state_dict().items():
        if name != "temperature":  # refitted on validation after training
            assert torch.equal(value, untrained.state_dict()[name]), name
    with pytest.raises(ModelConfigError, match="another architecture"):
        run_cli([*args, "--trainer.max_epochs", "0", "--model.width", "8"], init_from=parent)
