"""Human-effort benchmark: annotations needed to date buildings as well as five reviews each did.

Run ``python -m experiments.benchmarks.human_effort --preset {tiny,district,city} --seed N --json PATH``.

One scenario (``.work/scenarios/<preset>-<seed>``, ingested into ``.work/chips/<preset>-<seed>``) and one
simulated volunteer pool (10% careless, 3% adversarial; ``active_learning.simulated_labeler``) for every arm, all
arms in one run. Every arm talks to its own fresh instance of the same labeler (the same request of the same
building gets the same answer in every arm), so arms differ only in what they ask:

1. ``fixed5`` / ``fixed3``: every building reviewed 5 (3) times, per-date majority vote fitted to the best
   monotone gap: how the original crowdsourcing ran. Buildings are reviewed in a random order; not yet reviewed
   ones count as undamaged.
2. ``random``: the campaign loop (``active_learning.loop``) with random acquisition, our aggregation and
   retirement, and no model.
3. ``verify``: the campaign with the dating model (trained on the crowd, warm-started, promoted on an audit
   set) as a witness and expected-information-gain acquisition; a building settles only with two agreeing
   human reviews.
4. ``estimate``: the same, but the model may settle buildings nobody reviewed, with a random audit share of
   them sent to volunteers anyway.

Accuracy is against the scenario's truth over every building (exact gap and within one gap) after each round.
The key figure per arm is ``<arm>_fraction_to_match_fixed5``: the annotations an arm spent when its exact-gap
accuracy first reached ``fixed5``'s final one, as a fraction of ``fixed5``'s annotations (null if never).
Targets: ``verify`` <= 0.50 and ``estimate`` <= 0.25, each with a final accuracy at least ``fixed5``'s.

``verify`` and ``estimate`` start from the same random seed batch, so their first model is trained on the same
labels: it is trained once and shared (``active_learning.champion`` caches trained models by their labels).
``--labeler package.module:factory`` swaps the simulated pool (e.g.
``experiments.benchmarks.crowds:independent_errors``, a crowd whose errors do not follow the aggregator's
model); ``--seeds`` runs several seeds with mean and worst figures. One PNG shows accuracy against annotations
with a curve per arm.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from active_learning.aggregation import GapDawidSkene, GapWitness, ModelEmissions
from active_learning.champion import ModelOutput, RegistryModel
from active_learning.labelers import Labeler, ReviewRequest, load_labeler
from active_learning.loop import Campaign, CampaignConfig, RoundReport
from active_learning.posterior import Status
from active_learning.schema import annotations_to_table
from active_learning.settings import DEFAULT_WORK_DIR
from active_learning.store import Store
from active_learning.truth import load_truth
from experiments.benchmarks.aggregation import majority_vote
from experiments.benchmarks.dating import CONFIGS, chip_cache
from experiments.benchmarks.report import benchmark_parser, log_to_mlflow, print_figures
from model.registry import Tracking

__all__ = ["ARMS", "PLANS", "Plan", "main", "run", "summarise"]

WORK = DEFAULT_WORK_DIR
ARMS = ("fixed5", "fixed3", "random", "verify", "estimate")
TARGETS = {"verify": 0.50, "estimate": 0.25}


@dataclass(frozen=True)
class Plan:
    """How big the campaign's steps are for a preset.

    Attributes:
        batch: review requests per round.
        seed_size: buildings of the first, random batch.
        epochs / warm_epochs: training epochs from scratch / warm-started.
        first_model_labels / retrain_min_labels / retrain_growth: human-reviewed buildings before the first
            model; a retrain waits for this many more and this share more than the last training had.
        min_promotion_audit: human-settled audit buildings before a candidate may replace the champion.
        fixed_steps: points on the fixed arms' curves.
        max_rounds: a safety cap on campaign rounds.
    """

    batch: int
    seed_size: int
    epochs: int
    warm_epochs: int
    first_model_labels: int
    retrain_min_labels: int
    min_promotion_audit: int
    retrain_growth: float = 1.0
    fixed_steps: int = 10
    max_rounds: int = 80


PLANS = {
    "tiny": Plan(batch=12, seed_size=20, epochs=12, warm_epochs=6, first_model_labels=12, retrain_min_labels=12,
                 min_promotion_audit=3, fixed_steps=5, max_rounds=30),
    "district": Plan(batch=200, seed_size=250, epochs=20, warm_epochs=8, first_model_labels=150,
                     retrain_min_labels=300, min_promotion_audit=20),
    "city": Plan(batch=1500, seed_size=1500, epochs=20, warm_epochs=8, first_model_labels=1000,
                 retrain_min_labels=3000, min_promotion_audit=50, max_rounds=120),
}  # fmt: skip


@dataclass
class Curve:
    """An arm's accuracy after each step: (annotations, exact, within 1)."""

    points: list[tuple[int, float, float]]
    seconds: float = 0.0

    @property
    def final(self) -> tuple[int, float, float]:
        return self.points[-1]

    def first_reaching(self, accuracy: float) -> int | None:
        return next((n for n, exact, _ in self.points if exact >= accuracy - 1e-12), None)


