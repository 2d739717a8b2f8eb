"""The synthetic teacher: a dating model trained on a rendered scenario, the cold start for real imagery.

A campaign on a real city starts with no labels, while the scenario generator renders as many labelled buildings
as we like. The teacher is trained on *bi-temporal views* of a scenario: for every building a few pairs of its
dates (pre, post), with the gap over those two dates derived from the true destruction gap (0: damaged in both,
1: intact then damaged, 2: intact in both), because real deliveries such as xBD are pre/post pairs. Pairs that
straddle a damaged building's change are over-drawn so that about half the views show a change.

The views come from ``styles`` scenarios (seeds ``seed .. seed + styles - 1``). The ``teacher`` preset draws
each scenario's look at random (palette, roofs, ground, debris: :mod:`experiments.scenario.style`), once per
scenario; one look teaches that look. Its change classifier (``damage_classifier``) fitted on one scenario
reached AUC 0.85 on a real Joplin tile for one seed and inverted (0.40) for another, whose roofs were flat grey
without texture; fitted on the views of three looks pooled it held above 0.80 on both tiles.

The teacher is trained with the same LightningCLI config as the model it will seed (so its weights fit
``--model.init_weights``), calibrated on validation blocks of the scenarios, and cached under
``WORK/teachers/<key>`` where the key hashes the config file's text, the preset, the seed, the styles and the
view parameters: the same inputs always give the same teacher, never whatever a registry happens to hold.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from experiments.benchmarks.ingest import ensure_scenario, folder_lock
from model.chips import ingest
from model.datamodule import ChipArrays, ChipDataModule, GapLabels
from model.task import DatingTask
from model.training import finish_training, make_cli

__all__ = ["TEACHER_VERSION", "Teacher", "bitemporal_views", "load_or_train_teacher", "pooled_views"]

TEACHER_VERSION = 5
"""Bumped when the way views are drawn or the teacher is trained changes (part of the cache key). 2: the
teacher fits its change classifier on the footprint statistics (``model.change_features.FEATURE_SETS``). 3: the
change statistics are taken at full resolution (17 of them, no colour statistics). 4: and the new blue
tarps on the footprint. 5: the post chip shifted onto the pre chip by up to a pixel first."""


@dataclass(frozen=True)
class Teacher:
    """A trained synthetic teacher.

    Attributes:
        task: the calibrated model.
        weights: its saved state dict (for ``--model.init_weights``).
        key: the cache key (config text, preset, seed, views).
        seconds: wall time it took to train (0 when read from the cache).
        cached: read from the cache instead of trained in this run.
        views: bi-temporal views it was trained on.
    """

    task: DatingTask
    weights: Path
    key: str
    seconds: float
    cached: bool
    views: int


def bitemporal_views(
    chips: ChipArrays,
    true_gap: np.ndarray,
    *,
    pairs: int = 2,
    seed: int = 0,
    min_valid: float = 0.5,
    prefix: str = "",
) -> tuple[ChipArrays, GapLabels]:
    """Pre/post views of a scenario's timelines with their gap labels (module docstring).

    Args:
        chips: the scenario's chip arrays (T dates).
        true_gap: ``[N]`` true destruction gap of each row.
        pairs: views drawn per building.
        seed: seeds the choice of dates.
        min_valid: both dates of a view must have at least this valid fraction.
        prefix: put before every view id (views of several scenarios pooled must not share ids).

    Returns:
        Arrays of ``N * pairs`` 2-date views (ids ``<building>@<i>-<j>#<draw>``, block ids from the chip origins so
        views of one building never straddle a split) and their interval labels.
    """
    rng = np.random.default_rng([seed, 0x7EAC])
    t = chips.n_dates
    rows, firsts, seconds, gaps, draws = [], [], [], [], []
    for row in range(len(chips.building_ids)):
        ok = np.flatnonzero(chips.valid[row] >= min_valid)
        if len(ok) < 2:
            continue
        g = int(true_gap[row])
        for k in range(pairs):
            before, after = ok[ok < g], ok[ok >= g]
            if 0 < g < t and len(before) and len(after) and rng.random() < 0.5:
                i, j = int(rng.choice(before)), int(rng.choice(after))
            else:
                i, j = sorted(int(x) for x in rng.choice(ok, size=2, replace=False))
            rows.append(row)
            firsts.append(i)
            seconds.append(j)
            gaps.append(0 if g <= i else (1 if g <= j else 2))
            draws.append(k)
    rows_a, i_a, j_a = np.array(rows), np.array(firsts), np.array(seconds)
    stacked = np.stack([chips.read(int(r))[[i, j]] for r, i, j in zip(rows_a, i_a, j_a, strict=True)])
    ids = tuple(
        f"{prefix}{chips.building_ids[r]}@{i}-{j}#{k}"
        for r, i, j, k in zip(rows_a, i_a, j_a, draws, strict=True)
    )
    origins = None if chips.origins is None else chips.origins[rows_a]
    views = ChipArrays(
        building_ids=ids,
        dates=(chips.dates[0], chips.dates[-1]),
        chips=stacked,
        mask=np.asarray(chips.mask)[rows_a],
        valid=np.stack([chips.valid[rows_a, i_a], chips.valid[rows_a, j_a]], axis=1).astype(np.float32),
        fingerprint=hashlib.sha256(f"{chips.fingerprint}:{pairs}:{seed}".encode()).hexdigest(),
        origins=origins,
    )
    gap = np.array(gaps)
    labels = GapLabels.from_intervals(
        ids,
        [int(x) - 1 if x >= 1 else None for x in gap],
        [int(x) if x < 2 else None for x in gap],
        2,
    )
    return views, labels


def pooled_views(parts: Sequence[tuple[ChipArrays, GapLabels]]) -> tuple[ChipArrays, GapLabels]:
    """The views of several scenarios as one set (ids already distinct: :func:`bitemporal_views` ``prefix``).

    The dates are the first part's (a view's two dates are its pre and post, whatever the calendar); spatial
    blocks stay within a scenario (the origins of part k are moved k * 100 km east).
    """
    if len(parts) == 1:
        return parts[0]
    views = [v for v, _ in parts]
    origins = (
        np.concatenate([np.asarray(v.origins) + np.array([k * 100_000.0, 0.0]) for k, v in enumerate(views)])
        if all(v.origins is not None for v in views)
        else None
    )
    pooled = ChipArrays(
        building_ids=tuple(b for v in views for b in v.building_ids),
        dates=views[0].dates,
        chips=np.concatenate([v.chips for v in views]),
        mask=np.concatenate([np.asarray(v.mask) for v in views]),
        valid=np.concatenate([v.valid for v in views]),
        fingerprint=hashlib.sha256("\n".join(v.fingerprint for v in views).encode()).hexdigest(),
        origins=origins,
    )
    labels = functools.reduce(GapLabels.concat, [lab for _, lab in parts])
    return pooled, labels


def load_or_train_teacher(
    config: Path,
    preset: str,
    seed: int,
    work: Path,
    *,
    pairs: int = 2,
    styles: int = 1,
    max_epochs: int | None = None,
    progress: bool = False,
) -> Teacher:
    """The teacher for (config, preset, seed, styles, pairs): from ``work/teachers/<key>`` or trained now and cached.

    The scenarios ``preset``/``seed`` .. ``seed + styles - 1`` are generated and ingested when missing
    (``work/scenarios``, ``work/chips``).
    """
    key_text = json.dumps(
        {
            "config": Path(config).read_text(),
            "preset": preset,
            "seed": seed,
            "pairs": pairs,
            "styles": styles,
            "max_epochs": max_epochs,
            "version": TEACHER_VERSION,
        },
        sort_keys=True,
    )
    key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    folder = work / "teachers" / key
    weights = folder / "teacher.pt"
    with folder_lock(folder):
        if weights.is_file() and (folder / "meta.json").is_file():
            meta = json.loads((folder / "meta.json").read_text())
            # hparams of a cache written before "_"-keys (LightningCLI's instantiator) were left out
            task = DatingTask(**{k: v for k, v in meta["hparams"].items() if not k.startswith("_")})
            task.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            task.eval()
            return Teacher(task, weights, key, 0.0, True, int(meta["views"]))
        started = time.perf_counter()
        parts = []
        for scenario_seed in range(seed, seed + styles):
            scenario = ensure_scenario(preset, scenario_seed, work)
            cache = work / "chips" / f"{preset}-{scenario_seed}"
            with folder_lock(cache):
                ingest(scenario, scenario / "footprints.gpkg", cache, warn=False)
            chips = ChipArrays.open(cache)
            truth = pd.read_csv(scenario / "truth.csv", dtype={"building_id": str}).set_index("building_id")
            true_gap = truth.loc[list(chips.building_ids), "true_gap"].to_numpy()
            prefix = f"{preset}-{scenario_seed}/" if styles > 1 else ""
            parts.append(bitemporal_views(chips, true_gap, pairs=pairs, seed=scenario_seed, prefix=prefix))
        views, labels = pooled_views(parts)
        args = ["--config", str(config), "--trainer.enable_progress_bar", str(progress).lower()]
        if max_epochs is not None:
            args += ["--trainer.max_epochs", str(max_epochs)]
        cli = make_cli(args, {"logger": False})
        task, trainer = cli.model, cli.trainer
        assert isinstance(task, DatingTask)
        # the views replace the configured files and in-memory arrays; the rest of the data config is kept
        replaced = ("cache", "labels", "chip_arrays", "gap_labels", "pseudo_gap_labels")
        hparams = {k: v for k, v in cli.config.as_dict()["data"].items() if k not in replaced}
        data = ChipDataModule(**hparams, chip_arrays=views, gap_labels=labels)
        trainer.fit(task, datamodule=data)
        finish_training(task, data)
        task.eval()
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(task.state_dict(), weights)
        meta = {
            "key": key,
            "hparams": {
                k: v for k, v in task.hparams.items() if k != "init_weights" and not k.startswith("_")
            },
            "preset": preset,
            "seed": seed,
            "pairs": pairs,
            "styles": styles,
            "views": len(views.building_ids),
            "seconds": round(time.perf_counter() - started, 1),
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        (folder / "meta.json").write_text(json.dumps(meta, indent=1))
        return Teacher(task, weights, key, meta["seconds"], False, meta["views"])
