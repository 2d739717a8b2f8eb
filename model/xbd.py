"""Import bi-temporal building-damage data in the xBD format as 2-date timelines with per-building labels.

xBD (Gupta et al., 2019, "xBD: A Dataset for Assessing Building Damage from Satellite Imagery") ships, per
scene, ``images/<scene>_pre_disaster.png|tif`` and ``..._post_disaster.png|tif`` plus ``labels/<same>.json``
whose ``features.xy`` (pixel polygons) and ``features.lng_lat`` (WGS 84 polygons) are WKT with
``properties.uid`` and, on the post image, the damage ``properties.subtype`` (``no-damage``, ``minor-damage``,
``major-damage``, ``destroyed``, ``un-classified``); ``metadata.capture_date`` dates each image.

Each scene becomes a folder ingestion can read::

    OUT/<scene>/
      imagery/<date>.tif   GeoTIFF per image in the scene's UTM zone (georeference fitted from the label
                           polygons when the image carries none: an affine least-squares fit of pixel -> UTM)
      manifest.csv         date, path, sensor, cloud_mask
      footprints.gpkg      layer "buildings": id (= uid), subtype, geometry (UTM)
      labels.csv           building_id, last_intact, first_damaged, grade (the label CSV of model.datamodule)

``no-damage`` is intact on both dates (gap 2); the other known subtypes are intact before and damaged after
(gap 1) with grade ``damaged`` (minor/major) or ``destroyed``. ``un-classified`` buildings are left out of the
labels and reported. Buildings whose pixel polygon lies wholly outside the post image are left out (footprints
and labels) and reported as ``outside_image``; they are not used to georeference the image either.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import rasterio
import shapely
from affine import Affine
from pyproj import Transformer
from shapely import affinity, wkt

from model.errors import InputProblem, LabelError, ModelError
from model.timeline import utm_crs_for

__all__ = ["SUBTYPE_GRADES", "XbdScene", "import_xbd"]

SUBTYPE_GRADES = {
    "no-damage": None,
    "minor-damage": "damaged",
    "major-damage": "damaged",
    "destroyed": "destroyed",
}
"""xBD subtype -> final grade (None: intact)."""

_IMAGE_SUFFIXES = (".tif", ".tiff", ".png")


class XbdError(LabelError):
    """An xBD scene cannot be imported (missing image or labels, no date, too few polygons to georeference)."""


@dataclass(frozen=True)
class XbdScene:
    """One imported scene.

    Attributes:
        name: scene name (file stem without ``_pre_disaster``).
        folder: the scene's output folder.
        dates: pre and post capture dates.
        crs: the UTM CRS of the written GeoTIFFs and footprints.
        buildings: footprints written.
        labelled: buildings with a label.
        problems: what was skipped and why.
    """

    name: str
    folder: Path
    dates: tuple[dt.date, dt.date]
    crs: str
    buildings: int
    labelled: int
    problems: tuple[InputProblem, ...] = field(default=())


def import_xbd(root: Path, out: Path, scenes: Sequence[str] | None = None) -> list[XbdScene]:
    """Import every scene (or the named ones) of an xBD folder with ``images/`` and ``labels/``.

    Raises:
        XbdError: no scene found, or a named scene missing. Problems of single buildings never raise.
    """
    root, out = Path(root), Path(out)
    labels_dir = root / "labels"
    found = sorted(p.name.removesuffix("_pre_disaster.json") for p in labels_dir.glob("*_pre_disaster.json"))
    if scenes is not None:
        missing = sorted(set(scenes) - set(found))
        if missing:
            raise XbdError(
                f"{labels_dir}: no pre-disaster labels for scene(s) {missing}; check the scene names"
            )
        found = [s for s in found if s in set(scenes)]
    if not found:
        raise XbdError(f"{labels_dir}: no '*_pre_disaster.json' label files; point at an xBD split folder")
    return [_import_scene(root, name, out / name) for name in found]


def _image(root: Path, stem: str) -> Path:
    for suffix in _IMAGE_SUFFIXES:
        path = root / "images" / f"{stem}{suffix}"
        if path.is_file():
            return path
    raise XbdError(
        f"{root / 'images' / stem}.png (or .tif, .tiff): no such image, so scene {stem.rsplit('_', 2)[0]!r} "
        "cannot be imported; restore the image or leave the scene out"
    )


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise XbdError(f"{path}: missing label file; every image needs its JSON")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise XbdError(f"{path}: not valid JSON ({exc}); re-download the labels") from exc
    if not isinstance(data.get("features"), dict):
        raise XbdError(f"{path}: no 'features' object with 'xy' and 'lng_lat' lists; not an xBD label file")
    return data


def _capture_date(data: dict[str, Any], path: Path) -> dt.date:
    raw = str(data.get("metadata", {}).get("capture_date", ""))
    match = re.match(r"(\d{4}-\d{2}-\d{2})", raw)
    if not match:
        raise XbdError(f"{path}: metadata.capture_date {raw!r} is not an ISO date; add the acquisition date")
    return dt.date.fromisoformat(match.group(1))


def _polygons(data: dict[str, Any], key: str) -> dict[str, tuple[Any, dict[str, Any]]]:
    out = {}
    for feature in data["features"].get(key, []):
        props = feature.get("properties", {})
        uid = props.get("uid")
        if uid is None or props.get("feature_type", "building") != "building":
            continue
        out[str(uid)] = (wkt.loads(feature["wkt"]), props)
    return out


def fit_affine(pixels: np.ndarray, world: np.ndarray) -> tuple[Affine, float]:
    """Least-squares affine transform from pixel (col, row) to world (x, y), and its RMS residual (world units)."""
    design = np.column_stack([pixels, np.ones(len(pixels))])
    coef_x, *_ = np.linalg.lstsq(design, world[:, 0], rcond=None)
    coef_y, *_ = np.linalg.lstsq(design, world[:, 1], rcond=None)
    transform = Affine(coef_x[0], coef_x[1], coef_x[2], coef_y[0], coef_y[1], coef_y[2])
    residual = design @ np.stack([coef_x, coef_y], axis=1) - world
    return transform, float(np.sqrt((residual**2).sum(axis=1).mean()))


def _georeference(
    xy: dict[str, tuple[Any, dict[str, Any]]],
    lnglat: dict[str, tuple[Any, dict[str, Any]]],
    crs: str,
    path: Path,
) -> Affine:
    to_utm = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    pixels, world = [], []
    for uid, (poly, _) in xy.items():
        if uid not in lnglat:
            continue
        a = np.asarray(poly.exterior.coords)
        b = np.asarray(lnglat[uid][0].exterior.coords)
        if len(a) != len(b):
            continue
        ux, uy = to_utm.transform(b[:, 0], b[:, 1])
        pixels.append(a)
        world.append(np.column_stack([ux, uy]))
    if not pixels:
        raise XbdError(
            f"{path}: no building has both an xy and a lng_lat polygon; cannot georeference the image"
        )
    p, w = np.concatenate(pixels), np.concatenate(world)
    if np.linalg.matrix_rank(np.column_stack([p, np.ones(len(p))])) < 3:
        raise XbdError(f"{path}: label polygons are collinear; cannot georeference the image")
    transform, _ = fit_affine(p, w)
    return transform


def _open(path: Path) -> rasterio.DatasetReader:
    """Open an image; xBD PNGs carry no georeference, which is expected, not worth a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        return rasterio.open(path)


