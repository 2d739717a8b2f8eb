"""The end-to-end demo behind ``make demo``: scenario -> chip stacks -> volunteer labels -> model -> dates.

1. the scenario (reused when unchanged) and 2. its chip stacks (reused when unchanged), with ``preview.png``
   (imagery across dates) and ``chips.png`` (chip stacks of a few buildings with their true destruction gap);
3. simulated volunteers review 30% of the buildings, three each, aggregated by Dawid-Skene into ``labels.csv``
   (what the crowd would deliver; volunteer ids are pseudonymous);
4. a dating model is trained on them with the preset's LightningCLI config, logged to MLflow and registered as
   ``candidate``;
5. the candidate is promoted to ``champion`` only if it beats the current one on the audit set (the true gaps
   of the buildings nobody labelled, ``audit_truth.csv``);
6. the champion dates every building: ``posteriors/`` (posteriors.csv, .npy, meta.json with the model version
   and data fingerprint) and ``timeline.png`` (buildings destroyed per gap: model against truth).

Everything is written under ``<work_dir>/demo``, the figures to ``summary.json``. The MLflow store is the
settings' (``<work_dir>/mlflow.db`` by default): ``mlflow ui`` shows the run, the model and the promotion.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from active_learning.settings import Settings
from experiments.benchmarks.dating import CONFIGS, crowd_labels
from experiments.plots import plot_chip_stacks, plot_destruction_timeline
from experiments.scenario import generate, load_truth
from experiments.scenario.preview import write_preview
from model.calibration import dating_metrics
from model.chips import ingest
from model.datamodule import ChipArrays
from model.predict import predict, write_posteriors
from model.registry import Tracking, load_champion, promote
from model.training import run_cli

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
    labelled_buildings: int
    label_exact_accuracy: float
    candidate: str
    champion: str
    promoted: bool
    promotion_reason: str
    exact_gap_accuracy: float
    within1_gap_accuracy: float
    auc: float
    ece: float
    train_s: float
    predict_s: float
    scenario_dir: str
    chip_cache: str
    preview_png: str
    chips_png: str
    posteriors_dir: str
    timeline_png: str


STAGES = 6


def run_demo(
    work_dir: Path,
    preset: str = "district",
    seed: int = 0,
    console: Console | None = None,
    tracking: Tracking | None = None,
    max_epochs: int | None = None,
) -> DemoSummary:
    """Run the six stages (module docstring) and write the figures, posteriors and a summary.

    Args:
        work_dir: everything goes to ``work_dir/demo``.
        preset / seed: the scenario.
        console: where progress goes.
        tracking: MLflow store (default: ``work_dir/mlflow.db`` with artifacts under ``work_dir/mlartifacts``).
        max_epochs: override the config's training epochs (a quick look).
    """
    console = console or Console()
    tracking = tracking or Settings(work_dir=work_dir).tracking()
    root = Path(work_dir) / "demo"
    scenario_dir = root / f"scenario-{preset}-{seed}"
    cache_dir = root / f"chips-{preset}-{seed}"

    started = time.perf_counter()
    if (scenario_dir / "scenario.json").exists() and _same_scenario(scenario_dir, preset, seed):
        console.print(f"[dim]reusing scenario {scenario_dir}[/dim]")
    else:
        console.print(
            f"[bold]1/{STAGES}[/bold] generating the {preset} scenario (seed {seed}) into {scenario_dir}"
        )
        generate(preset, seed, scenario_dir, progress=True)
    generate_s = time.perf_counter() - started

    console.print(f"[bold]2/{STAGES}[/bold] ingesting imagery into chip stacks at {cache_dir}")
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

    truth = load_truth(scenario_dir)
    true_gaps = truth.true_gaps()
    preview = write_preview(scenario_dir, root / "preview.png")
    chips_png = plot_chip_stacks(stack, root / "chips.png", true_gaps)
    n_dates = len(stack.dates)
    chips = ChipArrays.open(cache_dir)

    console.print(f"[bold]3/{STAGES}[/bold] simulated volunteers review 30% of the buildings, 3 each")
    labels, quality = crowd_labels(scenario_dir, chips, seed)
    labels_csv = labels.write_csv(root / "labels.csv", chips.dates)
    labelled = set(labels.building_ids)
    audit = pd.read_csv(scenario_dir / "truth.csv", dtype={"building_id": str, "block_id": str})
    audit = audit[audit["building_id"].isin(set(chips.building_ids)) & ~audit["building_id"].isin(labelled)]
    audit_csv = root / "audit_truth.csv"
    audit.to_csv(audit_csv, index=False)
    console.print(
        f"  {len(labelled)} buildings labelled (crowd exact-gap accuracy {quality['label_exact_accuracy']:.3f}); "
        f"the other {len(audit)} are the audit set"
    )

    console.print(f"[bold]4/{STAGES}[/bold] training the dating model (MLflow: {tracking.tracking_uri})")
    config = CONFIGS / f"{preset}.yaml"
    args = ["--config", str(config if config.is_file() else CONFIGS / "tiny.yaml")]
    args += ["--data.cache", str(cache_dir), "--data.labels", str(labels_csv)]
    if max_epochs is not None:
        args += ["--trainer.max_epochs", str(max_epochs)]
    started = time.perf_counter()
    result = run_cli(args, tracking=tracking, run_name=f"demo-{preset}-{seed}")
    train_s = time.perf_counter() - started
    candidate = result.model.label if result.model else "-"
    console.print(f"  registered {candidate} as candidate (temperature {result.temperature:.3f})")

    console.print(f"[bold]5/{STAGES}[/bold] promotion: the candidate against the champion on the audit set")
    audit_rows = chips.positions(list(audit["building_id"]))
    audit_gaps = audit["true_gap"].to_numpy()
    decision = promote(
        tracking,
        lambda candidate_or_champion: dating_metrics(
            predict(candidate_or_champion, chips, audit_rows, progress=False).probs, audit_gaps, chips.dates
        ),
        audit_id=f"{chips.fingerprint[:16]}:{audit_csv.name}",
        candidate=result.model.version if result.model else None,
    )
    console.print(("  PROMOTED: " if decision.promoted else "  kept the champion: ") + decision.reason)

    console.print(f"[bold]6/{STAGES}[/bold] the champion dates every building")
    model, champion = load_champion(tracking)
    started = time.perf_counter()
    preds = predict(model, chips, progress=True)
    predict_s = time.perf_counter() - started
    posteriors = write_posteriors(
        preds,
        chips.dates,
        root / "posteriors",
        model_version=champion.label,
        data_fingerprint=chips.fingerprint,
        mc_samples=int(model.hparams["mc_samples"]),
        temperature=float(model.temperature),
        registration_px=chips.registration_px,
    )
    every_gap = np.array([true_gaps[b] for b in preds.building_ids])
    on_audit = np.isin(np.array(preds.building_ids), audit["building_id"].to_numpy())
    scores = dating_metrics(preds.probs[on_audit], every_gap[on_audit], chips.dates)
    timeline_png = plot_destruction_timeline(
        preds.probs,
        chips.dates,
        root / "timeline.png",
        true_gap=every_gap,
        title=f"Destruction timeline, {preset} scenario seed {seed}: {champion.label} against the truth",
    )
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
        labelled_buildings=len(labelled),
        label_exact_accuracy=round(quality["label_exact_accuracy"], 4),
        candidate=candidate,
        champion=champion.label,
        promoted=decision.promoted,
        promotion_reason=decision.reason,
        exact_gap_accuracy=round(scores.exact_gap_accuracy, 4),
        within1_gap_accuracy=round(scores.within1_gap_accuracy, 4),
        auc=round(scores.auc, 4),
        ece=round(scores.ece, 4),
        train_s=round(train_s, 1),
        predict_s=round(predict_s, 1),
        scenario_dir=str(scenario_dir),
        chip_cache=str(cache_dir),
        preview_png=str(preview),
        chips_png=str(chips_png),
        posteriors_dir=str(posteriors),
        timeline_png=str(timeline_png),
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
