"""The model side of the Label Studio ML backend: the MLflow champion's predictions as Label Studio results.

:class:`ChampionPredictor` loads the model that holds the ``champion`` alias (:func:`model.registry.load_model`)
on first use and again whenever the alias moves (checked when Label Studio calls ``/setup``, which it does
before every prediction batch, and at most every ``recheck_s`` seconds otherwise), runs
:func:`model.predict.predict` on the chip cache rows of the requested buildings, and keeps each building's
posterior in a bounded cache keyed by model version and chip fingerprint, so a task asked about twice is
computed once. :func:`prediction_result` turns one posterior into the prediction Label Studio stores: the
reported gap as per-date states (:func:`labeling.convert.states_to_result`), each date's probability as its
score, and the task score = the reported gap's probability (low = uncertain, served first by uncertainty
sampling).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from labeling.convert import states_to_result
from model.calibration import reported_gap
from model.errors import CacheError, ChampionMissingError, ModelError
from model.registry import CHAMPION, Tracking, load_model, model_ref

__all__ = ["ChampionPredictor", "GapPrediction", "Predictor", "predicted_states", "prediction_result"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GapPrediction:
    """The champion's posterior for one building.

    Attributes:
        probs: ``[T + 1]`` gap probabilities.
        p_destroyed: probability of the destroyed grade given damage.
        model_version: the registry label, ``striketracker-dating/<version>``.
    """

    probs: np.ndarray = field(repr=False)
    p_destroyed: float
    model_version: str


class Predictor(Protocol):
    """What the ML-backend routes need from a model."""

    def model_version(self, refresh: bool = False) -> str | None:
        """The serving model's label, or None when there is none (``refresh`` re-reads the registry)."""
        ...

    def predict(self, building_ids: Sequence[str]) -> dict[str, GapPrediction]:
        """Posteriors of the buildings the model can see (others are absent from the answer)."""
        ...


def predicted_states(probs: np.ndarray, p_destroyed: float) -> tuple[list[str], list[float], float]:
    """Per-date states of a posterior's reported gap, each date's probability, and the task score.

    The reported gap is :func:`model.calibration.reported_gap` (damaged when P(damaged) >= 1/2, then the most
    probable damaged gap); dates before it are intact, the rest take the grade (``destroyed`` when
    ``p_destroyed >= 0.5``). A date's score is the probability of its state; the task score is the reported
    gap's probability (low = uncertain).
    """
    probs = np.asarray(probs, dtype=np.float64)
    n_dates = len(probs) - 1
    gap = int(reported_gap(probs[None, :])[0])
    grade = "destroyed" if p_destroyed >= 0.5 else "damaged"
    intact_after = 1.0 - np.cumsum(probs)[:-1]  # P(gap > t) = P(intact at date t)
    states = ["intact" if t < gap else grade for t in range(n_dates)]
    scores = [round(float(intact_after[t] if t < gap else 1.0 - intact_after[t]), 6) for t in range(n_dates)]
    return states, scores, round(float(probs[gap]), 6)


def prediction_result(prediction: GapPrediction, n_dates: int) -> dict[str, Any]:
    """One Label Studio prediction (``result``, ``score``, ``model_version``) from a building's posterior.

    Returns an empty ``result`` when the posterior's length does not match the task's dates.
    """
    if np.shape(prediction.probs) != (n_dates + 1,):
        return {"result": [], "score": 0.0, "model_version": prediction.model_version}
    states, scores, score = predicted_states(prediction.probs, prediction.p_destroyed)
    return {
        "result": states_to_result(states, scores),
        "score": score,
        "model_version": prediction.model_version,
    }


