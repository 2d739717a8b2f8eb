"""What every benchmark shares: its command-line options, the printed table, the JSON file and the MLflow run.

A benchmark module builds its parser with :func:`benchmark_parser` (adding its own options), computes a flat
``figures`` dict, and hands it to :func:`report`, which prints the table, writes the JSON and logs the run.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from active_learning.settings import default_tracking_uri

__all__ = ["DEFAULT_TRACKING_URI", "benchmark_parser", "log_to_mlflow", "print_figures", "report"]

DEFAULT_TRACKING_URI = default_tracking_uri()
PRESETS = ("tiny", "district", "city")


def benchmark_parser(description: str | None, presets: Sequence[str] = PRESETS) -> argparse.ArgumentParser:
    """The options every benchmark takes: ``--preset --seed --json --tracking-uri --no-mlflow``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--preset", choices=list(presets), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write every figure to this JSON file")
    parser.add_argument("--tracking-uri", default=DEFAULT_TRACKING_URI, help="MLflow tracking store")
    parser.add_argument("--no-mlflow", action="store_true", help="do not log the run to MLflow")
    return parser


def print_figures(console: Console, title: str, figures: dict[str, Any]) -> None:
    """One row per scalar figure; nested values (per-arm tables) are left to the benchmark."""
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        if isinstance(value, dict | list):
            continue
        table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
    console.print(table)


def log_to_mlflow(
    experiment: str, figures: dict[str, Any], tracking_uri: str, artifacts: Iterable[Path] = ()
) -> None:
    """Log one benchmark run: strings as parameters, numbers as metrics, files as artifacts."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(f"benchmark-{experiment}")
    params = {k: v for k, v in figures.items() if isinstance(v, str) or k in ("seed", "eval_seed")}
    metrics = {
        k: float(v)
        for k, v in figures.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and k not in params
    }
    with mlflow.start_run(run_name=f"{experiment}-{figures.get('preset')}-{figures.get('seed')}"):
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        for path in artifacts:
            mlflow.log_artifact(str(path))


def report(
    experiment: str,
    figures: dict[str, Any],
    args: argparse.Namespace,
    *,
    console: Console,
    title: str,
    headline: str,
    artifacts: Sequence[Path] = (),
) -> None:
    """Print the table and the key figure, write the JSON (``--json``) and log to MLflow (unless ``--no-mlflow``)."""
    print_figures(console, title, figures)
    console.print(f"[bold]{headline}[/bold]")
    files = list(artifacts)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2, default=str))
        files.insert(0, args.json)
        console.print(f"wrote {args.json}")
    if not args.no_mlflow:
        log_to_mlflow(experiment, figures, args.tracking_uri, files)
