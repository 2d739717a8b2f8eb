"""The researchers' and ML staff's figures as PNGs: destruction timeline, campaign curves, volunteer quality.

- ``timeline.png``: buildings destroyed per week from every posterior, with the 90% band
  (:mod:`serving.timeline`), and the counts already damaged on the first image / not damaged by the last.
- ``campaign.png``: for each round that decided buildings, the volunteer reviews received by the end of the
  round against the buildings settled, contested, in review and judged by researchers.
- ``volunteers.png``: each volunteer's estimated accuracy with its uncertainty and flags
  (:func:`active_learning.quality.volunteer_report` on a fresh Dawid-Skene fit of every stored review).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from active_learning.store import Store
from serving.catalog import Snapshot
from serving.timeline import WeeklyDestruction

__all__ = ["CampaignPoint", "campaign_points", "plot_campaign", "plot_timeline", "plot_volunteers"]


def _pyplot() -> Any:
    """pyplot on the file-only Agg backend (chosen when the first figure is drawn, not at import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


_STATUS_COLOURS = {"settled": "#0550ae", "contested": "#d7263d", "in_review": "#e39b2d", "expert": "#116329"}


def plot_timeline(
    timeline: WeeklyDestruction, path: Path, title: str = "Buildings destroyed per week"
) -> Path:
    """The weekly destruction counts with their 90% band."""
    import matplotlib.dates as mdates

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4), dpi=120)
    if timeline.week_starts:
        weeks = np.array(timeline.week_starts, dtype="datetime64[D]")
        ax.bar(weeks, timeline.expected, width=6, color="#1f6feb", label="expected")
        ax.fill_between(
            weeks, timeline.lo, timeline.hi, step="mid", color="#1f6feb", alpha=0.2, label="90% band"
        )
        ax.xaxis.set_major_locator(mdates.MonthLocator())
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m"))
        ax.legend(loc="upper left")
    else:
        ax.text(0.5, 0.5, "no dated building yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylabel("buildings")
    ax.set_title(
        f"{title}\n{timeline.buildings} buildings; already damaged on the first image: "
        f"{timeline.before_first:.0f}; not damaged by the last: {timeline.not_damaged:.0f}",
        fontsize=10,
    )
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


@dataclass(frozen=True)
class CampaignPoint:
    """The campaign's state at the end of one round that decided buildings (``statuses``: every decided
    building's latest status)."""

    round_id: int
    kind: str
    reviews: int
    statuses: dict[str, int]


def campaign_points(store: Store) -> list[CampaignPoint]:
    """One point per round with decisions: reviews received by its end, and the campaign's buildings per status
    then."""
    rounds = {r.id: r for r in store.rounds()}
    received = sorted(t.timestamp() for _, _, _, source, t in store.annotation_log() if source != "expert")
    points = []
    for round_id, statuses in sorted(store.round_status_counts().items()):
        r = rounds.get(round_id)
        if r is None:
            continue
        end = r.finished_at or r.started_at
        reviews = int(np.searchsorted(np.asarray(received), end.timestamp(), side="right"))
        points.append(CampaignPoint(round_id, r.kind, reviews, statuses))
    return points


def plot_campaign(store: Store, snapshot: Snapshot, path: Path) -> Path:
    """Buildings by status against volunteer reviews spent, one point per deciding round."""
    points = campaign_points(store)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    if points:
        x = [p.reviews for p in points]
        for status, colour in _STATUS_COLOURS.items():
            ax.plot(x, [p.statuses.get(status, 0) for p in points], "o-", color=colour, label=status)
        ax.set_xlabel("volunteer reviews received")
        ax.legend()
    else:
        ax.text(
            0.5, 0.5, "no round has decided buildings yet", ha="center", va="center", transform=ax.transAxes
        )
    now = Counter(b.status for b in snapshot.buildings.values())
    ax.set_ylabel("buildings")
    ax.set_title(
        "Campaign: buildings by status per round\nnow: "
        + ", ".join(f"{k} {v}" for k, v in sorted(now.items())),
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_volunteers(store: Store, path: Path) -> Path | None:
    """Volunteer quality from a fresh aggregation of every stored review; None without human reviews."""
    from active_learning.aggregation import GapDawidSkene
    from active_learning.quality import plot_report, volunteer_report

    table = store.annotations_table()
    if table.empty or (table["source"] != "expert").sum() == 0:
        return None
    n_dates = store.building_dates()
    fit = GapDawidSkene().fit(table, max(n_dates.values()), building_ids=list(n_dates))
    plot_report(volunteer_report(fit, table), path)
    return path
