"""Figures and their explanations for the Results page (Optuna's Plotly plots, plus comparison overlays)."""

from __future__ import annotations

import warnings

import optuna
import optuna.visualization as ov
import pandas as pd
import plotly.graph_objects as go
from optuna.trial import TrialState

from fetal_core import review

# Each plot: (title, how to read it). The finding for the study is computed by review.findings.
PLOTS: dict[str, tuple[str, str]] = {
    "history": (
        "Optimisation history",
        "Each dot is a completed trial's final validation accuracy, in the order the trials ran; the line is "
        "the best value found so far. A line that keeps rising means the search is still finding better "
        "settings; a long flat line means more trials are unlikely to help much.",
    ),
    "intermediate": (
        "Intermediate values (per-epoch accuracy)",
        "One line per trial: its validation accuracy after each epoch. Blue lines completed, orange lines "
        "were pruned (stopped early because they were worse than the median at the same epoch), green lines "
        "are still running. Pruned lines end early: that is the training time pruning saved.",
    ),
    "slice": (
        "Slice plot",
        "One panel per hyperparameter: every completed trial's value against the setting it used; darker "
        "dots are later trials. Where the high dots cluster is where the good values of that setting lie.",
    ),
    "importance": (
        "Hyperparameter importances",
        "How much of the variation among the good trials each hyperparameter explains (PED-ANOVA, Optuna's "
        "default; fANOVA on request). Importance says which knob matters, not which value of it is good.",
    ),
    "parallel": (
        "Parallel coordinates",
        "Each line is one trial crossing every hyperparameter axis; its colour is the objective value. "
        "Follow the best-coloured lines to see which combinations of settings go together.",
    ),
    "contour": (
        "Contour of one parameter pair",
        "The objective value estimated over two hyperparameters at once (dots are the trials). It shows "
        "interactions a slice plot cannot: a good learning rate may depend on the batch size.",
    ),
    "edf": (
        "Empirical distribution (EDF)",
        "For each accuracy on the x-axis, the share of completed trials that scored at most that. A curve "
        "further to the right means more trials scored well; compare studies with it (Compare tab).",
    ),
    "timeline": (
        "Timeline",
        "One bar per trial from start to end, coloured by state. Bars side by side show trials run in "
        "parallel by several workers; short orange bars are pruned trials.",
    ),
}

STATE_COLOURS = {"COMPLETE": "#1f77b4", "PRUNED": "#ff7f0e", "RUNNING": "#2ca02c"}


def _quiet(plot, *args, **kwargs) -> go.Figure:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        return plot(*args, **kwargs)


def intermediate_figure(study: optuna.Study) -> go.Figure:
    """Optuna's intermediate values plot with lines coloured by trial state (pruned distinguishable)."""
    figure = _quiet(ov.plot_intermediate_values, study)
    states = {t.number: t.state.name for t in study.get_trials(deepcopy=False)}
    shown: set[str] = set()
    for trace in figure.data:
        number = int(str(trace.name).removeprefix("Trial"))
        state = states.get(number, "COMPLETE")
        colour = STATE_COLOURS.get(state, "#999999")
        trace.update(
            name=f"Trial {number} ({state.lower()})",
            line={"color": colour, "width": 1, "dash": "dot" if state == "PRUNED" else "solid"},
            marker={"color": colour, "maxdisplayed": 10},
            legendgroup=state,
            legendgrouptitle=None,
            showlegend=state not in shown,
            opacity=0.6,
        )
        shown.add(state)
    figure.update_layout(showlegend=True, legend_title_text="state", xaxis_title="Epoch", yaxis_title="Accuracy (%)")
    return figure


def study_figure(kind: str, study: optuna.Study, importances: dict[str, float] | None = None) -> go.Figure:
    """One of Optuna's plots for ``study`` (``kind`` a key of PLOTS except contour)."""
    if kind == "history":
        return _quiet(ov.plot_optimization_history, study, target_name="Accuracy (%)")
    if kind == "intermediate":
        return intermediate_figure(study)
    if kind == "slice":
        return _quiet(ov.plot_slice, study, target_name="Accuracy (%)")
    if kind == "importance":
        return _quiet(ov.plot_param_importances, study, evaluator=review.FixedImportances(importances or {}))
    if kind == "parallel":
        return _quiet(ov.plot_parallel_coordinate, study, target_name="Accuracy (%)")
    if kind == "edf":
        return _quiet(ov.plot_edf, study, target_name="Accuracy (%)")
    if kind == "timeline":
        return _quiet(ov.plot_timeline, study)
    raise ValueError(f"unknown plot '{kind}'")


def contour_figure(study: optuna.Study, x: str, y: str) -> go.Figure:
    """Optuna's contour plot for exactly one pair of parameters."""
    return _quiet(ov.plot_contour, study, params=[x, y], target_name="Accuracy (%)")


def curve_figure(curve: pd.DataFrame, title: str) -> go.Figure:
    """A trial's per-epoch curve: accuracies on the left axis, losses (when stored) on the right."""
    figure = go.Figure()
    for column in ("val_accuracy", "balanced_accuracy", "intermediate_value"):
        if column in curve:
            figure.add_scatter(x=curve["epoch"], y=curve[column], name=column.replace("_", " "), mode="lines")
    for column in ("train_loss", "val_loss"):
        if column in curve:
            figure.add_scatter(
                x=curve["epoch"], y=curve[column], name=column.replace("_", " "), mode="lines", yaxis="y2",
                line={"dash": "dot"},
            )  # fmt: skip
    figure.update_layout(
        title=title, xaxis_title="Epoch", yaxis_title="Accuracy (%)", height=360,
        yaxis2={"title": "Loss", "overlaying": "y", "side": "right", "showgrid": False},
    )  # fmt: skip
    return figure


def compare_figures(curves: dict[str, tuple[pd.DataFrame, pd.DataFrame]]) -> tuple[go.Figure, go.Figure]:
    """Best-so-far curves and EDFs of several studies overlaid: ``{name: (best_so_far, edf)}``."""
    progress, distribution = go.Figure(), go.Figure()
    for name, (best, edf) in curves.items():
        progress.add_scatter(x=best["completed"], y=best["best"], name=name, mode="lines", line={"shape": "hv"})
        distribution.add_scatter(x=edf["value"], y=edf["share"], name=name, mode="lines", line={"shape": "hv"})
    progress.update_layout(title="Best accuracy so far", xaxis_title="Completed trials", yaxis_title="Accuracy (%)")
    distribution.update_layout(
        title="Empirical distribution of trial accuracies", xaxis_title="Accuracy (%)",
        yaxis_title="Share of trials with at most this accuracy",
    )  # fmt: skip
    return progress, distribution


def compare_finding(curves: dict[str, tuple[pd.DataFrame, pd.DataFrame]]) -> str:
    """Which study found the best value, and how many completed trials each needed to get within 1 point."""
    parts = []
    for name, (best, _) in curves.items():
        if best.empty:
            parts.append(f"'{name}' has no completed trial")
            continue
        top = best["best"].iloc[-1]
        needed = int(best.loc[best["best"] >= top - 1.0, "completed"].iloc[0])
        parts.append(f"'{name}' reached {top:.2f} and was within 1 point of it after {needed} completed trials")
    return "; ".join(parts) + "."


def pruned_or_complete(study: optuna.Study) -> tuple[int, int]:
    """(completed, pruned) counts, to decide which plots have data."""
    trials = study.get_trials(deepcopy=False)
    return (
        sum(t.state == TrialState.COMPLETE for t in trials),
        sum(t.state == TrialState.PRUNED for t in trials),
    )
