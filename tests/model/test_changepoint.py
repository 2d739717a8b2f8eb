"""Property tests of the exact change-point posterior."""

from __future__ import annotations

import itertools

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from model.changepoint import (
    credible_interval,
    duration_log_prior,
    gap_log_likelihood,
    gap_posterior,
    gap_to_states,
    interval_gap_mask,
    map_gap,
    posterior_entropy,
    reported_gap,
    states_gap_mask,
    timed_posterior,
)

probs_strategy = st.lists(st.floats(0.01, 0.99), min_size=1, max_size=12)


def _brute_force(log_i: torch.Tensor, log_d: torch.Tensor) -> torch.Tensor:
    n = log_i.shape[-1]
    return torch.stack([log_i[:g].sum() + log_d[g:].sum() for g in range(n + 1)])


@given(probs_strategy)
def test_matches_brute_force_over_monotone_paths(p_damaged: list[float]) -> None:
    p = torch.tensor(p_damaged, dtype=torch.float64)
    log_i, log_d = torch.log1p(-p), torch.log(p)
    torch.testing.assert_close(gap_log_likelihood(log_i, log_d), _brute_force(log_i, log_d))


@given(probs_strategy)
def test_posterior_sums_to_one(p_damaged: list[float]) -> None:
    p = torch.tensor(p_damaged, dtype=torch.float64)
    post = gap_posterior(gap_log_likelihood(torch.log1p(-p), torch.log(p)))
    assert post.shape[-1] == len(p_damaged) + 1
    torch.testing.assert_close(post.exp().sum(), torch.tensor(1.0, dtype=torch.float64))


def test_zero_weight_date_carries_no_evidence() -> None:
    p = torch.tensor([0.1, 0.99, 0.9, 0.95], dtype=torch.float64)
    w = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    ll = gap_log_likelihood(torch.log1p(-p), torch.log(p), w)
    # Gaps 1 and 2 differ only in how date 1 is read; with no evidence there they tie.
    torch.testing.assert_close(ll[1], ll[2])


def test_zero_weight_handles_impossible_states() -> None:
    log_i = torch.tensor([0.0, float("-inf"), 0.0])
    log_d = torch.tensor([float("-inf"), 0.0, 0.0])
    ll = gap_log_likelihood(log_i, log_d, torch.tensor([1.0, 0.0, 1.0]))
    assert not torch.isnan(ll).any()


def _review_log_likelihood(gap: int, n: int) -> torch.Tensor:
    """A reviewer with 90% per-date accuracy reporting exactly the path of ``gap``."""
    states = gap_to_states(torch.tensor(gap), n)
    log_i = torch.where(states, torch.log(torch.tensor(0.1)), torch.log(torch.tensor(0.9))).double()
    log_d = torch.where(states, torch.log(torch.tensor(0.9)), torch.log(torch.tensor(0.1))).double()
    return gap_log_likelihood(log_i, log_d)


@settings(max_examples=50)
@given(probs_strategy, st.integers(0, 12))
def test_extra_consistent_review_never_lowers_map_mass(p_damaged: list[float], gap: int) -> None:
    p = torch.tensor(p_damaged, dtype=torch.float64)
    n = len(p_damaged)
    base = gap_log_likelihood(torch.log1p(-p), torch.log(p))
    post = gap_posterior(base)
    g_star = int(map_gap(post))
    post2 = gap_posterior(base + _review_log_likelihood(g_star, n))
    assert int(map_gap(post2)) == g_star
    assert post2.exp()[g_star] >= post.exp()[g_star] - 1e-12
    # whatever gap such a review reports, the mass there never falls (the review's likelihood peaks there)
    reported = min(gap, n)
    post3 = gap_posterior(base + _review_log_likelihood(reported, n))
    assert post3.exp()[reported] >= post.exp()[reported] - 1e-12


def test_states_gap_mask_only_monotone_paths() -> None:
    n = 4
    for bits in itertools.product([False, True], repeat=n):
        damaged = torch.tensor(bits)
        mask = states_gap_mask(damaged, torch.ones(n, dtype=torch.bool))
        monotone = all(not a or b for a, b in itertools.pairwise(bits))
        assert mask.sum() == (1 if monotone else 0)
        if monotone:
            assert int(mask.nonzero()) == n - sum(bits)


def test_interval_mask_and_credible_interval() -> None:
    assert interval_gap_mask(1, 3, 5).tolist() == [False, False, True, True, False, False]
    assert interval_gap_mask(None, None, 2).all()
    probs = torch.tensor([0.0, 0.05, 0.5, 0.4, 0.05, 0.0])
    lo, hi = credible_interval(probs, 0.9)
    assert (int(lo), int(hi)) == (2, 3)
    lo, hi = credible_interval(probs, 0.95)
    assert int(hi) - int(lo) == 2


