"""Training through LightningCLI: YAML configs in, a calibrated model logged and registered in MLflow out.

:func:`run_cli` parses LightningCLI arguments (``--config experiments/configs/tiny.yaml --data.cache ...``),
fits the :class:`model.task.DatingTask` on the :class:`model.datamodule.ChipDataModule` (given a checkpoint
root, saving a checkpoint after every epoch and resuming from it when rerun after a kill:
:mod:`model.checkpoints`), then
:func:`finish_training` fits the temperature on the validation blocks, scores the calibrated model there, draws
the reliability diagram and the gap-error histogram, and (with a :class:`model.registry.Tracking`) logs it all to
the Lightning MLflow logger's run and registers the model as ``candidate``.
"""

from __future__ import annotations

import dataclasses
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from jsonargparse import lazy_instance
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import MLFlowLogger

from model.calibration import (
    DatingMetrics,
    dating_metrics,
    fit_temperature,
    plot_gap_errors,
    plot_reliability,
    shrink_temperature,
)
from model.change_features import building_change_features, choose_classifier
from model.checkpoints import resume_point, track_checkpoints, training_key
from model.datamodule import ChipDataModule, GapLabels
from model.errors import ModelConfigError
from model.predict import predict, pseudo_labels
from model.registry import (
    TRAINING_EXPERIMENT,
    WRITER,
    ModelRef,
    Tracking,
    close_killed_runs,
    log_training_run,
)
from model.task import DatingTask
from model.temporaries import writer_tag

__all__ = [
    "SelfTrainResult",
    "TrainResult",
    "finish_training",
    "fit_damage_classifier",
    "make_cli",
    "run_cli",
    "self_train",
]


@dataclass(frozen=True)
class TrainResult:
    """What one training run produced.

    Attributes:
        task: the trained, temperature-calibrated model.
        val_metrics: calibrated scores on the validation blocks (against their labels).
        temperature: the temperature in use: the validation fit shrunk towards 1
            (:func:`model.calibration.shrink_temperature`).
        temperature_fitted: the validation fit before shrinkage.
        model: the registered version (None without tracking).
        train_buildings: labelled buildings trained on (validation blocks excluded).
        data: the data module it was trained on.
    """

    task: DatingTask
    val_metrics: DatingMetrics | None
    temperature: float
    model: ModelRef | None
    train_buildings: int = 0
    data: ChipDataModule | None = None
    temperature_fitted: float = 1.0
    resumed_after_epochs: int = 0


@dataclass(frozen=True)
class SelfTrainResult:
    """The two rounds of :func:`self_train`.

    Attributes:
        first: the model trained on the real labels only (not registered).
        final: the model trained on real labels plus pseudo-labels (registered when tracking is given), or
            ``first`` when no building qualified for a pseudo-label.
        pseudo: the pseudo-labels written (all qualifying buildings; the data module drops those near
            validation buildings), or None.
    """

    first: TrainResult
    final: TrainResult
    pseudo: GapLabels | None


def make_cli(args: Sequence[str], trainer_defaults: dict[str, Any] | None = None) -> LightningCLI:
    """Build (not run) the LightningCLI of the dating task over the chip data module."""
    return LightningCLI(
        DatingTask,
        ChipDataModule,
        run=False,
        args=list(args),
        trainer_defaults={"enable_checkpointing": False, **(trainer_defaults or {})},
        save_config_callback=None,
        seed_everything_default=0,
    )


