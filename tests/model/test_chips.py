"""Chip stacks: alignment, bands, validity, masks, the cache and its fingerprint, and bad input."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from model.chips import BANDS, ChipStack, IngestParams, ingest
from model.errors import CacheError, FootprintError, ImageryError, IngestWarning
from tests.model.conftest import (
    BUILDING_OFFSETS,
    DATES,
    UTM,
    X0,
    Y0,
    Scene,
    render,
    square,
    write_footprints,
    write_geotiff,
)


def test_layout_and_chips_equal_the_source_pixels(scene: Scene, tmp_path: Path) -> None:
    stack = ingest(scene.imagery, scene.footprints, tmp_path / "cache")
    assert stack.building_ids == scene.ids
    assert stack.dates == DATES
    assert stack.chips.shape == (4, 3, 4, 64, 64) and stack.chips.dtype == np.uint8
    assert stack.mask.shape == (4, 64, 64) and stack.valid.shape == (4, 3)
    assert stack.bands == BANDS and stack.crs == UTM and stack.resolution == 0.5
    i = stack.index("B2")  # centre 50 m east, 50 m south of the corner: chip rows/cols 68..131
    with rasterio.open(scene.imagery / f"{DATES[1].isoformat()}.tif") as src:
        expected = src.read(window=((68, 132), (68, 132)))
    np.testing.assert_array_equal(stack.chips[i, 1], expected)
    assert stack.chip_transform(i) @ (32, 32) == pytest.approx((X0 + 50, Y0 - 50))
    np.testing.assert_allclose(stack.valid[:3], 1.0)
    np.testing.assert_allclose(stack.valid[3], 17 / 32)  # B4's chip sticks 15 m out of the east edge
    assert (stack.chips[3, :, :, :, 34:] == 0).all()
    with pytest.raises(KeyError, match="'B9' is not in the chip cache"):
        stack.index("B9")


def test_footprint_mask_is_the_building(scene: Scene, tmp_path: Path) -> None:
    stack = ingest(scene.imagery, scene.footprints, tmp_path / "cache")
    mask = stack.mask[stack.index("B1")]
    assert set(np.unique(mask)) == {0, 255}
    rows, cols = np.nonzero(mask)
    assert len(rows) == 16 * 16  # an 8 m square at 0.5 m
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (24, 39, 24, 39)


@pytest.mark.parametrize("grid", [{}, {"resolution": 0.7}])
def test_tiled_and_per_building_reads_give_the_same_cache(
    make_scene: Callable[..., Scene], tmp_path: Path, grid: dict[str, object]
) -> None:
    scene = make_scene(**grid)
    tiled = ingest(scene.imagery, scene.footprints, tmp_path / "a", IngestParams(tile_size=64, max_batch=2))
    single = ingest(scene.imagery, scene.footprints, tmp_path / "b", IngestParams(max_batch=1))
    np.testing.assert_array_equal(tiled.chips, single.chips)
    np.testing.assert_array_equal(tiled.valid, single.valid)
    assert tiled.fingerprint == single.fingerprint  # read strategy is not part of the content


@pytest.mark.parametrize("grid", [{"resolution": 1.0}, {"crs": "EPSG:4326", "resolution": 0.4}])
def test_other_grids_are_warped_onto_the_working_grid(
    make_scene: Callable[..., Scene], tmp_path: Path, grid: dict[str, object]
) -> None:
    reference = ingest(make_scene("ref").imagery, make_scene("ref").footprints, tmp_path / "ref-cache")
    other = make_scene("other", **grid)
    stack = ingest(other.imagery, other.footprints, tmp_path / "cache")
    assert {s["read"] for s in stack.manifest["sources"]} == {"warp"}
    inner = (slice(0, 3), slice(None), slice(None), slice(4, 60), slice(4, 60))
    diff = np.abs(stack.chips[inner].astype(int) - reference.chips[inner].astype(int))
    assert diff.mean() < 4.0
    np.testing.assert_allclose(stack.valid, reference.valid, atol=0.05)


def test_three_band_uint16_and_panchromatic_images(tmp_path: Path) -> None:
    rgb16, transform = render(0, bands=3, dtype="uint16")
    write_geotiff(tmp_path / "img" / "2017-02-03.tif", rgb16, transform=transform)
    pan, transform = render(1, bands=1)
    write_geotiff(tmp_path / "img" / "2017-06-14.tif", pan, transform=transform)
    footprints = write_footprints(tmp_path / "fp.gpkg", ["A"], [square(X0 + 50, Y0 - 50, 5)])
    stack = ingest(tmp_path / "img", footprints, tmp_path / "cache")
    chips = stack.chips[0]
    assert (chips[:, 3] == 0).all()  # no NIR in either image
    np.testing.assert_array_equal(chips[1, 0], chips[1, 1])  # panchromatic copied to R, G, B
    stretch = stack.manifest["sources"][0]["stretch"]
    assert stretch is not None and len(stretch) == 3 and stack.manifest["sources"][1]["stretch"] is None
    red = chips[0, 0].astype(float)
    assert red.min() < 30 and red.max() > 225  # the 2-98 % stretch fills the uint8 range
    lo, hi = stretch[0]
    raw = rgb16[0, 68:132, 68:132].astype(float)
    np.testing.assert_allclose(red, np.clip(np.rint((raw - lo) * 255 / (hi - lo)), 0, 255))


def test_nodata_and_cloud_masks_lower_validity(tmp_path: Path) -> None:
    for t, date in enumerate(DATES[:2]):
        data, transform = render(t)
        if t == 1:
            data[:, 68:100, :] = 0  # nodata over the top half of B2's chip
        write_geotiff(tmp_path / "imagery" / f"{date}.tif", data, transform=transform)
    cloud = np.zeros((1, 100, 100), np.uint8)  # 1 m grid: a cloud over the left half of B2's chip
    cloud[0, 34:66, 34:50] = 255
    write_geotiff(
        tmp_path / "clouds" / "c.tif", cloud, transform=rasterio.Affine(1, 0, X0, 0, -1, Y0), nodata=None
    )
    (tmp_path / "manifest.csv").write_text(
        f"date,path,sensor,cloud_mask\n{DATES[0]},imagery/{DATES[0]}.tif,WV2,clouds/c.tif\n"
        f"{DATES[1]},imagery/{DATES[1]}.tif,WV3,\n"
    )
    footprints = write_footprints(tmp_path / "fp.gpkg", ["B2"], [square(X0 + 50, Y0 - 50, 4)])
    stack = ingest(tmp_path / "manifest.csv", footprints, tmp_path / "cache")
    np.testing.assert_allclose(stack.valid[0], [0.5, 0.5])
    assert stack.sensors == ("WV2", "WV3")
    assert stack.manifest["sources"][0]["cloud_mask"]["read"] == "warp"


def test_manifest_records_sources_and_origins(scene: Scene, tmp_path: Path) -> None:
    stack = ingest(scene.imagery, scene.footprints, tmp_path / "cache")
    m = stack.manifest
    for source, date in zip(m["sources"], DATES, strict=True):
        digest = hashlib.sha256(Path(source["path"]).read_bytes()).hexdigest()
        assert (source["date"], source["sha256"], source["read"]) == (date.isoformat(), digest, "direct")
    assert m["chip_size"] == 64 and m["rejects"] == [] and len(m["fingerprint"]) == 64
    assert m["shape"]["chips"] == [4, 3, 4, 64, 64]
    x, y = m["chip_origin"][0]
    dx, dy = BUILDING_OFFSETS["B1"]
    assert (x + 16, y - 16) == pytest.approx((X0 + dx, Y0 - dy))
    assert m["footprints"]["files"][0]["sha256"] == hashlib.sha256(scene.footprints.read_bytes()).hexdigest()


def test_rerun_reuses_the_cache_and_changed_input_rebuilds(scene: Scene, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    first = ingest(scene.imagery, scene.footprints, out)
    inode = (out / "chips.u8").stat().st_ino
    calls: list[int] = []
    again = ingest(scene.imagery, scene.footprints, out, progress=lambda done, total: calls.append(done))
    assert again.fingerprint == first.fingerprint and calls == []  # no work at all
    assert (out / "chips.u8").stat().st_ino == inode

    data, transform = render(2)
    data[:, :50] = 7
    write_geotiff(scene.imagery / f"{DATES[2]}.tif", data, transform=transform)
    rebuilt = ingest(scene.imagery, scene.footprints, out)
    assert rebuilt.fingerprint != first.fingerprint
    assert (rebuilt.chips[0, 2, 0, :8] == 7).all()
    assert (out / "chips.u8").stat().st_ino != inode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "scene"]  # no temp or old folders left
    changed_params = ingest(scene.imagery, scene.footprints, out, IngestParams(chip_size=32))
    assert changed_params.chips.shape[-1] == 32


def test_half_written_cache_is_never_valid(scene: Scene, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    stack = ingest(scene.imagery, scene.footprints, out)
    manifest = dict(stack.manifest, complete=False)
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CacheError, match="re-run ingest"):
        ChipStack.open(out)
    rebuilt = ingest(scene.imagery, scene.footprints, out)  # same fingerprint but incomplete: rebuilt
    assert rebuilt.manifest["complete"] is True
    with (out / "chips.u8").open("r+b") as f:
        f.truncate(100)
    with pytest.raises(CacheError, match=r"chips\.u8: 100 bytes"):
        ChipStack.open(out)
    assert ingest(scene.imagery, scene.footprints, out).chips.shape == (4, 3, 4, 64, 64)


def test_out_folder_that_is_not_a_cache_is_refused(scene: Scene, tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.txt").write_text("precious")
    with pytest.raises(CacheError, match="is not a chip cache"):
        ingest(scene.imagery, scene.footprints, tmp_path / "notes")
    with pytest.raises(CacheError, match="no chip cache here"):
        ChipStack.open(tmp_path / "nowhere")


def test_bad_images_are_rejected_and_listed(scene: Scene, tmp_path: Path) -> None:
    (scene.imagery / "2017-03-01.tif").write_bytes(b"garbage" * 100)
    data, transform = render(0)
    write_geotiff(scene.imagery / "2017-04-01.tif", data, transform=transform, crs=None)
    write_geotiff(scene.imagery / "undated.tif", data, transform=transform)
    with pytest.warns(IngestWarning) as record:
        stack = ingest(scene.imagery, scene.footprints, tmp_path / "cache")
    messages = "\n".join(str(w.message) for w in record)
    assert "2017-03-01.tif: the image cannot be read" in messages
    assert "2017-04-01.tif: the image has no CRS" in messages and "undated.tif" in messages
    assert stack.dates == DATES
    rejects = {(r["kind"], Path(r["subject"]).name) for r in stack.manifest["rejects"]}
    assert rejects == {
        ("unreadable_image", "2017-03-01.tif"),
        ("missing_crs", "2017-04-01.tif"),
        ("unparsable_date", "undated.tif"),
    }
    assert all(r["fix"] for r in stack.manifest["rejects"])


def test_buildings_outside_every_image_are_named(scene: Scene, tmp_path: Path) -> None:
    ids = ["B1", "B12", "B77", "B80", "B1"]
    geoms = [square(X0 + 20, Y0 - 20, 4)] + [square(X0 + 5000 * k, Y0, 4) for k in (1, 2, 3)]
    geoms.append(square(X0 + 60, Y0 - 60, 4))
    footprints = write_footprints(tmp_path / "footprints.gpkg", ids, geoms)
    with pytest.warns(IngestWarning) as record:
        stack = ingest(scene.imagery, footprints, tmp_path / "cache")
    messages = [str(w.message) for w in record]
    assert (
        "footprints.gpkg: 3 buildings lie outside every image (ids B12, B77, B80); "
        "check the CRS of the footprints and the imagery"
    ) in messages
    assert (
        "footprints.gpkg: 1 building repeats an id used by an earlier feature (id B1); give each"
        in "".join(messages)
    )
    assert stack.building_ids == ("B1",)
    kinds = sorted((r["kind"], r["subject"]) for r in stack.manifest["rejects"])
    assert kinds == [
        ("duplicate_id", "B1"),
        ("outside_imagery", "B12"),
        ("outside_imagery", "B77"),
        ("outside_imagery", "B80"),
    ]


def test_nothing_valid_is_fatal(scene: Scene, tmp_path: Path) -> None:
    far = write_footprints(
        tmp_path / "far.gpkg", ["F1", "F2"], [square(X0 - 9000, Y0, 4), square(X0 + 9000, Y0, 4)]
    )
    with pytest.raises(FootprintError, match=r"far\.gpkg: no building lies inside any image[\s\S]*F1"):
        ingest(scene.imagery, far, tmp_path / "cache", IngestParams(crs=UTM), warn=False)
    empty = tmp_path / "empty.geojson"
    empty.write_text('{"type": "FeatureCollection", "features": []}')
    with pytest.raises(FootprintError, match="holds no features"):
        ingest(scene.imagery, empty, tmp_path / "cache", IngestParams(crs=UTM))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "2017-01-01.tif").write_bytes(b"junk")
    with pytest.raises(ImageryError, match=r"no usable image remains[\s\S]*2017-01-01\.tif"):
        ingest(bad, scene.footprints, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_image_failing_part_way_marks_its_chips_invalid(scene: Scene, tmp_path: Path) -> None:
    path = scene.imagery / f"{DATES[1]}.tif"
    data, transform = render(1)
    profile = {"tiled": True, "blockxsize": 64, "blockysize": 64, "compress": "deflate"}
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=200,
        height=200,
        count=4,
        dtype="uint8",
        crs=UTM,
        transform=transform,
        nodata=0,
        **profile,
    ) as dst:
        dst.write(data)
    with rasterio.open(path) as src:  # the block under B1; the last block (checked on load) stays intact
        offset = int(src.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1))
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(b"\xff" * 200)
    with pytest.warns(IngestWarning):
        stack = ingest(scene.imagery, scene.footprints, tmp_path / "cache")
    assert stack.dates == DATES
    assert (stack.valid[:, 1] == 0).all() and (stack.valid[:3, 0] == 1).all()
    (reject,) = stack.manifest["rejects"]
    assert reject["kind"] == "unreadable_image" and reject["subject"] == str(path)
    assert reject["reason"].startswith(f"reading {path.name} failed part-way (")


def test_reads_stay_within_one_tile_window(
    scene: Scene, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from model.chips import rasters

    sizes: list[tuple[int, int]] = []
    original = rasters.RasterSource.read

    def spy(self: object, col0: int, row0: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        sizes.append((width, height))
        return original(self, col0, row0, width, height)  # type: ignore[arg-type]

    monkeypatch.setattr(rasters.RasterSource, "read", spy)
    ingest(scene.imagery, scene.footprints, tmp_path / "cache", IngestParams(tile_size=48))
    assert sizes and max(max(w, h) for w, h in sizes) <= 48 + 64 - 1  # never the whole grid (~260 px)
    assert len(sizes) == 3 * 4  # every building sits in its own 24 m tile here: one read per tile and date


def test_working_crs_must_be_metric(scene: Scene, tmp_path: Path) -> None:
    with pytest.raises(ImageryError, match=r"'EPSG:4326' is not a metric projected CRS"):
        ingest(scene.imagery, scene.footprints, tmp_path / "cache", IngestParams(crs="EPSG:4326"))
    with pytest.raises(ImageryError, match="is not a CRS"):
        ingest(scene.imagery, scene.footprints, tmp_path / "cache", IngestParams(crs="EPSG:99999999"))


def test_cached_rerun_repeats_the_warnings(scene: Scene, tmp_path: Path) -> None:
    (scene.imagery / "junk.tif").write_bytes(b"junk")
    for _ in range(2):
        with pytest.warns(IngestWarning, match=r"junk\.tif: the image cannot be read"):
            ingest(scene.imagery, scene.footprints, tmp_path / "cache")


def test_a_date_of_several_tiles_is_mosaicked_on_the_fly(scene: Scene, tmp_path: Path) -> None:
    """A delivery of tiles per date ingests as the single image they were cut from (#13)."""
    whole = ingest(scene.imagery, scene.footprints, tmp_path / "whole")
    tiled = tmp_path / "tiled"
    for t, date in enumerate(DATES):
        data, transform = render(t)
        if t == 1:  # three overlapping tiles of the same grid: west half, north-east and south-east corners
            write_geotiff(tiled / f"{date}_a.tif", data[:, :, :110], transform=transform)
            east = transform @ (100, 0)
            write_geotiff(
                tiled / f"{date}_b.tif", data[:, :120, 100:], transform=transform @ Affine.translation(100, 0)
            )
            write_geotiff(
                tiled / f"{date}_c.tif",
                data[:, 110:, 100:],
                transform=Affine(0.5, 0, east[0], 0, -0.5, east[1] - 55),
            )
        else:
            write_geotiff(tiled / f"{date}.tif", data, transform=transform)
    stack = ingest(tiled, scene.footprints, tmp_path / "cache")
    assert stack.dates == DATES
    source = stack.manifest["sources"][1]
    assert source["read"] == "mosaic" and len(source["tiles"]) == 3
    assert [Path(tile["path"]).name for tile in source["tiles"]] == [f"{DATES[1]}_{k}.tif" for k in "abc"]
    np.testing.assert_array_equal(stack.chips, whole.chips)
    np.testing.assert_array_equal(stack.valid, whole.valid)
    # the fingerprint follows every tile
    again = ingest(tiled, scene.footprints, tmp_path / "cache")
    assert again.fingerprint == stack.fingerprint
    data, transform = render(1)
    write_geotiff(
        tiled / f"{DATES[1]}_c.tif",
        255 - data[:, 110:, 100:],
        transform=Affine(0.5, 0, X0 + 50, 0, -0.5, Y0 - 55),
    )
    assert ingest(tiled, scene.footprints, tmp_path / "cache").fingerprint != stack.fingerprint
