"""``striketracker train / promote / evaluate / predict`` against a real temporary MLflow SQLite store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from serving.cli import app
from tests.model.dating_data import exact_labels, synthetic_chips, write_cache

CONFIG = Path(__file__).resolve().parents[2] / "experiments" / "configs" / "tiny.yaml"


@pytest.fixture
def setup(rng: np.random.Generator, tmp_path: Path) -> dict[str, str]:
    arrays, gaps = synthetic_chips(rng, n=16, n_dates=4, size=16)
    cache = write_cache(arrays, tmp_path / "cache")
    labels = exact_labels(arrays, gaps).write_csv(tmp_path / "labels.csv", arrays.dates)
    truth = tmp_path / "truth.csv"
    pd.DataFrame({"building_id": arrays.building_ids, "true_gap": gaps}).to_csv(truth, index=False)
    return {"cache": str(cache), "labels": str(labels), "truth": str(truth), "work": str(tmp_path / "work")}


def test_train_promote_evaluate_predict(setup: dict[str, str], tmp_path: Path) -> None:
    torch.set_num_threads(1)
    runner = CliRunner()
    work = ["--work-dir", setup["work"]]
    missing = runner.invoke(app, ["predict", "--cache", setup["cache"], "--out", str(tmp_path / "p"), *work])
    assert missing.exit_code == 1 and not (tmp_path / "p").exists()

    trained = runner.invoke(
        app,
        [
            "train",
            "--config",
            str(CONFIG),
            "--cache",
            setup["cache"],
            "--labels",
            setup["labels"],
            "--max-epochs",
            "2",
            *work,
        ],
    )
    assert trained.exit_code == 0, trained.output
    assert "registered striketracker-dating/1 as candidate" in trained.output

    promoted = runner.invoke(app, ["promote", "--cache", setup["cache"], "--truth", setup["truth"], *work])
    assert promoted.exit_code == 0, promoted.output
    assert "PROMOTED" in promoted.output

    evaluated = runner.invoke(app, ["evaluate", "--cache", setup["cache"], "--truth", setup["truth"], *work])
    assert evaluated.exit_code == 0 and "baseline" in evaluated.output

    out = tmp_path / "posteriors"
    predicted = runner.invoke(app, ["predict", "--cache", setup["cache"], "--out", str(out), *work])
    assert predicted.exit_code == 0, predicted.output
    table = pd.read_csv(out / "posteriors.csv")
    assert len(table) == 16 and set(table["model_version"]) == {"striketracker-dating/1"}


def test_train_with_an_empty_label_file_fails_clearly(setup: dict[str, str], tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("building_id,last_intact,first_damaged\n")
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--config",
            str(CONFIG),
            "--cache",
            setup["cache"],
            "--labels",
            str(empty),
            "--work-dir",
            setup["work"],
        ],
    )
    assert result.exit_code == 1
    assert "empty" in result.output
