"""A small, fully known service state for the serving tests: chip cache with footprints, store with evidence.

Six buildings on a five-date timeline, placed in Raqqa (UTM 37N). Every posterior, decision and annotation is
written by hand, so each test knows exactly which building is settled, contested, flagged or unlabelled.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from pydantic import SecretStr

from active_learning.posterior import Posterior, Status
from active_learning.retirement import Decision
from active_learning.schema import Annotation, State
from active_learning.settings import Settings
from active_learning.store import Store
from model.chips import BANDS, CHIPS, FORMAT_VERSION, MANIFEST, MASK, VALID

TOKEN = "test-token-0123456789"
SECRET = "hook-secret-123"
N_DATES = 5
DATES = tuple(dt.date(2017, 2, 3) + dt.timedelta(days=30 * t) for t in range(N_DATES))
IDS = ("B000", "B001", "B002", "B003", "B004", "B005")
# x, y of each chip's centre in EPSG:32637 (Raqqa is about 39.0 E, 35.95 N: x ~ 500 km, y ~ 3979 km)
CENTRES = [(500_000.0 + 40 * i, 3_979_000.0 + 25 * i) for i in range(len(IDS))]


@dataclass(frozen=True)
class World:
    settings: Settings
    store: Store
    cache: Path
    footprints: Path


def _probs(gap: int, mass: float) -> tuple[float, ...]:
    rest = (1.0 - mass) / N_DATES
    return tuple(mass if g == gap else rest for g in range(N_DATES + 1))


def states_for(gap: int) -> tuple[State, ...]:
    return tuple(State.INTACT if t < gap else State.DESTROYED for t in range(N_DATES))


def write_cache(folder: Path, footprints: Path | None, size: int = 16) -> None:
    rng = np.random.default_rng(7)
    n = len(IDS)
    chips = rng.integers(60, 120, size=(n, N_DATES, len(BANDS), size, size), dtype=np.uint8)
    lo, hi = size // 4, 3 * size // 4
    chips[:, :, :3, lo:hi, lo:hi] = 200
    chips[0, 3:, :3, lo:hi, lo:hi] = 40  # B000 destroyed from date index 3 on
    mask = np.zeros((n, size, size), dtype=np.uint8)
    mask[:, lo:hi, lo:hi] = 255
    folder.mkdir(parents=True, exist_ok=True)
    chips.tofile(folder / CHIPS)
    mask.tofile(folder / MASK)
    np.save(folder / VALID, np.ones((n, N_DATES), dtype=np.float32))
    half = size * 0.5 / 2
    manifest = {
        "format": "striketracker-chips",
        "version": FORMAT_VERSION,
        "complete": True,
        "building_ids": list(IDS),
        "dates": [d.isoformat() for d in DATES],
        "sensors": ["test"] * N_DATES,
        "crs": "EPSG:32637",
        "resolution": 0.5,
        "chip_size": size,
        "bands": list(BANDS),
        "chip_origin": [[x - half, y + half] for x, y in CENTRES],
        "sources": [{"date": d.isoformat(), "sha256": f"{t:02d}" + "ab" * 31} for t, d in enumerate(DATES)],
        "footprints": {"path": str(footprints)} if footprints else {},
        "fingerprint": "world-fingerprint-0001",
        "rejects": [],
    }
    (folder / MANIFEST).write_text(json.dumps(manifest))


def build_world(root: Path, *, footprints: bool = True) -> World:
    """The store and chip cache under ``root`` (settings: token, webhook secret, work dir)."""
    fp = root / "footprints.gpkg"
    if footprints:
        squares = [shapely.box(x - 4, y - 4, x + 4, y + 4) for x, y in CENTRES]
        gpd.GeoDataFrame({"id": list(IDS)}, geometry=squares, crs="EPSG:32637").to_file(fp, layer="buildings")
    write_cache(root / "chips", fp if footprints else None)
    settings = Settings(
        work_dir=root / "work",
        chip_cache=root / "chips",
        api_token=SecretStr(TOKEN),
        webhook_secret=SecretStr(SECRET),
        public_base_url="http://127.0.0.1:8000",
    )
    store = Store.open(settings.database_url)
    store.add_buildings(IDS, N_DATES, {"dates": [d.isoformat() for d in DATES]})
    when = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    reviews = [("B000", "v-a", 3), ("B000", "v-b", 3), ("B000", "v-c", 2), ("B001", "v-a", 1), ("B001", "v-b", 4),
               ("B001", "v-c", 2), ("B001", "v-d", 3), ("B001", "v-e", 0), ("B002", "v-a", 1)]  # fmt: skip
    store.add_annotations(
        [Annotation(b, v, "simulated", states_for(g), when, f"sim:{b}:{v}") for b, v, g in reviews]
    )
    rid = store.start_round("aggregation", {"aggregator": "hand-written"})
    table = {  # building: (gap, mass, reviews, consistent, status, flags, model version)
        "B000": (3, 0.96, 3, 2, Status.SETTLED, (), None),
        "B001": (2, 0.40, 5, 1, Status.CONTESTED, ("contested",), None),
        "B002": (1, 0.60, 1, 1, Status.IN_REVIEW, ("model_conflict",), "striketracker-dating/1"),
        "B003": (5, 0.80, 0, 0, Status.UNLABELLED, (), "striketracker-dating/1"),
        "B004": (0, 0.90, 2, 2, Status.SETTLED, ("low_reliability",), None),
    }
    posteriors, decisions = [], []
    for b, (g, mass, n, k, status, flags, version) in table.items():
        last = DATES[g - 1] if g >= 1 else None
        first = DATES[g] if g < N_DATES else None
        posteriors.append(Posterior(b, _probs(g, mass), g, (last, first), mass, n, status, version))
        decisions.append(Decision(b, status, f"{status}: hand-written for tests", flags, g, mass, n, k))
    store.save_posteriors(posteriors, aggregator="hand-written", round_id=rid)
    store.record_decisions(decisions, rid)
    store.finish_round(rid, "5 buildings decided")
    return World(settings, store, root / "chips", fp)


def webhook_body(
    action: str,
    annotation_id: int,
    *,
    building_id: str = "B000",
    states: tuple[str, ...] = ("intact", "intact", "destroyed", "destroyed", "destroyed"),
    user_id: int = 7,
    updated_at: str = "2026-11-20T10:00:00Z",
) -> dict[str, object]:
    """A Label Studio webhook payload as Label Studio 1.23 sends it (trimmed to what matters)."""
    from labeling.convert import states_to_result

    if action == "ANNOTATIONS_DELETED":
        return {"action": action, "annotations": [{"id": annotation_id}], "project": {"id": 3}}
    timeline = [
        {"date": d.isoformat(), "url": f"http://x/chips/{building_id}/{t}.png"} for t, d in enumerate(DATES)
    ]
    return {
        "action": action,
        "annotation": {
            "id": annotation_id,
            "task": 11,
            "completed_by": user_id,
            "result": states_to_result(states),
            "was_cancelled": False,
            "created_at": updated_at,
            "updated_at": updated_at,
        },
        "task": {"id": 11, "project": 3, "data": {"building_id": building_id, "timeline": timeline}},
        "project": {"id": 3, "title": "t"},
    }
