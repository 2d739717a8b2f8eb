"""The LightningModule that trains and runs the dating network.

Built in fixed hooks (``configure_models``, ``configure_losses``, ``configure_metrics``) like torchgeo's
trainers; train, validation and test all go through one :meth:`DatingTask.shared_step`, and prediction through
the same network calls (:meth:`DatingTask.mc_predict`), so they cannot drift apart. The loss is the negative log-likelihood of each label under the network's
exact change-point posterior, ``-log sum_g p(g) label[g]`` (an interval label sums the gaps it allows; a soft
crowd label is treated as evidence over gaps, see :func:`model.calibration.gap_nll`), weighted for class balance,
plus a small cross-entropy for the final grade of damaged buildings. Prediction averages
``mc_samples`` Monte-Carlo dropout posteriors (Gal and Ghahramani, 2016) and reports predictive entropy and
BALD (Houlsby et al., 2011); ``temperature`` (fitted on validation by :func:`model.calibration.fit_temperature`,
shrunk towards 1 by :func:`model.calibration.shrink_temperature`) scales the gap log joint before normalisation.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from model.augment import sensor_augment
from model.calibration import gap_nll
from model.change_features import (
    STATISTICS_VERSION,
    ChangeClassifier,
    batch_change_features,
    feature_names,
)
from model.changepoint import gap_posterior, posterior_entropy, reported_gap, timed_posterior
from model.errors import ModelConfigError
from model.network import DatingNetwork, DatingOutput, NetworkConfig, date_context

__all__ = ["DatingTask"]


class DatingTask(L.LightningModule):
    """Train / evaluate / predict the destruction-gap posterior of buildings.

    Args:
        backbone: chip encoder (see :data:`model.network.BACKBONES`), e.g. ``small_cnn`` or ``timm:resnet10t``.
        in_channels: bands of the chips.
        input_size: encoder input side (chips are centre-cropped to ``input_size * downsample``).
        downsample: area-downsampling factor after the crop.
        width: first-stage channels of the small CNN.
        embed_dim: chip embedding size.
        d_model: temporal model width.
        temporal: ``transformer`` or ``none``.
        layers: transformer layers.
        heads: attention heads.
        dropout: dropout rate (also used for Monte-Carlo dropout).
        weights_path: local state-dict file for the encoder.
        gap_prior: prior on when, given damage: ``duration`` (grows with the gap's length in days) or
            ``uniform``; neither moves a building between damaged and intact.
        footprint_zoom: 0 for the plain centre crop; otherwise the encoder sees a window this many footprint
            sides wide, resampled to ``input_size`` (small buildings at up to twice the resolution).
        date_context: the temporal model also compares each chip with the scene's mean look on that date
            (:attr:`model.network.NetworkConfig.date_context`).
        change_features: the network also sees pixel-level change statistics against the first clear date
            (:attr:`model.network.NetworkConfig.change_features`).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        grade_weight: weight of the final-grade loss.
        mc_samples: Monte-Carlo dropout samples at prediction (1 = deterministic).
        augment: random flips / quarter turns of whole timelines and per-date gain while training.
        shift_px: training augmentation: every date's chip is shifted by up to this many pixels against the
            footprint (misregistration and off-nadir lean differ from date to date).
        date_dropout: training augmentation: each date is hidden (validity 0) with this probability, as a cloud
            would hide it.
        crop_prob: training augmentation: with this probability a timeline loses a random run of leading or
            trailing dates (hidden, targets unchanged), so the network meets buildings already damaged at their
            first visible image and change at their last one, whatever the acquisition schedule.
        sensor_augment: training augmentation for real sensors (:func:`model.augment.sensor_augment`): each
            date gets its own radiometry, blur, noise and scale, at this strength (0 = off).
        tta: Monte-Carlo samples also cycle through the four quarter turns of the chips (test-time
            augmentation inside the predictive ensemble; the encoder then runs up to four times).
        members: independently initialised networks trained side by side on the same batches (a deep ensemble,
            Lakshminarayanan et al., 2017); prediction shares the Monte-Carlo samples and quarter turns among
            them, so the encoder runs as often as with one network.
        init_weights: a local file with the state dict of a trained :class:`DatingTask` of the same architecture
            (``torch.save(task.state_dict(), path)``) to start from: fine-tuning, e.g. a model trained on a
            synthetic scenario (``experiments.teacher``) adapted to a few hundred real labels. Its temperature
            is not kept (calibration is refitted after training).
        init_encoder: a local file with pretrained chip-encoder weights (:func:`model.pretrain.pretrain_encoder`:
            self-supervised on the campaign's unlabelled chips) loaded into every network's encoder before
            training; the temporal part starts fresh.
        damage_classifier: *whether* a building is damaged comes from a logistic regression on its pre/post
            change statistics (:mod:`model.change_features`), fitted after the network by
            :func:`model.training.finish_training` and kept in this module's state; the network still gives
            *when* (its posterior over the damaged gaps) and the grade. With a few hundred labelled buildings of
            real imagery it carries to an unseen area better than the network (issue #13's closing note). Until
            it is fitted the network decides alone.
    """

    temperature: torch.Tensor
    # the change classifier's parameters (buffers only with damage_classifier: true)
    damage_center: torch.Tensor
    damage_scale: torch.Tensor
    damage_coef: torch.Tensor
    damage_intercept: torch.Tensor
    damage_fitted: torch.Tensor
    damage_statistics_version: torch.Tensor

    def __init__(
        self,
        backbone: str = "small_cnn",
        in_channels: int = 4,
        input_size: int = 32,
        downsample: int = 1,
        width: int = 16,
        embed_dim: int = 32,
        d_model: int = 32,
        temporal: str = "transformer",
        layers: int = 2,
        heads: int = 4,
        dropout: float = 0.1,
        weights_path: str | None = None,
        gap_prior: str = "duration",
        footprint_zoom: float = 0.0,
        date_context: bool = False,
        change_features: bool = False,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        grade_weight: float = 0.2,
        mc_samples: int = 8,
        augment: bool = True,
        shift_px: int = 2,
        date_dropout: float = 0.1,
        crop_prob: float = 0.3,
        sensor_augment: float = 0.0,
        tta: bool = True,
        members: int = 1,
        init_weights: str | None = None,
        init_encoder: str | None = None,
        damage_classifier: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.network_config = NetworkConfig(
            backbone=backbone,
            in_channels=in_channels,
            input_size=input_size,
            downsample=downsample,
            width=width,
            embed_dim=embed_dim,
            d_model=d_model,
            temporal=temporal,
            layers=layers,
            heads=heads,
            dropout=dropout,
            weights_path=weights_path,
            gap_prior=gap_prior,
            footprint_zoom=footprint_zoom,
            date_context=date_context,
            change_features=change_features,
        )
        if members < 1:
            raise ModelConfigError(f"members must be at least 1, got {members}")
        self.register_buffer("temperature", torch.tensor(1.0))
        if damage_classifier:
            n = len(feature_names())
            self.register_buffer("damage_center", torch.zeros(n, dtype=torch.float64))
            self.register_buffer("damage_scale", torch.ones(n, dtype=torch.float64))
            self.register_buffer("damage_coef", torch.zeros(n, dtype=torch.float64))
            self.register_buffer("damage_intercept", torch.tensor(0.0, dtype=torch.float64))
            self.register_buffer("damage_fitted", torch.tensor(False))
            self.register_buffer("damage_statistics_version", torch.tensor(STATISTICS_VERSION))
        self.trained_on: dict[str, Any] = {}
        self.configure_models()
        self.configure_losses()
        self.configure_metrics()
        if init_encoder:
            self.load_encoder(init_encoder)
        if init_weights:
            self.load_weights(init_weights)

    # --- hooks ------------------------------------------------------------------------------------------------

    def configure_models(self) -> None:
        """Build the network (raises :class:`model.errors.ModelConfigError` for unknown parts)."""
        self.net = DatingNetwork(self.network_config)
        self.extra_nets = nn.ModuleList(
            DatingNetwork(self.network_config) for _ in range(int(self.hparams["members"]) - 1)
        )

    def load_weights(self, path: str | Path) -> None:
        """Load the network weights of a saved state dict (``init_weights``); the temperature is reset to 1 and
        a change classifier is not kept (both are fitted again after training).

        Raises:
            ModelConfigError: no such file, or weights of another architecture.
        """
        path = Path(path)
        if not path.is_file():
            raise ModelConfigError(
                f"init_weights {path}: no such file; give a state dict saved from a DatingTask"
            )
        state = torch.load(path, map_location="cpu", weights_only=True)

        def refitted(key: str) -> bool:
            return key == "temperature" or key.startswith("damage_")

        state = {k: v for k, v in state.items() if not refitted(k)}
        try:
            self.load_state_dict(state, strict=False)
        except RuntimeError as exc:
            raise ModelConfigError(
                f"init_weights {path}: does not fit this model ({str(exc).splitlines()[0]}); "
                "use weights of a DatingTask with the same backbone, sizes and in_channels"
            ) from exc
        missing = {k for k in self.state_dict() if not refitted(k)} - set(state)
        if missing:
            raise ModelConfigError(
                f"init_weights {path}: lacks {len(missing)} tensor(s) of this model (e.g. {sorted(missing)[:3]}); "
                "use weights of a DatingTask with the same backbone, sizes and members"
            )
        self.temperature.fill_(1.0)

    def load_encoder(self, path: str | Path) -> None:
        """Load pretrained chip-encoder weights (``init_encoder``) into every network of the ensemble.

        Raises:
            ModelConfigError: no such file, or weights of another encoder.
        """
        path = Path(path)
        if not path.is_file():
            raise ModelConfigError(f"init_encoder {path}: no such file; give weights saved by model.pretrain")
        state = torch.load(path, map_location="cpu", weights_only=True)
        for net in self.networks:
            own = {k: v for k, v in net.state_dict().items() if k.startswith(("encoder.", "stats_proj."))}
            if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
                raise ModelConfigError(
                    f"init_encoder {path}: its weights do not fit this model's encoder; pretrain with the same "
                    "backbone, width, embed_dim and in_channels"
                )
            net.load_state_dict(state, strict=False)

    @property
    def networks(self) -> list[DatingNetwork]:
        """The ensemble's networks (one unless ``members`` > 1)."""
        return [self.net, *self.extra_nets]  # type: ignore[list-item]

    def configure_losses(self) -> None:
        """Gap NLL for dates, cross-entropy for the grade."""
        self.gap_loss = gap_nll
        self.grade_loss = nn.CrossEntropyLoss(reduction="none")

    def configure_metrics(self) -> None:
        """Metrics are computed in :meth:`shared_step` from the posterior; nothing stateful to build."""
        self.metric_names = ("loss", "nll", "exact", "within1")

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(
            self.parameters(), lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"]
        )
        if self.trainer is not None and self.trainer.max_epochs and self.trainer.max_epochs > 1:
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.trainer.max_epochs)
            return {"optimizer": opt, "lr_scheduler": sched}
        return opt

    # --- steps ------------------------------------------------------------------------------------------------

    def forward(self, batch: dict[str, torch.Tensor]) -> DatingOutput:
        """The first network's output (an ensemble's members are combined in the steps and in prediction)."""
        return self.net(batch["chips"], batch["mask"], batch["valid"], batch["days"])

    def log_posterior(self, out: DatingOutput) -> torch.Tensor:
        """Gap log-posterior ``[B, T + 1]``: tempered likelihood, then the timing prior (never moves damage)."""
        return timed_posterior(out.gap_loglik / self.temperature, out.log_timing)

    def shared_step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        """Loss and metrics of one labelled batch; ``stage`` names the logged metrics."""
        target, interval, weight = batch["target"], batch["interval"], batch["weight"]
        graded = batch["grade"] >= 0
        losses, log_posts, nlls = [], [], []
        for net in self.networks:  # every member learns on its own; the metrics score their mixture
            out = net(batch["chips"], batch["mask"], batch["valid"], batch["days"])
            member_post = self.log_posterior(out)
            member_nll = self.gap_loss(member_post, target, interval)
            member_loss = (weight * member_nll).sum() / weight.sum()
            if graded.any():
                grade = self.grade_loss(out.grade_logits[graded], batch["grade"][graded])
                member_loss = member_loss + self.hparams["grade_weight"] * grade.mean()
            losses.append(member_loss)
            log_posts.append(member_post)
            nlls.append(member_nll)
        loss = torch.stack(losses).mean()
        nll = torch.stack(nlls).mean(dim=0)
        log_post = torch.logsumexp(torch.stack(log_posts), dim=0) - math.log(len(log_posts))
        with torch.no_grad():
            pred = reported_gap(log_post)
            allowed = target > 0
            hard = torch.where(
                interval, target.shape[1] - 1 - allowed.flip(-1).float().argmax(dim=-1), target.argmax(dim=-1)
            )
            exact = torch.where(interval, allowed.gather(1, pred[:, None]).squeeze(1), pred == hard)
            within1 = (pred - hard).abs() <= 1
        n = target.shape[0]
        on_step = stage == "train"
        self.log(f"{stage}_loss", loss, prog_bar=True, batch_size=n, on_step=on_step, on_epoch=True)
        self.log(f"{stage}_nll", nll.mean(), batch_size=n, on_step=False, on_epoch=True)
        self.log(
            f"{stage}_exact", exact.float().mean(), prog_bar=stage != "train", batch_size=n, on_epoch=True
        )
        self.log(f"{stage}_within1", within1.float().mean(), batch_size=n, on_step=False, on_epoch=True)
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.hparams["augment"]:
            batch = augment(batch)
            if self.hparams.get("sensor_augment", 0.0) > 0:
                batch = {
                    **batch,
                    "chips": sensor_augment(batch["chips"], float(self.hparams["sensor_augment"])),
                }
            batch = augment_timeline(
                batch,
                shift_px=int(self.hparams["shift_px"]),
                date_dropout=float(self.hparams["date_dropout"]),
                crop_prob=float(self.hparams["crop_prob"]),
            )
        return self.shared_step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.shared_step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.shared_step(batch, "test")

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int = 0) -> dict[str, torch.Tensor]:
        return self.mc_predict(batch, int(self.hparams["mc_samples"]))

    # --- the change classifier -------------------------------------------------------------------------------

    @property
    def has_damage_classifier(self) -> bool:
        """A fitted change classifier decides whether buildings are damaged (``damage_classifier``)."""
        return bool(self.hparams.get("damage_classifier", False)) and bool(self.damage_fitted)

    def set_damage_classifier(self, classifier: ChangeClassifier | None) -> None:
        """Keep a fitted logistic :class:`model.change_features.ChangeClassifier` (None: the network decides)."""
        if not self.hparams.get("damage_classifier", False):
            raise ModelConfigError("this model was built without damage_classifier: true; it cannot keep one")
        if classifier is None:
            self.damage_fitted.fill_(False)
            return
        center, scale, coef, intercept = classifier.linear_parameters(len(feature_names()))
        self.damage_center.copy_(torch.from_numpy(center))
        self.damage_scale.copy_(torch.from_numpy(scale))
        self.damage_coef.copy_(torch.from_numpy(coef))
        self.damage_intercept.fill_(intercept)
        self.damage_statistics_version.fill_(STATISTICS_VERSION)
        self.damage_fitted.fill_(True)

    def log_damage_probability(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log P(damaged), log P(intact))`` ``[B]`` of the change classifier (it must be fitted)."""
        x = batch_change_features(batch["chips"], batch["mask"], batch["valid"])
        # a model pickled before the version was kept has no such buffer: it was fitted on version 1
        version = int(getattr(self, "damage_statistics_version", torch.tensor(1)))
        if x.shape[1] != self.damage_coef.numel() or version != STATISTICS_VERSION:
            raise ModelConfigError(
                f"this model's change classifier was fitted on {self.damage_coef.numel()} change statistics "
                f"(version {version}), but model.change_features now computes {x.shape[1]} (version "
                f"{STATISTICS_VERSION}): the model predates a change of the statistics; train it again "
                "(striketracker train) and register the new version"
            )
        z = ((x - self.damage_center) / self.damage_scale) @ self.damage_coef + self.damage_intercept
        return F.logsigmoid(z).float(), F.logsigmoid(-z).float()

    # --- prediction -------------------------------------------------------------------------------------------

    @torch.no_grad()
    def date_contexts(
        self, reference: dict[str, torch.Tensor], samples: int
    ) -> dict[tuple[int, int], torch.Tensor]:
        """Date contexts (:func:`model.network.date_context`) of a reference sample of the scene's buildings.

        One ``[T, E]`` context per (member, quarter turn) that :meth:`mc_predict` uses with ``samples``; empty
        when the network does not use date context. Fixing the reference makes every building's prediction
        independent of the batch it happens to be in.
        """
        if not self.network_config.date_context:
            return {}
        was_training = self.training
        self.eval()
        contexts: dict[tuple[int, int], torch.Tensor] = {}
        for m, (net, turns) in enumerate(zip(self.networks, self.sample_turns(samples), strict=True)):
            for k in dict.fromkeys(turns):
                emb = net.embed(
                    torch.rot90(reference["chips"], k, dims=(-2, -1)),
                    torch.rot90(reference["mask"], k, dims=(-2, -1)),
                    reference["valid"],
                )
                contexts[(m, k)] = date_context(emb, reference["valid"])
        self.train(was_training)
        return contexts

    def sample_turns(self, samples: int) -> list[list[int]]:
        """For each ensemble member, the quarter turn of each of its Monte-Carlo samples.

        Member m takes samples m, m + M, m + 2M, ... (at least one each) and sample s is turned s mod 4 times
        (with ``tta``; never with one sample), so the encoder runs once per distinct (member, turn) pair.
        """
        members = len(self.networks)
        samples = max(int(samples), 1)
        quarter_turns = 4 if self.hparams.get("tta", False) and samples > 1 else 1
        return [[s % quarter_turns for s in range(m, max(samples, members), members)] for m in range(members)]

    @torch.no_grad()
    def mc_predict(
        self,
        batch: dict[str, torch.Tensor],
        samples: int,
        contexts: dict[tuple[int, int], torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Monte-Carlo dropout posterior of a batch.

        ``contexts`` are the date contexts of a reference sample (:meth:`date_contexts`); without them a network
        with date context takes the batch's own (as in training).

        Returns:
            ``row``, ``probs`` ``[B, T + 1]`` (mean over samples), ``entropy`` (of the mean), ``bald``
            (entropy of the mean minus mean entropy), ``loglik`` (deterministic gap log-likelihood, before
            temperature), ``loglik_samples`` ``[B, S, T + 1]`` (per Monte-Carlo sample, before temperature),
            ``log_timing`` ``[B, T + 1]`` (the prior on when, given damage, for
            :func:`model.changepoint.timed_posterior`) and ``p_destroyed`` (final grade, given damaged).
        """
        was_training = self.training
        self.eval()
        chips, mask, valid, days = batch["chips"], batch["mask"], batch["valid"], batch["days"]
        samples = max(int(samples), 1)
        ctx = contexts or {}
        outs: list[DatingOutput] = []
        determ: list[DatingOutput] = []
        for m, (net, turns) in enumerate(zip(self.networks, self.sample_turns(samples), strict=True)):
            embs = {
                k: net.embed(torch.rot90(chips, k, dims=(-2, -1)), torch.rot90(mask, k, dims=(-2, -1)), valid)
                for k in dict.fromkeys(turns)
            }
            determ.append(net.temporal_forward(embs[turns[0]], valid, days, ctx.get((m, turns[0]))))
            if samples == 1:
                outs.append(determ[-1])
                continue
            for module in net.modules():
                if isinstance(module, nn.Dropout):
                    module.train()
            outs += [net.temporal_forward(embs[k], valid, days, ctx.get((m, k))) for k in turns]
            self.eval()
        samples_loglik = torch.stack([o.gap_loglik for o in outs])
        log_posts = torch.stack([self.log_posterior(o) for o in outs])
        if self.has_damage_classifier:
            # whether from the change classifier, when (given damage) from each sample of the network
            log_damaged, log_intact = self.log_damage_probability(batch)
            when = torch.log_softmax(log_posts[..., :-1], dim=-1)
            log_posts = torch.cat(
                [when + log_damaged[:, None], log_intact[None, :, None].expand(len(outs), -1, 1)], dim=-1
            )
        grade = torch.stack([o.grade_logits.softmax(-1) for o in outs])
        deterministic_loglik = (
            determ[0].gap_loglik
            if len(determ) == 1
            else torch.logsumexp(torch.stack([gap_posterior(d.gap_loglik) for d in determ]), dim=0)
        )
        probs = log_posts.exp().mean(dim=0)
        mean_log = torch.log(probs.clamp_min(1e-30))
        entropy = posterior_entropy(mean_log)
        bald = (entropy - posterior_entropy(log_posts).mean(dim=0)).clamp_min(0.0)
        self.train(was_training)
        return {
            "row": batch["row"],
            "probs": probs,
            "entropy": entropy,
            "bald": bald,
            "loglik": deterministic_loglik,
            "loglik_samples": samples_loglik.transpose(0, 1),
            "log_timing": determ[0].log_timing,
            "p_destroyed": grade.mean(dim=0)[:, 1],
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["trained_on"] = self.trained_on

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.trained_on = dict(checkpoint.get("trained_on", {}))


def augment(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same random flip and quarter turn for a whole timeline (and its mask), and a random gain per date."""
    chips, mask = batch["chips"], batch["mask"]
    k = int(torch.randint(0, 4, ()))
    if k:
        chips, mask = torch.rot90(chips, k, dims=(-2, -1)), torch.rot90(mask, k, dims=(-2, -1))
    if bool(torch.randint(0, 2, ())):
        chips, mask = chips.flip(-1), mask.flip(-1)
    gain = torch.empty(chips.shape[:2] + (1, 1, 1)).uniform_(0.85, 1.15)
    chips = (chips.float() * gain).clamp(0, 255).to(torch.uint8)
    return {**batch, "chips": chips, "mask": mask}


def augment_timeline(
    batch: dict[str, torch.Tensor], *, shift_px: int = 0, date_dropout: float = 0.0, crop_prob: float = 0.0
) -> dict[str, torch.Tensor]:
    """Per-date misregistration, dates hidden as by clouds, and leading or trailing dates cut off.

    Hidden dates get validity 0: the network masks them out of attention and the change-point likelihood gives
    them no weight, so the gap target stays valid as it is (the posterior spreads evenly over the gaps the hidden
    dates cannot tell apart, and the label's likelihood sums over them). At least two dates stay visible.
    """
    chips, valid = batch["chips"], batch["valid"]
    b, t = valid.shape
    if shift_px > 0:
        # a loop of rolls: faster on CPU than a batched gather (12 vs 30 ms per batch of 32 x 15)
        offsets = torch.randint(-shift_px, shift_px + 1, (b, t, 2))
        shifted = torch.empty_like(chips)
        for i in range(b):
            for j in range(t):
                dy, dx = int(offsets[i, j, 0]), int(offsets[i, j, 1])
                shifted[i, j] = torch.roll(chips[i, j], (dy, dx), dims=(-2, -1))
        chips = shifted
    keep = torch.ones(b, t, dtype=torch.bool)
    if date_dropout > 0:
        keep &= torch.rand(b, t) >= date_dropout
    if crop_prob > 0 and t > 2:
        cut = torch.rand(b) < crop_prob
        length = torch.randint(1, max(t // 2, 1) + 1, (b,))
        front = torch.rand(b) < 0.5
        index = torch.arange(t)[None]
        hide_front = cut[:, None] & front[:, None] & (index < length[:, None])
        hide_back = cut[:, None] & ~front[:, None] & (index >= t - length[:, None])
        keep &= ~(hide_front | hide_back)
    seen = (valid > 0) & keep
    too_few = seen.sum(dim=1) < 2
    keep[too_few] = True
    return {**batch, "chips": chips, "valid": valid * keep.to(valid.dtype)}
