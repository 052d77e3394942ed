"""Leaderboard: the current lesson's best run per student, the class's hand-tuned runs against Optuna's trials,
and what the runs show. Live: every open leaderboard looks at the storage every second (a cheap count) and
redraws when a run lands."""

import streamlit as st

from fetal_core.lesson import (
    BOARD_COLUMNS,
    board_fingerprint,
    current_lesson,
    findings,
    hand_vs_machine_figure,
    leaderboard_rows,
    lesson_presets,
    lesson_trials,
)
from fetal_core.text import plain
from pages import keys
from pages.common import app_settings, configured_storage, enter_through_app

enter_through_app()

POLL_SECONDS = 0.5  # a finished run reaches every open leaderboard within ~1 s plus one redraw
FINGERPRINT_TTL = 0.25  # the server looks at the storage at most 4 times a second, for all sessions together


@st.cache_data(ttl=FINGERPRINT_TTL, show_spinner=False)
def _fingerprint(url: str) -> tuple:
    """The storage's current state for the leaderboard (a few small queries, shared by all sessions)."""
    return board_fingerprint(configured_storage())


@st.cache_data(max_entries=8, show_spinner=False)
def _board(url: str, fingerprint: tuple) -> dict:
    """Everything the leaderboard shows for one state of the storage (computed once for all sessions)."""
    storage = configured_storage()
    lesson = current_lesson(storage)
    hand, machine = lesson_trials(storage, lesson)
    return {
        "lesson": lesson.name,
        "class_study": lesson.class_study,
        "rows": leaderboard_rows(hand),
        "figure": hand_vs_machine_figure(hand, machine),
        "findings": findings(hand, machine, lesson_presets(lesson)),
        "runs": len(hand),
        "trials": len(machine),
    }


st.title("Leaderboard")
st.write(
    "Every Part I run of the class lands here as soon as it finishes: the best run of each student, the "
    "class's runs by hand against Optuna's trials on one chart, and what the runs show so far."
)
url = app_settings().storage_url


@st.fragment(run_every=POLL_SECONDS)
def watch_storage() -> None:
    """Draws nothing: looks at the (cached) fingerprint and redraws the page only when the storage changed."""
    try:
        changed = _fingerprint(url) != st.session_state.get(keys.BOARD_DRAWN_FOR)
    except Exception:  # the storage is busy: the next look tries again
        return
    if changed:
        st.rerun(scope="app")


try:
    fingerprint = _fingerprint(url)
    board = _board(url, fingerprint)
except Exception as err:  # the storage is busy or down: say so; the watcher redraws once it answers
    st.warning(f"The leaderboard cannot read the storage right now: {plain(err, 200)}")
    st.session_state[keys.BOARD_DRAWN_FOR] = None
    watch_storage()
    st.stop()
st.session_state[keys.BOARD_DRAWN_FOR] = fingerprint
with st.container(key="board_lesson"):
    st.caption(
        f"Lesson: {plain(board['lesson'])} · {board['runs']} run(s) by hand · "
        + (
            f"class study {plain(board['class_study'])}: {board['trials']} finished trial(s)"
            if board["class_study"]
            else "no class study yet"
        )
    )
with st.container(key="board_table"):
    # Static: cheap for the browser, text in the page. Drawn from the first look on, empty (its columns) until a run
    # lands: the browser then loads Streamlit's table code (a dozen scripts) when the page opens, not at the moment
    # the lesson's first run lands on every open leaderboard at once (that load made the first run reach a board
    # 0.4-1.3 s later than the next ones on a busy 2-core server; tests/test_browser_class.py).
    st.table(board["rows"] or {column: [] for column in BOARD_COLUMNS}, hide_index=True)
    if not board["rows"]:
        st.info("No run yet: train one in Part I and it appears here.")
st.plotly_chart(board["figure"], key="board_history")
with st.container(key="board_findings"):
    st.markdown("**What the runs show**")
    for note in board["findings"]:
        st.markdown(f"- {plain(note)}")
watch_storage()
