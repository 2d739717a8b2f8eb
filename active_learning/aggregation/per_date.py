"""The per-date Dawid-Skene model: every answered date is an independent draw from the volunteer's confusion.

Dawid and Skene 1979 ("Maximum likelihood estimation of observer error-rates using the EM algorithm") with the
per-item class replaced by a monotone path: building b has a latent gap ``g in 0..T`` and grade ``k``, its
true class at date t is intact if ``t < g`` and ``k`` otherwise, and each visible answer is drawn from row
``class_t`` of the volunteer's ``[3, 3]`` confusion. It has no notion of a review as one event (a shifted
boundary costs one error per date), of difficulty or of saboteurs: those are the shift model's
(:class:`~active_learning.aggregation.shift.GapDawidSkene`); this one is the simpler reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from active_learning.aggregation.base import EMResult, GapAggregator
from active_learning.aggregation.confusion import date_confusion, initial_confusion, update_gap_prior
from active_learning.aggregation.data import ReviewData
from active_learning.aggregation.paths import gap_log_likelihood_both
from model.changepoint import gap_log_likelihood

__all__ = ["PerDateDawidSkene", "PerDateParams"]


@dataclass(frozen=True)
class PerDateParams:
    """The fitted parameters of the per-date model, as its last E step used them.

    Attributes:
        log_conf: ``[V, 3, 3]`` log P(answer | true class) per volunteer.
        log_prior: ``[T + 1, 2]`` log prior over (gap, grade).
    """

    log_conf: np.ndarray
    log_prior: np.ndarray


@dataclass
class PerDateDawidSkene(GapAggregator):
    """Dawid-Skene over the destruction gap with per-date independent answers (module docstring).

    Hyperparameters are :class:`~active_learning.aggregation.base.GapAggregator`'s. Fitted attributes: the base's
    (``log_joint_`` has one level) and ``params_`` (:class:`PerDateParams`).
    """

    params_: PerDateParams = field(init=False, repr=False)

    def _expectation_maximisation(self, data: ReviewData, gold_mask: np.ndarray) -> EMResult:
        n_vol, n_dates = len(data.volunteer_ids), data.n_dates
        log_conf = np.log(np.broadcast_to(initial_confusion(self.init_accuracy), (n_vol, 3, 3)))
        prior = np.full((n_dates + 1, 2), 1.0 / (2.0 * (n_dates + 1)))
        log_prior = np.log(prior)
        history: list[float] = []
        q, log_q, _ = e_step(data, log_conf, log_prior, gold_mask)
        converged = False
        while not converged and len(history) < self.n_iter:
            conf, _, _ = date_confusion(data, q, self.confusion_prior, self.pooled_prior)
            prior = update_gap_prior(q, self.gap_prior_strength)
            log_conf, log_prior = np.log(conf), np.log(prior)
            q, log_q, ll = e_step(data, log_conf, log_prior, gold_mask)
            history.append(ll)
            converged = self._converged(history, data)
        self.params_ = PerDateParams(log_conf, log_prior)
        return EMResult(q[:, None], log_q[:, None], prior[None], history, converged, len(history))

    def _log_joint(self, data: ReviewData, gold_mask: np.ndarray) -> np.ndarray:
        _, log_q, _ = e_step(data, self.params_.log_conf, self.params_.log_prior, gold_mask)
        return log_q[:, None]

    def _review_log_likelihood(self, data: ReviewData) -> np.ndarray:
        return review_log_likelihood(data, self.params_.log_conf)[:, None]


def e_step(
    data: ReviewData, log_conf: np.ndarray, log_prior: np.ndarray, gold_mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """Posterior over (gap, grade) per building ``[B, T + 1, 2]``, logged, and the total log-likelihood."""
    n_b, n_t = len(data.building_ids), data.n_dates
    cell = data.row_building * n_t + data.row_date
    evidence = np.zeros((n_b, n_t, 3))
    for c in range(3):
        contrib = log_conf[data.row_volunteer, c, data.row_state]
        evidence[:, :, c] += np.bincount(cell, weights=contrib, minlength=n_b * n_t).reshape(n_b, n_t)
    ev = torch.from_numpy(evidence)
    log_lik = torch.stack(
        [gap_log_likelihood(ev[..., 0], ev[..., 1]), gap_log_likelihood(ev[..., 0], ev[..., 2])], dim=-1
    ).numpy()
    joint = log_lik + data.witness_log_lik + log_prior[None] + gold_mask
    flat = joint.reshape(n_b, -1)
    top = flat.max(axis=1, keepdims=True)
    log_z = top[:, 0] + np.log(np.exp(flat - top).sum(axis=1))
    log_q = joint - log_z[:, None, None]
    return np.exp(log_q), log_q, float(log_z.sum())


def review_log_likelihood(data: ReviewData, log_conf: np.ndarray) -> np.ndarray:
    """``[R, T + 1, 2]`` log P(review's answers | gap, grade): the per-review parts of :func:`e_step`'s sum."""
    padded = np.concatenate([log_conf, np.zeros((*log_conf.shape[:2], 1))], axis=2)  # [V, 3, 4]
    ev = padded[data.review_volunteer[:, None], :, data.answers]  # [R, T, 3]
    lik, _ = gap_log_likelihood_both(ev)
    return lik
