"""Dating benchmark: the learned model against the non-learned change-point baseline on an unseen scenario.

With ``--seed N``: the scenario of seed N (``.work/scenarios/<preset>-<N>``, generated if missing) is ingested
into a chip cache; 30% of its buildings get 3 simulated volunteer reviews each, aggregated by Dawid-Skene
(``active_learning.aggregation.GapDawidSkene``) into soft gap targets; the model is trained on them through the
LightningCLI config ``experiments/configs/<preset>.yaml`` (validation blocks of seed N fit the temperature) and
registered in MLflow as ``candidate``. Evaluation uses every building of the scenario of seed N + 1, whose blocks
the training never saw, against its true gaps; the baseline is scored on the same buildings. With
``--self-train`` a second model trains on the crowd labels plus the first model's confident pseudo-labels of the
other 70% (``model.training.self_train``); it becomes the headline arm and the first is kept as ``crowd_only_*``.
Figures: exact-gap and within-1-gap accuracy of the reported gap (``model.calibration.reported_gap``),
damaged-vs-intact AUC, ECE, mean 90% credible interval width in days, for both arms;
inference chips/s (with the configured Monte-Carlo dropout samples, and deterministic) and the mean training
epoch time, plus its extrapolation to 600 buildings x 15 dates.

    python -m experiments.benchmarks.dating --preset tiny --seed 0 --json .work/bench/dating-tiny-0.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.table import Table

from active_learning.aggregation import GapDawidSkene
from active_learning.schema import annotations_to_table
from active_learning.settings import DEFAULT_WORK_DIR, Settings
from active_learning.truth import load_truth
from active_learning.volunteers import VolunteerPool, simulate_annotations
from experiments.benchmarks.ingest import ensure_scenario, folder_lock
from model.baseline import ChangePointBaseline
from model.calibration import dating_metrics, plot_gap_errors, plot_reliability, tempered_log_posterior
from model.chips import ingest
from model.datamodule import GRADES, ChipArrays, GapLabels
from model.predict import predict
from model.registry import Tracking
from model.training import run_cli
from model.training import self_train as run_self_train

__all__ = ["main", "run", "summarise"]

WORK = DEFAULT_WORK_DIR
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
LABEL_SHARE = 0.3
REVIEWS = 3
POOL_SIZE = 200
PSEUDO_CONFIDENCE = 0.9
TARGETS = {
    "exact_gap_accuracy": 0.90,
    "within1_gap_accuracy": 0.97,
    "auc": 0.98,
    "ece": 0.03,
    "inference_chips_per_s": 1000.0,
}


class EpochTimer(L.Callback):
    """Wall time of every training epoch (training batches only, validation excluded)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0
        self._val = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start, self._val = time.perf_counter(), 0.0

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._val += time.perf_counter() - self._val_start

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seconds.append(time.perf_counter() - self._start - self._val)


def chip_cache(preset: str, seed: int, work: Path) -> tuple[Path, ChipArrays]:
    """Scenario ``preset``/``seed`` ingested (reused when unchanged) into ``work/chips/<preset>-<seed>``."""
    scenario = ensure_scenario(preset, seed, work)
    out = work / "chips" / f"{preset}-{seed}"
    with folder_lock(out):  # another benchmark may be ingesting the same scenario right now
        ingest(scenario, scenario / "footprints.gpkg", out, warn=False)
    return scenario, ChipArrays.open(out)


