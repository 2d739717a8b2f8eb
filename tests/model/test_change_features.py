"""Pre/post change features and the change classifier (model.change_features), on tiny generated chips, and
the classifier inside the dating model (``damage_classifier``): fitted by the training, kept in the model's state,
applied at prediction."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from model.change_features import (
    C_GRID,
    DEFAULT_C,
    FEATURE_SETS,
    FOOTPRINT_FEATURES,
    ChangeClassifier,
    building_change_features,
    choose_classifier,
    feature_names,
    gap_probabilities,
)
from model.datamodule import ChipArrays, ChipDataModule, GapLabels
from model.errors import ModelConfigError
from model.predict import predict
from model.task import DatingTask
from model.training import finish_training

SIZE = 32


def make_chips(rng: np.random.Generator, n: int, damaged: np.ndarray) -> ChipArrays:
    """Textured houses on a smooth ground; a damaged house's footprint is new noise after the event."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    mask = np.zeros((n, SIZE, SIZE), dtype=np.uint8)
    mask[:, 10:22, 10:22] = 255
    chips = np.zeros((n, 2, 3, SIZE, SIZE), dtype=np.uint8)
    for i in range(n):
        ground = 90 + 30 * np.sin(xx / 5.0 + i) * np.cos(yy / 7.0)
        roof = 170 + 20 * ((xx // 3 + yy // 3) % 2)
        pre = np.where(mask[i] > 0, roof, ground)
        post = pre.copy()
        if damaged[i]:
            post = np.where(mask[i] > 0, rng.integers(40, 220, (SIZE, SIZE)), ground)
        gain = rng.uniform(0.8, 1.2)  # each date's radiometry differs: the features must not care
        chips[i, 0] = np.clip(pre, 0, 255)[None]
        chips[i, 1] = np.clip(gain * post + rng.normal(0, 3, (SIZE, SIZE)), 0, 255)[None]
    return ChipArrays(
        building_ids=tuple(f"b{i}" for i in range(n)),
        dates=(dt.date(2020, 1, 1), dt.date(2020, 6, 1)),
        chips=chips,
        mask=mask,
        valid=np.ones((n, 2), dtype=np.float32),
    )


def test_features_have_their_named_columns_and_separate_damaged_from_intact(rng: np.random.Generator) -> None:
    damaged = np.arange(24) % 2 == 0
    chips = make_chips(rng, 24, damaged)
    x = building_change_features(chips, np.arange(24), batch_size=7)  # batches must not change anything
    names = feature_names()
    assert x.shape == (24, len(names)) and np.isfinite(x).all()
    for name in ("footprint_dissimilarity", "footprint_decorrelation"):
        column = x[:, names.index(name)]
        assert column[damaged].min() > column[~damaged].max(), name


def test_damage_finer_than_a_metre_is_seen() -> None:
    """xBD's minor damage (missing roof elements) is half-metre texture: a roof whose fine pattern is gone,
    same mean brightness, must look changed (2x2 pooling, the earlier version, averaged it away)."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    mask = np.zeros((2, SIZE, SIZE), dtype=np.uint8)
    mask[:, 10:22, 10:22] = 255
    ground = 90 + 30 * np.sin(xx / 5.0) * np.cos(yy / 7.0)
    roof = np.where(mask[0] > 0, 150 + 40 * ((xx + yy) % 2), ground)  # a one-pixel checker
    smooth = np.where(mask[0] > 0, 150.0, ground)  # the same roof with its fine pattern gone
    chips = np.zeros((2, 2, 3, SIZE, SIZE), dtype=np.uint8)
    chips[:, 0] = roof[None]
    chips[0, 1] = roof[None]
    chips[1, 1] = smooth[None]
    arrays = ChipArrays(
        building_ids=("same", "finer"),
        dates=(dt.date(2020, 1, 1), dt.date(2020, 6, 1)),
        chips=chips,
        mask=mask,
        valid=np.ones((2, 2), dtype=np.float32),
    )
    x = building_change_features(arrays, np.arange(2))
    names = feature_names()
    for name in ("footprint_dissimilarity", "footprint_decorrelation", "footprint_entropy"):
        same, finer = x[:, names.index(name)]
        assert abs(same) < 1e-3 and abs(finer) > 0.3, name


def test_a_post_image_a_pixel_off_does_not_make_an_intact_roof_look_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Deliveries are rarely registered to the pixel (the Joplin tiles are about one pixel apart): the post chip
    is shifted back onto the pre chip before the dates are compared."""
    import model.change_features as change_features

    yy, xx = np.mgrid[:SIZE, :SIZE]
    mask = np.zeros((3, SIZE, SIZE), dtype=np.uint8)
    mask[:, 10:22, 10:22] = 255
    ground = 90 + 30 * np.sin(xx / 5.0) * np.cos(yy / 7.0)
    pre = np.where(mask[0] > 0, 150 + 40 * ((xx // 2 + yy // 2) % 2), ground)
    chips = np.zeros((3, 2, 3, SIZE, SIZE), dtype=np.uint8)
    chips[:, 0] = pre[None]
    chips[0, 1] = pre[None]
    chips[1, 1] = np.roll(pre, 1, axis=1)[None]  # one pixel right
    chips[2, 1] = np.roll(pre, (-1, 1), axis=(0, 1))[None]  # one pixel up and one right
    arrays = ChipArrays(
        building_ids=("registered", "down", "diagonal"),
        dates=(dt.date(2020, 1, 1), dt.date(2020, 6, 1)),
        chips=chips,
        mask=mask,
        valid=np.ones((3, 2), dtype=np.float32),
    )
    column = feature_names().index("footprint_decorrelation")
    shifted_back = building_change_features(arrays, np.arange(3))[:, column]
    np.testing.assert_allclose(shifted_back, 0.0, atol=1e-6)
    monkeypatch.setattr(change_features, "ALIGN_PX", 0)  # compared as delivered
    as_delivered = building_change_features(arrays, np.arange(3))[:, column]
    assert as_delivered[0] < 1e-6 and (as_delivered[1:] > 0.5).all()


def test_a_new_blue_tarp_on_the_roof_is_seen_and_a_blue_roof_is_not(rng: np.random.Generator) -> None:
    """Emergency roof tarps mark minor damage: a tarp put on after the event counts, whatever each date's
    brightness; a roof that was blue before and after does not."""
    chips = make_chips(rng, 3, np.zeros(3, dtype=bool)).chips.copy()
    tarp = (slice(12, 18), slice(12, 20))  # 48 of the footprint's 144 pixels
    chips[0, 1, :, tarp[0], tarp[1]] = np.array([40, 70, 160])[:, None, None]  # a tarp after the event
    chips[1, :, :, 10:22, 10:22] = np.array([50, 80, 170])[:, None, None]  # a blue roof on both dates
    chips[2, 1] = (chips[2, 1] * 0.6).astype(np.uint8)  # a darker acquisition of a grey house
    arrays = ChipArrays(
        building_ids=("tarp", "blue roof", "darker"),
        dates=(dt.date(2020, 1, 1), dt.date(2020, 6, 1)),
        chips=chips,
        mask=make_chips(rng, 3, np.zeros(3, dtype=bool)).mask,
        valid=np.ones((3, 2), dtype=np.float32),
    )
    tarps = building_change_features(arrays, np.arange(3))[:, feature_names().index("footprint_tarp")]
    np.testing.assert_allclose(tarps, [48 / 144, 0.0, 0.0])
    assert all("footprint_tarp" in columns for columns in FEATURE_SETS.values())


def test_the_written_out_image_operators_match_the_libraries() -> None:
    """Dilation, Sobel and the box window are written out for speed (see model.change_features); they must
    agree with kornia's and torch's."""
    import kornia
    import torch.nn.functional as F

    from model.change_features import _box, _dilate, _sobel

    gen = torch.Generator().manual_seed(0)
    m = (torch.rand(3, 1, 24, 20, generator=gen) > 0.95).float()
    torch.testing.assert_close(_dilate(m, 3), kornia.morphology.dilation(m, torch.ones(7, 7)))
    g = torch.rand(3, 1, 24, 20, generator=gen)
    torch.testing.assert_close(_sobel(g), kornia.filters.sobel(g), rtol=1e-4, atol=1e-5)
    v = torch.rand(2, 3, 24, 20, generator=gen)
    torch.testing.assert_close(_box(v, 5), F.avg_pool2d(v, 5, 1, 2, count_include_pad=False))


def test_the_classifier_learns_damage_from_the_footprint_features(rng: np.random.Generator) -> None:
    damaged = rng.random(60) < 0.7
    damaged[:2] = (True, False)
    chips = make_chips(rng, 60, damaged)
    x = building_change_features(chips, np.arange(60))
    columns = tuple(feature_names().index(n) for n in FOOTPRINT_FEATURES)
    clf = ChangeClassifier(columns=columns).fit(x[:40], damaged[:40])
    p = clf.predict_damaged(x[40:])
    assert p.shape == (20,) and ((p > 0.5) == damaged[40:]).all()


def test_the_l2_strength_is_chosen_by_spatial_cross_validation(rng: np.random.Generator) -> None:
    n = 120
    damaged = rng.random(n) < 0.5
    signal = damaged + rng.normal(0, 0.3, n)  # one informative column among noise
    x = np.column_stack([signal, rng.normal(size=(n, 8))])
    groups = np.repeat(np.arange(12), 10)
    assert ChangeClassifier().fit(x, damaged).c_ == DEFAULT_C  # no groups: nothing to cross-validate
    assert ChangeClassifier().fit(x, damaged, np.zeros(n)).c_ == DEFAULT_C  # one group: same
    clf = ChangeClassifier().fit(x, damaged, groups)
    assert clf.c_ in C_GRID and clf.c_ > min(C_GRID)  # a clean signal is not shrunk to the strongest penalty
    assert ChangeClassifier(c=0.5).fit(x, damaged, groups).c_ == 0.5  # a given strength is kept


def test_the_classifier_refuses_labels_of_one_class(rng: np.random.Generator) -> None:
    with pytest.raises(ModelConfigError, match="0 damaged of 5"):
        ChangeClassifier().fit(rng.normal(size=(5, 3)), np.zeros(5, dtype=bool))
    with pytest.raises(ModelConfigError, match="not fitted"):
        ChangeClassifier().predict_damaged(rng.normal(size=(5, 3)))
    with pytest.raises(ModelConfigError, match="unknown classifier 'forest'"):
        ChangeClassifier(kind="forest")


def test_gap_probabilities_take_whether_from_the_classifier_and_when_from_the_timing() -> None:
    timing = np.array([[0.1, 0.3, 0.6], [0.0, 0.0, 1.0]])
    probs = gap_probabilities(np.array([0.8, 0.5]), timing)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    np.testing.assert_allclose(probs[0], [0.2, 0.6, 0.2])
    np.testing.assert_allclose(probs[1], [0.25, 0.25, 0.5])  # no damaged mass in the timing: spread evenly


def test_the_simplest_feature_set_within_one_standard_error_is_chosen(rng: np.random.Generator) -> None:
    n = 160
    damaged = rng.random(n) < 0.6
    names = feature_names()
    x = rng.normal(size=(n, len(names)))
    x[:, names.index("footprint_dissimilarity")] += 2.0 * damaged  # the signal is in the footprint
    groups = np.repeat(np.arange(16), 10)
    clf = choose_classifier(x, damaged, groups)
    assert clf.feature_set == "footprint" and clf.c_ in C_GRID and np.isfinite(clf.cv_loss_)
    assert clf.columns == tuple(names.index(c) for c in FEATURE_SETS["footprint"])
    assert ((clf.predict_damaged(x) > 0.5) == damaged).mean() > 0.8
    # a signal only the ring sees: the footprint alone is clearly worse, the larger set is chosen
    x[:, names.index("footprint_dissimilarity")] -= 2.0 * damaged
    x[:, names.index("ring_dissimilarity")] += 3.0 * damaged
    assert choose_classifier(x, damaged, groups).feature_set == "footprint_ring"
    # nothing to cross-validate: the footprint set at the default strength
    fallback = choose_classifier(x, damaged, None)
    assert (fallback.feature_set, fallback.c_) == ("footprint", DEFAULT_C) and np.isnan(fallback.cv_loss_)


def test_linear_parameters_reproduce_the_classifier(rng: np.random.Generator) -> None:
    n, names = 80, feature_names()
    damaged = rng.random(n) < 0.5
    x = rng.normal(size=(n, len(names))) + damaged[:, None]
    clf = ChangeClassifier(c=0.3, columns=(0, 5, 7)).fit(x, damaged)
    center, scale, coef, intercept = clf.linear_parameters(len(names))
    assert np.count_nonzero(coef) == 3
    z = ((x - center) / scale) @ coef + intercept
    np.testing.assert_allclose(1 / (1 + np.exp(-z)), clf.predict_damaged(x), rtol=1e-9)
    with pytest.raises(ModelConfigError, match="only a fitted logistic"):
        ChangeClassifier(kind="boosting").fit(x, damaged).linear_parameters(len(names))


def _tiny_task(**overrides: object) -> DatingTask:
    settings: dict[str, object] = {
        "in_channels": 3,
        "input_size": 32,
        "width": 4,
        "embed_dim": 8,
        "d_model": 8,
        "heads": 2,
        "layers": 1,
        "mc_samples": 4,
    }
    settings.update(overrides)
    return DatingTask(**settings)  # type: ignore[arg-type]


def test_the_dating_model_takes_whether_from_its_classifier_and_when_from_the_network(
    rng: np.random.Generator, tmp_path: Path
) -> None:
    damaged = np.arange(40) % 3 != 0
    chips = make_chips(rng, 40, damaged)
    x = building_change_features(chips, np.arange(40))
    clf = choose_classifier(x, damaged, np.arange(40) % 5)
    task = _tiny_task(damage_classifier=True)
    network_alone = predict(task, chips, progress=False)
    assert not task.has_damage_classifier  # not fitted yet: the network decides
    task.set_damage_classifier(clf)
    both = predict(task, chips, progress=False)
    np.testing.assert_allclose(1 - both.probs[:, -1], clf.predict_damaged(x), atol=1e-5)
    # when, given damage: the network's (its Monte-Carlo mean of the damaged gaps' shares)
    assert not np.allclose(both.probs[:, :-1].sum(axis=1), network_alone.probs[:, :-1].sum(axis=1))
    np.testing.assert_allclose(both.probs.sum(axis=1), 1.0, atol=1e-5)
    # the classifier is part of the saved state, and a warm start does not carry it over
    torch.save(task.state_dict(), tmp_path / "weights.pt")
    again = _tiny_task(damage_classifier=True)
    again.load_state_dict(torch.load(tmp_path / "weights.pt", weights_only=True))
    assert again.has_damage_classifier
    reloaded = predict(again, chips, progress=False).probs  # its timing draws other dropout masks
    np.testing.assert_allclose(reloaded[:, -1], both.probs[:, -1], atol=1e-6)
    warm = _tiny_task(damage_classifier=True, init_weights=str(tmp_path / "weights.pt"))
    assert not warm.has_damage_classifier
    with pytest.raises(ModelConfigError, match="without damage_classifier"):
        _tiny_task().set_damage_classifier(clf)
    # a model saved with the 44 statistics of the earlier version says so instead of failing on a shape
    old = _tiny_task(damage_classifier=True)
    for name in ("damage_center", "damage_scale", "damage_coef"):
        setattr(old, name, torch.zeros(44, dtype=torch.float64))
    old.damage_fitted.fill_(True)
    with pytest.raises(ModelConfigError, match="fitted on 44 change statistics.*train it again"):
        predict(old, chips, progress=False)
    # as does one fitted on statistics of the same number but an earlier meaning
    earlier = _tiny_task(damage_classifier=True)
    earlier.set_damage_classifier(clf)
    earlier.damage_statistics_version.fill_(1)
    with pytest.raises(ModelConfigError, match=r"\(version 1\).*train it again"):
        predict(earlier, chips, progress=False)


def test_training_fits_the_classifier_and_records_it_or_warns_on_one_class(rng: np.random.Generator) -> None:
    L.seed_everything(0)
    damaged = np.arange(48) % 3 != 0
    chips = make_chips(rng, 48, damaged)
    gap = np.where(damaged, 1, 2)

    def labels(gaps: np.ndarray) -> GapLabels:
        return GapLabels.from_intervals(
            chips.building_ids,
            [int(g) - 1 if g >= 1 else None for g in gaps],
            [int(g) if g < 2 else None for g in gaps],
            2,
            block_ids=[f"k{i % 6}" for i in range(len(gaps))],
        )

    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    task = _tiny_task(damage_classifier=True)
    data = ChipDataModule(chip_arrays=chips, gap_labels=labels(gap), batch_size=16)
    trainer.fit(task, datamodule=data)
    result = finish_training(task, data)
    record = result.task.trained_on
    assert task.has_damage_classifier and record["classifier_features"] in FEATURE_SETS
    assert record["classifier_buildings"] == 48 and record["classifier_intact"] == 16
    p = 1 - predict(task, chips, progress=False).probs[:, -1]
    assert ((p > 0.5) == damaged).mean() > 0.9
    # every label damaged: no classifier, the network decides, and the training says why
    one_class = ChipDataModule(chip_arrays=chips, gap_labels=labels(np.ones(48, dtype=int)), batch_size=16)
    with pytest.warns(UserWarning, match="all damaged") as caught:
        finish_training(task, one_class)
    assert sum("change classifier was not fitted" in str(w.message) for w in caught) == 1  # said once
    assert not task.has_damage_classifier and task.trained_on["classifier_features"] == "none"
