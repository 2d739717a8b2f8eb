"""MLflow tracking and registry against a real temporary SQLite tracking store (not mocked)."""

from __future__ import annotations

import socket
from pathlib import Path

import lightning as L
import mlflow
import numpy as np
import pytest
import torch

from active_learning.settings import Settings
from model.calibration import DatingMetrics, dating_metrics
from model.datamodule import ChipArrays, ChipDataModule
from model.errors import ChampionMissingError, RegistryError
from model.predict import predict, write_posteriors
from model.registry import (
    CANDIDATE,
    CHAMPION,
    MODEL_NAME,
    TRAINING_EXPERIMENT,
    WRITER,
    Tracking,
    close_killed_runs,
    load_champion,
    load_model,
    log_training_run,
    model_ref,
    promote,
)
from model.task import DatingTask
from model.temporaries import writer_tag
from model.training import finish_training
from tests.model.dating_data import exact_labels, synthetic_chips

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def data(rng: np.random.Generator) -> tuple[ChipArrays, np.ndarray]:
    return synthetic_chips(rng, n=32, n_dates=5, size=16)


def _small_task() -> DatingTask:
    return DatingTask(
        input_size=16, width=8, embed_dim=16, d_model=16, heads=2, layers=1, lr=1e-2, mc_samples=2
    )


def _trained(arrays: ChipArrays, gaps: np.ndarray, tracking: Tracking | None, epochs: int) -> DatingTask:
    L.seed_everything(0)
    module = ChipDataModule(chip_arrays=arrays, gap_labels=exact_labels(arrays, gaps), batch_size=8)
    task = _small_task()
    if epochs:
        L.Trainer(
            max_epochs=epochs,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        ).fit(task, datamodule=module)
    finish_training(task, module, tracking=tracking)
    return task


def test_missing_champion_is_a_clear_error(tmp_path: Path) -> None:
    tracking = Settings(work_dir=tmp_path).tracking()
    with pytest.raises(
        ChampionMissingError, match="no version of 'striketracker-dating' has the alias 'champion'"
    ):
        load_champion(tracking)


def test_training_run_logs_everything_and_promotion_needs_a_better_model(
    tmp_path: Path, data: tuple[ChipArrays, np.ndarray]
) -> None:
    arrays, gaps = data
    tracking = Settings(work_dir=tmp_path / "work").tracking()

    def audit(task: DatingTask) -> DatingMetrics:
        return dating_metrics(predict(task, arrays, progress=False).probs, gaps, arrays.dates)

    good = _trained(arrays, gaps, tracking, epochs=10)
    client = tracking.client()
    v1 = client.get_model_version_by_alias(MODEL_NAME, CANDIDATE)
    run = client.get_run(v1.run_id)
    assert run.data.params["data_fingerprint"] == arrays.fingerprint
    assert run.data.tags["label_snapshot"] == exact_labels(arrays, gaps).snapshot_id
    assert "val_cal_exact_gap_accuracy" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(v1.run_id, "plots")}
    assert artifacts == {"plots/reliability.png", "plots/gap_errors.png"}
    model_info = mlflow.models.get_model_info(f"models:/{MODEL_NAME}/{v1.version}")
    assert model_info.signature is not None and "chips" in str(model_info.signature.inputs)

    first = promote(tracking, audit, audit_id="synthetic")
    assert first.promoted and first.champion is None and "first champion" in first.reason

    _trained(arrays, gaps, tracking, epochs=0)  # an untrained candidate
    v2 = client.get_model_version_by_alias(MODEL_NAME, CANDIDATE)
    assert v2.version != v1.version
    second = promote(tracking, audit, audit_id="synthetic")
    assert not second.promoted and "champion kept" in second.reason
    assert str(client.get_model_version_by_alias(MODEL_NAME, CHAMPION).version) == str(v1.version)
    decision = client.get_run(second.run_id)
    assert decision.data.tags["promoted"] == "False"
    assert (
        decision.data.metrics["champion_exact_gap_accuracy"]
        > decision.data.metrics["candidate_exact_gap_accuracy"]
    )

    champion, ref = load_champion(tracking)
    assert ref.version == str(v1.version)
    torch.testing.assert_close(champion.temperature, good.temperature)
    out = write_posteriors(
        predict(champion, arrays, progress=False),
        arrays.dates,
        tmp_path / "post",
        model_version=ref.label,
        data_fingerprint=arrays.fingerprint,
        mc_samples=2,
        temperature=float(champion.temperature),
    )
    table = (out / "posteriors.csv").read_text().splitlines()
    assert len(table) == 33 and table[1].split(",")[-2] == f"{MODEL_NAME}/{v1.version}"
    np.testing.assert_allclose(np.load(out / "posteriors.npy").sum(axis=1), 1.0, rtol=1e-5)


def test_unknown_version_is_a_clear_error(tmp_path: Path, data: tuple[ChipArrays, np.ndarray]) -> None:
    arrays, gaps = data
    tracking = Settings(work_dir=tmp_path).tracking()
    task = _small_task()
    log_training_run(
        task, tracking, params={}, metrics={}, data_fingerprint="f", label_snapshot="s", chip_size=16
    )
    with pytest.raises(RegistryError, match="version 99 not found"):
        promote(
            tracking,
            lambda t: dating_metrics(np.eye(6)[gaps], gaps, arrays.dates),
            audit_id="x",
            candidate="99",
        )


def test_a_version_whose_run_did_not_finish_is_refused_and_killed_runs_are_closed(tmp_path: Path) -> None:
    tracking = Settings(work_dir=tmp_path).tracking()
    ref = log_training_run(
        _small_task(), tracking, params={}, metrics={}, data_fingerprint="f", label_snapshot="s", chip_size=16
    )
    client = tracking.client()
    assert client.get_run(ref.run_id).info.status == "FINISHED" and model_ref(tracking, CANDIDATE) == ref
    # a process killed between registering the version and ending its run leaves the run RUNNING
    client.update_run(ref.run_id, status="RUNNING")
    client.set_tag(ref.run_id, WRITER, f"{socket.gethostname()}-999999999-0123abcd")  # no such pid
    live = client.create_run(client.get_experiment_by_name(TRAINING_EXPERIMENT).experiment_id)
    client.set_tag(live.info.run_id, WRITER, writer_tag())  # this process: still training
    for alias, version in ((CANDIDATE, None), (None, ref.version)):
        with pytest.raises(RegistryError, match=f"{ref.run_id}, which did not finish"):
            model_ref(tracking, alias, version)
    assert close_killed_runs(tracking) == [ref.run_id]
    assert client.get_run(ref.run_id).info.status == "KILLED"
    assert client.get_run(live.info.run_id).info.status == "RUNNING"
    with pytest.raises(RegistryError, match="status KILLED"):
        load_model(tracking, CANDIDATE)
