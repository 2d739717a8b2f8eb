"""Acquisition: which buildings to ask volunteers about next.

Scoring functions are small pure callables chosen by name from one registry (:data:`ACQUISITIONS`, as in baal):
each maps :class:`AcquisitionInputs` (building ids, the combined model + crowd posterior, the model's
epistemic uncertainty, the review channel) to one score per building, higher = ask first.

- ``random``: a uniform draw (the unbiased baseline);
- ``entropy``: entropy of the combined posterior over the destruction gap;
- ``bald``: the model's epistemic uncertainty (BALD mutual information of its Monte-Carlo dropout samples,
  Houlsby et al. 2011);
- ``eig``: expected information gain about the gap from one more review,
  ``I(g; r) = H(sum_g q(g) C[g, .]) - sum_g q(g) H(C[g, .])``, where ``q`` is the building's combined posterior
  and ``C[g, r]`` the probability that the next review reports gap ``r`` when the truth is ``g``, expected over
  the pool that answers (:func:`review_channel`). A building nobody reviewed (``q`` = the model's estimate) and
  one more review of a started building compete in the same score.

:func:`select_batch` turns scores into a batch: a ``random_share`` of it drawn uniformly from the eligible
buildings first (kind ``audit``: an unbiased sample, whatever the scores say), the rest by descending score with
at most ``block_share`` of the batch from any one spatial block (kind ``acquired``), so a batch never crowds into
one neighbourhood. Building ids travel from scoring to the labeler; row positions never leave this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from active_learning.aggregation import GapDawidSkene
from active_learning.errors import AcquisitionError
from active_learning.schema import COL_BUILDING, COL_DATE_INDEX, COL_EXTERNAL_ID, COL_SOURCE, COL_STATE, State
from model.changepoint import gap_log_likelihood

__all__ = [
    "ACQUISITIONS",
    "AcquisitionInputs",
    "Scorer",
    "Selection",
    "expected_information_gain",
    "get_acquisition",
    "register",
    "review_channel",
    "score",
    "select_batch",
]


@dataclass(frozen=True)
class AcquisitionInputs:
    """What the scoring functions see, one row per candidate building.

    Attributes:
        building_ids: ``[B]`` candidate buildings (the row order of every array).
        probs: ``[B, T + 1]`` combined (model + crowd) posterior over gaps.
        bald: ``[B]`` the model's epistemic uncertainty (nats), or None without a model.
        channel: ``[T + 1, T + 1]`` P(next review reports gap r | true gap g) (:func:`review_channel`), or None.
        n_reviews: ``[B]`` independent human reviews so far.
    """

    building_ids: tuple[str, ...]
    probs: np.ndarray
    bald: np.ndarray | None = None
    channel: np.ndarray | None = None
    n_reviews: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.building_ids)
        if self.probs.ndim != 2 or self.probs.shape[0] != n:
            raise AcquisitionError(f"probs has shape {self.probs.shape}; expected [{n} buildings, gaps]")
        if self.bald is not None and self.bald.shape != (n,):
            raise AcquisitionError(f"bald has shape {self.bald.shape}; expected ({n},)")
        g = self.probs.shape[1]
        if self.channel is not None and self.channel.shape != (g, g):
            raise AcquisitionError(f"channel has shape {self.channel.shape}; expected ({g}, {g})")


Scorer = Callable[[AcquisitionInputs, np.random.Generator], np.ndarray]
"""A scoring function: inputs and a seeded generator -> one score per building (higher = ask first)."""

ACQUISITIONS: dict[str, Scorer] = {}


def register(name: str) -> Callable[[Scorer], Scorer]:
    """Add a scoring function to :data:`ACQUISITIONS` under ``name``."""

    def add(fn: Scorer) -> Scorer:
        ACQUISITIONS[name] = fn
        return fn

    return add


def get_acquisition(name: str) -> Scorer:
    """The scoring function registered as ``name``.

    Raises:
        AcquisitionError: unknown name (the message lists the known ones).
    """
    try:
        return ACQUISITIONS[name]
    except KeyError:
        raise AcquisitionError(
            f"unknown acquisition {name!r}; choose one of {sorted(ACQUISITIONS)}"
        ) from None


def score(name: str, inputs: AcquisitionInputs, rng: np.random.Generator) -> np.ndarray:
    """Score every candidate with the function registered as ``name``; finite, one per building."""
    out = np.asarray(get_acquisition(name)(inputs, rng), dtype=float)
    if out.shape != (len(inputs.building_ids),) or not np.isfinite(out).all():
        raise AcquisitionError(
            f"acquisition {name!r} returned scores of shape {out.shape} with non-finite values"
        )
    return out


def _entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    p = np.clip(p, 0.0, 1.0)
    return -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=axis)


def expected_information_gain(probs: np.ndarray, channel: np.ndarray) -> np.ndarray:
    """``[B]`` mutual information (nats) between a building's gap and the gap one more review reports."""
    q = probs / np.clip(probs.sum(axis=1, keepdims=True), 1e-300, None)
    c = channel / np.clip(channel.sum(axis=1, keepdims=True), 1e-300, None)
    return np.clip(_entropy(q @ c) - q @ _entropy(c), 0.0, None)