def test_entropy_of_certain_posterior_is_zero() -> None:
    logp = torch.log(torch.tensor([1.0, 0.0, 0.0]))
    assert float(posterior_entropy(logp)) == 0.0


def test_duration_prior_splits_indistinguishable_gaps_by_their_length() -> None:
    days = torch.tensor([0.0, 10.0, 40.0, 50.0])  # inner gaps of 10, 30 and 10 days
    prior = duration_log_prior(days)
    assert prior.shape == (5,)
    # gap 0 (before the first image) weighs as the mean inner gap; gap 4 (intact) is not timed
    torch.testing.assert_close(prior[[0, 4]], torch.zeros(2))
    # date 2 (day 40) clouded: gaps 2 and 3 are indistinguishable, and split 30 : 10
    log_i = torch.tensor([0.0, 0.0, 0.0, -9.0])
    log_d = torch.tensor([-9.0, -9.0, 0.0, 0.0])
    weight = torch.tensor([1.0, 1.0, 0.0, 1.0])
    post = timed_posterior(gap_log_likelihood(log_i, log_d, weight), prior).exp()
    torch.testing.assert_close(post[2] / post[3], torch.tensor(3.0))
    torch.testing.assert_close(
        post[1] / post[2], torch.tensor((10 / 30) * 2.718281828**-9.0), rtol=1e-3, atol=0
    )


def test_duration_prior_is_flat_for_equally_spaced_dates_and_batches() -> None:
    days = torch.tensor([[0.0, 7.0, 14.0, 21.0], [0.0, 5.0, 50.0, 55.0]])
    prior = duration_log_prior(days)
    torch.testing.assert_close(prior[0], torch.zeros(5))
    assert prior[1, 2] > 0 > prior[1, 1]
    assert duration_log_prior(torch.tensor([0.0])).shape == (2,)


def test_a_strike_between_closely_spaced_images_stays_damaged() -> None:
    """Issue #11: days 0, 90, 92 and damage seen only in the last image; the 2-day gap must not flip it."""
    days = torch.tensor([0.0, 90.0, 92.0], dtype=torch.float64)
    p = torch.tensor([0.05, 0.05, 0.7], dtype=torch.float64)
    ll = gap_log_likelihood(torch.log1p(-p), torch.log(p))
    flat = gap_posterior(ll).exp()
    timed = timed_posterior(ll, duration_log_prior(days)).exp()
    assert abs(float(flat[3]) - 0.29) < 0.01  # P(intact) under a flat prior
    torch.testing.assert_close(timed[3], flat[3])
    assert int(reported_gap(flat.log())) == 2
    # still reported damaged; given damage, the 90-day gap is 45 times likelier a priori than the 2-day one and
    # the images favour the 2-day gap only 19 : 1, so the date moves to gap 1 (the prior's whole job)
    assert int(reported_gap(timed.log())) == 1
    torch.testing.assert_close(timed[1] / timed[2], (flat[1] / flat[2]) * 45.0)


@st.composite
def timelines(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Days (increasing, any spacing), per-date P(damaged), evidence weights and a temperature."""
    n = draw(st.integers(1, 10))
    steps = draw(st.lists(st.floats(1.0, 400.0), min_size=n - 1, max_size=n - 1))
    days = torch.tensor([0.0, *np.cumsum(steps)], dtype=torch.float64)
    p = torch.tensor(draw(st.lists(st.floats(1e-4, 1 - 1e-4), min_size=n, max_size=n)), dtype=torch.float64)
    w = torch.tensor(
        draw(st.lists(st.sampled_from([0.0, 0.3, 1.0]), min_size=n, max_size=n)), dtype=torch.float64
    )
    temperature = draw(st.floats(0.1, 10.0))
    return days, p, w, torch.tensor(temperature, dtype=torch.float64)


@given(timelines())
def test_duration_prior_never_moves_a_building_between_damaged_and_intact(
    timeline: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
) -> None:
    days, p, w, temperature = timeline
    ll = gap_log_likelihood(torch.log1p(-p), torch.log(p), w) / temperature
    flat = gap_posterior(ll)
    timed = timed_posterior(ll, duration_log_prior(days))
    torch.testing.assert_close(timed.exp().sum(), torch.tensor(1.0, dtype=torch.float64))
    # P(intact) is the likelihood's alone, whatever the spacing of the dates ...
    torch.testing.assert_close(timed[-1], flat[-1])
    assert (timed[-1] <= np.log(0.5)) == (flat[-1] <= np.log(0.5))
    # ... and the damaged mass is split by likelihood times gap length (gap 0 weighs as the mean inner gap)
    n = len(days)
    if n >= 2:
        length = torch.diff(days)
        weight = torch.cat([length.mean()[None], length])
        expected = (flat[:-1].exp() * weight) / (flat[:-1].exp() * weight).sum() * (1 - flat[-1].exp())
        torch.testing.assert_close(timed[:-1].exp(), expected)
