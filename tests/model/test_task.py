"""The LightningModule: the gap loss, learning on synthetic timelines, MC-dropout uncertainty, temperature."""

from __future__ import annotations

import json
from pathlib import Path
from unittest.mock import patch

import lightning as L
import numpy as np
import pytest
import torch

from model.calibration import fit_temperature, gap_nll
from model.changepoint import gap_posterior
from model.datamodule import ChipDataModule, ChipDataset
from model.errors import ModelConfigError
from model.predict import date_contexts, predict, reference_batch, reference_rows, write_posteriors
from model.task import DatingTask, augment_timeline
from tests.model.dating_data import exact_labels, synthetic_chips

pytestmark = pytest.mark.usefixtures("one_thread")


def test_interval_loss_marginalises_and_soft_loss_is_the_label_likelihood() -> None:
    log_post = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4]]))
    target = torch.tensor([[0.0, 1.0, 1.0, 0.0], [0.75, 0.25, 0.0, 0.0]])
    interval = torch.tensor([True, False])
    nll = gap_nll(log_post, target, interval)
    torch.testing.assert_close(nll[0], -torch.log(torch.tensor(0.5)))
    torch.testing.assert_close(nll[1], -torch.log(torch.tensor(0.75 * 0.1 + 0.25 * 0.2)))


def test_soft_label_loss_is_minimised_by_a_sharp_posterior_on_the_likely_gap() -> None:
    target = torch.tensor([[0.6, 0.4, 0.0]])
    sharp = torch.log(torch.tensor([[1.0 - 2e-6, 1e-6, 1e-6]]))
    copy = torch.log(torch.tensor([[0.6, 0.4, 1e-6]]))
    assert gap_nll(sharp, target) < gap_nll(copy, target)


def _trainer(epochs: int) -> L.Trainer:
    return L.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )


def test_training_learns_the_gap_of_synthetic_timelines(rng: np.random.Generator) -> None:
    L.seed_everything(0)
    arrays, gaps = synthetic_chips(rng, n=32, n_dates=5, size=16)
    data = ChipDataModule(chip_arrays=arrays, gap_labels=exact_labels(arrays, gaps), batch_size=8)
    task = DatingTask(input_size=16, width=8, embed_dim=16, d_model=16, heads=2, layers=1, lr=1e-2)
    trainer = _trainer(10)
    trainer.fit(task, datamodule=data)
    metrics = (
        trainer.callback_metrics
    )  # train_* is scored on augmented timelines (hidden dates), val_* is not
    assert float(metrics["val_exact"]) >= 0.8
    assert float(metrics["val_within1"]) >= 0.8


def test_mc_predict_gives_normalised_probs_and_nonnegative_bald(rng: np.random.Generator) -> None:
    torch.manual_seed(0)
    arrays, _ = synthetic_chips(rng, n=6, n_dates=4, size=16)
    batch = next(iter(torch.utils.data.DataLoader(ChipDataset(arrays, np.arange(6)), batch_size=6)))
    task = DatingTask(input_size=16, dropout=0.3).eval()
    out = task.mc_predict(batch, samples=6)
    torch.testing.assert_close(out["probs"].sum(-1), torch.ones(6))
    assert (out["bald"] >= 0).all() and (out["bald"] > 0).any()
    assert (out["bald"] <= out["entropy"] + 1e-6).all()
    single = task.mc_predict(batch, samples=1)
    torch.testing.assert_close(single["bald"], torch.zeros(6))
    assert not task.training


def test_temperature_scaling_recovers_a_known_temperature() -> None:
    gen = torch.Generator().manual_seed(0)
    true_t = 2.5
    loglik = 4.0 * torch.randn(4000, 7, generator=gen, dtype=torch.float64)
    calibrated = gap_posterior(loglik / true_t).exp()
    gaps = torch.multinomial(calibrated, 1, generator=gen).squeeze(1)
    target = torch.nn.functional.one_hot(gaps, 7).double()
    fitted = fit_temperature(loglik, target, torch.zeros(4000, dtype=torch.bool))
    assert abs(fitted - true_t) < 0.25


