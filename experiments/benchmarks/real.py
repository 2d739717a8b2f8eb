"""Real-imagery benchmark: the dating model on real xBD scenes, trained on some, evaluated on others.

A campaign on a real city starts from a few hundred volunteer labels on real imagery. This benchmark imports
real xBD scenes (``model.xbd.import_xbd``: pre/post images, building polygons, damage subtypes), ingests each
into a chip cache, and compares, on the buildings of the evaluation scenes, in one run:

- ``trained``: the model ``striketracker train`` ships for real imagery, trained on the labels of the training
  scenes (all of them at once, ``--data.cache`` as a list) with ``experiments/configs/real.yaml``: the network
  gives *when*, a logistic regression on pre/post change statistics fitted after it (``damage_classifier``,
  :mod:`model.change_features`; its inputs and strength chosen by spatial cross-validation on the training
  buildings) gives *whether*; validation blocks of the training scenes fit its temperature (nothing is tuned on
  the evaluation scenes);
- ``zero_shot``: the synthetic teacher as it is (:mod:`experiments.teacher`: trained in this run on bi-temporal
  views of ``--teacher-styles`` rendered scenarios, each with its own randomised look, with the same config, so
  its change classifier is fitted on rendered views; or read from its cache keyed by config, preset, seed and
  styles; never from a registry);
- ``finetuned``: the teacher's network weights fine-tuned on the real training labels (``--model.init_weights``;
  the change classifier is fitted again on those labels);
- ``baseline``: the non-learned change-point detector;
- ``trained_cf``: the ``trained`` model with its temperature refitted on out-of-fold predictions of the training
  buildings (cross-fitting: ``--folds`` spatial folds of the training scenes, a model trained on the others
  predicts each; one validation split of a few dozen buildings is too small to hold on an unseen area);
- ``features``: the change classifier alone (chosen as ``trained`` chooses it), the change-point detector
  giving the timing: the network out of the loop; ``features_all`` a logistic regression on every statistic
  (footprint, ring and chip) at its cross-validated strength;
- ``stacked``: the logistic regression on the chosen statistics plus the network's log-odds of damage
  (out-of-fold on the training buildings, the ``trained`` model's on the evaluation buildings); the network
  gives the timing.

Figures: ``auc`` (damaged or destroyed vs intact, from P(damaged)), ``auc_destroyed`` (destroyed vs intact),
``exact_gap_accuracy`` (the reported gap is the labelled one), ``ece`` (of the reported gap's probability),
a stratified bootstrap 90% interval of each AUC (few intact buildings make AUC noisy), per arm; the headline keys
(``auc``, ``ece``, ...) are those of the first of :data:`HEADLINE_ARMS` that ran (``headline_arm``): the
``trained`` arm, the model ``striketracker train`` ships; ``inference_chips_per_s`` is its prediction speed on
the evaluation scenes (``inference_network_only_chips_per_s`` with the change classifier off). A scene with no intact (or no destroyed) building
leaves that AUC undefined: it is reported as null with a note, not a crash. ``--both-ways`` with two scenes runs train A / evaluate B and the
reverse, and adds their mean.

    python -m experiments.benchmarks.real --xbd ../shared/data/xbd_joplin \\
        --train-scenes joplin-tornado_00000001 --eval-scenes joplin-tornado_00000000 --json .work/bench/real.json
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from experiments.benchmarks.report import DEFAULT_TRACKING_URI, log_to_mlflow
from experiments.teacher import load_or_train_teacher
from model.baseline import ChangePointBaseline
from model.calibration import auc_score, dating_metrics, fit_temperature
from model.change_features import (
    ChangeClassifier,
    building_change_features,
    choose_classifier,
    gap_probabilities,
)
from model.chips import ingest
from model.datamodule import ChipArrays, GapLabels
from model.errors import ModelError
from model.predict import Predictions, date_contexts, predict
from model.task import DatingTask
from model.training import run_cli
from model.xbd import import_xbd

__all__ = ["ARMS", "TARGETS", "bootstrap_auc", "inference_throughput", "main", "run", "score"]

WORK = Path(".work")
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ARMS = ("trained", "trained_cf", "features", "features_all", "stacked", "zero_shot", "finetuned", "baseline")
NEEDS_FOLDS = ("trained_cf", "stacked")
HEADLINE_ARMS = ("trained", "features")
"""The arm whose figures are the headline keys: the first of these that ran (the shipped model first)."""
FOLDS = 3
FOLD_BLOCK_M = 100.0
"""Side of the spatial blocks dealt to the cross-fitting folds (as ``data.block_size_m`` of real.yaml)."""
TARGETS = {"auc": 0.90, "ece": 0.05, "zero_shot_auc": 0.80}
TEACHER_PRESET = "teacher"
TEACHER_EPOCHS = 10
"""The teacher's epochs (on ~7,000 rendered views): few enough that the whole run stays under 20 minutes on 2 cores."""
TEACHER_STYLES = 3
"""Scenarios (each with its own randomised look) the teacher's views come from (:mod:`experiments.teacher`)."""
BOOTSTRAP = 2000
THROUGHPUT_SECONDS = 3.0
"""Least prediction time per throughput figure (:func:`inference_throughput`)."""


