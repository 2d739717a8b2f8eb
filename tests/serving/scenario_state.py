"""A realistic small campaign state: the tiny Raqqa scenario ingested, reviewed by simulated volunteers, aggregated.

Built with the project's own commands (``scenario`` generation, ``ingest``, ``crowd simulate``, ``crowd
aggregate``), so the flags, statuses and reasons the review page shows are the real ones.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr
from typer.testing import CliRunner

from active_learning.settings import Settings
from serving.cli import app as cli

TOKEN = "review-token-5c1d2e3f4a"


def campaign_state(root: Path, *, seed: int = 0) -> Settings:
    """Generate, ingest, simulate 5 reviews on 60% of the buildings (some end contested) and aggregate."""
    from experiments.scenario import generate
    from model.chips import ingest

    scenario = root / "scenario"
    generate("tiny", seed, scenario, progress=False)
    ingest(scenario, scenario / "footprints.gpkg", root / "chips", warn=False)
    settings = Settings(work_dir=root / "work", chip_cache=root / "chips", api_token=SecretStr(TOKEN))
    env = {"STRIKETRACKER_WORK_DIR": str(settings.work_dir)}
    runner = CliRunner()
    simulated = runner.invoke(
        cli, ["crowd", "simulate", str(scenario), "--per-building", "5", "--fraction", "0.6", "--seed", str(seed)],
        env=env,
    )  # fmt: skip
    assert simulated.exit_code == 0, simulated.output
    aggregated = runner.invoke(cli, ["crowd", "aggregate", "--out", str(root / "reports")], env=env)
    assert aggregated.exit_code == 0, aggregated.output
    return settings
