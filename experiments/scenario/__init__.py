"""Scenario generator: synthetic 0.5 m imagery timelines of Raqqa over the real UNOSAT damage points.

``generate(preset, seed, out)`` writes a scenario folder (docs/CONTRACTS.md); ``load_truth(out)`` reads its
truth back. Modules follow the data flow: extract -> layout -> timing -> acquisition -> render -> generate.
"""

from experiments.scenario.errors import (
    BadSeedError,
    ScenarioDataError,
    ScenarioError,
    ScenarioOutputError,
    UnknownPresetError,
)
from experiments.scenario.generate import GENERATOR_VERSION, ScenarioSummary, generate
from experiments.scenario.presets import PRESETS, Preset, get_preset
from experiments.scenario.truth import ScenarioTruth, load_truth

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
