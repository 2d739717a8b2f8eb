"""Server lifecycle checks that need no Label Studio install (the real start is in the integration tests)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from labeling.errors import PortBusyError, ServerError
from labeling.server import LabelStudioServer, ServerConfig, legacy_token_from_secret


def _config(tmp_path: Path, port: int) -> ServerConfig:
    return ServerConfig(
        root=tmp_path, admin_email="a@b.c", admin_password="pw", api_token="t" * 40, port=port
    )


def test_busy_port_is_refused_naming_the_holder(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        server = LabelStudioServer(_config(tmp_path, port))
        with pytest.raises(PortBusyError, match=f"port {port} on 127.0.0.1 is held by"):
            server.start(timeout=1)
        status = server.status()
        assert not status.running and status.port_owner


def test_start_without_install_says_how_to_install(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ServerError, match="striketracker labelstudio install"):
        LabelStudioServer(_config(tmp_path, port)).start(timeout=1)


def test_stale_pid_file_is_not_taken_for_a_server(tmp_path: Path) -> None:
    server = LabelStudioServer(_config(tmp_path, 1))
    server.config.pid_file.write_text("999999999")
    assert server.status().running is False
    assert server.stop() is False and not server.config.pid_file.exists()


def test_secrets_stay_out_of_repr_and_token_is_40_hex(tmp_path: Path) -> None:
    config = _config(tmp_path, 1)
    assert "pw" not in repr(config).replace("port", "") and "t" * 40 not in repr(config)
    token = legacy_token_from_secret("generated-secret")
    assert len(token) == 40 and int(token, 16) >= 0
    with pytest.raises(ServerError, match="empty"):
        legacy_token_from_secret("  ")


def test_the_label_studio_install_needs_no_uv_on_path(tmp_path, monkeypatch) -> None:
    """A fresh machine has uv only where `make` installed it (~/.local/bin, not on PATH): the install must
    still find one, the binary of the `uv` package in the project's environment."""
    import os
    import subprocess

    monkeypatch.setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    config = ServerConfig(root=tmp_path, admin_email="a@b.c", admin_password="x", api_token="t" * 40)
    uv = config.uv_executable
    assert os.access(uv, os.X_OK), uv
    done = subprocess.run([uv, "--version"], capture_output=True, text=True, check=True)
    assert done.stdout.startswith("uv ")
