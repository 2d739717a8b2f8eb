"""Exact posterior over the destruction gap of a one-way change (DESIGN section 3).

A building seen at T dates is intact before its destruction gap g and damaged from then on: with 0-based date
index t, the state at t is intact iff t < g, so g in {0..T}. Given per-date log-likelihoods of the two states from
any number of independent witnesses, the log-likelihood of every gap is one prefix sum plus one suffix sum,

    log p(obs | g) = sum_{t < g} log P(obs_t | intact) + sum_{t >= g} log P(obs_t | damaged),

computed for all g at once in O(T). Dates that carry no evidence (not visible, invalid chip) get weight 0.
All functions are pure, vectorised over leading batch dimensions and work in log space.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "credible_interval",
    "duration_log_prior",
    "gap_log_likelihood",
    "gap_posterior",
    "gap_to_states",
    "interval_gap_mask",
    "map_gap",
    "posterior_entropy",
    "reported_gap",
    "states_gap_mask",
    "timed_posterior",
]


def gap_log_likelihood(
    log_intact: torch.Tensor, log_damaged: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Log-likelihood of every gap from per-date state log-likelihoods.

    Args:
        log_intact: ``[..., T]`` log P(observation at t | intact).
        log_damaged: ``[..., T]`` log P(observation at t | damaged).
        weight: optional ``[..., T]`` evidence weight in [0, 1]; 0 removes a date (invalid or not visible).

    Returns:
        ``[..., T + 1]`` log-likelihood of gaps 0..T.
    """
    if log_intact.shape != log_damaged.shape:
        raise ValueError(
            f"log_intact {tuple(log_intact.shape)} and log_damaged {tuple(log_damaged.shape)} differ"
        )
    if weight is not None:
        weight = weight.to(log_intact.dtype).expand_as(log_intact)
        log_intact = torch.where(weight > 0, log_intact * weight, torch.zeros_like(log_intact))
        log_damaged = torch.where(weight > 0, log_damaged * weight, torch.zeros_like(log_damaged))
    zero = torch.zeros((*log_intact.shape[:-1], 1), dtype=log_intact.dtype, device=log_intact.device)
    prefix_intact = torch.cat([zero, torch.cumsum(log_intact, dim=-1)], dim=-1)
    suffix_damaged = torch.cat([zero, torch.cumsum(log_damaged.flip(-1), dim=-1)], dim=-1).flip(-1)
    return prefix_intact + suffix_damaged


def duration_log_prior(days: torch.Tensor) -> torch.Tensor:
    """Log prior over *when* a damaged building was struck, ``[..., T + 1]``: a constant strike hazard.

    A strike is as likely on any day, so given damage, a gap between two images 46 days apart is nine times as
    likely to hold it as one of 5 days: where the images cannot tell two damaged gaps apart (a clouded date) the
    posterior splits by their lengths instead of evenly. The two open-ended gaps have no length and get their
    weight by decision, not by the hazard:

    - gap 0 (damaged before the first image) weighs as much as the mean inner gap: the timeline says nothing
      about how long before, so it counts as one gap of typical length;
    - gap T (intact by the last image) is no strike at all. Its entry is 0 here and :func:`timed_posterior`
      does not use it: there the split between damaged and intact is the likelihood's alone.

    The weights are normalised to mean inner length 1 (log 0); equally spaced dates give a flat prior.
    ``days`` ``[..., T]`` are days since the first acquisition, increasing.
    """
    if days.shape[-1] < 2:
        return torch.zeros((*days.shape[:-1], days.shape[-1] + 1), dtype=days.dtype, device=days.device)
    length = torch.diff(days, dim=-1).clamp_min(1.0)
    inner = torch.log(length / length.mean(dim=-1, keepdim=True))
    zero = torch.zeros_like(inner[..., :1])
    return torch.cat([zero, inner, zero], dim=-1)


def gap_posterior(log_likelihood: torch.Tensor, log_prior: torch.Tensor | None = None) -> torch.Tensor:
    """Normalised log-posterior over gaps, ``[..., T + 1]``; ``log_prior`` broadcasts against it."""
    joint = log_likelihood if log_prior is None else log_likelihood + log_prior
    return joint - torch.logsumexp(joint, dim=-1, keepdim=True)


