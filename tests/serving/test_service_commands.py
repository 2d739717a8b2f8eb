"""``striketracker serve`` (for real, in a subprocess), ``report`` and the refusal of unsafe binds."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from PIL import Image
from pydantic import SecretStr
from typer.testing import CliRunner

from serving.cli import app as cli
from tests.live_services import REPO, free_port
from tests.serving.conftest import Registry
from tests.serving.world import TOKEN, World


def _env(world: World, **extra: str) -> dict[str, str]:
    s = world.settings
    return {
        "STRIKETRACKER_WORK_DIR": str(s.work_dir),
        "STRIKETRACKER_CHIP_CACHE": str(s.chip_cache),
        "STRIKETRACKER_API_TOKEN": TOKEN,
        **extra,
    }


def test_serve_refuses_to_bind_beyond_loopback_without_a_token(world: World) -> None:
    env = _env(world)
    env.pop("STRIKETRACKER_API_TOKEN")
    r = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0"], env=env)
    assert r.exit_code == 2 and "STRIKETRACKER_API_TOKEN" in r.output


def test_serve_runs_the_service(world: World, registry: Registry) -> None:
    port = free_port()
    mlflow = {
        "STRIKETRACKER_MLFLOW_TRACKING_URI": registry.tracking_uri
    }  # an MLflow store takes a minute to create
    env = {**os.environ, **_env(world, **mlflow)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "serving.cli", "serve", "--port", str(port), "--log-level", "warning"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "serve did not answer /health within 300 s"
            time.sleep(0.2)
        features = httpx.get(f"http://127.0.0.1:{port}/api/buildings").json()["features"]
        assert len(features) == 5
        verdict = httpx.post(
            f"http://127.0.0.1:{port}/api/buildings/B001/verdict",
            json={"gap": 2},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert verdict.status_code == 201
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/review" in output and "STRIKETRACKER_API_TOKEN" in output
    assert f"ML backend model {registry.champion.label}" in output
    assert TOKEN not in output
    assert world.store.latest_posteriors()["B001"].status == "expert"


def test_report_draws_the_three_figures(world: World, tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["report", "--out", str(tmp_path / "figs")], env=_env(world))
    assert r.exit_code == 0, r.output
    for name in ("timeline.png", "campaign.png", "volunteers.png"):
        with Image.open(tmp_path / "figs" / name) as image:
            assert image.format == "PNG" and image.width >= 600


def test_report_without_reviews_skips_the_volunteer_figure(tmp_path: Path) -> None:
    from active_learning.settings import Settings

    settings = Settings(work_dir=tmp_path / "empty", api_token=SecretStr(TOKEN))
    env = {"STRIKETRACKER_WORK_DIR": str(settings.work_dir)}
    r = CliRunner().invoke(cli, ["report", "--out", str(tmp_path / "figs")], env=env)
    assert r.exit_code == 0, r.output
    assert "volunteers.png not drawn" in r.output and (tmp_path / "figs" / "timeline.png").is_file()
