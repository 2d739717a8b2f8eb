"""Benchmark: crowd aggregation of per-date volunteer states into destruction gaps.

Run ``python -m experiments.benchmarks.aggregation --preset {tiny,district,city} --seed N --json PATH``.

On the scenario's truth (``.work/scenarios/<preset>-<seed>``, generated if missing) a simulated volunteer pool
reviews every building a fixed 3 or 5 times; 5% of buildings also get an expert (gold) review, and accuracy is
measured on the other 95%. Arms, all on the same answers:

- ``mv``: majority vote as the original crowdsourcing did it: per-date vote counts (intact vs damaged,
  ``not_visible`` ignored), then the monotone gap that agrees with the most votes; ties go to the middle tied
  gap. ``mv_gap`` is the other reading (each review reduced to its best-fitting gap, then the most reported
  gap, ties to the median); both are reported, the better one is the fair baseline.
- ``ds_reference``: crowd-kit's DawidSkene on (building-date, volunteer, state), the per-date posteriors then
  fitted to the best monotone gap (reference only; it cannot use gold or the gap structure).
- ``ours``: active_learning.aggregation.GapDawidSkene, crowd only; ``ours_model``: with the model as a witness.
- the same with 20% careless or adversarial volunteers (``adversarial_*``).

Model witness: until model/baseline.py (the non-learned detector) lands, the witness is a *simulated detector*
documented in :func:`simulated_detector`: per visible date a logit of +-2 (weaker on difficult buildings) plus
unit Gaussian noise, clouded dates carry no evidence. It is derived from the truth, not the imagery, and the JSON
says so (``witness``).

``aggregate_100k_s``: wall time of one GapDawidSkene fit (validation included) on 100,000 annotations, where an
annotation is one volunteer's review of one building's whole timeline (20,000 buildings x 5 reviews x 15 dates
= 1.5 M long-table rows).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from active_learning.aggregation import GapDawidSkene, ModelEmissions
from active_learning.schema import (
    COL_BUILDING,
    COL_DATE_INDEX,
    COL_EXTERNAL_ID,
    COL_SOURCE,
    COL_STATE,
    COL_VOLUNTEER,
    State,
    annotations_to_table,
    validate_table,
)
from active_learning.volunteers import (
    BuildingTruth,
    PoolConfig,
    VolunteerPool,
    load_truth,
    simulate_annotations,
    simulate_expert_annotations,
    synthetic_truths,
)
from model.changepoint import gap_log_likelihood

__all__ = ["main", "majority_vote", "reference_dawid_skene", "run", "simulated_detector"]

GOLD_SHARE = 0.05
BAD_SHARE = 0.2
SYNTHETIC_SIZE = {"tiny": 300, "district": 2000, "city": 26000}


def _tie_middle(score: np.ndarray) -> np.ndarray:
    """Argmax per row with ties resolved to the middle (lower median) tied index."""
    best = score.max(axis=1, keepdims=True)
    tied = np.isclose(score, best, rtol=0, atol=1e-9)
    counts = tied.sum(axis=1)
    order = np.cumsum(tied, axis=1)
    return np.argmax(tied & (order == ((counts + 1) // 2)[:, None]), axis=1)


def _vote_counts(table: pd.DataFrame, ids: list[str], n_dates: int) -> tuple[np.ndarray, np.ndarray]:
    human = table[(table[COL_SOURCE] != "expert") & (table[COL_STATE] != int(State.NOT_VISIBLE))]
    b = pd.Index(ids).get_indexer(human[COL_BUILDING])
    cell = b * n_dates + human[COL_DATE_INDEX].to_numpy()
    damaged = (human[COL_STATE] != int(State.INTACT)).to_numpy()
    size = len(ids) * n_dates
    n_int = np.bincount(cell[~damaged], minlength=size).reshape(len(ids), n_dates).astype(float)
    n_dmg = np.bincount(cell[damaged], minlength=size).reshape(len(ids), n_dates).astype(float)
    return n_int, n_dmg


def majority_vote(table: pd.DataFrame, ids: list[str], n_dates: int) -> np.ndarray:
    """Per-date majority fitted to the monotone gap agreeing with the most votes (ties to the middle)."""
    n_int, n_dmg = _vote_counts(table, ids, n_dates)
    score = gap_log_likelihood(torch.from_numpy(n_int), torch.from_numpy(n_dmg)).numpy()
    return _tie_middle(score)


def majority_of_gaps(table: pd.DataFrame, ids: list[str], n_dates: int) -> np.ndarray:
    """Each review's best-fitting gap, then the most reported gap per building (ties to the median)."""
    human = table[(table[COL_SOURCE] != "expert") & (table[COL_STATE] != int(State.NOT_VISIBLE))]
    ext = human[COL_EXTERNAL_ID].unique().tolist()
    n_int, n_dmg = _vote_counts(human.assign(**{COL_BUILDING: human[COL_EXTERNAL_ID]}), ext, n_dates)
    review_gap = _tie_middle(gap_log_likelihood(torch.from_numpy(n_int), torch.from_numpy(n_dmg)).numpy())
    building = human.groupby(COL_EXTERNAL_ID)[COL_BUILDING].first().reindex(ext).to_numpy()
    b = pd.Index(ids).get_indexer(building)
    votes = np.zeros((len(ids), n_dates + 1))
    np.add.at(votes, (b, review_gap), 1.0)
    votes[votes.sum(axis=1) == 0, n_dates] = 1.0  # unreviewed: not damaged
    return _tie_middle(votes)


