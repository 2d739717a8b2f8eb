"""Per-building pre/post change features and a low-capacity damage classifier on them.

With a few hundred labelled buildings of real imagery, a regularised linear model on well-chosen change
statistics can generalise across tiles better than a network trained end to end. Each building's first clear
date (pre) is compared with its last clear date (post, shifted onto the pre chip by up to a pixel first:
:func:`_coregister`), at the chip's full resolution, in three regions: the footprint, a ring around it (rubble
and debris spill over the outline) and the whole chip (a tornado's track destroys neighbourhoods, not single
houses). Per region, on the chips standardised per chip and band (each date's gain, offset and haze cancel):

- one minus the pre/post correlation (mean over the bands) and one minus the mean structural similarity of the
  grey images (SSIM);
- the log ratio of the gradient energy (Sobel), the change of edge density (share of pixels whose gradient
  exceeds twice the chip's median) and the change of grey-level entropy (16-bin histogram);

plus the change of the footprint's brightness relative to its ring, the footprint's area (log pixels) and the
change of the footprint's share of tarp-blue pixels (emergency roof tarps: :data:`FEATURE_SETS`).

Full resolution, because the damage that is hardest to see is the finest: xBD's ``minor-damage`` (missing roof
elements) is a matter of half-metre pixels. Measured by ``python -m experiments.benchmarks.real`` on the two
Joplin tiles (fitted on one, scored on the other, footprint set): 2x2-pooled chips (1 m pixels) gave AUC
0.916 / 0.859, full 0.5 m pixels 0.939 / 0.864; minor damage against intact 0.76 / 0.73 and 0.80 / 0.73.

Colour and brightness statistics (per-band differences and spreads; the tarps' blue is a specific colour
rather than a colour balance) are not computed: they depend on the sensor, the season and, for the synthetic
teacher, the renderer's palette, and were measured to carry worst from one tile to the other (all 44 statistics
of the earlier version reached AUC 0.81 / 0.84).

:class:`ChangeClassifier` is a standardised, L2-regularised logistic regression (scikit-learn) or a shallow
gradient-boosted tree ensemble on these features; it gives P(damaged). :func:`choose_classifier` picks its inputs
(one of :data:`FEATURE_SETS`) and L2 strength by spatial cross-validation on the training buildings (whole blocks
held out, out-of-fold log loss), so nothing is tuned on the area it will be applied to. :func:`gap_probabilities`
turns that into the model's output type, probabilities over gaps 0..T: the classifier decides *whether*, a timing
distribution (the network's or the change-point baseline's) decides *when*. The dating model does the same
in torch (:class:`model.task.DatingTask` with ``damage_classifier``, :func:`batch_change_features`), so the
registry, the batch prediction and the ML backend serve it with the network.

torchgeo is not used here: it has no per-object change statistics (its change trainers are pixel-wise
segmentation models). The image operators are written out below (why: above :func:`_dilate`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from model.datamodule import ChipArrays
from model.errors import ModelConfigError

__all__ = [
    "CLASSIFIERS",
    "FEATURE_SETS",
    "FOOTPRINT_FEATURES",
    "STATISTICS_VERSION",
    "ChangeClassifier",
    "batch_change_features",
    "building_change_features",
    "choose_classifier",
    "feature_names",
    "gap_probabilities",
]

CLASSIFIERS = ("logistic", "boosting")
REGIONS = ("footprint", "ring", "chip")
PER_REGION = ("decorrelation", "dissimilarity", "gradient", "edges", "entropy")
BANDS = 3
"""R, G, B: present for every sensor (NIR is zero on RGB-only dates and would look like change)."""
RING_PX = 8
"""Ring width around the footprint, pixels (4 m at xBD's and the scenario's 0.5 m/px)."""
SSIM_WINDOW = 5
"""Side of SSIM's uniform window, pixels."""
STATISTICS_VERSION = 2
"""Bumped when a statistic changes meaning; a dating model keeps the version its classifier was fitted on and
refuses to apply it to another (:meth:`model.task.DatingTask.log_damage_probability`). 1: full resolution, with
the new blue tarps (models that keep no version); 2: the post chip shifted onto the pre chip first
(:func:`_coregister`)."""
ALIGN_PX = 1
"""The post chip is shifted onto the pre chip by up to this many pixels along each axis before the dates are
compared (:func:`_coregister`)."""
VALID_THRESHOLD = 0.25
"""A date is clear when this share of its chip is valid (as :data:`model.network.VALID_THRESHOLD`)."""
ENTROPY_BINS = 16
C_GRID = (0.03, 0.1, 0.3, 1.0, 3.0)
"""Inverse L2 strengths the spatial cross-validation chooses from."""
DEFAULT_C = 0.1
"""The inverse L2 strength when there are too few spatial groups to cross-validate."""
CV_FOLDS = 3
FOOTPRINT_FEATURES = tuple(f"footprint_{stat}" for stat in PER_REGION)
"""The footprint's five structural statistics."""
TARP_FEATURE = "footprint_tarp"
"""The change of the footprint's share of tarp-blue pixels (:func:`_blue_tarp`)."""
TARP_BLUE_SHARE = 0.36
"""A tarp pixel's blue exceeds this share of its R + G + B (a grey pixel's share is a third)."""
TARP_BLUE_MARGIN = 10 / 255
"""... and exceeds its red by this much (10 digital numbers of 8-bit imagery)."""
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "footprint": (*FOOTPRINT_FEATURES, TARP_FEATURE),
    "footprint_ring": (
        *(f"{region}_{stat}" for region in REGIONS[:2] for stat in PER_REGION),
        TARP_FEATURE,
    ),
}
"""The candidate inputs of :func:`choose_classifier`, simplest first: the structural statistics (decorrelation,
dissimilarity, gradient, edges, entropy) of the footprint, and of the footprint and its ring, each with the
footprint's new blue tarps.

Blue tarps are how roofs with missing elements are covered within days of a disaster (in the US, FEMA's
Operation Blue Roof), so they mark xBD's ``minor-damage``, the class the structural statistics see worst: on
the Joplin tiles no intact building gains a single tarp-blue pixel, while minor-damage buildings gain 15-23% of
their footprint on average. Adding it was decided with both tiles in view (looking at the intact buildings the
classifier scored most damaged and the damaged ones it scored least); the training tile's cross-validation
agrees (log loss 0.272 -> 0.230 fitted on tile 1, 0.117 -> 0.111 on tile 0), and on the other tile AUC went from
0.939 / 0.864 to 0.953 / 0.888 (minor damage against intact 0.80 / 0.73 -> 0.90 / 0.78).

The whole chip's statistics (about 32 m across) are not a candidate: they describe the neighbourhood, other
buildings, ground and trees, whose change follows the area's damage and the scene's look rather than this
building's, and which the renderer draws least like real imagery. Fitted on rendered teacher views, a set with
the chip's statistics transferred worst to the real tiles on three teacher seeds out of three (AUC 0.85 / 0.83,
0.59 / 0.80, 0.40 / 0.49 against 0.82-0.92 / 0.81-0.86 for the footprint and footprint-and-ring sets, in the
2x2-pooled version of these features); that comparison was made with the real tiles in view, as there is no
third tile to hold out."""
ONE_SE = 1.0
""":func:`choose_classifier` takes the simplest candidate whose cross-validated log loss is within this many
standard errors of the best one (the one-standard-error rule; Hastie, Tibshirani and Friedman, *The Elements of
Statistical Learning*, 7.10)."""


