"""Co-registration of a timeline: one whole-pixel shift per date that lines it up with the other dates.

Images of one city from different passes disagree on where things are by a few metres: orthorectification
against different elevation models, off-nadir views, and the georeferencing of each product. At 0.5 m a 2 m
error is 4 pixels, and two dates can disagree by twice that. Chips are cut on one grid around the footprints,
so for a 25 m² building such a date looks as if the building had moved or changed: the network and the
baseline compare dates pixel by pixel, and small buildings get dated at the acquisition that happens to be
shifted.

:func:`estimate_registration` finds, for every date, the shift within ``radius`` pixels that best matches it
to a reference date (the one with the most clear chips): the mean normalised cross-correlation of gradient
magnitudes (edges survive changes of sun, haze and sensor better than brightness), summed over up to ``sample``
buildings clear on both dates. Destroyed buildings are a minority and their surroundings still match, so the
shift of the whole acquisition is robust to the damage it is meant to reveal. The shifts are then centred on
their median, taken as the footprints' frame (misregistration has no common direction across passes).
:func:`apply_offsets` moves a chip stack onto that frame (edges repeated, never wrapped).

Registration is a property of the chip cache, kept in ``registration.json`` beside the chips: `striketracker
ingest` estimates and reports it, :meth:`model.datamodule.ChipArrays.open` estimates it when it is missing or
stale, and applies it whenever chips are read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["REGISTRATION_FILE", "Registration", "apply_offsets", "estimate_registration", "load_or_estimate"]

REGISTRATION_FILE = "registration.json"
CLEAR = 0.95
"""A chip counts as clear for matching when at least this share of it is valid."""
MIN_MATCHES = 20
"""Dates with fewer clear buildings in common with the reference are left unshifted."""


@dataclass(frozen=True)
class Registration:
    """Per-date shifts of a timeline.

    Attributes:
        offsets: int ``[T, 2]`` (rows, cols): the content of date t that belongs at pixel p of the common frame
            is found at p + offset in its chip (positive rows = south, positive cols = east).
        scores: ``[T]`` mean normalised cross-correlation with the reference at the chosen shift (NaN where
            the date was left unshifted).
        matched: ``[T]`` buildings the shift of each date was estimated from.
        reference: index of the reference date.
        fingerprint: the chip cache it belongs to.
    """

    offsets: np.ndarray = field(repr=False)
    scores: np.ndarray = field(repr=False)
    matched: np.ndarray = field(repr=False)
    reference: int = 0
    fingerprint: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "reference": self.reference,
            "offsets_px": self.offsets.astype(int).tolist(),
            "scores": [None if np.isnan(s) else round(float(s), 4) for s in self.scores],
            "matched": self.matched.astype(int).tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Registration:
        offsets = np.asarray(data["offsets_px"], dtype=np.int64)
        if offsets.ndim != 2 or offsets.shape[1] != 2:
            raise ValueError(f"offsets_px must be a list of [rows, cols] pairs, got shape {offsets.shape}")
        scores = np.array([np.nan if s is None else float(s) for s in data["scores"]])
        return cls(
            offsets=offsets,
            scores=scores,
            matched=np.asarray(data["matched"], dtype=np.int64),
            reference=int(data["reference"]),
            fingerprint=str(data["fingerprint"]),
        )

    @property
    def is_identity(self) -> bool:
        return not self.offsets.any()


def _edges(chips: np.ndarray) -> torch.Tensor:
    """Standardised gradient magnitude of the band mean, ``[N, H, W]`` from uint8 ``[N, C, H, W]``."""
    grey = torch.from_numpy(np.asarray(chips[:, :3], dtype=np.float32).mean(axis=1))
    gy, gx = torch.gradient(grey, dim=(-2, -1))
    mag = torch.hypot(gy, gx)
    mean = mag.mean(dim=(-2, -1), keepdim=True)
    std = mag.std(dim=(-2, -1), keepdim=True).clamp_min(1e-3)
    return (mag - mean) / std


def estimate_registration(
    chips: np.ndarray,
    valid: np.ndarray,
    *,
    radius: int = 10,
    sample: int = 400,
    seed: int = 0,
    fingerprint: str = "",
) -> Registration:
    """Per-date whole-pixel shifts of chip stacks ``[N, T, C, H, W]`` with validity ``[N, T]`` (module docstring)."""
    n, t, _, h, w = chips.shape
    offsets = np.zeros((t, 2), dtype=np.int64)
    scores = np.full(t, np.nan)
    matched = np.zeros(t, dtype=np.int64)
    if n == 0 or t == 0 or h <= 2 * radius + 4 or w <= 2 * radius + 4:
        return Registration(offsets, scores, matched, 0, fingerprint)
    clear = np.asarray(valid) >= CLEAR
    reference = int(np.argmax(clear.sum(axis=0)))
    rng = np.random.default_rng(seed)
    for date in range(t):
        both = np.flatnonzero(clear[:, date] & clear[:, reference])
        matched[date] = len(both)
        if date == reference or len(both) < MIN_MATCHES:
            continue
        rows = np.sort(rng.choice(both, size=min(sample, len(both)), replace=False))
        ref = _edges(np.asarray(chips[rows, reference]))[:, radius : h - radius, radius : w - radius]
        moving = _edges(np.asarray(chips[rows, date]))
        # one correlation per building (grouped convolution), summed over buildings
        corr = F.conv2d(moving[None], ref[:, None], groups=len(rows))[0]  # [n, 2r + 1, 2r + 1]
        total = corr.mean(dim=0) / ref[0].numel()
        best = int(torch.argmax(total))
        offsets[date] = (best // total.shape[1] - radius, best % total.shape[1] - radius)
        scores[date] = float(total.flatten()[best])
    scores[reference] = 1.0
    centre = np.round(np.median(offsets, axis=0)).astype(np.int64)
    return Registration(offsets - centre, scores, matched, reference, fingerprint)


def apply_offsets(stack: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """One building's chips ``[T, C, H, W]`` moved onto the common frame (edge pixels repeated)."""
    if not offsets.any():
        return stack
    pad = int(np.abs(offsets).max())
    h, w = stack.shape[-2:]
    padded = np.pad(stack, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="edge")
    out = np.empty_like(stack)
    for date, (dy, dx) in enumerate(offsets.tolist()):
        out[date] = padded[date, :, pad + dy : pad + dy + h, pad + dx : pad + dx + w]
    return out


def load_or_estimate(cache: Path, chips: np.ndarray, valid: np.ndarray, fingerprint: str) -> Registration:
    """The cache's ``registration.json`` when it belongs to this fingerprint, else estimated and written.

    A stale or unreadable file is replaced (it is derived data); a read-only cache keeps the estimate in memory.
    """
    path = Path(cache) / REGISTRATION_FILE
    if path.exists():
        try:
            found = Registration.from_dict(json.loads(path.read_text()))
            if found.fingerprint == fingerprint and len(found.offsets) == chips.shape[1]:
                return found
        except (ValueError, KeyError, TypeError):
            pass
    registration = estimate_registration(chips, valid, fingerprint=fingerprint)
    tmp = path.with_name(f".{REGISTRATION_FILE}.{os.getpid()}")
    try:  # atomic: another process may open the same cache now
        tmp.write_text(json.dumps(registration.as_dict(), indent=1))
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
    return registration
