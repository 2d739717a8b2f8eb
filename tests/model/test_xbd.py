"""The xBD importer, on tiny scenes written here in the xBD format (PNG images, JSON labels)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
from affine import Affine
from PIL import Image
from pyproj import Transformer

from model.chips import IngestParams, ingest
from model.datamodule import GapLabels
from model.training import run_cli
from model.xbd import XbdError, fit_affine, import_xbd

UTM = "EPSG:32637"
# Pixel -> UTM of the synthetic scene: 0.5 m pixels, slightly rotated, near Raqqa.
TRUE = Affine(0.5, 0.02, 500_000.0, 0.02, -0.5, 3_978_100.0)
BUILDINGS = {  # uid: (col, row) of the top-left corner, subtype
    "a1": ((10, 10), "no-damage"),
    "b2": ((40, 12), "destroyed"),
    "c3": ((15, 40), "major-damage"),
    "d4": ((45, 45), "un-classified"),
}


def _wkt(coords: list[tuple[float, float]]) -> str:
    return "POLYGON ((" + ", ".join(f"{x} {y}" for x, y in coords) + "))"


def _label_file(path: Path, date: str, post: bool) -> None:
    to_ll = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
    xy, lnglat = [], []
    for uid, ((c, r), subtype) in BUILDINGS.items():
        square = [(c, r), (c + 12, r), (c + 12, r + 12), (c, r + 12), (c, r)]
        world = [TRUE * p for p in square]
        ll = [to_ll.transform(x, y) for x, y in world]
        props = {"feature_type": "building", "uid": uid, **({"subtype": subtype} if post else {})}
        xy.append({"properties": props, "wkt": _wkt(square)})
        lnglat.append({"properties": props, "wkt": _wkt(ll)})
    meta = {"capture_date": f"{date}T08:00:00.000Z", "sensor": "WORLDVIEW02", "width": 64, "height": 64}
    path.write_text(json.dumps({"features": {"xy": xy, "lng_lat": lnglat}, "metadata": meta}))


@pytest.fixture
def xbd_root(tmp_path: Path, rng: np.random.Generator) -> Path:
    root = tmp_path / "xbd"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for stage, date in (("pre", "2017-03-01"), ("post", "2017-09-01")):
        img = rng.integers(30, 220, size=(64, 64, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / "images" / f"raqqa_00000001_{stage}_disaster.png")
        _label_file(root / "labels" / f"raqqa_00000001_{stage}_disaster.json", date, post=stage == "post")
    return root


def test_importing_the_same_scene_again_gives_the_same_cache_fingerprint(
    xbd_root: Path, tmp_path: Path
) -> None:
    """The footprints' GeoPackage records when it was written; the import pins that stamp, so a second import
    (a benchmark rerun) keeps the chip cache's fingerprint and every key derived from it."""
    [first] = import_xbd(xbd_root, tmp_path / "out")
    before = (first.folder / "footprints.gpkg").read_bytes()
    fingerprint = ingest(
        first.folder, first.folder / "footprints.gpkg", tmp_path / "cache", IngestParams(chip_size=16)
    ).fingerprint
    time.sleep(1.1)  # the stamp has a resolution of a second
    [again] = import_xbd(xbd_root, tmp_path / "out")
    assert (again.folder / "footprints.gpkg").read_bytes() == before
    again_fingerprint = ingest(
        again.folder, again.folder / "footprints.gpkg", tmp_path / "cache", IngestParams(chip_size=16)
    ).fingerprint
    assert again_fingerprint == fingerprint


def test_affine_fit_recovers_a_known_transform(rng: np.random.Generator) -> None:
    pixels = rng.uniform(0, 100, size=(20, 2))
    world = np.array([TRUE * tuple(p) for p in pixels])
    fitted, rms = fit_affine(pixels, world)
    assert rms < 1e-6
    np.testing.assert_allclose(fitted[:6], TRUE[:6], atol=1e-6)


