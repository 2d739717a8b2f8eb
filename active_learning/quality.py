"""Volunteer quality report: estimated accuracy with uncertainty, and careless / adversarial flags.

Accuracy is measured against the aggregated posterior, not against any truth: a visible answer at date t is
right with the posterior probability that the building was in that state (intact vs damaged) at t. The
posterior a volunteer is scored against leaves that volunteer's own reviews out (leave-one-out, with the fitted
parameters held fixed: the building's log posterior less the volunteer's review terms, renormalised); scored
against a posterior that includes its own answers, a volunteer who is the only or the majority reviewer of a
building agrees with itself, which inflates its accuracy and blunts the flags. The sum of these soft agreements
over a volunteer's n answers is a Beta(1 + a, 1 + n - a) posterior for its accuracy, whose central interval is
the uncertainty shown. Each review is also reduced to the gap that fits it best, to spot the patterns people
fall into: clicking "all intact" on clearly damaged buildings (careless), inverting the states or moving the
change by two or more images on confident buildings (adversarial), confident again without the volunteer. The
rates of these patterns get Beta posteriors too, and a flag is raised only when the whole credible interval is
on the wrong side of its threshold (:class:`QualityThresholds`), so a handful of reviews never flags anyone.
Only the pseudonymous volunteer ids appear.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from active_learning.aggregation import GapAggregator, GapDawidSkene
from active_learning.errors import AggregationError
from active_learning.schema import (
    COL_BUILDING,
    COL_DATE_INDEX,
    COL_EXTERNAL_ID,
    COL_SOURCE,
    COL_STATE,
    COL_VOLUNTEER,
    State,
)

__all__ = [
    "FLAG_ADVERSARIAL",
    "FLAG_CARELESS",
    "LeaveOneOut",
    "QualityThresholds",
    "leave_one_out",
    "plot_report",
    "volunteer_report",
]

FLAG_CARELESS = "careless"
FLAG_ADVERSARIAL = "adversarial"


@dataclass(frozen=True)
class QualityThresholds:
    """When a volunteer is flagged.

    A volunteer is *adversarial* when its accuracy's upper end is below ``adversarial_accuracy``, or the
    aggregator's saboteur posterior reaches ``saboteur_prob``, or the lower end of its rate of reviews two or
    more images off (on confident buildings) reaches ``shift_share``; otherwise *careless* when its accuracy's
    upper end is below ``careless_accuracy`` or the lower end of its rate of all-intact reviews (on confidently
    damaged buildings) reaches ``all_intact_share``. Every end is that of the central ``interval`` of a
    Beta(1 + k, 1 + n - k) posterior, so a flag needs evidence, not one or two odd reviews.

    Calibrated on the district aggregation benchmark (``python -m experiments.benchmarks.aggregation --preset
    district --seed N``, ``flags_*``: leave-one-out scores, precision / recall / share of honest volunteers
    flagged), chosen on seed 0, confirmed on seed 1, checked on seed 2:

    =================  =====================  =====================  =====================
    arm                seed 0                 seed 1                 seed 2
    =================  =====================  =====================  =====================
    3 reviews, before  0.697 / 1.000 / 6.0%   0.889 / 1.000 / 1.7%   0.778 / 0.875 / 3.4%
    3 reviews, now     0.917 / 0.957 / 1.2%   0.960 / 1.000 / 0.6%   1.000 / 0.875 / 0.0%
    5 reviews, before  0.909 / 0.870 / 1.2%   0.958 / 0.958 / 0.6%   0.923 / 1.000 / 1.1%
    5 reviews, now     1.000 / 0.913 / 0.0%   0.958 / 0.958 / 0.6%   1.000 / 0.958 / 0.0%
    20% bad, before    0.897 / 0.921 / 2.6%   0.814 / 0.875 / 5.0%   0.902 / 0.925 / 2.5%
    20% bad, now       0.947 / 0.947 / 1.3%   0.947 / 0.900 / 1.3%   0.930 / 1.000 / 1.9%
    =================  =====================  =====================  =====================

    "Before" is the rule that compared the point shares with 0.5 once a volunteer had 3 reviews of confident
    buildings, with accuracy's 90% interval below 0.8. Scored leave-one-out, an honest volunteer's occasional
    missed damage no longer pulls the posterior it is scored against towards intact, and all ten honest
    volunteers flagged at 3 reviews on seed 0 were flagged by the all-intact share on 2 to 5 reviews of
    confidently damaged buildings (1 of 2 is 0.5). Hence the rates' credible intervals, and the evidence count
    taken on each rate's own reviews. The pooled rates on seeds 0 to 2 place the thresholds: all intact on
    confidently damaged buildings 0.06 to 0.09 for honest volunteers, 0.31 to 0.46 for careless ones (0.3);
    two or more images off 0.09 to 0.12 for honest, 0.48 to 0.58 for careless and 0.56 to 0.72 for adversarial
    volunteers (0.25; 0.2, best on seed 0, flagged one more honest volunteer at 5 reviews on seed 1 and two
    more on seed 2, at no gain in recall there). At 3 reviews all but at most two honest volunteers per seed
    have an accuracy upper end (95%) of 0.85 or more (the lowest: 0.81, 0.84, 0.85 on seeds 0 to 2); bad
    volunteers above it are caught by the patterns or not at all: the three missed on seed 2 at 3 reviews
    answer like mediocre honest ones (accuracy 0.80 to 0.82).

    Attributes:
        interval: mass of the credible intervals (accuracy and pattern rates).
        careless_accuracy: careless when even the accuracy interval's upper end is below this.
        adversarial_accuracy: adversarial when the upper end is below this (worse than chance: inverted).
        confident_mass: a building counts as confidently dated when its MAP gap has at least this mass.
        all_intact_share: careless when the interval's lower end of the rate at which its reviews of
            confidently damaged buildings say all intact reaches this.
        shift_share: adversarial when the interval's lower end of the rate at which its reviews of confident
            buildings are two or more images off reaches this.
        min_evidence: reviews behind a pattern rate (confidently damaged, resp. confident buildings) needed
            before that pattern can raise a flag.
        saboteur_prob: adversarial when the aggregator's volunteer-level saboteur posterior reaches this.
    """

    interval: float = 0.95
    careless_accuracy: float = 0.85
    adversarial_accuracy: float = 0.5
    confident_mass: float = 0.8
    all_intact_share: float = 0.3
    shift_share: float = 0.25
    min_evidence: int = 3
    saboteur_prob: float = 0.9


@dataclass(frozen=True)
class LeaveOneOut:
    """Every reviewed building's gap posterior without one of its reviewers, parameters held fixed.

    Attributes:
        volunteer_ids: ``[P]`` the volunteer left out.
        building: ``[P]`` the building's row in the fit's arrays.
        gap_probs: ``[P, T + 1]`` the building's gap posterior without that volunteer's reviews.
    """

    volunteer_ids: np.ndarray
    building: np.ndarray
    gap_probs: np.ndarray

    def index(self, volunteer_ids: np.ndarray, building: np.ndarray) -> np.ndarray:
        """Positions of (volunteer, building row) pairs; every pair must be one that was reviewed."""
        pairs = pd.MultiIndex.from_arrays([self.volunteer_ids, self.building])
        pos = pairs.get_indexer(pd.MultiIndex.from_arrays([volunteer_ids, building]))
        if (pos < 0).any():
            unseen = sorted({str(v) for v in np.asarray(volunteer_ids)[pos < 0]})[:5]
            raise AggregationError(
                f"volunteer_report: the table holds reviews the fit did not see (volunteers {unseen}); "
                "pass the table it was fitted on"
            )
        return pos


def leave_one_out(fit: GapAggregator, table: pd.DataFrame) -> LeaveOneOut:
    """For each volunteer and building it reviewed, the building's gap posterior without that volunteer.

    With the fitted parameters held fixed the posterior without volunteer v is exact and cheap: the building's
    log posterior over (level, gap, grade), less the log-likelihood terms of v's reviews of it, renormalised
    (:meth:`~active_learning.aggregation.GapAggregator.review_log_likelihood`). It equals
    ``fit.log_joint(table without v's reviews)``.

    Args:
        fit: the fitted aggregator.
        table: the table it was fitted on.
    """
    terms = fit.review_log_likelihood(table)
    vol_codes, _ = pd.factorize(terms.volunteer_ids)
    pair_codes, pair_keys = pd.factorize(terms.building * (int(vol_codes.max(initial=0)) + 1) + vol_codes)
    n_p = len(pair_keys)
    first = np.zeros(n_p, dtype=np.int64)
    first[pair_codes] = np.arange(len(pair_codes))  # a review of each pair (all share building and volunteer)
    own = np.zeros((n_p, *terms.log_likelihood.shape[1:]))
    np.add.at(own, pair_codes, terms.log_likelihood)
    building = terms.building[first]
    rest = (fit.log_joint_[building] - own).reshape(n_p, -1)
    rest -= rest.max(axis=1, keepdims=True)
    joint = np.exp(rest).reshape(own.shape)  # [P, H, G, 2]
    gap = joint.sum(axis=(1, 3))
    return LeaveOneOut(terms.volunteer_ids[first], building, gap / gap.sum(axis=1, keepdims=True))


def volunteer_report(
    fit: GapAggregator,
    table: pd.DataFrame,
    thresholds: QualityThresholds = QualityThresholds(),
    *,
    exclude_own: bool = True,
) -> pd.DataFrame:
    """One row per human volunteer (pseudonymous id), most answers first.

    Columns: ``volunteer_id, n_reviews, n_answers, accuracy, accuracy_lo, accuracy_hi, confusion_accuracy,
    n_confident_damaged_reviews, all_intact_share, all_intact_lo, n_confident_reviews, large_shift_share,
    large_shift_lo, saboteur_prob, flag`` (``*_lo``: the lower end of the rate's credible interval; ``flag``:
    ``careless``, ``adversarial`` or empty; see :class:`QualityThresholds`).

    Args:
        fit: the fitted aggregator.
        table: the validated long table it was fitted on.
        thresholds: flag thresholds.
        exclude_own: score each volunteer against posteriors without its own reviews (:func:`leave_one_out`);
            False scores against the full posteriors (the old, inflated reading; for comparison only).
    """
    t_count = fit.n_dates_
    human = table[(table[COL_SOURCE] != "expert") & (table[COL_STATE] != int(State.NOT_VISIBLE))]
    b = fit.index_of(human[COL_BUILDING].unique().tolist())
    pos = pd.Series(b, index=human[COL_BUILDING].unique())
    rb = pos.reindex(human[COL_BUILDING]).to_numpy()
    rt = human[COL_DATE_INDEX].to_numpy()
    damaged_answer = (human[COL_STATE] != int(State.INTACT)).to_numpy()
    vol = human[COL_VOLUNTEER].to_numpy()
    # the posterior each answer is scored against: its building's, without the volunteer when exclude_own
    if exclude_own:
        loo = leave_one_out(fit, table)
        probs, ref = loo.gap_probs, loo.index(vol, rb)
    else:
        probs, ref = fit.gap_probs_, rb
    p_damaged = np.cumsum(probs, axis=1)[:, :t_count]  # P(g <= t)
    agree = np.where(damaged_answer, p_damaged[ref, rt], 1.0 - p_damaged[ref, rt])

    per = (
        pd.DataFrame({COL_VOLUNTEER: vol, "agree": agree})
        .groupby(COL_VOLUNTEER)["agree"]
        .agg(["sum", "count"])
    )
    a, n = per["sum"].to_numpy(), per["count"].to_numpy()
    accuracy_lo, accuracy_hi = _beta_interval(a, n, thresholds.interval)
    report = pd.DataFrame(
        {
            COL_VOLUNTEER: per.index,
            "n_answers": n,
            "accuracy": (a + 1) / (n + 2),
            "accuracy_lo": accuracy_lo,
            "accuracy_hi": accuracy_hi,
        }
    )
    all_reviews = table[table[COL_SOURCE] != "expert"].groupby(COL_VOLUNTEER)[COL_EXTERNAL_ID].nunique()
    report.insert(1, "n_reviews", report[COL_VOLUNTEER].map(all_reviews).fillna(0).astype(int).to_numpy())

    conf_acc = _confusion_accuracy(fit)
    report["confusion_accuracy"] = report[COL_VOLUNTEER].map(conf_acc).to_numpy()
    patterns = _review_patterns(fit.n_dates_, probs, human, ref, damaged_answer, thresholds)
    counts = report[[COL_VOLUNTEER]].merge(patterns, on=COL_VOLUNTEER, how="left").fillna(0)
    for rate, hits, of in (
        ("all_intact", "n_all_intact", "n_confident_damaged_reviews"),
        ("large_shift", "n_large_shift", "n_confident_reviews"),
    ):
        k, m = counts[hits].to_numpy(dtype=float), counts[of].to_numpy(dtype=int)
        report[of] = m
        report[f"{rate}_share"] = k / np.maximum(m, 1)
        report[f"{rate}_lo"] = _beta_interval(k, m, thresholds.interval)[0]
    saboteur: dict[str, float] = {}
    if isinstance(fit, GapDawidSkene):  # only the shift model has volunteer types
        saboteur = dict(zip(fit.volunteer_ids_.tolist(), fit.saboteur_probs_.tolist(), strict=True))
    report["saboteur_prob"] = report[COL_VOLUNTEER].map(saboteur).fillna(0.0).to_numpy()

    t = thresholds
    adversarial = (
        (report["accuracy_hi"] < t.adversarial_accuracy)
        | (report["saboteur_prob"] >= t.saboteur_prob)
        | ((report["n_confident_reviews"] >= t.min_evidence) & (report["large_shift_lo"] >= t.shift_share))
    )
    careless = (report["accuracy_hi"] < t.careless_accuracy) | (
        (report["n_confident_damaged_reviews"] >= t.min_evidence)
        & (report["all_intact_lo"] >= t.all_intact_share)
    )
    report["flag"] = np.where(adversarial, FLAG_ADVERSARIAL, np.where(careless, FLAG_CARELESS, ""))
    return report.sort_values(["n_answers", COL_VOLUNTEER], ascending=[False, True]).reset_index(drop=True)


def _beta_interval(hits: np.ndarray, n: np.ndarray, mass: float) -> tuple[np.ndarray, np.ndarray]:
    """Central ``mass`` interval of the Beta(1 + hits, 1 + n - hits) posterior of a rate (uniform prior)."""
    tail = (1 - mass) / 2
    return stats.beta.ppf(tail, hits + 1, n - hits + 1), stats.beta.ppf(1 - tail, hits + 1, n - hits + 1)


def _confusion_accuracy(fit: GapAggregator) -> dict[str, float]:
    """Intact-vs-damaged accuracy implied by each learned confusion, weighted by the pooled class frequency."""
    conf = fit.confusion_
    right = np.stack([conf[:, 0, 0], conf[:, 1, 1:].sum(axis=1), conf[:, 2, 1:].sum(axis=1)], axis=1)
    weight = fit.confusion_counts_.sum(axis=(0, 2))
    weight = weight / max(weight.sum(), 1e-12)
    return dict(zip(fit.volunteer_ids_, (right * weight).sum(axis=1).tolist(), strict=True))


def _review_patterns(
    t_count: int,
    probs: np.ndarray,
    human: pd.DataFrame,
    ref: np.ndarray,
    damaged_answer: np.ndarray,
    thresholds: QualityThresholds,
) -> pd.DataFrame:
    """Per volunteer: all-intact reviews of confidently damaged buildings, reviews >= 2 off on confident ones.

    Returns one row per volunteer with ``n_all_intact`` of ``n_confident_damaged_reviews`` and
    ``n_large_shift`` of ``n_confident_reviews``.

    Args:
        probs: ``[K, T + 1]`` the gap posteriors answers are compared with; ``ref`` ``[N]`` each answer's row.
    """
    codes, ext = pd.factorize(human[COL_EXTERNAL_ID])
    n_r = len(ext)
    rt = human[COL_DATE_INDEX].to_numpy()
    intact_m = np.zeros((n_r, t_count))
    damaged_m = np.zeros((n_r, t_count))
    np.add.at(intact_m, (codes[~damaged_answer], rt[~damaged_answer]), 1)
    np.add.at(damaged_m, (codes[damaged_answer], rt[damaged_answer]), 1)
    # disagreements of each gap g: intact answers at t >= g plus damaged answers at t < g
    zero = np.zeros((n_r, 1))
    intact_at_or_after = np.concatenate([np.cumsum(intact_m[:, ::-1], axis=1)[:, ::-1], zero], axis=1)
    damaged_before = np.concatenate([zero, np.cumsum(damaged_m, axis=1)], axis=1)
    cost = intact_at_or_after + damaged_before
    best = cost.min(axis=1, keepdims=True)
    gaps = np.arange(t_count + 1)
    tied = cost == best
    first = np.where(tied, gaps, t_count + 1).min(axis=1)
    last = np.where(tied, gaps, -1).max(axis=1)

    review_ref = np.zeros(n_r, dtype=np.int64)
    review_ref[codes] = ref
    review_volunteer = np.empty(n_r, dtype=object)
    review_volunteer[codes] = human[COL_VOLUNTEER].to_numpy()
    map_gap = probs.argmax(axis=1)[review_ref]
    confident = probs.max(axis=1)[review_ref] >= thresholds.confident_mass
    off = np.minimum(np.abs(first - map_gap), np.abs(last - map_gap))
    off = np.where((first <= map_gap) & (map_gap <= last), 0, off)
    all_intact = (damaged_m.sum(axis=1) == 0) & (intact_m.sum(axis=1) > 0)
    conf_damaged = confident & (map_gap < t_count)
    df = pd.DataFrame(
        {
            COL_VOLUNTEER: review_volunteer,
            "confident": confident,
            "all_intact_on_damaged": all_intact & conf_damaged,
            "conf_damaged": conf_damaged,
            "large_shift": confident & (off >= 2),
        }
    )
    g = df.groupby(COL_VOLUNTEER)
    out = pd.DataFrame(
        {
            "n_all_intact": g["all_intact_on_damaged"].sum(),
            "n_confident_damaged_reviews": g["conf_damaged"].sum(),
            "n_large_shift": g["large_shift"].sum(),
            "n_confident_reviews": g["confident"].sum(),
        }
    )
    return out.rename_axis(COL_VOLUNTEER).reset_index()


def plot_report(
    report: pd.DataFrame,
    path: str | Path,
    title: str = "Volunteer accuracy",
    interval: float = QualityThresholds.interval,
) -> Path:
    """Accuracy with its interval against the number of answers, flagged volunteers in colour; writes a PNG.

    Args:
        report: a :func:`volunteer_report`.
        path: the PNG to write.
        title: the plot's title.
        interval: the mass of the report's intervals (its thresholds' ``interval``), for the axis label.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    colours = {"": "tab:blue", FLAG_CARELESS: "tab:orange", FLAG_ADVERSARIAL: "tab:red"}
    for flag, colour in colours.items():
        sub = report[report["flag"] == flag]
        if sub.empty:
            continue
        err = np.vstack([sub["accuracy"] - sub["accuracy_lo"], sub["accuracy_hi"] - sub["accuracy"]])
        ax.errorbar(
            sub["n_answers"], sub["accuracy"], yerr=err, fmt="o", ms=3, alpha=0.7, color=colour,
            elinewidth=0.7, label=f"{flag or 'not flagged'} ({len(sub)})",
        )  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("visible answers (log scale)")
    ax.set_ylabel(f"estimated accuracy, intact vs damaged ({interval:.0%} interval)")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
