"""Scenario generator: synthetic 0.5 m imagery timelines of Raqqa over the real UNOSAT damage points.

``generate(preset, seed, out)`` writes a scenario folder (docs/CONTRACTS.md, "Scenario folder");
``load_truth(out)`` reads its truth back. Command line: ``striketracker scenario --preset tiny --seed 0 --out DIR``.

Modules follow the data flow: ``extract`` (the shipped UNOSAT CSV, experiments/data) -> ``layout`` (a contiguous
area of damage points + intact buildings + streets) -> ``timing`` (dates and true gaps inside each point's UNOSAT
window, following the 2017 battle) -> ``acquisition`` (per-date sensor, sun, view, misregistration, haze,
clouds) -> ``render`` (tile renderer) -> ``generate`` (streams tiles into tiled, compressed GeoTIFFs; writes
footprints and truth) -> ``truth`` (reader) and ``preview`` (PNG).

Presets: ``tiny`` (~55 buildings, 15 dates, ~2 s), ``district`` (~1,900 buildings, ~1 km², under a minute on
this 2-core machine), ``city`` (all 13,143 distinct UNOSAT points + as many intact buildings, ~26,300
buildings, 411 tiles of 300 m, about 12 CPU-minutes; memory stays bounded because only one tile is rendered at a
time).
"""

from active_learning.truth import ScenarioTruth, load_truth
from experiments.scenario.errors import (
    BadSeedError,
    ScenarioDataError,
    ScenarioError,
    ScenarioOutputError,
    UnknownPresetError,
)
from experiments.scenario.generate import GENERATOR_VERSION, ScenarioSummary, generate
from experiments.scenario.presets import PRESETS, Preset, get_preset

__all__ = [
    "GENERATOR_VERSION",
    "PRESETS",
    "BadSeedError",
    "Preset",
    "ScenarioDataError",
    "ScenarioError",
    "ScenarioOutputError",
    "ScenarioSummary",
    "ScenarioTruth",
    "UnknownPresetError",
    "generate",
    "get_preset",
    "load_truth",
]
