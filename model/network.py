"""The dating network: chip encoder, difference features, temporal model, per-date emissions, gap posterior.

For one building with T chips the network computes

1. an embedding e_t of every chip (a small CNN pooled inside the footprint and over the chip, or a
   torchvision/timm backbone built without weights) from the chip's centre crop at full resolution (chips are
   centred on the footprint; with ``footprint_zoom`` the window shrinks to a few footprint sides, so a 25 m²
   shed fills the input as a house does) standardised per band (cancels per-date illumination and haze), the
   footprint mask and the per-band chip statistics;
   With ``change_features`` the embedding also carries seven pixel-level change statistics of the chip against
   the building's first clear date (:func:`change_statistics`: absolute difference and decorrelation of the
   standardised images inside the footprint and over the whole chip, change of texture, spread and relative
   brightness inside the footprint): a pre/post siamese difference computed, not learned, so that a few hundred
   labels suffice to use it;
2. difference features against earlier dates: e_t - e_first (first valid date) and e_t - r_t, where r_t is the
   validity-weighted mean of the embeddings of all earlier dates; with ``date_context``, also e_t - c_t, where
   c_t is the mean embedding of date t's clear chips over a sample of the scene's buildings
   (:func:`date_context`). Each acquisition has its own sun and view geometry, so every building's shadows and
   walls change together from one date to the next: compared only with its own past, a house under a
   high-noon sun looks "damaged" and a damaged one under a low sun "intact". Compared with how the whole
   city looks on that date, those shared changes cancel;
3. a small transformer over the dates with sinusoidal encodings of the acquisition day, invalid dates masked
   out of the attention keys;
4. per-date emission log-probabilities of intact / damaged, turned into the exact gap log-likelihood by
   :func:`model.changepoint.gap_log_likelihood` with the validity fractions as evidence weights (a linear-chain
   CRF restricted to monotone paths), the log prior on *when* a damaged building was struck, proportional to
   each gap's length in days (:func:`model.changepoint.duration_log_prior`, combined by
   :func:`model.changepoint.timed_posterior`, which never moves a building between damaged and intact), and a
   grade head (damaged / destroyed) pooled over the dates.

Dropout sits only after the encoder, so Monte-Carlo dropout re-runs the cheap temporal part, not the encoder.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from model.changepoint import duration_log_prior, gap_log_likelihood
from model.errors import ModelConfigError

__all__ = [
    "BACKBONES",
    "CHANGE_FEATURES",
    "GAP_PRIORS",
    "TEMPORAL_MODELS",
    "VALID_THRESHOLD",
    "DatingNetwork",
    "DatingOutput",
    "NetworkConfig",
    "change_statistics",
    "date_context",
]

GAP_PRIORS = ("duration", "uniform")
"""Priors on when a damaged building was struck: ``duration`` (:func:`model.changepoint.duration_log_prior`) or
``uniform`` over the damaged gaps. Neither moves mass between damaged and intact
(:func:`model.changepoint.timed_posterior`)."""

VALID_THRESHOLD = 0.25
"""Dates whose valid fraction is below this are hidden from the temporal attention."""

CHANGE_FEATURES = 7
"""Number of change statistics :func:`change_statistics` gives per date."""


@dataclass(frozen=True)
class NetworkConfig:
    """Hyperparameters of :class:`DatingNetwork`.

    Attributes:
        backbone: chip encoder, a key of :data:`BACKBONES` or ``"timm:<name>"``.
        in_channels: bands used, the first of the chip's (3 = R, G, B, robust to RGB-only sensors whose NIR
            is zero; 4 adds NIR).
        input_size: side in pixels of the encoder input: chips are first centre-cropped to
            ``input_size * downsample`` pixels (chips are centred on the footprint), then area-downsampled.
        downsample: area-downsampling factor after the crop (1 keeps full resolution).
        width: channels of the small CNN's first stage (doubled once).
        embed_dim: chip embedding size.
        d_model: width of the temporal model.
        temporal: temporal model, a key of :data:`TEMPORAL_MODELS`.
        layers / heads: transformer depth and attention heads.
        dropout: dropout after the encoder and in the temporal model (Monte-Carlo dropout at prediction).
        weights_path: optional local file with a state dict for the encoder (no downloads ever).
        gap_prior: prior on when, given damage, one of :data:`GAP_PRIORS` (:attr:`DatingOutput.log_timing`).
        footprint_zoom: 0 for the plain centre crop; otherwise the encoder's window is this many footprint
            sides wide (between ``input_size / 2`` and the crop), so small buildings get more pixels.
        date_context: the temporal model also sees each chip embedding minus the date's context, the mean
            embedding of that date over a sample of the scene's buildings (module docstring, step 2). In training
            the sample is the batch; in prediction a fixed sample of the cache
            (:meth:`model.task.DatingTask.date_contexts`, :func:`model.predict.reference_rows`).
        change_features: append :data:`CHANGE_FEATURES` pixel-level change statistics against the first clear
            date to every chip embedding (module docstring, step 1; :func:`change_statistics`).
    """

    backbone: str = "small_cnn"
    in_channels: int = 4
    input_size: int = 32
    downsample: int = 1
    width: int = 16
    embed_dim: int = 32
    d_model: int = 32
    temporal: str = "transformer"
    layers: int = 2
    heads: int = 4
    dropout: float = 0.1
    weights_path: str | None = None
    gap_prior: str = "duration"
    footprint_zoom: float = 0.0
    date_context: bool = False
    change_features: bool = False


@dataclass(frozen=True)
class DatingOutput:
    """What the network says about a batch of buildings.

    Attributes:
        log_intact / log_damaged: ``[B, T]`` per-date emission log-probabilities.
        gap_loglik: ``[B, T + 1]`` log-likelihood of the chips under every destruction gap (no prior).
        grade_logits: ``[B, 2]`` logits of the final grade (damaged, destroyed).
        log_timing: ``[B, T + 1]`` log prior on when, given damage (:attr:`NetworkConfig.gap_prior`; zeros for
            ``uniform``). The posterior is ``timed_posterior(gap_loglik / temperature, log_timing)``
            (:func:`model.changepoint.timed_posterior`): the temperature scales the evidence, not the prior.
    """

    log_intact: torch.Tensor
    log_damaged: torch.Tensor
    gap_loglik: torch.Tensor
    grade_logits: torch.Tensor
    log_timing: torch.Tensor


class SmallCNN(nn.Module):
    """Three 3x3 conv stages (two strided) with batch norm, pooled over the footprint and over the whole chip.

    The last input channel is the footprint mask; pooling inside it keeps neighbouring buildings (which may be
    destroyed at other dates) from dominating the embedding.
    """

    def __init__(self, in_channels: int, width: int, out_dim: int) -> None:
        super().__init__()
        w2 = 2 * width
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, w2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(w2),
            nn.ReLU(inplace=True),
            nn.Conv2d(w2, w2, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(w2),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Linear(3 * w2, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        weight = F.adaptive_avg_pool2d(x[:, -1:], h.shape[-2:])
        inside = (h * weight).sum(dim=(2, 3)) / weight.sum(dim=(2, 3)).clamp_min(1e-3)
        pooled = torch.cat([inside, h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        return self.head(pooled)


def _resnet18(in_channels: int, width: int, out_dim: int) -> nn.Module:
    from torchvision.models import resnet18

    net = resnet18(weights=None, num_classes=out_dim)
    net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return net


def _timm(name: str) -> Callable[[int, int, int], nn.Module]:
    def build(in_channels: int, width: int, out_dim: int) -> nn.Module:
        import timm

        try:
            return timm.create_model(name, pretrained=False, in_chans=in_channels, num_classes=out_dim)
        except RuntimeError as exc:  # timm: "Unknown model (...)"
            raise ModelConfigError(
                f"backbone 'timm:{name}' is not a timm model ({exc}); pick a name from timm.list_models()"
            ) from exc

    return build


BACKBONES: dict[str, Callable[[int, int, int], nn.Module]] = {
    "small_cnn": SmallCNN,
    "resnet18": _resnet18,
}
"""Encoders by name: ``build(in_channels, width, out_dim)``. ``"timm:<name>"`` builds any timm model."""

TEMPORAL_MODELS = ("transformer", "none")
"""``transformer``: self-attention over dates; ``none``: each date on its own (an ablation)."""


def build_encoder(config: NetworkConfig, in_channels: int) -> nn.Module:
    """The chip encoder named by ``config.backbone``, loaded from ``config.weights_path`` when given.

    Raises:
        ModelConfigError: unknown backbone, missing or mismatching weights file.
    """
    name = config.backbone
    if name.startswith("timm:"):
        factory = _timm(name.removeprefix("timm:"))
    elif name in BACKBONES:
        factory = BACKBONES[name]
    else:
        raise ModelConfigError(
            f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)} or 'timm:<model name>'"
        )
    encoder = factory(in_channels, config.width, config.embed_dim)
    if config.weights_path:
        path = Path(config.weights_path)
        if not path.is_file():
            raise ModelConfigError(f"weights_path {path}: no such file; give a local state-dict file or null")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        try:
            encoder.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelConfigError(
                f"weights_path {path}: does not fit backbone {name!r} ({str(exc).splitlines()[0]}); "
                "use weights saved from the same backbone"
            ) from exc
    return encoder


def date_encoding(days: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal encoding ``[..., dim]`` of day offsets, periods from 4 days to about 3 years."""
    half = dim // 2
    periods = torch.logspace(math.log10(4.0), math.log10(1024.0), half, device=days.device, dtype=days.dtype)
    angle = 2 * math.pi * days[..., None] / periods
    enc = torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)
    return F.pad(enc, (0, dim - 2 * half))


