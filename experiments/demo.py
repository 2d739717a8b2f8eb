"""The end-to-end demo behind ``make demo``: scenario -> chip stacks -> preview and summary.

Each stage reuses its cache when its inputs are unchanged, so a second run is quick. Everything is written under
``<work_dir>/demo``: the scenario, the chip cache, ``preview.png`` (scenario imagery across dates),
``chips.png`` (chip stacks of a few buildings with their true destruction gap) and ``summary.json``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from experiments.plots import plot_chip_stacks
from experiments.scenario import generate, load_truth
from experiments.scenario.preview import write_preview
from model.chips import ingest

__all__ = ["DemoSummary", "run_demo"]


@dataclass(frozen=True)
class DemoSummary:
    """Figures of one demo run, also written to ``summary.json``."""

    preset: str
    seed: int
    buildings: int
    dates: int
    chips: int
    damaged_buildings: int
    rejected_inputs: int
    generate_s: float
    ingest_s: float
    scenario_dir: str
    chip_cache: str
    preview_png: str
    chips_png: str


def run_demo(
    work_dir: Path, preset: str = "district", seed: int = 0, console: Console | None = None
) -> DemoSummary:
    """Generate the scenario, ingest it into chip stacks, and write the preview figures and a summary."""
    console = console or Console()
    root = Path(work_dir) / "demo"
    scenario_dir = root / f"scenario-{preset}-{seed}"
    cache_dir = root / f"chips-{preset}-{seed}"

    started = time.perf_counter()
    if (scenario_dir / "scenario.json").exists() and _same_scenario(scenario_dir, preset, seed):
        console.print(f"[dim]reusing scenario {scenario_dir}[/dim]")
    else:
        console.print(f"[bold]1/3[/bold] generating the {preset} scenario (seed {seed}) into {scenario_dir}")
        generate(preset, seed, scenario_dir, progress=True)
    generate_s = time.perf_counter() - started

    console.print(f"[bold]2/3[/bold] ingesting imagery into chip stacks at {cache_dir}")
    started = time.perf_counter()
    with Progress(
        TextColumn("cutting chips"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as bar:
        task = bar.add_task("ingest", total=None)
        stack = ingest(
            scenario_dir,
            scenario_dir / "footprints.gpkg",
            cache_dir,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    ingest_s = time.perf_counter() - started

    console.print("[bold]3/3[/bold] writing the preview and the summary")
    truth = load_truth(scenario_dir)
    true_gaps = truth.true_gaps()
    preview = write_preview(scenario_dir, root / "preview.png")
    chips_png = plot_chip_stacks(stack, root / "chips.png", true_gaps)
    n_dates = len(stack.dates)
    summary = DemoSummary(
        preset=preset,
        seed=seed,
        buildings=len(stack.building_ids),
        dates=n_dates,
        chips=len(stack.building_ids) * n_dates,
        damaged_buildings=sum(1 for g in true_gaps.values() if g < n_dates),
        rejected_inputs=len(stack.manifest.get("rejects", [])),
        generate_s=round(generate_s, 2),
        ingest_s=round(ingest_s, 2),
        scenario_dir=str(scenario_dir),
        chip_cache=str(cache_dir),
        preview_png=str(preview),
        chips_png=str(chips_png),
    )
    (root / "summary.json").write_text(json.dumps(asdict(summary), indent=2))
    table = Table(title=f"striketracker demo: {preset} scenario, seed {seed}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in asdict(summary).items():
        table.add_row(key, str(value))
    console.print(table)
    return summary


def _same_scenario(scenario_dir: Path, preset: str, seed: int) -> bool:
    meta = json.loads((scenario_dir / "scenario.json").read_text())
    return meta.get("preset") == preset and int(meta.get("seed", -1)) == seed
