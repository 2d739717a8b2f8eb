"""Buildings as Label Studio tasks: the store's latest posterior becomes each task's hidden prediction.

The prediction's score (the reported gap's probability, low = uncertain) is what Label Studio's uncertainty
sampling orders tasks by, so every task pushed here carries one model version, :data:`POSTERIOR_VERSION`, and
the scores of all pushed tasks compete with each other.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from active_learning.store import Store
from labeling import TaskSpec
from serving.catalog import Snapshot
from serving.mlbackend import predicted_states

__all__ = ["POSTERIOR_VERSION", "task_specs"]

POSTERIOR_VERSION = "striketracker-posterior"


def task_specs(
    store: Store, snapshot: Snapshot, building_ids: Sequence[str]
) -> tuple[list[TaskSpec], str, list[str]]:
    """Task specs for the buildings, the predictions' model version, and why any building was skipped."""
    specs: list[TaskSpec] = []
    problems: list[str] = []
    for building_id in dict.fromkeys(building_ids):
        dated = snapshot.buildings.get(building_id)
        if dated is None:
            found = store.building(building_id)
            if found is None:
                problems.append(f"{building_id}: not in the store; register it first (e.g. `crowd simulate`)")
                continue
            problems.append(f"{building_id}: has no posterior yet; run `striketracker crowd aggregate` first")
            continue
        if not dated.dates:
            problems.append(
                f"{building_id}: its dates are unknown (not registered with dates, no chip cache)"
            )
            continue
        states, scores, score = predicted_states(np.asarray(dated.posterior.probs), 1.0)
        specs.append(
            TaskSpec(
                building_id,
                tuple(d.isoformat() for d in dated.dates),
                tuple(states),
                score=score,
                state_scores=tuple(scores),
            )
        )
    return specs, POSTERIOR_VERSION, problems
