"""The researcher review page in headless Chromium: open it, pick a flagged building, store a verdict.

Runs over a real small campaign (tiny scenario, simulated crowd, real aggregation). The screenshots are kept
under the test's tmp dir and copied to docs/ when missing there (delete them to refresh the committed copies).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from active_learning.posterior import Status
from active_learning.settings import Settings
from active_learning.store import Store
from serving.app import create_app
from tests.live_services import REPO, running
from tests.serving.scenario_state import TOKEN, campaign_state

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync"]  # fmt: skip
DOCS = REPO / "docs"


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return campaign_state(tmp_path_factory.mktemp("review-campaign"))


@pytest.fixture
def service(campaign: Settings) -> Iterator[str]:
    with running(create_app(campaign)) as url:
        yield url


def _browser(playwright):  # type: ignore[no-untyped-def]
    assert CHROMIUM.exists(), (
        f"{CHROMIUM} is missing: the review page test needs Debian's chromium; run `make test` "
        "(it installs it) or `apt-get install chromium`"
    )
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)


def _keep(shot: Path) -> None:
    target = DOCS / shot.name
    if not target.exists():
        shutil.copyfile(shot, target)


def test_researcher_reviews_a_flagged_building(service: str, campaign: Settings, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    store = Store.open(campaign.database_url)
    outside: list[str] = []
    errors: list[str] = []
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1100})
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on(
                "request", lambda r: None if r.url.startswith((service, "data:")) else outside.append(r.url)
            )
            page.goto(f"{service}/review")
            page.wait_for_selector("body[data-ready=true]", timeout=60_000)
            markers = page.locator(".leaflet-overlay-pane canvas, .leaflet-overlay-pane path")
            assert markers.count() >= 1  # the buildings are drawn on the map
            flagged = page.locator("#flagged li[data-building]")
            assert flagged.count() >= 1, "the simulated campaign has no flagged building to review"
            building = flagged.first.get_attribute("data-building")
            assert building
            before = store.latest_posteriors()[building]
            assert before.status != Status.EXPERT
            flagged.first.click()
            page.wait_for_selector(f"#detail-head .bid:text-is('{building}')")
            page.wait_for_function(
                "() => [...document.querySelectorAll('#chips img')].filter(i => i.complete && i.naturalWidth > 0).length >= 15",
                timeout=30_000,
            )
            assert page.locator("#answers tr").count() >= 2  # header + at least one volunteer's answers
            shot = tmp_path / "review_page.png"
            page.screenshot(path=str(shot), full_page=True)
            _keep(shot)

            # a verdict needs the token: without it, the page says so and nothing is stored
            page.click("#verdict-submit")
            page.wait_for_selector("#verdict-result.error")
            page.fill("#token", TOKEN)
            page.click("#token-form button")
            gap = 5 if before.map_gap != 5 else 6
            page.select_option("#verdict-gap", str(gap))
            page.fill("#verdict-note", "roof collapse visible on the June image")
            page.click("#verdict-submit")
            page.wait_for_selector("#verdict-result.ok", timeout=30_000)
            page.wait_for_selector("#detail-status:text-is('expert')")
            assert building not in page.locator("#flagged").inner_text()
            shot = tmp_path / "review_verdict.png"
            page.screenshot(path=str(shot), full_page=True)
            _keep(shot)
        finally:
            browser.close()
    assert errors == [] and outside == []  # works offline: nothing but this origin
    after = store.latest_posteriors()[building]
    assert after.status == Status.EXPERT and after.map_gap == gap
    (gold,) = [a for a in store.annotations() if a.source == "expert"]
    assert gold.building_id == building and gold.volunteer_id == "expert-researcher"
    assert "roof collapse" in store.decisions(building)[-1].reason
    detail = httpx.get(f"{service}/api/buildings/{building}").json()
    assert detail["properties"]["status"] == "expert"
