"""Every shipped LightningCLI config trains with fast_dev_run on a tiny chip cache; bad configs fail clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.calibration import shrink_temperature
from model.errors import ModelConfigError
from model.training import run_cli
from tests.model.dating_data import exact_labels, synthetic_chips, write_cache

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "experiments" / "configs").glob("*.yaml"))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def tiny_data(rng: np.random.Generator, tmp_path: Path) -> tuple[Path, Path]:
    arrays, gaps = synthetic_chips(rng, n=12, n_dates=4, size=16)
    cache = write_cache(arrays, tmp_path / "cache")
    return cache, exact_labels(arrays, gaps).write_csv(tmp_path / "labels.csv", arrays.dates)


def test_configs_are_shipped() -> None:
    assert {p.name for p in CONFIGS} >= {"tiny.yaml", "district.yaml"}


@pytest.mark.parametrize("config", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_runs_with_fast_dev_run(config: Path, tiny_data: tuple[Path, Path]) -> None:
    cache, labels = tiny_data
    args = ["--config", str(config), "--data.cache", str(cache), "--data.labels", str(labels)]
    result = run_cli([*args, "--trainer.fast_dev_run", "true", "--trainer.enable_progress_bar", "false"])
    assert result.val_metrics is not None and result.temperature > 0
    assert result.task.trained_on["data_fingerprint"] == "synthetic-12"
    data = result.data
    assert data is not None and data.val_rows is not None
    # the temperature in use is the validation fit shrunk towards 1 by the validation set's size
    assert float(result.task.temperature) == pytest.approx(result.temperature)
    assert result.temperature == pytest.approx(
        shrink_temperature(result.temperature_fitted, len(data.val_rows), data.calibration_prior_buildings)
    )


def test_config_naming_an_unknown_backbone_fails_clearly(tiny_data: tuple[Path, Path]) -> None:
    cache, labels = tiny_data
    args = ["--config", str(CONFIGS[0]), "--data.cache", str(cache), "--data.labels", str(labels)]
    with pytest.raises(ModelConfigError, match="unknown backbone 'efficientnet_b99'"):
        run_cli([*args, "--model.backbone", "efficientnet_b99", "--trainer.fast_dev_run", "true"])
