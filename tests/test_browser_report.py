"""The take-home report in real Chromium: opened from a file with the network cut off, every plot is painted and
no request leaves the browser; the Results page's "Download the report" serves the same file."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.results_render import build_study, synthetic_trials
from fetal_core.report import lesson_report
from tests.conftest import new_page
from tests.helpers.offline_report import report_offline
from tests.test_browser_accessibility import serious_violations
from tests.test_report import make_lesson

pytestmark = [pytest.mark.browser]


def opens_offline(chromium, path: Path, artifacts: Path, shot: str) -> int:
    """Open the report offline (``report_offline``), save a screenshot, check WCAG 2.1 AA; the number of plots."""
    with report_offline(chromium, path, {"width": 1200, "height": 900}) as page:
        page.screenshot(path=str(artifacts / shot), full_page=True)
        assert serious_violations(page) == []  # the report meets WCAG 2.1 AA as the app does
        return page.locator(".plotly-graph-div").count()


def test_a_lesson_report_opens_offline_with_every_plot_painted(sqlite_url, tmp_path, chromium, artifacts):
    path = tmp_path / "lesson.html"
    path.write_text(lesson_report(make_lesson(sqlite_url)), encoding="utf-8")
    assert opens_offline(chromium, path, artifacts, "report_lesson.png") >= 8


def test_results_downloads_the_report_of_the_chosen_study(tmp_path, request, chromium, artifacts):
    build_study(f"sqlite:///{tmp_path}/app.sqlite3", "report study", synthetic_trials(30, seed=3))
    server = request.getfixturevalue("streamlit_server")
    page = new_page(chromium, viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{server.url}/results")
        page.locator(".st-key-results_report_build").get_by_role("button").click()  # built when asked
        button = page.locator(".st-key-results_report").get_by_role("button", name="Download the report")
        button.wait_for()
        with page.expect_download() as info:
            button.click()
        download = info.value
        assert download.suggested_filename == "report_study_report.html"
        path = tmp_path / download.suggested_filename
        download.save_as(path)
    finally:
        page.close()
    assert "<h1>Study report: report study</h1>" in path.read_text(encoding="utf-8")
    assert opens_offline(chromium, path, artifacts, "report_study.png") >= 7