def change_statistics(
    chips: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor | None, bands: int = 3
) -> torch.Tensor:
    """Pixel-level change of every date against the building's first clear date, ``[B, T, 7]``.

    The chips (first ``bands`` bands, 2x2 average-pooled so a pixel of misregistration matters less) are
    standardised per chip and band, which cancels each date's gain, offset and haze. Against the reference
    date r (the first whose valid fraction reaches :data:`VALID_THRESHOLD`; date 0 when ``valid`` is None):
    mean absolute difference inside the footprint and over the chip, one minus the correlation inside the
    footprint and over the chip, log ratio of the footprint's gradient energy and of its spread (raw values),
    and the change of the footprint's brightness relative to its surroundings. All are 0 on date r.

    Args:
        chips: uint8 ``[B, T, C, H, W]``.
        mask: ``[B, H, W]`` footprint mask, 0..255.
        valid: ``[B, T]`` valid fractions, or None.
    """
    b, t, c, h, w = chips.shape
    c = min(c, bands)
    x = chips[:, :, :c].float().reshape(b * t, c, h, w) / 255.0
    m = mask[:, None].float() / 255.0
    if h >= 4 and w >= 4:
        x, m = F.avg_pool2d(x, 2), F.avg_pool2d(m, 2)
    h2, w2 = x.shape[-2:]
    x = x.reshape(b, t, c, h2, w2)
    m = m.reshape(b, 1, 1, h2, w2)
    std, mean = torch.std_mean(x, dim=(3, 4), keepdim=True)
    z = (x - mean) / std.clamp_min(0.02)
    if valid is None:
        ref = torch.zeros(b, dtype=torch.long, device=chips.device)
    else:
        seen = valid >= VALID_THRESHOLD
        ref = torch.where(seen.any(dim=1), seen.float().argmax(dim=1), torch.zeros_like(seen[:, 0]).long())
    pick = ref[:, None, None, None, None].expand(b, 1, c, h2, w2)
    zr, xr = z.gather(1, pick), x.gather(1, pick)
    area = m.sum(dim=(3, 4)).clamp_min(1e-3)  # [B, 1, 1]

    def inside(v: torch.Tensor) -> torch.Tensor:  # footprint mean over pixels (and bands) -> [B, T]
        return ((v * m).sum(dim=(3, 4)) / area).mean(dim=2)

    diff = (z - zr).abs()
    d_fp, d_all = inside(diff), diff.mean(dim=(2, 3, 4))
    zc = z - ((z * m).sum(dim=(3, 4), keepdim=True) / area[..., None, None])
    rc = zr - ((zr * m).sum(dim=(3, 4), keepdim=True) / area[..., None, None])
    corr_fp = inside(zc * rc) / (inside(zc**2) * inside(rc**2)).sqrt().clamp_min(1e-3)
    corr_all = (z * zr).mean(dim=(2, 3, 4))

    def gradient(v: torch.Tensor) -> torch.Tensor:
        gx = F.pad((v[..., :, 1:] - v[..., :, :-1]).abs(), (0, 1))
        gy = F.pad((v[..., 1:, :] - v[..., :-1, :]).abs(), (0, 0, 0, 1))
        return gx + gy

    texture = torch.log(inside(gradient(z)) + 0.05) - torch.log(inside(gradient(zr)) + 0.05)

    def spread(v: torch.Tensor) -> torch.Tensor:
        centred = v - (v * m).sum(dim=(3, 4), keepdim=True) / area[..., None, None]
        return inside(centred**2).sqrt()

    spread_change = torch.log(spread(x) + 0.01) - torch.log(spread(xr) + 0.01)
    brightness = inside(z) - inside(zr)
    return torch.stack([d_fp, d_all, 1 - corr_fp, 1 - corr_all, texture, spread_change, brightness], dim=-1)


