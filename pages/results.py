"""Results: review any saved study with Optuna's plots, explained; its trials; and compare studies.

Read only: this page never creates a study, sets an attr or reaps a trial. Finished trials are loaded
once per study state (cache keyed by storage, study and trial counts); a running study refreshes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd
import streamlit as st

from fetal_core import figures, insights, records, report, review, uploads
from fetal_core.insights import PLOTS
from fetal_core.text import plain
from pages import keys
from pages.common import (
    app_settings,
    configured_storage,
    current_dataset,
    enter_through_app,
    report_download,
    session_upload_folder,
)

enter_through_app()

LIVE_SECONDS = 2


@dataclass(frozen=True)
class StudyView:
    """What the page shows of one study at one moment."""

    key: tuple  # (storage url, name, study id, finished count); None-free, identifies the finished trials
    trials: list[optuna.trial.FrozenTrial]
    study: optuna.Study  # an in-memory copy of the finished trials (what most of Optuna's plots read)
    maximize: bool
    attrs: dict
    running: int


UPLOAD_KEY = keys.RESULTS_UPLOAD_COPY  # (digest, url, storage, error) of this session's study file


def _open_upload(data: bytes):
    """(url, storage) of our checked copy of this session's uploaded study file: made once per file, in the
    session's upload folder; a new file replaces (deletes) the previous copy. Raises ``ReviewError``."""
    digest = hashlib.sha256(data).hexdigest()
    held = st.session_state.get(UPLOAD_KEY)
    folder = session_upload_folder()  # also marks the session's uploads as in use
    if held is not None and held[0] == digest and (held[3] or Path(held[1].removeprefix("sqlite:///")).exists()):
        if held[3]:
            raise review.ReviewError(held[3])
        return held[1], held[2]
    if held is not None and held[2] is not None:
        held[2].engine.dispose()
        uploads.remove_sqlite(held[1].removeprefix("sqlite:///"))
    st.session_state.pop(UPLOAD_KEY, None)
    try:
        with st.spinner("Checking the study file…"):
            url, storage = review.open_study_file(data, folder)
    except review.ReviewError as err:
        st.session_state[UPLOAD_KEY] = (digest, None, None, str(err))
        raise
    st.session_state[UPLOAD_KEY] = (digest, url, storage, None)
    return url, storage


@st.cache_resource(show_spinner="Loading trials…", max_entries=12)
def _finished_view(url: str, name: str, study_id: int, n_finished: int, _storage) -> StudyView:
    """The finished trials (immutable once finished), loaded once per (storage, study, finished count)."""
    trials = review.load_trials(_storage, study_id)
    maximize = _storage.get_study_directions(study_id)[0] == optuna.study.StudyDirection.MAXIMIZE
    attrs = _storage.get_study_user_attrs(study_id)
    key = (url, name, study_id, n_finished)
    return StudyView(key, trials, review.snapshot(trials, maximize, name), maximize, attrs, 0)


def study_view(url: str, storage, name: str) -> StudyView:
    """Finished trials from the cache; RUNNING trials (few) fresh on every call."""
    state = review.study_state(storage, name)
    finished = _finished_view(url, name, state.study_id, state.finished, storage)
    if not state.running:
        return finished
    active = review.load_trials(storage, state.study_id, records.LIVE)
    trials = sorted(finished.trials + active, key=lambda t: t.number)
    return StudyView(finished.key, trials, finished.study, finished.maximize, finished.attrs, len(active))


@st.cache_resource(show_spinner="Computing importances…", max_entries=16)
def _importances(key: tuple, method: str, _view: StudyView) -> tuple[dict[str, float], str | None]:
    try:  # view.study is the in-memory copy of the finished trials
        return review.importances(_view.study, method), None
    except review.ReviewError as err:
        return {}, str(err)


LIVE_PLOTS = ("intermediate", "timeline")  # the plots that show RUNNING trials; the others read finished ones


def _draw(kind: str, extra: tuple, view: StudyView, importances: dict):
    if kind == "contour":
        return figures.contour_figure(view.study, *extra)
    if kind == "slice":
        return figures.study_figure(kind, view.study, view.trials, param=extra[0])
    study = review.snapshot(view.trials, view.maximize) if view.running and kind == "timeline" else view.study
    return figures.study_figure(kind, study, view.trials, importances)


@st.cache_resource(show_spinner=False, max_entries=64)
def _cached_draw(key: tuple, kind: str, extra: tuple, _view: StudyView, _importances: dict):
    return _draw(kind, extra, _view, _importances)


def figure(view: StudyView, kind: str, extra: tuple = (), importances: dict | None = None):
    """A plot, cached per finished-trial count; the two that show running trials are drawn afresh.

    ``extra`` must identify everything else the figure depends on (contour pair, slice parameter, importance
    method).
    """
    if view.running and kind in LIVE_PLOTS:
        return _draw(kind, extra, view, importances or {})
    return _cached_draw(view.key, kind, extra, view, importances or {})


