"""Fetal Health HPO Lab: the Streamlit entry point (navigation, the shared sidebar, the compute pool)."""

import streamlit as st

from pages.common import compute_pool, sidebar
from pages.keys import ENTERED_THROUGH_APP

# Streamlit runs this file as ``__main__``. The compute pool's worker processes are spawned while it runs,
# and a spawned process imports the parent's ``__main__`` as ``__mp_main__``: the guard keeps them from
# running the app.
if __name__ == "__main__":
    st.set_page_config(page_title="Fetal Health HPO Lab", page_icon="🩺", layout="wide")

    navigation = st.navigation(
        [
            st.Page("pages/home.py", title="Home", icon="🏠", default=True),
            st.Page("pages/part1_manual.py", title="Part I: manual tuning", icon="🎛️"),
            st.Page("pages/part2_study.py", title="Part II: Optuna study", icon="🔎"),
            st.Page("pages/results.py", title="Results", icon="📊"),
            st.Page("pages/race.py", title="Strategy race", icon="🏁"),
        ]
    )
    st.session_state[ENTERED_THROUGH_APP] = True
    compute_pool()  # started by the first visit of the server, so the first Train click finds it warm
    sidebar()
    navigation.run()