def _accuracy(predicted: dict[str, int], truth: dict[str, int]) -> tuple[float, float]:
    gaps = np.array([truth[b] for b in truth])
    guess = np.array([predicted.get(b, -10) for b in truth])
    return float((guess == gaps).mean()), float((np.abs(guess - gaps) <= 1).mean())


def _fixed_arm(
    reviews: int,
    labeler: Labeler,
    ids: list[str],
    dates: tuple[str, ...],
    truth: dict[str, int],
    steps: int,
    seed: int,
) -> Curve:
    """Every building ``reviews`` times, in a random order, majority vote (module docstring)."""
    started = time.perf_counter()
    n_dates = len(dates)
    order = [ids[i] for i in np.random.default_rng([seed, 0xF1]).permutation(len(ids))]
    chunks = np.array_split(np.arange(len(order)), steps)
    annotations = []
    cursor: str | None = None
    points = [(0, *_accuracy({b: n_dates for b in ids}, truth))]
    for chunk in chunks:
        batch = [order[i] for i in chunk]
        labeler.push([ReviewRequest(f"{b}#{k}", b, dates) for b in batch for k in range(1, reviews + 1)])
        pulled = labeler.pull(cursor)
        cursor = pulled.cursor
        annotations += [r.annotation for r in pulled.reviews]
        table = annotations_to_table(annotations)
        reviewed = sorted(set(table["building_id"]))
        gaps = majority_vote(table, reviewed, n_dates) if reviewed else np.zeros(0, dtype=int)
        predicted = {b: n_dates for b in ids} | dict(zip(reviewed, gaps.tolist(), strict=True))
        points.append((len(annotations), *_accuracy(predicted, truth)))
    return Curve(points, time.perf_counter() - started)


def _campaign_arm(
    name: str,
    config: CampaignConfig,
    labeler: Labeler,
    bench: Path,
    ids: list[str],
    dates: list[Any],
    blocks: dict[str, str],
    truth: dict[str, int],
    model: Callable[[Tracking], RegistryModel] | None,
    plan: Plan,
    budget: int,
    log_rounds: bool,
    progress: Progress,
) -> tuple[Curve, Store, ModelOutput | None]:
    folder = bench / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    store = Store.open(f"sqlite:///{folder / 'store.db'}")
    Campaign.register_buildings(store, ids, dates, blocks)
    tracking = Tracking(f"sqlite:///{folder / 'mlflow.db'}", str(folder / "mlartifacts"))
    dating = model(tracking) if model is not None else None
    campaign = Campaign(store, labeler, config, model=dating, tracking=tracking if log_rounds else None)
    n_dates = len(dates)
    points = [(0, *_accuracy({b: n_dates for b in ids}, truth))]
    task = progress.add_task(name, total=budget)
    started = time.perf_counter()

    def record(report: RoundReport) -> None:
        posts = store.latest_posteriors()
        points.append((report.annotations, *_accuracy({b: p.map_gap for b, p in posts.items()}, truth)))
        progress.update(
            task,
            completed=min(report.annotations, budget),
            description=f"{name} round {report.round_id}: exact {points[-1][1]:.3f}",
        )

    campaign.run(plan.max_rounds, budget=budget, on_round=record)
    progress.update(task, completed=budget)
    seconds = time.perf_counter() - started
    version = dating.champion() if dating is not None else None
    return Curve(points, seconds), store, dating.predict(version) if dating is not None and version else None


