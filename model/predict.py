"""Batch prediction: gap posteriors for every building of a chip cache, written with the model version.

Output folder (see docs/CONTRACTS.md, "Model posteriors")::

    OUT/
      posteriors.csv   building_id, gap, gap_probability, map_gap, confidence, ci90_lo, ci90_hi, entropy, bald,
                       p_damaged, p_destroyed, last_intact_date, first_damaged_date, model_version,
                       data_fingerprint

``gap`` is the reported gap (:func:`model.calibration.reported_gap`: damaged when P(damaged) >= 1/2, then the
most probable damaged gap), and the two dates bound it; ``map_gap`` / ``confidence`` are the plain most probable
gap and its probability.
      posteriors.npy   float32 [N, T + 1] gap probabilities, rows in posteriors.csv order
      meta.json        model_version, data_fingerprint, dates, mc_samples, temperature, registration_px, created

Files are written to a temporary name and renamed, so an interrupted run never leaves a half-written table.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from model.calibration import reported_gap
from model.changepoint import credible_interval
from model.datamodule import ChipArrays, ChipDataset, GapLabels
from model.errors import DataMismatchError
from model.task import DatingTask

__all__ = [
    "CONTEXT_BUILDINGS",
    "DateContexts",
    "Predictions",
    "date_contexts",
    "predict",
    "pseudo_labels",
    "reference_batch",
    "reference_rows",
    "write_posteriors",
]


@dataclass(frozen=True)
class Predictions:
    """Model output for some buildings of a chip cache.

    Attributes:
        building_ids: buildings, in row order.
        probs: ``[N, T + 1]`` gap probabilities (temperature-scaled, Monte-Carlo averaged).
        loglik: ``[N, T + 1]`` deterministic gap log-likelihood before temperature (for calibration).
        entropy / bald: predictive entropy and BALD mutual information, nats.
        p_destroyed: P(destroyed | damaged).
        loglik_samples: ``[N, S, T + 1]`` per Monte-Carlo sample gap log-likelihood before temperature.
        log_timing: ``[N, T + 1]`` the model's prior on when, given damage (zeros: uniform); the posterior of a
            log-likelihood at temperature t is ``timed_posterior(loglik / t, log_timing)``
            (:func:`model.calibration.tempered_log_posterior`).
        seconds: wall time of the prediction.
        context_buildings: the reference sample whose per-date mean embeddings were the date context
            (:func:`reference_rows`); empty when the model uses none.
    """

    building_ids: tuple[str, ...]
    probs: np.ndarray = field(repr=False)
    loglik: np.ndarray = field(repr=False)
    entropy: np.ndarray = field(repr=False)
    bald: np.ndarray = field(repr=False)
    p_destroyed: np.ndarray = field(repr=False)
    loglik_samples: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 1, 1)))
    log_timing: np.ndarray | None = field(repr=False, default=None)
    seconds: float = 0.0
    context_buildings: tuple[str, ...] = ()


def predict(
    task: DatingTask,
    chips: ChipArrays,
    rows: Sequence[int] | np.ndarray | None = None,
    *,
    mc_samples: int | None = None,
    batch_size: int = 64,
    progress: bool = True,
    contexts: DateContexts | None = None,
) -> Predictions:
    """Posteriors of the given rows (all buildings by default), with a progress bar.

    ``contexts`` are this model's date contexts over these chips from :func:`date_contexts`; a caller that
    predicts a few buildings at a time (the ML backend) passes them so the reference sample is not encoded on
    every call. Without them (or with ones for another number of samples) they are computed here.

    Raises:
        DataMismatchError: the chips have another band count than the model was trained on.
    """
    if chips.chips.shape[2] < task.network_config.in_channels:
        raise DataMismatchError(
            f"chip cache has {chips.chips.shape[2]} bands, the model expects {task.network_config.in_channels}; "
            "ingest with the model's bands"
        )
    rows = np.arange(len(chips.building_ids)) if rows is None else np.asarray(rows, dtype=np.int64)
    samples = int(task.hparams["mc_samples"]) if mc_samples is None else mc_samples
    loader = DataLoader(ChipDataset(chips, rows), batch_size=batch_size, shuffle=False)
    parts: dict[str, list[torch.Tensor]] = {}
    started = time.perf_counter()
    task.eval()
    if contexts is None or contexts.samples != samples:
        contexts = date_contexts(task, chips, samples)
    with tqdm(total=len(rows), desc="predict", unit="bldg", disable=not progress) as bar:
        for batch in loader:
            out = task.mc_predict(batch, samples, contexts.contexts)
            for key, value in out.items():
                parts.setdefault(key, []).append(value.detach().cpu())
            bar.update(len(batch["row"]))
    seconds = time.perf_counter() - started
    g = chips.n_dates + 1

    def cat(key: str, shape: tuple[int, ...]) -> np.ndarray:
        return torch.cat(parts[key]).numpy() if key in parts else np.zeros(shape, dtype=np.float32)

    return Predictions(
        building_ids=tuple(chips.building_ids[r] for r in rows),
        probs=cat("probs", (0, g)),
        loglik=cat("loglik", (0, g)),
        entropy=cat("entropy", (0,)),
        bald=cat("bald", (0,)),
        p_destroyed=cat("p_destroyed", (0,)),
        loglik_samples=cat("loglik_samples", (0, 1, g)),
        log_timing=cat("log_timing", (0, g)),
        seconds=seconds,
        context_buildings=contexts.buildings,
    )


@dataclass(frozen=True)
class DateContexts:
    """A model's date contexts over one chip cache (:meth:`DatingTask.date_contexts`), for ``samples`` samples.

    Attributes:
        contexts: one ``[T, E]`` context per (member, quarter turn); None when the model uses no date context.
        buildings: the reference buildings they come from (written beside every posterior, for evidence).
        samples: the Monte-Carlo samples they were computed for.
    """

    contexts: dict[tuple[int, int], torch.Tensor] | None
    buildings: tuple[str, ...]
    samples: int


def date_contexts(task: DatingTask, chips: ChipArrays, mc_samples: int | None = None) -> DateContexts:
    """Encode the reference sample (:func:`reference_rows`) once: the date contexts :func:`predict` uses."""
    samples = int(task.hparams["mc_samples"]) if mc_samples is None else mc_samples
    if not (task.network_config.date_context and len(chips.building_ids)):
        return DateContexts(None, (), samples)
    task.eval()
    reference = reference_batch(chips)
    return DateContexts(
        task.date_contexts(reference, samples),
        tuple(chips.building_ids[int(r)] for r in reference["row"]),
        samples,
    )


CONTEXT_BUILDINGS = 128
"""Buildings in the fixed reference sample whose per-date mean embedding is the date context."""


def reference_rows(chips: ChipArrays, size: int = CONTEXT_BUILDINGS) -> np.ndarray:
    """The fixed, seeded sample of a cache's rows that date contexts come from (the same on every run)."""
    n = len(chips.building_ids)
    return np.sort(np.random.default_rng(0).permutation(n)[: min(size, n)])