def test_temperature_scales_confidence_but_not_the_map(rng: np.random.Generator) -> None:
    torch.manual_seed(0)
    arrays, _ = synthetic_chips(rng, n=5, n_dates=4, size=16)
    batch = next(iter(torch.utils.data.DataLoader(ChipDataset(arrays, np.arange(5)), batch_size=5)))
    task = DatingTask(input_size=16)
    cold = task.mc_predict(batch, 1)["probs"]
    task.temperature.fill_(3.0)
    hot = task.mc_predict(batch, 1)["probs"]
    assert torch.equal(cold.argmax(-1), hot.argmax(-1))
    assert (hot.max(-1).values <= cold.max(-1).values + 1e-6).all()


def test_the_duration_prior_never_moves_a_building_between_damaged_and_intact(
    rng: np.random.Generator,
) -> None:
    """Issue #11: on closely spaced dates the prior must time the damage, not hide it, at any temperature."""
    arrays, _ = synthetic_chips(rng, n=6, n_dates=4, size=16)
    batch = next(iter(torch.utils.data.DataLoader(ChipDataset(arrays, np.arange(6)), batch_size=6)))
    batch["days"] = torch.tensor([0.0, 90.0, 92.0, 300.0])[None].expand(6, 4)
    torch.manual_seed(0)
    flat = DatingTask(input_size=16, gap_prior="uniform").eval()
    torch.manual_seed(0)
    timed = DatingTask(input_size=16, gap_prior="duration").eval()
    for temperature in (1.0, 0.4, 3.0):
        flat.temperature.fill_(temperature)
        timed.temperature.fill_(temperature)
        p_flat = flat.log_posterior(flat(batch)).exp()
        p_timed = timed.log_posterior(timed(batch)).exp()
        torch.testing.assert_close(p_timed[:, -1], p_flat[:, -1])
        assert not torch.allclose(p_timed[:, 1:3], p_flat[:, 1:3])  # it does re-time the damage


def test_temperature_fit_over_mc_samples_matches_single_sample_case() -> None:
    gen = torch.Generator().manual_seed(1)
    loglik = 3.0 * torch.randn(500, 5, generator=gen, dtype=torch.float64)
    gaps = torch.multinomial(gap_posterior(loglik / 2.0).exp(), 1, generator=gen).squeeze(1)
    target = torch.nn.functional.one_hot(gaps, 5).double()
    flat = fit_temperature(loglik, target, torch.zeros(500, dtype=torch.bool))
    stacked = fit_temperature(loglik[None].repeat(3, 1, 1), target, torch.zeros(500, dtype=torch.bool))
    assert flat == pytest.approx(stacked, rel=1e-6)


def _timeline_batch(b: int = 6, t: int = 10) -> dict[str, torch.Tensor]:
    chips = torch.randint(0, 255, (b, t, 4, 16, 16), dtype=torch.uint8)
    valid = torch.ones(b, t)
    if t > 3:
        valid[0, 3] = 0.0  # a cloud already hides one date
    return {"chips": chips, "mask": torch.ones(b, 16, 16, dtype=torch.uint8) * 255, "valid": valid}


def test_timeline_augmentation_hides_dates_only_by_validity_and_keeps_two_visible() -> None:
    torch.manual_seed(0)
    batch = _timeline_batch()
    for _ in range(50):
        out = augment_timeline(batch, date_dropout=0.9, crop_prob=1.0)
        assert torch.equal(out["chips"], batch["chips"])  # no shift asked for
        assert ((out["valid"] == 0) | (out["valid"] == batch["valid"])).all()
        assert out["valid"][0, 3] == 0.0  # what was hidden stays hidden
        assert ((out["valid"] > 0).sum(dim=1) >= 2).all()


def test_timeline_crop_hides_a_leading_or_trailing_run() -> None:
    torch.manual_seed(1)
    batch = _timeline_batch(b=64)
    batch["valid"][:] = 1.0
    out = augment_timeline(batch, crop_prob=1.0)
    hidden = out["valid"] == 0
    assert hidden.any(dim=1).all()  # every timeline was cut
    for row in hidden:
        idx = torch.nonzero(row).flatten()
        contiguous = bool((idx.diff() == 1).all()) if len(idx) > 1 else True
        assert contiguous and (idx[0] == 0 or idx[-1] == len(row) - 1)
    assert bool(hidden[:, 0].any()) and bool(hidden[:, -1].any())  # both ends occur