@st.cache_data(show_spinner=False, max_entries=16)
def _frame(key: tuple, running: int, _trials: list) -> pd.DataFrame:
    return review.trials_frame(_trials)


def trials_frame(view: StudyView) -> pd.DataFrame:
    if view.running:
        return review.trials_frame(view.trials)
    return _frame(view.key, 0, view.trials)


# ---------------------------------------------------------------- sections


# The Plots tab's two sub-tabs, as optuna-dashboard splits History from Analytics: how the search went, and
# which settings mattered. Only the open one is computed and drawn (each plot of a 1,000-trial study costs a
# browser a good part of a second), so a big study's first plots come quickly.
PROGRESS, PARAMETERS = "Search progress", "Parameters"
PLOT_GROUPS = {
    PROGRESS: ("history", "intermediate", "edf", "timeline"),
    PARAMETERS: ("importance", "slice", "parallel", "contour"),
}
DEFERRED = ("importance", "contour")  # both wait for the importances (the contour's default pair is the top two)


def plot_header(kind: str) -> None:
    title, how = PLOTS[kind]
    st.subheader(title)
    st.caption(f"**How to read this.** {how}")


def show_plot(view: StudyView, kind: str, finding: str | None, **figure_args) -> None:
    """This study's finding and the plot (under its section's title and how to read it)."""
    if finding:
        st.info(plain(finding), icon="🔎")  # findings quote parameter names and values
    st.plotly_chart(figure(view, kind, **figure_args), key=f"plot_{kind}", config={"displaylogo": False})


def plots_section(view: StudyView) -> None:
    """Every plot with its explanation, in two sub-tabs of which only the open one is drawn."""
    data = current_dataset()
    facts = insights.findings(view.trials, view.maximize, view.attrs, None, data and data.null_accuracy)
    if not records.completed(view.trials):
        st.warning(
            "No trial of this study has completed, so plots of objective values are empty. "
            + facts["history"]
            + " The per-epoch curves and the timeline below still show what happened."
        )
        for kind in ("intermediate", "timeline"):
            plot_header(kind)
            show_plot(view, kind, facts.get(kind))
        return
    progress, parameters = st.tabs(list(PLOT_GROUPS), key="results_plot_group", on_change="rerun")
    if progress.open:
        with progress:
            for kind in PLOT_GROUPS[PROGRESS]:
                plot_header(kind)
                show_plot(view, kind, facts.get(kind))
    if parameters.open:
        with parameters:
            parameter_plots(view, facts)


def parameter_plots(view: StudyView, facts: dict[str, str]) -> None:
    """Importances, slice, parallel coordinates and contour. The importances (slow: PED-ANOVA, or fANOVA on
    request) are computed after the slice and parallel plots are drawn, so those show at once."""
    complete = len(records.completed(view.trials))
    use_fanova = st.toggle("Use fANOVA for importances (slower)", key="results_fanova")
    method = "fanova" if use_fanova else "ped-anova"
    sections = {kind: st.container() for kind in PLOT_GROUPS[PARAMETERS]}
    for kind, section in sections.items():
        with section:
            plot_header(kind)
    waiting = {kind: sections[kind].empty() for kind in DEFERRED}
    importance_key = view.key + (complete, method)
    if st.session_state.get(keys.RESULTS_IMPORTANCES_SHOWN) != importance_key:  # not yet drawn in this session
        for note in waiting.values():
            note.caption("⏳ Drawn once the importances are computed, after the other plots.")
    with sections["slice"]:
        slice_section(view)
    with sections["parallel"]:
        show_plot(view, "parallel", facts.get("parallel"))
    with sections["importance"]:
        importances, problem = _importances(view.key + (complete,), method, view)
        waiting["importance"].empty()
        if problem:
            st.info(f"Importances are not available: {plain(problem)}")
        else:
            other = {}
            if importances and complete < insights.STABLE_TRIALS:  # few trials: does the other estimator agree?
                other_method = "ped-anova" if use_fanova else "fanova"
                other, _ = _importances(view.key + (complete,), other_method, view)
            finding = insights.importance_finding(importances, complete, other, method) if importances else None
            show_plot(view, "importance", finding, extra=(method,), importances=importances)
    with sections["contour"]:
        waiting["contour"].empty()
        contour_section(view, list(importances) or sorted({p for t in view.trials for p in t.params}))
    st.session_state[keys.RESULTS_IMPORTANCES_SHOWN] = importance_key


SLICE_FIRST = "learning_rate"  # the setting the lesson's slice finding is about


