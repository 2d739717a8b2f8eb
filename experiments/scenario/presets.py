"""Named scenario presets: how much of Raqqa to take and how to image it."""

from __future__ import annotations

from dataclasses import dataclass

from experiments.scenario.errors import BadSeedError, UnknownPresetError

__all__ = ["PRESETS", "Preset", "check_seed", "get_preset"]


@dataclass(frozen=True)
class Preset:
    """Size and imaging parameters of a scenario.

    Attributes:
        name: preset name.
        damage_points: how many UNOSAT points the contiguous area holds (None = all of Raqqa).
        intact_ratio: intact buildings added per damage point.
        n_dates: acquisitions between ``first_date`` and ``last_date`` (both included).
        first_date / last_date: ISO dates of the first and last acquisition.
        resolution: metres per pixel of the main sensor.
        tile: rendering tile edge in 0.5 m pixels, a multiple of 6 so tiles also fit the 0.6 m grid (the
            renderer never holds more than one tile).
        margin_m: ground margin around the buildings' bounding box, metres.
        randomise: render in a world style drawn from the seed (:func:`experiments.scenario.style.draw_style`:
            ground, trees, roofs, debris, tarps) instead of Raqqa's: domain randomisation for a synthetic
            teacher that must transfer to real imagery of other places.
    """

    name: str
    damage_points: int | None
    intact_ratio: float
    n_dates: int = 15
    first_date: str = "2017-02-03"
    last_date: str = "2017-10-21"
    resolution: float = 0.5
    tile: int = 600
    margin_m: float = 30.0
    randomise: bool = False


PRESETS: dict[str, Preset] = {
    "tiny": Preset(name="tiny", damage_points=30, intact_ratio=1.0, tile=300, margin_m=20.0),
    "district": Preset(name="district", damage_points=1000, intact_ratio=1.0),
    "city": Preset(name="city", damage_points=None, intact_ratio=1.0),
    "teacher": Preset(name="teacher", damage_points=600, intact_ratio=1.0, randomise=True),
}


def get_preset(name: str) -> Preset:
    """Look a preset up by name.

    Raises:
        UnknownPresetError: the name is not a known preset.
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise UnknownPresetError(
            f"unknown scenario preset {name!r}; choose one of {', '.join(PRESETS)}"
        ) from None


def check_seed(seed: object) -> int:
    """Validate a seed: a non-negative integer below 2**32.

    Raises:
        BadSeedError: the seed is not a usable integer.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise BadSeedError(f"scenario seed must be an integer in 0..{2**32 - 1}, got {seed!r}")
    return seed
