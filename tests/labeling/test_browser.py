"""A volunteer answers real tasks in Label Studio's labeling interface, in headless Chromium, on real chips.

The compact config (first damaged date, grade, optional hidden dates) is driven with the mouse for a typical
building and with the keyboard for another; the clicks and keys are counted from the page's own trusted input
events, the answers are submitted, pulled and converted to per-date states. The screenshot of the answered task
beside the instruction panel (example chips from the chip cache) is kept under the test's tmp dir and copied to
docs/labelstudio_task.png when that file is missing (delete it to refresh the committed copy).
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
from playwright import sync_api

from active_learning.schema import State
from active_learning.truth import load_truth
from labeling import InstructionExample, ProjectSettings, TaskSpec, signup_volunteer
from tests.labeling.browser import require_chromium
from tests.live_services import REPO, LiveLabelStudio, LiveService

pytestmark = pytest.mark.integration

DOCS_COPY = REPO / "docs" / "labelstudio_task.png"
MAX_CLICKS = 3  # issue #15: a typical building in at most 3 clicks

# counts the volunteer's own (trusted) clicks and key presses, as the page sees them
COUNT_INPUT = """
window.__input = {clicks: 0, keys: 0};
window.__resetInput = () => { window.__input = {clicks: 0, keys: 0}; };
document.addEventListener('click', e => { if (e.isTrusted) window.__input.clicks++; }, true);
document.addEventListener('keydown', e => {
  if (e.isTrusted && !['Shift', 'Control', 'Meta', 'Alt'].includes(e.key)) window.__input.keys++;
}, true);
"""


def _examples(service: LiveService) -> tuple[InstructionExample, ...]:
    """One real chip of each kind, from the scenario behind the chip cache."""
    assert service.scenario is not None
    per_date = load_truth(service.scenario).per_date
    known = per_date[per_date["building_id"].isin(service.building_ids)]
    clear = known[known["visible"] & (known["cloud_fraction"] == 0)]
    picks = [clear[clear["state"] == int(s)].iloc[0] for s in (State.INTACT, State.DAMAGED, State.DESTROYED)]
    picks.append(known[~known["visible"]].sort_values("cloud_fraction").iloc[-1])
    return tuple(
        InstructionExample.chip(
            State(int(row["state"])).label if row["visible"] else "not_visible",
            str(row["building_id"]),
            int(row["date_index"]),
            public_base_url=service.url,
        )
        for row in picks
    )


def _typical(service: LiveService) -> tuple[str, int, str]:
    """A building destroyed or damaged mid-timeline: its id, true first damaged date index and final grade."""
    assert service.scenario is not None
    truth = load_truth(service.scenario).buildings.set_index("building_id")
    bid = service.building_ids[0]  # buildings damaged mid-timeline come first
    return bid, int(truth.loc[bid, "true_gap"]), str(truth.loc[bid, "final_grade"])


def _input(page: sync_api.Page) -> dict[str, int]:
    return dict(page.evaluate("() => ({...window.__input})"))


def _wait_for_task(page: sync_api.Page, bid: str, n: int) -> None:
    page.get_by_text(f"Building {bid}", exact=True).wait_for(timeout=60_000)
    # Label Studio fetches each chip from our service and shows it as a blob image
    page.wait_for_function(
        """n => Array.from(document.querySelectorAll('img'))
            .filter(i => i.complete && i.naturalWidth === 192 && i.naturalHeight === 192).length >= n""",
        arg=n,
        timeout=60_000,
    )


def test_volunteer_dates_a_building_in_three_clicks(
    label_studio: LiveLabelStudio, scenario_service: LiveService, tmp_path: Path
) -> None:
    chromium = require_chromium()
    client = label_studio.client
    service = scenario_service
    dates, n = service.dates, len(service.dates)
    bid, gap, grade = _typical(service)
    other = service.building_ids[1]
    examples = _examples(service)
    pid = client.create_project(
        ProjectSettings(title=f"browser-{uuid.uuid4().hex[:8]}", overlap=1, examples=examples)
    )
    try:
        pushed = client.push(
            pid,
            [
                TaskSpec(bid, dates, ("intact",) * n, score=0.1),
                TaskSpec(other, dates, ("intact",) * n, score=0.2),
            ],
            public_base_url=service.url,
            model_version="browser-1",
        )
        assert set(pushed.created) == {bid, other}
        email, password = f"browser-{uuid.uuid4().hex[:6]}@striketracker.test", "Browser-volunteer-7c1"
        signup_volunteer(label_studio.url, client.invite_token(), email, password)
        shot, instructions_shot = tmp_path / "task.png", tmp_path / "instructions.png"
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(chromium),
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--no-first-run",
                    "--disable-sync",
                ],
            )
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1600})  # the whole task in view
                page.add_init_script(COUNT_INPUT)
                page.goto(f"{label_studio.url}/user/login/")
                page.fill("input[name=email]", email)
                page.fill("input[name=password]", password)
                page.click("button[type=submit], input[type=submit]")
                page.wait_for_url(lambda url: "/user/login" not in url, timeout=30_000)
                # the volunteer's label stream: uncertainty sampling serves `bid` (lowest score) first
                page.goto(f"{label_studio.url}/projects/{pid}/data?labeling=1")
                panel = page.get_by_text("Labeling Instructions")
                panel.wait_for(timeout=30_000)
                page.wait_for_function(
                    """() => Array.from(document.querySelectorAll('.lsf-modal-ls__content img'))
                        .filter(i => i.complete && i.naturalWidth > 0).length >= 4""",
                    timeout=30_000,
                )
                page.locator(".lsf-modal-ls__content").screenshot(path=str(instructions_shot))
                page.keyboard.press("Escape")
                panel.wait_for(state="hidden", timeout=10_000)
                _wait_for_task(page, bid, n)
                page.evaluate("window.__resetInput()")
                assert page.locator("input:checked").count() == 0  # no preselected suggestion

                # a typical building with the mouse: the first damaged date, the grade, Submit
                page.locator(f"input[type=radio][name='{dates[gap]}']").click()
                page.locator(f"input[type=radio][name='{grade}']").click()
                page.screenshot(path=str(shot), full_page=True)
                page.get_by_test_id("bottombar-submit-button").click()
                mouse = _input(page)

                # another building with the keyboard: date key, Shift+key for a hidden date, grade key, Ctrl+Enter
                _wait_for_task(page, other, n)
                page.evaluate("window.__resetInput()")
                page.locator("body").click(position={"x": 5, "y": 5})  # focus the page, not an input
                page.keyboard.press("5")
                page.keyboard.press("Shift+2")
                page.keyboard.press("d")
                page.keyboard.press("Control+Enter")
                page.get_by_text("No more tasks", exact=False).first.wait_for(timeout=30_000)
                keys = _input(page)
            finally:
                browser.close()
        print(f"typical building: {mouse['clicks']} clicks, {mouse['keys']} keys; keyboard: {keys}")
        assert mouse == {"clicks": MAX_CLICKS, "keys": 0}
        assert keys["keys"] == 4 and keys["clicks"] == 1  # the one click only focused the page

        pulled = client.pull(pid, secret=service.pseudonym_secret)
        assert pulled.problems == ()
        states = {a.building_id: a.states for a in pulled.annotations}
        assert states[bid] == ("intact",) * gap + (grade,) * (n - gap)
        assert states[other] == ("intact", "not_visible", "intact", "intact", "damaged") + ("damaged",) * (
            n - 5
        )
        assert shot.stat().st_size > 10_000 and instructions_shot.stat().st_size > 10_000
        _compose(shot, instructions_shot, tmp_path / "labelstudio_task.png")
        if not DOCS_COPY.exists():  # delete the committed copy to refresh it
            shutil.copyfile(tmp_path / "labelstudio_task.png", DOCS_COPY)
    finally:
        client.delete_project(pid)


def _compose(task: Path, instructions: Path, out: Path) -> None:
    """The answered task with the instruction panel beside it, as one picture for the README."""
    from PIL import Image

    left, right = Image.open(task), Image.open(instructions)
    canvas = Image.new("RGB", (left.width + right.width, max(left.height, right.height)), "white")
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width, 0))
    canvas.save(out, optimize=True)
