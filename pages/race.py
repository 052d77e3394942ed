"""Strategy race: grid vs random vs Bayesian search, with and without pruning, repeated over seeds.

The page only sets up, follows and draws: ``fetal_core.race`` stores every run as a named Optuna study,
runs their trials on the server's compute pool and computes the answer from the stored trials, so a finished race
reopens from the storage without training anything.
"""

from __future__ import annotations

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from fetal_core.figures import integer_axis
from fetal_core.race import STRATEGY_NAMES, RacePlan, list_races, load_plan, race_progress, start_race
from fetal_core.race_analysis import TPE_STARTUP, RaceAnalysis, analyze_race, table_rows
from fetal_core.search import SAMPLERS
from fetal_core.storage import StorageError
from fetal_core.text import plain
from fetal_core.training import ConfigError
from pages import keys
from pages.common import (
    app_settings,
    compute_pool,
    configured_storage,
    current_dataset,
    enter_through_app,
    session_workers,
    show_pool_problem,
)

enter_through_app()

NEW_RACE = "➕ New race"
PRUNING = {"with median pruning": True, "without pruning": False}
COLOURS = px.colors.qualitative.Plotly


def race_workers(name: str) -> list:
    """This session's workers for race ``name`` (also renewed by the sidebar)."""
    return [w for key, w in session_workers().items() if key.startswith(f"race:{name}:")]


def is_running(name: str) -> bool:
    return any(w.alive() for w in race_workers(name))


def start(plan: RacePlan) -> None:
    """Start (or resume) ``plan`` on the compute pool and open it."""
    pool = compute_pool()
    if pool is None:
        show_pool_problem()
        return
    try:
        workers = start_race(plan, app_settings().storage_url, current_dataset(), configured_storage(), pool)
    except (ConfigError, StorageError) as err:
        st.session_state[keys.RACE_ERROR] = str(err)
        return
    for key in [k for k in session_workers() if k.startswith(f"race:{plan.name}:")]:
        del session_workers()[key]  # finished handles of an earlier start
    for i, worker in enumerate(workers):
        session_workers()[f"race:{plan.name}:{i}"] = worker
    st.session_state[keys.RACE_CHOICE] = plan.name


def stop(name: str) -> None:
    """Stop the race's workers: each running trial is told FAIL, finished trials stay."""
    for worker in race_workers(name):
        worker.stop()


# ---------------------------------------------------------------- set-up


def setup() -> RacePlan | None:
    """The set-up widgets and the estimated cost; returns a valid plan or None."""
    left, right = st.columns(2)
    with left:
        name = st.text_input("Race name", value="lesson", key="race_name", max_chars=60)
        strategies = st.multiselect(
            "Strategies",
            list(STRATEGY_NAMES),
            default=["tpe", "random", "grid"],
            key="race_strategies",
            format_func=lambda s: STRATEGY_NAMES[s],
            help="\n\n".join(SAMPLERS.values()),
        )
        pruning = st.multiselect("Pruning", list(PRUNING), default=["with median pruning"], key="race_pruning")
        reduced = st.toggle(
            "Reduced search space (2 hidden layers, Adam, cosine schedule)",
            value=True,
            key="race_reduced",
            help="Searches batch size, learning rate, weight decay and the two widths; grid needs it.",
        )
    with right:
        trials = st.number_input("Trials per run", 1, 1000, 20, key="race_trials")
        epochs = st.number_input("Epochs per trial", 1, 500, 20, key="race_epochs")
        seeds = st.number_input("Repeats (seeds)", 1, 20, 3, key="race_seeds", help="Every run is repeated.")
    try:
        plan = RacePlan(
            name=name,
            strategies=tuple(strategies),
            pruning=tuple(PRUNING[p] for p in pruning),
            seeds=int(seeds),
            trials=int(trials),
            epochs=int(epochs),
            reduced=reduced,
        )
    except ConfigError as err:
        st.error(plain(err))  # quotes the race name as typed
        return None
    runs = len(plan.runs())
    st.info(
        f"Estimated cost: {runs} runs x {plan.trials} trials x {plan.epochs} epochs = "
        f"**{plan.estimated_epochs:,} epochs** at most (grid stops at the end of its grid; pruning cuts trials short). "
        "The runs are shared between two worker processes, one per core."
    )
    return plan


# ---------------------------------------------------------------- plots


def band_figure(curves, x: str, title: str, x_title: str) -> go.Figure:
    """Median best-so-far per strategy with its inter-quartile band over seeds."""
    figure = go.Figure()
    for i, (label, curve) in enumerate(curves.groupby("label", sort=False)):
        colour = COLOURS[i % len(COLOURS)]
        curve = curve.dropna(subset=["median"])
        figure.add_trace(
            go.Scatter(
                x=list(curve[x]) + list(curve[x])[::-1],
                y=list(curve.q3) + list(curve.q1)[::-1],
                fill="toself",
                fillcolor=colour,
                opacity=0.18,
                line=dict(width=0),
                hoverinfo="skip",
                showlegend=False,
                legendgroup=label,
            )
        )
        figure.add_trace(
            go.Scatter(
                x=curve[x],
                y=curve["median"],
                name=label,
                legendgroup=label,
                line=dict(color=colour),
                line_shape="hv",
                hovertemplate=f"{label}<br>{x_title} %{{x}}<br>best %{{y:.2f}}%<extra></extra>",
            )
        )
    figure.update_layout(
        title=title,
        xaxis_title=x_title,
        yaxis_title="best validation accuracy so far (%)",
        height=380,
        margin=dict(t=50, b=40),
        legend=dict(orientation="h", y=-0.2),
    )
    return figure


