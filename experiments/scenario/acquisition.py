"""Per-date imaging conditions: sensor, sun, view angle, misregistration, radiometry, haze, clouds, swath edge.

These are the nuisances that make naive image differencing fail: each date differs in illumination and colour
balance, haze, shadow direction and length (sun), building lean (off-nadir view), a shift of a few pixels
(misregistration), clouds with their shadows, and a couple of dates come from other sensors (3 bands, or 0.6 m).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from experiments.scenario.presets import Preset

__all__ = ["Acquisition", "draw_acquisitions"]

_LATITUDE = 35.95


@dataclass(frozen=True)
class Acquisition:
    """Imaging conditions of one date.

    Attributes:
        date: acquisition date.
        sensor: sensor name written to the manifest.
        bands: 4 (R, G, B, NIR) or 3 (R, G, B).
        resolution: metres per pixel.
        sun_elevation / sun_azimuth: degrees (azimuth clockwise from north).
        view_angle / view_azimuth: off-nadir angle and azimuth, degrees.
        shift_px: (dx, dy) misregistration in whole output pixels (content shifted east / north).
        gain: per-band multiplicative colour balance (R, G, B, NIR).
        offset: additive per-band offset (reflectance units).
        haze: haze strength 0..1.
        cloud_cover: target cloud fraction 0..1.
        greenness: vegetation vigour 0..1 (season).
        noise: sensor noise standard deviation (reflectance units).
        blur: point-spread Gaussian sigma, pixels.
        swath: None, or (angle radians, offset 0..1) of a swath edge beyond which the image is nodata.
        key: integer key of this date's random fields.
    """

    date: dt.date
    sensor: str
    bands: int
    resolution: float
    sun_elevation: float
    sun_azimuth: float
    view_angle: float
    view_azimuth: float
    shift_px: tuple[int, int]
    gain: tuple[float, float, float, float]
    offset: tuple[float, float, float, float]
    haze: float
    cloud_cover: float
    greenness: float
    noise: float
    blur: float
    swath: tuple[float, float] | None
    key: int

    def shadow_vector(self) -> tuple[float, float]:
        """Ground offset (dx, dy) per metre of height of the shadow cast away from the sun."""
        length = 1.0 / np.tan(np.radians(self.sun_elevation))
        az = np.radians(self.sun_azimuth)
        return float(-np.sin(az) * length), float(-np.cos(az) * length)

    def lean_vector(self) -> tuple[float, float]:
        """Image offset (dx, dy) per metre of height of a roof seen off-nadir (relief displacement)."""
        length = np.tan(np.radians(self.view_angle))
        az = np.radians(self.view_azimuth)
        return float(-np.sin(az) * length), float(-np.cos(az) * length)


def _sun_elevation(date: dt.date, hour_angle_deg: float) -> float:
    doy = date.timetuple().tm_yday
    decl = np.radians(23.44 * np.sin(2 * np.pi * (doy - 81) / 365.0))
    lat, h = np.radians(_LATITUDE), np.radians(hour_angle_deg)
    return float(np.degrees(np.arcsin(np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.cos(h))))


def draw_acquisitions(
    preset: Preset, dates: list[dt.date], seed: int, rng: np.random.Generator
) -> list[Acquisition]:
    """Draw the imaging conditions of every date (deterministic by ``rng``)."""
    n = len(dates)
    inner = np.arange(2, n - 2)
    special = rng.choice(inner, size=2, replace=False) if len(inner) >= 2 else np.array([], dtype=int)
    cloudy = set(rng.choice(np.arange(1, n - 1), size=max(1, round(0.4 * (n - 2))), replace=False).tolist())
    swath_date = int(rng.choice(np.arange(1, n - 1))) if n > 2 else -1
    out = []
    for i, date in enumerate(dates):
        sensor, bands, res = "WV3-sim", 4, preset.resolution
        if len(special) and i == special[0]:
            sensor, bands = "GE1-rgb", 3
        elif len(special) > 1 and i == special[1]:
            sensor, res = "PHR-0.6m", 0.6
        hour_angle = rng.uniform(-32, -12)  # about 10:00-11:00 local solar time
        doy = date.timetuple().tm_yday
        season = 0.5 + 0.5 * np.cos(2 * np.pi * (doy - 90) / 365.0)  # green in spring, dry in autumn
        tone = rng.normal(0, 0.06)
        out.append(
            Acquisition(
                date=date,
                sensor=sensor,
                bands=bands,
                resolution=res,
                sun_elevation=_sun_elevation(date, hour_angle),
                sun_azimuth=float(180 + hour_angle * 1.6 + rng.normal(0, 4)),
                view_angle=float(rng.uniform(2, 24)),
                view_azimuth=float(rng.uniform(0, 360)),
                shift_px=(int(rng.integers(-4, 5)), int(rng.integers(-4, 5))),
                gain=tuple(
                    float(v)
                    for v in rng.normal(1.0, 0.08, 1)[0] + rng.normal(0, 0.04, 4) + [tone, 0, -tone, 0]
                ),  # type: ignore[arg-type]
                offset=tuple(float(v) for v in rng.normal(0, 0.02, 4)),  # type: ignore[arg-type]
                haze=float(rng.choice([rng.uniform(0.0, 0.08), rng.uniform(0.1, 0.3)], p=[0.7, 0.3])),
                cloud_cover=float(rng.uniform(0.08, 0.4)) if i in cloudy else 0.0,
                greenness=float(np.clip(season + rng.normal(0, 0.05), 0, 1)),
                noise=float(rng.uniform(0.008, 0.022)),
                blur=float(rng.uniform(0.45, 1.0)),
                swath=(float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0.1, 0.25)))
                if i == swath_date
                else None,
                key=int(seed * 1000 + i + 1),
            )
        )
    return out
