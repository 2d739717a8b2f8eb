"""Benchmark: do interval (compact) answers lose anything against per-date answers, over several seeds?

Run ``python -m experiments.benchmarks.interval_answers --preset district --seeds 0 1 2 --json PATH``.

The volunteers' default Label Studio config asks for the first damaged date, the grade and the dates not visible
(about 3 clicks) instead of a state per date (about 15). This benchmark asks what that costs the aggregation.
On each seed's scenario truth, the same simulated crowd as the aggregation benchmark's
(:mod:`experiments.benchmarks.aggregation`: 5% gold, accuracy on the other 95%) reviews every building, and the
default aggregator, GapDawidSkene, dates the buildings from three forms of the same reviews:

- ``per_date``: the reviews as the per-date form takes them, a state per date, with the simulator's isolated
  per-date slips (a slip chance on each of the 15 dates, three times as likely next to the change);
- ``interval``: each of those reviews reduced to what the compact form can express
  (:func:`~experiments.benchmarks.aggregation.interval_answers`): a pessimistic model of the compact form, as if
  the volunteer had made every per-date slip and then reported the best-fitting interval;
- ``native``: the compact form as a volunteer would fill it in (:func:`native_compact`): the best-fitting
  interval of what the volunteer perceived (the same perception, volunteer and random draws as the per-date
  review, without the per-date slips), then a chance of picking a neighbour of the date meant, equal to the
  per-date form's chance of slipping on the date of the change.

Crowds: 3 reviews, 5 reviews, and 3 reviews with 20% careless or adversarial volunteers.

One seed holds about 1,800 evaluated buildings, whose paired 90% interval is about +-0.7 points wide: wider
than the differences in question. So the paired correctness of every seed's buildings is pooled, and the
verdict (:func:`~experiments.benchmarks.aggregation.interval_verdict`) is given on the pool. Each crowd is
also split by whether any of a building's reviewers is adversarial (the pool's true kinds, for evaluation
only): an adversarial review that inverts intact and damaged still says where the change is when given per
date (the aggregator's saboteur type reads it back), but its best-fitting interval is "damaged from the first
image" or "never damaged", which says nothing.

Figures (``<crowd>`` is ``k3``, ``k5`` or ``adversarial``; ``<arm>`` is ``interval`` or ``native``):
``<crowd>_<arm>_accuracy`` against ``<crowd>_<arm>_per_date`` (pooled), ``<crowd>_<arm>_difference`` with
``_ci90_lo``/``_ci90_hi`` and ``<crowd>_<arm>_verdict``; the same with ``_honest_only`` and ``_with_adversarial``
after the arm for the split, and ``seed<N>_<crowd>_<arm>_difference`` per seed. A PNG plots them.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import Progress

from active_learning.aggregation import GapDawidSkene
from active_learning.schema import Annotation, State, annotations_to_table, validate_table
from active_learning.volunteers import (
    PoolConfig,
    VolunteerKind,
    VolunteerPool,
    simulate_annotations,
)
from experiments.benchmarks.aggregation import (
    BAD_SHARE,
    _truths,
    gold_split,
    interval_answers,
    interval_verdict,
    paired_bootstrap_ci,
    pool_size,
)
from experiments.benchmarks.report import benchmark_parser, report
from labeling import compact_answer

__all__ = ["ARMS", "CROWDS", "main", "native_compact", "run", "run_seed"]

ARMS = ("interval", "native")
"""The arms compared with the per-date one: per-date reviews reduced to intervals, and native compact answers."""

CROWDS: dict[str, tuple[int, float]] = {"k3": (3, 0.0), "k5": (5, 0.0), "adversarial": (3, BAD_SHARE)}
"""Crowd name -> (reviews per building, share of careless or adversarial volunteers)."""


def native_compact(annotations: list[Annotation], pool: VolunteerPool, seed: int) -> list[Annotation]:
    """Each review as a volunteer using the compact form would give it: the best-fitting interval of what it
    perceived (``annotations`` simulated with ``slips=False``), then one misclick chance.

    The per-date form asks 15 questions, and the simulator gives each a slip chance (three times as likely next
    to the change). The compact form asks one date; its slip is picking a neighbour of the date meant, with the
    per-date form's chance of slipping on the date of the change.
    """
    rng = np.random.default_rng([seed, 0xC11C])
    profile = {v.volunteer_id: v.profile for v in pool.volunteers}
    out = []
    for a in annotations:
        n = len(a.states)
        answer = compact_answer([s.label for s in a.states])
        misclick = rng.random() < min(0.9, 3.0 * profile[a.volunteer_id].slip_rate)
        step = -1 if rng.random() < 0.5 else 1
        if misclick and answer.first_damaged is not None:
            moved = int(np.clip(answer.first_damaged + step, 0, n - 1))
            answer = dataclasses.replace(answer, first_damaged=moved, hidden=answer.hidden - {moved})
        out.append(dataclasses.replace(a, states=tuple(State.parse(s) for s in answer.states(n))))
    return out


def run_seed(preset: str, seed: int, console: Console) -> dict[str, dict[str, np.ndarray]]:
    """One seed: per crowd, each arm's correctness on the evaluated buildings and the adversarial-reviewer mask."""
    truths, _ = _truths(preset, seed, console)
    ids = [t.building_id for t in truths]
    n_dates = truths[0].n_dates
    truth_gap = np.array([t.true_gap for t in truths])
    # the same gold draw, pool size and crowds as the aggregation benchmark, so its per-seed figures match
    _, evaluate, gold = gold_split(truths, seed)
    n_volunteers = pool_size(truths)
    position = {b: i for i, b in enumerate(ids)}

    def right(annotations: list[Annotation]) -> np.ndarray:
        table = validate_table(annotations_to_table(annotations + gold), n_dates=n_dates, strict=True).table
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # non-convergence is not what is measured here
            model = GapDawidSkene().fit(table, n_dates, building_ids=ids)
        return (model.predict().reindex(ids).to_numpy() == truth_gap)[evaluate]

    out = {}
    for name, (k, bad) in CROWDS.items():
        config = PoolConfig().with_bad_share(bad) if bad else PoolConfig()
        pool = VolunteerPool.create(n_volunteers, seed, config)
        crowd = simulate_annotations(truths, pool, k, seed)
        perceived = simulate_annotations(truths, pool, k, seed, slips=False)
        kinds = pool.kinds()
        adversarial = np.zeros(len(ids), dtype=bool)
        for a in crowd:
            if kinds[a.volunteer_id] == VolunteerKind.ADVERSARIAL:
                adversarial[position[a.building_id]] = True
        out[name] = {
            "per_date": right(crowd),
            "interval": right(interval_answers(crowd)),
            "native": right(native_compact(perceived, pool, seed)),
            "adversarial": adversarial[evaluate],
        }
    return out