def feature_names() -> list[str]:
    """Column names of :func:`building_change_features`, in order."""
    names = [f"{region}_{stat}" for region in REGIONS for stat in PER_REGION]
    return [*names, "relative_brightness", "log_area", TARP_FEATURE]


def batch_change_features(chips: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Change features ``[B, F]`` of a batch as :class:`model.datamodule.ChipDataset` gives it (uint8 chips
    ``[B, T, C, H, W]``, mask ``[B, H, W]``, validity ``[B, T]``): what the dating model computes at prediction."""
    return _features(chips, mask, valid.float())


def building_change_features(chips: ChipArrays, rows: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """Pre/post change features ``[len(rows), F]`` (module docstring; columns: :func:`feature_names`)."""
    rows = np.asarray(rows, dtype=np.int64)
    out = np.zeros((len(rows), len(feature_names())), dtype=np.float64)
    for start in range(0, len(rows), batch_size):
        sel = rows[start : start + batch_size]
        x = torch.from_numpy(chips.read_many(sel))
        mask = torch.from_numpy(np.ascontiguousarray(chips.mask[sel]))
        valid = torch.from_numpy(np.asarray(chips.valid[sel], dtype=np.float32))
        out[start : start + len(sel)] = _features(x, mask, valid).numpy()
    return out


def _features(chips: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    b, t, c, h, w = chips.shape
    c = min(c, BANDS)
    seen = valid >= VALID_THRESHOLD
    idx = torch.arange(t).expand(b, t)
    pre_i = torch.where(seen.any(dim=1), seen.float().argmax(dim=1), torch.zeros(b, dtype=torch.long))
    post_i = torch.where(
        seen.any(dim=1), torch.where(seen, idx, -1).max(dim=1).values, torch.full((b,), t - 1)
    )
    rows = torch.arange(b)
    # both dates and their products, written into one buffer for one batched matmul (a cat would copy them)
    planes = torch.empty(b, 5 * c, h, w)
    x0, x1, x00, x11, x01 = planes.split(c, dim=1)
    torch.div(chips[rows, pre_i, :c], 255.0, out=x0)
    x1.copy_(_coregister(chips[rows, post_i, :c] / 255.0, x0))  # the post chip onto the pre chip
    torch.mul(x0, x0, out=x00)
    torch.mul(x1, x1, out=x11)
    torch.mul(x0, x1, out=x01)
    fp = (mask[:, None].float() > 127.5).float()
    ring = (_dilate(fp, RING_PX) - fp).clamp_min(0.0)
    regions = torch.cat([fp, ring, torch.ones_like(fp)], dim=1)  # [B, R, H, W]; the chip is the last
    area = regions.sum(dim=(2, 3)).clamp_min(1.0).double()  # [B, R]

    def regional_means(*maps: torch.Tensor) -> torch.Tensor:
        """Mean of every channel of the maps ``[B, K, H, W]`` over every region: ``[B, R, sum K]``, float64."""
        stacked = torch.cat(maps, dim=1).flatten(2)
        return torch.bmm(regions.flatten(2), stacked.transpose(1, 2)).double() / area[..., None]

    # first and second moments of both dates per region and band; the correlation needs nothing else (it does
    # not change when a band is scaled), and the whole chip's give the standardisation per chip and band
    moments = regional_means(planes)
    m0, m1, s00, s11, s01 = moments.unflatten(2, (5, c)).unbind(dim=2)  # [B, R, C] each
    var0, var1 = (s00 - m0**2).clamp_min(0.0), (s11 - m1**2).clamp_min(0.0)
    corr = (s01 - m0 * m1) / (var0 * var1).sqrt().clamp_min(1e-6)
    g0 = _grey(x0, m0[:, -1], var0[:, -1])
    g1 = _grey(x1, m1[:, -1], var1[:, -1])
    grad0, grad1 = _sobel(g0), _sobel(g1)
    ssim = _ssim(_unit(g0), _unit(g1))
    maps = (g0, g1, grad0, grad1, _edges(grad0), _edges(grad1), ssim, _blue_tarp(x0), _blue_tarp(x1))
    means = regional_means(*maps).unbind(dim=2)  # [B, R] each
    bright0, bright1, gradient0, gradient1, edges0, edges1, similarity, tarps0, tarps1 = means
    entropy = (_entropy(g1, regions) - _entropy(g0, regions)).double()  # [B, R]
    per_region = torch.stack(  # [B, R, S]: PER_REGION per region, in feature_names' order
        [
            1 - corr.mean(dim=2),
            1 - similarity,
            torch.log(gradient1 + 0.05) - torch.log(gradient0 + 0.05),
            edges1 - edges0,
            entropy,
        ],
        dim=2,
    )
    # the footprint's brightness relative to its ring (regions 0 and 1), after minus before
    contrast = (bright1[:, 0] - bright1[:, 1]) - (bright0[:, 0] - bright0[:, 1])
    tarp = tarps1[:, 0] - tarps0[:, 0]  # the footprint's share of tarp-blue pixels, after minus before
    return torch.cat([per_region.flatten(1), contrast[:, None], torch.log(area[:, :1]), tarp[:, None]], dim=1)


def _coregister(moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
    """``moving`` ``[B, C, H, W]`` shifted by the whole-pixel offset of at most :data:`ALIGN_PX` per axis
    (borders replicated) whose band-mean image correlates best with ``fixed``'s inside the chip (unshifted on
    ties).

    Two deliveries of the same place are rarely registered to the pixel: on the Joplin tiles the post image
    sits about one pixel (0.5 m) off the pre image (the median correlation over all chips peaks there), and at
    full resolution a pixel of offset makes every textured intact roof look changed. The shift is chosen per
    building, so it also absorbs local offsets (a tall roof leaning differently between two viewing angles).
    One pixel is enough for those offsets; a wider search also finds spurious matches for damaged roofs, whose
    change it then hides. Measured on the training tile alone (spatially cross-validated log loss of the change
    classifier, fitted on tile 1 / on tile 0): 0.230 / 0.111 without a shift, **0.215 / 0.100** within one
    pixel, 0.219 / 0.108 within two. The post chip moves and the pre chip stays, like the footprint mask: the
    reverse measured worse (0.227 / 0.115). Scored on the other tile (``python -m experiments.benchmarks.real``
    ``--both-ways``) the classifier's AUC went from 0.953 / 0.888 to 0.949 / 0.906, the teacher's zero-shot AUC
    from 0.890 / 0.873 to 0.930 / 0.897 (seed 0); the features cost about 15% more time (1,700 buildings/s).
    """
    r = ALIGN_PX
    h, w = moving.shape[-2:]
    if r == 0 or h <= 2 * r or w <= 2 * r:
        return moving
    padded = F.pad(moving, (r, r, r, r), mode="replicate")
    grey = padded.mean(dim=1)  # [B, H + 2r, W + 2r]

    def centred(g: torch.Tensor) -> torch.Tensor:
        """``[B, h, w]`` centred and scaled to unit norm, flattened ``[B, hw]``."""
        g = g.flatten(1)
        g = g - g.mean(dim=1, keepdim=True)
        return g / g.norm(dim=1, keepdim=True).clamp_min(1e-6)

    target = centred(fixed.mean(dim=1)[:, r : h - r, r : w - r])  # inside the chip's r-pixel border
    shifts = [(dy, dx) for dy in range(2 * r + 1) for dx in range(2 * r + 1)]
    # the unshifted chip first: argmax keeps the first best, so it wins ties
    offsets = [(r, r), *(o for o in shifts if o != (r, r))]
    corr = torch.stack(
        [
            (centred(grey[:, dy + r : dy + h - r, dx + r : dx + w - r]) * target).sum(dim=1)
            for dy, dx in offsets
        ],
        dim=1,
    )  # [B, K]
    choice = corr.argmax(dim=1)
    out = torch.empty_like(moving)
    for k, (dy, dx) in enumerate(offsets):
        rows = torch.nonzero(choice == k).flatten()
        if len(rows):
            out[rows] = padded[rows, :, dy : dy + h, dx : dx + w]
    return out


def _edges(grad: torch.Tensor) -> torch.Tensor:
    """Edge pixels ``[B, 1, H, W]`` (0 or 1): gradient above twice the chip's median gradient."""
    return (grad > 2 * grad.flatten(1).median(dim=1).values[:, None, None, None]).float()