def run_cli(
    args: Sequence[str],
    tracking: Tracking | None = None,
    run_name: str | None = None,
    callbacks: Sequence[L.Callback] = (),
    artifacts: Sequence[tuple[str, Path]] = (),
    init_from: DatingTask | None = None,
    checkpoints: Path | None = None,
) -> TrainResult:
    """Parse LightningCLI ``args``, train, calibrate and (with ``tracking``) log and register the model.

    A run killed mid-way leaves no registered version (registration is the last step) and its MLflow run is
    marked ``KILLED`` by the next training (:func:`model.registry.close_killed_runs`).

    Args:
        args: LightningCLI arguments, e.g. ``["--config", "experiments/configs/tiny.yaml", "--data.cache", ...]``.
        tracking: MLflow location; None trains without logging or registering.
        run_name: MLflow run name.
        callbacks: extra Lightning callbacks (e.g. timers) added to the configured trainer.
        artifacts: extra ``(folder, file)`` artifacts for the MLflow run (e.g. the pseudo-labels used).
        init_from: warm start: training starts from this model's weights (e.g. the champion's, same
            architecture) instead of a random initialisation.
        checkpoints: root of the training checkpoints (``<work dir>/checkpoints``): the training saves one after
            every epoch and, rerun with the same settings and data after a kill, resumes from it. None (and any
            warm start) trains from the start every time: the campaign's retrains take minutes, and a warm
            start's initial weights are not part of the checkpoint's key.
    """
    defaults: dict[str, Any] = {"logger": False}
    if tracking is not None:
        close_killed_runs(tracking)
        defaults["logger"] = lazy_instance(
            MLFlowLogger,
            experiment_name=TRAINING_EXPERIMENT,
            tracking_uri=tracking.tracking_uri,
            run_name=run_name,
            log_model=False,
            tags={WRITER: writer_tag()},
        )
    cli = make_cli(args, defaults)
    task, data, trainer = cli.model, cli.datamodule, cli.trainer
    trainer.callbacks.extend(callbacks)  # type: ignore[attr-defined]
    assert isinstance(task, DatingTask) and isinstance(data, ChipDataModule)
    if init_from is not None:
        try:
            task.load_state_dict(init_from.state_dict())
        except RuntimeError as exc:
            raise ModelConfigError(
                f"cannot warm-start from a model of another architecture ({str(exc).splitlines()[0]}); "
                "train from scratch or use the config it was trained with"
            ) from None
    resume = None
    if checkpoints is not None and init_from is None:
        resume = resume_point(checkpoints, _key(cli.config.as_dict(), data))
        track_checkpoints(trainer, resume)
    trainer.fit(task, datamodule=data, ckpt_path=resume.checkpoint if resume else None)
    if not trainer.is_global_zero:
        # DDP: every rank trained the same model; rank 0 alone calibrates, logs and registers it
        return TrainResult(task=task, val_metrics=None, temperature=1.0, model=None, data=data)
    run_id = trainer.logger.run_id if isinstance(trainer.logger, MLFlowLogger) else None
    config = {k: v for k, v in cli.config.as_dict().items() if k in ("model", "data", "trainer")}
    result = finish_training(
        task,
        data,
        tracking=tracking,
        run_id=run_id,
        params=_flatten(config),
        run_name=run_name,
        artifacts=artifacts,
    )
    if resume is None:
        return result
    resume.clear()  # the model is registered: a rerun is a new training
    return dataclasses.replace(result, resumed_after_epochs=resume.epochs_done)


def _key(config: dict[str, Any], data: ChipDataModule) -> str:
    """:func:`model.checkpoints.training_key` of a LightningCLI config (loggers, callbacks and display aside)."""
    varying = {"logger", "callbacks", "enable_progress_bar", "enable_model_summary", "enable_checkpointing"}
    trainer = {k: v for k, v in config.get("trainer", {}).items() if k not in varying}
    settings = {"model": config.get("model"), "data": config.get("data"), "trainer": trainer}
    files = [Path(data.pseudo_labels_path)] if data.pseudo_labels_path else []
    return training_key(settings, fingerprints=[data.chips.fingerprint, data.labels.snapshot_id], files=files)