def crowd_labels(scenario: Path, chips: ChipArrays, seed: int) -> tuple[GapLabels, dict[str, float]]:
    """Soft gap labels for 30% of the buildings from 3 simulated volunteers each, aggregated by Dawid-Skene."""
    truths = [t for t in load_truth(scenario).building_truths() if t.building_id in set(chips.building_ids)]
    rng = np.random.default_rng([seed, 0xDA7E])
    chosen = sorted(rng.choice(len(truths), size=max(4, round(LABEL_SHARE * len(truths))), replace=False))
    subset = [truths[i] for i in chosen]
    pool = VolunteerPool.create(POOL_SIZE, seed)
    table = annotations_to_table(simulate_annotations(subset, pool, REVIEWS, seed))
    ids = [t.building_id for t in subset]
    ds = GapDawidSkene().fit(table, chips.n_dates, building_ids=ids)
    rows = ds.index_of(ids)
    probs = ds.gap_probs_[rows]
    damaged = probs[:, -1] < 0.5
    grade = np.where(damaged, ds.grade_probs_[rows].argmax(axis=1), -1)
    truth_frame = pd.read_csv(scenario / "truth.csv", dtype={"building_id": str, "block_id": str})
    block = truth_frame.set_index("building_id")["block_id"]
    labels = GapLabels.from_soft(ids, probs, grade.tolist(), [str(block[b]) for b in ids])
    true_gap = np.array([t.true_gap for t in subset])
    quality = {
        "label_exact_accuracy": float((probs.argmax(axis=1) == true_gap).mean()),
        "labelled_buildings": float(len(ids)),
        "annotations": float(len(table.drop_duplicates(["building_id", "volunteer_id"]))),
    }
    return labels, quality