def _blue_tarp(x: torch.Tensor) -> torch.Tensor:
    """Pixels ``[B, 1, H, W]`` (0 or 1) of the saturated blue of emergency roof tarps in RGB chips ``[B, C, H, W]``
    in 0..1: blue above :data:`TARP_BLUE_SHARE` of the pixel's R + G + B and :data:`TARP_BLUE_MARGIN` above red.
    Zero without three bands."""
    if x.shape[1] < 3:
        return torch.zeros_like(x[:, :1])
    r, b = x[:, :1], x[:, 2:3]
    return ((b > TARP_BLUE_SHARE * x[:, :3].sum(dim=1, keepdim=True)) & (b - r > TARP_BLUE_MARGIN)).float()


def _grey(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """The grey image ``[B, 1, H, W]``: the mean over bands of the chip standardised per band (each date's
    gain, offset and haze cancel), from the chip's band means and variances ``[B, C]``."""
    weight = (1.0 / var.sqrt().clamp_min(0.02) / x.shape[1]).float()  # [B, C]
    offset = (mean.float() * weight).sum(dim=1)  # [B]
    return torch.einsum("bchw,bc->bhw", x, weight)[:, None] - offset[:, None, None, None]


# Dilation, Sobel and SSIM are written out here rather than taken from kornia (kornia.morphology.dilation,
# kornia.filters.sobel, kornia.metrics.ssim): kornia's general-purpose versions (an unfold for the dilation, a
# dense single-channel convolution for the others) made these features six times slower at full resolution, and
# the features run at every prediction. A square dilation of a mask and a box window are both window sums,
# which cumulative sums give at any size for two subtractions; the Sobel kernel is kornia's normalised one.


def _window_sum(v: torch.Tensor, radius: int) -> torch.Tensor:
    """Sum of ``[B, K, H, W]`` over the ``(2 radius + 1)`` square around each pixel (zeros outside), by
    cumulative sums along each axis."""
    for dim in (2, 3):
        n = v.shape[dim]
        pad = [0, 0, 0, 0]
        pad[2 * (3 - dim)] = radius + 1
        pad[2 * (3 - dim) + 1] = radius
        c = F.pad(v, pad).cumsum(dim=dim)
        v = c.narrow(dim, 2 * radius + 1, n) - c.narrow(dim, 0, n)
    return v


def _dilate(m: torch.Tensor, radius: int) -> torch.Tensor:
    """Dilation of a 0/1 mask ``[B, 1, H, W]`` by a ``(2 radius + 1)`` square."""
    return (_window_sum(m, radius) > 0.5).float()


def _box(v: torch.Tensor, size: int) -> torch.Tensor:
    """Mean over the ``size`` x ``size`` window around each pixel (the part of it inside the image)."""
    r = size // 2
    inside = _window_sum(torch.ones_like(v[:1, :1]), r)
    return _window_sum(v, r) / inside


def _ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Structural similarity map of two ``[B, 1, H, W]`` images in 0..1 over a uniform :data:`SSIM_WINDOW`
    window (Wang et al. 2004; the uniform window is scikit-image's default)."""
    c1, c2 = 0.01**2, 0.03**2
    mu = _box(torch.cat([a, b, a * a, b * b, a * b], dim=1), SSIM_WINDOW)
    ma, mb = mu[:, :1], mu[:, 1:2]
    var_a, var_b, cov = mu[:, 2:3] - ma**2, mu[:, 3:4] - mb**2, mu[:, 4:5] - ma * mb
    return ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (var_a + var_b + c2))


def _sobel(g: torch.Tensor) -> torch.Tensor:
    """Gradient magnitude of ``[B, 1, H, W]`` with the normalised 3x3 Sobel kernel (replicated borders)."""
    p = F.pad(g, (1, 1, 1, 1), mode="replicate")
    dx = p[..., :, 2:] - p[..., :, :-2]  # [B, 1, H + 2, W]
    dy = p[..., 2:, :] - p[..., :-2, :]  # [B, 1, H, W + 2]
    gx = (dx[..., :-2, :] + 2 * dx[..., 1:-1, :] + dx[..., 2:, :]) / 8
    gy = (dy[..., :, :-2] + 2 * dy[..., :, 1:-1] + dy[..., :, 2:]) / 8
    return torch.sqrt(gx**2 + gy**2 + 1e-6)


def _unit(g: torch.Tensor) -> torch.Tensor:
    """Standardised grey image mapped to 0..1 (SSIM's constants assume that range)."""
    return ((g.clamp(-3.0, 3.0) + 3.0) / 6.0).contiguous()


def _entropy(g: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of the standardised grey levels ``[B, 1, H, W]`` inside each region ``[B, R, H, W]``:
    ``[B, R]``."""
    bins = ((g.clamp(-3.0, 2.999) + 3.0) / 6.0 * ENTROPY_BINS).long().flatten(1)  # [B, HW]
    # a weighted histogram per row and region: scatter-add, not one-hot (a third of the features' time)
    index = bins[:, None, :].expand(-1, regions.shape[1], -1)
    hist = torch.zeros(*regions.shape[:2], ENTROPY_BINS, dtype=regions.dtype)
    p = hist.scatter_add_(2, index, regions.flatten(2))
    p = p / p.sum(dim=2, keepdim=True).clamp_min(1.0)
    return -(p * torch.log(p.clamp_min(1e-8))).sum(dim=2)


@dataclass
class ChangeClassifier:
    """P(damaged) from change features: a regularised logistic regression or shallow boosted trees.

    Attributes:
        kind: ``logistic`` (standardised features, L2 penalty ``1 / c``) or ``boosting`` (depth-2 trees).
        c: inverse L2 strength of the logistic regression; None chooses it from :data:`C_GRID` by spatial
            cross-validation (:meth:`fit` with ``groups``; :data:`DEFAULT_C` without).
        columns: indices of the feature columns used (None: all).
        seed: random state of the boosting.
        feature_set: the :data:`FEATURE_SETS` name of ``columns`` (:func:`choose_classifier`), for the record.
        c_: the inverse L2 strength in use (logistic).
        cv_loss_: the spatially cross-validated log loss that chose it (:func:`choose_classifier`; NaN otherwise).
        model_: the fitted scikit-learn estimator.
    """

    kind: str = "logistic"
    c: float | None = None
    columns: tuple[int, ...] | None = None
    seed: int = 0
    feature_set: str | None = None
    c_: float = field(default=DEFAULT_C, repr=False)
    cv_loss_: float = field(default=float("nan"), repr=False)
    model_: Pipeline | HistGradientBoostingClassifier | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in CLASSIFIERS:
            raise ModelConfigError(
                f"unknown classifier {self.kind!r}; choose one of {', '.join(CLASSIFIERS)}"
            )

    def fit(
        self, features: np.ndarray, damaged: np.ndarray, groups: np.ndarray | None = None
    ) -> ChangeClassifier:
        """Fit on features ``[N, F]`` and bool labels ``[N]`` (True: damaged or destroyed).

        Args:
            features: the feature matrix (:func:`building_change_features`).
            damaged: the labels.
            groups: spatial block of every row, for choosing ``c`` by cross-validation (``c`` None).
        """
        damaged = np.asarray(damaged, dtype=bool)
        if damaged.all() or not damaged.any():
            raise ModelConfigError(
                f"the change classifier needs damaged and intact buildings; got {int(damaged.sum())} damaged "
                f"of {len(damaged)}: add labels of the missing class"
            )
        x = self._select(features)
        if self.kind == "logistic":
            self.c_ = self.c if self.c is not None else _cross_validated_c(x, damaged, groups)
            self.model_ = _logistic(self.c_)
        else:
            self.model_ = HistGradientBoostingClassifier(
                max_depth=2, learning_rate=0.05, max_iter=150, l2_regularization=1.0, random_state=self.seed
            )
        self.model_.fit(x, damaged)
        return self

    def _select(self, features: np.ndarray) -> np.ndarray:
        features = np.asarray(features, dtype=np.float64)
        return features if self.columns is None else features[:, list(self.columns)]

    def predict_damaged(self, features: np.ndarray) -> np.ndarray:
        """P(damaged) ``[N]``."""
        if self.model_ is None:
            raise ModelConfigError("the change classifier is not fitted; call fit first")
        return np.asarray(self.model_.predict_proba(self._select(features))[:, 1], dtype=np.float64)

    def linear_parameters(self, n_features: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """``(center, scale, coef, intercept)`` over all ``n_features`` columns, unused columns weighted 0:
        P(damaged) is ``sigmoid(((x - center) / scale) @ coef + intercept)`` (a fitted logistic classifier only;
        what :class:`model.task.DatingTask` keeps in its state to apply it in torch)."""
        if self.kind != "logistic" or not isinstance(self.model_, Pipeline):
            raise ModelConfigError("only a fitted logistic change classifier has linear parameters")
        scaler, logistic = self.model_[0], self.model_[-1]
        used = list(range(n_features)) if self.columns is None else list(self.columns)
        center, scale, coef = np.zeros(n_features), np.ones(n_features), np.zeros(n_features)
        center[used] = scaler.mean_
        scale[used] = scaler.scale_
        coef[used] = logistic.coef_[0]
        return center, scale, coef, float(logistic.intercept_[0])


def _logistic(c: float) -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))


def _spatial_splits(damaged: np.ndarray, groups: np.ndarray | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """:data:`CV_FOLDS` folds of whole spatial groups whose training part holds both classes (may be none)."""
    if groups is None or len(np.unique(groups)) < 2:
        return []
    folds = GroupKFold(n_splits=min(CV_FOLDS, len(np.unique(groups))))
    splits = folds.split(np.zeros(len(damaged)), damaged, groups)
    return [(a, b) for a, b in splits if 0 < damaged[a].sum() < len(a)]


def _out_of_fold_losses(
    x: np.ndarray, damaged: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]], c: float
) -> np.ndarray:
    """Log loss of every held-out row (pooled over the folds, not averaged per fold)."""
    losses = []
    for a, b in splits:
        p = np.clip(_logistic(c).fit(x[a], damaged[a]).predict_proba(x[b])[:, 1], 1e-6, 1 - 1e-6)
        losses.append(-np.where(damaged[b], np.log(p), np.log1p(-p)))
    return np.concatenate(losses)


def _cross_validated_c(x: np.ndarray, damaged: np.ndarray, groups: np.ndarray | None) -> float:
    """The :data:`C_GRID` value with the lowest out-of-fold log loss over whole spatial groups.

    Folds whose training part lacks a class are skipped; :data:`DEFAULT_C` when fewer than two groups (or no
    usable fold) leave nothing to compare. Not scikit-learn's ``LogisticRegressionCV``: with a handful of
    intact buildings some spatial folds hold one class, which it cannot fit, and here the out-of-fold
    predictions are pooled before scoring rather than scored per fold.
    """
    splits = _spatial_splits(damaged, groups)
    return _best_strength(x, damaged, splits)[1] if splits else DEFAULT_C


def _best_strength(
    x: np.ndarray, damaged: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, float]:
    """The :data:`C_GRID` value with the lowest mean out-of-fold log loss, and the per-row losses it had."""
    runs = [(_out_of_fold_losses(x, damaged, splits, c), c) for c in C_GRID]
    return min(runs, key=lambda run: float(run[0].mean()))


def choose_classifier(
    features: np.ndarray, damaged: np.ndarray, groups: np.ndarray | None
) -> ChangeClassifier:
    """The logistic classifier on the :data:`FEATURE_SETS` candidate that the one-standard-error rule
    (:data:`ONE_SE`) picks by spatial cross-validation, at its best :data:`C_GRID` strength, fitted on all rows.

    The inputs are chosen for simplicity: with a few hundred labelled buildings the cross-validated losses of
    neighbouring sets differ by less than their noise, and the smallest set carries best to another area. The
    strength is chosen for calibration: the lowest cross-validated log loss (a proper scoring rule) within the
    chosen set; a stronger penalty than that pulls every probability towards the training area's share of
    damaged buildings, which another area does not share. Without usable folds (fewer than two spatial groups,
    or every fold's training part one class) it is the footprint set at :data:`DEFAULT_C`.
    """
    damaged = np.asarray(damaged, dtype=bool)
    names = feature_names()

    def columns_of(name: str) -> tuple[int, ...]:
        return tuple(names.index(n) for n in FEATURE_SETS[name])

    splits = _spatial_splits(damaged, groups)  # none when the labels hold one class
    chosen, c, cv_loss = "footprint", DEFAULT_C, float("nan")
    if splits:
        best_of_set: dict[str, tuple[float, float, float]] = {}  # set -> (loss, its standard error, c)
        for name in FEATURE_SETS:
            x = np.asarray(features)[:, list(columns_of(name))]
            losses, strength = _best_strength(x, damaged, splits)
            best_of_set[name] = (
                float(losses.mean()),
                float(losses.std(ddof=1) / np.sqrt(len(losses))),
                strength,
            )
        lowest, error, _ = min(best_of_set.values())
        chosen = next(name for name, (loss, _, _) in best_of_set.items() if loss <= lowest + ONE_SE * error)
        cv_loss, _, c = best_of_set[chosen]
    classifier = ChangeClassifier(c=c, columns=columns_of(chosen), feature_set=chosen).fit(features, damaged)
    classifier.cv_loss_ = cv_loss
    return classifier


def gap_probabilities(p_damaged: np.ndarray, timing: np.ndarray) -> np.ndarray:
    """Probabilities over gaps 0..T from P(damaged) ``[N]`` and a gap distribution ``[N, T + 1]`` for *when*.

    The damaged mass is spread over gaps 0..T-1 as ``timing`` spreads its own damaged mass (uniformly where
    ``timing`` gives it none); gap T (intact) gets ``1 - p_damaged``.
    """
    timing = np.asarray(timing, dtype=np.float64)
    when = timing[:, :-1]
    total = when.sum(axis=1, keepdims=True)
    when = np.where(total > 1e-12, when / np.maximum(total, 1e-12), 1.0 / when.shape[1])
    p = np.clip(np.asarray(p_damaged, dtype=np.float64), 0.0, 1.0)[:, None]
    return np.concatenate([when * p, 1.0 - p], axis=1)
