"""Building layout: real UNOSAT damage points of a contiguous area of Raqqa, plus intact buildings and streets.

Each UNOSAT point (near-duplicates under 4 m apart merged into the first) becomes a rectangular footprint centred on it, sized from the distance to its nearest
neighbour so neighbours do not overlap, and aligned to a street grid (with a little jitter). Intact buildings
fill the free plots of the same urban fabric (within 60 m of a damage point, off the streets). Streets are
placed where the damage points are sparsest so that few buildings stand in a street.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyproj import Transformer
from scipy.spatial import cKDTree
from shapely.geometry import Polygon

from experiments.scenario.extract import DamagePoints
from experiments.scenario.presets import Preset

__all__ = ["CRS", "Layout", "Streets", "build_layout", "footprint_polygon"]

CRS = "EPSG:32637"
_SOURCE_UNOSAT = "unosat"
_MIN_SEPARATION_M = 4.0  # UNOSAT points closer than this are one building (the later point is dropped)
_SOURCE_INTACT = "intact"


@dataclass(frozen=True)
class Streets:
    """A rotated street grid.

    Attributes:
        theta: grid rotation (radians, counter-clockwise from east).
        origin: (x, y) the grid's rotation origin.
        u_lines / v_lines: positions of street centre lines along the rotated axes, metres from the origin.
        u_widths / v_widths: street widths, metres.
    """

    theta: float
    origin: tuple[float, float]
    u_lines: np.ndarray
    v_lines: np.ndarray
    u_widths: np.ndarray
    v_widths: np.ndarray

    def to_grid(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World coordinates to rotated grid coordinates (u along the grid's x axis)."""
        c, s = np.cos(self.theta), np.sin(self.theta)
        dx, dy = x - self.origin[0], y - self.origin[1]
        return c * dx + s * dy, -s * dx + c * dy

    def street_distance(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Signed distance to the nearest street edge: negative inside a street, metres."""
        u, v = self.to_grid(x, y)
        best = np.full(np.shape(u), np.inf)
        for lines, widths, coord in ((self.u_lines, self.u_widths, u), (self.v_lines, self.v_widths, v)):
            if len(lines) == 0:
                continue
            idx = np.clip(np.searchsorted(lines, coord), 1, len(lines) - 1) if len(lines) > 1 else None
            candidates = [np.zeros_like(coord, dtype=int)] if idx is None else [idx - 1, idx]
            for i in candidates:
                best = np.minimum(best, np.abs(coord - lines[i]) - widths[i] / 2)
        return best


@dataclass(frozen=True)
class Layout:
    """Buildings and streets of a scenario, in EPSG:32637 metres.

    Attributes:
        ids: building ids (``U<fid>`` for UNOSAT points, ``I<n>`` for added intact buildings).
        x / y: footprint centres.
        half_w / half_h: footprint half-extents along the building's own axes.
        theta: footprint rotation, radians.
        height: building height, metres.
        source: ``unosat`` or ``intact``.
        fid: UNOSAT feature id (-1 for intact buildings).
        grades: ``[N, 5]`` UNOSAT grades (NaN rows for intact buildings).
        bounds: (xmin, ymin, xmax, ymax) of the imaged area, snapped to whole metres.
        streets: the street grid.
    """

    ids: np.ndarray
    x: np.ndarray
    y: np.ndarray
    half_w: np.ndarray
    half_h: np.ndarray
    theta: np.ndarray
    height: np.ndarray
    source: np.ndarray
    fid: np.ndarray
    grades: np.ndarray
    bounds: tuple[float, float, float, float]
    streets: Streets

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def area_m2(self) -> np.ndarray:
        return 4.0 * self.half_w * self.half_h

    def corners(self, idx: np.ndarray | None = None) -> np.ndarray:
        """Footprint corners ``[n, 4, 2]`` of buildings ``idx`` (all when None), counter-clockwise."""
        idx = np.arange(len(self.ids)) if idx is None else np.asarray(idx, dtype=np.int64)
        c, s = np.cos(self.theta[idx])[:, None], np.sin(self.theta[idx])[:, None]
        lx = np.array([-1.0, 1.0, 1.0, -1.0])[None, :] * self.half_w[idx, None]
        ly = np.array([-1.0, -1.0, 1.0, 1.0])[None, :] * self.half_h[idx, None]
        return np.stack([self.x[idx, None] + c * lx - s * ly, self.y[idx, None] + s * lx + c * ly], axis=-1)


def footprint_polygon(layout: Layout, i: int) -> Polygon:
    """The footprint of building ``i`` as a shapely polygon."""
    return Polygon(layout.corners(np.array([i]))[0])


def _choose_area(xy: np.ndarray, preset: Preset, rng: np.random.Generator) -> np.ndarray:
    """Indices of the points in a contiguous square holding about ``preset.damage_points`` points."""
    if preset.damage_points is None or preset.damage_points >= len(xy):
        return np.arange(len(xy))
    k = preset.damage_points
    tree = cKDTree(xy)
    candidates = rng.choice(len(xy), size=24, replace=False)
    radii = tree.query(xy[candidates], k=k, p=np.inf)[0][:, -1]
    # prefer dense places, but not always the densest one: pick among the 6 densest candidates
    centre = xy[candidates[rng.choice(np.argsort(radii)[:6])]]
    cheb = np.max(np.abs(xy - centre), axis=1)
    radius = np.sort(cheb)[k - 1]
    return np.flatnonzero(cheb <= radius)


def _distinct(xy: np.ndarray, min_dist: float) -> np.ndarray:
    """Indices of the points kept when a point closer than ``min_dist`` to an earlier kept point is dropped."""
    pairs = cKDTree(xy).query_pairs(min_dist, output_type="ndarray")
    drop = np.zeros(len(xy), bool)
    for a, b in sorted(map(tuple, pairs)):
        if not drop[a]:
            drop[b] = True
    return np.flatnonzero(~drop)


def _street_lines(coord: np.ndarray, lo: float, hi: float, rng: np.random.Generator) -> np.ndarray:
    """Street positions between ``lo`` and ``hi`` at 55-95 m spacing, each nudged to the sparsest spot."""
    bins = np.arange(np.floor(lo) - 100, np.ceil(hi) + 101, 1.0)
    hist = np.histogram(coord, bins=bins)[0].astype(float)
    density = np.convolve(hist, np.ones(11), mode="same")
    lines = []
    pos = lo - 100 + rng.uniform(0, 60)
    while pos < hi + 100:
        window = (bins[:-1] >= pos - 18) & (bins[:-1] <= pos + 18)
        idx = np.flatnonzero(window)
        best = idx[np.argmin(density[idx] + rng.uniform(0, 0.1, len(idx)))]
        lines.append(bins[best] + 0.5)
        pos += rng.uniform(55, 95)
    return np.asarray(lines)


def build_layout(points: DamagePoints, preset: Preset, rng: np.random.Generator) -> Layout:
    """Build the layout of a preset from the UNOSAT points."""
    to_utm = Transformer.from_crs("EPSG:4326", CRS, always_xy=True)
    px, py = to_utm.transform(points.lon, points.lat)
    xy_all = np.column_stack([px, py])
    chosen = _choose_area(xy_all, preset, rng)
    chosen = chosen[_distinct(xy_all[chosen], _MIN_SEPARATION_M)]
    dxy = xy_all[chosen]

    theta0 = float(rng.normal(0.05, 0.03))
    xmin, ymin = dxy.min(axis=0) - 12
    xmax, ymax = dxy.max(axis=0) + 12
    origin = (float((xmin + xmax) / 2), float((ymin + ymax) / 2))
    c, s = np.cos(theta0), np.sin(theta0)
    du, dv = (
        c * (dxy[:, 0] - origin[0]) + s * (dxy[:, 1] - origin[1]),
        -s * (dxy[:, 0] - origin[0]) + c * (dxy[:, 1] - origin[1]),
    )
    u_lines = _street_lines(du, du.min(), du.max(), rng)
    v_lines = _street_lines(dv, dv.min(), dv.max(), rng)
    streets = Streets(
        theta=theta0,
        origin=origin,
        u_lines=u_lines,
        v_lines=v_lines,
        u_widths=np.where(rng.random(len(u_lines)) < 0.25, 16.0, 9.0),
        v_widths=np.where(rng.random(len(v_lines)) < 0.25, 16.0, 9.0),
    )

    # intact buildings: a jittered grid over the urban fabric, off the streets, away from damage points
    spacing = 15.0
    gx, gy = np.meshgrid(np.arange(xmin, xmax, spacing), np.arange(ymin, ymax, spacing))
    cand = np.column_stack([gx.ravel(), gy.ravel()]) + rng.uniform(-3, 3, (gx.size, 2))
    dmg_tree = cKDTree(dxy)
    dist = dmg_tree.query(cand)[0]
    ok = (dist > 11.0) & (dist < 60.0) & (streets.street_distance(cand[:, 0], cand[:, 1]) > 5.0)
    cand = cand[ok]
    n_intact = min(len(cand), int(round(preset.intact_ratio * len(dxy))))
    intact_xy = cand[np.sort(rng.choice(len(cand), size=n_intact, replace=False))]

    xy = np.vstack([dxy, intact_xy])
    n = len(xy)
    nn = cKDTree(xy).query(xy, k=2)[0][:, 1]
    # half size from the nearest neighbour (squares of half size 0.35 d at distance d do not overlap)
    half = np.clip(0.35 * nn, 2.6, 11.0) * rng.uniform(0.9, 1.0, n)
    aspect = rng.uniform(0.8, 1.25, n)
    half_w, half_h = half * np.sqrt(aspect), half / np.sqrt(aspect)
    scale = np.minimum(1.0, 0.38 * nn / np.maximum(half_w, half_h))
    half_w, half_h = half_w * scale, half_h * scale
    floors = rng.choice([1, 2, 2, 3, 3, 4, 5], size=n)
    height = floors * 3.2 + rng.uniform(0.3, 1.2, n)

    n_dmg = len(dxy)
    fids = points.fid[chosen]
    ids = np.array([f"U{f:05d}" for f in fids] + [f"I{j + 1:05d}" for j in range(n_intact)], dtype=object)
    grades = np.vstack([points.grades[chosen], np.full((n_intact, points.grades.shape[1]), np.nan)])
    margin = preset.margin_m
    # whole metres, with width and height multiples of 3 m so 0.5 m and 0.6 m grids both fit exactly
    bx0, by1 = np.floor(xy[:, 0].min() - margin), np.ceil(xy[:, 1].max() + margin)
    span_x = 3 * np.ceil((np.ceil(xy[:, 0].max() + margin) - bx0) / 3)
    span_y = 3 * np.ceil((by1 - np.floor(xy[:, 1].min() - margin)) / 3)
    bounds = (float(bx0), float(by1 - span_y), float(bx0 + span_x), float(by1))
    return Layout(
        ids=ids,
        x=xy[:, 0].copy(),
        y=xy[:, 1].copy(),
        half_w=half_w,
        half_h=half_h,
        theta=theta0 + rng.normal(0, 0.03, n),
        height=height,
        source=np.array([_SOURCE_UNOSAT] * n_dmg + [_SOURCE_INTACT] * n_intact, dtype=object),
        fid=np.concatenate([fids, np.full(n_intact, -1)]),
        grades=grades,
        bounds=bounds,
        streets=streets,
    )
