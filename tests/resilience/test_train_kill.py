"""``striketracker train`` killed with SIGKILL after an epoch's checkpoint: nothing half-written is taken as valid
(no registered version, no checkpoint other than whole ones, the MLflow run marked KILLED by the rerun), and the
same command rerun resumes from the checkpoint and registers a model that loads and predicts.

The kill is not timed: the test waits until the training's first checkpoint exists (polling the file), then
kills. A temporary of a checkpoint that the killed process was writing is planted under its pid (the kill may or
may not land inside a write), and the rerun must clear it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from model.checkpoints import LAST
from model.errors import RegistryError
from model.predict import predict
from model.registry import MODEL_NAME, TRAINING_EXPERIMENT, Tracking, load_model, model_ref
from serving.cli import app
from tests.model.dating_data import exact_labels, synthetic_chips, write_cache

pytestmark = [pytest.mark.integration, pytest.mark.timeout(480), pytest.mark.usefixtures("one_thread")]

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "experiments" / "configs" / "tiny.yaml"
EPOCHS = 6


def _wait_for_checkpoint(proc: subprocess.Popen[bytes], checkpoints: Path, log: Path) -> Path:
    """The first ``last.ckpt`` the training writes (polled; fails if the training ends or hangs first)."""
    deadline = time.monotonic() + 300
    while not (found := sorted(checkpoints.glob(f"*/{LAST}"))):
        assert proc.poll() is None, f"train ended before its first checkpoint:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no checkpoint after 300 s:\n{log.read_text()[-3000:]}"
        time.sleep(0.02)
    return found[0]


def test_a_training_killed_after_an_epoch_leaves_nothing_loadable_and_the_rerun_resumes(
    rng: np.random.Generator, tmp_path: Path
) -> None:
    arrays, gaps = synthetic_chips(rng, n=16, n_dates=4, size=16)
    cache = write_cache(arrays, tmp_path / "cache")
    labels = exact_labels(arrays, gaps).write_csv(tmp_path / "labels.csv", arrays.dates)
    work = tmp_path / "work"
    tracking = Tracking(f"sqlite:///{work / 'mlflow.db'}")
    command = [
        str(Path(sys.executable).parent / "striketracker"), "train", "--config", str(CONFIG),
        "--cache", str(cache), "--labels", str(labels), "--max-epochs", str(EPOCHS),
        "--work-dir", str(work), "--tracking-uri", tracking.tracking_uri,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = tmp_path / "killed.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            checkpoint = _wait_for_checkpoint(proc, work / "checkpoints", log)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, log.read_text()[-3000:]

    # nothing half-written is taken as valid
    folder = checkpoint.parent
    assert [p.name for p in folder.iterdir() if not p.name.startswith(f".{LAST}.")] == [LAST]
    done = torch.load(checkpoint, map_location="cpu", weights_only=False)["epoch"] + 1  # whole, readable
    assert 1 <= done < EPOCHS
    planted = folder / f".{LAST}.{socket.gethostname()}-{proc.pid}-0123abcd.part"
    planted.write_bytes(b"half a checkpoint")  # what a kill inside a write leaves
    client = tracking.client()
    assert client.search_model_versions(f"name='{MODEL_NAME}'") == []
    with pytest.raises(RegistryError):
        model_ref(tracking, "candidate")
    [killed_run] = client.search_runs([client.get_experiment_by_name(TRAINING_EXPERIMENT).experiment_id])
    assert killed_run.info.status == "RUNNING"  # as the kill left it

    rerun = CliRunner().invoke(app, command[1:])  # in this process: one cold start of torch and MLflow fewer
    assert rerun.exit_code == 0, rerun.output[-3000:]
    assert f"resumed an interrupted training after epoch {done}" in rerun.output
    assert f"registered {MODEL_NAME}/1 as candidate" in rerun.output
    assert client.get_run(killed_run.info.run_id).info.status == "KILLED"
    assert not folder.exists()  # the model is registered: checkpoint and planted temporary gone

    task, ref = load_model(tracking, "candidate")
    assert ref.version == "1" and ref.run_id != killed_run.info.run_id
    assert client.get_run(ref.run_id).info.status == "FINISHED"
    epochs = {int(m.value) for m in client.get_metric_history(ref.run_id, "epoch")}
    assert epochs == set(range(done, EPOCHS))  # Lightning went on from the checkpoint, not from epoch 0
    probs = predict(task, arrays, progress=False).probs
    assert probs.shape == (16, 5) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