def date_context(emb: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean embedding ``[T, E]`` of each date over the buildings whose chip is clear on that date.

    Args:
        emb: ``[B, T, E]`` chip embeddings of a sample of one scene's buildings.
        valid: ``[B, T]`` valid fractions; a chip counts when it reaches :data:`VALID_THRESHOLD`.

    A date with no clear chip in the sample gets the plain mean over the sample.
    """
    seen = (valid.clamp(0.0, 1.0) >= VALID_THRESHOLD).to(emb.dtype)
    n = seen.sum(dim=0)[:, None]
    total = (emb * seen[..., None]).sum(dim=0)
    return torch.where(n > 0, total / n.clamp_min(1.0), emb.mean(dim=0))


class DatingNetwork(nn.Module):
    """Chips of a building's timeline in, per-date emissions and the gap log-likelihood out (module docstring)."""

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        if config.temporal not in TEMPORAL_MODELS:
            raise ModelConfigError(
                f"unknown temporal model {config.temporal!r}; choose one of {', '.join(TEMPORAL_MODELS)}"
            )
        if config.gap_prior not in GAP_PRIORS:
            raise ModelConfigError(
                f"unknown gap_prior {config.gap_prior!r}; choose one of {', '.join(GAP_PRIORS)}"
            )
        if config.footprint_zoom < 0:
            raise ModelConfigError(f"footprint_zoom must be 0 (off) or positive, got {config.footprint_zoom}")
        if config.d_model % config.heads:
            raise ModelConfigError(f"d_model={config.d_model} must be a multiple of heads={config.heads}")
        self.config = config
        c = config.in_channels
        self.encoder = build_encoder(config, c + 1)
        self.stats_proj = nn.Linear(2 * c, config.embed_dim)
        self.drop = nn.Dropout(config.dropout)
        width = config.embed_dim + (CHANGE_FEATURES if config.change_features else 0)
        self.in_proj = nn.Linear((4 if config.date_context else 3) * width + 1, config.d_model)
        self.temporal: nn.Module | None = None
        if config.temporal == "transformer":
            layer = nn.TransformerEncoderLayer(
                config.d_model,
                config.heads,
                dim_feedforward=2 * config.d_model,
                dropout=config.dropout,
                batch_first=True,
                norm_first=True,
            )
            self.temporal = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.emission = nn.Sequential(
            nn.LayerNorm(config.d_model), nn.Dropout(config.dropout), nn.Linear(config.d_model, 2)
        )
        self.grade_score = nn.Linear(config.d_model, 1)
        self.grade_head = nn.Sequential(nn.LayerNorm(config.d_model), nn.Linear(config.d_model, 2))

    def embed(
        self, chips: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Chip embeddings ``[B, T, E]`` from uint8 chips ``[B, T, C, H, W]`` and footprint masks ``[B, H, W]``.

        With ``change_features`` the embeddings are ``[B, T, E + 7]``: the change statistics against the first
        clear date (``valid`` ``[B, T]`` says which; date 0 when None) follow the learned embedding.
        """
        if self.config.change_features:
            stats = change_statistics(chips, mask, valid, self.config.in_channels)
            return torch.cat([self.encode(chips, mask), stats], dim=-1)
        return self.encode(chips, mask)

    def encode(self, chips: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The learned part of :meth:`embed`, ``[B, T, E]``: every chip on its own through the encoder."""
        b, t, c, h, w = chips.shape
        if c < self.config.in_channels:
            raise ModelConfigError(
                f"chips have {c} bands but the network was built for in_channels={self.config.in_channels}; "
                "set in_channels to at most the cache's band count"
            )
        if c > self.config.in_channels:  # use the first bands (R, G, B): robust to RGB-only sensors
            chips = chips[:, :, : self.config.in_channels]
            c = self.config.in_channels
        size, factor = self.config.input_size, self.config.downsample
        crop = size * factor
        if self.config.footprint_zoom > 0:
            x, m = self._zoomed(chips, mask, crop)
            h = w = size
        else:
            if h > crop and w > crop:
                top, left = (h - crop) // 2, (w - crop) // 2
                chips = chips[..., top : top + crop, left : left + crop]
                mask = mask[..., top : top + crop, left : left + crop]
                h = w = crop
            x = chips.reshape(b * t, c, h, w).float()
            m = mask[:, None].float()
        if h != size or w != size:
            if h % size == 0 and w % size == 0:
                x, m = F.avg_pool2d(x, h // size), F.avg_pool2d(m, h // size)
            else:
                x, m = F.adaptive_avg_pool2d(x, size), F.adaptive_avg_pool2d(m, size)
        x = x / 255.0
        m = (m / 255.0).expand(b, t, *m.shape[-2:]).reshape(b * t, 1, *m.shape[-2:])
        std, mean = torch.std_mean(x, dim=(2, 3), keepdim=True)
        z = (x - mean) / std.clamp_min(0.02)
        e = self.encoder(torch.cat([z, m], dim=1))
        stats = torch.cat([mean.flatten(1), std.flatten(1)], dim=1)
        return (e + self.stats_proj(stats)).reshape(b, t, -1)

    def _zoomed(
        self, chips: torch.Tensor, mask: torch.Tensor, crop: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Chips and mask resampled to ``input_size`` from a centred window scaled to the footprint.

        The window side is ``footprint_zoom`` times the side of a square of the footprint's area, between half
        the input size and ``crop``: small buildings are seen at up to twice the resolution, large ones as in
        the plain centre crop. Returns ``[B * T, C, S, S]`` chips and ``[B, 1, S, S]`` masks (0..255).
        """
        b, t, c, h, w = chips.shape
        size = self.config.input_size
        area = (mask > 127).flatten(1).sum(dim=1).float()  # of the whole footprint, before any crop
        side = (self.config.footprint_zoom * area.sqrt()).clamp(size / 2, min(crop, h, w))
        # sample from the centre crop plus a 1 px rim (what bilinear taps at the window's edge read): the same
        # values as from the whole chip, at a quarter of the cost for 64 px chips
        keep = min(crop + 2, h, w)
        top, left = (h - keep) // 2, (w - keep) // 2
        if (h - keep) % 2 == 0 and (w - keep) % 2 == 0:
            chips = chips[..., top : top + keep, left : left + keep]
            mask = mask[..., top : top + keep, left : left + keep]
            h = w = keep
        theta = torch.zeros(b, 2, 3, device=chips.device)
        theta[:, 0, 0] = side / w
        theta[:, 1, 1] = side / h
        grid = F.affine_grid(theta, [b, 1, size, size], align_corners=False)
        x = F.grid_sample(chips.reshape(b, t * c, h, w).float(), grid, mode="bilinear", align_corners=False)
        m = F.grid_sample(mask[:, None].float(), grid, mode="bilinear", align_corners=False)
        return x.reshape(b * t, c, size, size), m

    def temporal_forward(
        self, emb: torch.Tensor, valid: torch.Tensor, days: torch.Tensor, context: torch.Tensor | None = None
    ) -> DatingOutput:
        """The part after the encoder; re-run with dropout active for Monte-Carlo samples.

        Args:
            emb: ``[B, T, E]`` chip embeddings.
            valid: ``[B, T]`` valid fraction of each chip (evidence weight).
            days: ``[B, T]`` days since the first acquisition.
            context: ``[T, E]`` date context (:func:`date_context`) of a reference sample; a network with
                date context takes the batch's own when it is None. Ignored by a network without.
        """
        weight = valid.clamp(0.0, 1.0)
        seen = (weight >= VALID_THRESHOLD).to(emb.dtype)
        if not self.config.date_context:
            context = None
        elif context is None:  # before dropout: the context is the scene's, not a Monte-Carlo sample's
            context = date_context(emb, valid)
        emb = self.drop(emb)
        # Running reference: validity-weighted mean of strictly earlier embeddings (itself when none).
        cum_w = torch.cumsum(seen, dim=1) - seen
        cum_e = torch.cumsum(emb * seen[..., None], dim=1) - emb * seen[..., None]
        running = torch.where(cum_w[..., None] > 0, cum_e / cum_w.clamp_min(1.0)[..., None], emb)
        first_idx = torch.where(seen.sum(dim=1) > 0, seen.argmax(dim=1), torch.zeros_like(seen[:, 0]).long())
        first = emb.gather(1, first_idx[:, None, None].expand(-1, 1, emb.shape[-1]))
        parts = [emb, emb - first, emb - running]
        if context is not None:
            parts.append(emb - context[None])
        features = torch.cat([*parts, weight[..., None]], dim=-1)
        h = self.in_proj(features) + date_encoding(days.to(emb.dtype), self.config.d_model)
        if self.temporal is not None:
            hidden = seen < 0.5
            hidden = hidden & ~hidden.all(
                dim=1, keepdim=True
            )  # a fully hidden timeline attends to everything
            h = self.temporal(h, src_key_padding_mask=hidden)
        log_probs = F.log_softmax(self.emission(h), dim=-1)
        log_intact, log_damaged = log_probs[..., 0], log_probs[..., 1]
        gap_loglik = gap_log_likelihood(log_intact, log_damaged, weight)
        log_timing = (
            duration_log_prior(days.to(gap_loglik.dtype)).expand_as(gap_loglik)
            if self.config.gap_prior == "duration"
            else torch.zeros_like(gap_loglik)
        )
        score = self.grade_score(h).squeeze(-1).masked_fill(seen < 0.5, -1e4)
        pooled = (torch.softmax(score, dim=1)[..., None] * h).sum(dim=1)
        return DatingOutput(log_intact, log_damaged, gap_loglik, self.grade_head(pooled), log_timing)

    def forward(
        self, chips: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor, days: torch.Tensor
    ) -> DatingOutput:
        """Encode every chip, then run the temporal part once (see :meth:`temporal_forward`)."""
        return self.temporal_forward(self.embed(chips, mask, valid), valid, days)
