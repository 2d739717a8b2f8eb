"""Model commands: ``train``, ``evaluate``, ``promote``, ``predict`` (MLflow tracking, registry), ``import-xbd``.

Tracking goes where the Settings say (``STRIKETRACKER_MLFLOW_TRACKING_URI``; default a SQLite store with local
artifacts under the work directory); ``mlflow ui --backend-store-uri <that URI>`` shows the runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from model.errors import ModelError

if TYPE_CHECKING:
    from model.registry import Tracking

__all__ = ["register"]

_console = Console(stderr=True)

CacheOpt = Annotated[Path, typer.Option("--cache", help="chip cache folder (striketracker ingest --out)")]
WorkOpt = Annotated[Path | None, typer.Option(help="work directory (default: settings)")]
TrackingOpt = Annotated[str | None, typer.Option(help="MLflow tracking URI (default: settings)")]


def _tracking(work_dir: Path | None, tracking_uri: str | None) -> Tracking:
    from active_learning.settings import Settings

    return Settings.from_env(work_dir=work_dir, mlflow_tracking_uri=tracking_uri).tracking()


def _fail(exc: Exception) -> typer.Exit:
    _console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(code=1)


def _metrics_table(title: str, rows: dict[str, dict[str, float]]) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    for name in rows:
        table.add_column(name, justify="right")
    keys = next(iter(rows.values())).keys()
    for key in keys:
        table.add_row(key, *(f"{rows[name][key]:.4f}" for name in rows))
    return table


def train(
    config: Annotated[Path, typer.Option(help="LightningCLI YAML, e.g. experiments/configs/tiny.yaml")],
    cache: CacheOpt,
    labels: Annotated[
        Path, typer.Option(help="label CSV (building_id, last_intact, first_damaged | p_gap_*)")
    ],
    max_epochs: Annotated[int | None, typer.Option(help="override trainer.max_epochs")] = None,
    run_name: Annotated[str | None, typer.Option(help="MLflow run name")] = None,
    self_train: Annotated[
        bool,
        typer.Option(
            help="second round on real labels plus the first model's confident pseudo-labels of unlabelled "
            "buildings (about twice the training time; better dates)"
        ),
    ] = False,
    min_confidence: Annotated[
        float,
        typer.Option(
            min=0.01, max=1.0, help="with --self-train: least posterior of a pseudo-labelled building's gap"
        ),
    ] = 0.9,
    work_dir: WorkOpt = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Train a dating model, calibrate it, log it to MLflow and register it as `candidate`.

    A checkpoint is saved after every epoch under the work directory; rerun after a crash or a kill, the same
    command resumes from it.
    """
    from active_learning.settings import Settings
    from model.training import run_cli
    from model.training import self_train as run_self_train

    args = ["--config", str(config), "--data.cache", str(cache), "--data.labels", str(labels)]
    if max_epochs is not None:
        args += ["--trainer.max_epochs", str(max_epochs)]
    tracking = _tracking(work_dir, tracking_uri)
    work = Settings.from_env(work_dir=work_dir).work_dir
    checkpoints = work / "checkpoints"
    try:
        if self_train:
            pseudo_csv = work / "pseudo_labels" / f"{labels.stem}.csv"
            rounds = run_self_train(
                args,
                pseudo_csv,
                min_confidence=min_confidence,
                tracking=tracking,
                run_name=run_name,
                checkpoints=checkpoints,
            )
            result = rounds.final
            count = 0 if rounds.pseudo is None else len(rounds.pseudo.building_ids)
            typer.echo(f"self-training: {count} pseudo-labelled buildings written to {pseudo_csv}")
        else:
            result = run_cli(args, tracking=tracking, run_name=run_name, checkpoints=checkpoints)
    except ModelError as exc:
        raise _fail(exc) from None
    if result.resumed_after_epochs:
        typer.echo(f"resumed an interrupted training after epoch {result.resumed_after_epochs}")
    if result.val_metrics is not None:
        _console.print(_metrics_table("validation (calibrated)", {"model": result.val_metrics.as_dict()}))
    label = result.model.label if result.model else "-"
    typer.echo(f"registered {label} as candidate (temperature {result.temperature:.3f})")
    classifier = result.task.trained_on.get("classifier_features")
    if classifier == "none":
        typer.echo("whether damaged: the network (the change classifier needs labels of both kinds)")
    elif classifier:
        record = result.task.trained_on
        typer.echo(
            f"whether damaged: change classifier on the {classifier} statistics (C {record['classifier_c']}, "
            f"{record['classifier_buildings']} buildings, {record['classifier_intact']} intact)"
        )


