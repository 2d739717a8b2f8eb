"""The chip cache as the service uses it: opened on first use, reopened when ingest rewrites it, PNGs cached.

Rendering a chip (upscale, outline, date band, PNG encode) takes a few milliseconds; Label Studio's editor and
the review page ask for the same chips again and again, so rendered PNGs are kept in a bounded LRU cache keyed
by the cache fingerprint, building row and date (a rewritten cache has another fingerprint, so nothing stale is
ever served).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from model.chips import ChipStack
from serving.chip_render import render_chip

__all__ = ["ChipSource", "RenderedChip"]


@dataclass(frozen=True)
class RenderedChip:
    """One chip PNG and its entity tag."""

    png: bytes
    etag: str


class ChipSource:
    """The chip cache, opened on first use and reopened when ingest rewrites it.

    Args:
        cache: the chip cache folder.
        max_rendered: rendered PNGs kept in memory (about 30 kB each at the default size).
    """

    def __init__(self, cache: Path, *, max_rendered: int = 4096) -> None:
        self.cache = cache
        self._lock = threading.Lock()
        self._stack: ChipStack | None = None
        self._stamp = 0.0
        self._rendered: OrderedDict[tuple[str, int, int], RenderedChip] = OrderedDict()
        self._max_rendered = max_rendered
        self.hits = 0
        self.misses = 0

    def stack(self) -> ChipStack:
        """The open stack.

        Raises:
            CacheError: there is no complete cache at ``cache``.
        """
        manifest = self.cache / "manifest.json"
        stamp = manifest.stat().st_mtime if manifest.exists() else -1.0
        with self._lock:
            if self._stack is None or stamp != self._stamp:
                self._stack = ChipStack.open(self.cache)
                self._stamp = stamp
            return self._stack

    def png(self, stack: ChipStack, row: int, date_index: int) -> RenderedChip:
        """The rendered chip of building ``row`` at ``date_index`` (from the LRU cache when there)."""
        key = (stack.fingerprint, row, date_index)
        with self._lock:
            found = self._rendered.get(key)
            if found is not None:
                self._rendered.move_to_end(key)
                self.hits += 1
                return found
        png = render_chip(
            stack.chips[row, date_index, :3],
            stack.mask[row],
            date=stack.dates[date_index],
            date_index=date_index,
            n_dates=len(stack.dates),
            valid=float(stack.valid[row, date_index]),
        )
        chip = RenderedChip(png, f'"{stack.fingerprint[:16]}-{row}-{date_index}"')
        with self._lock:
            self.misses += 1
            self._rendered[key] = chip
            while len(self._rendered) > self._max_rendered:
                self._rendered.popitem(last=False)
        return chip
