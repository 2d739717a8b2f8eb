"""MLflow tracking and the model registry: log training runs, register candidates, promote champions.

Every training run logs its parameters, the data fingerprint (chip cache fingerprint and label snapshot id),
its metrics, a reliability diagram and a gap-error histogram, and the model with its signature; the model is
registered as a new version of ``striketracker-dating`` and given the alias ``candidate``. :func:`promote`
moves ``champion`` to the candidate only when the candidate beats the current champion on a fixed audit set
(exact-gap accuracy, ties broken by lower ECE); every comparison, won or lost, is logged as a run of the
``striketracker-promotions`` experiment, so a promotion can be explained later. Serving calls
:func:`load_champion`.

A process killed in the middle of a training leaves no half-logged model behind to be loaded: registration is
the last step inside the run and the run's ``FINISHED`` status is its end marker, so :func:`model_ref` refuses a
version whose run did not finish, and the alias ``candidate`` is set only after it has; the next training marks
the runs of killed processes ``KILLED`` (:func:`close_killed_runs`, by the host and pid tagged on each run).

The tracking URI and artifact root are passed in (the service's Settings own them); the embedded default is a
SQLite store with local artifacts under the work directory.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import Schema, TensorSpec

from model.calibration import DatingMetrics
from model.errors import ChampionMissingError, RegistryError
from model.task import DatingTask
from model.temporaries import writer_alive, writer_tag

__all__ = [
    "CANDIDATE",
    "CHAMPION",
    "MODEL_NAME",
    "ModelRef",
    "PromotionDecision",
    "Tracking",
    "beats",
    "close_killed_runs",
    "load_champion",
    "load_model",
    "log_training_run",
    "model_ref",
    "promote",
]

MODEL_NAME = "striketracker-dating"
CANDIDATE = "candidate"
CHAMPION = "champion"
TRAINING_EXPERIMENT = "striketracker-dating"
PROMOTION_EXPERIMENT = "striketracker-promotions"
WRITER = "striketracker.writer"
"""Run tag: the :func:`model.temporaries.writer_tag` of the process writing the run."""


@dataclass(frozen=True)
class Tracking:
    """Where MLflow writes.

    Attributes:
        tracking_uri: e.g. ``sqlite:///.work/mlflow.db`` or ``http://mlflow:5000``.
        artifact_root: local folder (or URI) for artifacts of experiments created here; None = MLflow default.
    """

    tracking_uri: str
    artifact_root: str | None = None

    def activate(self, experiment: str = TRAINING_EXPERIMENT) -> str:
        """Point MLflow here and return the id of ``experiment`` (created with the artifact root if new)."""
        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        client = MlflowClient(self.tracking_uri, self.tracking_uri)
        found = client.get_experiment_by_name(experiment)
        if found is not None:
            return str(found.experiment_id)
        location = None
        if self.artifact_root:
            root = self.artifact_root
            location = (
                (Path(root) / experiment).resolve().as_uri() if "://" not in root else f"{root}/{experiment}"
            )
        return str(client.create_experiment(experiment, artifact_location=location))

    def client(self) -> MlflowClient:
        return MlflowClient(self.tracking_uri, self.tracking_uri)


@dataclass(frozen=True)
class ModelRef:
    """One registered model version.

    Attributes:
        name: registered model name.
        version: registry version number.
        run_id: the training run that produced it.
    """

    name: str
    version: str
    run_id: str

    @property
    def label(self) -> str:
        """What prediction files record as the model version, ``striketracker-dating/3``."""
        return f"{self.name}/{self.version}"


@dataclass(frozen=True)
class PromotionDecision:
    """The outcome of comparing a candidate with the champion on the audit set.

    Attributes:
        promoted: whether ``champion`` now points at the candidate.
        candidate / champion: the versions compared (champion None when there was none).
        candidate_metrics / champion_metrics: audit scores.
        reason: one sentence a person can read.
        run_id: the MLflow run recording the comparison.
    """

    promoted: bool
    candidate: ModelRef
    champion: ModelRef | None
    candidate_metrics: DatingMetrics
    champion_metrics: DatingMetrics | None
    reason: str
    run_id: str


def signature(task: DatingTask, chip_size: int) -> ModelSignature:
    """Tensor signature of the network's inputs and the posterior output."""
    c = task.network_config.in_channels
    inputs = Schema(
        [
            TensorSpec(np.dtype(np.uint8), (-1, -1, c, chip_size, chip_size), "chips"),
            TensorSpec(np.dtype(np.uint8), (-1, chip_size, chip_size), "mask"),
            TensorSpec(np.dtype(np.float32), (-1, -1), "valid"),
            TensorSpec(np.dtype(np.float32), (-1, -1), "days"),
        ]
    )
    outputs = Schema([TensorSpec(np.dtype(np.float32), (-1, -1), "gap_probs")])
    return ModelSignature(inputs=inputs, outputs=outputs)


