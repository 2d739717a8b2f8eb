"""Spatial-block splits: whole blocks of buildings go to validation, never single buildings.

Splits are by spatial block (the labels' ``block_id`` column, or a grid over the chip origins), never by random
building, so validation is honest about spatial correlation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from model.errors import LabelError

__all__ = ["spatial_blocks", "split_by_blocks"]


def spatial_blocks(origins: np.ndarray, block_size_m: float) -> np.ndarray:
    """Block key per building from a square grid of ``block_size_m`` over chip origins ``[N, 2]``."""
    cells = np.floor(origins / block_size_m).astype(np.int64)
    return np.array([f"{x}_{y}" for x, y in cells])


def split_by_blocks(
    blocks: Sequence[str] | np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of train and validation: whole blocks go to validation until ``val_fraction`` of rows is reached.

    Raises:
        LabelError: fewer than two blocks (no honest split possible).
    """
    keys = np.asarray(blocks)
    unique = np.unique(keys)
    if len(unique) < 2:
        raise LabelError(
            f"all {len(keys)} labelled buildings lie in one spatial block; a block split needs at least two "
            "(lower block_size_m or label buildings in more places)"
        )
    order = np.random.default_rng(seed).permutation(unique)
    target = val_fraction * len(keys)
    val_blocks: list[str] = []
    count = 0
    for block in order:
        if count >= target or len(val_blocks) == len(unique) - 1:
            break
        val_blocks.append(block)
        count += int((keys == block).sum())
    val = np.isin(keys, val_blocks)
    return np.flatnonzero(~val), np.flatnonzero(val)
