"""Co-registration: per-date shifts recovered from misregistered chips, applied on read, stored with the cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model.datamodule import ChipArrays
from model.registration import (
    REGISTRATION_FILE,
    apply_offsets,
    estimate_registration,
    load_or_estimate,
)
from tests.model.dating_data import synthetic_chips, write_cache

SIZE = 48
TRUE_SHIFTS = np.array([[0, 0], [3, -2], [-4, 1], [0, 0], [2, 4], [-1, -3]])  # (rows, cols) per date


def _city(rng: np.random.Generator, n: int = 60, t: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Chips cut from one textured city whose dates are misregistered by TRUE_SHIFTS; 10% of roofs destroyed."""
    world = rng.uniform(40, 90, size=(n, SIZE + 20, SIZE + 20))
    for i in range(n):  # a few bright roofs and dark roads per chip
        for _ in range(6):
            r, c = rng.integers(4, SIZE + 8, size=2)
            h, w = rng.integers(4, 10, size=2)
            world[i, r : r + h, c : c + w] = rng.choice([30.0, 200.0])
    chips = np.empty((n, t, 4, SIZE, SIZE), dtype=np.uint8)
    for date, (dy, dx) in enumerate(TRUE_SHIFTS[:t]):
        # the date's content lands (dy, dx) pixels south-east of where it belongs
        view = world[:, 10 - dy : 10 - dy + SIZE, 10 - dx : 10 - dx + SIZE] * rng.uniform(0.8, 1.2)
        view = view + rng.normal(0, 5, size=view.shape)
        if date >= 3:  # some buildings destroyed: their centre turns to rubble
            hit = rng.random(n) < 0.1
            view[hit, 18:30, 18:30] = rng.uniform(20, 120, size=(int(hit.sum()), 12, 12))
        chips[:, date] = np.clip(view, 0, 255).astype(np.uint8)[:, None]
    valid = np.ones((n, t), dtype=np.float32)
    valid[rng.random((n, t)) < 0.1] = 0.0  # clouded chips are not matched
    return chips, valid


def test_per_date_shifts_are_recovered_and_centred(rng: np.random.Generator) -> None:
    chips, valid = _city(rng)
    reg = estimate_registration(chips, valid, radius=8, fingerprint="city")
    # shifts are relative: the recovered ones equal the truth up to one common offset (the median frame)
    relative = reg.offsets - reg.offsets[0]
    np.testing.assert_array_equal(relative, TRUE_SHIFTS - TRUE_SHIFTS[0])
    assert np.all(np.median(reg.offsets, axis=0) == 0)
    assert reg.scores[reg.reference] == 1.0 and np.all(reg.scores > 0.5)
    # applied, every date lines up with the reference date
    moved = apply_offsets(chips[7], reg.offsets)
    core = slice(8, SIZE - 8)
    for date in range(len(TRUE_SHIFTS)):
        a, b = moved[date, 0, core, core].astype(float), moved[reg.reference, 0, core, core].astype(float)
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.8


def test_apply_offsets_repeats_edges_instead_of_wrapping() -> None:
    stack = np.arange(2 * 1 * 4 * 4, dtype=np.uint8).reshape(2, 1, 4, 4)
    moved = apply_offsets(stack, np.array([[0, 0], [1, -1]]))
    np.testing.assert_array_equal(moved[0], stack[0])
    # date 1: content at p comes from p + (1, -1); the last row and first column repeat the edge
    np.testing.assert_array_equal(moved[1, 0, :3, 1:], stack[1, 0, 1:, :3])
    np.testing.assert_array_equal(moved[1, 0, 3, 1:], stack[1, 0, 3, :3])
    assert apply_offsets(stack, np.zeros((2, 2), dtype=int)) is stack


def test_too_few_clear_chips_leave_a_date_unshifted(rng: np.random.Generator) -> None:
    chips, valid = _city(rng, n=30)
    valid[:, 2] = 0.0  # date 2 clouded everywhere
    reg = estimate_registration(chips, valid, radius=8)
    assert reg.matched[2] == 0 and np.isnan(reg.scores[2])
    assert (reg.offsets[2] == reg.offsets[reg.reference]).all()  # left where the reference is
    relative = reg.offsets - reg.offsets[0]
    for date in (1, 3, 4, 5):
        np.testing.assert_array_equal(relative[date], TRUE_SHIFTS[date] - TRUE_SHIFTS[0])


def test_registration_is_stored_with_the_cache_and_applied_on_read(
    rng: np.random.Generator, tmp_path: Path
) -> None:
    arrays, _ = synthetic_chips(rng, n=30, n_dates=6, size=SIZE, cloud_rate=0.0)
    chips, valid = _city(rng, n=30)
    arrays = ChipArrays(
        arrays.building_ids, arrays.dates, chips, arrays.mask, valid, arrays.fingerprint, arrays.origins
    )
    cache = write_cache(arrays, tmp_path / "cache")
    opened = ChipArrays.open(cache)
    stored = json.loads((cache / REGISTRATION_FILE).read_text())
    assert stored["fingerprint"] == arrays.fingerprint
    assert opened.registration is not None
    np.testing.assert_array_equal(stored["offsets_px"], opened.registration.offsets)
    assert opened.registration_px == stored["offsets_px"]
    np.testing.assert_array_equal(opened.read(4), apply_offsets(chips[4], opened.registration.offsets))
    np.testing.assert_array_equal(opened.read_many(np.array([4, 9]))[1], opened.read(9))
    raw = ChipArrays.open(cache, register=False)
    assert raw.registration is None
    assert raw.registration_px is None
    np.testing.assert_array_equal(raw.read(4), chips[4])


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        json.dumps(
            {
                "fingerprint": "another-cache",
                "reference": 0,
                "offsets_px": [[9, 9]] * 6,
                "scores": [1.0] * 6,
                "matched": [1] * 6,
            }
        ),
    ],
)
def test_a_stale_or_broken_registration_file_is_re_estimated(
    content: str, rng: np.random.Generator, tmp_path: Path
) -> None:
    chips, valid = _city(rng, n=30)
    (tmp_path / REGISTRATION_FILE).write_text(content)
    reg = load_or_estimate(tmp_path, chips, valid, "this-cache")
    assert reg.fingerprint == "this-cache"
    assert json.loads((tmp_path / REGISTRATION_FILE).read_text())["fingerprint"] == "this-cache"
    np.testing.assert_array_equal(reg.offsets - reg.offsets[0], TRUE_SHIFTS - TRUE_SHIFTS[0])
