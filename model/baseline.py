"""The non-learned baseline: per-date change statistics of the footprint plus an exact change-point search.

In the spirit of pixel-wise t-tests on imagery time series (e.g. the Pixel-Wise T-Test damage mapping of
Scher and Van Den Hoek), each valid chip is summarised by the footprint's per-band mean and spread expressed in
units of the surrounding ground's statistics (so per-date gain, offset and haze cancel). A building's series of
these statistics is then scored for every gap g with a two-segment Gaussian model, means fitted per segment
and one variance per statistic (the classic likelihood-ratio change-point test):

    log L(g) = -(n / 2) * sum_f log(RSS_f(g) / n) - penalty * [0 < g < T],

with a BIC penalty for the extra segment. "No change" (one segment) is shared by gap T (never damaged) and gap 0
(damaged before the first image), split by a fixed prior. The output has the model's type: probabilities over
gaps 0..T per building.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from model.datamodule import ChipArrays

__all__ = ["ChangePointBaseline"]


@dataclass(frozen=True)
class ChangePointBaseline:
    """Footprint change statistics + change-point search (module docstring).

    Attributes:
        min_valid: a chip counts as observed when at least this fraction of it is valid.
        downsample: chips are average-pooled by this factor first (speed).
        prior_damaged_at_start: share of the "no change" mass given to gap 0 instead of gap T.
        penalty_scale: multiplies the BIC penalty ``(F / 2 + 1) log n`` of a change.
        variance_floor: added to each statistic's residual variance, relative to its total variance.
        bands: how many leading bands to use; 3 (R, G, B) is present for every sensor, while NIR is zero for
            RGB-only dates and would look like a change.
    """

    min_valid: float = 0.5
    downsample: int = 2
    prior_damaged_at_start: float = 0.1
    penalty_scale: float = 1.0
    variance_floor: float = 0.05
    bands: int = 3

    def statistics(self, chips: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Per-date footprint statistics ``[B, T, 2C]`` from uint8 chips ``[B, T, C, H, W]`` and masks ``[B, H, W]``."""
        x = torch.from_numpy(np.ascontiguousarray(chips[:, :, : self.bands])).float()
        b, t, c, h, w = x.shape
        m = torch.from_numpy(np.ascontiguousarray(mask)).float()[:, None] / 255.0
        if self.downsample > 1:
            x = F.avg_pool2d(x.reshape(b * t, c, h, w), self.downsample).reshape(
                b, t, c, *_pooled(h, w, self)
            )
            m = F.avg_pool2d(m, self.downsample)
        inside = (m > 0.5).float()[:, None]  # [B, 1, 1, h, w]
        ground = 1.0 - inside
        n_in = inside.sum(dim=(-1, -2)).clamp_min(1.0)
        n_gr = ground.sum(dim=(-1, -2)).clamp_min(1.0)
        mean_in = (x * inside).sum(dim=(-1, -2)) / n_in
        mean_gr = (x * ground).sum(dim=(-1, -2)) / n_gr
        var_in = ((x - mean_in[..., None, None]) ** 2 * inside).sum(dim=(-1, -2)) / n_in
        var_gr = ((x - mean_gr[..., None, None]) ** 2 * ground).sum(dim=(-1, -2)) / n_gr
        scale = var_gr.sqrt().clamp_min(2.0)
        stats = torch.cat([(mean_in - mean_gr) / scale, var_in.sqrt() / scale], dim=-1)
        return stats.numpy().astype(np.float64)

    def log_likelihood(self, stats: np.ndarray, observed: np.ndarray) -> np.ndarray:
        """Change-point log-likelihood of every gap ``[B, T + 1]`` from statistics ``[B, T, F]``.

        Args:
            stats: per-date statistics.
            observed: bool ``[B, T]``; unobserved dates carry no evidence.
        """
        w = observed.astype(np.float64)[..., None]
        n_feat = stats.shape[-1]
        x = np.where(w > 0, stats, 0.0)
        zero = np.zeros((stats.shape[0], 1, n_feat))
        cw = np.concatenate([zero[..., :1], np.cumsum(w, axis=1)], axis=1)  # [B, T+1, 1]
        c1 = np.concatenate([zero, np.cumsum(x, axis=1)], axis=1)
        c2 = np.concatenate([zero, np.cumsum(x * x, axis=1)], axis=1)
        n = cw[:, -1:]
        tot1, tot2 = c1[:, -1:], c2[:, -1:]

        def rss(s1: np.ndarray, s2: np.ndarray, cnt: np.ndarray) -> np.ndarray:
            return np.where(cnt > 0, s2 - s1**2 / np.maximum(cnt, 1.0), 0.0)

        total = rss(tot1, tot2, n)  # [B, 1, F]
        split = rss(c1, c2, cw) + rss(tot1 - c1, tot2 - c2, n - cw)  # [B, T+1, F]
        floor = self.variance_floor * total + 1e-4 * np.maximum(n, 1.0)
        n_obs = np.maximum(n[..., 0], 1.0)  # [B, 1]
        ll = -(n_obs / 2) * np.log((np.maximum(split, 0.0) + floor) / n_obs[..., None]).sum(axis=-1)
        penalty = self.penalty_scale * (n_feat / 2 + 1) * np.log(np.maximum(n_obs, 2.0))
        t = stats.shape[1]
        inner = np.zeros(t + 1, dtype=bool)
        inner[1:t] = True
        # A split with an empty side is "no change": only gaps 0 and T keep it.
        empty_side = (cw[..., 0] == 0) | (cw[..., 0] == n[..., 0])
        ll = np.where(inner, ll - penalty, ll)
        none = -(n_obs / 2) * np.log((total + floor) / n_obs[..., None]).sum(axis=-1)  # [B, 1]
        ll = np.where(inner & empty_side, -np.inf, ll)
        ll[:, 0] = none[:, 0] + np.log(self.prior_damaged_at_start)
        ll[:, t] = none[:, 0] + np.log(1.0 - self.prior_damaged_at_start)
        return ll

    def predict(
        self,
        chips: ChipArrays,
        rows: np.ndarray | None = None,
        batch_size: int = 128,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Gap probabilities ``[N, T + 1]`` for the given rows of a chip cache (all rows by default)."""
        rows = np.arange(len(chips.building_ids)) if rows is None else np.asarray(rows)
        out = np.empty((len(rows), chips.n_dates + 1))
        for start in range(0, len(rows), batch_size):
            sel = rows[start : start + batch_size]
            stats = self.statistics(chips.read_many(sel), chips.mask[sel])
            ll = self.log_likelihood(stats, np.asarray(chips.valid[sel]) >= self.min_valid)
            ll = ll - ll.max(axis=1, keepdims=True)
            p = np.exp(ll)
            out[start : start + len(sel)] = p / p.sum(axis=1, keepdims=True)
            if progress is not None:
                progress(len(sel))
        return out


def _pooled(h: int, w: int, baseline: ChangePointBaseline) -> tuple[int, int]:
    return h // baseline.downsample, w // baseline.downsample