def run(
    preset: str,
    seed: int,
    *,
    work: Path = WORK,
    tracking: Tracking | None = None,
    config: Path | None = None,
    max_epochs: int | None = None,
    console: Console | None = None,
    self_train: bool = False,
    name: str | None = None,
) -> dict[str, Any]:
    """Train on seed ``seed``, evaluate on seed ``seed + 1``; returns the figures.

    Labels, pseudo-labels, plots and per-building predictions go to ``work/bench/<name>`` (default
    ``dating-<preset>-<seed>``).
    """
    console = console or Console()
    bench = work / "bench" / (name or f"dating-{preset}-{seed}")
    bench.mkdir(parents=True, exist_ok=True)
    console.print(f"[bold]scenarios[/] {preset} seeds {seed} (train) and {seed + 1} (evaluate)")
    train_scenario, train_chips = chip_cache(preset, seed, work)
    eval_scenario, eval_chips = chip_cache(preset, seed + 1, work)
    labels, label_quality = crowd_labels(train_scenario, train_chips, seed)
    labels_csv = labels.write_csv(bench / "labels.csv", train_chips.dates)
    console.print(
        f"labels: {len(labels.building_ids)} buildings, crowd MAP exact-gap accuracy "
        f"{label_quality['label_exact_accuracy']:.3f}"
    )

    config = config or CONFIGS / f"{preset}.yaml"
    if not config.is_file():
        config = CONFIGS / "tiny.yaml"
    base_args = ["--config", str(config), "--data.cache", str(work / "chips" / f"{preset}-{seed}")]
    base_args += ["--trainer.enable_progress_bar", "false"]
    if max_epochs is not None:
        base_args += ["--trainer.max_epochs", str(max_epochs)]

    # Arm 1: the crowd labels only (what `striketracker train` does by default). Arm 2, with --self-train:
    # the first model pseudo-labels the unlabelled buildings of the training scenario it is sure of and a fresh
    # model trains on both (model.training.self_train, `striketracker train --self-train`); its figures become
    # the headline ones and arm 1's are kept under crowd_only_*.
    timer = EpochTimer()
    train_args = [*base_args, "--data.labels", str(labels_csv)]
    started = time.perf_counter()
    pseudo_count = 0
    if self_train:
        rounds = run_self_train(
            train_args,
            bench / "pseudo_labels.csv",
            min_confidence=PSEUDO_CONFIDENCE,
            tracking=tracking,
            run_name=f"dating-{preset}-{seed}",
            callbacks=[timer],
        )
        crowd_only, result = rounds.first, rounds.final
        pseudo_count = (
            0
            if rounds.final.data is None or rounds.final.data.pseudo is None
            else len(rounds.final.data.pseudo.building_ids)
        )
        console.print(f"self-training: {pseudo_count} pseudo-labelled buildings in the second round")
    else:
        result = run_cli(train_args, tracking=tracking, run_name=f"dating-{preset}-{seed}", callbacks=[timer])
        crowd_only = result
    train_seconds = time.perf_counter() - started
    n_train_chips = crowd_only.train_buildings * train_chips.n_dates
    epoch_s = float(np.median(timer.seconds)) if timer.seconds else float("nan")
    task = result.task

    truth = pd.read_csv(eval_scenario / "truth.csv", dtype={"building_id": str})
    truth = truth[truth["building_id"].isin(set(eval_chips.building_ids))]
    rows = eval_chips.positions(list(truth["building_id"]))
    true_gap = truth["true_gap"].to_numpy()
    n_chips = len(rows) * eval_chips.n_dates
    mc = int(task.hparams["mc_samples"])
    preds = predict(task, eval_chips, rows, progress=True)
    deterministic = predict(task, eval_chips, rows, mc_samples=1, progress=False)
    model = dating_metrics(preds.probs, true_gap, eval_chips.dates)
    # calibration arms on the same predictions: the raw validation fit, and no temperature at all
    samples = torch.from_numpy(preds.loglik_samples).double().transpose(0, 1)  # [S, N, T + 1]
    timing = None if preds.log_timing is None else torch.from_numpy(preds.log_timing)
    calibration_arms = {
        name: dating_metrics(
            tempered_log_posterior(samples, t, timing).exp().numpy(), true_gap, eval_chips.dates
        )
        for name, t in (("temperature_fitted", result.temperature_fitted), ("temperature_1", 1.0))
    }
    crowd_only_metrics = model
    if crowd_only is not result:
        crowd_only_preds = predict(crowd_only.task, eval_chips, rows, progress=False)
        crowd_only_metrics = dating_metrics(crowd_only_preds.probs, true_gap, eval_chips.dates)

    t0 = time.perf_counter()
    base_probs = ChangePointBaseline().predict(eval_chips, rows)
    base_seconds = time.perf_counter() - t0
    base = dating_metrics(base_probs, true_gap, eval_chips.dates)
    # what co-registration (model.registration) is worth to the baseline: the same chips read as stored
    stored = dataclasses.replace(eval_chips, registration=None)
    base_stored = dating_metrics(ChangePointBaseline().predict(stored, rows), true_gap, eval_chips.dates)

    errors = truth.assign(
        map_gap=preds.probs.argmax(axis=1),
        confidence=preds.probs.max(axis=1),
        p_damaged=1.0 - preds.probs[:, -1],
        baseline_map_gap=base_probs.argmax(axis=1),
    )
    errors.to_csv(bench / "eval_predictions.csv", index=False)
    plots = [
        plot_reliability(preds.probs, true_gap, bench / "reliability.png", "model reliability (unseen seed)"),
        plot_gap_errors(preds.probs, true_gap, bench / "gap_errors.png", "model gap error (unseen seed)"),
        plot_gap_errors(base_probs, true_gap, bench / "baseline_gap_errors.png", "baseline gap error"),
    ]
    damaged = true_gap < eval_chips.n_dates
    graded = truth["final_grade"].isin(GRADES).to_numpy() & damaged
    destroyed = (truth["final_grade"] == "destroyed").to_numpy()
    grade_accuracy = (
        float(((preds.p_destroyed > 0.5) == destroyed)[graded].mean()) if graded.any() else float("nan")
    )
    figures: dict[str, Any] = {
        "preset": preset,
        "seed": seed,
        "eval_seed": seed + 1,
        **model.as_dict(),
        "eval_buildings": int(len(rows)),
        "eval_damaged": int(damaged.sum()),
        **base.as_dict("baseline_"),
        "exact_gain_over_baseline": model.exact_gap_accuracy - base.exact_gap_accuracy,
        **{k: v for k, v in base_stored.as_dict("baseline_unregistered_").items() if "accuracy" in k},
        "eval_registration_px": eval_chips.registration_px,
        "inference_chips_per_s": n_chips / preds.seconds,
        "inference_mc_samples": mc,
        "inference_deterministic_chips_per_s": n_chips / deterministic.seconds,
        "baseline_chips_per_s": n_chips / base_seconds,
        "train_epoch_s": epoch_s,
        "train_epochs": len(timer.seconds),
        "train_chips_per_s": n_train_chips / epoch_s if epoch_s > 0 else float("nan"),
        "train_epoch_s_600x15": 600 * 15 / (n_train_chips / epoch_s) if epoch_s > 0 else float("nan"),
        "train_total_s": train_seconds,
        **crowd_only_metrics.as_dict("crowd_only_"),
        "pseudo_labelled_buildings": pseudo_count,
        "temperature": result.temperature,
        "temperature_fitted": result.temperature_fitted,
        "ece_at_temperature_fitted": calibration_arms["temperature_fitted"].ece,
        "ece_at_temperature_1": calibration_arms["temperature_1"].ece,
        "val_exact_gap_accuracy": result.val_metrics.exact_gap_accuracy
        if result.val_metrics
        else float("nan"),
        "model_version": result.model.label if result.model else "",
        "torch_threads": torch.get_num_threads(),
        "grade_accuracy": grade_accuracy,
        **label_quality,
    }
    figures["plots"] = [str(p) for p in plots]
    if tracking is not None:
        _log_mlflow(figures, tracking, plots)
    return figures


