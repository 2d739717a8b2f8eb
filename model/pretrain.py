"""Self-supervised pretraining of the chip encoder on a campaign's own unlabelled chips (SimCLR).

A real campaign has a few hundred labelled buildings but every building of the city at every date unlabelled.
The chip encoder of the dating network is pretrained on all of those chips with SimCLR (Chen et al., 2020,
"A Simple Framework for Contrastive Learning of Visual Representations"): two augmented views of one chip must
be nearer to each other than to the other chips of the batch. The augmentations are those of a real timeline
(:func:`model.augment.sensor_augment`: radiometry, blur, noise, scale), plus a shift of a few pixels
(misregistration) and a random flip and quarter turn, so the encoder learns what stays the same across sensors
and dates, which is what the dating network must see past.

The trainer is torchgeo's :class:`torchgeo.trainers.SimCLRTask` (its NT-Xent loss from lightly, projection head,
LARS optimiser and schedule). Only its backbone is ours: torchgeo builds backbones by timm name, while the
dating network's encoder also sees the footprint mask and the per-band chip statistics
(:meth:`model.network.DatingNetwork.encode`), so :class:`ChipSimCLR` swaps in that encoder. The pretrained
weights (encoder and statistics projection) seed a :class:`model.task.DatingTask` through ``init_encoder``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightly.models.modules import SimCLRProjectionHead
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchgeo.trainers import SimCLRTask

from model.augment import sensor_augment
from model.datamodule import ChipArrays
from model.network import DatingNetwork, NetworkConfig

__all__ = ["ChipSimCLR", "ChipViews", "pretrain_encoder"]


class _Embed(nn.Module):
    """The dating network's chip encoder as a plain backbone: ``[B, C + 1, H, W]`` (bands, then mask) -> ``[B, E]``."""

    def __init__(self, network: DatingNetwork) -> None:
        super().__init__()
        self.network = network
        self.num_features = network.config.embed_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network.encode(x[:, None, :-1], x[:, -1])[:, 0]


class _TimelineViews(nn.Module):
    """SimCLR's augmentation for chips: per-view sensor change, shift, flip and quarter turn (mask moves along)."""

    def __init__(self, strength: float, shift_px: int) -> None:
        super().__init__()
        self.strength = strength
        self.shift_px = shift_px

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bands = sensor_augment(x[:, None, :-1].round().clamp(0, 255).to(torch.uint8), self.strength)[:, 0]
        out = torch.cat([bands.float(), x[:, -1:]], dim=1)
        k = int(torch.randint(0, 4, ()))
        out = torch.rot90(out, k, dims=(-2, -1))
        if bool(torch.randint(0, 2, ())):
            out = out.flip(-1)
        if self.shift_px > 0:
            dy, dx = (int(v) for v in torch.randint(-self.shift_px, self.shift_px + 1, (2,)))
            out = torch.cat([torch.roll(out[:, :-1], (dy, dx), dims=(-2, -1)), out[:, -1:]], dim=1)
        return out


class ChipSimCLR(SimCLRTask):
    """torchgeo's SimCLR trainer with the dating network's chip encoder as its backbone (module docstring).

    Args:
        network: the dating network's hyperparameters (:class:`model.network.NetworkConfig` fields); the
            encoder pretrained here is that network's.
        strength: strength of the sensor augmentation between the two views.
        shift_px: largest shift between the two views (misregistration).
        **simclr: :class:`torchgeo.trainers.SimCLRTask` arguments (``lr``, ``temperature``, ``layers``, ...).
    """

    def __init__(
        self, network: dict[str, Any], strength: float = 1.0, shift_px: int = 3, **simclr: Any
    ) -> None:
        self.network_config = NetworkConfig(**network)
        super().__init__(
            in_channels=self.network_config.in_channels + 1,
            augmentations=_TimelineViews(strength, shift_px),
            **simclr,
        )

    def configure_models(self) -> None:
        """The dating network's encoder as backbone, and SimCLR's projection head."""
        self.backbone = _Embed(DatingNetwork(self.network_config))
        dim = self.network_config.embed_dim
        self.projection_head = SimCLRProjectionHead(dim, dim, dim, self.hparams["layers"])
        self.avg_output_std = 0.0

    def encoder_state(self) -> dict[str, torch.Tensor]:
        """The pretrained weights, keyed as in a :class:`model.network.DatingNetwork` (encoder, stats_proj)."""
        assert isinstance(self.backbone, _Embed)
        network = self.backbone.network
        return {
            **{f"encoder.{k}": v for k, v in network.encoder.state_dict().items()},
            **{f"stats_proj.{k}": v for k, v in network.stats_proj.state_dict().items()},
        }


class ChipViews(Dataset[dict[str, torch.Tensor]]):
    """Every (building, date) chip of some caches whose valid fraction reaches ``min_valid``, as SimCLR input.

    Items are ``{"image": float [C + 1, H, W]}``: the first ``bands`` bands (0..255), then the footprint mask.
    """

    def __init__(self, scenes: Sequence[ChipArrays], bands: int, min_valid: float = 0.5) -> None:
        self.scenes = list(scenes)
        self.bands = bands
        self.items = [
            (k, int(row), int(t))
            for k, scene in enumerate(self.scenes)
            for row, t in zip(*np.nonzero(np.asarray(scene.valid) >= min_valid), strict=True)
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        k, row, t = self.items[i]
        scene = self.scenes[k]
        chip = torch.from_numpy(np.array(scene.read(row)[t, : self.bands])).float()
        mask = torch.from_numpy(np.array(scene.mask[row])).float()[None]
        return {"image": torch.cat([chip, mask], dim=0)}


def pretrain_encoder(
    scenes: Sequence[ChipArrays],
    network: dict[str, Any],
    out: Path,
    *,
    epochs: int = 30,
    batch_size: int = 128,
    lr: float = 0.3,
    strength: float = 1.0,
    seed: int = 0,
    progress: bool = False,
) -> Path:
    """Pretrain the dating network's encoder with SimCLR on every clear chip of ``scenes``; save its weights.

    Args:
        scenes: chip caches of the campaign (labels are not used).
        network: :class:`model.network.NetworkConfig` fields of the network to seed.
        out: file for the weights (a state dict for ``DatingTask(init_encoder=...)``).
        epochs / batch_size / lr: SimCLR schedule (LARS with warm-up and cosine decay, torchgeo's).

    Returns:
        ``out``.
    """
    fields = {f.name for f in dataclasses.fields(NetworkConfig)}
    network = {k: v for k, v in network.items() if k in fields}
    views = ChipViews(scenes, int(network.get("in_channels", 4)))
    L.seed_everything(seed, verbose=False)
    task = ChipSimCLR(
        network,
        strength=strength,
        lr=lr,
        version=1,
        layers=2,
        memory_bank_size=0,
        temperature=0.2,
        weight_decay=1e-6,
    )
    loader = DataLoader(
        views,
        batch_size=min(batch_size, len(views)),
        shuffle=True,
        drop_last=len(views) > batch_size,
        generator=torch.Generator().manual_seed(seed),
    )
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        log_every_n_steps=max(1, math.ceil(len(views) / batch_size)),
    )
    trainer.fit(task, train_dataloaders=loader)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(task.encoder_state(), out)
    return out
