"""Figures and their explanations for the Results page (Optuna's Plotly plots, plus comparison overlays)."""

from __future__ import annotations

import warnings

import optuna
import optuna.visualization as ov
import pandas as pd
import plotly.graph_objects as go
from optuna.trial import TrialState

from fetal_core import review
from fetal_core.text import plotly_figure_text, plotly_text

# Each plot: (title, how to read it). The finding for the study is computed by fetal_core.insights.findings.
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
    """One of Optuna's plots, without its warnings, with every label escaped: Optuna puts parameter names
    and categorical values into axis titles, ticks, legends and hover texts as Plotly markup."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        figure = plot(*args, **kwargs)
    spec = figure.to_dict()
    escaped = plotly_figure_text(spec)
    return figure if escaped is spec else go.Figure(escaped, _validate=False)


def intermediate_figure(trials: list[optuna.trial.FrozenTrial]) -> go.Figure:
    """Per-epoch values of every trial, one colour per state (Optuna's own plot cannot tell pruned apart).

    One trace per state with gaps between trials: a 1,000-trial study stays light in the browser.
    """
    figure = go.Figure()
    for state in ("COMPLETE", "PRUNED", "RUNNING"):
        xs: list = []
        ys: list = []
        names: list = []
        chosen = [t for t in trials if t.state == TrialState[state] and t.intermediate_values]
        for t in chosen:
            steps = sorted(t.intermediate_values)
            xs += steps + [None]
            ys += [t.intermediate_values[s] for s in steps] + [None]
            names += [t.number] * len(steps) + [None]
        if names:
            figure.add_scatter(
                x=xs, y=ys, customdata=names, mode="lines", name=f"{state.lower()} ({len(chosen)})",
                line={"color": STATE_COLOURS[state], "width": 1, "dash": "dot" if state == "PRUNED" else "solid"},
                opacity=0.7, connectgaps=False,
                hovertemplate="trial %{customdata}<br>epoch %{x}<br>%{y:.2f}<extra>" + state.lower() + "</extra>",
            )  # fmt: skip
    figure.update_layout(
        title="Intermediate Values Plot", xaxis_title="Epoch", yaxis_title="Accuracy (%)", legend_title_text="state"
    )
    return figure


def study_figure(
    kind: str, study: optuna.Study, trials: list[optuna.trial.FrozenTrial], importances: dict[str, float] | None = None
) -> go.Figure:
    """One plot of PLOTS (except contour): Optuna's, on ``study`` (a snapshot), or ours from ``trials``."""
    if kind == "history":
        return _quiet(ov.plot_optimization_history, study, target_name="Accuracy (%)")
    if kind == "intermediate":
        return intermediate_figure(trials)
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
        label = plotly_text(name)  # study names are user text
        progress.add_scatter(x=best["completed"], y=best["best"], name=label, mode="lines", line={"shape": "hv"})
        distribution.add_scatter(x=edf["value"], y=edf["share"], name=label, mode="lines", line={"shape": "hv"})
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