def evaluate(
    cache: CacheOpt,
    truth: Annotated[Path, typer.Option(help="audit set: scenario truth.csv or a label CSV")],
    version: Annotated[str | None, typer.Option(help="model version (default: alias)")] = None,
    alias: Annotated[str, typer.Option(help="model alias when no version is given")] = "champion",
    baseline: Annotated[bool, typer.Option(help="also score the non-learned baseline")] = True,
    work_dir: WorkOpt = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Score a registered model (and the baseline) on an audit set."""
    from model.baseline import ChangePointBaseline
    from model.calibration import dating_metrics
    from model.datamodule import ChipArrays, read_audit_gaps
    from model.predict import predict
    from model.registry import load_model

    try:
        chips = ChipArrays.open(cache)
        rows, gaps = read_audit_gaps(truth, chips)
        task, ref = load_model(_tracking(work_dir, tracking_uri), None if version else alias, version)
        rows_out = {ref.label: dating_metrics(predict(task, chips, rows).probs, gaps, chips.dates).as_dict()}
        if baseline:
            probs = ChangePointBaseline().predict(chips, rows)
            rows_out["baseline"] = dating_metrics(probs, gaps, chips.dates).as_dict()
    except ModelError as exc:
        raise _fail(exc) from None
    Console().print(_metrics_table(f"audit set {truth}", rows_out))


def promote(
    cache: CacheOpt,
    truth: Annotated[Path, typer.Option(help="the fixed audit set: scenario truth.csv or a label CSV")],
    candidate: Annotated[
        str | None, typer.Option(help="candidate version (default: alias candidate)")
    ] = None,
    work_dir: WorkOpt = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Promote the candidate to `champion` if it beats the current champion on the audit set."""
    from model.calibration import dating_metrics
    from model.datamodule import ChipArrays, read_audit_gaps
    from model.predict import predict
    from model.registry import promote as promote_model

    try:
        chips = ChipArrays.open(cache)
        rows, gaps = read_audit_gaps(truth, chips)
        audit_id = f"{chips.fingerprint[:16]}:{Path(truth).name}"
        decision = promote_model(
            _tracking(work_dir, tracking_uri),
            lambda task: dating_metrics(predict(task, chips, rows, progress=False).probs, gaps, chips.dates),
            audit_id=audit_id,
            candidate=candidate,
        )
    except ModelError as exc:
        raise _fail(exc) from None
    rows_out = {"candidate": decision.candidate_metrics.as_dict()}
    if decision.champion_metrics is not None:
        rows_out["champion"] = decision.champion_metrics.as_dict()
    Console().print(_metrics_table("promotion audit", rows_out))
    typer.echo(("PROMOTED: " if decision.promoted else "kept champion: ") + decision.reason)


def predict_command(
    cache: CacheOpt,
    out: Annotated[Path, typer.Option("--out", help="output folder for posteriors.csv / .npy / meta.json")],
    version: Annotated[str | None, typer.Option(help="model version (default: champion)")] = None,
    mc_samples: Annotated[
        int | None, typer.Option(help="Monte-Carlo dropout samples (default: model's)")
    ] = None,
    work_dir: WorkOpt = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Write the gap posterior of every building of a chip cache, with the model version."""
    from model.datamodule import ChipArrays
    from model.predict import predict, write_posteriors
    from model.registry import load_model

    try:
        chips = ChipArrays.open(cache)
        task, ref = load_model(_tracking(work_dir, tracking_uri), None if version else "champion", version)
        preds = predict(task, chips, mc_samples=mc_samples)
        samples = int(task.hparams["mc_samples"]) if mc_samples is None else mc_samples
        folder = write_posteriors(
            preds,
            chips.dates,
            out,
            model_version=ref.label,
            data_fingerprint=chips.fingerprint,
            mc_samples=samples,
            temperature=float(task.temperature),
            registration_px=chips.registration_px,
        )
    except ModelError as exc:
        raise _fail(exc) from None
    typer.echo(f"{len(preds.building_ids)} posteriors by {ref.label} written to {folder}")


def import_xbd_command(
    root: Annotated[Path, typer.Argument(help="xBD split folder with images/ and labels/")],
    out: Annotated[Path, typer.Option("--out", help="output folder, one sub-folder per scene")],
    scene: Annotated[list[str] | None, typer.Option(help="import only these scenes (repeatable)")] = None,
) -> None:
    """Turn xBD pre/post images and JSON labels into 2-date timelines (GeoTIFFs, footprints, labels.csv)."""
    from model.xbd import import_xbd

    try:
        scenes = import_xbd(root, out, scene or None)
    except ModelError as exc:
        raise _fail(exc) from None
    for s in scenes:
        for problem in s.problems:
            _console.print(f"[yellow]skipped:[/yellow] {problem.message()}")
        typer.echo(
            f"{s.name}: {s.buildings} buildings ({s.labelled} labelled), {s.dates[0]} -> {s.dates[1]}, {s.crs}; "
            f"next: striketracker ingest {s.folder} {s.folder / 'footprints.gpkg'} --out CACHE"
        )


def register(app: typer.Typer) -> None:
    """Attach the model commands to the root app."""
    app.command("train")(train)
    app.command("evaluate")(evaluate)
    app.command("promote")(promote)
    app.command("predict")(predict_command)
    app.command("import-xbd")(import_xbd_command)
