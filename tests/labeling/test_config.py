"""The labeling configs and the instruction panel (the server's own validation runs in the integration tests)."""

from __future__ import annotations

import pytest

from labeling.config import (
    DATE_KEYS,
    GRADE_KEYS,
    InstructionExample,
    compact_options,
    config_kind,
    instructions_html,
    labeling_config,
)
from labeling.errors import ConfigError


def test_both_configs_are_generated_and_recognised() -> None:
    compact, per_date = labeling_config(), labeling_config(kind="per_date")
    assert config_kind(compact) == "compact" and config_kind(per_date) == "per_date"
    assert 'value="$first_damaged_options"' in compact and "state_{{idx}}" not in compact
    assert "state_{{idx}}" in per_date and "first_damaged" not in per_date
    with pytest.raises(ConfigError, match="kind 'grid'"):
        labeling_config(kind="grid")


def test_keys_never_collide() -> None:
    options = compact_options(tuple(f"2017-01-{d:02d}" for d in range(1, len(DATE_KEYS) + 3)))
    keys = [o.get("hotkey") for o in options["first_damaged_options"]] + list(GRADE_KEYS.values())
    given = [k for k in keys if k]
    assert len(given) == len(set(given)) and "u" not in given  # u is Label Studio's own (unselect)
    assert keys[len(DATE_KEYS)] is None  # dates beyond the keys are clicked


def test_instructions_show_real_chips_of_each_kind() -> None:
    examples = tuple(
        InstructionExample.chip(state, "B/1", t, public_base_url="http://h:1/")
        for t, state in enumerate(("intact", "damaged", "destroyed", "not_visible"))
    )
    page = instructions_html(examples)
    for t in range(4):
        assert f'src="http://h:1/chips/B%2F1/{t}.png"' in page
    assert "Hidden (cloud, haze, no data)" in page and "never damaged" in page and "Ctrl+Enter" in page
    custom = instructions_html((InstructionExample("intact", "<b>roof</b> & walls", 'x" onerror="y'),))
    assert "&lt;b&gt;roof&lt;/b&gt; &amp; walls" in custom and "x&quot; onerror=&quot;y" in custom
    with pytest.raises(ConfigError, match="state 'rubble'"):
        instructions_html((InstructionExample("rubble", "?"),))
    with pytest.raises(ConfigError, match="state 'cloud'"):
        InstructionExample.chip("cloud", "B1", 0, public_base_url="http://h")
    assert "not_visible</b>" in instructions_html(kind="per_date") and "Shift +" not in instructions_html(
        kind="per_date"
    )
