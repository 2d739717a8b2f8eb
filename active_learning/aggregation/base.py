"""What every gap aggregator shares: its common hyperparameters, the fit flow, the fitted attributes and read-outs.

A model (:class:`~active_learning.aggregation.per_date.PerDateDawidSkene`,
:class:`~active_learning.aggregation.shift.GapDawidSkene`) supplies three pieces: its EM
(:meth:`GapAggregator._expectation_maximisation`), its E step under fixed parameters (:meth:`_log_joint`) and each
review's additive term in that E step (:meth:`_review_log_likelihood`). The latent state of a building is
(level, gap, grade): ``level`` is the shift model's difficulty level (one level for the per-date model).
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Self

import numpy as np
import pandas as pd

from active_learning.aggregation.confusion import date_confusion
from active_learning.aggregation.data import ReviewData
from active_learning.aggregation.witnesses import GapWitness, ModelEmissions
from active_learning.errors import AggregationError
from active_learning.schema import COL_BUILDING

__all__ = ["EMResult", "GapAggregator", "ReviewLogLikelihood"]


@dataclass(frozen=True)
class EMResult:
    """What a model's EM hands back to :meth:`GapAggregator.fit`.

    Attributes:
        q: ``[B, H, T + 1, 2]`` posterior over (level, gap, grade) under the final parameters.
        log_q: the same, logged (``-inf`` where gold rules a state out).
        prior: ``[H, T + 1, 2]`` the learned prior.
        history: the log-likelihood after each E step.
        converged: whether the change fell below ``tol``.
        n_iter: EM iterations run.
    """

    q: np.ndarray
    log_q: np.ndarray
    prior: np.ndarray
    history: list[float]
    converged: bool
    n_iter: int


@dataclass(frozen=True)
class ReviewLogLikelihood:
    """Each human review's additive term in its building's log posterior, under the fitted parameters.

    For every building b, ``log_joint_[b]`` is the sum of the terms of b's reviews plus the witnesses, the gold
    mask and the prior, less a normaliser; so removing a volunteer's reviews from a posterior with the
    parameters held fixed is a subtraction and a renormalisation.

    Attributes:
        review_ids: ``[R]`` external ids.
        building: ``[R]`` row of the reviewed building in the fitted arrays.
        volunteer_ids: ``[R]`` the reviewer.
        log_likelihood: ``[R, H, T + 1, 2]`` the term per (level, gap, grade).
    """

    review_ids: np.ndarray
    building: np.ndarray
    volunteer_ids: np.ndarray
    log_likelihood: np.ndarray


@dataclass
class GapAggregator(ABC):
    """Base of the Dawid-Skene aggregators over the destruction gap (abstract).

    Attributes:
        n_iter: maximum EM iterations.
        tol: stop when the log-likelihood improves by less than ``tol`` per building.
        confusion_prior: pseudo-answers per true class pulling each volunteer towards the pooled confusion.
        pooled_prior: pseudo-answers per true class on the pooled confusion's diagonal (keeps it regular).
        gap_prior_strength: pseudo-buildings per (gap, grade) in the learned gap prior.
        init_accuracy: the confusion diagonal every volunteer starts from.
        model_weight: multiplies the model witness's log-likelihoods (1 = trust them as calibrated).
        use_gold: clamp buildings with expert reviews to the gaps those reviews admit.

    Fitted attributes (after :meth:`fit`): ``building_ids_``, ``volunteer_ids_``, ``n_dates_``,
    ``confusion_`` ``[V, 3, 3]`` (the effective per-date confusion: what the volunteer answers given a date's
    true class), ``confusion_counts_`` (soft answer counts, no prior), ``pooled_confusion_``, ``gap_prior_``
    ``[T + 1, 2]``, ``log_posterior_`` ``[B, T + 1]``, ``log_joint_`` ``[B, H, T + 1, 2]`` (the log posterior
    over (level, gap, grade)), ``grade_probs_`` ``[B, 2]`` (damaged, destroyed), ``gold_`` ``[B]``,
    ``n_reviews_`` ``[B]`` (distinct human volunteers), ``log_likelihood_`` (per iteration), ``n_iter_``,
    ``converged_``, ``model_version_``.
    """

    n_iter: int = 100
    tol: float = 1e-5
    confusion_prior: float = 4.0
    pooled_prior: float = 2.0
    gap_prior_strength: float = 1.0
    init_accuracy: float = 0.8
    model_weight: float = 1.0
    use_gold: bool = True

    building_ids_: np.ndarray = field(init=False, repr=False)
    volunteer_ids_: np.ndarray = field(init=False, repr=False)
    n_dates_: int = field(init=False, repr=False)
    confusion_: np.ndarray = field(init=False, repr=False)
    confusion_counts_: np.ndarray = field(init=False, repr=False)
    pooled_confusion_: np.ndarray = field(init=False, repr=False)
    gap_prior_: np.ndarray = field(init=False, repr=False)
    log_posterior_: np.ndarray = field(init=False, repr=False)
    log_joint_: np.ndarray = field(init=False, repr=False)
    grade_probs_: np.ndarray = field(init=False, repr=False)
    gold_: np.ndarray = field(init=False, repr=False)
    n_reviews_: np.ndarray = field(init=False, repr=False)
    log_likelihood_: list[float] = field(init=False, repr=False)
    n_iter_: int = field(init=False, repr=False)
    converged_: bool = field(init=False, repr=False)
    model_version_: str | None = field(init=False, repr=False)

    def fit(
        self,
        table: pd.DataFrame,
        n_dates: int,
        *,
        building_ids: Iterable[str] | None = None,
        emissions: ModelEmissions | None = None,
        gap_witness: GapWitness | None = None,
    ) -> Self:
        """Learn volunteer error models and every building's gap posterior.

        Args:
            table: the long annotation table (validated here, strictly; the input is not modified).
            n_dates: timeline length T.
            building_ids: the buildings to estimate, including those nobody reviewed; default: those in the
                table and in ``emissions``.
            emissions: the model as a per-date witness, or None for crowd only.
            gap_witness: a witness that scores whole gaps (e.g. the change-point baseline), or None.

        Returns:
            self, fitted.

        Raises:
            AggregationError: bad hyperparameters or emissions that do not fit the timeline.
            AnnotationTableError: the table fails validation.
        """
        self._check_params(n_dates, emissions, gap_witness)
        data = ReviewData.from_table(
            table,
            n_dates,
            building_ids=building_ids,
            emissions=emissions,
            gap_witness=gap_witness,
            model_weight=self.model_weight,
        )
        self.building_ids_ = data.building_ids
        self.volunteer_ids_ = data.volunteer_ids
        self.n_dates_ = n_dates
        self.gold_ = data.gold if self.use_gold else np.zeros(len(data.building_ids), dtype=bool)
        self.n_reviews_ = data.n_reviews
        versions = [w.version for w in (emissions, gap_witness) if w is not None and w.version]
        self.model_version_ = "+".join(versions) if versions else None

        em = self._expectation_maximisation(data, self._gold_mask(data))
        if not em.converged and self.n_iter > 0:
            history = em.history
            warnings.warn(
                f"{type(self).__name__} did not converge in {self.n_iter} iterations "
                f"(last change {history[-1] - history[-2] if len(history) > 1 else float('nan'):.3g}); "
                "raise n_iter or tol",
                RuntimeWarning,
                stacklevel=2,
            )
        q = em.q.sum(axis=1)
        # the effective per-date confusion (boundary shifts included) is what quality reports read
        conf, counts, pooled = date_confusion(data, q, self.confusion_prior, self.pooled_prior)
        self.confusion_ = conf
        self.confusion_counts_ = counts
        self.pooled_confusion_ = pooled
        self.gap_prior_ = em.prior.sum(axis=0)
        self.log_joint_ = em.log_q
        joint = q.sum(axis=2)
        self.log_posterior_ = np.log(np.clip(joint, 1e-300, None))
        grade = q.sum(axis=1)
        self.grade_probs_ = grade / np.clip(grade.sum(axis=1, keepdims=True), 1e-300, None)
        self.log_likelihood_ = em.history
        self.n_iter_ = em.n_iter
        self.converged_ = em.converged
        return self

    def log_joint(
        self,
        table: pd.DataFrame,
        *,
        emissions: ModelEmissions | None = None,
        gap_witness: GapWitness | None = None,
    ) -> np.ndarray:
        """Every fitted building's log posterior over (level, gap, grade) given ``table``, parameters held fixed.

        One E step with the fitted error models and prior: nothing is learned. ``table`` may hold any subset of
        the fitted reviews (e.g. all but one volunteer's) of the fitted buildings and volunteers.

        Returns:
            ``[B, H, T + 1, 2]`` in the order of ``building_ids_``.

        Raises:
            AggregationError: not fitted, or a volunteer or witness building that was not part of the fit.
            AnnotationTableError: the table fails validation, unknown buildings included.
        """
        data = self._frozen_data(table, emissions, gap_witness)
        return self._log_joint(data, self._gold_mask(data))

    def review_log_likelihood(self, table: pd.DataFrame) -> ReviewLogLikelihood:
        """Each human review's term in its building's log posterior, under the fitted parameters.

        Raises:
            AggregationError: not fitted, or a volunteer that was not part of the fit.
            AnnotationTableError: the table fails validation, unknown buildings included.
        """
        data = self._frozen_data(table, None, None)
        return ReviewLogLikelihood(
            review_ids=data.review_ids,
            building=data.review_building,
            volunteer_ids=np.asarray(self.volunteer_ids_, dtype=object)[data.review_volunteer],
            log_likelihood=self._review_log_likelihood(data),
        )

    @abstractmethod
    def _expectation_maximisation(self, data: ReviewData, gold_mask: np.ndarray) -> EMResult:
        """The model's EM from its starting values; stores the model's own fitted attributes."""

    @abstractmethod
    def _log_joint(self, data: ReviewData, gold_mask: np.ndarray) -> np.ndarray:
        """``[B, H, T + 1, 2]`` one E step under the fitted parameters."""

    @abstractmethod
    def _review_log_likelihood(self, data: ReviewData) -> np.ndarray:
        """``[R, H, T + 1, 2]`` each review's term of :meth:`_log_joint` under the fitted parameters."""

    def _gold_mask(self, data: ReviewData) -> np.ndarray:
        return data.gold_mask if self.use_gold else np.zeros_like(data.gold_mask)

    def _frozen_data(
        self, table: pd.DataFrame, emissions: ModelEmissions | None, gap_witness: GapWitness | None
    ) -> ReviewData:
        self._require_fit()
        data = ReviewData.from_table(
            table,
            self.n_dates_,
            building_ids=self.building_ids_.tolist(),
            volunteer_ids=self.volunteer_ids_.tolist(),
            emissions=emissions,
            gap_witness=gap_witness,
            model_weight=self.model_weight,
        )
        if len(data.building_ids) != len(self.building_ids_):
            extra = data.building_ids[len(self.building_ids_) :][:5].tolist()
            raise AggregationError(
                f"witness buildings {extra} were not part of the fit; pass them when fitting"
            )
        return data

    def _converged(self, history: list[float], data: ReviewData) -> bool:
        n_b = max(1, len(data.building_ids))
        return len(history) > 1 and abs(history[-1] - history[-2]) < self.tol * n_b

    def _check_params(
        self, n_dates: int, emissions: ModelEmissions | None, gap_witness: GapWitness | None
    ) -> None:
        if n_dates < 1:
            raise AggregationError(f"n_dates must be >= 1, got {n_dates}")
        if not 1.0 / 3.0 < self.init_accuracy < 1.0:
            raise AggregationError(f"init_accuracy must be in (1/3, 1), got {self.init_accuracy}")
        if min(self.confusion_prior, self.pooled_prior, self.gap_prior_strength) <= 0:
            raise AggregationError("confusion_prior, pooled_prior and gap_prior_strength must be > 0")
        if gap_witness is not None and gap_witness.log_likelihood.shape[1] != n_dates + 1:
            raise AggregationError(
                f"gap witness scores {gap_witness.log_likelihood.shape[1]} gaps but the timeline has "
                f"{n_dates + 1}; score it on the same timeline"
            )
        if emissions is not None and emissions.log_intact.shape[1] != n_dates:
            raise AggregationError(
                f"model emissions cover {emissions.log_intact.shape[1]} dates but the timeline has {n_dates}; "
                "predict on the same timeline"
            )

    def _require_fit(self) -> None:
        if not hasattr(self, "log_posterior_"):
            raise AggregationError(f"{type(self).__name__} is not fitted; call fit(table, n_dates) first")

    @property
    def gap_probs_(self) -> np.ndarray:
        """``[B, T + 1]`` posterior probability of each gap."""
        self._require_fit()
        return np.exp(self.log_posterior_)

    @property
    def map_gap_(self) -> np.ndarray:
        """``[B]`` most probable gap."""
        self._require_fit()
        return self.log_posterior_.argmax(axis=1)

    @property
    def confidence_(self) -> np.ndarray:
        """``[B]`` posterior mass of the most probable gap."""
        return np.exp(self.log_posterior_.max(axis=1))

    def predict(self) -> pd.Series:
        """Most probable gap per building id."""
        return pd.Series(self.map_gap_, index=pd.Index(self.building_ids_, name=COL_BUILDING), name="gap")

    def predict_proba(self) -> pd.DataFrame:
        """Gap probabilities, one row per building id, one column per gap."""
        return pd.DataFrame(self.gap_probs_, index=pd.Index(self.building_ids_, name=COL_BUILDING))

    def index_of(self, building_ids: Sequence[str]) -> np.ndarray:
        """Row positions of ``building_ids`` in the fitted arrays."""
        self._require_fit()
        pos = pd.Index(self.building_ids_).get_indexer(list(building_ids))
        if (pos < 0).any():
            missing = [b for b, p in zip(building_ids, pos, strict=True) if p < 0][:5]
            raise AggregationError(f"buildings {missing} were not part of the fit; pass them as building_ids")
        return pos
