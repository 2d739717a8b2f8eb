"""Render one tile of one date: ground, streets, trees, vehicles, buildings (walls, roofs, shadows), damage,
rubble, clearing, then the date's nuisances (misregistration, resampling, haze, clouds and their shadows,
colour balance, blur, noise, swath edge).

Geometry is rasterised per tile with ``rasterio.features.rasterize`` from vectorised shapely arrays; textures
come from world-anchored noise (``texture``), so a building looks the same on every date except for what the
date changes. Reflectances are float32 in [0, 1], quantised to uint8 1..255 (0 is nodata).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine
from rasterio.features import rasterize
from scipy import ndimage

from experiments.scenario.acquisition import Acquisition
from experiments.scenario.layout import Layout
from experiments.scenario.style import RAQQA, Style
from experiments.scenario.texture import fbm, value_noise
from experiments.scenario.timing import Truth

__all__ = [
    "BuildingLooks",
    "TileGround",
    "TileResult",
    "build_looks",
    "cloud_threshold",
    "prepare_tile",
    "render_tile",
]

BASE_RES = 0.5
MARGIN = 8  # pixels of margin rendered around a tile (misregistration shifts up to 4 px)
_SOIL = np.array([0.62, 0.55, 0.45, 0.60], np.float32)
_ASPHALT = np.array([0.36, 0.36, 0.37, 0.34], np.float32)
_SIDEWALK = np.array([0.58, 0.56, 0.53, 0.55], np.float32)
_CLEARED = np.array([0.70, 0.64, 0.55, 0.64], np.float32)
_HAZE = np.array([0.72, 0.75, 0.82, 0.66], np.float32)
_CLOUD = np.array([0.93, 0.93, 0.95, 0.90], np.float32)
_SHADOW_TINT = np.array([0.92, 0.97, 1.12, 0.85], np.float32)
_CAR_COLOURS = np.array(
    [
        [0.85, 0.85, 0.86, 0.8],
        [0.62, 0.63, 0.65, 0.6],
        [0.12, 0.12, 0.13, 0.12],
        [0.62, 0.12, 0.1, 0.4],
        [0.12, 0.22, 0.5, 0.3],
        [0.8, 0.78, 0.7, 0.75],
    ],
    np.float32,
)
_RING = 16
_TARP = np.array([0.16, 0.3, 0.72, 0.35], np.float32)  # the blue tarps on damaged roofs after a disaster


@dataclass(frozen=True)
class BuildingLooks:
    """Static appearance of every building, drawn once per scenario.

    Attributes:
        roof: ``[N, 4]`` roof reflectance (R, G, B, NIR).
        new_roof: ``[N, 4]`` roof reflectance after rebuilding.
        hole: ``[N, RING, 2]`` damage outline (local offsets from the building centre, metres).
        rubble: ``[N, RING, 2]`` collapsed outline with debris spilling out (absolute metres).
        tanks: ``[N, 3, 4, 2]`` rooftop objects (local offsets), ``tank_on`` ``[N, 3]`` which exist,
            ``tank_dark`` ``[N, 3]`` dark or white.
        debris: ``[N, 6, 4, 2]`` debris chunks around a damaged building (local offsets).
        radius: ``[N]`` bounding radius of rubble and footprint, metres.
        reroof_gap: ``[N]`` date index from which an *intact* building shows a new roof or a tarp (T = never):
            a visible change that is not damage.
        craters: ``[M, RING, 2]`` strike craters on open ground (absolute metres), and ``crater_gap`` ``[M]``
            the gap in which each appears (a change no building owns: a trap for naive change detection).
        style: the world's look (:mod:`experiments.scenario.style`); ``pitched`` ``[N]`` which roofs have a
            ridge and ``tarp`` ``[N]`` which damaged roofs get a tarp (all False in the default style).
    """

    roof: np.ndarray
    new_roof: np.ndarray
    hole: np.ndarray
    rubble: np.ndarray
    tanks: np.ndarray
    tank_on: np.ndarray
    tank_dark: np.ndarray
    debris: np.ndarray
    radius: np.ndarray
    reroof_gap: np.ndarray
    craters: np.ndarray
    crater_gap: np.ndarray
    style: Style = RAQQA
    pitched: np.ndarray | None = None
    tarp: np.ndarray | None = None


def _squares(centres: np.ndarray, half: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Squares ``[..., 4, 2]`` around ``centres [..., 2]`` with half size ``half`` and rotation ``theta``."""
    base = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float)
    c, s = np.cos(theta)[..., None], np.sin(theta)[..., None]
    bx, by = base[:, 0] * half[..., None], base[:, 1] * half[..., None]
    return np.stack([c * bx - s * by, s * bx + c * by], axis=-1) + centres[..., None, :]


