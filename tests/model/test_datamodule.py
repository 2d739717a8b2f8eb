"""Labels and splits: the label CSV, spatial-block splits, class balance and the errors for bad input."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from model.datamodule import ChipArrays, ChipDataModule, GapLabels, read_audit_gaps, split_by_blocks
from model.errors import DataMismatchError, LabelError
from tests.model.dating_data import exact_labels, synthetic_chips, write_cache


def test_block_split_never_cuts_a_block(rng: np.random.Generator) -> None:
    blocks = rng.choice([f"b{i}" for i in range(9)], size=200)
    train, val = split_by_blocks(blocks, 0.25, seed=3)
    assert set(blocks[train]).isdisjoint(set(blocks[val]))
    assert len(train) + len(val) == 200 and 0.15 <= len(val) / 200 <= 0.6


def test_one_block_cannot_be_split() -> None:
    with pytest.raises(LabelError, match="one spatial block"):
        split_by_blocks(["a"] * 5, 0.2, seed=0)


def test_label_csv_round_trip_for_intervals_and_soft_targets(
    rng: np.random.Generator, tmp_path: Path
) -> None:
    arrays, gaps = synthetic_chips(rng, n=8, n_dates=4, size=8)
    labels = exact_labels(arrays, gaps)
    back = GapLabels.read_csv(labels.write_csv(tmp_path / "labels.csv", arrays.dates), arrays.dates)
    np.testing.assert_array_equal(back.target, labels.target)
    np.testing.assert_array_equal(back.grade, labels.grade)
    np.testing.assert_array_equal(back.hard_gap(), gaps)
    probs = rng.dirichlet(np.ones(5), size=8)
    soft = GapLabels.from_soft(arrays.building_ids, probs)
    back = GapLabels.read_csv(soft.write_csv(tmp_path / "soft.csv", arrays.dates), arrays.dates)
    np.testing.assert_allclose(back.target, probs, atol=1e-6)
    assert not back.interval.any()


def test_interval_label_allows_exactly_the_consistent_gaps() -> None:
    labels = GapLabels.from_intervals(["a", "b"], [1, None], [3, 0], n_dates=4)
    np.testing.assert_array_equal(labels.target, [[0, 0, 1, 1, 0], [1, 0, 0, 0, 0]])


def test_class_weights_balance_damaged_and_intact() -> None:
    labels = GapLabels.from_intervals(list("abcd"), [3, 3, 3, 0], [None, None, None, 1], n_dates=4)
    w = labels.class_weights()
    assert w[:3].sum() == pytest.approx(w[3])


def test_class_weights_lift_rare_already_damaged_buildings() -> None:
    # a-d intact (gap 4); e-m damaged within the timeline (gap 2); n damaged before the first image (gap 0).
    n_intact, n_within = 4, 9
    ids = [f"b{i}" for i in range(n_intact + n_within + 1)]
    last = [3] * n_intact + [1] * n_within + [None]
    first = [None] * n_intact + [2] * n_within + [0]
    w = GapLabels.from_intervals(ids, last, first, n_dates=4).class_weights()
    intact, within, before = w[:n_intact], w[n_intact:-1], w[-1]
    assert intact.sum() == pytest.approx(within.sum() + before)  # damaged and intact still balanced
    assert before == pytest.approx(3.0 * within[0])  # lifted by sqrt(10 / 1) capped at 3
    assert w.mean() == pytest.approx(1.0)


def test_empty_label_set_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LabelError, match="empty"):
        GapLabels.from_intervals([], [], [], n_dates=3)
    path = tmp_path / "empty.csv"
    path.write_text("building_id,last_intact,first_damaged\n")
    with pytest.raises(LabelError, match="empty"):
        GapLabels.read_csv(path, (dt.date(2017, 1, 1),))


def test_label_dates_from_another_timeline_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("building_id,last_intact,first_damaged\nB1,2017-03-01,2017-04-01\n")
    dates = (dt.date(2017, 3, 1), dt.date(2017, 5, 1))
    with pytest.raises(DataMismatchError, match="row 2: first_damaged='2017-04-01' is not a date"):
        GapLabels.read_csv(path, dates)


def test_contradictory_interval_is_refused() -> None:
    with pytest.raises(LabelError, match="allow no gap"):
        GapLabels.from_intervals(["x"], [2], [1], n_dates=4)


def test_labels_naming_unknown_buildings_are_refused(rng: np.random.Generator) -> None:
    arrays, _ = synthetic_chips(rng, n=4, n_dates=3, size=8)
    labels = GapLabels.from_intervals(["B000", "ZZ9"], [None, None], [0, 0], n_dates=3, block_ids=["a", "b"])
    data = ChipDataModule(chip_arrays=arrays, gap_labels=labels)
    with pytest.raises(LabelError, match="1 labelled building.*ZZ9"):
        data.setup("fit")


def test_cache_from_another_scenario_is_refused(rng: np.random.Generator, tmp_path: Path) -> None:
    arrays, gaps = synthetic_chips(rng, n=6, n_dates=3, size=8)
    cache = write_cache(arrays, tmp_path / "cache")
    data = ChipDataModule(
        cache=str(cache), gap_labels=exact_labels(arrays, gaps), expected_fingerprint="f" * 64
    )
    with pytest.raises(DataMismatchError, match="fingerprint"):
        data.setup("fit")


def test_labels_with_another_number_of_dates_are_refused(rng: np.random.Generator) -> None:
    arrays, _ = synthetic_chips(rng, n=4, n_dates=3, size=8)
    labels = GapLabels.from_intervals(["B000"], [None], [0], n_dates=5)
    with pytest.raises(DataMismatchError, match="6 gaps but the chip cache has 3 dates"):
        ChipDataModule(chip_arrays=arrays, gap_labels=labels).setup("fit")


def test_datamodule_reads_cache_and_csv_and_batches(rng: np.random.Generator, tmp_path: Path) -> None:
    arrays, gaps = synthetic_chips(rng, n=12, n_dates=4, size=8)
    cache = write_cache(arrays, tmp_path / "cache")
    csv = exact_labels(arrays, gaps).write_csv(tmp_path / "labels.csv", arrays.dates)
    data = ChipDataModule(cache=str(cache), labels=str(csv), batch_size=5)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch["chips"].shape[1:] == (4, 4, 8, 8) and batch["target"].shape[1] == 5
    assert len(data.predict_dataloader().dataset) == 12
    assert ChipArrays.open(cache).origins is not None


def test_audit_gaps_from_truth_csv(rng: np.random.Generator, tmp_path: Path) -> None:
    arrays, gaps = synthetic_chips(rng, n=5, n_dates=3, size=8)
    path = tmp_path / "truth.csv"
    path.write_text(
        "building_id,true_gap\n"
        + "".join(f"{b},{g}\n" for b, g in zip(arrays.building_ids, gaps, strict=False))
    )
    rows, got = read_audit_gaps(path, arrays)
    np.testing.assert_array_equal(rows, np.arange(5))
    np.testing.assert_array_equal(got, gaps)
    path.write_text("building_id,true_gap\nB000,9\n")
    with pytest.raises(DataMismatchError, match="true_gap values 9..9"):
        read_audit_gaps(path, arrays)


def test_label_noise_floors_soft_rows_only() -> None:
    soft = GapLabels.from_soft(["a"], np.array([[1.0, 0.0, 0.0]]))
    np.testing.assert_allclose(soft.with_label_noise(0.3).target, [[0.8, 0.1, 0.1]])
    interval = GapLabels.from_intervals(["b"], [0], [1], n_dates=2)
    np.testing.assert_array_equal(interval.with_label_noise(0.3).target, interval.target)
    with pytest.raises(LabelError, match="label_noise must be in"):
        soft.with_label_noise(1.0)


def _split_labels(arrays: ChipArrays, gaps: np.ndarray, labelled: int) -> tuple[GapLabels, GapLabels]:
    """Real labels for the first ``labelled`` buildings and pseudo-labels for all of them (blocks by index)."""
    every = exact_labels(arrays, gaps, blocks=6)
    return every.subset(np.arange(labelled)), every


def test_pseudo_labels_join_training_only_away_from_validation_buildings(
    rng: np.random.Generator, tmp_path: Path
) -> None:
    arrays, gaps = synthetic_chips(rng, n=36, n_dates=4, size=8)  # origins 100 m apart on a line
    labels, everyone = _split_labels(arrays, gaps, labelled=18)
    csv = everyone.write_csv(tmp_path / "pseudo.csv", arrays.dates)
    data = ChipDataModule(chip_arrays=arrays, gap_labels=labels, pseudo_labels=str(csv), pseudo_weight=0.25)
    data.setup("fit")
    assert data.pseudo is not None and data.val_rows is not None and data.train_rows is not None
    assert arrays.origins is not None
    cell = {b: int(x // 200) for b, x in zip(arrays.building_ids, arrays.origins[:, 0], strict=True)}
    val_cells = {cell[labels.building_ids[i]] for i in data.val_rows}
    kept = set(data.pseudo.building_ids)
    assert not kept & set(labels.building_ids)  # a real label always wins
    assert kept == {b for b in everyone.building_ids[18:] if cell[b] not in val_cells}
    dataset = data.train_dataloader().dataset
    assert len(dataset) == len(data.train_rows) + len(kept)
    weights = np.array([float(dataset[i]["weight"]) for i in range(len(dataset))])
    assert weights[len(data.train_rows) :].mean() < weights[: len(data.train_rows)].mean()
    assert len(data.val_dataloader().dataset) == len(data.val_rows)  # validation sees real labels only


def test_pseudo_labels_need_blocks_when_the_cache_has_no_origins(rng: np.random.Generator) -> None:
    arrays, gaps = synthetic_chips(rng, n=12, n_dates=4, size=8)
    arrays = dataclasses.replace(arrays, origins=None)
    labels, everyone = _split_labels(arrays, gaps, labelled=6)
    no_blocks = GapLabels(everyone.building_ids, everyone.target, everyone.interval, everyone.grade)
    data = ChipDataModule(chip_arrays=arrays, gap_labels=labels, pseudo_gap_labels=no_blocks)
    with pytest.raises(LabelError, match="block_id"):
        data.setup("fit")
    data = ChipDataModule(chip_arrays=arrays, gap_labels=labels, pseudo_gap_labels=everyone)
    data.setup("fit")
    assert data.pseudo is not None and not set(data.pseudo.building_ids) & set(labels.building_ids)


def test_pseudo_labels_from_another_timeline_are_refused(rng: np.random.Generator) -> None:
    arrays, gaps = synthetic_chips(rng, n=12, n_dates=4, size=8)
    labels, _ = _split_labels(arrays, gaps, labelled=6)
    other, other_gaps = synthetic_chips(rng, n=12, n_dates=5, size=8)
    data = ChipDataModule(
        chip_arrays=arrays, gap_labels=labels, pseudo_gap_labels=exact_labels(other, other_gaps)
    )
    with pytest.raises(DataMismatchError, match="pseudo-labels have 6 gaps"):
        data.setup("fit")


def test_pseudo_weight_outside_unit_interval_is_refused() -> None:
    with pytest.raises(LabelError, match="pseudo_weight"):
        ChipDataModule(pseudo_weight=0.0)


def test_negative_calibration_prior_is_refused() -> None:
    with pytest.raises(LabelError, match="calibration_prior_buildings must be >= 0, got -1"):
        ChipDataModule(calibration_prior_buildings=-1.0)


def _scene(
    rng: np.random.Generator, prefix: str, start: dt.date, n: int = 8
) -> tuple[ChipArrays, np.ndarray]:
    arrays, gaps = synthetic_chips(rng, n=n, n_dates=4, size=8)
    dates = tuple(start + dt.timedelta(days=10 * t * (2 if prefix == "b" else 1)) for t in range(4))
    ids = tuple(f"{prefix}{b}" for b in arrays.building_ids)
    return dataclasses.replace(arrays, building_ids=ids, dates=dates, fingerprint=prefix), gaps


def test_several_caches_train_as_one_with_their_own_dates_and_blocks(
    rng: np.random.Generator, tmp_path: Path
) -> None:
    a, gaps_a = _scene(rng, "a", dt.date(2017, 1, 1))
    b, gaps_b = _scene(rng, "b", dt.date(2018, 6, 1))
    caches = [str(write_cache(x, tmp_path / x.fingerprint)) for x in (a, b)]
    csvs = [
        str(exact_labels(x, g).write_csv(tmp_path / f"{x.fingerprint}.csv", x.dates))
        for x, g in ((a, gaps_a), (b, gaps_b))
    ]
    data = ChipDataModule(cache=caches, labels=csvs, batch_size=16, val_fraction=0.25)
    data.setup("fit")
    chips = data.chips
    assert chips.building_ids == a.building_ids + b.building_ids and len(chips.scenes) == 2
    np.testing.assert_array_equal(chips.read(9), b.chips[1])  # rows of the second scene come from its cache
    np.testing.assert_array_equal(chips.chips[[0, 9]], np.stack([a.chips[0], b.chips[1]]))
    np.testing.assert_array_equal(chips.days_of(9), [0, 20, 40, 60])
    np.testing.assert_array_equal(chips.days_of(0), [0, 10, 20, 30])
    # each scene's labels were read against its own dates, and block ids stay apart per scene
    assert data.labels.building_ids == chips.building_ids
    np.testing.assert_array_equal(data.labels.hard_gap(), np.concatenate([gaps_a, gaps_b]))
    assert len(set(data.blocks())) == 8
    batch = next(iter(data.train_dataloader()))
    by_row = {int(r): d for r, d in zip(batch["row"], batch["days"], strict=True)}
    assert all(d[1] == (20 if r >= 8 else 10) for r, d in by_row.items())


def test_scenes_with_shared_ids_or_other_shapes_are_refused(rng: np.random.Generator) -> None:
    a, _ = _scene(rng, "a", dt.date(2017, 1, 1))
    with pytest.raises(DataMismatchError, match="appear in more than one scene.*prefix them"):
        ChipArrays.concat([a, a])
    short, _ = synthetic_chips(rng, n=3, n_dates=3, size=8)
    with pytest.raises(DataMismatchError, match="scene 1 has chips of shape"):
        ChipArrays.concat([a, short])


def test_one_label_file_per_cache(rng: np.random.Generator, tmp_path: Path) -> None:
    a, gaps = _scene(rng, "a", dt.date(2017, 1, 1))
    b, _ = _scene(rng, "b", dt.date(2018, 6, 1))
    caches = [str(write_cache(x, tmp_path / x.fingerprint)) for x in (a, b)]
    csv = str(exact_labels(a, gaps).write_csv(tmp_path / "a.csv", a.dates))
    with pytest.raises(LabelError, match="1 label files for 2 chip caches"):
        ChipDataModule(cache=caches, labels=[csv]).setup("fit")
