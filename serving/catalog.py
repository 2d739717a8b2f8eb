"""The dated buildings: the store's latest posteriors and decisions, with dates and locations, as one snapshot.

A :class:`Catalog` builds a :class:`Snapshot` from the store of record (latest posterior and latest decision of
every building, its dates), the chip cache (dates, fingerprint) and the buildings' locations
(:mod:`serving.geometry`), and keeps it until the store's change stamp or the chip cache changes. Every list
endpoint, the map, the timeline and the exports read the same snapshot, so they agree with each other; each
building's GeoJSON feature is serialised once per snapshot, which keeps the full collection of a district in a
few milliseconds.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import numpy as np
import shapely
import torch
from shapely.geometry.base import BaseGeometry

from active_learning.posterior import Posterior, Status
from active_learning.store import PosteriorRecord, Store, StoredDecision
from model.changepoint import credible_interval
from model.chips import ChipStack
from model.errors import CacheError
from serving.chips import ChipSource
from serving.geometry import Locations, locate_buildings

__all__ = ["Catalog", "DatedBuilding", "Snapshot", "building_dates", "dated_building"]

CREDIBLE_MASS = 0.9
GeometryKind = Literal["point", "footprint"]
T = TypeVar("T")


@dataclass(frozen=True)
class DatedBuilding:
    """One building with a posterior, as researchers see it.

    Attributes:
        building_id: the Building's id.
        dates: its timeline (empty when neither the store nor the chip cache knows the dates).
        posterior: the store's latest posterior.
        posterior_version: that posterior's version number.
        flags: researcher flags of the latest decision (``contested``, ``model_conflict``, ``low_reliability``).
        reason: the latest decision's reason, or None without a decision.
        ci90: the shortest run of gaps ``(lo, hi)`` holding 90% of the posterior.
        point: representative point (lon, lat, or plain coordinates), None when the building cannot be placed.
    """

    building_id: str
    dates: tuple[dt.date, ...]
    posterior: Posterior
    posterior_version: int
    flags: tuple[str, ...]
    reason: str | None
    ci90: tuple[int, int]
    point: tuple[float, float] | None

    @property
    def status(self) -> str:
        return str(self.posterior.status)

    @property
    def n_gaps(self) -> int:
        return len(self.posterior.probs)

    @property
    def p_damaged(self) -> float:
        """Probability that the building was damaged by the last image (every gap but the last)."""
        return float(1.0 - self.posterior.probs[-1])

    def gap_dates(self, gap: int) -> tuple[dt.date | None, dt.date | None]:
        """(last date intact, first date damaged) of a gap; None where open or the dates are unknown."""
        if not self.dates or not 0 <= gap <= len(self.dates):
            return None, None
        return (self.dates[gap - 1] if gap >= 1 else None, self.dates[gap] if gap < len(self.dates) else None)

    @property
    def earliest(self) -> dt.date | None:
        """Earliest possible destruction: after the last intact date of the 90% run's first gap."""
        return self.gap_dates(self.ci90[0])[0]

    @property
    def latest(self) -> dt.date | None:
        """Latest possible destruction: by the first damaged date of the 90% run's last gap (None: maybe never)."""
        return self.gap_dates(self.ci90[1])[1]

    def properties(self) -> dict[str, Any]:
        """The GeoJSON properties (JSON types only)."""
        p = self.posterior
        last_intact, first_damaged = self.gap_dates(p.map_gap)

        def iso(d: dt.date | None) -> str | None:
            return d.isoformat() if d else None

        return {
            "building_id": self.building_id,
            "status": self.status,
            "flags": list(self.flags),
            "map_gap": p.map_gap,
            "n_gaps": self.n_gaps,
            "last_intact_date": iso(last_intact),
            "first_damaged_date": iso(first_damaged),
            "earliest_date": iso(self.earliest),
            "latest_date": iso(self.latest),
            "ci90_gaps": list(self.ci90),
            "confidence": round(float(p.confidence), 6),
            "p_damaged": round(self.p_damaged, 6),
            "reviews": p.n_reviews,
            "model_version": p.model_version,
            "posterior_version": self.posterior_version,
            "decision": self.reason,
            "detail_url": f"/api/buildings/{self.building_id}",
        }


