"""Timeline loading: dates from file names, tags or a manifest CSV; bad images rejected with a reason and fix."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from model.errors import ImageryError, IngestWarning
from model.timeline import load_timeline, parse_date, utm_crs_for
from tests.model.conftest import UTM, render, write_geotiff


def _image(path: Path, **kwargs: object) -> Path:
    data, transform = render(0)
    return write_geotiff(path, data, transform=transform, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2017-06-14", dt.date(2017, 6, 14)),
        ("raqqa_20170614_wv3", dt.date(2017, 6, 14)),
        ("2017_06_14", dt.date(2017, 6, 14)),
        ("2017:06:14 10:31:00", dt.date(2017, 6, 14)),
        ("scene_a", None),
        ("2017-13-40", None),
    ],
)
def test_parse_date(text: str, expected: dt.date | None) -> None:
    assert parse_date(text) == expected


def test_utm_zone_of_raqqa() -> None:
    assert utm_crs_for(39.0, 35.95) == "EPSG:32637"
    assert utm_crs_for(-70.0, -33.0) == "EPSG:32719"


def test_folder_dates_from_names_and_tags_sorted(tmp_path: Path) -> None:
    _image(tmp_path / "20171021.tif")
    _image(tmp_path / "2017-02-03.tif")
    _image(tmp_path / "scene_b.tif", tags={"ACQUISITION_DATE": "2017-06-14T08:00:00Z", "SENSOR": "WV3"})
    timeline = load_timeline(tmp_path)
    assert timeline.dates == (dt.date(2017, 2, 3), dt.date(2017, 6, 14), dt.date(2017, 10, 21))
    assert timeline.acquisitions[1].sensor == "WV3"
    assert timeline.crs == UTM  # chosen from the images' centre
    assert timeline.problems == ()


def test_bad_images_are_rejected_and_the_rest_loaded(tmp_path: Path) -> None:
    _image(tmp_path / "2017-02-03.tif")
    (tmp_path / "2017-03-01.tif").write_bytes(b"II*\x00 this is not a real tiff" * 10)
    _image(tmp_path / "2017-04-01.tif", crs=None)
    _image(tmp_path / "scene_without_date.tif")
    _image(tmp_path / "2017-02-03_copy.tif")
    with pytest.warns(IngestWarning) as record:
        timeline = load_timeline(tmp_path, crs=UTM)
    assert timeline.dates == (dt.date(2017, 2, 3),)
    by_kind = {p.kind: p for p in timeline.problems}
    assert set(by_kind) == {"unreadable_image", "missing_crs", "unparsable_date"}
    assert by_kind["unreadable_image"].subject.endswith("2017-03-01.tif")
    assert by_kind["missing_crs"].subject.endswith("2017-04-01.tif")
    assert "scene_without_date.tif" in by_kind["unparsable_date"].reason
    assert "2017-06-14.tif" in by_kind["unparsable_date"].fix
    messages = " ".join(str(w.message) for w in record)
    assert "2017-03-01.tif" in messages and "no CRS" in messages
    assert len(timeline.rejected) == 3
    # the two images of 2017-02-03 are that date's tiles, mosaicked at ingestion
    (mosaic,) = timeline.acquisitions
    assert [t.path.name for t in mosaic.tiles] == ["2017-02-03.tif", "2017-02-03_copy.tif"]
    assert mosaic.files == mosaic.tiles


def test_an_image_listed_twice_is_reported(tmp_path: Path) -> None:
    _image(tmp_path / "a.tif")
    _image(tmp_path / "b.tif")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("date,path\n2017-02-03,a.tif\n2017-02-03,a.tif\n2017-03-03,b.tif\n")
    timeline = load_timeline(manifest, crs=UTM, warn=False)
    assert timeline.dates == (dt.date(2017, 2, 3), dt.date(2017, 3, 3))
    assert timeline.acquisitions[0].tiles == ()
    assert [(p.kind, p.reason) for p in timeline.problems] == [
        ("duplicate_date", "the image is listed twice for date 2017-02-03")
    ]


def test_truncated_tiff_is_unreadable(tmp_path: Path) -> None:
    good = _image(tmp_path / "src" / "2017-02-03.tif")
    _image(tmp_path / "2017-05-05.tif")
    (tmp_path / "2017-02-03.tif").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    timeline = load_timeline(tmp_path, crs=UTM, warn=False)
    assert timeline.dates == (dt.date(2017, 5, 5),)
    assert [p.kind for p in timeline.problems] == ["unreadable_image"]


def test_nothing_usable_is_an_imagery_error(tmp_path: Path) -> None:
    _image(tmp_path / "a.tif", crs=None)
    with pytest.raises(ImageryError, match=r"no usable image remains[\s\S]*a\.tif: the image has no CRS"):
        load_timeline(tmp_path, warn=False)
    with pytest.raises(ImageryError, match="not a folder of GeoTIFFs"):
        load_timeline(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImageryError, match="no GeoTIFF"):
        load_timeline(empty)


def test_manifest_csv_with_cloud_masks_and_bad_rows(tmp_path: Path) -> None:
    _image(tmp_path / "imagery" / "a.tif")
    _image(tmp_path / "imagery" / "b.tif")
    write_geotiff(tmp_path / "clouds" / "a.tif", np.zeros((1, 20, 20), np.uint8), nodata=None)
    (tmp_path / "manifest.csv").write_text(
        "date,path,sensor,cloud_mask\n"
        "2017-02-03,imagery/a.tif,WV2,clouds/a.tif\n"
        "14/06/2017,imagery/b.tif,WV3,\n"
        "2017-07-01,imagery/missing.tif,WV3,\n"
        "2017-10-21,imagery/b.tif,GE1,\n"
    )
    with pytest.warns(IngestWarning):
        timeline = load_timeline(tmp_path)  # a scenario-style folder: its manifest.csv is used
    assert timeline.dates == (dt.date(2017, 2, 3), dt.date(2017, 10, 21))
    first, second = timeline.acquisitions
    assert (first.sensor, second.sensor) == ("WV2", "GE1")
    assert first.cloud_mask == (tmp_path / "clouds" / "a.tif").resolve()
    assert second.cloud_mask is None
    kinds = sorted(p.kind for p in timeline.problems)
    assert kinds == ["missing_file", "unparsable_date"]
    bad_date = next(p for p in timeline.problems if p.kind == "unparsable_date")
    assert "row 3" in bad_date.subject and "14/06/2017" in bad_date.reason and "YYYY-MM-DD" in bad_date.fix


def test_manifest_without_required_columns(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("when,file\n2017-02-03,a.tif\n")
    with pytest.raises(ImageryError, match=r"missing column\(s\) \['date', 'path'\]"):
        load_timeline(tmp_path / "m.csv")
