"""The Results page in real Chromium: every plot renders with data, the contour pair switches, the CSV downloads."""

from __future__ import annotations

import csv
import io
import os
import time
from pathlib import Path

import pytest

from benchmarks.results_render import build_study, synthetic_trials
from tests.conftest import wait_until

pytestmark = pytest.mark.browser
# Per Plotly chart on the page: how many of its traces Plotly computed points for (0 = an empty plot).
PLOT_TRACES = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(
    e => (e.calcdata || []).filter(cd => cd && cd.length > 0).length)"""
# The keys of the Plotly charts drawn with data (each sits in its ``st-key-plot_<kind>`` element).
DRAWN_PLOTS = """() => Array.from(document.querySelectorAll('.js-plotly-plot'))
    .filter(e => (e.calcdata || []).some(cd => cd && cd.length > 0))
    .map(e => [...e.closest('[class*="st-key-plot_"]').classList].find(c => c.startsWith('st-key-')).slice(7))"""
CONTOUR_AXES = """() => { const e = document.querySelector('.st-key-plot_contour .js-plotly-plot');
    return e ? [e.layout.xaxis.title.text, e.layout.yaxis.title.text] : null; }"""


PROGRESS = ["edf", "history", "intermediate", "timeline"]  # the Plots tab's sub-tabs, as the page groups them
PARAMETERS = ["contour", "importance", "parallel", "slice"]


def plots_drawn(page, kinds: list[str]) -> None:
    """Wait until the page holds exactly the Plotly charts of ``kinds``, each drawn with data."""
    expected = sorted(f"plot_{kind}" for kind in kinds)
    page.wait_for_function(
        f"(expected) => {{ const drawn = ({DRAWN_PLOTS})().sort(); return ({PLOT_TRACES})().every(n => n > 0)"
        " && JSON.stringify(drawn) === JSON.stringify(expected); }",
        arg=expected,
    )
    assert page.locator(".stException").count() == 0


@pytest.fixture
def prepared_server(tmp_path, request):
    """The storage the server will use holds a 30-trial study before the server (and the page) starts."""
    build_study(f"sqlite:///{tmp_path}/app.sqlite3", "browser_study", synthetic_trials(30, seed=11))
    return request.getfixturevalue("streamlit_server")


def test_results_page_in_chromium(prepared_server, chromium, artifacts):
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(90_000)
    try:
        # A shared link as the fresh server's first request: the page must still run inside app.py
        # (its navigation and sidebar), not as a lone file of the pages/ folder.
        page.goto(f"{prepared_server.url}/results")
        page.get_by_role("heading", name="Results").wait_for()
        nav = page.locator('[data-testid="stSidebarNav"]')
        nav.get_by_text("Part I: manual tuning").wait_for()
        page.locator('[data-testid="stSidebar"]').get_by_text("Study storage").wait_for()
        # The Plots tab opens on the search's progress; the parameters' plots are drawn when their sub-tab opens.
        page.get_by_role("heading", name="Optimisation history").wait_for()
        plots_drawn(page, PROGRESS)
        page.screenshot(path=str(artifacts / "results_progress.png"), full_page=True)
        page.get_by_role("tab", name="Parameters").click()
        page.get_by_role("heading", name="Hyperparameter importances").wait_for()
        plots_drawn(page, PARAMETERS)

        before = page.evaluate(CONTOUR_AXES)
        x = page.locator(".st-key-results_contour_x input").input_value()
        assert before is not None and x in before and len(set(before)) == 2
        choose_y = page.locator(".st-key-results_contour_y input")
        choose_y.click()
        choose_y.fill("batch_size")
        page.keyboard.press("Enter")
        # Optuna orders the pair's axes by name; the drawn pair must now be exactly {x, batch_size}.
        page.wait_for_function(
            f"() => {{ const a = ({CONTOUR_AXES})(); return a && a.includes('batch_size') && a.includes('{x}'); }}"
        )
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length === 4")
        page.set_viewport_size({"width": 1400, "height": 5000})  # Streamlit scrolls inside the app, not the page
        page.wait_for_timeout(1500)
        page.screenshot(path=str(artifacts / "results_parameters.png"))
        page.set_viewport_size({"width": 1400, "height": 1000})

        page.get_by_role("tab", name="Trials").click()
        button = page.locator(".st-key-results_csv button")
        button.wait_for()
        with page.expect_download() as info:
            button.click()
        download = info.value
        assert download.suggested_filename == "browser_study_trials.csv"
        with open(download.path(), encoding="utf-8") as handle:
            rows = list(csv.DictReader(io.StringIO(handle.read())))
        assert len(rows) == 30
        assert {"number", "state", "value", "params_learning_rate", "architecture"} <= set(rows[0])
        assert {r["state"] for r in rows} <= {"COMPLETE", "PRUNED"}
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 1")  # trial curve
        page.set_viewport_size({"width": 1400, "height": 2200})
        page.wait_for_timeout(1000)
        page.screenshot(path=str(artifacts / "results_trials.png"))
    finally:
        page.close()


def test_an_uploaded_study_file_is_read_and_deleted_after_its_session_ends(streamlit_server, chromium, tmp_path):
    """A real server: the upload's copy lives in its session's folder. A sweep (run by any page, at most
    every ``SWEEP_SECONDS``) deletes folders unused for the grace period: a closed tab's, a leftover one, and an
    idle tab's, whose next page run re-makes its copy from the upload and shows the study again."""
    from fetal_core import uploads

    study = tmp_path / "upload.sqlite3"
    build_study(f"sqlite:///{study}", "browser_upload", synthetic_trials(12, seed=3))
    server_folder = uploads.UPLOADS_ROOT / str(streamlit_server.process.pid)
    old = time.time() - uploads.SESSION_GRACE_SECONDS - 60
    owner, other = chromium.new_page(), chromium.new_page()
    for page in (owner, other):
        page.set_default_timeout(120_000)

    def swept(gone: Path) -> None:
        os.utime(gone, (old, old))  # as if unused for longer than the grace period
        deadline = time.monotonic() + 120
        while gone.exists():
            assert time.monotonic() < deadline, f"{gone} was not swept in 120 s"
            time.sleep(3)
            other.goto(f"{streamlit_server.url}/")  # any page run sweeps (at most every SWEEP_SECONDS)
            other.get_by_role("heading", name="Fetal Health HPO Lab").wait_for()

    try:
        owner.goto(f"{streamlit_server.url}/results")
        owner.get_by_text("Upload a study file").click()
        owner.locator(".st-key-results_upload input[type=file]").set_input_files(str(study))
        owner.get_by_role("heading", name="Optimisation history").wait_for()  # the lab storage is empty
        [session] = list(server_folder.iterdir())
        assert [p.suffix for p in session.iterdir()] == [".sqlite3"]
        swept(uploads.session_folder(server_folder, "a-folder-no-session-uses"))
        swept(session)  # the owner's tab is idle

        owner.get_by_role("tab", name="Parameters").click()  # the owner's next page run
        wait_until(lambda: session.exists() and [p.suffix for p in session.iterdir()] == [".sqlite3"], "copy re-made")
        owner.get_by_role("heading", name="Hyperparameter importances").wait_for()
        owner.close()
        swept(session)
    finally:
        for page in (owner, other):
            if not page.is_closed():
                page.close()
