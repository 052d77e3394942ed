"""The race page in real Chromium: set up a tiny race, start it, see live progress, then the answer."""

from __future__ import annotations

import re

import pytest

from tests.conftest import new_page

pytestmark = [pytest.mark.browser, pytest.mark.timeout(1800)]


def set_number(page, key: str, value: int) -> None:
    field = page.locator(f".st-key-{key} input")
    field.fill(str(value))
    field.press("Enter")


def test_tiny_race_from_the_page(streamlit_server, chromium, artifacts) -> None:
    page = new_page(chromium, viewport={"width": 1400, "height": 1000})
    try:
        # A shared link as the fresh server's first request runs inside app.py (navigation and sidebar).
        page.goto(f"{streamlit_server.url}/race")
        page.locator("[data-testid=stSidebarNav]").get_by_text("Strategy race").wait_for()
        name = page.locator(".st-key-race_name input")
        name.wait_for()
        name.fill("browser")
        name.press("Enter")
        set_number(page, "race_trials", 4)
        set_number(page, "race_epochs", 3)
        set_number(page, "race_seeds", 2)
        # Default strategies TPE, random, grid with median pruning on the reduced space: 6 runs.
        page.get_by_text("6 runs x 4 trials x 3 epochs = 72 epochs", exact=False).wait_for()
        page.locator(".st-key-race_start button").click()

        progress = page.locator(".st-key-race_progress").get_by_text(re.compile(r"\d+/24 trials"))
        progress.wait_for()  # live progress, polled from the storage
        page.screenshot(path=str(artifacts / "race_live.png"), full_page=True)

        summary = page.locator(".st-key-race_summary")
        summary.wait_for()
        for key in ("race_by_trial", "race_by_epoch", "race_finals", "race_samples"):
            page.locator(f".st-key-{key} .js-plotly-plot").wait_for()
        text = summary.inner_text()
        assert "validation accuracy" in text and "Final best" in text
        page.locator(".st-key-race_stop").wait_for(state="detached")  # finished: no Stop
        page.locator(".st-key-race_table").wait_for()  # the end of the page: the run is over
        assert page.locator(".st-key-race_resume").count() == 0
        assert page.locator(".stException").count() == 0
        page.set_viewport_size({"width": 1400, "height": 2600})  # the app scrolls inside; show the whole answer
        page.screenshot(path=str(artifacts / "race_answer.png"))
        assert "Part II: Optuna study" in page.locator('[data-testid="stSidebar"]').inner_text()  # app.py ran
        choice = page.locator(".st-key-race_choice")
        shown = choice.inner_text() + " ".join(choice.locator("input").evaluate_all("e => e.map(x => x.value)"))
        assert "browser" in shown  # the new race is the one open
    finally:
        page.close()