def log_training_run(
    task: DatingTask,
    tracking: Tracking,
    *,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    data_fingerprint: str,
    label_snapshot: str,
    chip_size: int,
    artifacts: Sequence[tuple[str, Path]] = (),
    run_id: str | None = None,
    run_name: str | None = None,
) -> ModelRef:
    """Log a trained model into a run (an existing one, e.g. the Lightning logger's), register it as candidate.

    Returns:
        The new registered version.
    """
    experiment_id = tracking.activate()
    with mlflow.start_run(
        run_id=run_id, experiment_id=None if run_id else experiment_id, run_name=run_name
    ) as run:
        flat = {k: _param(v) for k, v in params.items()}
        mlflow.log_params({k: v for k, v in flat.items() if len(v) <= 500})
        mlflow.set_tags(
            {"data_fingerprint": data_fingerprint, "label_snapshot": label_snapshot, WRITER: writer_tag()}
        )
        mlflow.log_params({"data_fingerprint": data_fingerprint, "label_snapshot": label_snapshot})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})
        for name, path in artifacts:
            mlflow.log_artifact(str(path), artifact_path=name)
        info = mlflow.pytorch.log_model(
            task,
            name="model",
            signature=signature(task, chip_size),
            registered_model_name=MODEL_NAME,
            pip_requirements=["torch", "lightning", "mlflow"],
            serialization_format="pickle",
        )
        logged_run = str(run.info.run_id)
        version = str(info.registered_model_version)
        client = tracking.client()
        client.set_model_version_tag(MODEL_NAME, version, "data_fingerprint", data_fingerprint)
        client.set_model_version_tag(MODEL_NAME, version, "label_snapshot", label_snapshot)
    # the run is FINISHED: the version is whole; only now may a command find it by its alias
    client.set_registered_model_alias(MODEL_NAME, CANDIDATE, version)
    return ModelRef(MODEL_NAME, version, logged_run)


def close_killed_runs(tracking: Tracking) -> list[str]:
    """Mark ``KILLED`` the training runs still ``RUNNING`` whose process is gone (killed on this host).

    Returns:
        The ids of the runs marked.
    """
    experiment_id = tracking.activate(TRAINING_EXPERIMENT)
    client = tracking.client()
    running = client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'")
    killed = [run.info.run_id for run in running if not writer_alive(run.data.tags.get(WRITER, ""))]
    for run_id in killed:
        client.set_terminated(run_id, status="KILLED")
    return killed