@register("random")
def _random(inputs: AcquisitionInputs, rng: np.random.Generator) -> np.ndarray:
    return rng.random(len(inputs.building_ids))


@register("entropy")
def _posterior_entropy(inputs: AcquisitionInputs, rng: np.random.Generator) -> np.ndarray:
    return _entropy(inputs.probs)


@register("bald")
def _bald(inputs: AcquisitionInputs, rng: np.random.Generator) -> np.ndarray:
    if inputs.bald is None:
        raise AcquisitionError("acquisition 'bald' needs the model's epistemic uncertainty; run with a model")
    return np.asarray(inputs.bald, dtype=float)


@register("eig")
def _eig(inputs: AcquisitionInputs, rng: np.random.Generator) -> np.ndarray:
    channel = inputs.channel if inputs.channel is not None else default_channel(inputs.probs.shape[1] - 1)
    return expected_information_gain(inputs.probs, channel)


def default_channel(n_dates: int, exact: float = 0.8) -> np.ndarray:
    """A review channel before any review is in: ``exact`` on the truth, the rest on its two neighbours and
    spread thinly elsewhere."""
    g = n_dates + 1
    c = np.full((g, g), (1.0 - exact) * 0.2 / max(1, g - 1))
    for i in range(g):
        c[i, i] = exact
        for j in (i - 1, i + 1):
            if 0 <= j < g:
                c[i, j] += (1.0 - exact) * 0.4
    return c / c.sum(axis=1, keepdims=True)