def _compare(per_date: np.ndarray, other: np.ndarray, seed: int) -> dict[str, Any]:
    difference = float(other.mean() - per_date.mean())
    lo, hi = paired_bootstrap_ci(other, per_date, seed)
    return {
        "buildings": len(per_date),
        "per_date": float(per_date.mean()),
        "accuracy": float(other.mean()),
        "difference": difference,
        "difference_ci90_lo": lo,
        "difference_ci90_hi": hi,
        "verdict": interval_verdict(difference, lo, hi),
    }


def run(preset: str, seeds: list[int], console: Console | None = None) -> dict[str, Any]:
    """Every seed, then the pooled comparison per crowd and its split by adversarial reviewers."""
    console = console or Console()
    started = time.perf_counter()
    # per crowd, per column (each arm's correctness, the adversarial mask): one array per seed
    paired: dict[str, dict[str, list[np.ndarray]]] = {name: defaultdict(list) for name in CROWDS}
    figures: dict[str, Any] = {"preset": preset, "seeds": " ".join(map(str, seeds))}
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("seeds (per-date and interval arms)", total=len(seeds))
        for seed in seeds:
            for name, columns in run_seed(preset, seed, console).items():
                for column, values in columns.items():
                    paired[name][column].append(values)
                for arm in ARMS:
                    figures[f"seed{seed}_{name}_{arm}_difference"] = float(
                        columns[arm].mean() - columns["per_date"].mean()
                    )
            progress.advance(task)
    for name, per_seed in paired.items():
        columns = {column: np.concatenate(parts) for column, parts in per_seed.items()}
        adversarial = columns["adversarial"]
        for suffix, mask in (("", np.ones_like(adversarial)), ("_honest_only", ~adversarial),
                             ("_with_adversarial", adversarial)):  # fmt: skip
            if not mask.any():
                continue
            for arm in ARMS:
                compared = _compare(columns["per_date"][mask], columns[arm][mask], seeds[0])
                figures.update({f"{name}_{arm}{suffix}_{key}": value for key, value in compared.items()})
    figures["wall_s"] = time.perf_counter() - started
    return figures