def _log_mlflow(figures: dict[str, Any], tracking: Tracking, plots: list[Path]) -> None:
    import mlflow

    experiment_id = tracking.activate("benchmark-dating")
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"dating-{figures['preset']}-{figures['seed']}"
    ):
        mlflow.log_params({k: figures[k] for k in ("preset", "seed", "eval_seed", "model_version")})
        mlflow.log_metrics(
            {k: float(v) for k, v in figures.items() if isinstance(v, int | float) and np.isfinite(float(v))}
        )
        for path in plots:
            mlflow.log_artifact(str(path))


def print_table(figures: dict[str, Any], console: Console) -> None:
    """The two arms side by side, with the targets."""
    table = Table(title=f"dating: {figures['preset']} seed {figures['seed']} -> {figures['eval_seed']}")
    table.add_column("metric")
    table.add_column("model", justify="right")
    table.add_column("baseline", justify="right")
    table.add_column("target", justify="right")
    for key in ("exact_gap_accuracy", "within1_gap_accuracy", "auc", "ece", "ci90_width_days"):
        target = TARGETS.get(key)
        table.add_row(
            key,
            f"{figures[key]:.3f}",
            f"{figures['baseline_' + key]:.3f}",
            "" if target is None else (f"<= {target}" if key == "ece" else f">= {target}"),
        )
    table.add_row(
        "inference chips/s",
        f"{figures['inference_chips_per_s']:.0f}",
        f"{figures['baseline_chips_per_s']:.0f}",
        ">= 1000",
    )
    table.add_row("train epoch s (600x15)", f"{figures['train_epoch_s_600x15']:.1f}", "", "<= 60")
    table.add_row("eval buildings", str(figures["eval_buildings"]), "", "")
    console.print(table)
    console.print(
        f"temperature {figures['temperature']:.3f} (validation fit {figures['temperature_fitted']:.3f}, "
        f"shrunk towards 1); ECE at the raw fit {figures['ece_at_temperature_fitted']:.3f}, "
        f"at 1 {figures['ece_at_temperature_1']:.3f}"
    )
    console.print(
        f"co-registration: baseline exact {figures['baseline_exact_gap_accuracy']:.3f} on registered chips, "
        f"{figures['baseline_unregistered_exact_gap_accuracy']:.3f} on chips as stored"
    )
    console.print(
        f"[bold]exact-gap accuracy {figures['exact_gap_accuracy']:.3f}[/] vs baseline "
        f"{figures['baseline_exact_gap_accuracy']:.3f} ({100 * figures['exact_gain_over_baseline']:+.1f} points)"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--preset", choices=["tiny", "district", "city"], default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="several seeds in one run: per-seed, mean and worst figures",
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--tracking-uri", default=None, help="default: sqlite:///.work/mlflow.db")
    parser.add_argument("--config", type=Path, default=None, help="LightningCLI YAML (default: by preset)")
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-mlflow", action="store_true")
    parser.add_argument(
        "--name", default=None, help="output folder under .work/bench (default: dating-PRESET-SEED)"
    )
    parser.add_argument(
        "--self-train",
        action="store_true",
        help="add the self-training arm: a second model on crowd labels plus the first's confident pseudo-labels",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console()
    tracking = None
    if not args.no_mlflow:
        local = Settings(work_dir=WORK).tracking()
        tracking = Tracking(args.tracking_uri, None) if args.tracking_uri else local
    seeds = args.seeds or [args.seed]
    runs = []
    for seed in seeds:
        figures = run(
            args.preset,
            seed,
            tracking=tracking,
            config=args.config,
            max_epochs=args.max_epochs,
            console=console,
            self_train=args.self_train,
            name=args.name if len(seeds) == 1 else None,
        )
        print_table(figures, console)
        runs.append(figures)
    figures = runs[0] if len(runs) == 1 else summarise(runs)
    if len(runs) > 1:
        print_seed_table(figures, console)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=1, default=str))
        console.print(f"figures written to {args.json}")
    return figures


