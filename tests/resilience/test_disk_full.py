"""A full disk or an unwritable work folder while writing the chip cache or an export: a clear error naming the
path and the fix, and nothing already there is corrupted.

"Disk full" is a child process under ``RLIMIT_FSIZE`` (a write past the cap fails with EFBIG, as ENOSPC would).
"Read-only" is a folder with mode 0o555, except as root, where permission bits do not stop writes: there the
target lies under a regular file, which no user can write into either.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely

from model.chips import ChipStack, ingest
from model.errors import CacheError
from tests.resilience.child import spawn

FSIZE = 64 * 1024  # bytes any one file may grow to: the chips and the export below are larger


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, ChipStack]:
    from experiments.scenario import generate

    folder = tmp_path_factory.mktemp("scenario")
    generate("tiny", 0, folder / "scenario", progress=False)
    reference = ingest(
        folder / "scenario", folder / "scenario" / "footprints.gpkg", folder / "ref", warn=False
    )
    return folder / "scenario", folder / "scenario" / "footprints.gpkg", reference


def unwritable(tmp_path: Path) -> Path:
    """A folder path this process cannot create files in (see the module docstring)."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    return blocker / "work"


def _frame(n: int = 2000) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(0)
    xy = rng.uniform(38.9, 39.1, size=(n, 2))
    return gpd.GeoDataFrame(
        {"building_id": [f"B{i:05d}" for i in range(n)], "confidence": rng.uniform(size=n)},
        geometry=shapely.points(xy),
        crs="EPSG:4326",
    )


@pytest.mark.integration
def test_a_full_disk_while_rebuilding_the_chip_cache_is_a_clear_error_and_the_old_cache_survives(
    scenario: tuple[Path, Path, ChipStack], tmp_path: Path
) -> None:
    imagery, footprints, reference = scenario
    out = tmp_path / "chips"
    shutil.copytree(reference.path, out)
    full = spawn("tests.resilience.jobs:ingest", imagery, footprints, out, "--force", "1", fsize=FSIZE)
    assert full.returncode == 1, full.stderr[-3000:]
    assert f"CacheError: {out}: cannot write the chip cache" in full.stderr
    assert "Free disk space" in full.stderr
    stack = ChipStack.open(out)  # the previous cache, whole
    np.testing.assert_array_equal(np.asarray(stack.chips), np.asarray(reference.chips))
    assert [p.name for p in tmp_path.iterdir()] == ["chips"]  # the partial build is gone


def test_an_unwritable_cache_folder_is_a_clear_error_naming_it(
    scenario: tuple[Path, Path, ChipStack], tmp_path: Path
) -> None:
    imagery, footprints, _ = scenario
    out = unwritable(tmp_path) / "chips"
    with pytest.raises(CacheError, match="cannot write the chip cache.*choose a writable folder") as refused:
        ingest(imagery, footprints, out, warn=False)
    assert str(out) in str(refused.value)
    assert not out.exists()


@pytest.mark.integration
@pytest.mark.parametrize("fmt", ["gpkg", "csv"])
def test_a_full_disk_while_exporting_is_a_clear_error_and_the_previous_export_survives(
    fmt: str, tmp_path: Path
) -> None:
    from serving.export import write_export

    frame = tmp_path / "frame.geojson"
    _frame().to_file(frame)
    out = tmp_path / "exports" / f"dated.{fmt}"
    write_export(_frame(10), out, fmt)  # type: ignore[arg-type]
    before = {p.name: p.read_bytes() for p in out.parent.iterdir()}
    full = spawn("tests.resilience.jobs:export", frame, out, fmt, fsize=FSIZE)
    assert full.returncode == 1, full.stderr[-3000:]
    assert full.stderr.startswith(f"error: ExportError: {out.parent}")  # the folder (gpkg: the file in it)
    assert "choose a writable folder" in full.stderr
    assert {p.name: p.read_bytes() for p in out.parent.iterdir()} == before  # no temporary file left either


def test_an_unwritable_export_folder_is_a_clear_error_naming_it(tmp_path: Path) -> None:
    from serving.errors import ExportError
    from serving.export import write_export

    folder = unwritable(tmp_path)
    with pytest.raises(
        ExportError, match="cannot write the export there.*choose a writable folder"
    ) as refused:
        write_export(_frame(10), folder / "dated.gpkg", "gpkg")
    assert str(folder) in str(refused.value)
