"""A lesson in real Chromium: the instructor's changed presets move an idle student's open Part I without any
click (the fixed optimiser is no longer a widget, the epochs cap is in the caption and on the slider), and a reload
of the instructor's tab keeps the instructor signed in (a cookie holding a server-side sign-in, never the key or
anything in the address), while another browser is not signed in."""

from __future__ import annotations

import secrets
import time

import pytest

from fetal_core.lesson import SIGN_IN_COOKIE
from tests.conftest import StreamlitServer, new_page, wait_until
from tests.test_browser_class import assert_no_instructor_action, open_instructor_page, page_text, type_key, wait_idle
from tests.test_browser_part2 import choose
from tests.test_browser_pool import POOL_START_SECONDS

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]


@pytest.fixture
def lesson_server(tmp_path, data_path):
    key = secrets.token_urlsafe(18)
    env = {
        "FETAL_HPO_DATA": str(data_path),
        "FETAL_HPO_STORAGE": f"sqlite:///{tmp_path}/app.sqlite3",
        "FETAL_HPO_INSTRUCTOR_KEY": key,
    }
    server = StreamlitServer(env, tmp_path / "streamlit.log")
    yield server, key
    server.stop()


def test_presets_move_an_idle_part1_and_a_reload_keeps_the_instructor_signed_in(lesson_server, chromium):
    server, key = lesson_server
    teacher_context = chromium.new_context(viewport={"width": 1300, "height": 900})
    student_context = chromium.new_context(viewport={"width": 1300, "height": 900})
    try:
        teacher = new_page(teacher_context)
        open_instructor_page(teacher, f"{server.url}/instructor", timeout=POOL_START_SECONDS)
        type_key(teacher, key)
        teacher.locator(".st-key-instr_presets_save button").wait_for()
        wait_idle(teacher)

        student = new_page(student_context)
        student.goto(f"{server.url}/part1_manual?nick=Ada")
        student.locator(".st-key-part1_optimizer").wait_for()  # no presets yet: the optimiser is the student's
        wait_idle(student)
        assert student.locator(".st-key-part1_fixed").count() == 0

        choose(teacher, "instr_seen_optimizer", "fixed")
        choose(teacher, "instr_fixed_optimizer", "SGD")
        cap = teacher.locator(".st-key-instr_epochs_cap input")
        cap.fill("40")
        cap.press("Tab")
        teacher.locator(".st-key-instr_presets_save button").click()
        teacher.get_by_text("Presets saved").wait_for()
        saved_at = time.monotonic()
        # The student does nothing: the open page follows the lesson by itself.
        wait_until(
            lambda: (
                student.locator(".st-key-part1_optimizer").count() == 0
                and "optimiser SGD" in (student.locator(".st-key-part1_fixed").all_inner_texts() or [""])[0]
            ),
            "the student's Part I to show the fixed optimiser",
            interval=0.05,
        )
        moved = time.monotonic() - saved_at
        caption = student.locator(".st-key-part1_fixed").inner_text()
        assert "epochs at most 40" in caption, caption
        print(f"\npresets saved -> an idle student's Part I shows them: {moved:.2f} s (target 2 s)")

        # ---- The instructor's tab is reloaded: still signed in, with nothing in the address.
        [cookie] = [c for c in teacher_context.cookies() if c["name"] == SIGN_IN_COOKIE]
        assert cookie["sameSite"] == "Strict" and 0 < cookie["expires"] - time.time() <= 8 * 3600 + 60
        assert key not in cookie["value"]
        teacher.reload()
        teacher.locator(".st-key-instructor_lock").wait_for()
        wait_idle(teacher)
        assert teacher.locator(".st-key-instr_presets_save").count() == 1
        assert "?" not in teacher.url and cookie["value"] not in teacher.url
        assert key not in page_text(teacher) and cookie["value"] not in page_text(teacher)
        assert teacher.locator(".st-key-instr_seen_optimizer input").input_value() == "fixed"  # what is saved

        other = new_page(student_context)  # another browser: no sign-in
        open_instructor_page(other, f"{server.url}/instructor")
        assert_no_instructor_action(other, "another browser")

        teacher.locator(".st-key-instructor_lock button").click()  # Lock signs this browser out, reload or not
        teacher.locator(".st-key-instructor_key_input input").wait_for()
        wait_idle(teacher)
        teacher.reload()
        open_instructor_page(teacher, f"{server.url}/instructor")
        assert_no_instructor_action(teacher, "after Lock and a reload")
    finally:
        teacher_context.close()
        student_context.close()
