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
change by two or more images on confident buildings (adversarial), confident again without the volunteer. Only
the pseudonymous volunteer ids appear.
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

    Attributes:
        interval: mass of the accuracy credible interval.
        careless_accuracy: careless when even the interval's upper end is below this.
        adversarial_accuracy: adversarial when the upper end is below this (worse than chance: inverted).
        confident_mass: a building counts as confidently dated when its MAP gap has at least this mass.
        all_intact_share: careless when this share of its reviews of confidently damaged buildings say all intact.
        shift_share: adversarial when this share of its reviews of confident buildings is two or more images off.
        min_evidence: reviews of confident buildings needed before a pattern flag is raised.
        saboteur_prob: adversarial when the aggregator's volunteer-level saboteur posterior reaches this.
    """

    interval: float = 0.9
    careless_accuracy: float = 0.8
    adversarial_accuracy: float = 0.5
    confident_mass: float = 0.8
    all_intact_share: float = 0.5
    shift_share: float = 0.5
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
    all_intact_share, large_shift_share, n_confident_reviews, saboteur_prob, flag`` (``flag``: ``careless``,
    ``adversarial`` or empty).

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
    lo_q, hi_q = (1 - thresholds.interval) / 2, 1 - (1 - thresholds.interval) / 2
    a, n = per["sum"].to_numpy(), per["count"].to_numpy()
    report = pd.DataFrame(
        {
            COL_VOLUNTEER: per.index,
            "n_answers": n,
            "accuracy": (a + 1) / (n + 2),
            "accuracy_lo": stats.beta.ppf(lo_q, a + 1, n - a + 1),
            "accuracy_hi": stats.beta.ppf(hi_q, a + 1, n - a + 1),
        }
    )
    all_reviews = table[table[COL_SOURCE] != "expert"].groupby(COL_VOLUNTEER)[COL_EXTERNAL_ID].nunique()
    report.insert(1, "n_reviews", report[COL_VOLUNTEER].map(all_reviews).fillna(0).astype(int).to_numpy())

    conf_acc = _confusion_accuracy(fit)
    report["confusion_accuracy"] = report[COL_VOLUNTEER].map(conf_acc).to_numpy()
    patterns = _review_patterns(fit.n_dates_, probs, human, ref, damaged_answer, thresholds)
    report = report.merge(patterns, on=COL_VOLUNTEER, how="left")
    report[["all_intact_share", "large_shift_share"]] = report[
        ["all_intact_share", "large_shift_share"]
    ].fillna(0.0)
    report["n_confident_reviews"] = report["n_confident_reviews"].fillna(0).astype(int)
    saboteur: dict[str, float] = {}
    if isinstance(fit, GapDawidSkene):  # only the shift model has volunteer types
        saboteur = dict(zip(fit.volunteer_ids_.tolist(), fit.saboteur_probs_.tolist(), strict=True))
    report["saboteur_prob"] = report[COL_VOLUNTEER].map(saboteur).fillna(0.0).to_numpy()

    flags = []
    for row in report.itertuples(index=False):
        flag = ""
        enough = row.n_confident_reviews >= thresholds.min_evidence
        if (
            row.accuracy_hi < thresholds.adversarial_accuracy
            or row.saboteur_prob >= thresholds.saboteur_prob
            or (enough and row.large_shift_share >= thresholds.shift_share)
        ):
            flag = FLAG_ADVERSARIAL
        elif row.accuracy_hi < thresholds.careless_accuracy or (
            enough and row.all_intact_share >= thresholds.all_intact_share
        ):
            flag = FLAG_CARELESS
        flags.append(flag)
    report["flag"] = flags
    return report.sort_values(["n_answers", COL_VOLUNTEER], ascending=[False, True]).reset_index(drop=True)


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
    """Per volunteer: share of all-intact reviews on confidently damaged buildings, share of reviews >= 2 off.

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
            "all_intact_share": g["all_intact_on_damaged"].sum() / g["conf_damaged"].sum().clip(lower=1),
            "large_shift_share": g["large_shift"].sum() / g["confident"].sum().clip(lower=1),
            "n_confident_reviews": g["confident"].sum(),
        }
    )
    return out.rename_axis(COL_VOLUNTEER).reset_index()


def plot_report(report: pd.DataFrame, path: str | Path, title: str = "Volunteer accuracy") -> Path:
    """Accuracy with its interval against the number of answers, flagged volunteers in colour; writes a PNG."""
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
    ax.set_ylabel("estimated accuracy, intact vs damaged (90% interval)")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
