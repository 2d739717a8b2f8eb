"""Checksums of the ingest inputs and the cache fingerprint.

The fingerprint is a sha256 over the format version, the layout parameters, the working CRS, every image's and
cloud mask's checksum (with date and sensor), the footprint files' checksums and the rejected inputs: the same
fingerprint means the same cache content. Checksums are reused from the previous manifest when a file's size
and modification time are unchanged, so re-running ingest on a city of large images costs a ``stat`` per file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.chips.stack import FORMAT_VERSION
from model.errors import InputProblem
from model.timeline import Acquisition

if TYPE_CHECKING:  # the pipeline imports this module
    from model.chips.pipeline import IngestParams

__all__ = ["checksum_memo", "describe_source", "file_sha256", "file_stat", "fingerprint_of", "sidecars"]


def describe_source(acq: Acquisition, memo: Mapping[str, tuple[int, int, str]]) -> dict[str, Any]:
    """The manifest's record of one date: file, checksum, size and time of the image and its cloud mask.

    A mosaic date lists its tiles, each described the same way, under ``tiles``; its ``sha256`` is the sha256
    of the tiles' checksums (with their cloud masks'), so the fingerprint changes when any tile does.
    """
    if acq.tiles:
        tiles = [describe_source(tile, memo) for tile in acq.tiles]
        digest = hashlib.sha256(
            json.dumps([[t["sha256"], (t["cloud_mask"] or {}).get("sha256")] for t in tiles]).encode()
        ).hexdigest()
        return {
            "date": acq.date.isoformat(),
            "path": str(acq.path),
            "sensor": acq.sensor,
            "sha256": digest,
            "size": sum(t["size"] for t in tiles),
            "mtime_ns": max(t["mtime_ns"] for t in tiles),
            "cloud_mask": None,
            "tiles": tiles,
        }
    info: dict[str, Any] = {
        "date": acq.date.isoformat(),
        "path": str(acq.path),
        "sensor": acq.sensor,
        "sha256": file_sha256(acq.path, memo),
        **file_stat(acq.path),
        "cloud_mask": None,
    }
    if acq.cloud_mask is not None:
        info["cloud_mask"] = {
            "path": str(acq.cloud_mask),
            "sha256": file_sha256(acq.cloud_mask, memo),
            **file_stat(acq.cloud_mask),
        }
    return info


def file_stat(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def file_sha256(path: Path, memo: Mapping[str, tuple[int, int, str]]) -> str:
    """sha256 of a file; reuses the previous manifest's value when size and mtime are unchanged."""
    st = path.stat()
    known = memo.get(str(path))
    if known is not None and known[:2] == (st.st_size, st.st_mtime_ns):
        return known[2]
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def checksum_memo(manifest: Mapping[str, Any] | None) -> dict[str, tuple[int, int, str]]:
    memo: dict[str, tuple[int, int, str]] = {}
    if not manifest:
        return memo
    sources = list(manifest.get("sources", []))
    sources += [tile for s in sources for tile in s.get("tiles", [])]
    entries = [s for s in sources if not s.get("tiles")]
    entries += [s["cloud_mask"] for s in sources if s.get("cloud_mask")]
    entries += manifest.get("footprints", {}).get("files", [])
    for e in entries:
        if {"path", "size", "mtime_ns", "sha256"} <= set(e):
            memo[e["path"]] = (e["size"], e["mtime_ns"], e["sha256"])
    return memo


def sidecars(path: Path) -> list[Path]:
    """The footprint file and, for a Shapefile, its sidecar files (.dbf, .shx, .prj, .cpg)."""
    if path.suffix.lower() != ".shp":
        return [path]
    return sorted(p for p in path.parent.glob(path.stem + ".*") if p.is_file())


def fingerprint_of(
    params: IngestParams,
    crs: str,
    sources: list[dict[str, Any]],
    footprint_files: list[dict[str, Any]],
    problems: Sequence[InputProblem],
    memo: Mapping[str, tuple[int, int, str]],
) -> str:
    rejected_files = []
    for p in problems:
        path = Path(p.subject)
        digest = file_sha256(path, memo) if path.is_file() else None
        rejected_files.append([p.kind, p.subject, digest])
    payload = {
        "version": FORMAT_VERSION,
        "params": params.layout(),
        "crs": crs,
        "images": [
            [s["date"], s["sensor"], s["sha256"], s["cloud_mask"]["sha256"] if s["cloud_mask"] else None]
            for s in sources
        ],
        "footprints": [f["sha256"] for f in footprint_files],
        "rejected": rejected_files,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