def review_channel(fit: GapDawidSkene, table: pd.DataFrame, *, prior_reviews: float = 20.0) -> np.ndarray:
    """P(a review reports gap r | true gap g), learned from the aggregator's fit, over the pool that answers.

    Each human review is reduced to the gap it reports (the gap its visible answers fit best, spread evenly over
    ties, as a review with hidden dates fits several); the counts of (true gap, reported gap)
    are weighted by the aggregator's posterior over the true gap of the review's building, so the volunteers'
    learned error models (shifted boundaries, missed damage, false alarms, saboteurs) and the mix of volunteers
    who actually answer are in it. ``prior_reviews`` pseudo-reviews of :func:`default_channel` per true gap keep
    rows with little evidence sensible.
    """
    n_dates = int(fit.n_dates_)
    human = table[(table[COL_SOURCE] != "expert") & (table[COL_STATE] != int(State.NOT_VISIBLE))]
    prior = default_channel(n_dates) * prior_reviews
    if human.empty:
        return prior / prior.sum(axis=1, keepdims=True)
    reviews = human[COL_EXTERNAL_ID].unique().tolist()
    r = pd.Index(reviews).get_indexer(human[COL_EXTERNAL_ID])
    cell = r * n_dates + human[COL_DATE_INDEX].to_numpy()
    damaged = (human[COL_STATE] != int(State.INTACT)).to_numpy()
    size = len(reviews) * n_dates
    n_int = np.bincount(cell[~damaged], minlength=size).reshape(len(reviews), n_dates).astype(float)
    n_dmg = np.bincount(cell[damaged], minlength=size).reshape(len(reviews), n_dates).astype(float)
    fitness = gap_log_likelihood(torch.from_numpy(n_int), torch.from_numpy(n_dmg)).numpy()
    best = np.isclose(fitness, fitness.max(axis=1, keepdims=True), rtol=0, atol=1e-9)
    reported = best / best.sum(axis=1, keepdims=True)  # [R, G]: spread over the gaps the review fits equally
    building = human.groupby(COL_EXTERNAL_ID)[COL_BUILDING].first().reindex(reviews).to_numpy()
    posterior = fit.gap_probs_[fit.index_of(list(building))]  # [R, G]: belief about each review's true gap
    counts = posterior.T @ reported  # counts[g, r] = sum over reviews of q(g) * P(review reports r)
    channel = counts + prior
    return channel / channel.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Selection:
    """One building chosen for review.

    Attributes:
        building_id: the building (an id, never a row position).
        score: its acquisition score.
        kind: ``acquired`` (by score) or ``audit`` (the random share).
        rank: its place in the batch (0 first).
    """

    building_id: str
    score: float
    kind: str
    rank: int


def select_batch(
    building_ids: Sequence[str],
    scores: np.ndarray,
    size: int,
    rng: np.random.Generator,
    *,
    blocks: Sequence[str] | None = None,
    block_share: float = 0.1,
    random_share: float = 0.0,
) -> list[Selection]:
    """Choose up to ``size`` buildings: the random share first, then by score with a cap per spatial block.

    Args:
        building_ids: the eligible buildings.
        scores: their acquisition scores.
        size: the batch size.
        rng: seeded generator of the random share.
        blocks: each building's spatial block (None: no spatial cap).
        block_share: at most ``ceil(block_share * size)`` acquired buildings from one block while other blocks
            can still fill the batch.
        random_share: the share of the batch drawn uniformly at random (kind ``audit``).

    Raises:
        AcquisitionError: sizes or shares out of range, or lengths that do not match.
    """
    n = len(building_ids)
    if len(scores) != n or (blocks is not None and len(blocks) != n):
        raise AcquisitionError(
            f"{n} buildings but {len(scores)} scores and {None if blocks is None else len(blocks)} blocks"
        )
    if size < 0 or not 0.0 <= random_share <= 1.0 or not 0.0 < block_share <= 1.0:
        raise AcquisitionError(
            f"batch size {size}, random_share {random_share}, block_share {block_share}: need size >= 0, "
            "random_share in [0, 1] and block_share in (0, 1]"
        )
    size = min(size, n)
    n_random = min(size, int(round(random_share * size)))
    chosen: list[tuple[int, str]] = []
    taken = np.zeros(n, dtype=bool)
    if n_random:
        for i in rng.choice(n, size=n_random, replace=False):
            chosen.append((int(i), "audit"))
            taken[i] = True
    order = np.lexsort((np.asarray(building_ids, dtype=object).astype(str), -np.asarray(scores, dtype=float)))
    cap = max(1, math.ceil(block_share * size)) if blocks is not None else size
    per_block: dict[str, int] = {}
    skipped: list[int] = []
    for i in order:
        if len(chosen) >= size:
            break
        if taken[i]:
            continue
        block = blocks[i] if blocks is not None else ""
        if per_block.get(block, 0) >= cap:
            skipped.append(int(i))
            continue
        per_block[block] = per_block.get(block, 0) + 1
        chosen.append((int(i), "acquired"))
        taken[i] = True
    for i in skipped:  # too few blocks to fill the batch within the cap: the best of the rest
        if len(chosen) >= size:
            break
        chosen.append((i, "acquired"))
    return [
        Selection(str(building_ids[i]), float(scores[i]), kind, rank) for rank, (i, kind) in enumerate(chosen)
    ]
