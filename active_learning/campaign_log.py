"""A campaign in MLflow: one parent run per campaign, one child run per round.

The parent run (experiment ``striketracker-campaigns``) carries the campaign's configuration; each finished
round adds a child run with the labels used, the settled / contested / in-review counts, the annotations spent,
the audit accuracy, the model version and a histogram of the round's acquisition scores (a PNG). Child runs are
tagged with their round id and looked up before being created, so a round resumed after a crash is logged once.
The parent run's id is kept in the store (``campaigns.mlflow_run_id``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from model.registry import Tracking

__all__ = ["EXPERIMENT", "CampaignLog"]

EXPERIMENT = "striketracker-campaigns"


class CampaignLog:
    """Log a campaign and its rounds to MLflow.

    Args:
        tracking: the MLflow store.
    """

    def __init__(self, tracking: Tracking) -> None:
        self.tracking = tracking
        self._experiment: str | None = None

    def _experiment_id(self) -> str:
        if self._experiment is None:
            self._experiment = self.tracking.activate(EXPERIMENT)
        return self._experiment

    def parent(self, campaign: str, existing: str | None, params: Mapping[str, object]) -> str:
        """The campaign's parent run id (created with its parameters when ``existing`` is None)."""
        client = self.tracking.client()
        if existing:
            return existing
        run = client.create_run(
            self._experiment_id(), run_name=f"campaign {campaign}", tags={"campaign": campaign}
        )
        for key, value in params.items():
            client.log_param(run.info.run_id, key, str(value)[:500])
        return str(run.info.run_id)

    def round(
        self,
        parent_run: str,
        campaign: str,
        round_id: int,
        metrics: Mapping[str, float],
        params: Mapping[str, str],
        scores: Sequence[float],
    ) -> str:
        """Log one finished round as a child run (once per round id); returns its run id."""
        client = self.tracking.client()
        found = client.search_runs(
            [self._experiment_id()],
            filter_string=f"tags.campaign = '{campaign}' and tags.round_id = '{round_id}'",
            max_results=1,
        )
        if found:
            return str(found[0].info.run_id)
        run = client.create_run(
            self._experiment_id(),
            run_name=f"{campaign} round {round_id}",
            tags={"mlflow.parentRunId": parent_run, "campaign": campaign, "round_id": str(round_id)},
        )
        run_id = str(run.info.run_id)
        for key, value in params.items():
            client.log_param(run_id, key, str(value)[:500])
        for key, number in metrics.items():
            if number is not None and np.isfinite(float(number)):
                client.log_metric(run_id, key, float(number), step=round_id)
                client.log_metric(parent_run, key, float(number), step=round_id)
        if len(scores):
            with tempfile.TemporaryDirectory() as tmp:
                client.log_artifact(
                    run_id, str(_histogram(scores, Path(tmp) / "acquisition_scores.png", round_id))
                )
        client.set_terminated(run_id)
        return run_id


def _histogram(scores: Sequence[float], path: Path, round_id: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.hist(np.asarray(scores, dtype=float), bins=20, color="#4c72b0")
    ax.set_xlabel("acquisition score of the selected buildings")
    ax.set_ylabel("buildings")
    ax.set_title(f"round {round_id}")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