def reference_dawid_skene(table: pd.DataFrame, ids: list[str], n_dates: int) -> np.ndarray:
    """crowd-kit DawidSkene per (building, date), then the best monotone gap of its per-date posteriors."""
    from crowdkit.aggregation import DawidSkene

    human = table[(table[COL_SOURCE] != "expert") & (table[COL_STATE] != int(State.NOT_VISIBLE))]
    b = pd.Index(ids).get_indexer(human[COL_BUILDING])
    task = b * n_dates + human[COL_DATE_INDEX].to_numpy()
    data = pd.DataFrame(
        {"task": task, "worker": human[COL_VOLUNTEER].to_numpy(), "label": human[COL_STATE].to_numpy()}
    )
    proba = DawidSkene(n_iter=100).fit_predict_proba(data)
    p_dmg = proba.reindex(columns=[0, 1, 2], fill_value=0.0)[[1, 2]].sum(axis=1)
    p = np.full(len(ids) * n_dates, 0.5)
    p[p_dmg.index.to_numpy(dtype=np.int64)] = p_dmg.to_numpy()
    p = np.clip(p.reshape(len(ids), n_dates), 1e-9, 1 - 1e-9)
    score = gap_log_likelihood(torch.from_numpy(np.log1p(-p)), torch.from_numpy(np.log(p))).numpy()
    return _tie_middle(np.round(score, 9))


def simulated_detector(truths: list[BuildingTruth], seed: int) -> ModelEmissions:
    """A stand-in for the non-learned detector: per visible date, logit +-2 * (1 - 0.6 difficulty) + N(0, 1)."""
    rng = np.random.default_rng([seed, 0xDE7])
    n_dates = truths[0].n_dates
    damaged = np.array([[s != State.INTACT for s in t.states] for t in truths])
    strength = np.array([2.0 * (1 - 0.6 * t.difficulty) for t in truths])[:, None]
    logit = np.where(damaged, strength, -strength) + rng.standard_normal((len(truths), n_dates))
    weight = np.array([t.visible for t in truths], dtype=float)
    log_d = -np.logaddexp(0.0, -logit)
    log_i = -np.logaddexp(0.0, logit)
    return ModelEmissions(
        tuple(t.building_id for t in truths), log_i, log_d, weight, version="simulated-detector"
    )


def _truths(preset: str, seed: int, console: Console) -> tuple[list[BuildingTruth], str]:
    folder = Path(".work/scenarios") / f"{preset}-{seed}"
    if not (folder / "truth_dates.csv").is_file():
        try:
            from experiments.scenario import generate

            console.print(f"generating scenario {preset} seed {seed} into {folder}")
            generate(preset, seed, folder)
        except Exception as exc:  # the generator is optional here: fall back to synthetic truth
            console.print(f"[yellow]no scenario ({exc}); using synthetic truth")
            return list(synthetic_truths(SYNTHETIC_SIZE[preset], 15, seed)), "synthetic"
    return list(load_truth(folder)), str(folder)