def test_timeline_shift_moves_each_date_by_at_most_shift_px() -> None:
    torch.manual_seed(2)
    batch = _timeline_batch(b=2, t=3)
    out = augment_timeline(batch, shift_px=2)
    for i in range(2):
        for j in range(3):
            matches = [
                torch.equal(out["chips"][i, j], torch.roll(batch["chips"][i, j], (dy, dx), dims=(-2, -1)))
                for dy in range(-2, 3)
                for dx in range(-2, 3)
            ]
            assert any(matches)
    assert torch.equal(out["mask"], batch["mask"])  # the footprint stays where the map puts it


def test_pseudo_labels_keep_confident_unlabelled_buildings_with_their_posterior() -> None:
    from model.predict import Predictions, pseudo_labels

    probs = np.array(
        [[0.95, 0.03, 0.02], [0.5, 0.4, 0.1], [0.01, 0.01, 0.98], [0.92, 0.04, 0.04]], dtype=np.float32
    )
    preds = Predictions(
        building_ids=("a", "b", "c", "d"),
        probs=probs,
        loglik=np.log(probs),
        entropy=np.zeros(4),
        bald=np.zeros(4),
        p_destroyed=np.array([0.9, 0.2, 0.7, 0.1]),
    )
    labels = pseudo_labels(preds, min_confidence=0.9, exclude=["d"], block_ids={"a": "k1", "c": "k2"})
    assert labels is not None
    assert labels.building_ids == ("a", "c")  # b is unsure, d has a real label
    np.testing.assert_allclose(labels.target, probs[[0, 2]], rtol=1e-6)
    assert list(labels.grade) == [1, -1]  # a: damaged and likely destroyed; c: intact, no grade
    assert labels.block_ids == ("k1", "k2")
    assert pseudo_labels(preds, min_confidence=0.99) is None
    with pytest.raises(ValueError, match="min_confidence"):
        pseudo_labels(preds, min_confidence=0.0)


def test_an_ensemble_trains_every_member_and_shares_the_encoder_passes(rng: np.random.Generator) -> None:
    L.seed_everything(0)
    arrays, gaps = synthetic_chips(rng, n=16, n_dates=4, size=16)
    data = ChipDataModule(chip_arrays=arrays, gap_labels=exact_labels(arrays, gaps), batch_size=8)
    task = DatingTask(input_size=16, width=8, embed_dim=16, d_model=16, heads=2, layers=1, members=2)
    before = [p.detach().clone() for p in task.extra_nets.parameters()]
    _trainer(1).fit(task, datamodule=data)
    assert any(not torch.equal(a, b) for a, b in zip(before, task.extra_nets.parameters(), strict=True))

    batch = next(iter(torch.utils.data.DataLoader(ChipDataset(arrays, np.arange(6)), batch_size=6)))
    calls = {"n": 0}
    for net in task.networks:
        original = net.embed

        def counted(*args: torch.Tensor, _f=original) -> torch.Tensor:  # type: ignore[no-untyped-def]
            calls["n"] += 1
            return _f(*args)

        net.embed = counted  # type: ignore[method-assign]
    out = task.mc_predict(batch, samples=8)
    assert calls["n"] == 4  # two members x two quarter turns each, as one network's four turns would cost
    torch.testing.assert_close(out["probs"].sum(dim=1), torch.ones(6))
    assert out["loglik_samples"].shape[1] == 8
    assert (out["bald"] >= 0).all()
    deterministic = task.mc_predict(batch, samples=1)
    assert deterministic["loglik_samples"].shape[1] == 2  # each member once, without dropout


def test_an_ensemble_needs_a_member() -> None:
    with pytest.raises(ModelConfigError, match="members"):
        DatingTask(members=0)