def run(
    preset: str,
    seed: int,
    *,
    labeler_spec: str = "simulated",
    work: Path = WORK,
    console: Console | None = None,
    log_rounds: bool = True,
    threads: int | None = None,
    arms: tuple[str, ...] = ARMS,
) -> dict[str, Any]:
    """All arms on one scenario and pool; returns the figures (module docstring)."""
    console = console or Console()
    began = time.perf_counter()
    plan = PLANS[preset]
    scenario, chips = chip_cache(preset, seed, work)
    prep_s = time.perf_counter() - began
    truth_data = load_truth(scenario)
    ids = [b for b in chips.building_ids if b in set(truth_data.buildings["building_id"])]
    truth = {b: g for b, g in truth_data.true_gaps().items() if b in set(ids)}
    frame = truth_data.buildings.set_index("building_id")
    blocks = {b: str(frame.loc[b, "block_id"]) if "block_id" in frame.columns else "" for b in ids}
    dates = list(chips.dates)
    iso = tuple(d.isoformat() for d in dates)
    label = "" if labeler_spec == "simulated" else "-" + labeler_spec.rsplit(":", 1)[-1]
    bench = work / "bench" / f"human_effort-{preset}-{seed}{label}"
    bench.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(bench / "models", ignore_errors=True)  # honest timing: no model trained by an earlier run
    config_yaml = CONFIGS / f"{preset}.yaml"
    if not config_yaml.is_file():
        config_yaml = CONFIGS / "tiny.yaml"

    def labeler() -> Labeler:
        return load_labeler(labeler_spec, scenario, seed)

    def model(tracking: Tracking) -> RegistryModel:
        return RegistryModel(
            work / "chips" / f"{preset}-{seed}", config_yaml, tracking, bench / "models",
            epochs=plan.epochs, warm_epochs=plan.warm_epochs, threads=threads,
        )  # fmt: skip

    console.print(
        f"[bold]human effort[/] {preset} seed {seed}: {len(ids)} buildings, {len(dates)} dates, labeler "
        f"{labeler_spec}; scenario and chips ready in {prep_s:.0f} s"
    )
    curves: dict[str, Curve] = {}
    stores: dict[str, Store] = {}
    champions: dict[str, tuple[ModelOutput, float]] = {}
    fixed5_budget = 5 * len(ids)
    base = CampaignConfig(
        seed=seed, batch_size=plan.batch, seed_size=plan.seed_size, first_model_labels=plan.first_model_labels,
        retrain_min_labels=plan.retrain_min_labels, min_promotion_audit=plan.min_promotion_audit,
        retrain_growth=plan.retrain_growth,
    )  # fmt: skip
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        for k in (5, 3):
            if f"fixed{k}" in arms:
                task = progress.add_task(f"fixed{k}", total=None)
                curves[f"fixed{k}"] = _fixed_arm(k, labeler(), ids, iso, truth, plan.fixed_steps, seed)
                progress.update(task, total=1, completed=1)
        specs = {
            "random": (replace(base, name="random", mode="verify", acquisition="random", random_share=0.0), False),
            "verify": (replace(base, name="verify", mode="verify", acquisition="eig"), True),
            "estimate": (replace(base, name="estimate", mode="estimate", acquisition="eig"), True),
        }  # fmt: skip
        for arm, (cfg, with_model) in specs.items():
            if arm not in arms:
                continue
            curve, store, champion = _campaign_arm(
                arm, cfg, labeler(), bench, ids, dates, blocks, truth, model if with_model else None, plan,
                fixed5_budget, log_rounds, progress,
            )  # fmt: skip
            curves[arm], stores[arm] = curve, store
            if champion is not None:
                gaps = champion.probs.argmax(axis=1)
                champions[arm] = (
                    champion,
                    float(
                        np.mean(
                            [g == truth.get(b, -1) for b, g in zip(champion.building_ids, gaps, strict=True)]
                        )
                    ),
                )

    figures: dict[str, Any] = {"preset": preset, "seed": seed, "labeler": labeler_spec, "buildings": len(ids)}
    target = curves["fixed5"].final[1] if "fixed5" in curves else float("nan")
    fixed5_n = curves["fixed5"].final[0] if "fixed5" in curves else fixed5_budget
    for arm, curve in curves.items():
        n, exact, within1 = curve.final
        reached = curve.first_reaching(target)
        figures[f"{arm}_annotations"] = n
        figures[f"{arm}_exact_gap_accuracy"] = exact
        figures[f"{arm}_within1_gap_accuracy"] = within1
        figures[f"{arm}_fraction_to_match_fixed5"] = None if reached is None else reached / fixed5_n
        figures[f"{arm}_s"] = round(curve.seconds, 1)
    if "verify" in stores:
        settled = [
            d.decision
            for d in stores["verify"].latest_decisions().values()
            if d.decision.status is Status.SETTLED
        ]
        figures["verify_min_agreeing_reviews"] = min((d.n_consistent for d in settled), default=None)
        figures["verify_settled_share"] = len(settled) / len(ids)
    if "estimate" in stores:
        from active_learning.loop import campaign_status

        status = campaign_status(stores["estimate"], "estimate")
        figures["estimate_audit_accuracy"] = status.audit.get("accuracy")
        figures["estimate_audit_lo90"] = status.audit.get("lo90")
        figures["estimate_audit_hi90"] = status.audit.get("hi90")
        figures["estimate_audit_judged"] = status.audit.get("judged")
        figures["estimate_model_settled_share"] = status.model_settled / len(ids)
    for arm in ("verify", "estimate"):
        if arm in stores:
            events = stores[arm].model_events(arm)
            figures[f"{arm}_trainings"] = sum(1 for e in events if e.kind == "trained")
            figures[f"{arm}_promotions"] = sum(1 for e in events if e.kind == "promoted")
            figures[f"{arm}_champion_exact_gap_accuracy"] = champions[arm][1] if arm in champions else None
    if "verify" in champions:
        figures.update(witness_check(stores["verify"], champions["verify"][0], truth, len(dates)))
    figures["prep_s"] = round(prep_s, 1)
    figures["wall_s"] = round(time.perf_counter() - began, 1)
    figures["curves"] = {arm: curve.points for arm, curve in curves.items()}
    figures["plot"] = str(
        plot_curves(curves, target, bench / "human_effort.png", f"{preset} seed {seed}, {labeler_spec}")
    )
    return figures