def _write_gpkg(frame: gpd.GeoDataFrame, path: Path, stamp: dt.date) -> None:
    """Write the footprints so that the same scene gives the same bytes: a GeoPackage records when it was
    written (``gpkg_contents.last_change``), which would change the chip cache's fingerprint at every import
    and with it every key derived from it (trained models, checkpoints). GDAL's ``OGR_CURRENT_DATE`` pins
    that stamp, here to the post image's date."""
    previous = pyogrio.get_gdal_config_option("OGR_CURRENT_DATE")
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": f"{stamp.isoformat()}T00:00:00.000Z"})
    try:
        frame.to_file(path, layer="buildings", driver="GPKG")
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": previous})


def _write_geotiff(src_path: Path, dst: Path, transform: Affine | None, crs: str) -> None:
    with _open(src_path) as src:
        data = src.read()
        src_crs = src.crs
        src_transform = src.transform
    if src_crs is not None and transform is None:
        crs_out, transform_out = src_crs, src_transform
    else:
        crs_out, transform_out = crs, transform
    if data.dtype != np.uint8:
        data = (
            data.astype(np.uint8) if data.max() <= 255 else (data / max(data.max(), 1) * 255).astype(np.uint8)
        )
    profile = {
        "driver": "GTiff",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": data.shape[0],
        "dtype": "uint8",
        "crs": crs_out,
        "transform": transform_out,
        "nodata": 0,
    }
    dst.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data)