class ChampionPredictor:
    """Predictions of the MLflow ``champion`` over the service's chip cache.

    Args:
        tracking: the MLflow store (``Settings.tracking()``).
        cache: the chip cache folder.
        recheck_s: how often (at most) the champion alias is re-read outside ``/setup``.
        max_cached: buildings' posteriors kept in memory.
    """

    def __init__(self, tracking: Tracking, cache: Path, *, recheck_s: float = 30.0, max_cached: int = 50_000):
        self.tracking = tracking
        self.cache = cache
        self.recheck_s = recheck_s
        self._lock = threading.Lock()
        self._ref_label: str | None = None
        self._ref_version: str | None = None
        self._checked = float("-inf")
        self._task: Any = None
        self._task_version: str | None = None
        self._chips: Any = None
        self._chips_stamp = 0
        self._contexts: Any = None  # the champion's date contexts over the chips (model.predict.DateContexts)
        self._contexts_key: tuple[str | None, str] | None = None
        self._results: OrderedDict[tuple[str, str, str], GapPrediction] = OrderedDict()
        self._max_cached = max_cached

    def model_version(self, refresh: bool = False) -> str | None:
        """The champion's label (``striketracker-dating/3``), or None when nothing is promoted yet."""
        with self._lock:
            if refresh or time.monotonic() - self._checked > self.recheck_s:
                try:
                    ref = model_ref(self.tracking, CHAMPION)
                    self._ref_label, self._ref_version = ref.label, ref.version
                except ChampionMissingError:
                    self._ref_label = self._ref_version = None
                except ModelError as exc:
                    logger.warning(
                        "champion lookup failed (%s); keeping %s", type(exc).__name__, self._ref_label
                    )
                self._checked = time.monotonic()
            return self._ref_label

    def _open_chips(self) -> Any:
        from model.datamodule import ChipArrays

        manifest = self.cache / "manifest.json"
        if not manifest.is_file():
            raise CacheError(f"{self.cache}: no chip cache; run `striketracker ingest` first")
        stamp = manifest.stat().st_mtime_ns
        if self._chips is None or self._chips_stamp != stamp:
            self._chips = ChipArrays.open(self.cache)
            self._chips_stamp = stamp
        return self._chips

    def predict(self, building_ids: Sequence[str]) -> dict[str, GapPrediction]:
        """Posteriors of the requested buildings that are in the chip cache.

        Raises:
            CacheError: there is no chip cache.
            ModelError: the champion cannot be loaded.
        """
        from model.predict import date_contexts, predict

        label = self.model_version()
        if label is None:
            return {}
        with self._lock:
            chips = self._open_chips()
            if self._task_version != self._ref_version:
                self._task, ref = load_model(self.tracking, version=self._ref_version)
                self._task_version = ref.version
                logger.info("ML backend serves %s", ref.label)
            task, version = self._task, self._task_version
            label = f"{label.rsplit('/', 1)[0]}/{version}"
            positions = {b: i for i, b in enumerate(chips.building_ids)}
            wanted = [b for b in dict.fromkeys(building_ids) if b in positions]
            out: dict[str, GapPrediction] = {}
            todo = []
            for b in wanted:
                found = self._results.get((label, chips.fingerprint, b))
                if found is None:
                    todo.append(b)
                else:
                    out[b] = found
            if todo:
                # the reference sample behind the date contexts is encoded once per model and cache, not per
                # request: it costs ~8x a 16-building request
                if self._contexts_key != (version, chips.fingerprint):
                    self._contexts = date_contexts(task, chips)
                    self._contexts_key = (version, chips.fingerprint)
                preds = predict(
                    task, chips, [positions[b] for b in todo], progress=False, contexts=self._contexts
                )
                for b, probs, p_destroyed in zip(
                    preds.building_ids, preds.probs, preds.p_destroyed, strict=True
                ):
                    result = GapPrediction(np.asarray(probs, dtype=np.float64), float(p_destroyed), label)
                    out[b] = result
                    self._results[(label, chips.fingerprint, b)] = result
                while len(self._results) > self._max_cached:
                    self._results.popitem(last=False)
        return out