def slice_section(view: StudyView) -> None:
    """The parameter chooser and the slice plot of that one parameter (one at a time, as optuna-dashboard
    does: all eight panels of a 1,000-trial study cost a browser seconds to draw)."""
    params = sorted({p for t in records.completed(view.trials) for p in t.params})
    if not params:
        st.info("No completed trial has parameters to plot.")
        return
    first = params.index(SLICE_FIRST) if SLICE_FIRST in params else 0
    param = st.selectbox("Parameter", params, index=first, key="results_slice_param")
    show_plot(view, "slice", insights.slice_finding(view.trials, param, view.maximize), extra=(param,))


def contour_section(view: StudyView, params: list[str]) -> None:
    """The pair chooser, its finding and the contour of that one pair (under the section's title)."""
    if len(params) < 2:
        st.info("A contour plot needs two parameters; this study has fewer.")
        return
    left, right = st.columns(2)
    x = left.selectbox("x parameter", params, index=0, key="results_contour_x")
    y = right.selectbox("y parameter", params, index=1, key="results_contour_y")
    if x == y:
        st.info("Choose two different parameters.")
        return
    st.info(plain(insights.contour_finding(view.trials, x, y, view.maximize)), icon="🔎")
    st.plotly_chart(figure(view, "contour", (x, y)), key="plot_contour", config={"displaylogo": False})


def trials_section(view: StudyView, name: str) -> None:
    frame = trials_frame(view)
    if frame.empty:
        st.info("This study has no trials yet.")
        return
    states = sorted(frame["state"].unique())
    left, right = st.columns(2)
    chosen = left.multiselect("States", states, default=states, key="results_states")
    shown = frame[frame["state"].isin(chosen)]
    values = frame["value"].dropna()
    if len(values) and values.min() < values.max():
        low, high = right.slider(
            "Value range",
            float(values.min()),
            float(values.max()),
            (float(values.min()), float(values.max())),
            key="results_value_range",
        )
        shown = shown[shown["value"].isna() | shown["value"].between(low, high)]
    st.caption(f"{len(shown)} of {len(frame)} trials (click a column header to sort).")
    st.dataframe(
        insights.readable_trials(shown),
        hide_index=True,
        key="results_table",
        column_config={
            "value": st.column_config.NumberColumn("value", format="%.2f"),
            "duration_s": st.column_config.NumberColumn("duration (s)", format="%.1f"),
        },
    )
    st.download_button(
        "Download trials as CSV",
        shown.to_csv(index=False).encode(),
        file_name=f"{name}_trials.csv",
        mime="text/csv",
        on_click="ignore",
        key="results_csv",
    )
    if shown.empty:
        return
    numbers = shown["number"].tolist()
    listed = set(numbers)
    best = records.best_trial([t for t in view.trials if t.number in listed], view.maximize)
    first = numbers.index(best.number) if best is not None else 0
    number = st.selectbox("Trial detail", numbers, index=first, key="results_trial")
    trial = next(t for t in view.trials if t.number == number)
    left, right = st.columns([1, 2])
    with left:
        value = records.number(trial.value) if trial.values and len(trial.values) == 1 else None
        value = "–" if value is None else f"{value:.2f}"
        st.markdown(f"**Trial {trial.number}**: {trial.state.name.lower()}, value {value}")
        layers = review.architecture(trial)
        if layers:
            st.markdown("Architecture: " + " → ".join(["21 inputs", *map(str, layers), "3 classes"]))
        params = {
            "parameter": list(trial.params),
            "value": [insights.format_value(v, k) for k, v in trial.params.items()],
        }
        st.dataframe(pd.DataFrame(params), hide_index=True)
    with right:
        curve = review.trial_curve(trial)
        if curve.empty:
            st.info("This trial reported no epochs.")
        else:
            figure = figures.curve_figure(curve, title=f"Trial {trial.number}, per epoch")
            st.plotly_chart(figure, key="plot_trial_curve")


def compare_section(url: str, storage, rows: list[review.StudyRow], current: str) -> None:
    names = [r.name for r in rows if r.objectives == 1]
    st.caption("Choose two or more studies (e.g. TPE vs random, pruned vs not) to overlay their progress.")
    default = [current] + [n for n in names if n != current][:1]
    chosen = st.multiselect("Studies to compare", names, default=default, key="results_compare")
    if len(chosen) < 2:
        st.info("Choose at least two studies.")
        return
    curves, studies = {}, []
    for name in chosen:
        view = study_view(url, storage, name)
        curves[name] = (review.best_so_far(view.trials, view.maximize), review.edf(view.trials))
        studies.append(view.study)  # an in-memory copy named by its study
    progress, distribution = figures.compare_figures(studies)
    st.info(plain(insights.compare_finding(curves)), icon="🔎")  # quotes study names
    st.plotly_chart(progress, key="plot_compare_best")
    st.caption(
        "**How to read this.** Each study's dots are its trials, its line the best found so far: the "
        "study whose line rises higher and earlier found good settings with fewer trials."
    )
    st.plotly_chart(distribution, key="plot_compare_edf")
    st.caption("**How to read this.** The curve further right (and lower) had more trials with high accuracy.")