def summary(figures: dict[str, Any]) -> str:
    """One line per crowd and arm: pooled accuracy against per-date, the difference, its 90% interval, verdict."""
    lines = []
    for name in CROWDS:
        for arm in ARMS:
            for suffix in ("", "_honest_only", "_with_adversarial"):
                key = f"{name}_{arm}{suffix}"
                if f"{key}_difference" not in figures:
                    continue
                lines.append(
                    f"{key}: {figures[f'{key}_accuracy']:.4f} vs {figures[f'{key}_per_date']:.4f} over "
                    f"{figures[f'{key}_buildings']} buildings, {figures[f'{key}_difference'] * 100:+.2f} points "
                    f"[{figures[f'{key}_difference_ci90_lo'] * 100:+.2f}, "
                    f"{figures[f'{key}_difference_ci90_hi'] * 100:+.2f}]: {figures[f'{key}_verdict']}"
                )
    return "\n".join(lines)


def plot(figures: dict[str, Any], seeds: list[int], path: Path) -> Path:
    """Interval minus per-date (points) per crowd: each seed as a dot, the pool with its 90% interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    colors = {"interval": "tab:blue", "native": "tab:orange"}
    labels = {"interval": "per-date reviews reduced to intervals", "native": "native compact answers"}
    for x, name in enumerate(CROWDS):
        for offset, arm in zip((-0.12, 0.12), ARMS, strict=True):
            per_seed = [figures[f"seed{s}_{name}_{arm}_difference"] * 100 for s in seeds]
            ax.scatter([x + offset - 0.06] * len(per_seed), per_seed, color=colors[arm], alpha=0.4, s=14)
            key = f"{name}_{arm}"
            mid = figures[f"{key}_difference"] * 100
            lo, hi = figures[f"{key}_difference_ci90_lo"] * 100, figures[f"{key}_difference_ci90_hi"] * 100
            ax.errorbar(
                [x + offset], [mid], yerr=[[mid - lo], [hi - mid]], fmt="o", color=colors[arm], capsize=4,
                label=f"{labels[arm]} (pooled, 90% interval; faint: one seed)" if x == 0 else None,
            )  # fmt: skip
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(CROWDS)), ["3 reviews", "5 reviews", "3 reviews, 20% bad"])
    ax.set_ylabel("interval minus per-date accuracy (points)")
    ax.set_title(f"compact (interval) answers vs per-date answers, seeds {' '.join(map(str, seeds))}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point."""
    parser = benchmark_parser(__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=None, help="pool these seeds (default: --seed)"
    )
    parser.add_argument(
        "--plot", type=Path, default=None, help="PNG path (default: next to --json, or .work/bench)"
    )
    args = parser.parse_args(argv)
    seeds = args.seeds or [args.seed]
    console = Console()
    figures = run(args.preset, seeds, console)
    png = args.plot or (
        args.json.with_suffix(".png")
        if args.json is not None
        else Path(".work") / "bench" / f"interval-answers-{args.preset}.png"
    )
    plot(figures, seeds, png)
    report(
        "interval-answers", figures, args, console=console,
        title=f"interval vs per-date answers, {args.preset} seeds {figures['seeds']}",
        headline=f"pooled over seeds {figures['seeds']} (plot: {png}):\n{summary(figures)}",
        artifacts=[png],
    )  # fmt: skip
    return figures


if __name__ == "__main__":
    main()