def timed_posterior(log_likelihood: torch.Tensor, log_timing: torch.Tensor | None = None) -> torch.Tensor:
    """Log-posterior over gaps ``[..., T + 1]`` with a prior on the strike's timing that never moves damage.

    The probability of "intact" (gap T) is exactly the one a flat prior gives for the same likelihood; the rest,
    the probability of damage, is split among the damaged gaps 0..T-1 by likelihood times timing prior:

        p(T) = softmax(ll)[T],   p(g) = (1 - p(T)) * softmax_{g' < T}(ll[g'] + log_timing[g'])[g]   (g < T).

    A fixed prior cannot do this: any prior that weights the damaged gaps unevenly moves mass between damaged
    and intact once a likelihood favours some of them (with days 0, 90, 92 a strike seen only in the last image
    would be pushed to "intact" by the 2-day gap's small weight). Equivalently, this is Bayes with the prior
    mass of gap T set per building to the likelihood-weighted mean timing weight of the damaged gaps.

    Args:
        log_likelihood: ``[..., T + 1]`` log-likelihood of every gap (e.g. :func:`gap_log_likelihood`, tempered).
        log_timing: ``[..., T + 1]`` log prior over when, given damage (:func:`duration_log_prior`); its last
            entry is ignored. None is :func:`gap_posterior` with a flat prior.
    """
    flat = gap_posterior(log_likelihood)
    if log_timing is None or log_likelihood.shape[-1] < 2:
        return flat
    log_timing = log_timing.to(log_likelihood.dtype).expand_as(log_likelihood)
    log_intact = flat[..., -1:]
    damaged = flat[..., :-1]
    mass = torch.logsumexp(damaged, dim=-1, keepdim=True)  # log P(damaged), exact even when p(T) is near 1
    # a building certainly intact has no damaged gap to split: keep the split finite, its mass is -inf anyway
    damaged = torch.where(torch.isfinite(mass), damaged, torch.zeros_like(damaged))
    timed = gap_posterior(damaged + log_timing[..., :-1])
    return torch.cat([mass + timed, log_intact], dim=-1)


def map_gap(log_posterior: torch.Tensor) -> torch.Tensor:
    """Most probable gap, ``[...]`` (int64)."""
    return log_posterior.argmax(dim=-1)


def reported_gap(log_posterior: torch.Tensor) -> torch.Tensor:
    """The gap the system reports, ``[...]`` (int64): damage first, then its date.

    The last gap means intact. A building is reported damaged when its total probability of damage,
    ``1 - p(intact)``, is at least one half, and then at its most probable damaged gap; otherwise intact. This
    differs from :func:`map_gap` only where damage is likely but spread over several gaps, none of which alone
    beats "intact": the MAP would call such a building intact although it most probably is not.
    """
    intact = log_posterior.shape[-1] - 1
    if intact == 0:
        return torch.zeros(log_posterior.shape[:-1], dtype=torch.int64, device=log_posterior.device)
    damaged = log_posterior[..., intact] <= math.log(0.5)
    return torch.where(damaged, log_posterior[..., :intact].argmax(dim=-1), intact)


def posterior_entropy(log_posterior: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of the gap posterior, ``[...]``."""
    p = log_posterior.exp()
    return -(p * torch.where(p > 0, log_posterior, torch.zeros_like(log_posterior))).sum(dim=-1)


def credible_interval(probs: torch.Tensor, mass: float = 0.9) -> tuple[torch.Tensor, torch.Tensor]:
    """Shortest contiguous run of gaps [lo, hi] holding at least ``mass`` probability.

    Args:
        probs: ``[..., G]`` gap probabilities.
        mass: required probability mass in (0, 1].

    Returns:
        ``(lo, hi)`` inclusive gap indices, each ``[...]``.
    """
    if not 0.0 < mass <= 1.0:
        raise ValueError(f"mass must be in (0, 1], got {mass}")
    n = probs.shape[-1]
    cdf = torch.cat([torch.zeros_like(probs[..., :1]), torch.cumsum(probs, dim=-1)], dim=-1)  # [..., G+1]
    lo = torch.arange(n, device=probs.device).view(n, 1)
    hi = torch.arange(n, device=probs.device).view(1, n)
    width = (hi - lo).to(probs.dtype)
    run_mass = cdf[..., None, 1:] - cdf[..., :-1, None]  # [..., lo, hi] mass of gaps lo..hi
    ok = (hi >= lo) & (run_mass >= mass - 1e-6)
    score = torch.where(ok, width, torch.full_like(width.expand_as(run_mass), float("inf")))
    flat = score.flatten(-2)
    # Among the shortest runs, prefer the one with most mass.
    best = (flat - 1e-3 * run_mass.flatten(-2)).argmin(dim=-1)
    return best // n, best % n


def gap_to_states(gap: torch.Tensor, n_dates: int) -> torch.Tensor:
    """Boolean ``[..., T]`` damaged-at-date mask of a gap (True where t >= gap)."""
    t = torch.arange(n_dates, device=gap.device)
    return t >= gap[..., None]


def interval_gap_mask(last_intact: int | None, first_damaged: int | None, n_dates: int) -> torch.Tensor:
    """Gaps consistent with "last seen intact at date index i, first seen damaged at j" (0-based, None = unseen).

    Returns:
        ``[T + 1]`` boolean mask.
    """
    g = torch.arange(n_dates + 1)
    ok = torch.ones(n_dates + 1, dtype=torch.bool)
    if last_intact is not None:
        ok &= g > last_intact
    if first_damaged is not None:
        ok &= g <= first_damaged
    return ok


def states_gap_mask(damaged: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """Gaps consistent with per-date observations (intact at t needs g > t; damaged at t needs g <= t).

    Args:
        damaged: ``[..., T]`` bool, True where the witness saw damage.
        observed: ``[..., T]`` bool, False where the date carries no evidence.

    Returns:
        ``[..., T + 1]`` bool; all False where the observations are not monotone.
    """
    inf = torch.tensor(float("inf"))
    log_i = torch.where(observed & damaged, -inf, torch.zeros(()))
    log_d = torch.where(observed & ~damaged, -inf, torch.zeros(()))
    return torch.isfinite(gap_log_likelihood(log_i, log_d))
