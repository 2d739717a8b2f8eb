"""Fixtures of the service tests: the hand-written world, a client of the app built on it, an MLflow champion."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from active_learning.settings import Settings
from model.registry import ModelRef
from serving.app import create_app
from tests.serving.champion import register_champion
from tests.serving.world import TOKEN, World, build_world


@pytest.fixture
def world(tmp_path: Path) -> World:
    return build_world(tmp_path)


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    """The app over the world, with its lifespan (the webhook worker) running."""
    with TestClient(create_app(world.settings)) as test_client:
        yield test_client


@pytest.fixture
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


@dataclass(frozen=True)
class Registry:
    """A session's MLflow store holding a champion (creating an MLflow store takes most of a minute)."""

    tracking_uri: str
    artifact_root: str
    champion: ModelRef

    def settings(self, base: Settings) -> Settings:
        return base.model_copy(
            update={"mlflow_tracking_uri": self.tracking_uri, "mlflow_artifact_root": self.artifact_root}
        )


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    root = tmp_path_factory.mktemp("mlflow")
    settings = Settings(work_dir=root)
    ref = register_champion(settings)
    return Registry(settings.mlflow_tracking_uri, settings.mlflow_artifact_root, ref)
