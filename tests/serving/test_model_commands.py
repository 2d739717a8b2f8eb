"""``striketracker train / promote / evaluate / predict`` against a real temporary MLflow SQLite store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import Result
from typer.testing import CliRunner

from serving.cli import app
from tests.model.dating_data import exact_labels, synthetic_chips, write_cache

CONFIG = Path(__file__).resolve().parents[2] / "experiments" / "configs" / "tiny.yaml"


def _train(config: Path, cache: Path, labels: Path, work: Path, *extra: str) -> Result:
    """``striketracker train`` for one epoch into ``work``."""
    args = ["train", "--config", str(config), "--cache", str(cache), "--labels", str(labels)]
    return CliRunner().invoke(app, [*args, "--max-epochs", "1", *extra, "--work-dir", str(work)])


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


def test_self_training_logs_its_pseudo_labels_with_the_registered_model(
    rng: np.random.Generator, tmp_path: Path
) -> None:
    import mlflow

    torch.set_num_threads(1)
    arrays, gaps = synthetic_chips(rng, n=24, n_dates=4, size=16)
    cache = write_cache(arrays, tmp_path / "cache")
    half = exact_labels(arrays, gaps, blocks=6).subset(np.arange(12))  # buildings 12..23 are unlabelled
    labels = half.write_csv(tmp_path / "labels.csv", arrays.dates)
    work = tmp_path / "work"
    result = _train(CONFIG, cache, labels, work, "--self-train", "--min-confidence", "0.01")
    assert result.exit_code == 0, result.output
    assert "self-training: 12 pseudo-labelled buildings" in result.output
    pseudo = pd.read_csv(work / "pseudo_labels" / "labels.csv", dtype={"building_id": str})
    assert set(pseudo["building_id"]) == set(arrays.building_ids[12:])
    assert "registered striketracker-dating/1 as candidate" in result.output

    client = mlflow.MlflowClient(f"sqlite:///{work.resolve() / 'mlflow.db'}")
    version = client.get_model_version("striketracker-dating", "1")
    run = client.get_run(version.run_id)
    assert int(run.data.params["pseudo_labelled_buildings"]) > 0  # those away from the validation blocks
    assert [a.path for a in client.list_artifacts(version.run_id, "pseudo_labels")] == [
        "pseudo_labels/labels.csv"
    ]


def test_self_training_refuses_a_confidence_outside_the_unit_interval(setup: dict[str, str]) -> None:
    args = ["train", "--config", str(CONFIG), "--cache", setup["cache"], "--labels", setup["labels"]]
    result = CliRunner().invoke(
        app, [*args, "--self-train", "--min-confidence", "1.5", "--work-dir", setup["work"]]
    )
    assert result.exit_code == 2
    assert "--min-confidence" in result.output
    assert not Path(setup["work"]).exists()  # nothing trained, nothing written


def test_a_real_imagery_model_registers_its_change_classifier_and_serves_with_it(
    rng: np.random.Generator, tmp_path: Path
) -> None:
    from active_learning.settings import Settings
    from model.datamodule import ChipArrays
    from model.predict import predict
    from model.registry import load_model

    torch.set_num_threads(1)
    arrays, gaps = synthetic_chips(rng, n=30, n_dates=2, size=16)
    cache = write_cache(arrays, tmp_path / "cache")
    labels = exact_labels(arrays, gaps, blocks=6).write_csv(tmp_path / "labels.csv", arrays.dates)
    work = tmp_path / "work"
    result = _train(CONFIG.with_name("real.yaml"), cache, labels, work)
    assert result.exit_code == 0, result.output
    assert "whether damaged: change classifier on the footprint" in result.output

    task, ref = load_model(Settings(work_dir=work).tracking(), "candidate")
    assert task.has_damage_classifier and task.trained_on["classifier_features"] == "footprint"
    probs = predict(task, ChipArrays.open(cache), progress=False).probs
    damaged = gaps < 2
    assert ((probs[:, -1] < 0.5) == damaged).mean() >= 0.9  # the classifier tells rubble from roofs
