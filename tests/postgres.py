"""One throwaway PostgreSQL server per test session, and a store URL per test on SQLite and on PostgreSQL.

The server is Debian's PostgreSQL (``apt-get install postgresql``; ``make test`` installs it), run from its own
binaries (the newest ``/usr/lib/postgresql/*/bin``) with its data directory and unix-socket directory in a
temporary folder, listening on 127.0.0.1 only, on a free port, and stopped (its folder removed) at the end of the
session. ``initdb`` refuses to run as root, so under root the server runs as the ``postgres`` system user.

Fixtures: ``postgres`` (the session's server, :class:`LivePostgres`) and ``store_url``, parametrized over
``sqlite`` (a file in the test's tmp folder) and ``postgresql`` (a fresh database per test, marked
``integration``), for tests that must pass on both backends of the store of record.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.live_services import free_port

SUPERUSER = "striketracker"
_BINARIES = ("initdb", "pg_ctl", "postgres")


@dataclass(frozen=True)
class LivePostgres:
    """The session's PostgreSQL server.

    Attributes:
        port: its TCP port on 127.0.0.1.
        log: the server's log file.
    """

    port: int
    log: Path

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL of ``database`` on this server (psycopg 3 driver, trust auth on loopback)."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new, empty database; returns its SQLAlchemy URL."""
        name = f"test_{secrets.token_hex(6)}"
        dsn = f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def postgres_bin_dir(root: Path = Path("/usr/lib/postgresql")) -> Path:
    """The newest Debian PostgreSQL ``bin`` folder that has initdb, pg_ctl and postgres.

    Raises:
        FileNotFoundError: none is installed; the message names the fix.
    """
    found = [
        d / "bin"
        for d in root.glob("*")
        if re.fullmatch(r"\d+(\.\d+)?", d.name) and all((d / "bin" / b).is_file() for b in _BINARIES)
    ]
    if not found:
        raise FileNotFoundError(
            f"no PostgreSQL server binaries (initdb, pg_ctl, postgres) under {root}/*/bin; the store's tests run "
            "on a real PostgreSQL: install it with `apt-get install postgresql` (`make test` does)"
        )
    return max(found, key=lambda b: tuple(int(p) for p in b.parent.name.split(".")))


def _run(command: list[str], cwd: Path, what: str) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        pytest.fail(
            f"PostgreSQL {what} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}"
        )


@pytest.fixture(scope="session")
def postgres() -> Iterator[LivePostgres]:
    """A PostgreSQL server for this session on 127.0.0.1 (see the module docstring)."""
    try:
        bin_dir = postgres_bin_dir()
    except FileNotFoundError as exc:
        pytest.fail(str(exc))
    as_root = os.geteuid() == 0
    # under root, initdb and the server run as the postgres system user, who must own the folder; a folder
    # of its own in /tmp (pytest's tmp folders sit in a root-only directory the postgres user cannot enter)
    root = Path(tempfile.mkdtemp(prefix="striketracker-postgres-"))
    run_as = ["runuser", "-u", "postgres", "--"] if as_root else []
    data, sockets, log = root / "data", root / "sockets", root / "server.log"
    sockets.mkdir()
    if as_root:
        for path in (root, sockets):
            shutil.chown(path, "postgres", "postgres")
    port = free_port()
    _run([*run_as, str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust",
          "--encoding=UTF8", "--locale=C", "--no-sync"], root, "initdb")  # fmt: skip
    # durability off (a throwaway server); a session time zone other than UTC, so that the store's
    # timezone-aware timestamps are tested for what they are, not for what UTC happens to hide
    options = (
        f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets} -c fsync=off -c full_page_writes=off "
        "-c synchronous_commit=off -c timezone=Asia/Damascus"
    )
    pg_ctl = [*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log)]
    started = subprocess.run(
        [*pg_ctl, "-o", options, "-w", "-t", "60", "start"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        if started.returncode != 0:
            tail = log.read_text()[-2000:] if log.exists() else ""
            pytest.fail(f"PostgreSQL did not start ({started.stderr.strip()}); server log:\n{tail}")
        yield LivePostgres(port, log)
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "-w", "stop"], cwd=root, capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty store database: a SQLite file, or a fresh database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    server: LivePostgres = request.getfixturevalue("postgres")
    return server.create_database()