@dataclasses.dataclass(frozen=True)
class RealScene:
    """One imported and ingested xBD scene: its chips and its labels (labelled buildings only)."""

    name: str
    cache: Path
    labels_csv: Path
    chips: ChipArrays
    labels: GapLabels


def prepare(xbd: Path, names: Sequence[str], work: Path) -> dict[str, RealScene]:
    """Import the named xBD scenes into ``work/real/scenes`` and ingest each into ``work/real/chips/<scene>``.

    Labelled buildings that ingestion rejected (e.g. polygons outside the image) are left out of the labels.
    """
    out: dict[str, RealScene] = {}
    for scene in import_xbd(xbd, work / "real" / "scenes", names):
        cache = work / "real" / "chips" / scene.name
        ingest(scene.folder, scene.folder / "footprints.gpkg", cache, warn=False)
        chips = ChipArrays.open(cache)
        labels = GapLabels.read_csv(scene.folder / "labels.csv", chips.dates)
        kept = np.flatnonzero(np.isin(np.asarray(labels.building_ids), np.asarray(chips.building_ids)))
        labels_csv = scene.folder / "labels.csv"
        if len(kept) < len(labels.building_ids):
            labels = labels.subset(kept)
            labels_csv = labels.write_csv(scene.folder / "labels_ingested.csv", chips.dates)
        out[scene.name] = RealScene(scene.name, cache, labels_csv, chips, labels)
    return out


def bootstrap_auc(
    score: np.ndarray, positive: np.ndarray, seed: int, n: int = BOOTSTRAP
) -> tuple[float, float]:
    """90% interval of the AUC by stratified bootstrap (positives and negatives resampled separately)."""
    score, positive = np.asarray(score, dtype=np.float64), np.asarray(positive, dtype=bool)
    pos, neg = score[positive], score[~positive]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng([seed, 0xB007])
    values = []
    for _ in range(n):
        p = pos[rng.integers(0, len(pos), len(pos))]
        q = neg[rng.integers(0, len(neg), len(neg))]
        values.append(auc_score(np.concatenate([p, q]), np.r_[np.ones(len(p), bool), np.zeros(len(q), bool)]))
    return float(np.percentile(values, 5)), float(np.percentile(values, 95))


def score(probs: np.ndarray, labels: GapLabels, dates: Sequence[Any], seed: int) -> dict[str, float]:
    """Figures of one arm on the evaluation buildings (module docstring)."""
    gap = labels.hard_gap()
    t = probs.shape[1] - 1
    metrics = dating_metrics(probs, gap, dates)
    p_damaged = 1.0 - probs[:, t]
    intact = gap == t
    destroyed = labels.grade == 1
    pair = intact | destroyed
    auc_lo, auc_hi = bootstrap_auc(p_damaged, ~intact, seed)
    d_lo, d_hi = bootstrap_auc(p_damaged[pair], destroyed[pair], seed)
    return {
        "auc": metrics.auc,
        "auc_ci90_lo": auc_lo,
        "auc_ci90_hi": auc_hi,
        "auc_destroyed": auc_score(p_damaged[pair], destroyed[pair]),
        "auc_destroyed_ci90_lo": d_lo,
        "auc_destroyed_ci90_hi": d_hi,
        "exact_gap_accuracy": metrics.exact_gap_accuracy,
        "ece": metrics.ece,
    }


