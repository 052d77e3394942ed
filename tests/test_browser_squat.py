"""A lesson's leaderboard cannot be hijacked, in real Chromium on one `streamlit run serve.py` (SQLite storage).

A student tries to start a Part II study named `Lesson 2 (by hand)` and is refused with one line. The storage
also holds a study under that name left by an older version of the lab (or any Optuna client): when the
instructor starts Lesson 2, the Instructor page says the lesson's runs go to `Lesson 2 (by hand, 2)`, and another
student's short Part I run lands on the Leaderboard under that student's nickname.
"""

from __future__ import annotations

import re
import secrets

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import create_trial

from fetal_core.lesson import CLASS_ENV, current_lesson
from fetal_core.storage import open_storage
from tests.conftest import StreamlitServer, new_page, wait_until
from tests.test_browser_class import open_instructor_page, open_part1, type_key, wait_idle
from tests.test_browser_part1 import set_number
from tests.test_browser_part2 import open_part2, set_text
from tests.test_browser_pool import POOL_START_SECONDS

pytestmark = [pytest.mark.browser, pytest.mark.timeout(1800)]

TAKEN = "Lesson 2 (by hand)"


@pytest.fixture
def squat_server(tmp_path, data_path, monkeypatch):
    """The app with an instructor key, on a SQLite storage where TAKEN already holds a study with trials."""
    monkeypatch.delenv(CLASS_ENV, raising=False)  # the server's and this process's study names agree
    storage_url = f"sqlite:///{tmp_path}/app.sqlite3"
    squatted = optuna.create_study(storage=open_storage(storage_url), study_name=TAKEN, direction="maximize")
    for i in range(3):  # distributions that clash with a recorded run's ("Cannot set different log configuration")
        squatted.add_trial(
            create_trial(
                value=60.0 + i,
                params={"batch_size": 16.0 * (i + 1)},
                distributions={"batch_size": FloatDistribution(1.0, 2048.0, log=True)},
            )
        )
    key = secrets.token_urlsafe(18)
    env = {
        "FETAL_HPO_DATA": str(data_path),
        "FETAL_HPO_STORAGE": storage_url,
        "FETAL_HPO_INSTRUCTOR_KEY": key,
        CLASS_ENV: "",
    }
    server = StreamlitServer(env, tmp_path / "streamlit.log")
    yield server, key, storage_url
    server.stop()


def test_a_squatted_lesson_name_is_refused_then_recovered_and_runs_land(squat_server, chromium, artifacts):
    server, key, storage_url = squat_server
    viewport = {"width": 1300, "height": 1000}
    contexts = {who: chromium.new_context(viewport=viewport) for who in ("eve", "teacher", "ada")}
    try:
        # ---- A student tries to take the lesson's study name on Part II: one line says no.
        eve = new_page(contexts["eve"])
        open_part2(eve, f"{server.url}/part2_study?nick=Eve")
        set_text(eve, "p2_name", TAKEN)
        set_number(eve, "p2_trials", 3)
        set_number(eve, "p2_epochs", 5)
        eve.locator(".st-key-p2_start button").first.click()
        refusal = eve.get_by_text(re.compile(r"Not started\. study name: 'Lesson 2 \(by hand\)' is reserved"))
        outcomes = eve.get_by_text(re.compile("Not started|running in the background")).or_(
            eve.locator(".st-key-p2_stop button")
        )  # a refusal, another error, or (wrongly) a running study
        wait_until(  # the first Start may wait for the compute pool
            lambda: outcomes.count() or len(optuna.load_study(study_name=TAKEN, storage=storage_url).trials) > 3,
            "what became of the Start",
            timeout=POOL_START_SECONDS,
        )
        assert refusal.is_visible() and "choose another" in refusal.inner_text()
        assert len(optuna.load_study(study_name=TAKEN, storage=storage_url).trials) == 3  # nothing added

        # ---- The instructor starts Lesson 2: the page says where its runs go.
        teacher = new_page(contexts["teacher"])
        open_instructor_page(teacher, f"{server.url}/instructor", timeout=POOL_START_SECONDS)
        type_key(teacher, key)
        teacher.locator(".st-key-instr_presets_save button").wait_for()
        wait_idle(teacher)
        teacher.get_by_text("Start a new lesson").click()
        set_text(teacher, "instr_new_lesson", "Lesson 2")
        teacher.locator(".st-key-instr_new_lesson_start button").click()
        teacher.get_by_text("Lesson Lesson 2 started").wait_for()
        wait_idle(teacher)
        shown = teacher.locator("[data-testid=stMain]").inner_text()
        assert "Current lesson: Lesson 2" in shown
        assert "'Lesson 2 (by hand)' was taken by a study that class mode did not make" in shown, shown
        assert "recorded in 'Lesson 2 (by hand, 2)'" in shown
        teacher.screenshot(path=str(artifacts / "squat_instructor.png"), full_page=True)

        # ---- Another student's short Part I run lands on the leaderboard, under her nickname.
        ada = new_page(contexts["ada"])
        open_part1(ada, f"{server.url}/part1_manual?nick=Ada_42")
        set_number(ada, "part1_epochs", 3)
        wait_idle(ada)
        ada.locator(".st-key-part1_train button").click()
        ada.locator(".st-key-part1_result h3", has_text="Run 1: finished").wait_for()
        wait_idle(ada)
        assert "is not on the leaderboard" not in ada.locator("[data-testid=stMain]").inner_text()
        board = new_page(contexts["ada"])
        board.goto(f"{server.url}/leaderboard?nick=Ada_42")
        row = board.locator(".st-key-board_table tr").filter(
            has=board.locator("td, th").get_by_text(re.compile(r"^Ada_42$"))
        )
        row.wait_for()
        assert "(no nickname)" not in board.locator(".st-key-board_table").inner_text()  # not the squatter's trials
        board.screenshot(path=str(artifacts / "squat_leaderboard.png"), full_page=True)

        storage = open_storage(storage_url)
        lesson = current_lesson(storage)
        assert (lesson.name, lesson.hand_study) == ("Lesson 2", "Lesson 2 (by hand, 2)")
        [run] = optuna.load_study(study_name="Lesson 2 (by hand, 2)", storage=storage).trials
        assert run.user_attrs["nickname"] == "Ada_42" and len(run.intermediate_values) == 3
        assert len(optuna.load_study(study_name=TAKEN, storage=storage).trials) == 3  # never written to
    finally:
        for context in contexts.values():
            context.close()
