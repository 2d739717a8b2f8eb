"""The model package's public names: every re-export resolves, and importing a light module stays light."""

from __future__ import annotations

import subprocess
import sys

import model


def test_every_public_name_resolves_to_its_module() -> None:
    assert sorted(model.__all__) == sorted(model._SOURCES)
    for name in model.__all__:
        value = getattr(model, name)
        assert value.__module__.startswith(model._SOURCES[name]), name


def test_callers_import_paths_still_work() -> None:
    from model.chips import ChipStack, IngestParams, ingest
    from model.datamodule import ChipArrays, GapLabels, read_audit_gaps

    assert ingest.__module__ == "model.chips.pipeline" and IngestParams.__module__ == "model.chips.pipeline"
    assert ChipStack.__module__ == "model.chips.stack"
    assert ChipArrays.__module__ == "model.datamodule.arrays"
    assert GapLabels.__module__ == read_audit_gaps.__module__ == "model.datamodule.labels"


def test_importing_the_timeline_does_not_load_torch() -> None:
    code = "import sys, model.timeline, model; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