def test_date_context_makes_a_prediction_independent_of_its_batch(
    rng: np.random.Generator, tmp_path: Path
) -> None:
    """With a fixed reference sample, a building gets the same posterior alone, in any batch, in any order."""
    torch.manual_seed(0)
    arrays, _ = synthetic_chips(rng, n=40, n_dates=4, size=16)
    task = DatingTask(input_size=16, width=8, embed_dim=16, d_model=16, heads=2, layers=1, date_context=True)
    task.eval()
    # deterministic (one sample): Monte-Carlo dropout masks differ from call to call anyway
    everyone = predict(task, arrays, mc_samples=1, progress=False)
    alone = predict(task, arrays, [7], mc_samples=1, progress=False)
    shuffled = predict(task, arrays, [30, 7, 2], mc_samples=1, batch_size=2, progress=False)
    torch.testing.assert_close(torch.from_numpy(alone.probs[0]), torch.from_numpy(everyone.probs[7]))
    torch.testing.assert_close(torch.from_numpy(shuffled.probs[1]), torch.from_numpy(everyone.probs[7]))
    # the evidence names the reference buildings, and the posterior table's metadata carries them
    assert alone.context_buildings == tuple(arrays.building_ids[r] for r in reference_rows(arrays))
    meta = json.loads(
        (
            write_posteriors(
                alone,
                arrays.dates,
                tmp_path,
                model_version="v",
                data_fingerprint="f",
                mc_samples=1,
                temperature=1.0,
            )
            / "meta.json"
        ).read_text()
    )
    assert (
        meta["date_context_buildings"] == list(alone.context_buildings)
        and len(meta["date_context_buildings"]) == 40
    )
    # contexts encoded once (as the ML backend keeps them) give the same posterior, and are not recomputed
    once = date_contexts(task, arrays, mc_samples=1)
    with patch.object(DatingTask, "date_contexts", side_effect=AssertionError("recomputed")):
        reused = predict(task, arrays, [7], mc_samples=1, progress=False, contexts=once)
    torch.testing.assert_close(torch.from_numpy(reused.probs[0]), torch.from_numpy(everyone.probs[7]))
    assert reused.context_buildings == alone.context_buildings
    # contexts for another number of samples are not used: they are computed again
    recompute = patch.object(DatingTask, "date_contexts", side_effect=AssertionError("recomputed"))
    with pytest.raises(AssertionError, match="recomputed"), recompute:
        predict(task, arrays, [7], mc_samples=2, progress=False, contexts=once)
    # without a reference, the network falls back on its batch (as in training): the answer then depends on it
    batch = next(iter(torch.utils.data.DataLoader(ChipDataset(arrays, np.arange(40)), batch_size=40)))
    small = {k: v[7:8] for k, v in batch.items()}
    in_batch = task.mc_predict(batch, samples=1)["probs"][7]
    by_itself = task.mc_predict(small, samples=1)["probs"][0]
    assert not torch.allclose(in_batch, by_itself)


def test_date_contexts_come_from_a_fixed_seeded_sample_of_the_cache(rng: np.random.Generator) -> None:
    arrays, _ = synthetic_chips(rng, n=40, n_dates=4, size=16)
    rows = reference_rows(arrays, 16)
    assert len(rows) == 16 and len(set(rows.tolist())) == 16 and (np.diff(rows) > 0).all()
    assert (reference_rows(arrays, 16) == rows).all()
    assert len(reference_rows(arrays, 100)) == 40  # a small cache: all of it
    plain = DatingTask(input_size=16)
    assert plain.date_contexts(reference_batch(arrays, 8), samples=8) == {}
    task = DatingTask(input_size=16, width=8, embed_dim=16, d_model=16, heads=2, layers=1, date_context=True)
    contexts = task.date_contexts(reference_batch(arrays, 8), samples=8)
    assert set(contexts) == {
        (0, 0),
        (0, 1),
        (0, 2),
        (0, 3),
    }  # one per quarter turn of the Monte-Carlo samples
    assert contexts[(0, 0)].shape == (4, 16)


def test_init_weights_start_from_a_saved_model_and_refuse_another_architecture(
    rng: np.random.Generator, tmp_path: Path
) -> None:
    arrays, _ = synthetic_chips(rng, n=4, n_dates=3, size=16)
    batch = next(iter(torch.utils.data.DataLoader(ChipDataset(arrays, np.arange(4)), batch_size=4)))
    torch.manual_seed(0)
    teacher = DatingTask(input_size=16, width=8).eval()
    teacher.temperature.fill_(2.0)
    path = tmp_path / "teacher.pt"
    torch.save(teacher.state_dict(), path)
    torch.manual_seed(1)
    student = DatingTask(input_size=16, width=8, init_weights=str(path)).eval()
    torch.testing.assert_close(student(batch).gap_loglik, teacher(batch).gap_loglik)
    assert float(student.temperature) == 1.0  # calibration is refitted after fine-tuning
    with pytest.raises(ModelConfigError, match="does not fit this model"):
        DatingTask(input_size=16, width=16, init_weights=str(path))
    with pytest.raises(ModelConfigError, match="no such file"):
        DatingTask(init_weights=str(tmp_path / "missing.pt"))