def reference_batch(chips: ChipArrays, size: int = CONTEXT_BUILDINGS) -> dict[str, torch.Tensor]:
    """Chips, masks and validity of :func:`reference_rows`, as one batch."""
    loader = DataLoader(ChipDataset(chips, reference_rows(chips, size)), batch_size=size, shuffle=False)
    return next(iter(loader))


def pseudo_labels(
    predictions: Predictions,
    *,
    min_confidence: float = 0.9,
    exclude: Sequence[str] = (),
    block_ids: Mapping[str, str] | None = None,
) -> GapLabels | None:
    """Soft labels from a model's confident posteriors, for self-training on unlabelled buildings.

    A building qualifies when its most probable gap has at least ``min_confidence`` (the posteriors are
    temperature-calibrated, so this is the expected share of right gaps) and it is not in ``exclude`` (buildings
    with real labels). The target is the posterior itself, so the remaining doubt travels with the label; the
    grade is the model's (destroyed when ``p_destroyed > 0.5``) for buildings it calls damaged. ``block_ids`` maps
    buildings to spatial blocks when the real labels carry them (see ``ChipDataModule.pseudo_labels``).

    Returns:
        The pseudo-labels, or None when no building qualifies.
    """
    if not 0.0 < min_confidence <= 1.0:
        raise ValueError(f"min_confidence must be in (0, 1], got {min_confidence}")
    probs = predictions.probs
    intact_gap = probs.shape[1] - 1
    skip = set(exclude)
    rows = [
        i
        for i, b in enumerate(predictions.building_ids)
        if b not in skip and float(probs[i].max()) >= min_confidence
    ]
    if not rows:
        return None
    ids = [predictions.building_ids[i] for i in rows]
    damaged = probs[rows].argmax(axis=1) < intact_gap
    grade = np.where(damaged, (predictions.p_destroyed[rows] > 0.5).astype(np.int64), -1)
    blocks = [block_ids[b] for b in ids] if block_ids is not None else None
    return GapLabels.from_soft(ids, probs[rows], grade, blocks)


def write_posteriors(
    predictions: Predictions,
    dates: Sequence[dt.date],
    out: Path,
    *,
    model_version: str,
    data_fingerprint: str,
    mc_samples: int,
    temperature: float,
    registration_px: Sequence[Sequence[int]] | None = None,
) -> Path:
    """Write the posterior table, the probability matrix and their metadata (module docstring)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    probs = predictions.probs
    t = len(dates)
    if probs.shape[1:] != (t + 1,):
        raise DataMismatchError(f"posteriors have {probs.shape[1]} gaps but the timeline has {t} dates")
    map_gap = probs.argmax(axis=1)
    gap = reported_gap(probs)
    lo, hi = credible_interval(torch.from_numpy(probs.astype(np.float64)), 0.9)
    iso = [d.isoformat() for d in dates]
    frame = pd.DataFrame(
        {
            "building_id": predictions.building_ids,
            "gap": gap,
            "gap_probability": np.take_along_axis(probs, gap[:, None], axis=1)[:, 0],
            "map_gap": map_gap,
            "confidence": probs.max(axis=1),
            "ci90_lo": lo.numpy(),
            "ci90_hi": hi.numpy(),
            "entropy": predictions.entropy,
            "bald": predictions.bald,
            "p_damaged": 1.0 - probs[:, t],
            "p_destroyed": predictions.p_destroyed,
            "last_intact_date": [iso[g - 1] if g >= 1 else "" for g in gap],
            "first_damaged_date": [iso[g] if g < t else "" for g in gap],
            "model_version": model_version,
            "data_fingerprint": data_fingerprint,
        }
    )
    meta = {
        "model_version": model_version,
        "data_fingerprint": data_fingerprint,
        "dates": iso,
        "mc_samples": mc_samples,
        "temperature": temperature,
        "registration_px": None if registration_px is None else [list(map(int, o)) for o in registration_px],
        "date_context_buildings": list(predictions.context_buildings),
        "buildings": len(frame),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    _atomic(out / "posteriors.csv", lambda p: frame.to_csv(p, index=False))
    _atomic(out / "posteriors.npy", lambda p: np.save(p, probs.astype(np.float32)))
    _atomic(out / "meta.json", lambda p: p.write_text(json.dumps(meta, indent=1)))
    return out


def _atomic(path: Path, write: Callable[[Path], object]) -> None:
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    write(tmp)
    os.replace(tmp, path)
