"""How a scenario's world looks: Raqqa's by default, or a randomised style for domain randomisation.

A model trained only on one rendered city learns that city's colours: pale soil, flat concrete roofs, grey
rubble. Real imagery of another place (lawns, trees, shingled pitched roofs, timber debris, blue tarps on
damaged roofs) then looks foreign to it. Domain randomisation (Tobin et al., 2017, "Domain Randomization for
Transferring Deep Neural Networks from Simulation to the Real World") renders many worlds instead, so that
what stays constant across them, the change a strike makes to a building, is what the model learns.

:func:`draw_style` draws one world per scenario seed: ground (soil to lawn), tree cover, a roof palette of
random hues and brightnesses with pitched (two-tone) roofs, debris colour and spread, and the share of
damaged roofs under a tarp. :data:`RAQQA` is the default style; presets without ``randomise`` render exactly
as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["RAQQA", "Style", "draw_style"]

_RAQQA_ROOFS = np.array(
    [
        [0.70, 0.66, 0.60, 0.64],
        [0.76, 0.74, 0.71, 0.70],
        [0.62, 0.55, 0.47, 0.58],
        [0.55, 0.60, 0.66, 0.55],
    ],
    np.float32,
)


@dataclass(frozen=True)
class Style:
    """The look of one scenario's world.

    Attributes:
        soil: ``[4]`` bare ground reflectance (R, G, B, NIR).
        lawn: share of grass mixed into the ground (0 = bare soil).
        grass: ``[4]`` grass reflectance.
        tree_threshold: vegetation noise level above which there is a tree (lower = more trees).
        roofs: ``[K, 4]`` roof palette and ``roof_weights`` ``[K]`` its frequencies.
        pitched: share of roofs with a ridge (two halves lit differently).
        debris: ``[4]`` colour mixed into rubble and debris (timber, insulation), ``debris_mix`` its share.
        debris_spread: scales the size and number of debris chunks around a damaged building.
        tarp: share of damaged, standing buildings whose roof is covered by a blue tarp after the strike.
    """

    soil: np.ndarray = field(default_factory=lambda: np.array([0.62, 0.55, 0.45, 0.60], np.float32))
    lawn: float = 0.0
    grass: np.ndarray = field(default_factory=lambda: np.array([0.20, 0.32, 0.14, 0.55], np.float32))
    tree_threshold: float = 0.66
    roofs: np.ndarray = field(default_factory=lambda: _RAQQA_ROOFS.copy())
    roof_weights: np.ndarray = field(default_factory=lambda: np.array([0.55, 0.25, 0.12, 0.08]))
    pitched: float = 0.0
    debris: np.ndarray = field(default_factory=lambda: np.array([0.55, 0.45, 0.35, 0.50], np.float32))
    debris_mix: float = 0.0
    debris_spread: float = 1.0
    tarp: float = 0.0

    @property
    def randomised(self) -> bool:
        """Whether this is not the default (Raqqa) style."""
        return self is not RAQQA


RAQQA = Style()
"""The default world: the Raqqa scenario as it has always been rendered."""


def draw_style(rng: np.random.Generator) -> Style:
    """A random world (module docstring); the same generator state gives the same style."""
    hue = rng.uniform(0, 1, 6)
    sat = rng.uniform(0.05, 0.45, 6)
    val = rng.uniform(0.22, 0.8, 6)
    roofs = np.array([_hsv_to_rgbn(h, s, v) for h, s, v in zip(hue, sat, val, strict=True)], np.float32)
    soil = np.clip(
        np.array([0.62, 0.55, 0.45, 0.60]) * rng.uniform(0.7, 1.15) + rng.normal(0, 0.04, 4), 0.1, 0.9
    )
    debris = np.clip(
        np.array([0.6, 0.5, 0.38, 0.5]) * rng.uniform(0.7, 1.3) + rng.normal(0, 0.05, 4), 0.1, 0.95
    )
    return Style(
        soil=soil.astype(np.float32),
        lawn=float(rng.uniform(0.0, 1.0)),
        grass=np.clip(np.array([0.2, 0.32, 0.14, 0.55]) * rng.uniform(0.75, 1.25, 4), 0.05, 0.9).astype(
            np.float32
        ),
        tree_threshold=float(rng.uniform(0.5, 0.72)),
        roofs=roofs,
        roof_weights=rng.dirichlet(np.ones(6)),
        pitched=float(rng.uniform(0.0, 1.0)),
        debris=debris.astype(np.float32),
        debris_mix=float(rng.uniform(0.2, 0.8)),
        debris_spread=float(rng.uniform(1.0, 2.5)),
        tarp=float(rng.uniform(0.0, 0.5)),
    )


def _hsv_to_rgbn(h: float, s: float, v: float) -> list[float]:
    """An RGB colour from hue, saturation, value, with NIR near the visible mean (roofing is not vegetation)."""
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return [r, g, b, (r + g + b) / 3 * 0.95]
