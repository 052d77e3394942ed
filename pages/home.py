"""Home: what the lab is about, the data set at a glance, and an upload when the server has no usable data set.

An upload is this session's data set only (``pages.common.use_uploaded_data``): it is never written to the
server's data path, and other sessions do not see it.
"""

import plotly.graph_objects as go
import streamlit as st

from fetal_core.data import DatasetError
from fetal_core.text import plain
from pages.common import (
    current_dataset,
    dataset_problem,
    enter_through_app,
    server_dataset,
    session_data,
    use_uploaded_data,
)
from pages.keys import HOME_UPLOAD_MESSAGE

enter_through_app()

st.title("🩺 Fetal Health HPO Lab")
st.write(
    "A small neural network learns to sort cardiotocography (CTG) recordings into *normal*, *suspect* and "
    "*pathological*. How well it learns depends far more on a handful of settings chosen before training "
    "than you might expect. This lab is about choosing those settings: first by hand, then with Optuna."
)

left, right = st.columns(2, gap="large")
with left:
    st.subheader("Parameters and hyperparameters")
    st.markdown(
        "- **Parameters** are the numbers the network finds by itself: every weight and bias. Training "
        "adjusts them after each batch to lower the loss; nobody sets them by hand.\n"
        "- **Hyperparameters** are the decisions made *before* training starts: how many hidden layers and "
        "units, how many rows per batch, which optimiser, how big each step is (learning rate), how hard "
        "weights are pulled towards zero (weight decay), whether the step size shrinks over time (scheduler), "
        "how many passes over the data (epochs). Training cannot change them, so someone (or something) must "
        "search for good ones: that search is hyperparameter optimisation (HPO)."
    )
with right:
    st.subheader("Four ways to search")
    st.markdown(
        "- **Grid search** tries every combination of a few values per setting. Easy to reason about, but "
        "the number of runs multiplies with every setting added, and most runs test values that do not matter.\n"
        "- **Random search** draws each setting at random from a range. With the same budget it tries more "
        "distinct values of the settings that matter, so it usually beats a grid.\n"
        "- **Bayesian optimisation** (Optuna's TPE) learns from the runs so far which regions look promising "
        "and samples there more often, while still exploring now and then.\n"
        "- **Gradient-based** methods treat some hyperparameters as differentiable and adjust them with "
        "gradients, like weights. Powerful for continuous settings (e.g. learning rates), not for choices "
        "such as the optimiser or the number of layers."
    )

st.subheader("The data set at a glance")
if HOME_UPLOAD_MESSAGE in st.session_state:
    st.success(st.session_state.pop(HOME_UPLOAD_MESSAGE))
data = current_dataset()
if data is not None:
    counts = data.class_counts
    chart_column, text_column = st.columns([3, 2], gap="large")
    with chart_column:
        figure = go.Figure(
            go.Bar(
                x=list(counts),
                y=list(counts.values()),
                text=list(counts.values()),
                textposition="outside",
                marker_color=["#2ca02c", "#ff7f0e", "#d62728"],
            )
        )
        figure.update_layout(
            height=320, margin={"l": 10, "r": 10, "t": 30, "b": 10}, title="Recordings per class", yaxis_title="rows"
        )
        st.plotly_chart(figure, key="home_class_counts")
    with text_column:
        st.metric("Rows", f"{data.rows:,}")
        st.metric("Null accuracy", f"{data.null_accuracy:.1f}%", help="Accuracy of always answering 'normal'.")
        st.markdown(
            f"Most recordings are normal, so a model that *always* answers 'normal' is already right "
            f"{data.null_accuracy:.1f}% of the time, without looking at the data. That is the **null accuracy**: "
            "the bar any model must clear before its accuracy means anything. On an unbalanced set like this, "
            "also watch the *balanced accuracy* (the mean recall of the three classes): the constant guess "
            "scores only 33.3% there, and it finds none of the suspect or pathological cases that matter most."
        )
if server_dataset() is None:  # the server has no usable data set: each session may bring its own
    held = session_data()
    if held is None:
        st.warning(f"There is no usable data set on this server yet. {plain(dataset_problem() or '')}")
    else:
        st.info(
            f"You are using your upload '{plain(held.name)}'. It is this browser session's data set only: other "
            "users (and a new tab) do not see it, and nothing is saved on the server."
        )
    st.write(
        "Upload **fetal_health.csv** (the Kaggle data set *fetal-health-classification*: 21 feature columns "
        "and the label column `fetal_health` with values 1, 2, 3). It is checked, then used for this browser "
        "session only."
    )
    upload = st.file_uploader("Upload fetal_health.csv", type=["csv"], key="home_upload")
    if upload is not None:
        try:
            used = use_uploaded_data(upload.getvalue(), upload.name)
        except DatasetError as err:
            st.error(f"This file cannot be used: {plain(err)}")  # quotes the file's name and columns
        else:
            if used is not held:
                st.session_state[HOME_UPLOAD_MESSAGE] = (
                    f"Using '{plain(used.name)}' for this session: {used.dataset.rows:,} rows, null accuracy "
                    f"{used.dataset.null_accuracy:.1f}%. Every page of this session now uses it."
                )
                st.rerun()

st.subheader("Your path through the lab")
st.page_link("pages/part1_manual.py", label="Part I: tune by hand and watch the curves live", icon="🎛️")
st.page_link("pages/part2_study.py", label="Part II: let Optuna search (TPE, pruning, architecture search)", icon="🔎")
st.page_link("pages/results.py", label="Results: review saved studies", icon="📊")
st.page_link("pages/race.py", label="Strategy race: grid vs random vs Bayesian on the same budget", icon="🏁")
st.caption(
    "Start with Part I: train the defaults once (they are deliberately poor), then try to beat the null "
    "accuracy by changing one setting at a time. Part II then shows how far an automatic search gets."
)