@dataclass
class Snapshot:
    """Every dated building at one store state, with its serialised GeoJSON features.

    Attributes:
        stamp: the store change stamp and chip fingerprint it was built from.
        buildings: building id -> dated building, in id order.
        locations: the buildings' geometry (None without a chip cache).
        chip_fingerprint: the chip cache's fingerprint, or None without one.
        built_at: when the snapshot was built.
    """

    stamp: tuple[Any, ...]
    buildings: dict[str, DatedBuilding]
    locations: Locations | None
    chip_fingerprint: str | None
    built_at: dt.datetime
    _features: dict[GeometryKind, dict[str, str]] = field(default_factory=dict, repr=False)
    _memo: dict[str, Any] = field(default_factory=dict, repr=False)

    def memo(self, key: str, compute: Callable[[], T]) -> T:
        """A value derived from this snapshot, computed once (the timeline, the campaign summary)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]  # type: ignore[no-any-return]

    @property
    def coordinates(self) -> str:
        """``lonlat``, ``plain`` or ``none`` (no chip cache: buildings cannot be placed)."""
        return self.locations.mode if self.locations else "none"

    def geometry(self, building_id: str, kind: GeometryKind = "footprint") -> BaseGeometry | None:
        """A building's footprint (or its point), in the snapshot's coordinates."""
        if self.locations is None:
            return None
        if kind == "point":
            xy = self.locations.points.get(building_id)
            return shapely.Point(xy) if xy else None
        return self.locations.shapes.get(building_id)

    def feature(self, building_id: str, kind: GeometryKind = "point") -> str:
        """One building's GeoJSON feature, serialised (cached per snapshot)."""
        cache = self._features.setdefault(kind, {})
        text = cache.get(building_id)
        if text is None:
            geom = self.geometry(building_id, kind)
            text = json.dumps(
                {
                    "type": "Feature",
                    "id": building_id,
                    "geometry": shapely.geometry.mapping(geom) if geom is not None else None,
                    "properties": self.buildings[building_id].properties(),
                },
                separators=(",", ":"),
            )
            cache[building_id] = text
        return text

    def feature_collection(self, ids: Sequence[str], kind: GeometryKind = "point") -> bytes:
        """A GeoJSON FeatureCollection of ``ids`` with the coordinate mode and its note as foreign members."""
        head = json.dumps(
            {
                "type": "FeatureCollection",
                "coordinates": self.coordinates,
                "note": self.locations.note
                if self.locations
                else "no chip cache: buildings have no geometry",
                "count": len(ids),
            },
            separators=(",", ":"),
        )[:-1]
        body = ",".join(self.feature(b, kind) for b in ids)
        return f'{head},"features":[{body}]}}'.encode()

    def timeline_groups(self) -> list[tuple[tuple[dt.date, ...], np.ndarray]]:
        """Posteriors ``[N, T + 1]`` grouped by timeline, for :func:`serving.timeline.destruction_timeline`."""
        groups: dict[tuple[dt.date, ...], list[tuple[float, ...]]] = {}
        for b in self.buildings.values():
            if b.dates and len(b.posterior.probs) == len(b.dates) + 1:
                groups.setdefault(b.dates, []).append(b.posterior.probs)
        return [(dates, np.asarray(rows, dtype=np.float64)) for dates, rows in groups.items()]

    def select(
        self,
        *,
        statuses: Iterable[str] = (),
        flags: Iterable[str] = (),
        after: dt.date | None = None,
        before: dt.date | None = None,
        bbox: tuple[float, float, float, float] | None = None,
    ) -> list[DatedBuilding]:
        """Buildings matching every filter given.

        Args:
            statuses: keep these statuses (any of them).
            flags: keep buildings with any of these flags (``any`` = at least one flag).
            after / before: keep buildings whose possible destruction interval (after ``earliest``, by ``latest``)
                overlaps ``[after, before]``; buildings possibly never damaged have an open end.
            bbox: ``(min x, min y, max x, max y)`` in the snapshot's coordinates; keeps points inside.
        """
        want_status = set(statuses)
        want_flags = set(flags)
        out = []
        for b in self.buildings.values():
            if want_status and b.status not in want_status:
                continue
            if want_flags and not (("any" in want_flags and b.flags) or want_flags & set(b.flags)):
                continue
            if after is not None or before is not None:
                if not b.dates or b.ci90[0] == b.n_gaps - 1:
                    continue  # not damaged within the timeline
                if after is not None and b.latest is not None and b.latest < after:
                    continue
                if before is not None and b.earliest is not None and b.earliest >= before:
                    continue
            if bbox is not None:
                if b.point is None:
                    continue
                x, y = b.point
                if not (bbox[0] <= x <= bbox[2] and bbox[1] <= y <= bbox[3]):
                    continue
            out.append(b)
        return out


