"""Lifecycle of a local Label Studio server: install, start, wait until healthy, reuse, stop.

The pinned ``label-studio`` release lives in its own virtual environment under the work directory (created
with ``uv``), so its ~160 dependencies never meet the project's. The server binds to 127.0.0.1 (through
``--internal-host``; ``--host`` is only the public URL), keeps its data dir under the work directory, creates
the admin and a legacy API token on first start without interaction, and runs with analytics, the version check
and error reporting off. It is stopped by its own process id (pid file), never by name.

The child's environment is built from scratch rather than inherited: Label Studio reads bare ``HOST``, ``PORT``,
``USERNAME`` and ``PASSWORD`` variables as settings, so a stray one in the caller's shell would change it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from labeling.errors import PortBusyError, ServerError

__all__ = ["LabelStudioServer", "ServerConfig", "ServerStatus", "legacy_token_from_secret"]

_INSTALLED_MARKER = ".striketracker-installed"


def legacy_token_from_secret(secret: str) -> str:
    """A 40-hex legacy API token derived from a generated secret (Label Studio's token column is 40 chars)."""
    if not secret.strip():
        raise ServerError(
            "the Label Studio token secret is empty; delete the secret file so it is regenerated"
        )
    return hashlib.sha1(secret.strip().encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class ServerConfig:
    """Where and how the local server runs.

    Attributes:
        root: folder under the work dir holding the env, the data dir, the pid file and the log.
        admin_email: admin account created on a fresh data dir.
        admin_password: its password (never logged).
        api_token: the admin's legacy API token, 40 hex chars (never logged).
        host: bind address (loopback by default).
        port: pinned port; a busy port is an error, never silently replaced.
        version: the pinned ``label-studio`` release.
        python: Python version of the isolated environment.
        uv: the ``uv`` executable used to build the environment; empty means the one installed with this
            project (the ``uv`` package's binary), so no ``uv`` on PATH is needed.
        env: the isolated env folder if not ``root/label-studio-env`` (tests share one install).
    """

    root: Path
    admin_email: str
    admin_password: str
    api_token: str
    host: str = "127.0.0.1"
    port: int = 8089
    version: str = "1.23.2"
    python: str = "3.11"
    uv: str = ""
    env: Path | None = None

    def __repr__(self) -> str:
        return f"ServerConfig(root={self.root}, host={self.host}, port={self.port}, version={self.version})"

    @property
    def uv_executable(self) -> str:
        """The ``uv`` to run: the configured one, else the binary of the ``uv`` package beside this project."""
        if self.uv:
            return self.uv
        from uv import find_uv_bin

        return find_uv_bin()

    @property
    def env_dir(self) -> Path:
        return self.env if self.env is not None else self.root / "label-studio-env"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def pid_file(self) -> Path:
        return self.root / "label-studio.pid"

    @property
    def log_file(self) -> Path:
        return self.root / "label-studio.log"

    @property
    def executable(self) -> Path:
        return self.env_dir / "bin" / "label-studio"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass(frozen=True)
class ServerStatus:
    """What :meth:`LabelStudioServer.status` found.

    Attributes:
        installed: the pinned release is installed in the isolated env.
        running: our server process (from the pid file) is alive.
        healthy: ``/health/`` answers ``UP``.
        pid: our server's process id, or None.
        url: base URL.
        port_owner: description of another process holding the port, or empty.
    """

    installed: bool
    running: bool
    healthy: bool
    pid: int | None
    url: str
    port_owner: str = ""


class LabelStudioServer:
    """A local Label Studio server managed by pid file.

    Args:
        config: paths, port, version and credentials.
        client: optional HTTP client used for health checks.
    """

    def __init__(self, config: ServerConfig, *, client: httpx.Client | None = None) -> None:
        self.config = config
        self._http = client or httpx.Client(timeout=2.0)

    # ------------------------------------------------------------------ install
    def is_installed(self) -> bool:
        """True when the isolated env holds the pinned release."""
        marker = self.config.env_dir / _INSTALLED_MARKER
        return (
            self.config.executable.exists()
            and marker.exists()
            and marker.read_text().strip() == self.config.version
        )

    def install(self) -> Path:
        """Create the isolated env with the pinned release (idempotent; about 90 s and 1 GB when cold).

        Returns:
            The env directory.

        Raises:
            ServerError: ``uv`` is missing or the install failed (its last output lines are in the message).
        """
        cfg = self.config
        if self.is_installed():
            return cfg.env_dir
        cfg.root.mkdir(parents=True, exist_ok=True)
        python = cfg.env_dir / "bin" / "python"
        uv = cfg.uv_executable
        steps = []
        if not python.exists():
            steps.append([uv, "venv", str(cfg.env_dir), "--python", cfg.python, "--quiet"])
        steps.append(
            [uv, "pip", "install", "--quiet", "--python", str(python), f"label-studio=={cfg.version}"]
        )
        for cmd in steps:
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=1800)
            except FileNotFoundError:
                raise ServerError(
                    f"cannot run {uv!r} to build Label Studio's environment; install uv "
                    "(python3 -m pip install --user uv) or pass its path"
                ) from None
            if done.returncode != 0:
                tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
                raise ServerError(
                    f"installing label-studio=={cfg.version} into {cfg.env_dir} failed "
                    f"(exit {done.returncode}):\n{tail}\nfix the cause and rerun; a partial env is reused"
                )
        if not cfg.executable.exists():
            raise ServerError(
                f"install finished but {cfg.executable} is missing; delete {cfg.env_dir} and retry"
            )
        (cfg.env_dir / _INSTALLED_MARKER).write_text(cfg.version)
        return cfg.env_dir

    # ------------------------------------------------------------------ status
    def _our_pid(self) -> int | None:
        try:
            pid = int(self.config.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            proc = psutil.Process(pid)
            cmdline = " ".join(proc.cmdline())
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None
        return pid if str(self.config.executable) in cmdline or "label-studio" in cmdline else None

    def _port_in_use(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            return s.connect_ex((self.config.host, self.config.port)) == 0

    def _port_owner(self) -> str:
        with contextlib.suppress(psutil.AccessDenied, OSError):
            for conn in psutil.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == self.config.port:
                    if conn.pid is None:
                        return "an unknown process"
                    with contextlib.suppress(psutil.Error):
                        return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
                    return f"pid {conn.pid}"
        return "another process"

    def _pid_listens(self, pid: int) -> bool:
        with contextlib.suppress(psutil.Error):
            for conn in psutil.Process(pid).net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == self.config.port:
                    return True
        return False

    def healthy(self) -> bool:
        """True when ``/health/`` answers ``{"status": "UP"}``."""
        try:
            r = self._http.get(f"{self.config.url}/health/")
            return r.status_code == 200 and r.json().get("status") == "UP"
        except (httpx.HTTPError, ValueError):
            return False

    def status(self) -> ServerStatus:
        """Installed? running (our pid alive)? healthy? who holds the port?"""
        pid = self._our_pid()
        owner = ""
        if pid is None and self._port_in_use():
            owner = self._port_owner()
        return ServerStatus(
            installed=self.is_installed(),
            running=pid is not None,
            healthy=pid is not None and self.healthy(),
            pid=pid,
            url=self.config.url,
            port_owner=owner,
        )

    # ------------------------------------------------------------------ start / stop
    def _child_env(self) -> dict[str, str]:
        cfg = self.config
        home = cfg.root / "home"
        home.mkdir(parents=True, exist_ok=True)
        return {
            "PATH": f"{cfg.env_dir / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "VIRTUAL_ENV": str(cfg.env_dir),
            "LABEL_STUDIO_BASE_DATA_DIR": str(cfg.data_dir),
            "LABEL_STUDIO_USERNAME": cfg.admin_email,
            "LABEL_STUDIO_PASSWORD": cfg.admin_password,
            "LABEL_STUDIO_USER_TOKEN": cfg.api_token,
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
            "LATEST_VERSION_CHECK": "false",
            "COLLECT_ANALYTICS": "false",
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
            "SSRF_PROTECTION_ENABLED": "false",
            "ML_BLOCK_LOCAL_IP": "false",
            "PYTHONUNBUFFERED": "1",
        }

    def start(self, *, timeout: float = 240.0) -> ServerStatus:
        """Start the server, or reuse ours if it already runs; return once it is healthy.

        Raises:
            ServerError: not installed, the process died (log tail in the message) or it stayed unhealthy.
            PortBusyError: the port is held by a process that is not our server.
        """
        cfg = self.config
        pid = self._our_pid()
        if pid is not None:
            self._wait_healthy(pid, timeout)
            return self.status()
        if self._port_in_use():
            raise PortBusyError(
                f"port {cfg.port} on {cfg.host} is held by {self._port_owner()}, not by our Label Studio "
                f"(pid file {cfg.pid_file}); stop it or choose another port (Label Studio would silently "
                "move to the next port, so we refuse)"
            )
        if not self.is_installed():
            raise ServerError(
                f"label-studio=={cfg.version} is not installed in {cfg.env_dir}; run `striketracker labelstudio install`"
            )
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(cfg.executable),
            "start",
            "--no-browser",
            "--internal-host",
            cfg.host,
            "--host",
            cfg.url,
            "--port",
            str(cfg.port),
            "--data-dir",
            str(cfg.data_dir),
        ]
        with cfg.log_file.open("ab") as log:
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._child_env(),
                cwd=cfg.root,
                start_new_session=True,
            )
        cfg.pid_file.write_text(str(proc.pid))
        try:
            self._wait_healthy(proc.pid, timeout, popen=proc)
        except ServerError:
            self.stop()
            raise
        return self.status()

    def _wait_healthy(self, pid: int, timeout: float, popen: subprocess.Popen[bytes] | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if popen is not None and popen.poll() is not None:
                raise ServerError(
                    f"Label Studio exited with code {popen.returncode} during start-up; "
                    f"last log lines:\n{self.log_tail()}"
                )
            if not psutil.pid_exists(pid):
                raise ServerError(f"Label Studio (pid {pid}) died; last log lines:\n{self.log_tail()}")
            if self.healthy():
                if not self._pid_listens(pid):
                    raise PortBusyError(
                        f"a server answers on port {self.config.port} but it is not our Label Studio (pid {pid}); "
                        "choose another port"
                    )
                return
            time.sleep(0.5)
        raise ServerError(
            f"Label Studio (pid {pid}) not healthy at {self.config.url}/health/ after {timeout:.0f} s; "
            f"last log lines:\n{self.log_tail()}"
        )

    def stop(self, *, timeout: float = 20.0) -> bool:
        """Stop our server by its pid (SIGTERM, then SIGKILL). Returns True if one was running."""
        pid = self._our_pid()
        if pid is None:
            self.config.pid_file.unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
        try:
            psutil.Process(pid).wait(timeout=timeout)
        except psutil.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).wait(timeout=5)
        except psutil.NoSuchProcess:
            pass
        self.config.pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the server log (Label Studio does not log secrets we pass by environment)."""
        try:
            text = self.config.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log yet)"
        return "\n".join(text.strip().splitlines()[-lines:])
