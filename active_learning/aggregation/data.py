"""The annotation table as the integer arrays every aggregator works on, validated at the door.

Human answers become reviews (one per external id, numbered volunteer by volunteer), ``not_visible`` answers
are dropped (no evidence), expert reviews become a gold mask over (gap, grade), and the witnesses become one
log-likelihood per (gap, grade). The long table's columns are :mod:`active_learning.schema`'s ``COL_*``
constants; nothing else names them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy import sparse

from active_learning.aggregation.witnesses import GapWitness, ModelEmissions
from active_learning.errors import AggregationError
from active_learning.schema import (
    COL_BUILDING,
    COL_DATE_INDEX,
    COL_EXTERNAL_ID,
    COL_SOURCE,
    COL_STATE,
    COL_VOLUNTEER,
    State,
    validate_table,
)
from model.changepoint import gap_log_likelihood

__all__ = ["NO_ANSWER", "ReviewData"]

NO_ANSWER = 3
"""Answer code where a review has no visible answer for a date (the zero column of a padded confusion)."""

_NEG_INF = -np.inf


@dataclass(frozen=True)
class ReviewData:
    """The table as integer arrays: human answers (visible only), reviews, gold masks, and the witnesses."""

    building_ids: np.ndarray
    volunteer_ids: np.ndarray
    n_dates: int
    row_building: np.ndarray
    row_date: np.ndarray
    row_volunteer: np.ndarray
    row_state: np.ndarray
    gold: np.ndarray
    gold_mask: np.ndarray  # [B, T + 1, 2] additive log mask (0 or -inf)
    witness_log_lik: np.ndarray  # [B, T + 1, 2] the model witnesses' log-likelihood of each (gap, grade)
    n_reviews: np.ndarray
    review_ids: np.ndarray  # [R] the external id of each review
    review_building: np.ndarray  # [R]
    review_volunteer: np.ndarray  # [R], non-decreasing
    review_slices: np.ndarray  # [V + 1]: volunteer v's reviews are review_slices[v]:review_slices[v + 1]
    answers: np.ndarray  # [R, T] answered state, NO_ANSWER where not visible or not asked
    answer_onehot: np.ndarray  # [R, T, 3] float one-hot of answers (all zero where none)
    building_of_review: sparse.csr_matrix  # [B, R] incidence, sums reviews into buildings
    volunteer_of_review: sparse.csr_matrix  # [V, R] incidence

    @classmethod
    def from_table(
        cls,
        table: pd.DataFrame,
        n_dates: int,
        *,
        building_ids: Iterable[str] | None = None,
        volunteer_ids: Sequence[str] | None = None,
        emissions: ModelEmissions | None = None,
        gap_witness: GapWitness | None = None,
        model_weight: float = 1.0,
    ) -> ReviewData:
        """Validate ``table`` strictly (the input is not modified) and turn it into arrays.

        Args:
            table: the long annotation table.
            n_dates: timeline length T.
            building_ids: the buildings to estimate, including those nobody reviewed (first, in this order);
                default: those in the table and the witnesses.
            volunteer_ids: number volunteers by this list (a fitted model's) instead of by the table's sorted
                ids; every volunteer with a visible answer must be in it.
            emissions: the model as a per-date witness, or None.
            gap_witness: a whole-gap witness, or None.
            model_weight: multiplies the witnesses' log-likelihoods.

        Raises:
            AnnotationTableError: the table fails validation (unknown buildings included when ``building_ids``
                is given).
            AggregationError: a volunteer is not in ``volunteer_ids``.
        """
        known = None if building_ids is None else list(dict.fromkeys(str(b) for b in building_ids))
        clean = validate_table(table, building_ids=known, n_dates=n_dates, strict=True).table
        return cls._build(clean, n_dates, known, volunteer_ids, emissions, gap_witness, model_weight)

    @classmethod
    def _build(
        cls,
        table: pd.DataFrame,
        n_dates: int,
        known: list[str] | None,
        fixed_volunteers: Sequence[str] | None,
        emissions: ModelEmissions | None,
        gap_witness: GapWitness | None,
        model_weight: float,
    ) -> ReviewData:
        ids = list(known) if known is not None else []
        ids += table[COL_BUILDING].unique().tolist()
        for source in (emissions, gap_witness):
            if source is not None:
                ids += list(source.building_ids)
        building_ids = np.array(list(dict.fromkeys(ids)), dtype=object)
        index = pd.Index(building_ids)
        n_b = len(building_ids)

        expert = (table[COL_SOURCE] == "expert").to_numpy()
        human = table[~expert]
        visible = human[human[COL_STATE] != int(State.NOT_VISIBLE)]
        if fixed_volunteers is None:
            vol_codes, volunteer_ids = pd.factorize(visible[COL_VOLUNTEER], sort=True)
        else:
            volunteer_ids = pd.Index(list(fixed_volunteers))
            vol_codes = volunteer_ids.get_indexer(visible[COL_VOLUNTEER])
            if (vol_codes < 0).any():
                unknown = sorted(set(visible[COL_VOLUNTEER].to_numpy()[vol_codes < 0]))
                raise AggregationError(
                    f"volunteers {unknown[:5]} were not part of the fit; refit with their reviews included"
                )
        n_reviews = np.zeros(n_b, dtype=np.int64)
        per_b = human.groupby(COL_BUILDING)[COL_VOLUNTEER].nunique()
        n_reviews[index.get_indexer(per_b.index)] = per_b.to_numpy()

        gold_mask = np.zeros((n_b, n_dates + 1, 2))
        gold = np.zeros(n_b, dtype=bool)
        gold_rows = table[expert & (table[COL_STATE] != int(State.NOT_VISIBLE)).to_numpy()]
        if len(gold_rows):
            gb = index.get_indexer(gold_rows[COL_BUILDING])
            gt = gold_rows[COL_DATE_INDEX].to_numpy()
            gs = gold_rows[COL_STATE].to_numpy()
            intact = gs == int(State.INTACT)
            # intact at t rules out g <= t; damage at t rules out g > t
            lo = np.zeros(n_b, dtype=np.int64)
            hi = np.full(n_b, n_dates, dtype=np.int64)
            np.maximum.at(lo, gb[intact], gt[intact] + 1)
            np.minimum.at(hi, gb[~intact], gt[~intact])
            g = np.arange(n_dates + 1)
            bad = (g[None, :] < lo[:, None]) | (g[None, :] > hi[:, None])
            gold[np.unique(gb)] = True
            gold_mask[bad] = _NEG_INF
            saw_destroyed = np.zeros(n_b, dtype=bool)
            saw_damaged = np.zeros(n_b, dtype=bool)
            saw_destroyed[gb[gs == int(State.DESTROYED)]] = True
            saw_damaged[gb[gs == int(State.DAMAGED)]] = True
            # an expert grade settles the grade too: destroyed if ever seen destroyed, else damaged if seen
            gold_mask[saw_destroyed, :, 0] = _NEG_INF
            gold_mask[saw_damaged & ~saw_destroyed, :, 1] = _NEG_INF

        witness = np.zeros((n_b, n_dates + 1, 2))
        if emissions is not None:
            rows = index.get_indexer(list(emissions.building_ids))
            w = model_weight * (
                emissions.weight if emissions.weight is not None else np.ones_like(emissions.log_intact)
            )
            li = torch.from_numpy(np.where(w > 0, w * emissions.log_intact, 0.0))
            ld = torch.from_numpy(np.where(w > 0, w * emissions.log_damaged, 0.0))
            witness[rows] += gap_log_likelihood(li, ld).numpy()[..., None]
        if gap_witness is not None:
            rows = index.get_indexer(list(gap_witness.building_ids))
            ll = gap_witness.log_likelihood - gap_witness.log_likelihood.max(axis=1, keepdims=True)
            witness[rows] += model_weight * ll[..., None]
        row_building = index.get_indexer(visible[COL_BUILDING]).astype(np.int64)
        row_volunteer = vol_codes.astype(np.int64)
        row_date = visible[COL_DATE_INDEX].to_numpy(dtype=np.int64)
        row_state = visible[COL_STATE].to_numpy(dtype=np.int64)
        # reviews numbered volunteer by volunteer, so each volunteer's reviews are one contiguous slice
        by_volunteer = np.argsort(row_volunteer, kind="stable")
        codes, review_ids = pd.factorize(visible[COL_EXTERNAL_ID].to_numpy()[by_volunteer])
        row_review = np.empty(len(codes), dtype=np.int64)
        row_review[by_volunteer] = codes
        n_r = int(codes.max()) + 1 if len(codes) else 0
        review_building = np.zeros(n_r, dtype=np.int64)
        review_volunteer = np.zeros(n_r, dtype=np.int64)
        review_building[row_review] = row_building
        review_volunteer[row_review] = row_volunteer
        answers = np.full((n_r, n_dates), NO_ANSWER, dtype=np.int64)
        answers[row_review, row_date] = row_state
        return cls(
            building_ids=building_ids,
            volunteer_ids=np.asarray(volunteer_ids, dtype=object),
            n_dates=n_dates,
            row_building=row_building,
            row_date=row_date,
            row_volunteer=row_volunteer,
            row_state=row_state,
            gold=gold,
            gold_mask=gold_mask,
            witness_log_lik=witness,
            n_reviews=n_reviews,
            review_ids=np.asarray(review_ids, dtype=object),
            review_building=review_building,
            review_volunteer=review_volunteer,
            review_slices=np.searchsorted(review_volunteer, np.arange(len(volunteer_ids) + 1)),
            answers=answers,
            answer_onehot=(answers[..., None] == np.arange(3)).astype(np.float64),
            building_of_review=_incidence(review_building, n_b),
            volunteer_of_review=_incidence(review_volunteer, len(volunteer_ids)),
        )

    def volunteer_slices(self) -> Iterator[tuple[int, slice]]:
        """Each volunteer with reviews and the slice of its reviews."""
        bounds = self.review_slices
        for v in np.flatnonzero(np.diff(bounds)):
            yield int(v), slice(int(bounds[v]), int(bounds[v + 1]))


def _incidence(owner: np.ndarray, n_owners: int) -> sparse.csr_matrix:
    """``[n_owners, len(owner)]`` 0/1 matrix with a 1 where item j belongs to ``owner[j]``."""
    ones = np.ones(len(owner))
    return sparse.csr_matrix((ones, (owner, np.arange(len(owner)))), shape=(n_owners, len(owner)))
