"""Chip stacks: every building's image chips on one working grid, cut once and cached memory-mapped.

One module per concept, in the order data flows: :mod:`model.chips.rasters` reads windows of the working grid
from each image, :mod:`model.chips.pipeline` cuts every building's chips into a cache (:func:`ingest`),
:mod:`model.chips.checksums` fingerprints the inputs so an unchanged cache is reused, and
:mod:`model.chips.stack` opens a cache read-only (:class:`ChipStack`). Format: docs/CONTRACTS.md, "Chip cache".
"""

from model.chips.pipeline import IngestParams, ProgressFn, ingest
from model.chips.stack import BANDS, CHIPS, FORMAT_VERSION, MANIFEST, MASK, VALID, ChipStack

__all__ = [
    "BANDS",
    "CHIPS",
    "FORMAT_VERSION",
    "MANIFEST",
    "MASK",
    "VALID",
    "ChipStack",
    "IngestParams",
    "ProgressFn",
    "ingest",
]
