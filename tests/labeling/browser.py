"""Debian's Chromium for the browser test: found where `make browser` installs it, or the test fails saying so.

`make test` promises the browser test, so a missing browser is a failure with the fix in its message, never a
skip.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")


def require_chromium(path: Path = CHROMIUM) -> Path:
    """The Chromium executable, or fail the test naming the fix."""
    if not path.is_file():
        pytest.fail(
            f"Debian's chromium is missing at {path}: the browser test needs it. Install it with `make browser` "
            "(apt-get install -y chromium) and rerun",
            pytrace=False,
        )
    return path
