"""Class mode: nicknames, Part I runs recorded in the lesson's study, the leaderboard and the instructor page."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from fetal_core.lesson import check_nickname
from fetal_core.limits import ConfigError
from tests.conftest import ROOT, shown

PART1 = "pages/part1_manual.py"


@pytest.fixture
def app_env(monkeypatch, tmp_path, data_path):
    monkeypatch.setenv("FETAL_HPO_DATA", str(data_path))
    monkeypatch.setenv("FETAL_HPO_STORAGE", f"sqlite:///{tmp_path}/app.sqlite3")
    monkeypatch.delenv("FETAL_HPO_INSTRUCTOR_KEY", raising=False)
    monkeypatch.chdir(ROOT)


def app(query: dict | None = None, page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    if page is not None:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


HOSTILE_NICKNAMES = ["<b>x</b>", "**x**", "x" * 200, "", "   ", "[a](http://e.vil)", "a\nb", "Ada\u202e", ":red[x]"]


@pytest.mark.parametrize("value", HOSTILE_NICKNAMES)
def test_nicknames_with_markup_or_out_of_range_are_refused(value):
    with pytest.raises(ConfigError, match="nickname"):
        check_nickname(value)


def test_plain_nicknames_are_accepted():
    assert check_nickname("  Ada_42 ") == "Ada_42"
    assert check_nickname("Zoë de-la Cruz") == "Zoë de-la Cruz"
    assert check_nickname("x" * 24) == "x" * 24


def nickname_box() -> AppTest:
    """The sidebar's nickname box alone (AppTest loses an st.navigation app's sidebar after its first run)."""
    script = "\n".join(["import sys", f"sys.path.insert(0, {str(ROOT)!r})",
                         "from pages.class_mode import nickname_sidebar", "nickname_sidebar()"])  # fmt: skip
    return AppTest.from_string(script, default_timeout=60).run()


def type_nickname(at: AppTest, value: str) -> AppTest:
    at.text_input(key="nick_input").set_value(value)
    at.button(key="nick_submit").click().run()
    assert not at.exception, at.exception
    return at


def test_the_nickname_is_asked_once_kept_in_the_url_and_shown_as_text(app_env):
    at = app()
    assert at.text_input(key="nick_input").value == "" and "nick" not in at.query_params  # asked on every page

    box = type_nickname(nickname_box(), "Ada_42")
    assert box.session_state["nickname"] == "Ada_42" and box.query_params["nick"] == "Ada_42"
    assert not [t for t in box.text_input if t.key == "nick_input"]  # asked once
    assert [m.value for m in box.markdown] == ["**Ada\\_42**"]  # shown as text: the underscore escaped

    reloaded = app({"nick": "Ada_42"})  # a reload is a new session with the same URL
    assert reloaded.session_state["nickname"] == "Ada_42"
    assert not [t for t in reloaded.text_input if t.key == "nick_input"]
    reloaded.switch_page(PART1).run()  # Part I rewrites the query with its settings link: the nickname stays
    assert reloaded.query_params["nick"] == "Ada_42" and reloaded.query_params["hl"] == "15-10"


@pytest.mark.parametrize("value", ["<b>x</b>", "**x**", "x" * 200, ""])
def test_a_hostile_nickname_is_refused_with_one_error_in_the_form_and_in_the_url(app_env, value):
    box = type_nickname(nickname_box(), value)
    assert "nickname" not in box.session_state and "nick" not in box.query_params
    [error] = [e.value for e in box.error]
    assert shown(error).startswith("nickname:")

    linked = app({"nick": value})
    assert "nickname" not in linked.session_state and "nick" not in linked.query_params
    if value:
        [error] = [e.value for e in linked.error]
        assert shown(error).startswith("Ignored the nickname in the link: nickname:")
