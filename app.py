"""Fetal Health HPO Lab: the Streamlit entry point (navigation and the shared sidebar)."""

import streamlit as st

from fetal_core.lesson import instructor_key
from pages.class_mode import nickname_sidebar
from pages.common import ENTERED_THROUGH_APP, sidebar

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
sidebar()
nickname_sidebar()
navigation.run()
