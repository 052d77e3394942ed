"""The one Streamlit workaround (pages.common.enter_through_app): what it relies on in Streamlit, and that a
direct link to a page on a fresh server still runs inside app.py.

If Streamlit changes the behaviour, the first test says which part; the browser test says whether a shared
link (/race) still gets app.py's navigation and sidebar.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from streamlit.runtime.pages_manager import PagesManager
from streamlit.runtime.scriptrunner import script_runner

from tests.conftest import new_page

ROOT = Path(__file__).resolve().parent.parent


def test_streamlit_still_has_the_flag_the_workaround_flips():
    """The upstream behaviour named in enter_through_app: the first PagesManager sets the class flag from the
    ``pages/`` folder beside the main script; while it is True the ScriptRunner runs the page file alone
    (``_mpa_v1``); ``st.navigation`` sets it to False."""
    assert "uses_pages_directory" in vars(PagesManager), "PagesManager.uses_pages_directory is gone"
    saved = PagesManager.uses_pages_directory
    try:
        PagesManager.uses_pages_directory = None
        PagesManager(str(ROOT / "app.py"), setup_watcher=False)
        assert PagesManager.uses_pages_directory is True, "a pages/ folder beside app.py no longer sets the flag"
    finally:
        PagesManager.uses_pages_directory = saved
    runner = inspect.getsource(script_runner)
    assert "if PagesManager.uses_pages_directory:" in runner and "_mpa_v1(" in runner
    import streamlit.commands.navigation as navigation

    assert "PagesManager.uses_pages_directory = False" in inspect.getsource(navigation.navigation)


@pytest.mark.browser
@pytest.mark.timeout(900)
def test_a_direct_link_on_a_fresh_server_runs_inside_app_py(streamlit_server, chromium):
    """A shared /race link as the fresh server's first request: app.py's navigation (page titles set in
    app.py, not file names) and its sidebar (the study storage) are there, with the race page."""
    page = new_page(chromium)
    try:
        page.goto(f"{streamlit_server.url}/race")
        page.get_by_role("heading", name="Strategy race").wait_for()
        nav = page.locator("[data-testid=stSidebarNav]")
        nav.get_by_text("Part II: Optuna study").wait_for()
        assert "Study storage" in page.locator("[data-testid=stSidebar]").inner_text()
        assert page.locator(".stException").count() == 0
    finally:
        page.close()
