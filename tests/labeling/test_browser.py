"""A volunteer opens one task in Label Studio's labeling interface in headless Chromium: every date's chip loads.

The screenshot is kept under the test's tmp dir, and copied to docs/labelstudio_task.png when that file is
missing (delete it to refresh the committed copy).
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
from playwright import sync_api

from labeling import LabelStudioClient, ProjectSettings, TaskSpec, signup_volunteer
from tests.labeling.browser import require_chromium
from tests.live_services import REPO, LiveLabelStudio, LiveService

pytestmark = pytest.mark.integration

DOCS_COPY = REPO / "docs" / "labelstudio_task.png"


def test_volunteer_sees_the_timeline_grid_with_chips(
    label_studio: LiveLabelStudio, scenario_service: LiveService, tmp_path: Path
) -> None:
    chromium = require_chromium()
    client = label_studio.client
    pid = client.create_project(ProjectSettings(title=f"browser-{uuid.uuid4().hex[:8]}", overlap=2))
    try:
        service = scenario_service
        bid = service.building_ids[0]  # real scenario chips; destroyed mid-timeline
        pushed = client.push(
            pid,
            [
                TaskSpec(
                    bid, service.dates, ("intact",) * 3 + ("destroyed",) * (len(service.dates) - 3), score=0.4
                )
            ],
            public_base_url=service.url,
            model_version="browser-1",
        )
        assert bid in pushed.created
        email, password = "browser-volunteer@striketracker.test", "Browser-volunteer-7c1"
        LabelStudioClient(
            label_studio.url, signup_volunteer(label_studio.url, client.invite_token(), email, password)
        )
        shot = tmp_path / "labelstudio_task.png"
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
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(f"{label_studio.url}/user/login/")
                page.fill("input[name=email]", email)
                page.fill("input[name=password]", password)
                page.click("button[type=submit], input[type=submit]")
                page.wait_for_url(lambda url: "/user/login" not in url, timeout=30_000)
                # the volunteer's label stream: the next task by uncertainty sampling, suggestions hidden
                page.goto(f"{label_studio.url}/projects/{pid}/data?labeling=1")
                n = len(service.dates)
                # Label Studio fetches each chip from our service and shows it as a blob image
                page.wait_for_function(
                    """n => Array.from(document.querySelectorAll('img'))
                        .filter(i => i.complete && i.naturalWidth === 192 && i.naturalHeight === 192).length >= n""",
                    arg=n,
                    timeout=60_000,
                )
                page.get_by_text("Labeling Instructions").wait_for(timeout=15_000)  # the instruction panel
                page.keyboard.press("Escape")
                page.get_by_text("Labeling Instructions").wait_for(state="hidden", timeout=10_000)
                assert page.get_by_text(f"Building {bid}", exact=True).is_visible()
                for date in service.dates:
                    assert page.get_by_text(date, exact=True).count() >= 1
                assert page.get_by_text("not_visible").count() >= n
                assert page.locator("input[type=radio]:checked").count() == 0  # no preselected suggestion
                page.screenshot(path=str(shot), full_page=True)
            finally:
                browser.close()
        assert shot.stat().st_size > 10_000
        if not DOCS_COPY.exists():
            DOCS_COPY.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, DOCS_COPY)
    finally:
        client.delete_project(pid)
