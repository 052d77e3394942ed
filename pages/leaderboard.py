"""Leaderboard: the current lesson's best run per student, the class's hand-tuned runs against Optuna's trials,
and what the runs show. Live: every open leaderboard looks at the storage every second (a cheap count) and
redraws when a run lands."""

import streamlit as st

from fetal_core.lesson import (
    board_fingerprint,
    current_lesson,
    findings,
    hand_vs_machine_figure,
    leaderboard_rows,
    lesson_trials,
)
from fetal_core.text import plain
from pages.common import app_settings, configured_storage, enter_through_app

enter_through_app()

POLL_SECONDS = 1.0  # a finished run reaches every open leaderboard within ~1 s plus a redraw


@st.cache_data(ttl=0.5, show_spinner=False)
def _fingerprint(url: str) -> tuple:
    """The storage's current state for the leaderboard, looked at by at most one session every 0.5 s."""
    return board_fingerprint(configured_storage())


@st.cache_data(max_entries=8, show_spinner=False)
def _board(url: str, fingerprint: tuple) -> dict:
    """Everything the leaderboard shows for one state of the storage (computed once for all sessions)."""
    storage = configured_storage()
    lesson = current_lesson(storage)
    hand, machine = lesson_trials(storage, lesson)
    return {"lesson": lesson.name, "class_study": lesson.class_study, "rows": leaderboard_rows(hand),
            "figure": hand_vs_machine_figure(hand, machine), "findings": findings(hand, machine),
            "runs": len(hand), "trials": len(machine)}  # fmt: skip


st.title("Leaderboard")
st.write(
    "Every Part I run of the class lands here as soon as it finishes: the best run of each student, the "
    "class's runs by hand against Optuna's trials on one chart, and what the runs show so far."
)


@st.fragment(run_every=POLL_SECONDS)
def live_board() -> None:
    url = app_settings().storage_url
    try:
        board = _board(url, _fingerprint(url))
    except Exception as err:  # the storage is busy or down: say so, the next look tries again
        st.warning(f"The leaderboard cannot read the storage right now: {plain(err, 200)}")
        return
    with st.container(key="board_lesson"):
        st.caption(f"Lesson: {plain(board['lesson'])} · {board['runs']} run(s) by hand · "
                   + (f"class study {plain(board['class_study'])}: {board['trials']} finished trial(s)"
                      if board["class_study"] else "no class study yet"))  # fmt: skip
    with st.container(key="board_table"):
        if board["rows"]:
            st.dataframe(board["rows"], hide_index=True, key="board_rows")
        else:
            st.info("No run yet: train one in Part I and it appears here.")
    st.plotly_chart(board["figure"], key="board_history")
    with st.container(key="board_findings"):
        st.markdown("**What the runs show**")
        for note in board["findings"]:
            st.markdown(f"- {plain(note)}")


live_board()