def dated_building(
    posterior: PosteriorRecord,
    decision: StoredDecision | None,
    dates: tuple[dt.date, ...],
    point: tuple[float, float] | None,
    ci90: tuple[int, int] | None = None,
) -> DatedBuilding:
    """One dated building from its latest posterior and decision (the 90% run computed when not given)."""
    return DatedBuilding(
        building_id=posterior.posterior.building_id,
        dates=dates,
        posterior=posterior.posterior,
        posterior_version=posterior.version,
        flags=decision.decision.flags if decision else (),
        reason=decision.decision.reason if decision else None,
        ci90=ci90 if ci90 is not None else _credible_runs([posterior.posterior.probs])[0],
        point=point,
    )


def building_dates(attributes: dict[str, Any], n_dates: int, stack: ChipStack | None) -> tuple[dt.date, ...]:
    """A building's timeline: the dates it was registered with, else the chip cache's when the counts match."""
    raw = attributes.get("dates")
    if isinstance(raw, list) and len(raw) == n_dates:
        try:
            return tuple(dt.date.fromisoformat(str(d)) for d in raw)
        except ValueError:
            pass
    if stack is not None and len(stack.dates) == n_dates:
        return tuple(stack.dates)
    return ()


class Catalog:
    """Builds and caches the :class:`Snapshot` of the dated buildings.

    The store's change stamp is read at most every ``recheck_s`` seconds, and at once after :meth:`invalidate`
    (which the service calls after its own writes: verdicts, stored webhook events), so a busy API does not
    query it on every request while writes through the service show immediately; writes by other processes
    (``crowd aggregate``, ``labelstudio sync``) show within ``recheck_s``.

    Args:
        store: the store of record.
        chips: the chip cache (dates, fingerprint, locations).
        recheck_s: how long a snapshot is served without looking at the store's change stamp.
    """

    def __init__(self, store: Store, chips: ChipSource, *, recheck_s: float = 0.5) -> None:
        self.store = store
        self.chips = chips
        self.recheck_s = recheck_s
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._checked = float("-inf")
        self._locations: tuple[str, Locations] | None = None

    def invalidate(self) -> None:
        """Look at the store again on the next :meth:`snapshot` (after a write through this service)."""
        self._checked = float("-inf")

    def _stack(self) -> ChipStack | None:
        try:
            return self.chips.stack()
        except CacheError:
            return None

    def locations(self, stack: ChipStack | None) -> Locations | None:
        """The buildings' geometry for this chip cache (read once per cache fingerprint)."""
        if stack is None:
            return None
        if self._locations is None or self._locations[0] != stack.fingerprint:
            self._locations = (stack.fingerprint, locate_buildings(stack))
        return self._locations[1]

    def snapshot(self) -> Snapshot:
        """The current snapshot, rebuilt when the store or the chip cache changed."""
        current = self._snapshot
        now = time.monotonic()
        if current is not None and now - self._checked < self.recheck_s:
            return current
        stack = self._stack()
        stamp = (*self.store.change_stamp(), stack.fingerprint if stack else None)
        if current is not None and current.stamp == stamp:
            self._checked = now
            return current
        with self._lock:
            if self._snapshot is None or self._snapshot.stamp != stamp:
                self._snapshot = self._build(stamp, stack)
            self._checked = now
            return self._snapshot

    def _build(self, stamp: tuple[Any, ...], stack: ChipStack | None) -> Snapshot:
        posteriors = self.store.latest_posterior_records()
        decisions = self.store.latest_decisions()
        known = self.store.building_dates()
        attributes = self.store.building_attributes()
        locations = self.locations(stack)
        ids = sorted(posteriors)
        intervals = _credible_runs([posteriors[b].posterior.probs for b in ids])
        buildings = {}
        for b, ci in zip(ids, intervals, strict=True):
            buildings[b] = dated_building(
                posteriors[b],
                decisions.get(b),
                building_dates(attributes.get(b, {}), known.get(b, 0), stack),
                locations.points.get(b) if locations else None,
                ci,
            )
        return Snapshot(
            stamp=stamp,
            buildings=buildings,
            locations=locations,
            chip_fingerprint=stack.fingerprint if stack else None,
            built_at=dt.datetime.now(dt.UTC),
        )


def _credible_runs(probs: Sequence[Sequence[float]]) -> list[tuple[int, int]]:
    """The 90% shortest run of each posterior, computed per timeline length in one batch."""
    out: list[tuple[int, int]] = [(0, 0)] * len(probs)
    by_length: dict[int, list[int]] = {}
    for i, p in enumerate(probs):
        by_length.setdefault(len(p), []).append(i)
    for rows in by_length.values():
        matrix = torch.from_numpy(np.asarray([probs[i] for i in rows], dtype=np.float64))
        lo, hi = credible_interval(matrix, CREDIBLE_MASS)
        for i, a, b in zip(rows, lo.tolist(), hi.tolist(), strict=True):
            out[i] = (int(a), int(b))
    return out


STATUSES = tuple(s.value for s in Status)