def show_answer(analysis: RaceAnalysis) -> None:
    """The race's answer: summary, both best-so-far plots, final bests, sampled points, the table."""
    with st.container(key="race_summary"):
        st.subheader("The answer")
        st.markdown("\n".join(f"- {line}" for line in analysis.text))
    if analysis.by_trial.empty:
        return
    left, right = st.columns(2)
    by_trial = band_figure(analysis.by_trial, "trials", "Best so far vs trials", "trials")
    by_trial.update_xaxes(**integer_axis(analysis.plan.trials))
    if "tpe" in analysis.plan.strategies and analysis.plan.trials > TPE_STARTUP:  # the trials after it apart
        by_trial.add_vline(
            x=TPE_STARTUP + 0.5,
            line_dash="dot",
            annotation_text="TPE's random start-up ends",
            annotation_position="bottom right",
        )
    left.plotly_chart(by_trial, key="race_by_trial")
    right.plotly_chart(
        band_figure(analysis.by_epoch, "epochs", "Best so far vs epochs spent (pruning shows here)", "epochs spent"),
        key="race_by_epoch",
    )
    st.caption("Line: median over seeds; band: inter-quartile range (25th to 75th percentile) over seeds.")
    left, right = st.columns([2, 3])
    finals = analysis.runs.dropna(subset=["best"])
    box = px.box(
        finals,
        x="label",
        y="best",
        points="all",
        hover_data=["seed", "trials", "epochs"],
        color="label",
        color_discrete_sequence=COLOURS,
        title="Final best per run",
    )
    box.update_layout(showlegend=False, xaxis_title="", yaxis_title="best validation accuracy (%)", height=420)
    left.plotly_chart(box, key="race_finals")
    samples = analysis.samples
    scatter = px.scatter(
        samples,
        x="learning_rate",
        y="batch_size",
        color="value",
        symbol="state",
        facet_col="label",
        facet_col_wrap=3,
        log_x=True,
        hover_data=["seed", "trial", "epochs"],
        color_continuous_scale="Viridis",
        title="Where each strategy sampled (learning rate x batch size)",
    )
    scatter.for_each_annotation(lambda a: a.update(text=a.text.split("=", 1)[-1]))
    scatter.update_layout(height=420, coloraxis_colorbar_title="val acc %")
    right.plotly_chart(scatter, key="race_samples")
    with st.container(key="race_table"):
        st.dataframe(table_rows(analysis), hide_index=True)


# ---------------------------------------------------------------- live progress


@st.fragment(run_every=1.5)
def live(plan: RacePlan) -> None:
    """Progress and the best-so-far curve, read from the storage while the workers run."""
    if not is_running(plan.name):
        st.rerun(scope="app")  # finished or stopped: redraw the page with the final answer
    for worker in race_workers(plan.name):
        worker.renew()
        worker.poll()
    storage = configured_storage()
    progress = race_progress(plan, storage)
    with st.container(key="race_progress"):
        st.progress(
            progress.fraction,
            text=f"{progress.finished_trials}/{progress.target_trials} trials, {progress.epochs_spent:,} of at most "
            f"{progress.estimated_epochs:,} epochs",
        )
        analysis = analyze_race(plan, storage)
        if not analysis.by_trial.empty:
            st.plotly_chart(
                band_figure(analysis.by_trial, "trials", "Best so far vs trials (live)", "trials"),
                key="race_live_curve",
            )


# ---------------------------------------------------------------- page


st.title("Strategy race")
st.caption(
    "Grid, random and Bayesian search (TPE, GP) race on the same search space, budget and data, with and without "
    "pruning, each run repeated over several seeds: the answer shows the typical run and the seed-to-seed noise."
)
if current_dataset() is None:
    st.warning("No data set yet: upload it on Home first.")
    st.stop()
storage = configured_storage()
if error := st.session_state.pop(keys.RACE_ERROR, None):
    st.error(plain(error))
races = list_races(storage)
if st.session_state.get(keys.RACE_CHOICE) not in (NEW_RACE, *races):
    st.session_state[keys.RACE_CHOICE] = NEW_RACE
choice = st.selectbox("Race", [NEW_RACE, *races], key=keys.RACE_CHOICE, help="Every race stays in the study storage.")

if choice == NEW_RACE:
    new_plan = setup()
    st.button(
        "Start race", key="race_start", type="primary", disabled=new_plan is None, on_click=start, args=(new_plan,)
    )
    st.stop()

plan = load_plan(choice, storage)
space = "reduced (2 layers, Adam)" if plan.reduced else "full (define-by-run 2-4 layers, 3 optimisers)"
st.caption(
    f"{', '.join(STRATEGY_NAMES[s] for s in plan.strategies)}; pruning "
    f"{' and '.join('on' if p else 'off' for p in plan.pruning)}; {plan.seeds} seeds x {plan.trials} trials x "
    f"{plan.epochs} epochs; {space} search space."
)
for worker in race_workers(plan.name):
    if worker.error:
        st.error(f"A race worker failed: {plain(worker.error)}")
if is_running(plan.name):
    st.button(
        "Stop",
        key="race_stop",
        type="primary",
        on_click=stop,
        args=(plan.name,),
        help="Stops both workers; the running trials are failed, finished ones stay. Resume later.",
    )
    live(plan)
    st.stop()
progress = race_progress(plan, storage)
if not progress.complete:
    st.warning(
        f"This race is not finished: {progress.finished_trials}/{progress.target_trials} trials. "
        "Resume runs only what is missing."
    )
    st.button("Resume", key="race_resume", on_click=start, args=(plan,))
show_answer(analyze_race(plan, storage))
