"""The PostgreSQL test plugin finds the newest server binaries and names the fix when there are none."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.postgres import postgres_bin_dir


def test_the_newest_complete_server_is_chosen(tmp_path: Path) -> None:
    for version, binaries in (("13", 3), ("15", 3), ("16", 2), ("9.6", 3)):
        bin_dir = tmp_path / version / "bin"
        bin_dir.mkdir(parents=True)
        for name in ("initdb", "pg_ctl", "postgres")[:binaries]:
            (bin_dir / name).touch()
    assert postgres_bin_dir(tmp_path) == tmp_path / "15" / "bin"  # 16 lacks postgres


def test_no_server_is_a_clear_error_naming_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="apt-get install postgresql"):
        postgres_bin_dir(tmp_path)
