"""The real-imagery benchmark on tiny xBD scenes written here: bad input is reported, never a crash (#13)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from PIL import Image
from pyproj import Transformer

UTM = "EPSG:32637"
TRUE = Affine(0.5, 0.0, 500_000.0, 0.0, -0.5, 3_978_100.0)  # pixel -> UTM: 0.5 m pixels near Raqqa
CORNERS = ((8, 8), (40, 10), (12, 40), (44, 44))  # top-left pixel of each 12 x 12 building


def _wkt(coords: list[tuple[float, float]]) -> str:
    return "POLYGON ((" + ", ".join(f"{x} {y}" for x, y in coords) + "))"


def write_scene(root: Path, name: str, subtypes: list[str], rng: np.random.Generator) -> None:
    """One xBD scene: 64 x 64 pre/post PNGs and labels with a building per subtype (pixel and lng/lat)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(exist_ok=True)
    to_ll = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
    for stage, date in (("pre", "2011-05-01"), ("post", "2011-05-29")):
        img = rng.integers(30, 220, size=(64, 64, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / "images" / f"{name}_{stage}_disaster.png")
        xy, lnglat = [], []
        for k, ((c, r), subtype) in enumerate(zip(CORNERS, subtypes, strict=True)):
            square = [(c, r), (c + 12, r), (c + 12, r + 12), (c, r + 12), (c, r)]
            ll = [to_ll.transform(*(TRUE @ p)) for p in square]
            props = {"feature_type": "building", "uid": f"{name}-{k}"}
            if stage == "post":
                props["subtype"] = subtype
            xy.append({"properties": props, "wkt": _wkt(square)})
            lnglat.append({"properties": props, "wkt": _wkt(ll)})
        meta = {"capture_date": f"{date}T08:00:00.000Z", "sensor": "WORLDVIEW02", "width": 64, "height": 64}
        (root / "labels" / f"{name}_{stage}_disaster.json").write_text(
            json.dumps({"features": {"xy": xy, "lng_lat": lnglat}, "metadata": meta})
        )


def test_a_scene_without_intact_buildings_reports_auc_undefined(
    rng: np.random.Generator, tmp_path: Path
) -> None:
    from experiments.benchmarks.real import main

    root = tmp_path / "xbd"
    write_scene(root, "town_00000001", ["no-damage", "destroyed", "major-damage", "no-damage"], rng)
    write_scene(root, "town_00000002", ["destroyed", "major-damage", "minor-damage", "destroyed"], rng)
    out = tmp_path / "real.json"
    argv = [
        "--xbd", str(root), "--train-scenes", "town_00000001", "--eval-scenes", "town_00000002",
        "--arms", "baseline", "--no-mlflow", "--json", str(out), "--work", str(tmp_path / "work"),
    ]  # fmt: skip
    figures = main(argv)
    baseline = figures["arms"]["baseline"]
    assert math.isnan(baseline["auc"]) and math.isnan(baseline["auc_destroyed"])
    assert math.isfinite(baseline["exact_gap_accuracy"])  # the dating figures are still there
    assert "AUC undefined: the evaluation scenes have no intact building" in figures["notes"]
    assert figures["eval_buildings"] == 4 and figures["eval_intact"] == 0
    written = json.loads(out.read_text())
    assert written["arms"]["baseline"]["auc"] is None  # NaN is written as null, the file stays valid JSON


def test_a_scene_missing_its_post_image_is_a_clear_error(
    rng: np.random.Generator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from experiments.benchmarks.real import main

    root = tmp_path / "xbd"
    write_scene(root, "town_00000001", ["no-damage", "destroyed", "major-damage", "no-damage"], rng)
    write_scene(root, "town_00000002", ["no-damage", "destroyed", "minor-damage", "destroyed"], rng)
    (root / "images" / "town_00000002_post_disaster.png").unlink()
    argv = [
        "--xbd", str(root), "--train-scenes", "town_00000001", "--eval-scenes", "town_00000002",
        "--arms", "baseline", "--no-mlflow", "--work", str(tmp_path / "work"),
    ]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    said = "".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert "town_00000002_post_disaster.png" in said and "nosuchimage" in said


def test_the_feature_arms_train_and_score_without_a_network(rng: np.random.Generator, tmp_path: Path) -> None:
    from experiments.benchmarks.real import main

    root = tmp_path / "xbd"
    write_scene(root, "town_00000001", ["no-damage", "destroyed", "major-damage", "no-damage"], rng)
    write_scene(root, "town_00000002", ["no-damage", "destroyed", "minor-damage", "destroyed"], rng)
    argv = [
        "--xbd", str(root), "--train-scenes", "town_00000001", "--eval-scenes", "town_00000002",
        "--arms", "features", "features_all", "--no-mlflow", "--work", str(tmp_path / "work"),
    ]  # fmt: skip
    figures = main(argv)
    assert set(figures["arms"]) == {"features", "features_all"}
    for arm in ("features", "features_all"):
        assert 0.0 <= figures["arms"][arm]["auc"] <= 1.0
        assert math.isfinite(figures["arms"][arm]["ece"])
    assert figures["headline_arm"] == "features"  # without the trained arm the headline falls back to it
    assert figures["auc"] == figures["arms"]["features"]["auc"]


def test_fewer_spatial_blocks_than_folds_is_a_clear_error(
    rng: np.random.Generator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from experiments.benchmarks.real import main

    root = tmp_path / "xbd"
    write_scene(root, "town_00000001", ["no-damage", "destroyed", "major-damage", "no-damage"], rng)
    write_scene(root, "town_00000002", ["no-damage", "destroyed", "minor-damage", "destroyed"], rng)
    argv = [
        "--xbd", str(root), "--train-scenes", "town_00000001", "--eval-scenes", "town_00000002",
        "--arms", "stacked", "--folds", "50", "--no-mlflow", "--work", str(tmp_path / "work"),
    ]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    said = " ".join(capsys.readouterr().out.split())
    assert "spatial block(s) of 100 m, fewer than --folds 50" in said and "lower --folds" in said
    assert not (tmp_path / "work" / "real" / "folds").exists()  # refused before any training


def test_cross_fitting_folds_deal_whole_spatial_blocks(rng: np.random.Generator, tmp_path: Path) -> None:
    import datetime as dt

    from experiments.benchmarks.real import FOLD_BLOCK_M, RealScene, fold_of_rows
    from model.datamodule import ChipArrays, GapLabels

    scenes = []
    for k in range(2):
        n = 30
        ids = tuple(f"s{k}-b{i}" for i in range(n))
        origins = rng.uniform(0, 5 * FOLD_BLOCK_M, (n, 2))
        chips = ChipArrays(
            building_ids=ids,
            dates=(dt.date(2020, 1, 1), dt.date(2020, 6, 1)),
            chips=np.zeros((n, 2, 3, 8, 8), dtype=np.uint8),
            mask=np.zeros((n, 8, 8), dtype=np.uint8),
            valid=np.ones((n, 2), dtype=np.float32),
            origins=origins,
        )
        target = np.zeros((n, 3), dtype=np.float32)
        target[:, 1] = 1.0
        labels = GapLabels(ids, target, np.zeros(n, bool), np.zeros(n, np.int64))
        scenes.append(RealScene(f"scene{k}", tmp_path, tmp_path / "labels.csv", chips, labels))
    folds = fold_of_rows(scenes, 3, seed=0)
    assert [len(f) for f in folds] == [30, 30]
    assert set(np.concatenate(folds)) == {0, 1, 2}
    for scene, fold in zip(scenes, folds, strict=True):
        cells = np.floor(scene.chips.origins / FOLD_BLOCK_M).astype(int)  # type: ignore[operator]
        for cell in {tuple(c) for c in cells}:
            assert len(set(fold[(cells == cell).all(axis=1)])) == 1, cell  # a block is never split
    again = fold_of_rows(scenes, 3, seed=0)
    assert all((a == b).all() for a, b in zip(folds, again, strict=True))


def test_inference_throughput_measures_the_model_with_and_without_its_classifier(
    rng: np.random.Generator, tmp_path: Path
) -> None:
    from experiments.benchmarks.real import RealScene, inference_throughput
    from model.change_features import building_change_features, choose_classifier
    from model.task import DatingTask
    from tests.model.dating_data import exact_labels, synthetic_chips

    chips, gaps = synthetic_chips(rng, n=30, n_dates=3, size=16)
    labels = exact_labels(chips, gaps)
    scene = RealScene("tiny", tmp_path, tmp_path / "labels.csv", chips, labels)
    sizes = {
        "input_size": 16,
        "width": 4,
        "embed_dim": 8,
        "d_model": 8,
        "heads": 2,
        "layers": 1,
        "mc_samples": 2,
    }
    network_alone = inference_throughput(DatingTask(**sizes), [scene], min_seconds=0.0)  # type: ignore[arg-type]
    assert set(network_alone) == {"inference_chips_per_s"}
    damaged = gaps < chips.n_dates
    classified = DatingTask(**sizes, damage_classifier=True)  # type: ignore[arg-type]
    features = building_change_features(chips, np.arange(30))
    classified.set_damage_classifier(choose_classifier(features, damaged, np.arange(30) % 3))
    figures = inference_throughput(classified, [scene], min_seconds=0.0)
    assert set(figures) == {"inference_chips_per_s", "inference_network_only_chips_per_s"}
    assert all(v > 0 for v in figures.values())
    assert classified.has_damage_classifier  # switched back on after the network-only pass
