"""The scenario generator on the tiny preset: contract, determinism, truth consistency, georeferencing."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
from rasterio.features import rasterize
from typer.testing import CliRunner

from active_learning.errors import TruthFileError
from experiments.scenario import (
    BadSeedError,
    ScenarioDataError,
    UnknownPresetError,
    generate,
    get_preset,
    load_truth,
)
from experiments.scenario.extract import read_extract
from experiments.scenario.preview import write_preview

TRUTH_COLUMNS = [
    "building_id",
    "true_gap",
    "last_intact_date",
    "first_damaged_date",
    "destroyed_gap",
    "final_grade",
    "partial",
    "cleared",
    "rebuilt",
    "area_m2",
    "cloud_at_change",
    "difficulty",
    "block_id",
    "source",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "tiny-3"
    generate("tiny", 3, out, progress=False)
    return out


def _digest(folder: Path) -> dict[str, str]:
    names = ["truth.csv", "truth_dates.csv", "manifest.csv"]
    names += [str(p.relative_to(folder)) for p in sorted(folder.glob("imagery/*.tif"))]
    names += [str(p.relative_to(folder)) for p in sorted(folder.glob("clouds/*.tif"))]
    return {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in names}


def test_folder_follows_the_contract(tiny: Path) -> None:
    for name in (
        "scenario.json",
        "manifest.csv",
        "footprints.gpkg",
        "truth.csv",
        "truth_dates.csv",
        "ATTRIBUTION.txt",
    ):
        assert (tiny / name).is_file(), name
    meta = json.loads((tiny / "scenario.json").read_text())
    assert meta["crs"] == "EPSG:32637" and meta["preset"] == "tiny" and meta["seed"] == 3
    assert len(meta["dates"]) == 15 and meta["dates"][0] == "2017-02-03" and meta["dates"][-1] == "2017-10-21"
    days = [dt.date.fromisoformat(d) for d in meta["dates"]]
    assert all(b > a for a, b in itertools.pairwise(days))
    assert len({(b - a).days for a, b in itertools.pairwise(days)}) > 3  # irregular
    manifest = pd.read_csv(tiny / "manifest.csv", keep_default_na=False)
    assert list(manifest.columns) == ["date", "path", "sensor", "cloud_mask"]
    assert manifest["date"].tolist() == meta["dates"]
    assert set(manifest["sensor"]) >= {"WV3-sim", "GE1-rgb", "PHR-0.6m"}
    truth = pd.read_csv(tiny / "truth.csv")
    assert list(truth.columns) == TRUTH_COLUMNS
    per_date = pd.read_csv(tiny / "truth_dates.csv")
    assert list(per_date.columns) == ["building_id", "date_index", "state", "cloud_fraction", "visible"]
    assert len(per_date) == 15 * len(truth)
    fp = gpd.read_file(tiny / "footprints.gpkg", layer="buildings")
    assert fp.crs.to_epsg() == 32637 and fp.geom_type.eq("Polygon").all()
    assert fp["id"].tolist() == truth["building_id"].tolist() and fp["id"].is_unique
    assert "UNITAR-UNOSAT" in (tiny / "ATTRIBUTION.txt").read_text()


def test_same_seed_gives_byte_identical_output(tiny: Path, tmp_path: Path) -> None:
    """Also when the tiles render in worker processes (as large scenes do): tiles arrive out of order there."""
    again = tmp_path / "again"
    generate("tiny", 3, again, progress=False, workers=2)
    assert _digest(again) == _digest(tiny)
    other = tmp_path / "other"
    generate("tiny", 4, other, progress=False)
    assert _digest(other)["truth.csv"] != _digest(tiny)["truth.csv"]


def test_workers_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="workers must be at least 1"):
        generate("tiny", 3, tmp_path / "x", progress=False, workers=0)


def test_preset_size(tiny: Path) -> None:
    truth = load_truth(tiny)
    n = len(truth.buildings)
    assert 40 <= n <= 80
    expected = get_preset("tiny").damage_points
    assert (
        expected is not None and 0.9 * expected <= (truth.buildings["source"] == "unosat").sum() <= expected
    )
    assert (truth.buildings["source"] == "intact").sum() > 0


def test_gaps_fall_inside_the_unosat_windows(tiny: Path) -> None:
    truth = load_truth(tiny)
    t_count = truth.n_dates
    points = read_extract()
    grades = pd.DataFrame(points.grades, columns=["g13", "g14", "g15", "feb", "oct"], index=points.fid)
    b = truth.buildings
    unosat = b[b["source"] == "unosat"]
    g = grades.loc[[int(i[1:]) for i in unosat["building_id"]]]
    feb, oct_ = g["feb"].to_numpy(), g["oct"].to_numpy()
    gap = unosat["true_gap"].to_numpy()
    assert np.all(gap[feb >= 1] == 0)
    first_in_window = ~(feb >= 1) & (oct_ >= 1)
    assert np.all((gap[first_in_window] >= 1) & (gap[first_in_window] <= t_count - 1))
    assert np.all(gap[(oct_ == 0) & ~(feb >= 1)] == t_count)
    assert (b.loc[b["source"] == "intact", "true_gap"] == t_count).all()
    assert (b.loc[b["source"] == "intact", "final_grade"] == "intact").all()
    # intervals agree with the gaps
    for row in b.itertuples():
        if 1 <= row.true_gap < t_count:
            assert row.last_intact_date == truth.dates[row.true_gap - 1].isoformat()
            assert row.first_damaged_date == truth.dates[row.true_gap].isoformat()


def test_truth_states_are_monotone_and_match_the_gaps(tiny: Path) -> None:
    truth = load_truth(tiny)
    states = truth.per_date.pivot(index="building_id", columns="date_index", values="state")  # State codes
    b = truth.buildings.set_index("building_id").loc[states.index]
    assert (np.diff(states.to_numpy(), axis=1) >= 0).all()
    t = np.arange(truth.n_dates)[None, :]
    assert ((states.to_numpy() == 0) == (t < b["true_gap"].to_numpy()[:, None])).all()
    assert ((states.to_numpy() == 2) == (t >= b["destroyed_gap"].to_numpy()[:, None])).all()
    destroyed = b["final_grade"] == "destroyed"
    assert (b.loc[destroyed, "destroyed_gap"] < truth.n_dates).all()
    assert (b.loc[~destroyed, "destroyed_gap"] == truth.n_dates).all()
    assert b["difficulty"].between(0, 1).all() and b["cloud_at_change"].between(0, 1).all()
    # cloud at the change covers the two dates bounding it; none outside the timeline's window
    cloud = truth.per_date.pivot(index="building_id", columns="date_index", values="cloud_fraction").loc[
        b.index
    ]
    for bid, row in b.iterrows():
        g = int(row["true_gap"])
        if 1 <= g < truth.n_dates:
            bound = max(cloud.loc[bid, g - 1], cloud.loc[bid, g])
            assert row["cloud_at_change"] >= bound - 1e-3
        else:
            assert row["cloud_at_change"] == 0


def test_geotiffs_are_georeferenced_and_cover_every_footprint(tiny: Path) -> None:
    fp = gpd.read_file(tiny / "footprints.gpkg", layer="buildings")
    xmin, ymin, xmax, ymax = fp.total_bounds
    manifest = pd.read_csv(tiny / "manifest.csv", keep_default_na=False)
    resolutions = set()
    for row in manifest.itertuples():
        with rasterio.open(tiny / row.path) as ds:
            assert ds.crs.to_epsg() == 32637
            assert ds.dtypes[0] == "uint8" and ds.nodata == 0
            assert ds.count == (3 if row.sensor == "GE1-rgb" else 4)
            b = ds.bounds
            assert b.left <= xmin and b.bottom <= ymin and b.right >= xmax and b.top >= ymax
            resolutions.add(round(ds.res[0], 3))
            data = ds.read()
            assert (data > 0).mean() > 0.5
        with rasterio.open(tiny / row.cloud_mask) as cm:
            assert cm.crs.to_epsg() == 32637 and cm.transform == ds.transform and cm.shape == ds.shape
            assert set(np.unique(cm.read(1))) <= {0, 255}
    assert resolutions == {0.5, 0.6}


def test_cloud_masks_agree_with_truth_visibility(tiny: Path) -> None:
    truth = load_truth(tiny)
    fp = gpd.read_file(tiny / "footprints.gpkg", layer="buildings")
    manifest = pd.read_csv(tiny / "manifest.csv", keep_default_na=False)
    per_date = truth.per_date.set_index(["building_id", "date_index"])
    hidden_somewhere = False
    for t, row in enumerate(manifest.itertuples()):
        with rasterio.open(tiny / row.cloud_mask) as cm:
            mask = cm.read(1) > 0
            labels = rasterize(
                ((g, i + 1) for i, g in enumerate(fp.geometry)),
                out_shape=cm.shape,
                transform=cm.transform,
                dtype="int32",
            )
        with rasterio.open(tiny / row.path) as ds:
            nodata = ds.read(1) == 0
        total = np.bincount(labels.ravel(), minlength=len(fp) + 1)[1:]
        cloudy = np.bincount(labels[mask], minlength=len(fp) + 1)[1:]
        blank = np.bincount(labels[nodata], minlength=len(fp) + 1)[1:]
        for i, bid in enumerate(fp["id"]):
            rec = per_date.loc[(bid, t)]
            if total[i] == 0:
                continue
            assert rec["cloud_fraction"] == pytest.approx(cloudy[i] / total[i], abs=0.02), (bid, t)
            hidden = (cloudy[i] + blank[i]) / total[i]
            if hidden > 0.55:
                assert not rec["visible"], (bid, t)
                hidden_somewhere = True
            if hidden < 0.45:
                assert rec["visible"], (bid, t)
    assert hidden_somewhere, "tiny seed 3 should hide some building on some date"


def test_bad_preset_and_seed_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(UnknownPresetError, match="unknown scenario preset 'huge'.*tiny, district, city"):
        generate("huge", 0, tmp_path / "x", progress=False)
    for seed in (-1, 2**32, 1.5, "3", True):
        with pytest.raises(BadSeedError, match="seed must be an integer"):
            generate("tiny", seed, tmp_path / "x", progress=False)  # type: ignore[arg-type]
    with pytest.raises(ScenarioDataError, match="extract not found"):
        generate("tiny", 0, tmp_path / "x", progress=False, extract=tmp_path / "missing.csv")


def test_cli_command_writes_a_scenario(tmp_path: Path) -> None:
    import typer

    from experiments import cli

    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """Root."""

    cli.register(app)
    runner = CliRunner()
    result = runner.invoke(app, ["scenario", "--preset", "tiny", "--seed", "2", "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "s" / "truth.csv").is_file() and "buildings" in result.output
    bad = runner.invoke(app, ["scenario", "--preset", "nope", "--out", str(tmp_path / "t")])
    assert bad.exit_code == 2 and "unknown scenario preset" in bad.output


def test_extract_errors_name_the_file_and_the_fix(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("fid,lon,lat\n1,39.0,35.95\n")
    with pytest.raises(ScenarioDataError, match=r"bad.csv: missing columns .*g20170203.*write_extract"):
        read_extract(bad)
    points = read_extract()
    assert len(points) == 13160 and points.grades.shape == (13160, 5)


def test_load_truth_rejects_a_folder_that_is_not_a_scenario(tmp_path: Path) -> None:
    with pytest.raises(TruthFileError, match="not a scenario folder"):
        load_truth(tmp_path)


def test_preview_png_is_written(tiny: Path, tmp_path: Path) -> None:
    png = write_preview(tiny, tmp_path / "preview.png", size_m=60, date_indices=[0, 7, 14], dpi=40)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_randomised_world_changes_the_look_never_the_truth(tiny: Path, tmp_path: Path) -> None:
    """Domain randomisation (#13): ground, roofs, debris and tarps change; layout, truth and grid do not."""
    generate("tiny", 3, tmp_path / "random", progress=False, randomise=True)
    for name in ("truth.csv", "truth_dates.csv", "manifest.csv"):
        assert (tmp_path / "random" / name).read_bytes() == (tiny / name).read_bytes()
    style = json.loads((tmp_path / "random" / "scenario.json").read_text())["style"]
    assert {"lawn", "roofs", "tarp", "debris_spread"} <= set(style)
    assert "style" not in json.loads((tiny / "scenario.json").read_text())
    date = json.loads((tiny / "scenario.json").read_text())["dates"][0]
    with (
        rasterio.open(tiny / "imagery" / f"{date}.tif") as a,
        rasterio.open(tmp_path / "random" / "imagery" / f"{date}.tif") as b,
    ):
        assert a.transform == b.transform and a.shape == b.shape
        assert np.abs(a.read().astype(int) - b.read().astype(int)).mean() > 5