def _predict(task: DatingTask, scenes: Sequence[RealScene]) -> np.ndarray:
    return np.concatenate(
        [
            predict(task, s.chips, s.chips.positions(s.labels.building_ids), progress=False).probs
            for s in scenes
        ]
    )


def inference_throughput(
    task: DatingTask, scenes: Sequence[RealScene], min_seconds: float = THROUGHPUT_SECONDS
) -> dict[str, float]:
    """Chips per second (buildings x dates) predicting every building of ``scenes``, as shipped and with the
    change classifier switched off (the network alone): the classifier's cost, measured in the same run.

    The scenes are predicted again until ``min_seconds`` have passed (a tile of 200 buildings on two dates takes
    half a second, too little to time). Each scene's date contexts are encoded once, before the clock starts, as
    the ML backend keeps them (:func:`model.predict.date_contexts`): encoding the reference sample of 128
    buildings would otherwise count as much as the tile itself."""
    figures: dict[str, float] = {}
    fitted = task.has_damage_classifier
    arms = [("inference_chips_per_s", True), ("inference_network_only_chips_per_s", False)]
    for key, use_classifier in arms if fitted else arms[:1]:
        if fitted:
            task.damage_fitted.fill_(use_classifier)
        contexts = [date_contexts(task, s.chips) for s in scenes]
        seconds = chips = 0.0
        while not seconds or seconds < min_seconds:
            for s, context in zip(scenes, contexts, strict=True):
                seconds += predict(task, s.chips, progress=False, contexts=context).seconds
                chips += len(s.chips.building_ids) * s.chips.n_dates
        figures[key] = chips / seconds
    if fitted:
        task.damage_fitted.fill_(True)
    return figures


def _train_args(config: Path, scenes: Sequence[RealScene], seed: int) -> list[str]:
    caches = [str(s.cache) for s in scenes]
    labels = [str(s.labels_csv) for s in scenes]
    return [
        "--config",
        str(config),
        "--data.cache",
        caches[0] if len(caches) == 1 else json.dumps(caches),
        "--data.labels",
        labels[0] if len(labels) == 1 else json.dumps(labels),
        "--seed_everything",
        str(seed),
        "--data.seed",
        str(seed),
        "--trainer.enable_progress_bar",
        "false",
    ]


@dataclasses.dataclass(frozen=True)
class OutOfFold:
    """Predictions of every training building by a model trained without its spatial fold (cross-fitting).

    Attributes:
        labels: the training labels, scene after scene (the row order of the arrays).
        probs: ``[N, T + 1]`` gap probabilities.
        loglik_samples: ``[N, S, T + 1]`` gap log-likelihoods before temperature.
        log_timing: ``[N, T + 1]`` the models' log prior on when, or None.
    """

    labels: GapLabels
    probs: np.ndarray
    loglik_samples: np.ndarray
    log_timing: np.ndarray | None


def _labels_of(scenes: Sequence[RealScene]) -> GapLabels:
    """The labels of several scenes, scene after scene (the row order of their features and predictions)."""
    return functools.reduce(lambda labels, scene: labels.concat(scene.labels), scenes[1:], scenes[0].labels)


def _scene_blocks(scenes: Sequence[RealScene]) -> list[np.ndarray]:
    """Spatial block (``FOLD_BLOCK_M``) of every labelled building, per scene, keyed with the scene's name."""
    return [
        np.array(
            [f"{s.name}:{k}" for k in s.chips.blocks(s.chips.positions(s.labels.building_ids), FOLD_BLOCK_M)]
        )
        for s in scenes
    ]


def _blocks(scenes: Sequence[RealScene]) -> np.ndarray:
    return np.concatenate(_scene_blocks(scenes))


