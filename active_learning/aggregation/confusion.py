"""Per-date confusion matrices and the gap prior: starting values and MAP updates shared by every model.

A volunteer's confusion ``[3, 3]`` gives P(answer | true class) over :data:`CLASSES`. The MAP estimate shrinks
each volunteer's soft answer counts towards the pooled confusion (``confusion_prior`` pseudo-answers per true
class), whose own prior is ``pooled_prior`` pseudo-answers on the diagonal; so a volunteer with one answer gets
roughly the crowd's average reliability.
"""

from __future__ import annotations

import numpy as np

from active_learning.aggregation.data import ReviewData
from active_learning.aggregation.paths import class_probabilities

__all__ = ["date_confusion", "initial_confusion", "shrink_confusion", "update_gap_prior"]


def initial_confusion(init_accuracy: float) -> np.ndarray:
    """``[3, 3]`` with ``init_accuracy`` on the diagonal and the rest of each row split evenly."""
    off = (1.0 - init_accuracy) / 2.0
    return np.full((3, 3), off) + np.eye(3) * (init_accuracy - off)


def shrink_confusion(
    counts: np.ndarray, confusion_prior: float, pooled_prior: float
) -> tuple[np.ndarray, np.ndarray]:
    """MAP confusions ``[V, 3, 3]`` from soft answer counts ``[V, 3, 3]``, and the pooled confusion ``[3, 3]``."""
    pooled = counts.sum(axis=0) + pooled_prior * np.eye(3) + 1e-3
    pooled /= pooled.sum(axis=1, keepdims=True)
    conf = counts + confusion_prior * pooled[None]
    conf /= conf.sum(axis=2, keepdims=True)
    return conf, pooled


def date_confusion(
    data: ReviewData, q: np.ndarray, confusion_prior: float, pooled_prior: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every volunteer's per-date confusion given the posterior ``q`` ``[B, T + 1, 2]`` over (gap, grade).

    Each visible answer counts towards the row of each true class with that class's posterior probability at
    its date. This is the per-date model's M step and, for the shift model, its effective confusion (boundary
    shifts included).

    Returns:
        MAP confusions ``[V, 3, 3]``, the soft counts without prior ``[V, 3, 3]``, the pooled confusion.
    """
    p_class = class_probabilities(q)  # [B, T, 3]
    n_v = len(data.volunteer_ids)
    row_p = p_class[data.row_building, data.row_date]  # [R, 3]
    counts = np.zeros((n_v, 3, 3))
    for c in range(3):
        counts[:, c, :] = np.bincount(
            data.row_volunteer * 3 + data.row_state, weights=row_p[:, c], minlength=n_v * 3
        ).reshape(n_v, 3)
    conf, pooled = shrink_confusion(counts, confusion_prior, pooled_prior)
    return conf, counts, pooled


def update_gap_prior(q: np.ndarray, gap_prior_strength: float) -> np.ndarray:
    """MAP prior over the trailing axes of ``q`` (buildings first) with ``gap_prior_strength`` pseudo-counts."""
    prior = q.sum(axis=0) + gap_prior_strength
    prior /= prior.sum()
    return prior
