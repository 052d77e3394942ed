"""Fetal Health HPO Lab: the Streamlit entry point (navigation, the shared sidebar, the compute pool)."""

import importlib
import threading

import streamlit as st

from fetal_core.lesson import instructor_key
from pages.class_mode import nickname_sidebar
from pages.common import compute_pool, sidebar
from pages.keys import ENTERED_THROUGH_APP

# Imported by the Results page on a fresh server, seconds of CPU here (scikit-learn alone 1.4 s, for Optuna's
# importance module): Streamlit runs no app code before the first browser connects, so once that first page
# is drawn, one background thread per server imports them, and the Results page need not.
WARM_UP_MODULES = ("plotly.graph_objects", "optuna.visualization", "optuna.importance", "fetal_core.figures",
                   "fetal_core.insights")  # fmt: skip


@st.cache_resource(show_spinner=False)
def warm_up() -> threading.Thread:
    """Start importing ``WARM_UP_MODULES`` in the background (once per server process)."""
    thread = threading.Thread(
        target=lambda: [importlib.import_module(m) for m in WARM_UP_MODULES], name="fetal-hpo-warm-up", daemon=True
    )
    thread.start()
    return thread


# Streamlit runs this file as ``__main__``. The compute pool's worker processes are spawned while it runs,
# and a spawned process imports the parent's ``__main__`` as ``__mp_main__``: the guard keeps them from
# running the app.
if __name__ == "__main__":
    st.set_page_config(page_title="Fetal Health HPO Lab", page_icon="🩺", layout="wide")
    pages = [
        st.Page("pages/home.py", title="Home", icon="🏠", default=True),
        st.Page("pages/part1_manual.py", title="Part I: manual tuning", icon="🎛️"),
        st.Page("pages/part2_study.py", title="Part II: Optuna study", icon="🔎"),
        st.Page("pages/results.py", title="Results", icon="📊"),
        st.Page("pages/race.py", title="Strategy race", icon="🏁"),
        st.Page("pages/leaderboard.py", title="Leaderboard", icon="🏆"),
    ]
    if instructor_key() is not None:  # without the key (one person on a laptop) there is no instructor page
        pages.append(st.Page("pages/instructor.py", title="Instructor", icon="🧑‍🏫"))
    navigation = st.navigation(pages)
    st.session_state[ENTERED_THROUGH_APP] = True
    compute_pool()  # started by the first visit of the server, so the first Train click finds it warm
    sidebar()
    nickname_sidebar()
    navigation.run()
    warm_up()