def _import_scene(root: Path, name: str, folder: Path) -> XbdScene:
    pre_json = root / "labels" / f"{name}_pre_disaster.json"
    post_json = root / "labels" / f"{name}_post_disaster.json"
    pre, post = _read_json(pre_json), _read_json(post_json)
    d_pre, d_post = _capture_date(pre, pre_json), _capture_date(post, post_json)
    if d_post <= d_pre:
        raise XbdError(
            f"{post_json}: capture_date {d_post} is not after the pre-disaster {d_pre}; check the pair"
        )
    xy, lnglat = _polygons(post, "xy"), _polygons(post, "lng_lat")
    if not lnglat:
        raise XbdError(f"{post_json}: no lng_lat building polygons; cannot place the scene")
    post_image = _image(root, f"{name}_post_disaster")
    with _open(post_image) as src:
        image_box = shapely.box(0, 0, src.width, src.height)
    outside = sorted(uid for uid, (poly, _) in xy.items() if not poly.intersects(image_box))
    problems: list[InputProblem] = [
        InputProblem(
            "outside_image",
            uid,
            f"the building's pixel polygon lies outside the {int(image_box.bounds[2])} x "
            f"{int(image_box.bounds[3])} post image {post_image.name}",
            "the building is left out; check the label file belongs to this image",
        )
        for uid in outside
    ]
    for uid in outside:
        xy.pop(uid)
        lnglat.pop(uid, None)
    if not lnglat:
        raise XbdError(
            f"{post_json}: every building polygon lies outside the post image {post_image.name}; "
            "the labels belong to another image"
        )
    centre = shapely.union_all([p for p, _ in lnglat.values()]).centroid
    crs = utm_crs_for(centre.x, centre.y)

    tmp = folder.parent / f".{folder.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    rows, geoms, ids, subtypes = [], [], [], []
    try:
        transforms: dict[str, Affine | None] = {}
        for stage, data, json_path in (("pre", pre, pre_json), ("post", post, post_json)):
            image = _image(root, f"{name}_{stage}_disaster")
            with _open(image) as src:
                has_crs = src.crs is not None
            own_xy, own_ll = _polygons(data, "xy"), _polygons(data, "lng_lat")
            for uid in outside:
                own_xy.pop(uid, None)
                own_ll.pop(uid, None)
            transforms[stage] = (
                None if has_crs else _georeference(own_xy or xy, own_ll or lnglat, crs, json_path)
            )
            date = d_pre if stage == "pre" else d_post
            _write_geotiff(image, tmp / "imagery" / f"{date.isoformat()}.tif", transforms[stage], crs)
        to_utm = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
        post_transform = transforms["post"]
        for uid, (ll_poly, props) in lnglat.items():
            subtype = str(props.get("subtype", "")).strip().lower()
            if uid in xy and post_transform is not None:
                geom = affinity.affine_transform(xy[uid][0], post_transform.to_shapely())
            else:
                geom = shapely.transform(
                    ll_poly, lambda c: np.column_stack(to_utm.transform(c[:, 0], c[:, 1]))
                )
            ids.append(uid)
            geoms.append(geom)
            subtypes.append(subtype)
            if subtype not in SUBTYPE_GRADES:
                problems.append(
                    InputProblem(
                        "unlabelled_building",
                        uid,
                        f"damage subtype {subtype or '<none>'!r} is not one of {', '.join(SUBTYPE_GRADES)}",
                        "the building is ingested but not used for training",
                    )
                )
                continue
            grade = SUBTYPE_GRADES[subtype]
            rows.append(
                {
                    "building_id": uid,
                    "last_intact": d_post.isoformat() if grade is None else d_pre.isoformat(),
                    "first_damaged": "" if grade is None else d_post.isoformat(),
                    "grade": grade or "",
                }
            )
        sensor = str(post.get("metadata", {}).get("sensor", "xbd"))
        pd.DataFrame(
            {
                "date": [d_pre.isoformat(), d_post.isoformat()],
                "path": [f"imagery/{d_pre.isoformat()}.tif", f"imagery/{d_post.isoformat()}.tif"],
                "sensor": [str(pre.get("metadata", {}).get("sensor", sensor)), sensor],
                "cloud_mask": ["", ""],
            }
        ).to_csv(tmp / "manifest.csv", index=False)
        frame = gpd.GeoDataFrame({"id": ids, "subtype": subtypes}, geometry=geoms, crs=crs)
        _write_gpkg(frame, tmp / "footprints.gpkg", d_post)
        pd.DataFrame(rows, columns=["building_id", "last_intact", "first_damaged", "grade"]).to_csv(
            tmp / "labels.csv", index=False
        )
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    except (ModelError, OSError, rasterio.errors.RasterioError, ValueError):
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return XbdScene(name, folder, (d_pre, d_post), crs, len(ids), len(rows), tuple(problems))
