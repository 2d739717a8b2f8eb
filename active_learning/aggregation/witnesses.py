"""Witnesses other than people: the model's per-date emissions and whole-gap scores, added to every posterior."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from active_learning.errors import AggregationError

__all__ = ["GapWitness", "ModelEmissions"]


@dataclass(frozen=True)
class ModelEmissions:
    """The model as a witness: per-building, per-date state log-likelihoods.

    Attributes:
        building_ids: ``[B]`` building ids, the row order of the arrays.
        log_intact: ``[B, T]`` log P(chips at t | intact).
        log_damaged: ``[B, T]`` log P(chips at t | damaged or destroyed).
        weight: optional ``[B, T]`` evidence weight in 0..1 (0 where the chip is invalid or clouded).
        version: the model that produced them (registry name/version), stored with the posterior.
    """

    building_ids: tuple[str, ...]
    log_intact: np.ndarray
    log_damaged: np.ndarray
    weight: np.ndarray | None = None
    version: str | None = None

    def __post_init__(self) -> None:
        shape = (len(self.building_ids), self.log_intact.shape[-1] if self.log_intact.ndim == 2 else -1)
        for name in ("log_intact", "log_damaged", "weight"):
            arr = getattr(self, name)
            if arr is not None and (arr.ndim != 2 or arr.shape != shape):
                raise AggregationError(
                    f"ModelEmissions.{name} has shape {arr.shape}; expected [buildings, dates] = {shape}"
                )


@dataclass(frozen=True)
class GapWitness:
    """A witness that scores whole gaps rather than dates (e.g. model.baseline's change-point search).

    Attributes:
        building_ids: ``[B]`` building ids, the row order of ``log_likelihood``.
        log_likelihood: ``[B, T + 1]`` log P(evidence | gap), up to a per-building constant (a gap posterior
            under a flat prior, logged, is fine). ``-inf`` rules a gap out.
        version: what produced it, stored with the posterior.
    """

    building_ids: tuple[str, ...]
    log_likelihood: np.ndarray
    version: str | None = None

    def __post_init__(self) -> None:
        arr = self.log_likelihood
        if arr.ndim != 2 or arr.shape[0] != len(self.building_ids):
            raise AggregationError(
                f"GapWitness.log_likelihood has shape {arr.shape}; expected [buildings, gaps] = "
                f"({len(self.building_ids)}, T + 1)"
            )
        if np.isnan(arr).any() or np.isposinf(arr).any() or np.isneginf(arr).all(axis=1).any():
            raise AggregationError(
                "GapWitness.log_likelihood holds NaN, +inf or a row that rules out every gap; "
                "fix the witness's scores"
            )
