"""Benchmark: imagery ingestion into memory-mapped chip stacks.

Run ``python -m experiments.benchmarks.ingest --preset {tiny,district,city} --seed N --json PATH``.

The scenario (``.work/scenarios/<preset>-<seed>``, generated with ``experiments.scenario.generate`` if missing)
is ingested by ``model.chips.ingest``. Each arm runs in a fresh (spawned) process so its peak RSS
(``ru_maxrss``) is its own; ``baseline_rss_mb`` is that process right after imports, before any work.

- ``cold``: the whole scenario, tiled window reads (the default), cache written from scratch. Its figures are
  the headline ``seconds``, ``chips_per_s`` and ``peak_rss_mb``; a chip is one building on one date.
- ``cached``: the same call again: the fingerprint matches and the cache is reused (no chips cut).
- ``tiled_subset`` vs ``per_building_subset``: a compact neighbourhood of ``--subset`` buildings (around a
  seeded random building), cut with one window read per tile and date vs one read per building and date
  (``max_batch=1``): the same bytes on dates read directly; on warped dates GDAL's float rounding may differ
  by 1 DN in a few pixels (``tiled_vs_per_building_max_abs_diff``, ``..._diff_fraction``).
- ``single_thread``: the cold arm with one reading thread instead of ``workers`` (2 by default).

A preview PNG (a few buildings across all dates, with the footprint mask and validity) is written beside the
JSON and logged to MLflow with the figures.
"""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing
import resource
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from active_learning.settings import DEFAULT_WORK_DIR
from experiments.benchmarks.report import benchmark_parser, report
from experiments.plots import plot_chip_stacks
from model.buildings import read_footprints
from model.chips import ChipStack, IngestParams, ingest

__all__ = ["ensure_scenario", "folder_lock", "main", "run"]