def build_looks(
    layout: Layout, truth: Truth, rng: np.random.Generator, style: Style = RAQQA
) -> BuildingLooks:
    """Draw the static look of every building (in ``style``'s world)."""
    n = len(layout)
    tint = rng.choice(len(style.roofs), size=n, p=style.roof_weights)
    palette = style.roofs
    roof = palette[tint] * rng.uniform(0.85, 1.12, (n, 1)).astype(np.float32)
    new_roof = np.clip(palette[1] * rng.uniform(1.0, 1.15, (n, 1)), 0, 1).astype(np.float32)

    c, s = np.cos(layout.theta), np.sin(layout.theta)
    angles = np.linspace(0, 2 * np.pi, _RING, endpoint=False)
    # damage: an irregular blob inside the roof covering damage_fraction of it
    area = layout.area_m2
    frac = np.where(truth.damage_fraction > 0, truth.damage_fraction, 0.3)
    r_hole = np.sqrt(frac * area / np.pi)
    offset_local = rng.uniform(-0.5, 0.5, (n, 2)) * np.column_stack([layout.half_w, layout.half_h])
    wobble = rng.uniform(0.6, 1.35, (n, _RING))
    hx = offset_local[:, 0:1] + r_hole[:, None] * wobble * np.cos(angles)
    hy = offset_local[:, 1:2] + r_hole[:, None] * wobble * np.sin(angles)
    hole = np.stack([c[:, None] * hx - s[:, None] * hy, s[:, None] * hx + c[:, None] * hy], axis=-1)

    # rubble: the footprint's outline pushed out irregularly, with a lobe of debris toward one side
    phi = angles[None, :]
    support = np.minimum(
        layout.half_w[:, None] / np.maximum(np.abs(np.cos(phi)), 1e-6),
        layout.half_h[:, None] / np.maximum(np.abs(np.sin(phi)), 1e-6),
    )
    spill_dir = rng.uniform(0, 2 * np.pi, (n, 1))
    lobe = np.clip(np.cos(phi - spill_dir), 0, None) ** 3 * rng.uniform(2.0, 6.0, (n, 1))
    rr = support * rng.uniform(0.9, 1.25, (n, _RING)) + lobe + 0.8
    rx, ry = rr * np.cos(phi), rr * np.sin(phi)
    rubble = np.stack(
        [
            layout.x[:, None] + c[:, None] * rx - s[:, None] * ry,
            layout.y[:, None] + s[:, None] * rx + c[:, None] * ry,
        ],
        axis=-1,
    )

    tank_local = (
        rng.uniform(-0.7, 0.7, (n, 3, 2)) * np.column_stack([layout.half_w, layout.half_h])[:, None, :]
    )
    tank_world = np.stack(
        [
            c[:, None] * tank_local[..., 0] - s[:, None] * tank_local[..., 1],
            s[:, None] * tank_local[..., 0] + c[:, None] * tank_local[..., 1],
        ],
        axis=-1,
    )
    tanks = _squares(tank_world, rng.uniform(0.4, 0.75, (n, 3)), np.repeat(layout.theta[:, None], 3, axis=1))
    tank_on = rng.random((n, 3)) < np.array([0.7, 0.45, 0.25])
    tank_dark = rng.random((n, 3)) < 0.4

    ang = rng.uniform(0, 2 * np.pi, (n, 6))
    dist = np.maximum(layout.half_w, layout.half_h)[:, None] + rng.uniform(-1.0, 3.5, (n, 6))
    debris = _squares(
        np.stack([dist * np.cos(ang), dist * np.sin(ang)], axis=-1) * style.debris_spread,
        rng.uniform(0.3, 0.8, (n, 6)) * style.debris_spread,
        ang,
    )
    radius = np.maximum(np.hypot(layout.half_w, layout.half_h), rr.max(axis=1)) + 5.0

    # a few intact buildings get a new roof or a tarp: change that is not damage
    t_count = int(truth.gap.max())
    reroof_gap = np.full(n, t_count, dtype=np.int64)
    recover = (truth.final_grade == "intact") & (rng.random(n) < 0.04)
    reroof_gap[recover] = rng.integers(1, max(2, t_count), recover.sum())

    # craters: about one per three damage points, in the street or yards, appearing when nearby strikes do
    unosat = np.flatnonzero(layout.source == "unosat")
    m = max(1, len(unosat) // 3)
    near = rng.choice(unosat, size=m) if len(unosat) else rng.integers(0, n, m)
    ang = rng.uniform(0, 2 * np.pi, m)
    dist = np.hypot(layout.half_w[near], layout.half_h[near]) + rng.uniform(3, 12, m)
    centre = np.column_stack([layout.x[near] + dist * np.cos(ang), layout.y[near] + dist * np.sin(ang)])
    radius_c = rng.uniform(1.2, 3.5, (m, 1)) * rng.uniform(0.8, 1.2, (m, _RING))
    craters = centre[:, None, :] + np.stack([radius_c * np.cos(angles), radius_c * np.sin(angles)], -1)
    crater_gap = np.clip(truth.gap[near] + rng.integers(-2, 3, m), 1, truth.gap.max())
    return BuildingLooks(
        roof=roof,
        new_roof=new_roof,
        hole=hole,
        rubble=rubble,
        tanks=tanks,
        tank_on=tank_on,
        tank_dark=tank_dark,
        debris=debris,
        radius=radius,
        reroof_gap=reroof_gap,
        craters=craters,
        crater_gap=crater_gap,
        style=style,
        pitched=rng.random(n) < style.pitched if style.randomised else None,
        tarp=rng.random(n) < style.tarp if style.randomised else None,
    )


@dataclass
class TileResult:
    """One rendered tile of one date on the date's output grid.

    Attributes:
        image: ``[bands, h, w]`` uint8, 0 = nodata.
        cloud: ``[h, w]`` uint8 mask, 255 = cloud.
        building_index: global indices of the buildings counted in this tile.
        pixels / cloud_pixels / nodata_pixels: footprint pixel counts per counted building.
    """

    image: np.ndarray
    cloud: np.ndarray
    building_index: np.ndarray
    pixels: np.ndarray
    cloud_pixels: np.ndarray
    nodata_pixels: np.ndarray


def _burn(shapes: list[tuple[object, int]], shape: tuple[int, int], transform: Affine) -> np.ndarray:
    if not shapes:
        return np.zeros(shape, np.int32)
    return rasterize(shapes, out_shape=shape, transform=transform, fill=0, dtype="int32", all_touched=False)


_Shape = dict[str, object] | None


def _polys(coords: np.ndarray) -> list[_Shape]:
    """GeoJSON-like polygons from rings ``[n, k, 2]`` (cheaper to rasterise than shapely objects)."""
    closed = np.concatenate([coords, coords[:, :1]], axis=1)
    return [{"type": "Polygon", "coordinates": [ring.tolist()]} for ring in closed]


def _hulls(a: np.ndarray, b: np.ndarray) -> list[_Shape]:
    """Convex hulls of the point sets ``a [n, k, 2]`` and ``b [n, k, 2]`` together (None where degenerate)."""
    hulls = shapely.convex_hull(shapely.multipoints(np.concatenate([a, b], axis=1)))
    coords = shapely.get_coordinates(hulls)
    ends = np.cumsum(shapely.get_num_coordinates(hulls))
    is_polygon = shapely.get_type_id(hulls) == 3
    out: list[_Shape] = []
    for ring, ok in zip(np.split(coords, ends[:-1]), is_polygon, strict=True):
        out.append({"type": "Polygon", "coordinates": [ring.tolist()]} if ok else None)
    return out


def _labelled(shapes: list[_Shape], values: np.ndarray) -> list[tuple[object, int]]:
    return [(g, int(v)) for g, v in zip(shapes, values, strict=True) if g is not None]


def _ones(shapes: list[_Shape]) -> list[tuple[object, int]]:
    return [(g, 1) for g in shapes if g is not None]


def _ground(style: Style, big: np.ndarray, fine: np.ndarray, veg: np.ndarray) -> np.ndarray:
    """Bare ground ``[4, h, w]``: soil, with patches of lawn in a style that has any."""
    soil = style.soil[:, None, None] * (0.82 + 0.36 * big)[None] * (0.93 + 0.14 * fine)[None]
    if style.lawn <= 0:
        return soil
    share = np.clip(style.lawn * 1.6 * (0.4 + veg), 0.0, 1.0)[None]
    grass = style.grass[:, None, None] * (0.85 + 0.3 * fine)[None]
    return (soil * (1 - share) + grass * share).astype(np.float32)


@dataclass
class TileGround:
    """What a tile shares across dates: its grid, the buildings reaching it, and the static ground layers.

    Attributes:
        col_m / row_m / width_m / height_m: the tile, metres from the scene's top-left corner.
        w / h: tile size in 0.5 m pixels (without margin); the layers below include ``MARGIN`` pixels around.
        xs / ys: pixel-centre coordinates; transform: the margin grid's affine transform.
        sel / corners / heights / fp_lab: buildings reaching the tile, their footprints, heights and the
            footprint label image (local index + 1) in the true frame.
        big / fine / mid / coarse / fine2 / inner: noise layers; gx / gy: coordinate grids.
        soil / asphalt / sidewalk / tree_col: colour layers ``[4, h, w]``; street / walk / trees: masks.
    """

    col_m: float
    row_m: float
    width_m: float
    height_m: float
    w: int
    h: int
    xs: np.ndarray
    ys: np.ndarray
    transform: Affine
    sel: np.ndarray
    corners: np.ndarray
    heights: np.ndarray
    fp_lab: np.ndarray
    big: np.ndarray
    fine: np.ndarray
    mid: np.ndarray
    coarse: np.ndarray
    inner: np.ndarray
    gx: np.ndarray
    gy: np.ndarray
    soil: np.ndarray
    asphalt: np.ndarray
    sidewalk: np.ndarray
    tree_col: np.ndarray
    street: np.ndarray
    walk: np.ndarray
    trees: np.ndarray


def prepare_tile(
    layout: Layout,
    looks: BuildingLooks,
    col_m: float,
    row_m: float,
    width_m: float,
    height_m: float,
    scene_key: int,
) -> TileGround:
    """Compute the date-independent layers of the tile whose top-left corner is ``(col_m, row_m)`` metres
    from the scene's top-left corner."""
    xmin, _, _, ymax = layout.bounds
    res = BASE_RES
    w, h = int(round(width_m / res)), int(round(height_m / res))
    wm, hm = w + 2 * MARGIN, h + 2 * MARGIN
    x0 = xmin + col_m - MARGIN * res
    y0 = ymax - row_m + MARGIN * res
    xs = x0 + (np.arange(wm) + 0.5) * res
    ys = y0 - (np.arange(hm) + 0.5) * res
    transform = Affine(res, 0, x0, 0, -res, y0)
    # buildings that can reach the tile (shadows and lean included)
    reach = looks.radius + layout.height * 3.5 + 4
    sel = np.flatnonzero(
        (layout.x + reach > x0)
        & (layout.x - reach < x0 + wm * res)
        & (layout.y + reach > y0 - hm * res)
        & (layout.y - reach < y0)
    )
    corners = layout.corners(sel)
    k = scene_key
    big = fbm(xs, ys, 90.0, k + 1, octaves=3)
    fine = value_noise(xs, ys, 0.5, k + 2)
    mid = value_noise(xs, ys, 2.0, k + 3)
    gx, gy = np.meshgrid(xs, ys)
    sd = layout.streets.street_distance(gx, gy).astype(np.float32)
    veg = fbm(xs, ys, 9.0, k + 4, octaves=3)
    canopy = value_noise(xs, ys, 1.5, k + 5)
    return TileGround(
        col_m=col_m,
        row_m=row_m,
        width_m=width_m,
        height_m=height_m,
        w=w,
        h=h,
        xs=xs,
        ys=ys,
        transform=transform,
        sel=sel,
        corners=corners,
        heights=layout.height[sel],
        fp_lab=_burn(_labelled(_polys(corners), np.arange(len(sel)) + 1), (hm, wm), transform),
        big=big,
        fine=fine,
        mid=mid,
        coarse=0.6 * value_noise(xs, ys, 1.1, k + 6) + 0.4 * value_noise(xs, ys, 0.6, k + 8),
        inner=value_noise(xs, ys, 0.75, k + 7),
        gx=gx,
        gy=gy,
        soil=_ground(looks.style, big, fine, veg),
        asphalt=_ASPHALT[:, None, None] * (0.92 + 0.16 * mid)[None] * (0.95 + 0.1 * fine)[None],
        sidewalk=_SIDEWALK[:, None, None] * (0.95 + 0.1 * fine)[None],
        tree_col=np.array([0.15, 0.27, 0.10, 0.45], np.float32)[:, None, None] * (0.7 + 0.6 * canopy)[None],
        street=sd < 0,
        walk=(sd >= 0) & (sd < 1.2),
        trees=(veg > looks.style.tree_threshold) & (sd > 0.8),
    )


def render_tile(
    layout: Layout,
    truth: Truth,
    looks: BuildingLooks,
    ground: TileGround,
    acq: Acquisition,
    date_index: int,
    cloud_threshold: float,
) -> TileResult:
    """Render one date of a prepared tile."""
    xmin, _, _, ymax = layout.bounds
    res = BASE_RES
    g = ground
    col_m, row_m, width_m, height_m = g.col_m, g.row_m, g.width_m, g.height_m
    w, h, xs, ys, transform = g.w, g.h, g.xs, g.ys, g.transform
    hm, wm = h + 2 * MARGIN, w + 2 * MARGIN
    sel, corners, heights = g.sel, g.corners, g.heights
    fine, mid, gx, gy, trees = g.fine, g.mid, g.gx, g.gy, g.trees
    t = date_index
    state = np.where(t < truth.gap[sel], 0, np.where(t >= truth.destroyed_gap[sel], 2, 1))
    cleared = (state == 2) & (t >= truth.cleared_gap[sel])
    rebuilt = (state >= 1) & (t >= truth.rebuilt_gap[sel])
    standing = (state < 2) | rebuilt

    # ---- ground: soil greened by the season, streets, sidewalks, trees ------------------------------------
    img = g.soil.copy()
    green = np.float32(acq.greenness)
    img[3] *= 1 + 0.25 * green * g.big
    img[1] *= 1 + 0.04 * green
    img = np.where(g.street[None], g.asphalt, img)
    img = np.where(g.walk[None], g.sidewalk, img)
    tree_col = g.tree_col.copy()
    tree_col[3] *= 0.8 + 0.6 * green
    img = np.where(trees[None], tree_col, img)

    # ---- strike craters on open ground: a dark pit in a ring of pale ejecta --------------------------------
    cc = looks.craters.mean(axis=1)
    shown = np.flatnonzero(
        (looks.crater_gap <= t)
        & (cc[:, 0] > xs[0] - 8)
        & (cc[:, 0] < xs[-1] + 8)
        & (cc[:, 1] > ys[-1] - 8)
        & (cc[:, 1] < ys[0] + 8)
    )
    if len(shown):
        rim = looks.craters[shown] * 1.6 - cc[shown, None, :] * 0.6
        ejecta = _burn(_ones(_polys(rim)), (hm, wm), transform) > 0
        img = np.where(ejecta[None], np.minimum(img * 1.15 + 0.05, 1.0), img)
        pit = _burn(_ones(_polys(looks.craters[shown])), (hm, wm), transform) > 0
        img = np.where(pit[None], _SOIL[:, None, None] * (0.25 + 0.25 * fine)[None], img)

    # ---- vehicles (different every date) ------------------------------------------------------------
    img = _vehicles(img, layout, acq, g)

    # ---- shadows: rubble heaps cast short ones first, so the rubble drawn next is not self-shadowed ------
    sv = np.array(acq.shadow_vector())
    ids = np.arange(len(sel)) + 1
    rubble_on = (state == 2) & ~cleared & ~rebuilt
    strength = np.float32(0.38 + 0.12 * (acq.haze > 0.1))
    if rubble_on.any():
        r = looks.rubble[sel[rubble_on]]
        low = _burn(_ones(_hulls(r, r + 1.3 * sv)), (hm, wm), transform) > 0
        img = np.where(low[None], img * strength * _SHADOW_TINT[:, None, None], img)

    # ---- rubble, cleared lots and debris (on the ground) ----------------------------------------------
    if rubble_on.any():
        lab = _burn(_labelled(_polys(looks.rubble[sel[rubble_on]]), ids[rubble_on]), (hm, wm), transform)
        m = lab > 0
        r_fine, r_mid = fine[m], mid[m]
        coarse = g.coarse[m]
        base_col = looks.roof[sel[lab[m] - 1]].T
        if looks.style.debris_mix > 0:
            base_col = (1 - looks.style.debris_mix) * base_col + looks.style.debris_mix * looks.style.debris[
                :, None
            ]
        rub = base_col * (0.55 + 0.6 * r_fine) * (0.8 + 0.3 * r_mid)
        rub = np.where(coarse < 0.36, rub * 0.4, rub)  # voids and gaps between collapsed slabs
        rub = np.where((coarse > 0.6) & (r_fine > 0.4), np.minimum(rub * 1.18, 1.0), rub)  # broken slabs
        img[:, m] = rub
    if cleared.any():
        lab = _burn(_labelled(_polys(looks.rubble[sel[cleared]]), ids[cleared]), (hm, wm), transform)
        m = lab > 0
        tracks = 0.96 + 0.05 * np.sin(gx[m] * 3.1 + gy[m] * 0.7)
        img[:, m] = _CLEARED[:, None] * (0.96 + 0.08 * fine[m]) * tracks
    damaged = (state == 1) & ~rebuilt
    if damaged.any():
        chunks = (
            looks.debris[sel[damaged]]
            + np.stack([layout.x[sel[damaged]], layout.y[sel[damaged]]], -1)[:, None, None, :]
        )
        n_chunks = chunks.shape[1]
        keep_chunk = np.arange(n_chunks)[None, :] < np.ceil(truth.damage_fraction[sel[damaged]] * 10)[:, None]
        geoms = _polys(chunks[keep_chunk])
        lab = _burn(_ones(geoms), (hm, wm), transform) > 0
        if looks.style.debris_mix > 0:
            chunk = looks.style.debris[:, None, None] * (0.7 + 0.6 * fine)[None]
            img = np.where(lab[None], chunk, img)
        else:
            img = np.where(lab[None], np.float32(0.5) * (0.7 + 0.6 * fine)[None] * np.float32(1.1), img)

    # ---- shadows of standing buildings and trees -----------------------------------------------------
    shapes: list[tuple[object, int]] = []
    if standing.any():
        c = corners[standing]
        shapes += _ones(_hulls(c, c + (heights[standing, None, None] * sv)))
    tree_shadow = ndimage.shift(trees.astype(np.float32), (-sv[1] * 4 / res, sv[0] * 4 / res), order=0) > 0.5
    shade = (_burn(shapes, (hm, wm), transform) > 0) | (tree_shadow & ~trees)
    img = np.where(shade[None], img * strength * _SHADOW_TINT[:, None, None], img)

    # ---- walls and roofs (leaning off-nadir) --------------------------------------------------------
    if standing.any():
        lv = np.array(acq.lean_vector())
        idx = np.flatnonzero(standing)
        base = corners[idx]
        lean = heights[idx, None, None] * lv
        top = base + lean
        wall_lab = _burn(_labelled(_hulls(base, top), ids[idx]), (hm, wm), transform)
        roof_lab = _burn(_labelled(_polys(top), ids[idx]), (hm, wm), transform)
        renewed = rebuilt | (t >= looks.reroof_gap[sel])
        roof_col = np.where(renewed[:, None], looks.new_roof[sel], looks.roof[sel])
        sunlit = float(np.dot(lv, -sv)) > 0
        m = (wall_lab > 0) & (roof_lab == 0)
        img[:, m] = roof_col[wall_lab[m] - 1].T * np.float32(0.78 if sunlit else 0.5) * (0.95 + 0.1 * fine[m])
        m = roof_lab > 0
        tex = (0.93 + 0.12 * fine[m]) * (0.96 + 0.08 * mid[m])
        img[:, m] = roof_col[roof_lab[m] - 1].T * tex
        if looks.pitched is not None:
            _pitch(img, roof_lab, m, layout, sel, idx, lean, gx, gy, looks.pitched, sv)
        # parapets: a darker rim where the roof label changes
        edge = np.zeros_like(m)
        edge[1:-1, 1:-1] = (
            (roof_lab[1:-1, 1:-1] != roof_lab[:-2, 1:-1])
            | (roof_lab[1:-1, 1:-1] != roof_lab[2:, 1:-1])
            | (roof_lab[1:-1, 1:-1] != roof_lab[1:-1, :-2])
            | (roof_lab[1:-1, 1:-1] != roof_lab[1:-1, 2:])
        )
        edge &= m
        img[:, edge] *= np.float32(0.8)
        # rooftop tanks
        tk = (
            looks.tanks[sel[idx]] + (np.stack([layout.x[sel[idx]], layout.y[sel[idx]]], -1)[:, None, None, :])
        )
        tk = tk + lean[:, None, :, :]
        on = looks.tank_on[sel[idx]] & ~damaged[idx, None]
        dark = looks.tank_dark[sel[idx]]
        tank_lab = _burn(_labelled(_polys(tk[on]), np.where(dark[on], 2, 1)), (hm, wm), transform)
        tank_lab = np.where(roof_lab > 0, tank_lab, 0)
        img[:, tank_lab == 1] = np.float32(0.9)
        img[:, tank_lab == 2] = np.float32(0.2)
        # strike damage: a broken hole with charred rim, only on the building's own roof
        hit = np.flatnonzero(damaged[idx])
        if len(hit):
            j = idx[hit]
            centres = np.stack([layout.x[sel[j]], layout.y[sel[j]]], -1)[:, None, :] + lean[hit]
            holes = looks.hole[sel[j]] + centres
            soot = looks.hole[sel[j]] * 1.45 + centres
            soot_lab = _burn(_labelled(_polys(soot), ids[j]), (hm, wm), transform)
            m = (soot_lab > 0) & (soot_lab == roof_lab)
            img[:, m] *= np.float32(0.55) * (0.8 + 0.4 * mid[m])
            hole_lab = _burn(_labelled(_polys(holes), ids[j]), (hm, wm), transform)
            m = (hole_lab > 0) & (hole_lab == roof_lab)
            inner = g.inner[m]
            img[:, m] = (
                np.float32(0.42)
                * (0.25 + 0.9 * inner * fine[m])[None]
                * np.array([1.0, 0.97, 0.92, 0.95], np.float32)[:, None]
            )

        if looks.tarp is not None:
            covered = damaged[idx] & looks.tarp[sel[idx]]
            if covered.any():
                cover = np.isin(roof_lab, ids[idx[covered]])
                img[:, cover] = _TARP[:, None] * (0.9 + 0.2 * fine[cover])

    illum = np.float32(0.78 + 0.3 * np.sin(np.radians(acq.sun_elevation)))
    img *= illum

    fp_lab = g.fp_lab

    # ---- misregistration, then the date's own grid ---------------------------------------------------
    dx, dy = acq.shift_px
    img = img[:, MARGIN + dy : MARGIN + dy + h, MARGIN - dx : MARGIN - dx + w]
    fp_lab = fp_lab[MARGIN : MARGIN + h, MARGIN : MARGIN + w]
    out_res = acq.resolution
    if abs(out_res - res) > 1e-9:
        ow, oh = int(round(width_m / out_res)), int(round(height_m / out_res))
        cy = (np.arange(oh) + 0.5) * out_res / res - 0.5
        cx = (np.arange(ow) + 0.5) * out_res / res - 0.5
        grid = np.meshgrid(cy, cx, indexing="ij")
        img = np.stack([ndimage.map_coordinates(b, grid, order=1, mode="nearest") for b in img])
        fp_lab = ndimage.map_coordinates(fp_lab, grid, order=0, mode="nearest")
    else:
        ow, oh = w, h
    ox = xmin + col_m + (np.arange(ow) + 0.5) * out_res
    oy = ymax - row_m - (np.arange(oh) + 0.5) * out_res

    image, cloud_mask, nodata = _atmosphere_and_sensor(
        img, layout, acq, ox, oy, cloud_threshold, col_m, row_m
    )

    counts = np.bincount(fp_lab.ravel(), minlength=len(sel) + 1)[1:]
    cloud_counts = np.bincount(fp_lab[cloud_mask > 0], minlength=len(sel) + 1)[1:]
    nodata_counts = np.bincount(fp_lab[nodata], minlength=len(sel) + 1)[1:]
    present = counts > 0
    return TileResult(
        image=image,
        cloud=cloud_mask,
        building_index=sel[present],
        pixels=counts[present],
        cloud_pixels=cloud_counts[present],
        nodata_pixels=nodata_counts[present],
    )


def _pitch(
    img: np.ndarray,
    roof_lab: np.ndarray,
    m: np.ndarray,
    layout: Layout,
    sel: np.ndarray,
    idx: np.ndarray,
    lean: np.ndarray,
    gx: np.ndarray,
    gy: np.ndarray,
    pitched: np.ndarray,
    sv: np.ndarray,
) -> None:
    """Shade one half of each pitched roof: a ridge along the building's long axis, the sun on one side."""
    local = roof_lab[m] - 1  # local index into sel (label = local index + 1)
    where = np.full(len(sel), -1)
    where[idx] = np.arange(len(idx))
    k = where[local]
    keep = (k >= 0) & pitched[sel[np.clip(local, 0, len(sel) - 1)]]
    if not keep.any():
        return
    b = sel[local[keep]]
    centre_x = layout.x[b] + lean[k[keep], 0, 0]
    centre_y = layout.y[b] + lean[k[keep], 0, 1]
    theta = layout.theta[b] + np.where(layout.half_w[b] >= layout.half_h[b], np.pi / 2, 0.0)
    side = np.cos(theta) * (gx[m][keep] - centre_x) + np.sin(theta) * (gy[m][keep] - centre_y)
    toward_sun = np.cos(theta) * -sv[0] + np.sin(theta) * -sv[1]
    facing_sun = (side > 0) == (toward_sun > 0)
    rows, cols = np.nonzero(m)
    img[:, rows[keep], cols[keep]] *= np.where(facing_sun, np.float32(1.0), np.float32(0.78))


def _vehicles(img: np.ndarray, layout: Layout, acq: Acquisition, g: TileGround) -> np.ndarray:
    """Parked and moving cars along the street edges, new positions on every date, with their shadows."""
    xs, ys, transform, fine = g.xs, g.ys, g.transform, g.fine
    hm, wm = len(ys), len(xs)
    res = BASE_RES
    col_m, row_m = g.col_m, g.row_m
    vrng = np.random.default_rng([acq.key, int(col_m), int(row_m)])
    n_cand = int(wm * hm * res * res / 60)
    cand = np.column_stack([vrng.uniform(xs[0], xs[-1], n_cand), vrng.uniform(ys[-1], ys[0], n_cand)])
    u, v = layout.streets.to_grid(cand[:, 0], cand[:, 1])
    csd = layout.streets.street_distance(cand[:, 0], cand[:, 1])
    keep = (csd < -0.9) & (csd > -3.6) & (vrng.random(n_cand) < 0.3)
    cand = cand[keep]
    if len(cand):
        # orient along the street: across-u distance small means the street runs along v
        du = np.min(np.abs(u[keep][:, None] - layout.streets.u_lines[None, :]), axis=1)
        dv = np.min(np.abs(v[keep][:, None] - layout.streets.v_lines[None, :]), axis=1)
        ang = layout.streets.theta + np.where(du < dv, np.pi / 2, 0.0)
        base = np.array([[-2.2, -0.9], [2.2, -0.9], [2.2, 0.9], [-2.2, 0.9]])
        rot = np.stack([np.cos(ang), -np.sin(ang), np.sin(ang), np.cos(ang)], axis=-1).reshape(-1, 2, 2)
        cars = np.einsum("kj,nij->nki", base, rot) + cand[:, None, :]
        colour_idx = vrng.integers(0, len(_CAR_COLOURS), len(cars))
        sv = np.array(acq.shadow_vector())
        car_shadow = _burn(_ones(_polys(cars + sv * 1.5)), (hm, wm), transform) > 0
        img = np.where(car_shadow[None], img * 0.5, img)
        lab = _burn(_labelled(_polys(cars), np.arange(len(cars)) + 1), (hm, wm), transform)
        m = lab > 0
        img[:, m] = _CAR_COLOURS[colour_idx[lab[m] - 1]].T * (0.9 + 0.2 * fine[m])
    return img


def _atmosphere_and_sensor(
    img: np.ndarray,
    layout: Layout,
    acq: Acquisition,
    ox: np.ndarray,
    oy: np.ndarray,
    cloud_threshold: float,
    col_m: float,
    row_m: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Haze, clouds and their shadows, then the sensor: colour balance, blur, noise, swath edge, uint8.

    Returns the image ``[bands, h, w]``, the cloud mask (255 = cloud) and the nodata mask, on the output grid.
    """
    oh, ow = len(oy), len(ox)
    # ---- atmosphere: haze, clouds and cloud shadows --------------------------------------------------
    haze = np.float32(acq.haze) * (0.5 + fbm(ox, oy, 400.0, acq.key * 3 + 1, octaves=2))
    img = img * (1 - haze)[None] + haze[None] * _HAZE[:, None, None]
    cloud = np.zeros((oh, ow), np.float32)
    if acq.cloud_cover > 0:
        thr = cloud_threshold
        cloud = np.clip((_cloud_field(ox, oy, acq.key) - thr) / 0.12, 0, 1)
        cs = np.array(acq.shadow_vector()) * 180.0
        shadow = np.clip((_cloud_field(ox - cs[0], oy - cs[1], acq.key) - thr) / 0.12, 0, 1)
        img = img * (1 - 0.55 * shadow)[None]
        puff = value_noise(ox, oy, 6.0, acq.key * 3 + 3)
        img = img * (1 - cloud)[None] + (cloud * (0.9 + 0.1 * puff))[None] * _CLOUD[:, None, None]

    # ---- sensor: colour balance, blur, noise, swath edge, quantisation --------------------------------
    gain = np.array(acq.gain, np.float32)[:, None, None]
    offset = np.array(acq.offset, np.float32)[:, None, None]
    img = img * gain + offset
    img = np.stack([ndimage.gaussian_filter(b, acq.blur, mode="nearest") for b in img])
    nrng = np.random.default_rng([acq.key, int(col_m), int(row_m), 7])
    img = img + nrng.normal(0, acq.noise, img.shape).astype(np.float32)
    image = np.clip(np.rint(img * 255), 1, 255).astype(np.uint8)[: acq.bands]
    nodata = np.zeros((oh, ow), bool)
    if acq.swath is not None:
        nodata = _swath_mask(layout, acq, ox, oy)
        image[:, nodata] = 0
    cloud_mask = np.where((cloud > 0.5) & ~nodata, 255, 0).astype(np.uint8)
    return image, cloud_mask, nodata


def _cloud_field(x: np.ndarray, y: np.ndarray, key: int) -> np.ndarray:
    """Cloud density: broad billows plus a little fine structure at the edges."""
    return fbm(x, y, 240.0, key * 3 + 2, octaves=3) + 0.06 * value_noise(x, y, 14.0, key * 3 + 4)


def cloud_threshold(layout: Layout, acq: Acquisition) -> float:
    """Noise level above which a share ``cloud_cover`` of the scene is cloud (from a coarse scene sample)."""
    xmin, ymin, xmax, ymax = layout.bounds
    sx = np.linspace(xmin, xmax, 160)
    sy = np.linspace(ymax, ymin, 160)
    sample = _cloud_field(sx, sy, acq.key)
    return float(np.quantile(sample, 1 - acq.cloud_cover)) if acq.cloud_cover > 0 else 1.0


def _swath_mask(layout: Layout, acq: Acquisition, ox: np.ndarray, oy: np.ndarray) -> np.ndarray:
    """Pixels beyond the swath edge (a straight line cutting off a share of the scene)."""
    assert acq.swath is not None
    angle, share = acq.swath
    xmin, ymin, xmax, ymax = layout.bounds
    cx, cy = (xmin + xmax) / 2, (ymin + ymax) / 2
    half = 0.5 * (abs(np.cos(angle)) * (xmax - xmin) + abs(np.sin(angle)) * (ymax - ymin))
    proj = np.cos(angle) * (ox[None, :] - cx) + np.sin(angle) * (oy[:, None] - cy)
    return proj > half * (1 - 2 * share)
