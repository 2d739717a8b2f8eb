"""The dating network: shapes, invalid dates carrying no evidence, backbones by name, local weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.changepoint import duration_log_prior, gap_posterior
from model.errors import ModelConfigError
from model.network import (
    CHANGE_FEATURES,
    DatingNetwork,
    NetworkConfig,
    build_encoder,
    change_statistics,
    date_context,
)
from tests.model.dating_data import synthetic_chips


def _batch(rng: np.random.Generator, n: int = 4, t: int = 5) -> dict[str, torch.Tensor]:
    arrays, _ = synthetic_chips(rng, n=n, n_dates=t, size=16, cloud_rate=0.0)
    return {
        "chips": torch.from_numpy(arrays.chips.copy()),
        "mask": torch.from_numpy(arrays.mask.copy()),
        "valid": torch.from_numpy(arrays.valid.copy()),
        "days": torch.from_numpy(arrays.days())[None].expand(n, t),
    }


def test_output_shapes_and_normalised_posterior(rng: np.random.Generator) -> None:
    net = DatingNetwork(NetworkConfig(input_size=16)).eval()
    batch = _batch(rng)
    out = net(batch["chips"], batch["mask"], batch["valid"], batch["days"])
    assert (
        out.log_intact.shape == (4, 5) and out.gap_loglik.shape == (4, 6) and out.grade_logits.shape == (4, 2)
    )
    torch.testing.assert_close(out.log_intact.exp() + out.log_damaged.exp(), torch.ones(4, 5))
    torch.testing.assert_close(gap_posterior(out.gap_loglik).exp().sum(-1), torch.ones(4))


def test_an_invalid_date_carries_no_evidence(rng: np.random.Generator) -> None:
    torch.manual_seed(0)
    net = DatingNetwork(NetworkConfig(input_size=16)).eval()
    batch = _batch(rng)
    batch["valid"][:, 2] = 0.0
    before = net(batch["chips"], batch["mask"], batch["valid"], batch["days"]).gap_loglik
    batch["chips"][:, 2] = torch.randint(0, 256, batch["chips"][:, 2].shape, dtype=torch.uint8)
    after = net(batch["chips"], batch["mask"], batch["valid"], batch["days"]).gap_loglik
    torch.testing.assert_close(before, after)


def test_a_valid_date_does_carry_evidence(rng: np.random.Generator) -> None:
    torch.manual_seed(0)
    net = DatingNetwork(NetworkConfig(input_size=16)).eval()
    batch = _batch(rng)
    before = net(batch["chips"], batch["mask"], batch["valid"], batch["days"]).gap_loglik
    batch["chips"][:, 2] = 255 - batch["chips"][:, 2]
    after = net(batch["chips"], batch["mask"], batch["valid"], batch["days"]).gap_loglik
    assert not torch.allclose(before, after)


def test_unknown_backbone_is_a_clear_error() -> None:
    with pytest.raises(ModelConfigError, match="unknown backbone 'vgg99'.*small_cnn"):
        DatingNetwork(NetworkConfig(backbone="vgg99"))


def test_unknown_temporal_model_is_a_clear_error() -> None:
    with pytest.raises(ModelConfigError, match="unknown temporal model 'lstm'"):
        DatingNetwork(NetworkConfig(temporal="lstm"))


def test_gap_prior_is_the_duration_timing_prior_and_unknown_priors_are_clear_errors(
    rng: np.random.Generator,
) -> None:
    batch = _batch(rng)
    batch["days"] = torch.tensor([0.0, 5.0, 50.0, 60.0, 70.0])[None].expand(4, 5)
    torch.manual_seed(0)
    flat = DatingNetwork(NetworkConfig(input_size=16, gap_prior="uniform")).eval()
    torch.manual_seed(0)
    timed = DatingNetwork(NetworkConfig(input_size=16, gap_prior="duration")).eval()
    args = (batch["chips"], batch["mask"], batch["valid"], batch["days"])
    torch.testing.assert_close(timed(*args).gap_loglik, flat(*args).gap_loglik)  # the evidence is the same
    torch.testing.assert_close(timed(*args).log_timing, duration_log_prior(batch["days"]))
    torch.testing.assert_close(flat(*args).log_timing, torch.zeros(4, 6))
    with pytest.raises(
        ModelConfigError, match="unknown gap_prior 'poisson'; choose one of duration, uniform"
    ):
        DatingNetwork(NetworkConfig(gap_prior="poisson"))


def test_too_few_bands_is_a_clear_error_and_extra_bands_are_ignored(rng: np.random.Generator) -> None:
    batch = _batch(rng)
    with pytest.raises(ModelConfigError, match="chips have 4 bands"):
        DatingNetwork(NetworkConfig(in_channels=5, input_size=16))(
            batch["chips"], batch["mask"], batch["valid"], batch["days"]
        )
    torch.manual_seed(0)
    rgb = DatingNetwork(NetworkConfig(in_channels=3, input_size=16)).eval()
    before = rgb(batch["chips"], batch["mask"], batch["valid"], batch["days"]).gap_loglik
    batch["chips"][:, :, 3] = 0  # an RGB-only sensor: NIR missing
    after = rgb(batch["chips"], batch["mask"], batch["valid"], batch["days"]).gap_loglik
    torch.testing.assert_close(before, after)


def test_resnet18_backbone_runs_without_weights(rng: np.random.Generator) -> None:
    net = DatingNetwork(NetworkConfig(backbone="resnet18", input_size=16)).eval()
    batch = _batch(rng, n=2, t=3)
    assert net(batch["chips"], batch["mask"], batch["valid"], batch["days"]).gap_loglik.shape == (2, 4)


def test_encoder_loads_a_local_weights_file(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = build_encoder(NetworkConfig(), 5)
    path = tmp_path / "encoder.pt"
    torch.save(source.state_dict(), path)
    loaded = build_encoder(NetworkConfig(weights_path=str(path)), 5)
    for a, b in zip(source.state_dict().values(), loaded.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


def test_weights_file_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError, match="no such file"):
        build_encoder(NetworkConfig(weights_path=str(tmp_path / "missing.pt")), 5)
    path = tmp_path / "other.pt"
    torch.save(build_encoder(NetworkConfig(width=8), 5).state_dict(), path)
    with pytest.raises(ModelConfigError, match="does not fit backbone 'small_cnn'"):
        build_encoder(NetworkConfig(weights_path=str(path)), 5)


def test_footprint_zoom_magnifies_small_buildings_and_leaves_large_ones_as_cropped() -> None:
    torch.manual_seed(0)
    chips = torch.randint(0, 255, (3, 2, 4, 64, 64), dtype=torch.uint8)
    mask = torch.zeros(3, 64, 64, dtype=torch.uint8)
    mask[0, 27:37, 27:37] = 255  # 100 px: a window of 2 x 10 = 20 px, seen at 32 px
    mask[1, 16:48, 16:48] = 255  # large: the plain 32 px centre crop
    mask[2, 30:34, 30:34] = 255  # tiny: at most twice the resolution (a 16 px window)
    net = DatingNetwork(NetworkConfig(input_size=32, footprint_zoom=2.0)).eval()
    x, m = net._zoomed(chips, mask, 32)
    assert x.shape == (6, 4, 32, 32) and m.shape == (3, 1, 32, 32)
    inside = (m[:, 0] > 127).flatten(1).sum(dim=1).tolist()
    assert inside[0] == pytest.approx(100 * (32 / 20) ** 2, rel=0.1)
    assert inside[2] == pytest.approx(16 * 4, rel=0.1)
    # the plain crop, up to float rounding of the sampling grid (values are 0..255)
    torch.testing.assert_close(x[2:4], chips[1, :, :, 16:48, 16:48].float(), atol=0.01, rtol=0)
    plain = DatingNetwork(NetworkConfig(input_size=32)).eval()
    net.load_state_dict(plain.state_dict())
    args = (chips[1:2], mask[1:2], torch.ones(1, 2), torch.tensor([[0.0, 10.0]]))
    torch.testing.assert_close(net(*args).gap_loglik, plain(*args).gap_loglik, atol=1e-3, rtol=1e-4)
    with pytest.raises(ModelConfigError, match="footprint_zoom must be 0"):
        DatingNetwork(NetworkConfig(footprint_zoom=-1.0))


def test_date_context_averages_each_date_over_the_clear_chips_only() -> None:
    emb = torch.tensor([[[1.0], [10.0]], [[3.0], [20.0]], [[100.0], [30.0]]])  # 3 buildings, 2 dates, E = 1
    seen = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    assert date_context(emb, seen)[:, 0].tolist() == [2.0, 10.0]
    assert date_context(emb, torch.zeros(3, 2))[:, 0].tolist() == pytest.approx([104 / 3, 20.0])


def test_a_date_context_network_compares_each_chip_with_the_given_context(rng: np.random.Generator) -> None:
    torch.manual_seed(0)
    net = DatingNetwork(NetworkConfig(input_size=16, date_context=True)).eval()
    batch = _batch(rng)
    emb = net.embed(batch["chips"], batch["mask"])
    own = net.temporal_forward(emb, batch["valid"], batch["days"])
    same = net.temporal_forward(emb, batch["valid"], batch["days"], date_context(emb, torch.ones(4, 5)))
    other = net.temporal_forward(emb, batch["valid"], batch["days"], torch.zeros(5, emb.shape[-1]))
    torch.testing.assert_close(own.gap_loglik, same.gap_loglik)
    assert not torch.allclose(own.gap_loglik, other.gap_loglik)


def test_change_statistics_are_zero_without_change_and_see_a_changed_footprint(
    rng: np.random.Generator,
) -> None:
    base = rng.integers(40, 200, size=(1, 1, 3, 32, 32)).astype(np.uint8)
    chips = torch.from_numpy(np.repeat(base, 3, axis=1))
    mask = torch.zeros(1, 32, 32)
    mask[:, 10:22, 10:22] = 255
    # date 1: the same scene under another sensor (gain and offset); date 2: the footprint is rubble
    chips[0, 1] = (chips[0, 1].float() * 0.8 + 20).round().to(torch.uint8)
    chips[0, 2, :, 10:22, 10:22] = torch.from_numpy(rng.integers(0, 255, size=(3, 12, 12)).astype(np.uint8))
    valid = torch.tensor([[0.0, 1.0, 1.0]])  # date 0 is hidden: date 1 is the reference
    stats = change_statistics(chips, mask, valid)
    assert stats.shape == (1, 3, CHANGE_FEATURES)
    torch.testing.assert_close(
        stats[0, 1], torch.zeros(CHANGE_FEATURES), atol=0.02, rtol=0
    )  # sensor change only
    d_fp, d_all, decorrelation = stats[0, 2, 0], stats[0, 2, 1], stats[0, 2, 2]
    assert d_fp > 0.5 and d_fp > 2 * d_all and decorrelation > 0.5  # the change is on the building


def test_change_features_widen_the_embedding_and_run_through_prediction(rng: np.random.Generator) -> None:
    from model.task import DatingTask

    batch = {**_batch(rng), "row": torch.arange(4)}
    net = DatingNetwork(NetworkConfig(input_size=16, change_features=True, date_context=True)).eval()
    emb = net.embed(batch["chips"], batch["mask"], batch["valid"])
    assert emb.shape == (4, 5, 32 + CHANGE_FEATURES)
    stats = change_statistics(batch["chips"], batch["mask"], batch["valid"], bands=4)  # in_channels 4
    torch.testing.assert_close(emb[..., 32:], stats)
    task = DatingTask(input_size=16, change_features=True, date_context=True)
    out = task.mc_predict(batch, 4, task.date_contexts(batch, 4))
    torch.testing.assert_close(out["probs"].sum(-1), torch.ones(4))
