"""Augmentation for real sensors: what changes between two acquisitions of an unchanged building.

Real timelines mix satellites, seasons, sun and view angles. Each date of a training timeline gets its own draw
of photometric and geometric changes (as in Albumentations, Buslaev et al., 2020, here as batched torch ops on
whole timelines, which per-image augmentation libraries do not offer):

- radiometry: a gain per band around a common gain, an offset and a gamma (sensor response, haze, season);
- blur: a Gaussian blur of random width (sensor MTF, resampling, atmosphere);
- noise: additive Gaussian noise;
- view geometry: a small random scaling about the chip centre (off-nadir acquisitions stretch buildings and
  their lean differs from date to date); misregistration is the per-date shift of
  :func:`model.task.augment_timeline`.

Chips stay uint8 ``[B, T, C, H, W]``; the footprint mask is not changed (it is where the map says the building is).
The module is pure torch so it runs inside the training step on CPU or GPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["SENSOR_STRENGTHS", "sensor_augment"]

SENSOR_STRENGTHS = {
    "gain": 0.25,
    "band_gain": 0.08,
    "offset": 15.0,
    "gamma": 0.25,
    "blur": 1.2,
    "noise": 4.0,
    "scale": 0.08,
}
"""Ranges at strength 1: gain +-25%, per-band gain +-8%, offset +-15 DN, gamma 2**+-0.25, blur sigma up to 1.2 px
(half the dates), noise sigma up to 4 DN, scale +-8%."""


def sensor_augment(
    chips: torch.Tensor, strength: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Each date of each timeline as another sensor might have seen it (module docstring).

    Args:
        chips: uint8 ``[B, T, C, H, W]``.
        strength: multiplies every range of :data:`SENSOR_STRENGTHS`; 0 returns the chips unchanged.
        generator: optional torch generator (tests).

    Returns:
        uint8 chips of the same shape.
    """
    if strength <= 0:
        return chips
    b, t, c, h, w = chips.shape
    r = SENSOR_STRENGTHS
    n = b * t

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, device=chips.device) * 2 - 1

    x = chips.reshape(n, c, h, w).float() / 255.0
    gain = (1 + strength * r["gain"] * uniform(n, 1, 1, 1)) * (
        1 + strength * r["band_gain"] * uniform(n, c, 1, 1)
    )
    gamma = torch.exp2(strength * r["gamma"] * uniform(n, 1, 1, 1))
    offset = strength * r["offset"] / 255.0 * uniform(n, c, 1, 1)
    x = (x.clamp(0, 1) ** gamma) * gain + offset
    scale = 1 + strength * r["scale"] * uniform(n)
    theta = torch.zeros(n, 2, 3, device=chips.device)
    theta[:, 0, 0] = 1 / scale
    theta[:, 1, 1] = 1 / scale
    grid = F.affine_grid(theta, [n, c, h, w], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    sigma = strength * r["blur"] * torch.rand(n, generator=generator, device=chips.device)
    sigma = torch.where(
        torch.rand(n, generator=generator, device=chips.device) < 0.5, sigma, torch.zeros_like(sigma)
    )
    x = _blur(x, sigma)
    noise = strength * r["noise"] / 255.0 * torch.rand(n, 1, 1, 1, generator=generator, device=chips.device)
    x = x + noise * torch.randn(x.shape, generator=generator, device=chips.device)
    return (x * 255.0).round().clamp(0, 255).to(torch.uint8).reshape(b, t, c, h, w)


def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of each image ``[N, C, H, W]`` with its own sigma ``[N]`` (0 = unchanged)."""
    radius = 3
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    s = sigma.clamp_min(1e-3)[:, None]
    kernel = torch.exp(-0.5 * (offsets[None] / s) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # [N, K]; sigma ~0 gives a delta
    n, c, h, w = x.shape
    flat = x.reshape(1, n * c, h, w)
    k = kernel.repeat_interleave(c, dim=0)  # [N * C, K]
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"), k[:, None, None, :], groups=n * c)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="replicate"), k[:, None, :, None], groups=n * c)
    return flat.reshape(n, c, h, w)
