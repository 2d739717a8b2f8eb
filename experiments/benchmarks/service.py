"""Service benchmark: API latency under bounded concurrent load on loopback, against a district-sized state.

The state is built once per preset and seed under ``.work/bench/service-<preset>-<seed>/`` (reused when it is
there): the scenario's chip cache (shared with the other benchmarks, ``.work/chips/<preset>-<seed>``), a store
with every building registered, three simulated reviews on 30% of them and a Dawid-Skene aggregation (posteriors,
decisions, flags; made with ``striketracker crowd simulate`` and ``crowd aggregate``), and an MLflow store whose
``champion`` is the preset's dating network trained for ``--epochs`` on those crowd labels (the architecture,
not the accuracy, sets the prediction cost).

The service runs as ``striketracker serve`` in a subprocess on a free loopback port (the benchmark never imports
``serving``). After a warm-up (first snapshot, champion lookup and model load) each endpoint gets ``--clients``
concurrent clients (keep-alive httpx clients on threads) sending requests one after another:

- ``detail``: ``GET /api/buildings/{id}`` of random buildings;
- ``geojson_2000``: ``GET /api/buildings?geometry=footprint``, every dated building with its footprint;
- ``chip_cold``: ``GET /chips/{id}/{t}.png`` of chips never asked before (rendered on the request);
- ``chip_cached``: the same few chips again (from the render cache);
- ``predict16``: ``POST /predict`` with 16 tasks of buildings the champion has not seen yet (a full MC-dropout
  prediction per request).

Figures are p50 and p95 latency per endpoint in milliseconds; targets: detail p95 <= 50 ms, cached chip p95 <=
20 ms, GeoJSON of 2,000 buildings p95 <= 300 ms.

    python -m experiments.benchmarks.service --preset district --seed 0 --json .work/bench/service-district-0.json
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from active_learning.settings import DEFAULT_WORK_DIR, Settings
from active_learning.store import Store
from experiments.benchmarks.dating import CONFIGS, chip_cache, crowd_labels
from experiments.benchmarks.report import benchmark_parser, report
from experiments.demo_services import free_port, wait_healthy
from model.errors import ChampionMissingError
from model.registry import CHAMPION, MODEL_NAME, model_ref

__all__ = ["TARGETS", "build_state", "main", "measure", "run"]

WORK = DEFAULT_WORK_DIR
REPO = Path(__file__).resolve().parents[2]
TARGETS = {"detail_p95_ms": 50.0, "chip_cached_p95_ms": 20.0, "geojson_2000_p95_ms": 300.0}
ENDPOINTS = ("detail", "geojson_2000", "chip_cold", "chip_cached", "predict16")


def _cli(args: list[str], env: dict[str, str], console: Console) -> None:
    """Run one ``striketracker`` command in a subprocess (the benchmark never imports ``serving``)."""
    done = subprocess.run(
        [sys.executable, "-m", "serving.cli", *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"striketracker {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    console.print(f"[dim]striketracker {args[0]} {args[1] if len(args) > 1 else ''}: done[/dim]")


def build_state(
    preset: str, seed: int, work: Path, epochs: int, console: Console
) -> tuple[dict[str, str], Path]:
    """The benchmark's store, chip cache and champion (built once, reused); returns the service env and cache."""
    scenario, chips = chip_cache(preset, seed, work)
    cache = work / "chips" / f"{preset}-{seed}"
    state = (work / "bench" / f"service-{preset}-{seed}").resolve()
    settings = Settings(work_dir=state, chip_cache=cache)
    env = {
        "STRIKETRACKER_WORK_DIR": str(state),
        "STRIKETRACKER_CHIP_CACHE": str(cache.resolve()),
        "STRIKETRACKER_MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "STRIKETRACKER_MLFLOW_ARTIFACT_ROOT": settings.mlflow_artifact_root,
    }
    store = Store.open(settings.database_url)
    if len(store.latest_posterior_records()) < len(chips.building_ids):
        with console.status("store: registering buildings, simulating reviews, aggregating"):
            _cli(["crowd", "simulate", str(scenario), "--per-building", "3", "--fraction", "0.3",
                  "--seed", str(seed)], env, console)  # fmt: skip
            _cli(["crowd", "aggregate", "--out", str(state / "reports")], env, console)
    tracking = settings.tracking()
    try:
        model_ref(tracking, CHAMPION)
    except ChampionMissingError:
        from model.training import run_cli

        with console.status(f"champion: training the {preset} network for {epochs} epoch(s) on crowd labels"):
            labels, _ = crowd_labels(scenario, chips, seed)
            labels_csv = labels.write_csv(state / "labels.csv", chips.dates)
            config = CONFIGS / f"{preset}.yaml"
            args = ["--config", str(config if config.is_file() else CONFIGS / "tiny.yaml"), "--data.cache",
                    str(cache), "--data.labels", str(labels_csv), "--trainer.max_epochs", str(epochs),
                    "--trainer.enable_progress_bar", "false"]  # fmt: skip
            result = run_cli(args, tracking=tracking, run_name=f"service-bench-{preset}-{seed}")
            assert result.model is not None
            tracking.client().set_registered_model_alias(MODEL_NAME, CHAMPION, result.model.version)
    return env, cache


