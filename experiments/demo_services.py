"""The demo's running services: the local Label Studio and the striketracker service, on loopback.

Both are started through the ``striketracker`` command line in child processes (``labelstudio start``,
``serve``, ``labelstudio setup``, ``export``, ``report``), so the demo runs exactly what an operator runs and
``experiments`` stays apart from ``serving`` (STYLE habit 3). The children get the demo's settings as
``STRIKETRACKER_*`` variables (:meth:`DemoServices.child_env`); their output goes to log files under the demo
folder, named in every error.

Label Studio is stopped at the end only if the demo started it (a server that was already running is left as
it was); the service always is.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from active_learning.settings import Settings

__all__ = ["DemoServiceError", "DemoServices", "free_port", "port_free"]


class DemoServiceError(RuntimeError):
    """A service of the demo would not start or a command of it failed (the log file is named)."""


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float) -> None:
    """Wait until the service child ``proc`` answers ``url``/health.

    Raises:
        DemoServiceError: the child exited, or did not answer within ``timeout`` seconds (its log is named).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DemoServiceError(f"the service exited with code {proc.returncode}; log {log}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise DemoServiceError(f"the service did not answer {url}/health within {timeout:.0f} s; log {log}")


def port_free(port: int) -> bool:
    """True when nothing listens on ``127.0.0.1:port``."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) != 0


def _cli() -> str:
    """The ``striketracker`` executable of this environment."""
    beside = Path(sys.executable).parent / "striketracker"
    found = str(beside) if beside.is_file() else shutil.which("striketracker")
    if not found:
        raise DemoServiceError(
            f"the striketracker command is not installed next to {sys.executable}; run `uv sync`"
        )
    return found


class DemoServices:
    """Label Studio and the service for one demo run.

    Args:
        settings: the demo's settings (ports, store, MLflow, chip cache).
        log_dir: where the children's output goes.
    """

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.service: subprocess.Popen[bytes] | None = None
        self.started_label_studio = False

    @property
    def service_url(self) -> str:
        return f"http://{self.settings.api_host}:{self.settings.api_port}"

    def child_env(self) -> dict[str, str]:
        """The environment of the children: this process's (PATH, HOME, the user's own ``STRIKETRACKER_*``)
        with the demo's settings on top."""
        s = self.settings
        demo = {
            "WORK_DIR": str(s.work_dir),
            "DATABASE_URL": s.database_url,
            "MLFLOW_TRACKING_URI": s.mlflow_tracking_uri,
            "MLFLOW_ARTIFACT_ROOT": s.mlflow_artifact_root,
            "LABEL_STUDIO_URL": s.label_studio_url,
            "API_HOST": s.api_host,
            "API_PORT": str(s.api_port),
            "PUBLIC_BASE_URL": s.public_base_url,
            "ML_BACKEND_URL": s.ml_backend_url,
            "CHIP_CACHE": str(s.chip_cache),
        }
        return {**os.environ, **{f"STRIKETRACKER_{k}": v for k, v in demo.items()}}

    def run(self, *args: str, log: str, timeout: float = 600.0) -> str:
        """Run ``striketracker ARGS`` to completion; its standard output (stderr goes to ``log``)."""
        path = self.log_dir / log
        with path.open("ab") as err:
            done = subprocess.run(
                [_cli(), *args],
                stdout=subprocess.PIPE,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=self.child_env(),
                timeout=timeout,
                check=False,
            )
        if done.returncode != 0:
            tail = "\n".join(path.read_text(errors="replace").strip().splitlines()[-8:])
            raise DemoServiceError(
                f"`striketracker {' '.join(args)}` failed with exit code {done.returncode}; log {path}:\n{tail}"
            )
        return done.stdout.decode(errors="replace")

    def start_label_studio(self) -> None:
        """Start the local Label Studio (or reuse ours); first start on a fresh data dir migrates (~45 s)."""
        already = not port_free(urlsplit(self.settings.label_studio_url).port or 8089)
        self.run("labelstudio", "start", log="labelstudio.log", timeout=420)
        self.started_label_studio = not already

    def start_service(self, timeout: float = 120.0) -> None:
        """Start ``striketracker serve`` and wait until ``/health`` answers."""
        log = (self.log_dir / "service.log").open("ab")
        self.service = subprocess.Popen(
            [_cli(), "serve", "--log-level", "warning"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.child_env(),
            start_new_session=True,
        )
        log.close()
        wait_healthy(self.service, self.service_url, self.log_dir / "service.log", timeout)

    def download(self, path: str, out: Path, timeout: float = 300.0) -> Path:
        """GET ``path`` from the service into ``out`` (written beside it first, then renamed: a killed run
        leaves no half-written file under the final name)."""
        out.parent.mkdir(parents=True, exist_ok=True)
        r = httpx.get(f"{self.service_url}{path}", timeout=timeout)
        if r.status_code != 200:
            raise DemoServiceError(
                f"the service answered {path} with HTTP {r.status_code}: {r.text[:300]}; "
                f"log {self.log_dir / 'service.log'}"
            )
        tmp = out.with_name(f".{out.name}.part")
        tmp.write_bytes(r.content)
        tmp.replace(out)
        return out

    def setup_project(self, title: str, overlap: int) -> None:
        """``striketracker labelstudio setup``: the project, its webhook to the service and the ML backend."""
        self.run(
            "labelstudio", "setup", "--title", title, "--overlap", str(overlap),
            "--service-url", self.service_url, log="setup.log",
        )  # fmt: skip

    def stop(self) -> None:
        """Stop the service, and Label Studio if the demo started it."""
        if self.service is not None and self.service.poll() is None:
            self.service.terminate()
            try:
                self.service.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.service.kill()
                self.service.wait(timeout=10)
        self.service = None
        if self.started_label_studio:
            self.run("labelstudio", "stop", log="labelstudio.log")
            self.started_label_studio = False