def fold_of_rows(scenes: Sequence[RealScene], folds: int, seed: int) -> list[np.ndarray]:
    """Fold index of every labelled building, per scene: whole ``FOLD_BLOCK_M`` blocks dealt at random."""
    keys = _scene_blocks(scenes)
    blocks = np.unique(np.concatenate(keys))
    if len(blocks) < folds:
        raise ValueError(
            f"the training scenes have {len(blocks)} spatial block(s) of {FOLD_BLOCK_M:.0f} m, fewer than "
            f"--folds {folds}; lower --folds"
        )
    order = np.random.default_rng([seed, 0xF01D]).permutation(len(blocks))
    fold_of_block = dict(zip(blocks[order], np.arange(len(blocks)) % folds, strict=True))
    return [np.array([fold_of_block[k] for k in scene_keys], dtype=np.int64) for scene_keys in keys]


def out_of_fold(
    config: Path, scenes: Sequence[RealScene], assignment: Sequence[np.ndarray], seed: int, work: Path
) -> OutOfFold:
    """Train a model without each fold of the training scenes (``assignment``: :func:`fold_of_rows`), predict it."""
    folds = int(max(a.max() for a in assignment)) + 1
    parts: list[list[tuple[np.ndarray, Predictions]]] = [[] for _ in scenes]
    for fold in range(folds):
        folder = work / "real" / "folds" / f"seed{seed}" / f"fold{fold}"
        folder.mkdir(parents=True, exist_ok=True)
        kept = []
        for scene, where in zip(scenes, assignment, strict=True):
            rows = np.flatnonzero(where != fold)
            csv = scene.labels.subset(rows).write_csv(folder / f"{scene.name}.csv", scene.chips.dates)
            kept.append(dataclasses.replace(scene, labels_csv=csv))
        task = run_cli(_train_args(config, kept, seed)).task
        for k, (scene, where) in enumerate(zip(scenes, assignment, strict=True)):
            held = np.flatnonzero(where == fold)
            if len(held):
                ids = [scene.labels.building_ids[i] for i in held]
                parts[k].append(
                    (held, predict(task, scene.chips, scene.chips.positions(ids), progress=False))
                )

    def assembled(field: str) -> np.ndarray:
        """One prediction field of every training building, in label order."""
        per_scene = []
        for scene, scene_parts in zip(scenes, parts, strict=True):
            values = [getattr(pred, field) for _, pred in scene_parts]
            out = np.zeros((len(scene.labels.building_ids), *values[0].shape[1:]))
            for (held, _), value in zip(scene_parts, values, strict=True):
                out[held] = value
            per_scene.append(out)
        return np.concatenate(per_scene)

    timed = all(pred.log_timing is not None for scene_parts in parts for _, pred in scene_parts)
    return OutOfFold(
        _labels_of(scenes),
        assembled("probs"),
        assembled("loglik_samples"),
        assembled("log_timing") if timed else None,
    )


def cross_fitted_temperature(oof: OutOfFold) -> float:
    """The temperature minimising the out-of-fold NLL of the training buildings (no shrinkage: all of them count)."""
    return fit_temperature(
        torch.from_numpy(oof.loglik_samples).transpose(0, 1),
        torch.from_numpy(oof.labels.target),
        torch.from_numpy(oof.labels.interval),
        log_timing=None if oof.log_timing is None else torch.from_numpy(oof.log_timing),
    )


def _log_odds(probs: np.ndarray) -> np.ndarray:
    p = np.clip(1.0 - probs[:, -1], 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))[:, None]


def _features(scenes: Sequence[RealScene]) -> np.ndarray:
    return np.concatenate(
        [building_change_features(s.chips, s.chips.positions(s.labels.building_ids)) for s in scenes]
    )


