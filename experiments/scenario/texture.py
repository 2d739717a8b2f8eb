"""World-anchored procedural noise: the same place gets the same value in every tile, date and resolution.

Value noise on a lattice of ``cell`` metres, hashed from integer lattice coordinates and a key (splitmix64
finaliser), bilinearly interpolated with a smoothstep. Because a tile's pixel centres form an axis-aligned grid,
the noise is evaluated separably from the tile's 1-D x and y coordinates: no whole-scene array ever exists.
"""

from __future__ import annotations

import numpy as np

__all__ = ["fbm", "value_noise"]

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _hash(ix: np.ndarray, iy: np.ndarray, key: int) -> np.ndarray:
    """Uniform [0, 1) values for integer lattice points ``ix`` (columns) x ``iy`` (rows)."""
    with np.errstate(over="ignore"):
        h = ix.astype(np.int64).astype(np.uint64)[None, :] * np.uint64(0x9E3779B97F4A7C15)
        h = h ^ (iy.astype(np.int64).astype(np.uint64)[:, None] * np.uint64(0xC2B2AE3D27D4EB4F))
        h = h ^ np.uint64((key * 0x165667B19E3779F9) & 0xFFFFFFFFFFFFFFFF)
        h = (h ^ (h >> np.uint64(30))) * _M1
        h = (h ^ (h >> np.uint64(27))) * _M2
        h = h ^ (h >> np.uint64(31))
    return ((h >> np.uint64(40)).astype(np.float32)) * np.float32(1.0 / (1 << 24))


def value_noise(x: np.ndarray, y: np.ndarray, cell: float, key: int) -> np.ndarray:
    """Smooth noise in [0, 1) on the grid ``y[:, None], x[None, :]`` (world metres), lattice ``cell`` metres."""
    gx, gy = x / cell, y / cell
    ix, iy = np.floor(gx).astype(np.int64), np.floor(gy).astype(np.int64)
    fx, fy = (gx - ix).astype(np.float32), (gy - iy).astype(np.float32)
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    x0, y0 = ix.min(), iy.min()
    lattice = _hash(np.arange(x0, ix.max() + 2), np.arange(y0, iy.max() + 2), key)
    cx, cy = ix - x0, iy - y0
    top = lattice[cy][:, cx] * (1 - fx) + lattice[cy][:, cx + 1] * fx
    bottom = lattice[cy + 1][:, cx] * (1 - fx) + lattice[cy + 1][:, cx + 1] * fx
    return top * (1 - fy)[:, None] + bottom * fy[:, None]


def fbm(x: np.ndarray, y: np.ndarray, cell: float, key: int, octaves: int = 3) -> np.ndarray:
    """Fractal sum of ``octaves`` value-noise layers (halving cell, halving weight), normalised to about [0, 1)."""
    total = np.zeros((len(y), len(x)), dtype=np.float32)
    weight, norm = 1.0, 0.0
    for o in range(octaves):
        total += np.float32(weight) * value_noise(x, y, cell / 2**o, key * 7919 + o)
        norm += weight
        weight *= 0.5
    return total / np.float32(norm)