SUMMARY_KEYS = (
    "exact_gap_accuracy",
    "within1_gap_accuracy",
    "auc",
    "ece",
    "ci90_width_days",
    "baseline_exact_gap_accuracy",
    "baseline_within1_gap_accuracy",
    "exact_gain_over_baseline",
    "baseline_unregistered_exact_gap_accuracy",
    "inference_chips_per_s",
    "train_epoch_s",
    "train_epoch_s_600x15",
    "eval_buildings",
)


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several seeds' figures as one: means, worst seeds, and every seed's figures.

    Each figure of :data:`SUMMARY_KEYS` gets its mean and ``worst_<figure>`` (the minimum, or the maximum for ECE
    and times); ``targets_met_every_seed`` says whether every seed meets every target; ``per_seed`` keeps the runs.
    """
    out: dict[str, Any] = {"preset": runs[0]["preset"], "seeds": [r["seed"] for r in runs]}
    for key in SUMMARY_KEYS:
        values = [float(r[key]) for r in runs]
        out[key] = float(np.mean(values))
        lower_is_better = key in ("ece", "ci90_width_days") or key.startswith("train_epoch")
        out[f"worst_{key}"] = max(values) if lower_is_better else min(values)
    out["targets_met_every_seed"] = all(
        (r[key] <= target if key == "ece" else r[key] >= target)
        for r in runs
        for key, target in TARGETS.items()
    ) and all(r["exact_gain_over_baseline"] >= 0.15 for r in runs)
    out["per_seed"] = runs
    return out


def print_seed_table(summary: dict[str, Any], console: Console) -> None:
    """One row per seed and the mean / worst rows, against the targets."""
    keys = ("exact_gap_accuracy", "within1_gap_accuracy", "auc", "ece", "inference_chips_per_s")
    table = Table(title=f"dating: {summary['preset']} over seeds {summary['seeds']}")
    table.add_column("train -> eval")
    for key in keys:
        table.add_column(key.replace("_gap_accuracy", "").replace("inference_", ""), justify="right")
    for r in summary["per_seed"]:
        table.add_row(f"{r['seed']} -> {r['eval_seed']}", *(f"{r[k]:.3f}" for k in keys))
    table.add_row("mean", *(f"{summary[k]:.3f}" for k in keys))
    table.add_row("worst", *(f"{summary['worst_' + k]:.3f}" if "worst_" + k in summary else "" for k in keys))
    table.add_row("target", *(("<= " if k == "ece" else ">= ") + str(TARGETS[k]) for k in keys))
    console.print(table)
    verdict = (
        "every target met on every seed" if summary["targets_met_every_seed"] else "some seed misses a target"
    )
    console.print(f"[bold]{verdict}[/]")


if __name__ == "__main__":
    main()