def run(
    xbd: Path,
    train_scenes: Sequence[str],
    eval_scenes: Sequence[str],
    *,
    seed: int = 0,
    work: Path = WORK,
    config: Path | None = None,
    teacher_config: Path | None = None,
    teacher_preset: str = TEACHER_PRESET,
    teacher_epochs: int = TEACHER_EPOCHS,
    teacher_styles: int = TEACHER_STYLES,
    arms: Sequence[str] = ARMS,
    folds: int = FOLDS,
    console: Console | None = None,
) -> dict[str, Any]:
    """Train on ``train_scenes``, evaluate on ``eval_scenes``; returns the figures (module docstring)."""
    console = console or Console()
    overlap = sorted(set(train_scenes) & set(eval_scenes))
    if overlap:
        raise ValueError(f"scene(s) {overlap} are in both --train-scenes and --eval-scenes; keep them apart")
    config = config or CONFIGS / "real.yaml"
    teacher_config = teacher_config or config
    started, started_cpu = time.perf_counter(), time.process_time()
    scenes = prepare(xbd, [*train_scenes, *eval_scenes], work)
    train = [scenes[s] for s in train_scenes]
    evaluate = [scenes[s] for s in eval_scenes]
    eval_labels = _labels_of(evaluate)
    dates = evaluate[0].chips.dates
    notes = []
    gap = eval_labels.hard_gap()
    t = evaluate[0].chips.n_dates
    if not (gap == t).any():
        notes.append("AUC undefined: the evaluation scenes have no intact building")
    elif not (gap < t).any():
        notes.append("AUC undefined: the evaluation scenes have no damaged building")
    if not (eval_labels.grade == 1).any():
        notes.append("auc_destroyed undefined: the evaluation scenes have no destroyed building")
    console.print(
        f"[bold]real[/] train {list(train_scenes)} ({sum(len(s.labels.building_ids) for s in train)} labelled) "
        f"-> evaluate {list(eval_scenes)} ({len(eval_labels.building_ids)} labelled, {int((gap == t).sum())} intact)"
    )
    arm_figures: dict[str, dict[str, float]] = {}
    figures_extra: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    cpu_seconds: dict[
        str, float
    ] = {}  # CPU time of this process: the wall time depends on the machine's load

    # checked before any training: too few spatial blocks for the folds is a mistake in the arguments
    assignment = fold_of_rows(train, folds, seed) if set(NEEDS_FOLDS) & set(arms) else []
    cnn_arms = {"trained", *NEEDS_FOLDS} & set(arms)
    if cnn_arms:
        t0, c0 = time.perf_counter(), time.process_time()
        result = run_cli(_train_args(config, train, seed))
        seconds["trained"] = time.perf_counter() - t0
        cpu_seconds["trained"] = time.process_time() - c0
        cnn_probs = _predict(result.task, evaluate)
        if "trained" in arms:
            arm_figures["trained"] = score(cnn_probs, eval_labels, dates, seed)
            arm_figures["trained"]["temperature"] = result.temperature
            figures_extra["damage_classifier"] = {
                k: v for k, v in result.task.trained_on.items() if k.startswith("classifier_")
            }
            figures_extra.update(inference_throughput(result.task, evaluate))
    train_labels = _labels_of(train)
    train_damaged = train_labels.hard_gap() < train[0].chips.n_dates
    if {"features", "features_all", "stacked"} & set(arms):
        t0 = time.perf_counter()
        train_x, eval_x = _features(train), _features(evaluate)
        seconds["features"] = time.perf_counter() - t0
        when = np.concatenate(
            [
                ChangePointBaseline().predict(s.chips, s.chips.positions(s.labels.building_ids))
                for s in evaluate
            ]
        )
        groups = _blocks(train)
        chosen = choose_classifier(train_x, train_damaged, groups)
        if "features" in arms:
            arm_figures["features"] = score(
                gap_probabilities(chosen.predict_damaged(eval_x), when), eval_labels, dates, seed
            )
            arm_figures["features"]["c"] = chosen.c_
        if "features_all" in arms:
            clf = ChangeClassifier().fit(train_x, train_damaged, groups)
            arm_figures["features_all"] = score(
                gap_probabilities(clf.predict_damaged(eval_x), when), eval_labels, dates, seed
            )
    if set(NEEDS_FOLDS) & set(arms):
        t0, c0 = time.perf_counter(), time.process_time()
        oof = out_of_fold(config, train, assignment, seed, work)
        seconds["folds"] = time.perf_counter() - t0
        cpu_seconds["folds"] = time.process_time() - c0
        if "stacked" in arms:
            stack_columns = (*(chosen.columns or ()), train_x.shape[1])
            clf = ChangeClassifier(columns=stack_columns).fit(
                np.hstack([train_x, _log_odds(oof.probs)]), train_damaged, groups
            )
            p = clf.predict_damaged(np.hstack([eval_x, _log_odds(cnn_probs)]))
            arm_figures["stacked"] = score(gap_probabilities(p, cnn_probs), eval_labels, dates, seed)
            arm_figures["stacked"]["oof_auc"] = auc_score(1 - oof.probs[:, -1], train_damaged)
        if "trained_cf" in arms:
            temperature = cross_fitted_temperature(oof)
            result.task.temperature.fill_(temperature)
            arm_figures["trained_cf"] = score(_predict(result.task, evaluate), eval_labels, dates, seed)
            arm_figures["trained_cf"]["temperature"] = temperature
    teacher = None
    if "zero_shot" in arms or "finetuned" in arms:
        t0, c0 = time.perf_counter(), time.process_time()
        teacher = load_or_train_teacher(
            teacher_config, teacher_preset, seed, work, styles=teacher_styles, max_epochs=teacher_epochs
        )
        seconds["teacher"] = time.perf_counter() - t0
        cpu_seconds["teacher"] = time.process_time() - c0
        console.print(
            f"teacher {teacher.key}: {teacher.views} synthetic views, "
            + ("from the cache" if teacher.cached else f"trained in {teacher.seconds:.0f} s")
        )
    if "zero_shot" in arms and teacher is not None:
        arm_figures["zero_shot"] = score(_predict(teacher.task, evaluate), eval_labels, dates, seed)
    if "finetuned" in arms and teacher is not None:
        t0, c0 = time.perf_counter(), time.process_time()
        tuned = run_cli([*_train_args(config, train, seed), "--model.init_weights", str(teacher.weights)])
        seconds["finetuned"] = time.perf_counter() - t0
        cpu_seconds["finetuned"] = time.process_time() - c0
        arm_figures["finetuned"] = score(_predict(tuned.task, evaluate), eval_labels, dates, seed)
        arm_figures["finetuned"]["temperature"] = tuned.temperature
    if "baseline" in arms:
        probs = np.concatenate(
            [
                ChangePointBaseline().predict(s.chips, s.chips.positions(s.labels.building_ids))
                for s in evaluate
            ]
        )
        arm_figures["baseline"] = score(probs, eval_labels, dates, seed)

    headline_arm = next((arm for arm in HEADLINE_ARMS if arm in arm_figures), None)
    headline = arm_figures.get(headline_arm, {}) if headline_arm else {}
    figures: dict[str, Any] = {
        "train_scenes": list(train_scenes),
        "eval_scenes": list(eval_scenes),
        "seed": seed,
        "headline_arm": headline_arm,
        **{k: headline.get(k, float("nan")) for k in ("auc", "auc_destroyed", "exact_gap_accuracy", "ece")},
        **{f"{arm}_auc": figures_of["auc"] for arm, figures_of in arm_figures.items()},
        "train_buildings": sum(len(s.labels.building_ids) for s in train),
        "eval_buildings": len(eval_labels.building_ids),
        "eval_intact": int((gap == t).sum()),
        "train_s": seconds.get("trained", float("nan")),
        "train_cpu_s": cpu_seconds.get("trained", float("nan")),
        "total_s": time.perf_counter() - started,
        "total_cpu_s": time.process_time() - started_cpu,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "arms": arm_figures,
        **figures_extra,
        "notes": notes,
        "torch_threads": torch.get_num_threads(),
    }
    return figures