def _accuracy(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    return float((pred[mask] == truth[mask]).mean())


def run(preset: str, seed: int, n_100k: int = 100_000, console: Console | None = None) -> dict[str, Any]:
    """Every arm on one scenario and pool; returns the figures."""
    console = console or Console()
    truths, source = _truths(preset, seed, console)
    ids = [t.building_id for t in truths]
    n_dates = truths[0].n_dates
    truth_gap = np.array([t.true_gap for t in truths])
    rng = np.random.default_rng([seed, 0x601D])
    gold_idx = rng.choice(len(truths), size=max(1, int(GOLD_SHARE * len(truths))), replace=False)
    evaluate = np.ones(len(truths), dtype=bool)
    evaluate[gold_idx] = False
    gold = simulate_expert_annotations([truths[i] for i in gold_idx], seed)
    n_volunteers = max(30, len(truths) // 10)
    emissions = simulated_detector(truths, seed)
    figures: dict[str, Any] = {
        "preset": preset, "seed": seed, "truth": source, "buildings": len(truths), "dates": n_dates,
        "volunteers": n_volunteers, "gold_buildings": len(gold_idx), "witness": "simulated-detector",
    }  # fmt: skip

    def arms(config: PoolConfig, k: int, prefix: str, with_model: bool) -> None:
        pool = VolunteerPool.create(n_volunteers, seed, config)
        table = validate_table(
            annotations_to_table(simulate_annotations(truths, pool, k, seed) + gold),
            n_dates=n_dates,
            strict=True,
        ).table
        acc = {
            "mv": majority_vote(table, ids, n_dates),
            "mv_gap": majority_of_gaps(table, ids, n_dates),
            "ds_reference": reference_dawid_skene(table, ids, n_dates),
            "ours": GapDawidSkene().fit(table, n_dates, building_ids=ids).predict().reindex(ids).to_numpy(),
        }
        if with_model:
            fit = GapDawidSkene().fit(table, n_dates, building_ids=ids, emissions=emissions)
            acc["ours_model"] = fit.predict().reindex(ids).to_numpy()
            acc["ours_nogold"] = (
                GapDawidSkene(use_gold=False).fit(table, n_dates).predict().reindex(ids).to_numpy()
            )
        for name, pred in acc.items():
            figures[f"{prefix}{name}_accuracy_{k}"] = _accuracy(pred, truth_gap, evaluate)

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("aggregation arms", total=4)
        for k in (3, 5):
            arms(PoolConfig(), k, "", with_model=True)
            progress.advance(task)
        arms(PoolConfig().with_bad_share(BAD_SHARE), 3, "adversarial_", with_model=True)
        progress.advance(task)
        model_only = GapDawidSkene().fit(
            annotations_to_table([]), n_dates, building_ids=ids, emissions=emissions
        )
        figures["model_only_accuracy"] = _accuracy(
            model_only.predict().reindex(ids).to_numpy(), truth_gap, evaluate
        )
        progress.advance(task)

    big = synthetic_truths(n_100k // 5, 15, seed + 1)
    big_pool = VolunteerPool.create(max(30, len(big) // 10), seed)
    big_table = annotations_to_table(simulate_annotations(big, big_pool, 5, seed))
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        big_fit = GapDawidSkene().fit(big_table, 15)
    figures["aggregate_100k_s"] = time.perf_counter() - started
    figures["aggregate_100k_rows"] = len(big_table)
    figures["aggregate_100k_iterations"] = big_fit.n_iter_
    figures["ours_minus_mv_3"] = figures["ours_accuracy_3"] - max(
        figures["mv_accuracy_3"], figures["mv_gap_accuracy_3"]
    )
    figures["adversarial_loss_3"] = figures["ours_accuracy_3"] - figures["adversarial_ours_accuracy_3"]
    return figures


def _log_mlflow(figures: dict[str, Any], tracking_uri: str) -> None:
    import mlflow

    Path(".work").mkdir(exist_ok=True)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("benchmark-aggregation")
    with mlflow.start_run(run_name=f"aggregation-{figures['preset']}-{figures['seed']}"):
        mlflow.log_params(
            {k: v for k, v in figures.items() if isinstance(v, str) or k in ("seed", "buildings")}
        )
        mlflow.log_metrics(
            {k: float(v) for k, v in figures.items() if isinstance(v, float | int) and k != "seed"}
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--preset", choices=["tiny", "district", "city"], default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--tracking-uri", default="sqlite:///.work/mlflow.db")
    parser.add_argument("--annotations", type=int, default=100_000, help="size of the timing run (reviews)")
    parser.add_argument("--no-mlflow", action="store_true")
    args = parser.parse_args(argv)
    console = Console()
    figures = run(args.preset, args.seed, args.annotations, console)

    table = Table(title=f"aggregation, {args.preset} seed {args.seed} ({figures['buildings']} buildings)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)
    console.print(
        f"[bold]ours {figures['ours_accuracy_3']:.3f} vs majority vote {figures['mv_accuracy_3']:.3f} "
        f"at 3 reviews ({figures['ours_minus_mv_3'] * 100:+.1f} points over the better MV); "
        f"100k annotations in {figures['aggregate_100k_s']:.1f} s"
    )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))
    if not args.no_mlflow:
        _log_mlflow(figures, args.tracking_uri)
    return figures


if __name__ == "__main__":
    main()
