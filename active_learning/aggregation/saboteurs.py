"""Volunteer types: every volunteer is honest or a saboteur, one latent type for all its reviews.

After Raykar and Yu 2012 ("Eliminating spammers and ranking annotators for crowdsourced labeling tasks"): a
saboteur's (spammer's or adversary's) reviews are explained by a pooled saboteur mixture over the ways of
answering (inverted, far off, missed, random, sometimes honest), an honest volunteer's by its own kernel. The type
posterior is learned by mean-field EM from the evidence of all the volunteer's reviews, gold buildings included,
so one all-damaged review reads as sabotage only from a volunteer whose other reviews give them away. In the E
step each review contributes ``E_type[log P(answers | gap, grade, type)]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from active_learning.aggregation.data import ReviewData
from active_learning.aggregation.kernels import KERNEL_ANCHOR, KernelBasis

__all__ = ["TYPE_NEGLIGIBLE", "Saboteurs", "add_mean_field", "m_step_saboteurs", "saboteur_likelihood"]


@dataclass(frozen=True)
class Saboteurs:
    """The saboteur type: its pooled answer mixture and every volunteer's posterior of being one."""

    basis: KernelBasis  # with the inverted way of answering
    anchor: np.ndarray  # [H, C] the starting mixture, the pooled mixture's prior
    weights: np.ndarray  # [H, C] the saboteurs' pooled mixture
    probs: np.ndarray  # [V] P(volunteer is a saboteur)

    def kernels(self, false_alarm: np.ndarray) -> np.ndarray:
        """``[H, G, G]`` the saboteurs' honest-looking part of the kernel."""
        return self.basis.kernels(self.weights[:, None], false_alarm)[:, 0]


_SABOTEUR_CAP = 0.5  # at most half the crowd is taken for saboteurs
TYPE_NEGLIGIBLE = 1e-9  # a P(saboteur) below this leaves a review out of the saboteur model's sums


def m_step_saboteurs(
    data: ReviewData,
    q_review: np.ndarray,
    scaled: np.ndarray,
    scaled_inverted: np.ndarray,
    per_gap_sab: np.ndarray,
    log_ratio: np.ndarray,
    sab: Saboteurs,
    false_alarm: np.ndarray,
) -> tuple[Saboteurs, np.ndarray]:
    """Volunteer types from the evidence of all their reviews, and the saboteurs' pooled mixture.

    The type posterior is the mean-field update: log-odds of being a saboteur = prior log-odds (the learned
    share of saboteurs) + the sum over the volunteer's reviews, gold buildings included, of
    ``E_q[log P(answers | gap, grade, saboteur) - log P(answers | gap, grade, honest)]``.

    Args:
        q_review: ``[H, R, G, 2]`` each review's building posterior.
        scaled: ``[R, G, 2]`` and ``scaled_inverted`` ``[R, G, 1]``: the E step's per-review answer likelihoods.
        per_gap_sab: ``[H, R, G, 2]`` and ``log_ratio``: :func:`saboteur_likelihood`'s outputs.

    Returns:
        the updated saboteur model and the saboteur reviews' posterior of perceived gap and grade ``[R, G, 2]``
        (for the shared per-date confusion), weighted by each volunteer's saboteur probability.
    """
    n_h = per_gap_sab.shape[0]
    evidence = (q_review * log_ratio).sum(axis=(0, 2, 3))  # [R]
    rate = float(np.clip(sab.probs.mean(), 1e-3, _SABOTEUR_CAP)) if len(sab.probs) else 0.5
    log_odds = np.log(rate / (1.0 - rate)) + np.asarray(data.volunteer_of_review @ evidence)
    probs = 1.0 / (1.0 + np.exp(-np.clip(log_odds, -700.0, 700.0)))

    # the saboteurs' pooled mixture: responsibilities of each way of answering, weighted by P(saboteur);
    # only the reviews of volunteers who may be saboteurs count (most have P(saboteur) ~ 0)
    share = probs[data.review_volunteer]
    rows = np.flatnonzero(share > TYPE_NEGLIGIBLE)
    ratio_q = q_review[:, rows] * share[rows, None, None] / per_gap_sab[:, rows]  # [H, R', G, 2]
    kernels = sab.kernels(false_alarm)  # [H, G, G]
    mats = sab.basis.matrices(false_alarm)
    sub_scaled = scaled[rows]
    flat_scaled = sub_scaled.transpose(1, 0, 2).reshape(scaled.shape[1], -1)  # [G(p), R' * 2]
    sub_perceived = np.zeros_like(sub_scaled)
    resp = np.zeros_like(sab.weights)
    for h in range(n_h):
        flat_ratio = ratio_q[h].transpose(1, 0, 2).reshape(scaled.shape[1], -1)  # [G(g), R' * 2]
        pair = kernels[h] * (flat_ratio @ flat_scaled.T)  # expected (true, perceived) pairs
        ratio = pair / np.maximum(kernels[h], 1e-300)
        resp[h, : len(mats)] = sab.weights[h, : len(mats)] * np.einsum("gp,cgp->c", ratio, mats)
        resp[h, -1] = sab.weights[h, -1] * float((ratio_q[h] * scaled_inverted[rows]).sum())
        sub_perceived += sub_scaled * (kernels[h].T @ ratio_q[h])
    perceived = np.zeros_like(scaled)
    perceived[rows] = sub_perceived
    weights = resp + KERNEL_ANCHOR * sab.anchor
    weights /= weights.sum(axis=1, keepdims=True)
    return Saboteurs(sab.basis, sab.anchor, weights, probs), perceived


def saboteur_likelihood(
    sab: Saboteurs,
    false_alarm: np.ndarray,
    scaled: np.ndarray,
    scaled_inverted: np.ndarray,
    log_per_gap: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Every review's likelihood under the saboteur type and its log ratio to the honest one.

    Args:
        scaled: ``[R, G, 2]`` P(answers | perceived gap, grade), scaled per review.
        scaled_inverted: ``[R, G, 1]`` the same for an inverted review.
        log_per_gap: ``[H, R, G, 2]`` log P(answers | true gap, grade) of the honest type, same scale.

    Returns:
        ``[H, R, G, 2]`` P(answers | true gap, grade, saboteur) at the same scale, and
        ``log P(. | saboteur) - log P(. | honest)``.
    """
    per_gap_sab = sab.kernels(false_alarm)[:, None] @ scaled[None]
    per_gap_sab += sab.weights[:, -1, None, None, None] * scaled_inverted[None]
    np.maximum(per_gap_sab, 1e-300, out=per_gap_sab)
    log_ratio = np.log(per_gap_sab)
    log_ratio -= log_per_gap
    return per_gap_sab, log_ratio


def add_mean_field(
    review_ll: np.ndarray, sab: Saboteurs, review_volunteer: np.ndarray, log_ratio: np.ndarray
) -> None:
    """Turn honest review log-likelihoods ``[H, R, G, 2]`` into ``E_type[log P]``, in place."""
    share = sab.probs[review_volunteer]
    rows = np.flatnonzero(share > TYPE_NEGLIGIBLE)  # most volunteers are surely honest: skip them
    review_ll[:, rows] += share[rows, None, None] * log_ratio[:, rows]