class Service:
    """``striketracker serve`` in a subprocess on a free loopback port."""

    def __init__(self, env: dict[str, str], token: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = token
        self.log = (Path(env["STRIKETRACKER_WORK_DIR"]) / "serve.log").open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "serving.cli",
                "serve",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            cwd=REPO,
            env={**os.environ, **env, "STRIKETRACKER_API_TOKEN": token},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait(self, timeout: float = 600.0) -> None:
        wait_healthy(self.proc, self.url, Path(self.log.name), timeout)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


Request = Callable[[httpx.Client, int, int], httpx.Response]


def measure(url: str, request: Request, clients: int, per_client: int) -> np.ndarray:
    """Latencies (ms) of ``clients`` concurrent clients sending ``per_client`` requests each, one after another.

    ``request(client, client_index, request_index)`` sends one request; a non-2xx answer aborts the benchmark.
    """
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures: list[str] = []
    start = threading.Barrier(clients)

    def work(k: int) -> None:
        with httpx.Client(base_url=url, timeout=300) as client:
            start.wait()
            for i in range(per_client):
                began = time.perf_counter()
                response = request(client, k, i)
                latencies[k].append(1000 * (time.perf_counter() - began))
                if response.status_code >= 300:
                    failures.append(
                        f"{response.request.method} {response.request.url.path}: {response.status_code}"
                    )

    threads = [threading.Thread(target=work, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, e.g. {failures[0]}")
    return np.array([x for per in latencies for x in per])


def run(
    preset: str,
    seed: int,
    *,
    work: Path = WORK,
    clients: int = 8,
    requests: int = 40,
    predict_requests: int = 4,
    epochs: int = 1,
    console: Console | None = None,
) -> dict[str, Any]:
    """Build (or reuse) the state, start the service, load each endpoint; returns the figures."""
    console = console or Console()
    env, cache = build_state(preset, seed, work, epochs, console)
    manifest = json.loads((cache / "manifest.json").read_text())
    ids: list[str] = list(manifest["building_ids"])
    n_dates = len(manifest["dates"])
    timeline = [{"date": d, "url": ""} for d in manifest["dates"]]
    rng = np.random.default_rng(seed)
    service = Service(env, secrets.token_urlsafe(24))
    figures: dict[str, Any] = {
        "preset": preset,
        "seed": seed,
        "clients": clients,
        "requests_per_client": requests,
    }
    try:
        with console.status("starting striketracker serve (first snapshot, champion lookup)"):
            service.wait()
        with httpx.Client(base_url=service.url, timeout=600) as warm, console.status("warming up"):
            collection = warm.get("/api/buildings", params={"geometry": "footprint"}).json()
            figures["buildings"] = len(collection["features"])
            figures["coordinates"] = collection["coordinates"]
            figures["model_version"] = warm.post("/setup", json={}).json()["model_version"]
            warm.post("/predict", json={"tasks": [{"data": {"building_id": ids[0], "timeline": timeline}}]})
            warm.get(f"/chips/{ids[0]}/0.png")
        dated = [f["id"] for f in collection["features"]]
        detail_ids = rng.choice(dated, size=(clients, requests))  # drawn up front: the clients are threads
        order = rng.permutation(len(ids) * n_dates)  # distinct chips for the cold arm
        # buildings the champion has not predicted yet; a preset smaller than the load repeats some (cached)
        fresh = itertools.cycle(rng.permutation([b for b in ids if b != ids[0]]).tolist())
        predict_batches = [[next(fresh) for _ in range(16)] for _ in range(clients * predict_requests)]
        figures["predict16_cold_share"] = min(1.0, (len(ids) - 1) / (16 * clients * predict_requests))
        hot = [
            (ids[int(i)], int(t))
            for i, t in zip(rng.integers(0, len(ids), 8), rng.integers(0, n_dates, 8), strict=True)
        ]
        for b, t in hot:
            httpx.get(f"{service.url}/chips/{b}/{t}.png")

        def chip(k: int, i: int) -> tuple[str, int]:
            flat = int(order[1 + k * requests + i])  # skip the warm-up chip's slot
            return ids[flat // n_dates], flat % n_dates

        arms: dict[str, tuple[Request, int]] = {
            "detail": (lambda c, k, i: c.get(f"/api/buildings/{detail_ids[k, i]}"), requests),
            "geojson_2000": (lambda c, k, i: c.get("/api/buildings", params={"geometry": "footprint"}), requests // 2),
            "chip_cold": (lambda c, k, i: c.get("/chips/{}/{}.png".format(*chip(k, i))), requests),
            "chip_cached": (lambda c, k, i: c.get("/chips/{}/{}.png".format(*hot[(k + i) % len(hot)])), requests),
            "predict16": (
                lambda c, k, i: c.post(
                    "/predict",
                    json={"tasks": [{"id": j, "data": {"building_id": b, "timeline": timeline}}
                                    for j, b in enumerate(predict_batches[k * predict_requests + i])]},
                ),
                predict_requests,
            ),
        }  # fmt: skip
        for name, (request, per_client) in arms.items():
            with console.status(f"{name}: {clients} clients x {per_client} requests"):
                ms = measure(service.url, request, clients, per_client)
            figures[f"{name}_p50_ms"] = float(np.percentile(ms, 50))
            figures[f"{name}_p95_ms"] = float(np.percentile(ms, 95))
            figures[f"{name}_requests"] = int(len(ms))
        metrics = httpx.get(f"{service.url}/metrics").text
        figures["chip_cache_hits"] = _gauge(metrics, "striketracker_chip_cache_hits")
    finally:
        service.stop()
    for key, target in TARGETS.items():
        figures[f"{key.removesuffix('_p95_ms')}_target_met"] = bool(figures[key] <= target)
    figures["targets_met"] = all(figures[f"{k.removesuffix('_p95_ms')}_target_met"] for k in TARGETS)
    figures["load_average_1m"] = float(os.getloadavg()[0])
    return figures


def _gauge(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return float("nan")


def print_table(figures: dict[str, Any], console: Console) -> None:
    """p50/p95 per endpoint with its target."""
    table = Table(
        title=f"service latency: {figures['preset']} seed {figures['seed']}, {figures['buildings']} dated buildings, "
        f"{figures['clients']} concurrent clients, champion {figures['model_version']}"
    )
    for column in ("endpoint", "requests", "p50 ms", "p95 ms", "target p95"):
        table.add_column(column, justify="left" if column == "endpoint" else "right")
    for name in ENDPOINTS:
        target = TARGETS.get(f"{name}_p95_ms")
        met = "" if target is None else (" ok" if figures[f"{name}_p95_ms"] <= target else " MISSED")
        table.add_row(
            name,
            str(figures[f"{name}_requests"]),
            f"{figures[f'{name}_p50_ms']:.1f}",
            f"{figures[f'{name}_p95_ms']:.1f}",
            "" if target is None else f"<= {target:.0f}{met}",
        )
    console.print(table)
    console.print(
        f"machine load average during the run: {figures['load_average_1m']:.1f} (CPU cores: {os.cpu_count()})"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point."""
    parser = benchmark_parser(__doc__.splitlines()[0] if __doc__ else None, presets=("tiny", "district"))
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--requests", type=int, default=40, help="requests per client and endpoint")
    parser.add_argument("--predict-requests", type=int, default=4, help="/predict requests per client")
    parser.add_argument(
        "--epochs", type=int, default=1, help="training epochs of the champion if none exists"
    )
    args = parser.parse_args(argv)
    console = Console()
    figures = run(
        args.preset,
        args.seed,
        clients=args.clients,
        requests=args.requests,
        predict_requests=args.predict_requests,
        epochs=args.epochs,
        console=console,
    )
    print_table(figures, console)
    headline = (
        f"detail p95 {figures['detail_p95_ms']:.1f} ms, cached chip p95 {figures['chip_cached_p95_ms']:.1f} ms, "
        f"GeoJSON of {figures['buildings']} p95 {figures['geojson_2000_p95_ms']:.1f} ms: "
        + ("every target met" if figures["targets_met"] else "a target is missed")
    )
    report("service", figures, args, console=console, title="service benchmark figures", headline=headline)
    return figures


if __name__ == "__main__":
    main()