def report_button(storage, name: str) -> None:
    """The study's report (one HTML file that opens offline), built only when the button is clicked: it draws
    every plot, seconds for a big study."""
    data = current_dataset()
    null_accuracy = data and data.null_accuracy

    report_download(
        lambda: report.study_report(storage, name, null_accuracy),
        report.file_name(name),
        "results_report",
        help="One HTML file with every plot, how to read it and its finding, and the best trial as PyTorch code; "
        "it opens in any browser, offline.",
    )


def review_study(url: str, storage, name: str, rows: list[review.StudyRow], live: bool) -> None:
    """Everything about the chosen study; runs as a fragment polling every 2 s while trials run."""
    try:
        view = study_view(url, storage, name)
    except review.ReviewError as err:
        st.warning(plain(err))
        return
    if live and not view.running:
        st.rerun()  # the study finished: redraw once without polling
    if view.running:
        st.caption(f"🟢 {view.running} trial(s) running: this page refreshes every {LIVE_SECONDS} s.")
    if not view.trials:
        st.info(f"Study '{plain(name)}' has no trials yet. Start one on Part II, or come back while it runs.")
        return
    plots, table, compare = st.tabs(["Plots", "Trials", "Compare studies"], key="results_tab", on_change="rerun")
    if plots.open:
        with plots:
            report_button(storage, name)
            plots_section(view)
    if table.open:
        with table:
            trials_section(view, name)
    if compare.open:
        with compare:
            compare_section(url, storage, rows, name)


live_review = st.fragment(run_every=LIVE_SECONDS)(review_study)


# ---------------------------------------------------------------- page


def choose_storage():
    """(url, storage) of the lab's storage or of an uploaded study file; None when there is none."""
    source = st.segmented_control(
        "Studies from",
        ["Lab storage", "Upload a study file"],
        default="Lab storage",
        key="results_source",
        required=True,
    )
    if source == "Lab storage":
        url = app_settings().storage_url
        try:
            return url, configured_storage()
        except Exception as err:  # a misconfigured storage: say so, do not crash
            st.error(f"The configured study storage cannot be opened: {plain(err)}")
            return None
    upload = st.file_uploader(
        "Optuna study file (.sqlite3 / .db)", type=["sqlite3", "db", "sqlite"], key="results_upload"
    )
    if upload is None:
        st.caption(
            "The file is checked in a separate, limited process and copied; this page reads only the copy, "
            "which is deleted when your session ends."
        )
        return None
    try:
        return _open_upload(upload.getvalue())
    except review.ReviewError as err:
        st.error(f"Cannot open '{plain(upload.name)}': {plain(err)}")
        return None


def study_table(rows: list[review.StudyRow]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "study": r.name,
                "trials": r.trials,
                "complete": r.complete,
                "pruned": r.pruned,
                "failed": r.failed,
                "running": r.running,
                "best": r.best_value,
                "started": r.started,
                "sampler": r.sampler or "–",
                "pruner": r.pruner or "–",
            }
            for r in rows
        ]
    )


st.title("Results")
st.caption(
    "Review any saved study, during or after its run: Optuna's plots with what to look for, the trials, "
    "and comparisons between studies."
)
chosen_storage = choose_storage()
if chosen_storage is not None:
    storage_url, storage = chosen_storage
    try:
        rows = review.list_studies(storage)
    except Exception as err:
        st.error(f"Cannot list the studies in this storage: {plain(err)}")
        rows = None
    if rows == []:
        st.info("There are no studies in this storage yet. Run one on Part II (or with the CLI), then come back.")
    elif rows:
        # Collapsed until opened, and only then sent: the table costs a browser about a second before the
        # first plot of the study (its grid and Arrow code are loaded for it). A fixed label: Streamlit derives
        # the expander's identity from it, so a count in it would close the table whenever a study is added.
        listing = st.expander("All studies in this storage", key="results_studies_open", on_change="rerun")
        if listing.open:
            with listing:
                st.dataframe(study_table(rows), hide_index=True, key="results_studies")
        names = [r.name for r in rows]
        preferred = st.session_state.get(keys.RESULTS_STUDY)
        name = st.selectbox(
            "Study to review", names, index=names.index(preferred) if preferred in names else 0, key="results_pick"
        )
        row = rows[names.index(name)]
        if row.objectives != 1:
            st.warning(
                f"Study '{plain(name)}' has {row.objectives} objectives; this page reviews single-objective studies."
            )
        elif row.running:
            live_review(storage_url, storage, name, rows, True)
        else:
            review_study(storage_url, storage, name, rows, False)