def finish_training(
    task: DatingTask,
    data: ChipDataModule,
    *,
    tracking: Tracking | None = None,
    run_id: str | None = None,
    params: dict[str, Any] | None = None,
    run_name: str | None = None,
    artifacts: Sequence[tuple[str, Path]] = (),
) -> TrainResult:
    """Fit the change classifier (``damage_classifier`` models) and the temperature, score on validation, plot,
    and log + register when ``tracking`` is given.

    The change classifier is fitted on the training blocks for the validation scores, then again on every
    labelled building for the model that is kept (its strength and inputs are chosen by spatial
    cross-validation inside those, so the validation blocks need not be held back from it).
    """
    data.setup("fit")
    assert data.val_rows is not None and data.train_rows is not None
    chips, labels = data.chips, data.labels
    val_labels = data.calibration_labels.subset(data.val_rows)
    rows = data.positions[data.val_rows]
    task.temperature.fill_(1.0)
    classifier_record: dict[str, Any] = {}
    with_classifier = bool(task.hparams.get("damage_classifier", False))
    if with_classifier:
        features = building_change_features(chips, data.positions)
        damaged = labels.hard_gap() < chips.n_dates
        blocks = data.blocks()
        fit_damage_classifier(task, features, damaged, blocks, data.train_rows, warn=False)  # the refit warns
    fitted, temperature, metrics = 1.0, 1.0, None
    if len(rows):
        sampled = predict(task, chips, rows, progress=False)
        fitted = fit_temperature(
            torch.from_numpy(sampled.loglik_samples).transpose(0, 1),
            torch.from_numpy(val_labels.target),
            torch.from_numpy(val_labels.interval),
            log_timing=None if sampled.log_timing is None else torch.from_numpy(sampled.log_timing),
        )
        temperature = shrink_temperature(fitted, len(rows), data.calibration_prior_buildings)
        task.temperature.fill_(temperature)
        calibrated = predict(task, chips, rows, progress=False)
        metrics = dating_metrics(calibrated.probs, val_labels.hard_gap(), chips.dates)
    if with_classifier:
        classifier_record = fit_damage_classifier(task, features, damaged, blocks, np.arange(len(damaged)))
    task.trained_on = {
        "data_fingerprint": chips.fingerprint,
        "label_snapshot": labels.snapshot_id,
        "dates": [d.isoformat() for d in chips.dates],
        "registration_px": chips.registration_px,
    }
    pseudo_record = (
        {}
        if data.pseudo is None
        else {
            "pseudo_label_snapshot": data.pseudo.snapshot_id,
            "pseudo_labelled_buildings": len(data.pseudo.building_ids),
        }
    )
    task.trained_on.update(pseudo_record)
    task.trained_on.update(classifier_record)
    ref = None
    if tracking is not None:
        with tempfile.TemporaryDirectory() as tmp:
            plots: dict[str, Path] = {}
            if metrics is not None:
                truth = val_labels.hard_gap()
                plots["plots"] = Path(tmp) / "plots"
                plot_reliability(calibrated.probs, truth, plots["plots"] / "reliability.png")
                plot_gap_errors(calibrated.probs, truth, plots["plots"] / "gap_errors.png")
            logged = {
                **(params or {}),
                "temperature": temperature,
                "temperature_fitted": fitted,
                "train_buildings": 0 if data.train_rows is None else len(data.train_rows),
                **pseudo_record,
                **classifier_record,
            }
            ref = log_training_run(
                task,
                tracking,
                params=logged,
                metrics=metrics.as_dict("val_cal_") if metrics is not None else {},
                data_fingerprint=chips.fingerprint,
                label_snapshot=labels.snapshot_id,
                chip_size=int(chips.chips.shape[-1]),
                artifacts=[*_dirs(plots), *artifacts],
                run_id=run_id,
                run_name=run_name,
            )
    n_train = 0 if data.train_rows is None else len(data.train_rows)
    return TrainResult(
        task=task,
        val_metrics=metrics,
        temperature=temperature,
        model=ref,
        train_buildings=n_train,
        data=data,
        temperature_fitted=fitted,
    )


