"""Temporaries named by their writer: those of dead writers on this host are cleared, no other."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from model.temporaries import WRITER_TAG, clear_dead_temporaries, writer_alive, writer_tag


def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_writer_is_dead_only_when_it_ran_here_and_its_process_is_gone() -> None:
    host = socket.gethostname()
    assert writer_alive(writer_tag())  # this process
    assert not writer_alive(f"{host}-{_dead_pid()}-0123abcd")
    assert writer_alive(f"{host}.elsewhere-{_dead_pid()}-0123abcd")  # another host: cannot be checked
    assert writer_alive("not-a-tag")


def test_only_the_dead_writers_temporaries_that_match_are_removed(tmp_path: Path) -> None:
    host, dead = socket.gethostname(), _dead_pid()
    dead_file = tmp_path / f".out.{host}-{dead}-0123abcd.part.gpkg"
    dead_folder = tmp_path / f".out.{host}-{dead}-4567abcd.part"
    live = tmp_path / f".out.{writer_tag()}.part.gpkg"
    elsewhere = tmp_path / f".out.other-{dead}-0123abcd.part.gpkg"
    other_name = tmp_path / f".other.{host}-{dead}-0123abcd.part.gpkg"
    final = tmp_path / "out.gpkg"
    for path in (dead_file, live, elsewhere, other_name, final):
        path.write_text("x")
    dead_folder.mkdir()
    (dead_folder / "inside").write_text("x")
    removed = clear_dead_temporaries(tmp_path, rf"\.out\.{WRITER_TAG}\.part(\..*)?")
    assert sorted(removed) == sorted([dead_file, dead_folder])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (live, elsewhere, other_name, final)
    )
    assert clear_dead_temporaries(tmp_path / "missing", WRITER_TAG) == []
