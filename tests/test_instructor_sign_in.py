"""The instructor stays signed in across a reload of the same browser for a limited time: the browser's cookie
holds a random sign-in id that only this server process knows (a restart or a changed key signs it out); neither
the key nor the id is in the address or on screen."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from fetal_core.lesson import SignIns, session_token
from tests.conftest import ROOT

KEY = "c0rrect horse-battery"
INSTRUCTOR = "pages/instructor.py"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_sign_in_holds_for_its_time_on_this_server_with_this_key_only():
    clock = Clock()
    store = SignIns(seconds=3600, clock=clock)
    sign_in = store.issue(KEY)
    assert sign_in and len(sign_in) >= 40 and KEY not in sign_in
    assert store.check(sign_in, KEY) == session_token(KEY)
    assert store.check(sign_in, "another long key!") is None  # the key changed
    assert SignIns(clock=clock).check(sign_in, KEY) is None  # a restarted server knows no sign-in
    for forged in (None, "", "x" * 43, session_token(KEY), KEY, sign_in + "x", 123):
        assert store.check(forged, KEY) is None, forged
    assert sign_in not in repr(store.__dict__)  # the map keeps hashes of the ids
    clock.now += 3599
    assert store.check(sign_in, KEY) == session_token(KEY)
    clock.now += 2
    assert store.check(sign_in, KEY) is None  # expired
    other = store.issue(KEY)
    store.revoke(other)
    assert store.check(other, KEY) is None  # Lock


def test_the_store_holds_at_most_its_limit_dropping_the_oldest():
    clock = Clock()
    store = SignIns(seconds=100, clock=clock, most=3)
    ids = []
    for _ in range(4):
        ids.append(store.issue(KEY))
        clock.now += 1
    assert [store.check(i, KEY) is not None for i in ids] == [False, True, True, True]


@pytest.fixture
def signed_env(monkeypatch, tmp_path, data_path):
    """A server with the key; its sign-in store and the browser's cookie are the test's."""
    from pages import class_mode

    monkeypatch.setenv("FETAL_HPO_DATA", str(data_path))
    monkeypatch.setenv("FETAL_HPO_STORAGE", f"sqlite:///{tmp_path}/app.sqlite3")
    monkeypatch.setenv("FETAL_HPO_INSTRUCTOR_KEY", KEY)
    monkeypatch.chdir(ROOT)
    server = {"store": SignIns(), "cookie": None}
    monkeypatch.setattr(class_mode, "sign_ins", lambda: server["store"])
    monkeypatch.setattr(class_mode, "sign_in_cookie", lambda: server["cookie"])
    class_mode.key_guard.clear()
    yield server
    class_mode.key_guard.clear()


def instructor_page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page(INSTRUCTOR).run()
    assert not at.exception, at.exception
    return at


def signed_in(at: AppTest) -> bool:
    return "instr_presets_save" in [b.key for b in at.button]


def test_a_reload_of_the_same_browser_keeps_the_instructor_signed_in(signed_env):
    at = instructor_page()
    at.text_input(key="instructor_key_input").input(KEY)
    at.button(key="instructor_unlock_button").click().run()
    assert signed_in(at)
    [script] = [e.proto.body for e in at.get("html")]
    sign_in = script.split("fetal_hpo_instructor=", 1)[1].split(";", 1)[0]
    assert len(sign_in) >= 40 and "Max-Age=28800" in script and "SameSite=Strict" in script
    assert KEY not in script and sign_in not in repr(dict(at.query_params))
    assert not [e for e in at.get("markdown") + at.get("caption") if sign_in in e.value]  # not on screen

    assert not signed_in(instructor_page())  # another browser: no cookie
    signed_env["cookie"] = sign_in
    reloaded = instructor_page()  # the same browser reloads: a new session with the cookie
    assert signed_in(reloaded) and not reloaded.get("html")  # nothing new to write: the id is not sent again

    reloaded.button(key="instructor_lock").click().run()  # Lock signs the browser out
    assert not signed_in(reloaded) and not signed_in(instructor_page())


def test_a_server_restart_or_a_changed_key_signs_the_browser_out(signed_env, monkeypatch):
    sign_in = signed_env["store"].issue(KEY)
    signed_env["cookie"] = sign_in
    assert signed_in(instructor_page())
    monkeypatch.setenv("FETAL_HPO_INSTRUCTOR_KEY", "a different long key")
    assert not signed_in(instructor_page())
    monkeypatch.setenv("FETAL_HPO_INSTRUCTOR_KEY", KEY)
    signed_env["store"] = SignIns()  # a restarted server
    assert not signed_in(instructor_page())
