"""Exports of the dated buildings: read back with geopandas and with GDAL's ogrinfo, as QGIS would; atomic."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from serving.cli import app as cli
from serving.errors import ExportError
from tests.serving.world import World

FORMATS = ("geojson", "gpkg", "csv")


def _env(world: World) -> dict[str, str]:
    s = world.settings
    return {
        "STRIKETRACKER_WORK_DIR": str(s.work_dir),
        "STRIKETRACKER_CHIP_CACHE": str(s.chip_cache),
        "STRIKETRACKER_PUBLIC_BASE_URL": s.public_base_url,
    }


def _ogrinfo(path: Path) -> str:
    ogrinfo = shutil.which("ogrinfo")
    assert (
        ogrinfo
    ), "GDAL's ogrinfo is missing: run `make test` (it installs gdal-bin) or `apt-get install gdal-bin`"
    done = subprocess.run(
        [ogrinfo, "-ro", "-al", "-so", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _read(path: Path, fmt: str) -> gpd.GeoDataFrame:
    if fmt != "csv":
        return gpd.read_file(path)
    table = pd.read_csv(path, dtype={"building_id": str})
    return gpd.GeoDataFrame(table, geometry=gpd.GeoSeries.from_wkt(table["WKT"]), crs="EPSG:4326")


@pytest.mark.parametrize("fmt", FORMATS)
def test_cli_export_reads_back_in_geopandas_and_ogrinfo(world: World, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "out" / f"dated.{fmt}"
    r = CliRunner().invoke(cli, ["export", "--format", fmt, "--out", str(out)], env=_env(world))
    assert r.exit_code == 0, r.output
    assert "5 dated buildings written" in r.output
    frame = _read(out, fmt)
    assert sorted(frame["building_id"]) == ["B000", "B001", "B002", "B003", "B004"]
    row = frame.set_index("building_id").loc["B000"]
    assert row["status"] == "settled" and int(row["map_gap"]) == 3 and int(row["reviews"]) == 3
    # GDAL reads ISO dates in GeoJSON as dates, as QGIS will
    assert (
        str(row["last_intact_date"])[:10] == "2017-04-04"
        and str(row["first_damaged_date"])[:10] == "2017-05-04"
    )
    assert row["annotation_ids"] == "sim:B000:v-a;sim:B000:v-b;sim:B000:v-c"
    assert row["volunteers"] == "v-a;v-b;v-c" and "@" not in row["volunteers"]
    assert row["evidence_url"] == "http://127.0.0.1:8000/api/buildings/B000"
    assert row["chip_url_template"] == "http://127.0.0.1:8000/chips/B000/{date_index}.png"
    assert row["image_sha256"].split(";")[2] == "02" + "ab" * 31
    assert frame.set_index("building_id").loc["B001", "flags"] == "contested"
    assert frame.crs is not None and frame.crs.to_epsg() == 4326
    assert set(frame.geometry.geom_type) == {"Polygon"}
    assert 38.9 < frame.geometry.representative_point().x.mean() < 39.1

    info = _ogrinfo(out)
    assert "Feature Count: 5" in info and "WGS 84" in info
    assert "Extent: (38.9" in info or "Extent: (39.0" in info
    assert "evidence_url: String" in info and "annotation_ids: String" in info
    assert "map_gap: Integer" in info and "confidence: Real" in info
    if fmt == "csv":  # QGIS reads the WKT column, its types (.csvt) and its CRS (.prj)
        assert "Geometry: None" not in info and {p.suffix for p in out.parent.iterdir()} == {
            ".csv",
            ".csvt",
            ".prj",
        }
    else:
        assert "Polygon" in info


def test_api_export_serves_the_same_files(client: TestClient, tmp_path: Path) -> None:
    for fmt in FORMATS:
        r = client.get(f"/api/export.{fmt}", params={"status": "settled"})
        assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
        path = tmp_path / f"api.{fmt}"
        path.write_bytes(r.content)
        assert sorted(_read(path, fmt)["building_id"]) == ["B000", "B004"]
    assert client.get("/api/export.shp").status_code == 422
    assert pd.read_csv(io.BytesIO(client.get("/api/export.csv").content)).shape[0] == 5


def test_cli_export_refuses_unknown_format_and_status(world: World, tmp_path: Path) -> None:
    r = CliRunner().invoke(
        cli, ["export", "--format", "shp", "--out", str(tmp_path / "x.shp")], env=_env(world)
    )
    assert r.exit_code == 2 and "geojson, gpkg, csv" in r.output
    r = CliRunner().invoke(
        cli,
        ["export", "--format", "csv", "--out", str(tmp_path / "x.csv"), "--status", "gone"],
        env=_env(world),
    )
    assert r.exit_code == 2 and "--status" in r.output


def _unwritable(tmp_path: Path) -> Path:
    """A folder this process cannot write into (root ignores permission bits, so take a read-only system one)."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    return Path("/sys/kernel")


def test_read_only_folder_is_a_clear_error_naming_it(world: World, tmp_path: Path) -> None:
    folder = _unwritable(tmp_path)
    r = CliRunner().invoke(
        cli, ["export", "--format", "gpkg", "--out", str(folder / "x.gpkg")], env=_env(world)
    )
    assert r.exit_code == 1
    assert str(folder) in r.output and "cannot write the export there" in r.output
    assert not (folder / "x.gpkg").exists()


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_killed_export_leaves_no_half_written_file(
    world: World, tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyogrio

    import serving.export as export

    out = tmp_path / "exports" / f"dated.{fmt}"
    assert (
        CliRunner().invoke(cli, ["export", "--format", fmt, "--out", str(out)], env=_env(world)).exit_code
        == 0
    )
    good = out.read_bytes()

    def dies_half_way(frame, path, *args, **kwargs):  # type: ignore[no-untyped-def]
        Path(path).write_bytes(b"half a file")
        raise KeyboardInterrupt  # the process is being killed mid-write

    monkeypatch.setattr(pyogrio, "write_dataframe", dies_half_way)
    monkeypatch.setattr(pd.DataFrame, "to_csv", dies_half_way)
    snapshot_frame = _read(out, fmt).drop(columns=["WKT", "x", "y"], errors="ignore")
    with pytest.raises(KeyboardInterrupt):
        export.write_export(snapshot_frame, out, fmt)  # type: ignore[arg-type]
    assert out.read_bytes() == good  # the file under the final name is the last complete export
    left = sorted(p.name for p in out.parent.iterdir())
    assert left == sorted([out.name] + ([f"dated.{x}" for x in ("csvt", "prj")] if fmt == "csv" else []))


def test_write_export_refuses_unknown_formats(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="unknown export format"):
        from serving.export import write_export

        write_export(gpd.GeoDataFrame(), tmp_path / "x.kml", "kml")  # type: ignore[arg-type]
