"""Typed dependency aliases: each looks something up once, and answers 401/404/503 in this one place."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials

from active_learning.store import BuildingRecord, Store
from model.chips import ChipStack
from model.errors import CacheError
from serving.catalog import Snapshot, building_dates
from serving.errors import NotReadyError, UnknownBuildingError
from serving.resources import Resources
from serving.security import bearer, check_bearer

__all__ = [
    "BuildingDep",
    "BuildingRecordDep",
    "ChipStackDep",
    "KnownBuilding",
    "ResourcesDep",
    "SnapshotDep",
    "StoreDep",
    "TokenDep",
]


async def _resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(_resources)]


async def _store(resources: ResourcesDep) -> Store:
    return resources.store


StoreDep = Annotated[Store, Depends(_store)]


def _snapshot(resources: ResourcesDep) -> Snapshot:
    return resources.catalog.snapshot()


SnapshotDep = Annotated[Snapshot, Depends(_snapshot)]


def _chip_stack(resources: ResourcesDep) -> ChipStack:
    try:
        return resources.chips.stack()
    except CacheError as exc:
        raise NotReadyError("chip cache", str(exc)) from None


ChipStackDep = Annotated[ChipStack, Depends(_chip_stack)]


@dataclass(frozen=True)
class KnownBuilding:
    """A building id the store knows, with its timeline.

    Attributes:
        building_id: the id.
        n_dates: its number of dates (T).
        dates: its dates (empty when neither the store nor the chip cache has them).
        attributes: what it was registered with.
    """

    building_id: str
    n_dates: int
    dates: tuple[dt.date, ...]
    attributes: dict[str, Any]


def _known_building(
    building_id: Annotated[str, Path(min_length=1, max_length=128, description="the building's stable id")],
    resources: ResourcesDep,
) -> KnownBuilding:
    found = resources.store.building(building_id)
    if found is None:
        raise UnknownBuildingError(f"building {building_id!r} is not in the store")
    n_dates, attributes = found
    try:
        stack: ChipStack | None = resources.chips.stack()
    except CacheError:
        stack = None
    return KnownBuilding(building_id, n_dates, building_dates(attributes, n_dates, stack), attributes)


BuildingDep = Annotated[KnownBuilding, Depends(_known_building)]


def _building_record(
    building_id: Annotated[str, Path(min_length=1, max_length=128, description="the building's stable id")],
    resources: ResourcesDep,
) -> BuildingRecord:
    record = resources.store.building_record(building_id)
    if record is None:
        raise UnknownBuildingError(f"building {building_id!r} is not in the store")
    return record


BuildingRecordDep = Annotated[BuildingRecord, Depends(_building_record)]


def _require_token(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> None:
    check_bearer(request, credentials)


TokenDep = Annotated[None, Depends(_require_token)]
