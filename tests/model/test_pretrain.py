"""Self-supervised pretraining of the chip encoder (torchgeo's SimCLR trainer with our encoder) and its use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.errors import ModelConfigError
from model.pretrain import ChipViews, pretrain_encoder
from model.task import DatingTask
from tests.model.dating_data import synthetic_chips

NETWORK = {"input_size": 16, "width": 8, "embed_dim": 16, "in_channels": 3}


def test_every_clear_chip_is_a_view(rng: np.random.Generator) -> None:
    arrays, _ = synthetic_chips(rng, n=5, n_dates=3, size=16)
    views = ChipViews([arrays], bands=3)
    assert len(views) == int((arrays.valid >= 0.5).sum())
    item = views[0]["image"]
    assert item.shape == (4, 16, 16) and float(item[-1].max()) == 255.0  # bands, then the footprint mask


def test_pretrained_encoder_seeds_a_dating_task(rng: np.random.Generator, tmp_path: Path) -> None:
    arrays, _ = synthetic_chips(rng, n=12, n_dates=3, size=16)
    torch.manual_seed(0)
    untrained = DatingTask(**NETWORK)
    path = pretrain_encoder([arrays], NETWORK, tmp_path / "encoder.pt", epochs=2, batch_size=8, seed=0)
    state = torch.load(path, weights_only=True)
    assert set(state) == {k for k in untrained.net.state_dict() if k.startswith(("encoder.", "stats_proj."))}
    task = DatingTask(**NETWORK, init_encoder=str(path))
    for key, value in state.items():
        torch.testing.assert_close(task.net.state_dict()[key], value)
    assert not torch.equal(untrained.net.state_dict()["encoder.head.weight"], state["encoder.head.weight"])
    with pytest.raises(ModelConfigError, match="do not fit this model's encoder"):
        DatingTask(input_size=16, width=16, embed_dim=16, in_channels=3, init_encoder=str(path))