def _param(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def model_ref(tracking: Tracking, alias: str | None = None, version: str | None = None) -> ModelRef:
    """The version behind an alias, or a version by number.

    Raises:
        ChampionMissingError: asked for ``champion`` and there is none.
        RegistryError: unknown alias or version.
    """
    client = tracking.client()
    try:
        if version is not None:
            mv = client.get_model_version(MODEL_NAME, str(version))
        else:
            mv = client.get_model_version_by_alias(MODEL_NAME, alias or CHAMPION)
    except MlflowException as exc:
        if version is None and (alias or CHAMPION) == CHAMPION:
            raise ChampionMissingError(
                f"no version of {MODEL_NAME!r} has the alias 'champion' in {tracking.tracking_uri}; "
                "train a model and run `striketracker promote` first"
            ) from exc
        what = f"version {version}" if version is not None else f"alias {alias!r}"
        raise RegistryError(
            f"{MODEL_NAME} {what} not found in {tracking.tracking_uri}; list versions with `mlflow ui`"
        ) from exc
    status = _run_status(client, mv.run_id)
    if status not in ("FINISHED", None):
        raise RegistryError(
            f"{MODEL_NAME}/{mv.version} comes from training run {mv.run_id}, which did not finish (status "
            f"{status}): its process was stopped before the model was complete; train again, or use another "
            "version"
        )
    return ModelRef(MODEL_NAME, str(mv.version), str(mv.run_id))


def _run_status(client: MlflowClient, run_id: str | None) -> str | None:
    """The status of the run behind a version; None when it has none or it was purged (nothing to check)."""
    if not run_id:
        return None
    try:
        return str(client.get_run(run_id).info.status)
    except MlflowException:
        return None


def load_model(
    tracking: Tracking, alias: str | None = None, version: str | None = None
) -> tuple[DatingTask, ModelRef]:
    """Load a registered version (by alias or number) as a :class:`DatingTask` in eval mode."""
    ref = model_ref(tracking, alias, version)
    mlflow.set_tracking_uri(tracking.tracking_uri)
    mlflow.set_registry_uri(tracking.tracking_uri)
    task = mlflow.pytorch.load_model(f"models:/{MODEL_NAME}/{ref.version}", map_location="cpu")
    if not isinstance(task, DatingTask):
        raise RegistryError(
            f"{ref.label} is a {type(task).__name__}, not a DatingTask; register dating models only"
        )
    task.eval()
    return task, ref


def load_champion(tracking: Tracking) -> tuple[DatingTask, ModelRef]:
    """The model serving uses.

    Raises:
        ChampionMissingError: nothing has been promoted yet.
    """
    return load_model(tracking, CHAMPION)


def beats(candidate: DatingMetrics, champion: DatingMetrics, tolerance: float = 1e-9) -> bool:
    """Higher exact-gap accuracy wins; on a tie, lower ECE."""
    if candidate.exact_gap_accuracy > champion.exact_gap_accuracy + tolerance:
        return True
    return abs(candidate.exact_gap_accuracy - champion.exact_gap_accuracy) <= tolerance and (
        candidate.ece < champion.ece - tolerance
    )


def promote(
    tracking: Tracking,
    evaluate: Callable[[DatingTask], DatingMetrics],
    *,
    audit_id: str,
    candidate: str | None = None,
) -> PromotionDecision:
    """Compare the candidate (alias, or a version number) with the champion on the audit set; promote if better.

    Args:
        tracking: MLflow location.
        evaluate: scores a model on the fixed audit set (same function for both models).
        audit_id: identifies the audit set (e.g. chip fingerprint + label snapshot), logged with the decision.
        candidate: version number; None takes the ``candidate`` alias.
    """
    cand_task, cand_ref = load_model(tracking, CANDIDATE if candidate is None else None, candidate)
    try:
        champ_task, champ_ref = load_champion(tracking)
    except ChampionMissingError:
        champ_task, champ_ref = None, None
    cand_metrics = evaluate(cand_task)
    champ_metrics = evaluate(champ_task) if champ_task is not None else None
    if champ_ref is not None and champ_ref.version == cand_ref.version:
        promoted, reason = False, f"{cand_ref.label} already is the champion"
    elif champ_metrics is None:
        promoted, reason = True, f"no champion yet; {cand_ref.label} becomes the first champion"
    elif beats(cand_metrics, champ_metrics):
        promoted = True
        reason = (
            f"{cand_ref.label} beats {champ_ref.label if champ_ref else '-'} on the audit set: exact-gap accuracy "
            f"{cand_metrics.exact_gap_accuracy:.4f} vs {champ_metrics.exact_gap_accuracy:.4f}, "
            f"ECE {cand_metrics.ece:.4f} vs {champ_metrics.ece:.4f}"
        )
    else:
        promoted = False
        reason = (
            f"{cand_ref.label} does not beat {champ_ref.label if champ_ref else '-'}: exact-gap accuracy "
            f"{cand_metrics.exact_gap_accuracy:.4f} vs {champ_metrics.exact_gap_accuracy:.4f}, "
            f"ECE {cand_metrics.ece:.4f} vs {champ_metrics.ece:.4f}; champion kept"
        )
    experiment_id = tracking.activate(PROMOTION_EXPERIMENT)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"promote {cand_ref.label}") as run:
        mlflow.set_tags(
            {
                "candidate_version": cand_ref.version,
                "champion_version": champ_ref.version if champ_ref else "",
                "promoted": str(promoted),
                "audit_id": audit_id,
                "reason": reason,
            }
        )
        mlflow.log_metrics(cand_metrics.as_dict("candidate_"))
        if champ_metrics is not None:
            mlflow.log_metrics(champ_metrics.as_dict("champion_"))
        with tempfile.TemporaryDirectory() as tmp:
            record = {
                "promoted": promoted,
                "reason": reason,
                "audit_id": audit_id,
                "candidate": asdict(cand_ref),
                "champion": asdict(champ_ref) if champ_ref else None,
                "candidate_metrics": asdict(cand_metrics),
                "champion_metrics": asdict(champ_metrics) if champ_metrics else None,
            }
            path = Path(tmp) / "decision.json"
            path.write_text(json.dumps(record, indent=1))
            mlflow.log_artifact(str(path))
        run_id = run.info.run_id
    if promoted:
        tracking.client().set_registered_model_alias(MODEL_NAME, CHAMPION, cand_ref.version)
    return PromotionDecision(promoted, cand_ref, champ_ref, cand_metrics, champ_metrics, reason, run_id)
