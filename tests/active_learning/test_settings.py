"""Settings: generated secrets are private from the moment they exist, and stable once made."""

from __future__ import annotations

import stat
from pathlib import Path

from active_learning.settings import Settings


def test_a_generated_secret_is_created_private_and_kept(tmp_path: Path) -> None:
    settings = Settings(work_dir=tmp_path)
    path = settings.secret_file("api_token")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = path.read_text()
    assert len(first) >= 32
    assert settings.secret_file("api_token").read_text() == first  # reused, not regenerated