WORK = DEFAULT_WORK_DIR
SUBSET = {"tiny": 30, "district": 300, "city": 500}


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (a ``<folder>.lock`` file beside it) across processes.

    Two benchmarks run side by side often need the same scenario (seed N + 1 is one's evaluation and the next
    one's training set); without the lock both generate or ingest into the same folder at once, and one of them
    reads half-written images.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{folder.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_scenario(preset: str, seed: int, work: Path = WORK) -> Path:
    """The scenario folder for ``preset``/``seed``, generated when it has no ``scenario.json`` yet."""
    folder = work / "scenarios" / f"{preset}-{seed}"
    with folder_lock(folder):
        if not (folder / "scenario.json").is_file():
            from experiments.scenario import generate

            generate(preset, seed, folder)
    return folder


def _arm(
    imagery: str, footprints: str, out: str, params: dict[str, Any], force: bool, show: bool, queue: Any
) -> None:
    """Body of one arm, run in a spawned process: ingest and report timing and peak memory."""
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    calls = 0
    started = time.perf_counter()
    with Progress(
        TextColumn("[bold]cutting chips"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not show,
        transient=True,
    ) as bar:
        task = bar.add_task("chips", total=None)

        def progress(done: int, total: int) -> None:
            nonlocal calls
            calls += 1
            bar.update(task, completed=done, total=total)

        stack = ingest(
            Path(imagery),
            Path(footprints),
            Path(out),
            IngestParams(**params),
            progress=progress,
            force=force,
            warn=False,
        )
    seconds = time.perf_counter() - started
    queue.put(
        {
            "seconds": seconds,
            "buildings": len(stack),
            "dates": len(stack.dates),
            "chips": len(stack) * len(stack.dates),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "baseline_rss_mb": baseline,
            "reused": calls == 0,
            "rejects": len(stack.manifest["rejects"]),
            "mean_valid": float(np.asarray(stack.valid).mean()),
            "cache_mb": sum(p.stat().st_size for p in Path(out).iterdir()) / 2**20,
            "reads": sorted({s["read"] for s in stack.manifest["sources"]}),
        }
    )


def _run_arm(
    imagery: Path, footprints: Path, out: Path, params: IngestParams, *, force: bool, show: bool = False
) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    args = (str(imagery), str(footprints), str(out), _as_kwargs(params), force, show, queue)
    process = ctx.Process(target=_arm, args=args)
    process.start()
    result = queue.get()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"ingest arm failed with exit code {process.exitcode}")
    result["chips_per_s"] = result["chips"] / result["seconds"] if result["seconds"] > 0 else float("inf")
    return dict(result)


def _as_kwargs(params: IngestParams) -> dict[str, Any]:
    return {f: getattr(params, f) for f in params.__dataclass_fields__}


def _subset_footprints(scenario: Path, size: int, seed: int, out: Path) -> Path:
    """The ``size`` buildings nearest to a seeded random building (a compact neighbourhood), as a GeoPackage.

    Compact, so both arms read the same neighbourhood at the scenario's own building density.
    """
    import geopandas as gpd

    frame = gpd.read_file(scenario / "footprints.gpkg", layer="buildings")
    centres = frame.geometry.centroid
    rng = np.random.default_rng([seed, 7])
    centre = centres.iloc[int(rng.integers(len(frame)))]
    keep = np.sort(np.argsort(centres.distance(centre).to_numpy(), kind="stable")[: min(size, len(frame))])
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.iloc[keep].to_file(out, layer="buildings", driver="GPKG")
    return out


def run(
    preset: str, seed: int, work: Path = WORK, workers: int = 2, subset: int | None = None
) -> dict[str, Any]:
    """Run every arm on one scenario and return the figures."""
    scenario = ensure_scenario(preset, seed, work)
    bench = work / "bench" / "ingest" / f"{preset}-{seed}"
    bench.mkdir(parents=True, exist_ok=True)
    imagery, footprints = scenario, scenario / "footprints.gpkg"
    params = IngestParams(workers=workers)

    cold = _run_arm(imagery, footprints, bench / "cache", params, force=True, show=True)
    cached = _run_arm(imagery, footprints, bench / "cache", params, force=False)
    single = _run_arm(imagery, footprints, bench / "cache-1thread", IngestParams(workers=1), force=True)
    shutil.rmtree(bench / "cache-1thread", ignore_errors=True)

    few = _subset_footprints(scenario, subset or SUBSET[preset], seed, bench / "subset.gpkg")
    tiled = _run_arm(imagery, few, bench / "subset-tiled", params, force=True)
    per_building = _run_arm(imagery, few, bench / "subset-single", IngestParams(max_batch=1), force=True)
    diff = np.abs(
        np.asarray(ChipStack.open(bench / "subset-tiled").chips, dtype=np.int16)
        - np.asarray(ChipStack.open(bench / "subset-single").chips, dtype=np.int16)
    )
    for name in ("subset-tiled", "subset-single"):
        shutil.rmtree(bench / name, ignore_errors=True)

    n_input = len(read_footprints(footprints, ChipStack.open(bench / "cache").crs)[0])
    return {
        "preset": preset,
        "seed": seed,
        "workers": workers,
        "buildings": cold["buildings"],
        "buildings_in_file": n_input,
        "dates": cold["dates"],
        "chips": cold["chips"],
        "seconds": cold["seconds"],
        "chips_per_s": cold["chips_per_s"],
        "buildings_per_s": cold["buildings"] / cold["seconds"],
        "peak_rss_mb": cold["peak_rss_mb"],
        "baseline_rss_mb": cold["baseline_rss_mb"],
        "work_rss_mb": cold["peak_rss_mb"] - cold["baseline_rss_mb"],
        "cache_mb": cold["cache_mb"],
        "rejects": cold["rejects"],
        "mean_valid": cold["mean_valid"],
        "reads": ",".join(cold["reads"]),
        "cached_seconds": cached["seconds"],
        "cached_reused": cached["reused"],
        "cache_speedup": cold["seconds"] / cached["seconds"],
        "single_thread_seconds": single["seconds"],
        "single_thread_chips_per_s": single["chips_per_s"],
        "single_thread_peak_rss_mb": single["peak_rss_mb"],
        "subset_buildings": tiled["buildings"],
        "tiled_subset_seconds": tiled["seconds"],
        "tiled_subset_chips_per_s": tiled["chips_per_s"],
        "per_building_subset_seconds": per_building["seconds"],
        "per_building_subset_chips_per_s": per_building["chips_per_s"],
        "tiled_vs_per_building": tiled["chips_per_s"] / per_building["chips_per_s"],
        "tiled_vs_per_building_max_abs_diff": int(diff.max()),
        "tiled_vs_per_building_diff_fraction": float((diff > 0).mean()),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point."""
    parser = benchmark_parser(__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workers", type=int, default=2, help="reading threads of the default arms")
    parser.add_argument("--subset", type=int, default=None, help="buildings in the per-building comparison")
    args = parser.parse_args(argv)
    console = Console()
    figures = run(args.preset, args.seed, WORK, args.workers, args.subset)
    cache = WORK / "bench" / "ingest" / f"{args.preset}-{args.seed}" / "cache"
    png = (args.json or WORK / "bench" / f"ingest-{args.preset}-{args.seed}.json").with_suffix(".png")
    report(
        "ingest",
        figures,
        args,
        console=console,
        title=f"ingest, {args.preset} seed {args.seed} ({figures['buildings']} buildings)",
        headline=(
            f"{figures['chips_per_s']:.0f} chips/s ({figures['buildings']} buildings x {figures['dates']} "
            f"dates in {figures['seconds']:.1f} s), peak RSS {figures['peak_rss_mb']:.0f} MB; "
            f"cached re-run {figures['cached_seconds']:.2f} s; tiled reads "
            f"{figures['tiled_vs_per_building']:.1f}x per-building reads"
        ),
        artifacts=[plot_chip_stacks(ChipStack.open(cache), png)],
    )
    return figures


if __name__ == "__main__":
    main()