def witness_check(store: Store, output: ModelOutput, truth: dict[str, int], n_dates: int) -> dict[str, float]:
    """How the champion should enter aggregation, measured on the arm's own reviews: its gap posterior as one
    ``GapWitness``, or its per-date marginals P(damaged at t) as ``ModelEmissions`` (the model has no per-date
    head; weight 1 treats the marginals as independent per-date evidence, 1/T as one witness spread over the
    dates). Exact-gap accuracy over every building and over the reviewed ones."""
    table = store.annotations_table()
    ids = [b for b in output.building_ids if b in truth]
    rows = {b: i for i, b in enumerate(output.building_ids)}
    # float64: the model's float32 probabilities cannot hold 1 - 1e-9, so the clip would leave log1p(-1) = -inf
    probs = np.clip(output.probs[[rows[b] for b in ids]].astype(np.float64), 1e-9, None)
    damaged_by = np.clip(np.cumsum(probs, axis=1)[:, :n_dates], 1e-9, 1 - 1e-9)  # P(g <= t)
    reviewed = set(table["building_id"])
    arms: dict[str, dict[str, Any]] = {
        "none": {},
        "gap": {"gap_witness": GapWitness(tuple(ids), np.log(probs))},
        "emissions": {"emissions": ModelEmissions(tuple(ids), np.log1p(-damaged_by), np.log(damaged_by))},
        "emissions_1_over_T": {
            "emissions": ModelEmissions(
                tuple(ids),
                np.log1p(-damaged_by),
                np.log(damaged_by),
                weight=np.full(damaged_by.shape, 1.0 / n_dates),
            )  # fmt: skip
        },
    }
    out: dict[str, float] = {}
    for name, witness in arms.items():
        fit = GapDawidSkene().fit(table, n_dates, building_ids=ids, **witness)
        gaps = dict(zip(fit.building_ids_, fit.map_gap_.tolist(), strict=True))
        out[f"witness_{name}_exact"] = float(np.mean([gaps[b] == truth[b] for b in ids]))
        out[f"witness_{name}_reviewed_exact"] = float(
            np.mean([gaps[b] == truth[b] for b in ids if b in reviewed])
        )
    out["witness_model_alone_exact"] = float(
        np.mean(probs.argmax(axis=1) == np.array([truth[b] for b in ids]))
    )
    return out


