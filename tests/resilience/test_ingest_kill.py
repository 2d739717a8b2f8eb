"""Ingestion killed with SIGKILL mid-way leaves nothing taken as a chip cache, and a rerun builds the same cache.

The chip cache is built in a temporary sibling folder and swapped in with renames (``model/chips.py``); a cache
without a complete manifest is refused, never read as complete.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from model.chips import MANIFEST, ChipStack, ingest
from model.errors import CacheError
from tests.resilience.child import spawn

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, ChipStack]:
    """The tiny scenario and its chip cache built without interruption (the reference)."""
    from experiments.scenario import generate

    folder = tmp_path_factory.mktemp("scenario")
    generate("tiny", 0, folder / "scenario", progress=False)
    reference = ingest(
        folder / "scenario", folder / "scenario" / "footprints.gpkg", folder / "ref", warn=False
    )
    return folder / "scenario", folder / "scenario" / "footprints.gpkg", reference


def _same_cache(stack: ChipStack, reference: ChipStack) -> None:
    assert stack.building_ids == reference.building_ids and stack.dates == reference.dates
    assert stack.fingerprint == reference.fingerprint
    np.testing.assert_array_equal(np.asarray(stack.chips), np.asarray(reference.chips))
    np.testing.assert_array_equal(np.asarray(stack.valid), np.asarray(reference.valid))


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def test_killed_while_cutting_chips_leaves_no_cache_and_the_rerun_builds_it(
    scenario: tuple[Path, Path, ChipStack], tmp_path: Path
) -> None:
    imagery, footprints, reference = scenario
    out = tmp_path / "chips"
    killed = spawn("tests.resilience.jobs:ingest", imagery, footprints, out, kill_at="model.chips.pipeline:_cut_batch",
                   after=True)  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert _leftovers(out), "the kill should have left the half-built temporary folder"
    assert not out.exists()  # nothing under the final name
    stack = ingest(imagery, footprints, out, warn=False)
    _same_cache(stack, reference)
    assert _leftovers(out) == []  # the dead build's temporary folder is cleared


def test_killed_between_the_two_renames_of_a_rebuild_and_the_rerun_restores_the_cache(
    scenario: tuple[Path, Path, ChipStack], tmp_path: Path
) -> None:
    imagery, footprints, reference = scenario
    out = tmp_path / "chips"
    shutil.copytree(reference.path, out)
    # a forced rebuild renames the old cache away (1st rename) and the new one into place (2nd): die between
    killed = spawn("tests.resilience.jobs:ingest", imagery, footprints, out, "--force", "1",
                   kill_at="pathlib:Path.rename:2")  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not out.exists() and len(_leftovers(out)) == 2  # the old cache and the new one, both aside
    _same_cache(ingest(imagery, footprints, out, warn=False), reference)
    assert _leftovers(out) == []


def test_a_cache_with_a_missing_partial_or_unfinished_manifest_is_never_taken_as_complete(
    scenario: tuple[Path, Path, ChipStack], tmp_path: Path
) -> None:
    imagery, footprints, reference = scenario
    text = (reference.path / MANIFEST).read_text()
    unfinished = json.loads(text) | {"complete": False}
    for name, manifest in [("missing", None), ("partial", text[: len(text) // 2]),
                           ("unfinished", json.dumps(unfinished))]:  # fmt: skip
        out = tmp_path / name
        shutil.copytree(reference.path, out)
        if manifest is None:
            (out / MANIFEST).unlink()
        else:
            (out / MANIFEST).write_text(manifest)
        with pytest.raises(CacheError, match="re-run ingest|striketracker ingest") as refused:
            ChipStack.open(out)
        assert str(out) in str(refused.value)
        if name == "unfinished":  # a readable manifest of an unfinished cache: the rerun rebuilds it
            _same_cache(ingest(imagery, footprints, out, warn=False), reference)
        else:  # an unreadable one: the rerun says which folder and what to do, and touches nothing
            with pytest.raises(CacheError, match="re-run ingest|choose an empty or new folder") as rerun:
                ingest(imagery, footprints, out, warn=False)
            assert str(out) in str(rerun.value)
