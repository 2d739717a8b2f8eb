"""Monotone paths in numpy: per-date evidence to (gap, grade) log-likelihoods, (gap, grade) mass to per-date classes.

A building with gap ``g`` and grade ``k`` is intact at dates ``t < g`` and in grade ``k`` from ``g`` on (DESIGN
section 3). These are :func:`model.changepoint.gap_log_likelihood` for both grades at once, vectorised over
reviews, and its transpose for M steps.
"""

from __future__ import annotations

import numpy as np

from active_learning.schema import State

__all__ = ["CLASSES", "class_probabilities", "gap_log_likelihood_both"]

CLASSES: tuple[State, ...] = (State.INTACT, State.DAMAGED, State.DESTROYED)
"""True per-date classes and answered states of the confusion matrices (rows: truth, columns: answer)."""


def gap_log_likelihood_both(ev: np.ndarray, inverted: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """``[N, T, 3]`` per-date class log-likelihoods to ``[N, T + 1, 2]`` (intact before g, the grade from g on).

    With ``inverted`` also ``[N, T + 1, 1]`` for the inverted path: damaged before the gap, intact from it on.
    """
    before = np.zeros((ev.shape[0], ev.shape[1] + 1, 3))
    np.cumsum(ev, axis=1, out=before[:, 1:])  # sum_{t < g}
    # intact before g, the grade from g on: sum_{t >= g} = total - sum_{t < g}
    lik = before[:, :, :1] + before[:, -1:, 1:] - before[:, :, 1:]
    flipped = before[:, :, 1:2] + before[:, -1:, :1] - before[:, :, :1] if inverted else None
    return lik, flipped


def class_probabilities(q: np.ndarray) -> np.ndarray:
    """``[N, T + 1, 2]`` mass over (gap, grade) to ``[N, T, 3]`` P(class at date t): intact iff g > t, grade k
    iff g <= t."""
    n_t = q.shape[1] - 1
    total = q.sum(axis=2)
    p_intact = np.cumsum(total[:, ::-1], axis=1)[:, ::-1][:, 1:]  # sum_{g > t}
    p_grade = np.cumsum(q, axis=1)[:, :n_t, :]  # sum_{g <= t}
    return np.concatenate([p_intact[..., None], p_grade], axis=2)
