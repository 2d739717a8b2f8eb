"""Chip PNGs for volunteers: one building at one date, upscaled, with the footprint outline and date burned in.

The chip cache stores small chips (64 px at 0.5 m by default); volunteers need them larger, so they are
upscaled by an integer factor with nearest-neighbour (no invented detail), the footprint mask's boundary is
drawn in yellow two pixels wide, and a dark band at the top carries the date and its position in the timeline.
"""

from __future__ import annotations

import datetime as dt
import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["OUTLINE_RGB", "render_chip"]

OUTLINE_RGB = (255, 221, 0)
_BAND_PX = 18


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels inside the mask with a 4-neighbour outside it."""
    inside = mask
    padded = np.pad(inside, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return inside & ~interior


def render_chip(
    rgb: np.ndarray,
    mask: np.ndarray,
    *,
    date: dt.date,
    date_index: int,
    n_dates: int,
    valid: float = 1.0,
    size: int = 192,
) -> bytes:
    """Render one chip as PNG bytes.

    Args:
        rgb: uint8 ``[3, H, W]`` red, green, blue.
        mask: uint8 ``[H, W]`` footprint mask (>= 128 inside).
        date: acquisition date written on the image.
        date_index: 0-based position of the date.
        n_dates: number of dates in the timeline.
        valid: fraction of the chip with data; below 5 % a "no data" note is added.
        size: target width; the upscale factor is ``max(1, size // W)``.
    """
    if rgb.ndim != 3 or rgb.shape[0] != 3:
        raise ValueError(f"chip has shape {rgb.shape}, expected [3, H, W]")
    h, w = rgb.shape[1:]
    if mask.shape != (h, w):
        raise ValueError(f"mask has shape {mask.shape}, expected {(h, w)}")
    scale = max(1, size // w)
    image = np.ascontiguousarray(np.transpose(rgb, (1, 2, 0)), dtype=np.uint8)
    image = image.repeat(scale, axis=0).repeat(scale, axis=1)
    inside = np.asarray(mask) >= 128
    big = inside.repeat(scale, axis=0).repeat(scale, axis=1)
    edge = _boundary(big)
    edge = edge | np.roll(edge, 1, axis=0) | np.roll(edge, 1, axis=1)  # two pixels wide
    image[edge] = OUTLINE_RGB
    picture = Image.fromarray(image, mode="RGB")
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=13)
    draw.rectangle((0, 0, picture.width, _BAND_PX), fill=(0, 0, 0))
    draw.text((4, 2), f"{date.isoformat()}  ({date_index + 1}/{n_dates})", fill=(255, 255, 255), font=font)
    if valid < 0.05:
        draw.rectangle((0, picture.height - _BAND_PX, picture.width, picture.height), fill=(90, 0, 0))
        draw.text((4, picture.height - _BAND_PX + 2), "no data", fill=(255, 255, 255), font=font)
    out = io.BytesIO()
    picture.save(out, format="PNG", compress_level=1)
    return out.getvalue()
