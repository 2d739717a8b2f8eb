"""Calibration and evaluation of gap posteriors: temperature scaling, dating metrics, and their plots.

Temperature scaling (Guo et al., 2017, "On Calibration of Modern Neural Networks") divides the gap
log-likelihood by one scalar fitted on validation data by minimising the negative log-likelihood of the labels;
it changes confidences, never the MAP gap (though it can move a building across the one-half damage threshold of
:func:`reported_gap`). The metrics score a posterior ``[N, T + 1]`` against true gaps: exact-gap and
within-one-gap accuracy of the reported gap (:func:`reported_gap`: damage first, then its date), damaged-vs-intact
AUC of P(g < T), expected calibration error of the reported gap's probability (15 equal-width bins) and the mean
width in days of the 90% credible interval.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from model import changepoint
from model.changepoint import credible_interval, timed_posterior

__all__ = [
    "DatingMetrics",
    "auc_score",
    "dating_metrics",
    "expected_calibration_error",
    "fit_temperature",
    "gap_nll",
    "plot_gap_errors",
    "plot_reliability",
    "reported_gap",
    "shrink_temperature",
    "tempered_log_posterior",
]

ECE_BINS = 15


def gap_nll(
    log_post: torch.Tensor, target: torch.Tensor, interval: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-row negative log-likelihood of the labels under a gap log-posterior ``[N, G]``.

    A label row is *evidence* over gaps: ``target[g]`` is proportional to the probability of the label given
    gap g. An interval label is the 0/1 mask of the gaps it allows; a soft label is an aggregated crowd
    posterior, which under a flat gap prior is proportional to the crowd's likelihood. Either way the label's
    likelihood under the model is ``sum_g p(g) target[g]`` and the loss is ``-logsumexp(log p + log target)``:
    the network is fitted through the label-noise channel instead of copying the crowd's uncertainty, so its
    own posterior stays sharp where the images are clear (and temperature scaling on the same loss calibrates
    it against the truth the crowd witnesses). ``interval`` is accepted for symmetry and not needed.
    """
    del interval
    log_w = torch.where(target > 0, target.clamp_min(1e-30).log(), torch.full_like(target, float("-inf")))
    return -torch.logsumexp(log_post + log_w, dim=-1)


def tempered_log_posterior(
    gap_loglik: torch.Tensor, temperature: float, log_timing: torch.Tensor | None = None
) -> torch.Tensor:
    """Log of the Monte-Carlo mean of ``timed_posterior(loglik / temperature, log_timing)``, ``[S, N, G]`` -> ``[N, G]``.

    What prediction reports for S dropout samples at that temperature (``[N, G]`` input counts as one sample).
    ``log_timing`` ``[N, G]`` is the model's prior on when, given damage
    (:func:`model.changepoint.timed_posterior`); None is flat.
    """
    loglik = gap_loglik if gap_loglik.ndim == 3 else gap_loglik[None]
    timing = None if log_timing is None else log_timing.to(loglik.dtype)[None]
    return torch.logsumexp(timed_posterior(loglik / temperature, timing), dim=0) - float(
        np.log(loglik.shape[0])
    )