def test_import_writes_an_ingestible_two_date_timeline(xbd_root: Path, tmp_path: Path) -> None:
    [scene] = import_xbd(xbd_root, tmp_path / "out")
    assert scene.crs == UTM and scene.buildings == 4 and scene.labelled == 3
    assert [p.subject for p in scene.problems] == ["d4"]
    with rasterio.open(scene.folder / "imagery" / "2017-09-01.tif") as src:
        assert src.crs.to_string() == UTM
        np.testing.assert_allclose(src.transform[:6], TRUE[:6], atol=1e-3)
    footprints = gpd.read_file(scene.folder / "footprints.gpkg", layer="buildings")
    assert sorted(footprints["id"]) == ["a1", "b2", "c3", "d4"]
    assert footprints.geometry.iloc[0].area == pytest.approx(36.0, rel=0.02)  # 12 px * 0.5 m squared
    labels = pd.read_csv(scene.folder / "labels.csv", dtype=str, keep_default_na=False).set_index(
        "building_id"
    )
    assert labels.loc["a1"].to_dict() == {"last_intact": "2017-09-01", "first_damaged": "", "grade": ""}
    assert labels.loc["b2", "grade"] == "destroyed" and labels.loc["c3", "grade"] == "damaged"

    stack = ingest(
        scene.folder, scene.folder / "footprints.gpkg", tmp_path / "cache", IngestParams(chip_size=16)
    )
    assert set(stack.building_ids) == {"a1", "b2", "c3", "d4"} and len(stack.dates) == 2
    gap = GapLabels.read_csv(scene.folder / "labels.csv", stack.dates)
    np.testing.assert_array_equal(gap.hard_gap(), [2, 1, 1])

    config = Path(__file__).resolve().parents[2] / "experiments" / "configs" / "tiny.yaml"
    result = run_cli(
        [
            "--config",
            str(config),
            "--data.cache",
            str(tmp_path / "cache"),
            "--data.labels",
            str(scene.folder / "labels.csv"),
            "--data.block_size_m",
            "5",
            "--trainer.fast_dev_run",
            "true",
        ]
    )
    assert result.task.trained_on["dates"] == ["2017-03-01", "2017-09-01"]


def test_missing_image_is_a_clear_error_and_writes_nothing(xbd_root: Path, tmp_path: Path) -> None:
    (xbd_root / "images" / "raqqa_00000001_post_disaster.png").unlink()
    with pytest.raises(
        XbdError,
        match=r"raqqa_00000001_post_disaster.png \(or .tif, .tiff\): no such image, so "
        r"scene 'raqqa_00000001' cannot be imported; restore the image or leave the scene out",
    ):
        import_xbd(xbd_root, tmp_path / "out")
    assert not (tmp_path / "out" / "raqqa_00000001").exists()


def test_missing_capture_date_and_empty_folder_are_clear_errors(xbd_root: Path, tmp_path: Path) -> None:
    path = xbd_root / "labels" / "raqqa_00000001_pre_disaster.json"
    data = json.loads(path.read_text())
    data["metadata"]["capture_date"] = ""
    path.write_text(json.dumps(data))
    with pytest.raises(XbdError, match="capture_date '' is not an ISO date"):
        import_xbd(xbd_root, tmp_path / "out")
    with pytest.raises(XbdError, match="no '\\*_pre_disaster.json'"):
        import_xbd(tmp_path / "nothing", tmp_path / "out")


def test_polygons_outside_the_image_are_left_out_and_reported(xbd_root: Path, tmp_path: Path) -> None:
    for stage in ("pre", "post"):
        path = xbd_root / "labels" / f"raqqa_00000001_{stage}_disaster.json"
        data = json.loads(path.read_text())
        far = [(500, 500), (512, 500), (512, 512), (500, 512), (500, 500)]  # the image is 64 x 64 pixels
        world = [TRUE * p for p in far]
        to_ll = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
        props = {
            "feature_type": "building",
            "uid": "zz",
            **({"subtype": "destroyed"} if stage == "post" else {}),
        }
        data["features"]["xy"].append({"properties": props, "wkt": _wkt(far)})
        data["features"]["lng_lat"].append(
            {"properties": props, "wkt": _wkt([to_ll.transform(x, y) for x, y in world])}
        )
        path.write_text(json.dumps(data))
    [scene] = import_xbd(xbd_root, tmp_path / "out")
    assert scene.buildings == 4 and scene.labelled == 3
    (outside,) = [p for p in scene.problems if p.kind == "outside_image"]
    assert outside.subject == "zz" and "outside the 64 x 64 post image" in outside.reason
    labels = pd.read_csv(scene.folder / "labels.csv", dtype=str)
    assert "zz" not in set(labels["building_id"])
