"""Training with Lightning's DDP strategy: two CPU processes (gloo) run `train` with fast_dev_run (#15).

The GPU / multi-node path is the same code with another accelerator and more devices; this exercises the
process launch, the distributed sampler, gradient all-reduce and calibration on rank 0 only.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.model.dating_data import exact_labels, synthetic_chips, write_cache

CONFIG = Path(__file__).resolve().parents[2] / "experiments" / "configs" / "tiny.yaml"

# Lightning's DDP launcher starts the other rank by re-running this script with LOCAL_RANK set, so the
# training must run from a script, not from inside the pytest process.
SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    from model.training import run_cli

    torch.set_num_threads(1)
    out = sys.argv[1]
    result = run_cli(sys.argv[2:])
    trainer = result.task.trainer
    record = {
        "rank": trainer.global_rank,
        "world_size": trainer.world_size,
        "strategy": type(trainer.strategy).__name__,
        "backend": trainer.strategy.process_group_backend,
        "temperature": result.temperature,
        "calibrated": result.val_metrics is not None,
        "checksum": float(sum(p.detach().double().sum() for p in result.task.parameters())),
    }
    with open(f"{out}.{trainer.global_rank}.json", "w") as f:
        json.dump(record, f)
    """
)


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_train_runs_on_two_cpu_processes_with_ddp(rng: np.random.Generator, tmp_path: Path) -> None:
    arrays, gaps = synthetic_chips(rng, n=24, n_dates=4, size=16)
    cache = write_cache(arrays, tmp_path / "cache")
    labels = exact_labels(arrays, gaps).write_csv(tmp_path / "labels.csv", arrays.dates)
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT)
    args = [
        "--config", str(CONFIG), "--data.cache", str(cache), "--data.labels", str(labels),
        "--trainer.strategy", "ddp", "--trainer.accelerator", "cpu", "--trainer.devices", "2",
        "--trainer.fast_dev_run", "true", "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "rank"), *args],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=450,  # two cold imports of torch + Lightning + MLflow, one after the other, on a loaded machine
    )
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads((tmp_path / f"rank.{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in records] == [0, 1]
    assert all(
        r["world_size"] == 2 and r["strategy"] == "DDPStrategy" and r["backend"] == "gloo" for r in records
    )
    assert records[0]["calibrated"] and not records[1]["calibrated"]  # rank 0 alone fits the temperature
    assert records[0]["checksum"] == pytest.approx(records[1]["checksum"], rel=1e-6)  # gradients all-reduced