def fit_temperature(
    gap_loglik: torch.Tensor,
    target: torch.Tensor,
    interval: torch.Tensor,
    bounds: tuple[float, float] = (0.05, 20.0),
    log_timing: torch.Tensor | None = None,
) -> float:
    """The temperature minimising validation NLL of :func:`tempered_log_posterior` (with ``log_timing``).

    ``gap_loglik`` is ``[N, G]``, or ``[S, N, G]`` for S Monte-Carlo dropout samples, whose tempered posteriors
    are averaged exactly as prediction averages them. With soft labels that carry a noise floor the NLL can have
    two minima (a moderate temperature, and a very sharp posterior whose disagreements the floor makes cheap), so
    the search is global: a grid over log-temperature, then a golden-section refinement around the best grid
    point. 1.0 when there is nothing to fit.
    """
    if gap_loglik.shape[-2] == 0:
        return 1.0
    loglik = gap_loglik.detach().double()
    target, interval = target.double(), interval.bool()

    def loss(log_t: float) -> float:
        post = tempered_log_posterior(loglik, float(np.exp(log_t)), log_timing)
        return float(gap_nll(post, target, interval).mean())

    grid = np.linspace(np.log(bounds[0]), np.log(bounds[1]), 41)
    losses = [loss(float(x)) for x in grid]
    best_i = int(np.argmin(losses))
    lo, hi = grid[max(best_i - 1, 0)], grid[min(best_i + 1, len(grid) - 1)]
    ratio = (np.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = loss(a), loss(b)
    for _ in range(30):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = loss(b)
    refined = (lo + hi) / 2
    return float(np.exp(refined if loss(refined) <= losses[best_i] else grid[best_i]))


def shrink_temperature(fitted: float, n_buildings: int, prior_buildings: float) -> float:
    """A temperature fitted on ``n_buildings`` shrunk towards 1: ``fitted ** (n / (n + prior_buildings))``.

    The network is trained with a proper scoring rule (the gap NLL) on augmented timelines, which leaves it close
    to calibrated on unseen data by itself; a temperature fitted on a small validation set mostly adds noise.
    With a few hundred crowd-labelled buildings the fit rests on the handful the model gets wrong, and crowd
    errors pull it towards softer posteriors. ``prior_buildings`` is how many validation buildings the fit must
    see before it counts as much as that prior belief in the training objective; in log-temperature this is
    the posterior mean of a Gaussian prior at 0 with the weight of ``prior_buildings`` observations. 0 keeps the
    fit as it is.
    """
    if prior_buildings < 0:
        raise ValueError(f"prior_buildings must be >= 0, got {prior_buildings}")
    if n_buildings <= 0:
        return 1.0
    weight = n_buildings / (n_buildings + prior_buildings)
    return float(np.exp(np.log(fitted) * weight))


def auc_score(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with mid-ranks for ties); NaN with one class only."""
    score, positive = np.asarray(score, dtype=np.float64), np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    sorted_scores = score[order]
    i = 0
    while i < len(score):
        j = i
        while j + 1 < len(score) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: bin-size-weighted mean |accuracy - confidence| over equal-width confidence bins."""
    confidence, correct = np.asarray(confidence, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    if len(confidence) == 0:
        return float("nan")
    which = np.clip((confidence * bins).astype(int), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            total += sel.sum() * abs(correct[sel].mean() - confidence[sel].mean())
    return float(total / len(confidence))


@dataclass(frozen=True)
class DatingMetrics:
    """Scores of gap posteriors against true gaps (fractions in 0..1, widths in days)."""

    exact_gap_accuracy: float
    within1_gap_accuracy: float
    auc: float
    ece: float
    ci90_width_days: float
    n: int

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}{k}": float(v) for k, v in asdict(self).items()}


def interval_width_days(lo: np.ndarray, hi: np.ndarray, dates: Sequence[dt.date]) -> np.ndarray:
    """Days spanned by gap runs [lo, hi]: from the last date before gap lo to the first date after gap hi.

    Open ends (gap 0 or T) are clipped to the first / last acquisition.
    """
    days = np.array([(d - dates[0]).days for d in dates], dtype=np.float64)
    t = len(dates)
    start = days[np.clip(np.asarray(lo) - 1, 0, t - 1)]
    end = days[np.clip(np.asarray(hi), 0, t - 1)]
    return end - start


def reported_gap(probs: np.ndarray) -> np.ndarray:
    """:func:`model.changepoint.reported_gap` of posterior rows ``[N, T + 1]`` given as probabilities."""
    with np.errstate(divide="ignore"):
        log_probs = np.log(np.asarray(probs, dtype=np.float64))
    return changepoint.reported_gap(torch.from_numpy(log_probs)).numpy()


def dating_metrics(probs: np.ndarray, true_gap: np.ndarray, dates: Sequence[dt.date]) -> DatingMetrics:
    """Score posteriors ``[N, T + 1]`` against true gaps ``[N]`` (module docstring)."""
    probs = np.asarray(probs, dtype=np.float64)
    true_gap = np.asarray(true_gap, dtype=np.int64)
    t = probs.shape[1] - 1
    pred = reported_gap(probs)
    confidence = np.take_along_axis(probs, pred[:, None], axis=1)[:, 0]
    lo, hi = credible_interval(torch.from_numpy(probs), 0.9)
    return DatingMetrics(
        exact_gap_accuracy=float((pred == true_gap).mean()),
        within1_gap_accuracy=float((np.abs(pred - true_gap) <= 1).mean()),
        auc=auc_score(1.0 - probs[:, t], true_gap < t),
        ece=expected_calibration_error(confidence, pred == true_gap),
        ci90_width_days=float(interval_width_days(lo.numpy(), hi.numpy(), dates).mean()),
        n=len(true_gap),
    )


def plot_reliability(probs: np.ndarray, true_gap: np.ndarray, path: Path, title: str = "") -> Path:
    """Reliability diagram of the reported gap's probability (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probs = np.asarray(probs)
    pred = reported_gap(probs)
    confidence = np.take_along_axis(probs, pred[:, None], axis=1)[:, 0]
    correct = pred == np.asarray(true_gap)
    which = np.clip((confidence * ECE_BINS).astype(int), 0, ECE_BINS - 1)
    centers, accs, counts = [], [], []
    for b in range(ECE_BINS):
        sel = which == b
        if sel.any():
            centers.append(confidence[sel].mean())
            accs.append(correct[sel].mean())
            counts.append(int(sel.sum()))
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.scatter(centers, accs, s=[10 + 2 * c for c in counts], label="bins (size = count)")
    ax.plot(centers, accs, "-o", markersize=2)
    ece = expected_calibration_error(confidence, correct)
    ax.set(
        xlabel="probability of the reported gap",
        ylabel="accuracy (exact gap)",
        xlim=(0, 1),
        ylim=(0, 1),
        title=title or f"reliability, ECE = {ece:.3f}",
    )
    ax.legend(loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_gap_errors(probs: np.ndarray, true_gap: np.ndarray, path: Path, title: str = "") -> Path:
    """Histogram of reported gap minus true gap (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    error = reported_gap(np.asarray(probs)) - np.asarray(true_gap)
    span = max(int(np.abs(error).max()) if len(error) else 1, 1)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.hist(error, bins=np.arange(-span - 0.5, span + 1.5).tolist(), color="tab:blue", edgecolor="white")
    ax.set(xlabel="predicted gap - true gap", ylabel="buildings", title=title or "gap error")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