def plot_curves(curves: dict[str, Curve], target: float, path: Path, title: str) -> Path:
    """Exact-gap and within-1 accuracy against annotations, one curve per arm, fixed5's final accuracy dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for arm, curve in curves.items():
        pts = np.array(curve.points, dtype=float)
        style = "--" if arm.startswith("fixed") else "-"
        axes[0].plot(pts[:, 0], pts[:, 1], style, marker=".", label=arm)
        axes[1].plot(pts[:, 0], pts[:, 2], style, marker=".", label=arm)
    for ax, name in zip(axes, ("exact-gap accuracy", "within-1-gap accuracy"), strict=True):
        ax.set_xlabel("annotations (human reviews)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    if np.isfinite(target):
        axes[0].axhline(target, color="grey", lw=0.8, ls=":", label="fixed5 final")
    axes[0].legend(loc="lower right")
    fig.suptitle(f"Human effort: {title}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def print_table(figures: dict[str, Any], console: Console) -> None:
    """One row per arm: annotations, accuracies, fraction of fixed5's annotations to match it, target."""
    table = Table(title=f"human effort: {figures['preset']} seed {figures['seed']} ({figures['labeler']})")
    for col in ("arm", "annotations", "exact", "within 1", "fraction to match fixed5", "target", "seconds"):
        table.add_column(col, justify="left" if col == "arm" else "right")
    for arm in ARMS:
        if f"{arm}_annotations" not in figures:
            continue
        frac = figures[f"{arm}_fraction_to_match_fixed5"]
        table.add_row(
            arm,
            str(figures[f"{arm}_annotations"]),
            f"{figures[f'{arm}_exact_gap_accuracy']:.4f}",
            f"{figures[f'{arm}_within1_gap_accuracy']:.4f}",
            "never" if frac is None else f"{frac:.3f}",
            f"<= {TARGETS[arm]}" if arm in TARGETS else "",
            f"{figures[f'{arm}_s']:.0f}",
        )
    console.print(table)


def verdict(figures: dict[str, Any]) -> str:
    """Whether each target is met (fraction and final accuracy at least fixed5's)."""
    parts = []
    for arm, target in TARGETS.items():
        if f"{arm}_fraction_to_match_fixed5" not in figures:
            continue
        frac = figures[f"{arm}_fraction_to_match_fixed5"]
        final_ok = (
            figures[f"{arm}_exact_gap_accuracy"] >= figures.get("fixed5_exact_gap_accuracy", 1.0) - 1e-12
        )
        ok = frac is not None and frac <= target and final_ok
        shown = "never" if frac is None else f"{frac:.3f}"
        parts.append(f"{arm} {shown} (target <= {target}, final accuracy {'>=' if final_ok else '<'} fixed5): "
                     + ("met" if ok else "MISSED"))  # fmt: skip
    return "; ".join(parts)


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several seeds as one: every scalar figure's mean and its worst seed (``worst_<key>``)."""
    out: dict[str, Any] = {
        "preset": runs[0]["preset"],
        "labeler": runs[0]["labeler"],
        "seeds": [r["seed"] for r in runs],
    }
    keys = [
        k
        for k, v in runs[0].items()
        if isinstance(v, int | float) and not isinstance(v, bool) and k != "seed"
    ]
    for key in keys:
        values = [r.get(key) for r in runs]
        if any(v is None for v in values):
            out[key] = None
            out[f"worst_{key}"] = None
            continue
        arr = np.array(values, dtype=float)
        out[key] = float(arr.mean())
        lower_is_better = "fraction" in key or key.endswith("_s") or key.endswith("annotations")
        out[f"worst_{key}"] = float(arr.max() if lower_is_better else arr.min())
    for arm in TARGETS:
        key = f"{arm}_fraction_to_match_fixed5"
        if key in runs[0]:
            out[key] = None if any(r[key] is None for r in runs) else float(np.mean([r[key] for r in runs]))
            out[f"worst_{key}"] = (
                None if any(r[key] is None for r in runs) else float(max(r[key] for r in runs))
            )
    out["per_seed"] = runs
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point."""
    parser = benchmark_parser(__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="several seeds: mean and worst")
    parser.add_argument(
        "--labeler", default="simulated", help="'simulated' or package.module:factory(scenario_dir, seed)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS), help="run only these arms")
    args: argparse.Namespace = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console()
    runs = []
    for seed in args.seeds or [args.seed]:
        figures = run(
            args.preset, seed, labeler_spec=args.labeler, console=console, log_rounds=not args.no_mlflow,
            threads=args.threads, arms=tuple(args.arms),
        )  # fmt: skip
        print_table(figures, console)
        console.print(f"[bold]{verdict(figures)}[/bold]")
        runs.append(figures)
    figures = runs[0] if len(runs) == 1 else summarise(runs)
    if len(runs) > 1:
        print_figures(console, f"human effort over seeds {figures['seeds']}", figures)
        console.print(f"[bold]mean: {verdict(figures)}[/bold]")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=1, default=str))
        console.print(f"wrote {args.json}")
    if not args.no_mlflow:
        flat = {k: v for k, v in figures.items() if not isinstance(v, dict | list) and v is not None}
        plots = [Path(r["plot"]) for r in runs]
        log_to_mlflow("human_effort", flat, args.tracking_uri, plots)
    return figures


if __name__ == "__main__":
    main()
