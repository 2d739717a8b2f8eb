"""Errors of the scenario generator.

::

    ScenarioError (ValueError)
     ├── UnknownPresetError   the preset name is not one of tiny, district, city
     ├── BadSeedError         the seed is not a non-negative integer
     ├── ScenarioDataError    the UNOSAT extract is missing or malformed
     └── ScenarioOutputError  the output folder cannot be written or read back
"""

from __future__ import annotations

__all__ = ["BadSeedError", "ScenarioDataError", "ScenarioError", "ScenarioOutputError", "UnknownPresetError"]


class ScenarioError(ValueError):
    """Base class of scenario-generation errors."""


class UnknownPresetError(ScenarioError):
    """The preset name is unknown."""


class BadSeedError(ScenarioError):
    """The seed is not a non-negative integer."""


class ScenarioDataError(ScenarioError):
    """The input damage-point data is missing or malformed."""


class ScenarioOutputError(ScenarioError):
    """The output folder is unusable or a scenario folder is incomplete."""
