"""The browser test fails, naming the fix, when Chromium is missing (it must never skip silently)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.labeling.browser import require_chromium


def test_missing_chromium_fails_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match="make browser") as info:
        require_chromium(tmp_path / "chromium")
    assert "apt-get install -y chromium" in str(info.value)


def test_present_chromium_is_returned(tmp_path: Path) -> None:
    exe = tmp_path / "chromium"
    exe.write_text("#!/bin/sh\n")
    assert require_chromium(exe) == exe