def fit_damage_classifier(
    task: DatingTask,
    features: np.ndarray,
    damaged: np.ndarray,
    blocks: np.ndarray,
    rows: np.ndarray,
    warn: bool = True,
) -> dict[str, Any]:
    """Fit the change classifier of a ``damage_classifier`` model on ``rows`` and keep it in ``task``.

    Labels of one class only leave no classifier (the network decides alone, with a warning unless ``warn`` is
    false): a campaign's first labels may all be damaged buildings, and that must not stop the training.

    Returns:
        What was fitted, for ``trained_on`` and the MLflow run: ``classifier_features`` (the
        :data:`model.change_features.FEATURE_SETS` name, or ``none``), ``classifier_c`` (its inverse L2
        strength), ``classifier_cv_loss`` and the buildings it saw (``classifier_buildings``, ``classifier_intact``).
    """
    y = damaged[rows]
    if y.all() or not y.any():
        if warn:
            warnings.warn(
                f"the change classifier was not fitted: the {len(y)} labelled building(s) are all "
                f"{'damaged' if y.any() else 'intact'}; the network decides whether buildings are damaged until "
                "labels of both kinds exist",
                stacklevel=2,
            )
        task.set_damage_classifier(None)
        return {"classifier_features": "none", "classifier_buildings": len(y)}
    classifier = choose_classifier(features[rows], y, blocks[rows])
    task.set_damage_classifier(classifier)
    return {
        "classifier_features": classifier.feature_set,
        "classifier_c": classifier.c_,
        "classifier_cv_loss": classifier.cv_loss_,
        "classifier_buildings": len(y),
        "classifier_intact": int((~y).sum()),
    }


def self_train(
    args: Sequence[str],
    pseudo_csv: str | Path,
    *,
    min_confidence: float = 0.9,
    tracking: Tracking | None = None,
    run_name: str | None = None,
    callbacks: Sequence[L.Callback] = (),
    checkpoints: Path | None = None,
) -> SelfTrainResult:
    """Two rounds of training: real labels, then real labels plus the first model's confident pseudo-labels.

    The first model (trained on ``args`` as :func:`run_cli` would, not registered) predicts every building of the
    chip cache; the unlabelled ones whose most probable gap has at least ``min_confidence`` become soft
    pseudo-labels (:func:`model.predict.pseudo_labels`), written to ``pseudo_csv``; a fresh model then trains on
    both (``--data.pseudo_labels``, which keeps pseudo-labels away from the validation blocks), is calibrated on
    real labels only, and is logged with the pseudo-label CSV as an artifact and registered as ``candidate``.
    Self-training lets the network see the whole city's variety (sensors, shadows, damage types) rather than
    the labelled share only, at the price of one more training run.

    Args:
        callbacks: Lightning callbacks of the first round (e.g. epoch timers).
        checkpoints: root of the checkpoints each round resumes from after a kill (:func:`run_cli`).
    """
    first = run_cli(args, tracking=None, run_name=run_name, callbacks=callbacks, checkpoints=checkpoints)
    assert first.data is not None
    chips, labels = first.data.chips, first.data.labels
    everyone = predict(first.task, chips, progress=True)
    pseudo = pseudo_labels(everyone, min_confidence=min_confidence, exclude=labels.building_ids)
    if pseudo is None:
        final = (
            run_cli(args, tracking=tracking, run_name=run_name, checkpoints=checkpoints)
            if tracking is not None
            else first
        )
        return SelfTrainResult(first=first, final=final, pseudo=None)
    path = pseudo.write_csv(pseudo_csv, chips.dates)
    final = run_cli(
        [*args, "--data.pseudo_labels", str(path)],
        tracking=tracking,
        run_name=run_name,
        artifacts=[("pseudo_labels", path)],
        checkpoints=checkpoints,
    )
    return SelfTrainResult(first=first, final=final, pseudo=pseudo)


def _dirs(artifacts: dict[str, Path]) -> list[tuple[str, Path]]:
    """Each file of the artifact folders, to be logged under the folder's name."""
    return [(name, file) for name, folder in artifacts.items() for file in sorted(folder.glob("*"))]


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        elif value is not None and not isinstance(value, L.Callback):
            out[name] = value if isinstance(value, int | float | str | bool) else str(value)
    return out
