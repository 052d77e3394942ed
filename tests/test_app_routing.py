"""The one Streamlit workaround (pages.common.enter_through_app): what it relies on in Streamlit, and that a
direct link to a page on a fresh server still runs inside app.py.

If Streamlit changes the behaviour, the first test says which part; the browser test says whether a shared
link (/race) still gets app.py's navigation and sidebar.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import optuna
import pytest
from streamlit.runtime.pages_manager import PagesManager
from streamlit.runtime.scriptrunner import script_runner
from streamlit.testing.v1 import AppTest

from fetal_core.lesson import DEFAULT_LESSON, hand_study_name
from fetal_core.storage import open_storage
from tests.conftest import new_page
from tests.helpers.ws_client import Tab, run

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


@pytest.fixture
def legacy_mode_flipped_meanwhile(monkeypatch, tmp_path, data_path):
    """A server still in legacy multipage mode when this session's run starts, switched to st.navigation mode by
    another session while this run draws its (folder-made) navigation: what every tab reconnecting at once to a
    restarted ``streamlit run app.py`` server meets."""
    import streamlit.commands.navigation as navigation

    monkeypatch.setenv("FETAL_HPO_DATA", str(data_path))
    monkeypatch.setenv("FETAL_HPO_STORAGE", f"sqlite:///{tmp_path}/app.sqlite3")
    monkeypatch.delenv("FETAL_HPO_INSTRUCTOR_KEY", raising=False)
    monkeypatch.chdir(ROOT)
    legacy_navigation = navigation._navigation

    def another_session_enters_meanwhile(*args, **kwargs):
        page = legacy_navigation(*args, **kwargs)
        PagesManager.uses_pages_directory = False
        return page

    monkeypatch.setattr(navigation, "_navigation", another_session_enters_meanwhile)
    monkeypatch.setattr(PagesManager, "uses_pages_directory", True)  # restored after the test
    return tmp_path / "app.sqlite3"


def test_a_page_run_alone_while_another_session_switches_modes_still_runs_inside_app_py(legacy_mode_flipped_meanwhile):
    """Part I opened by its link with ?nick=Ada in that race: it runs inside app.py (the session's nickname taken
    from the address, kept there), and its run is stored under that nickname."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params["nick"] = "Ada"
    at.switch_page("pages/part1_manual.py").run()
    assert not at.exception, at.exception
    assert "entered_through_app" in at.session_state, "Part I ran alone, outside app.py"
    assert at.session_state["nickname"] == "Ada" and at.query_params["nick"] == "Ada"

    at.slider(key="part1_epochs_slider").set_value(3)
    at.button(key="part1_train").click().run()
    assert not at.exception, at.exception
    storage = open_storage(f"sqlite:///{legacy_mode_flipped_meanwhile}")
    trials = optuna.load_study(study_name=hand_study_name(DEFAULT_LESSON), storage=storage).trials
    assert [t.user_attrs["nickname"] for t in trials] == ["Ada"]


def test_the_nickname_in_the_address_is_the_sessions_before_the_sidebar_reads_it():
    """A page that asks for the nickname before the sidebar has run (what is recorded with a run) gets the valid
    one from ``?nick=``; an invalid one gives none."""
    script = "\n".join(
        [
            "import sys",
            f"sys.path.insert(0, {str(ROOT)!r})",
            "import streamlit as st",
            "from pages.class_mode import nickname",
            "st.text(repr(nickname()))",
        ]
    )
    for query, expected in (({"nick": "Ada"}, "'Ada'"), ({"nick": "<b>x</b>"}, "None"), ({}, "None")):
        at = AppTest.from_string(script, default_timeout=60)
        for key, value in query.items():
            at.query_params[key] = value
        at.run()
        assert not at.exception, at.exception
        assert at.text[0].value == expected, query


def test_a_fresh_server_never_runs_a_module_of_the_pages_folder_as_a_page(streamlit_server):
    """The first request of a fresh server (`streamlit run serve.py`) names a module of pages/ that is no page: it
    gets app.py's navigation (Home), not a navigation made of the folder's files with that module run alone. The
    server is in st.navigation mode before any session, so no race between reconnecting tabs can run a page
    outside app.py."""

    async def first_request() -> Tab:
        async with Tab(streamlit_server.url, "keys") as tab:
            assert await tab.run()
            return tab

    tab = run(first_request())
    assert tab.navigations, "no navigation sent"
    for pages in tab.navigations:
        assert "keys" not in pages and "common" not in pages and "part1_manual" in pages, pages
    assert tab.exceptions == []