def mean_of(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The directions' figures side by side and their mean (``--both-ways``)."""
    out: dict[str, Any] = {"directions": list(runs)}
    for key, value in runs[0].items():
        if isinstance(value, float | int) and not isinstance(value, bool) and key != "seed":
            out[key] = float(np.mean([r[key] for r in runs]))
    out["arms"] = {
        arm: {k: float(np.mean([r["arms"][arm][k] for r in runs])) for k in runs[0]["arms"][arm]}
        for arm in runs[0]["arms"]
    }
    out["seed"] = runs[0]["seed"]
    out["headline_arm"] = runs[0]["headline_arm"]
    out["notes"] = sorted({n for r in runs for n in r["notes"]})
    return out


def print_table(figures: dict[str, Any], console: Console, title: str) -> None:
    """One row per arm: AUC with its bootstrap interval, AUC destroyed, exact-gap accuracy, ECE."""
    table = Table(title=title)
    for column in ("arm", "auc", "auc 90% CI", "auc_destroyed", "exact_gap", "ece"):
        table.add_column(column, justify="left" if column == "arm" else "right")

    def fmt(value: float) -> str:
        return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"

    for arm, f in figures["arms"].items():
        table.add_row(
            arm,
            fmt(f["auc"]),
            f"{fmt(f['auc_ci90_lo'])}-{fmt(f['auc_ci90_hi'])}",
            fmt(f["auc_destroyed"]),
            fmt(f["exact_gap_accuracy"]),
            fmt(f["ece"]),
        )
    table.add_row("target", ">= 0.90", "", "", "", "<= 0.05 (zero-shot auc >= 0.80)")
    console.print(table)
    for note in figures.get("notes", []):
        console.print(f"[yellow]{note}[/yellow]")


def _finite(value: Any) -> Any:
    """NaN and infinities become null in the JSON file (undefined figures, e.g. AUC without intact buildings)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--xbd", type=Path, required=True, help="xBD folder with images/ and labels/")
    parser.add_argument("--train-scenes", nargs="+", required=True, help="scene names to train on")
    parser.add_argument("--eval-scenes", nargs="+", required=True, help="scene names to evaluate on")
    parser.add_argument(
        "--both-ways", action="store_true", help="also train on the eval scenes, evaluate on the train scenes"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=WORK, help="folder for scenes, chips and teachers")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--config", type=Path, default=None, help="LightningCLI YAML (default: configs/real.yaml)"
    )
    parser.add_argument("--teacher-config", type=Path, default=None, help="default: --config")
    parser.add_argument(
        "--teacher-preset", default=TEACHER_PRESET, help="scenario preset of the synthetic teacher"
    )
    parser.add_argument("--teacher-epochs", type=int, default=TEACHER_EPOCHS, help="epochs of the teacher")
    parser.add_argument(
        "--teacher-styles",
        type=int,
        default=TEACHER_STYLES,
        help="scenarios (randomised looks) of the teacher's views: seeds SEED .. SEED + N - 1",
    )
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument(
        "--folds",
        type=int,
        default=FOLDS,
        help="spatial folds of the cross-fitted arms (trained_cf, stacked)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--tracking-uri", default=DEFAULT_TRACKING_URI)
    parser.add_argument("--no-mlflow", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console()
    directions = [(args.train_scenes, args.eval_scenes)]
    if args.both_ways:
        directions.append((args.eval_scenes, args.train_scenes))
    runs = []
    try:
        for train, evaluate in directions:
            figures = run(
                args.xbd,
                train,
                evaluate,
                seed=args.seed,
                work=args.work,
                config=args.config,
                teacher_config=args.teacher_config,
                teacher_preset=args.teacher_preset,
                teacher_epochs=args.teacher_epochs,
                teacher_styles=args.teacher_styles,
                arms=args.arms,
                folds=args.folds,
                console=console,
            )
            print_table(figures, console, f"real: train {train} -> evaluate {evaluate}")
            runs.append(figures)
    except (ModelError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        sys.exit(2)
    figures = runs[0] if len(runs) == 1 else mean_of(runs)
    if len(runs) > 1:
        print_table(figures, console, "real: mean of both directions")
    console.print(
        f"[bold]{figures['headline_arm'] or 'no headline arm'}: AUC {figures['auc']:.3f} (target >= 0.90), "
        f"ECE {figures['ece']:.3f} (<= 0.05), zero-shot AUC "
        f"{figures.get('zero_shot_auc', float('nan')):.3f} (>= 0.80), trained in {figures['train_s']:.0f} s, "
        f"{figures.get('inference_chips_per_s', float('nan')):.0f} chips/s (>= 1000; network alone "
        f"{figures.get('inference_network_only_chips_per_s', float('nan')):.0f})[/bold]"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(_finite(figures), indent=1, default=str))
        console.print(f"figures written to {args.json}")
    if not args.no_mlflow:
        flat = {k: v for k, v in figures.items() if isinstance(v, int | float) and math.isfinite(float(v))}
        log_to_mlflow("real", {"preset": "xbd", **flat}, args.tracking_uri)
    return figures


if __name__ == "__main__":
    main()
