"""Figures and their explanations for the Results page (Optuna's Plotly plots, plus comparison overlays)."""

from __future__ import annotations

import warnings

import numpy as np
import optuna
import optuna.visualization as ov
import pandas as pd
import plotly.graph_objects as go
from optuna.trial import TrialState
from optuna.visualization import _parallel_coordinate as optuna_parallel  # private: see parallel_figure
from optuna.visualization._utils import COLOR_SCALE

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
    return _escaped(figure)


def _escaped(figure: go.Figure) -> go.Figure:
    """``figure`` with every label escaped as Plotly text (parameter names can be anyone's)."""
    spec = figure.to_dict()
    escaped = plotly_figure_text(spec)
    return figure if escaped is spec else go.Figure(escaped, _validate=False)


def intermediate_figure(trials: list[optuna.trial.FrozenTrial]) -> go.Figure:
    """Per-epoch values of every trial, one colour per state (Optuna's own plot cannot tell pruned apart).

    One trace per state with gaps (NaN) between trials, as float32 arrays: Plotly checks a list element by
    element and writes it as JSON text (seconds for 1,000 trials of 50 epochs), an array in one go, as base64.
    """
    figure = go.Figure()
    for state in ("COMPLETE", "PRUNED", "RUNNING"):
        xs: list = []
        ys: list = []
        names: list = []
        chosen = [t for t in trials if t.state == TrialState[state] and t.intermediate_values]
        for t in chosen:
            steps = sorted(t.intermediate_values)
            xs += steps + [np.nan]
            ys += [t.intermediate_values[s] for s in steps] + [np.nan]
            names += [t.number] * len(steps) + [np.nan]
        if names:
            figure.add_scatter(
                x=np.array(xs, np.float32), y=np.array(ys, np.float32), customdata=np.array(names, np.float32),
                mode="lines", name=f"{state.lower()} ({len(chosen)})",
                line={"color": STATE_COLOURS[state], "width": 1, "dash": "dot" if state == "PRUNED" else "solid"},
                opacity=0.7, connectgaps=False,
                hovertemplate="trial %{customdata}<br>epoch %{x}<br>%{y:.2f}<extra>" + state.lower() + "</extra>",
            )  # fmt: skip
    figure.update_layout(
        title="Intermediate Values Plot", xaxis_title="Epoch", yaxis_title="Accuracy (%)", legend_title_text="state"
    )
    return figure


def importance_figure(importances: dict[str, float], trials: list[optuna.trial.FrozenTrial]) -> go.Figure:
    """Optuna's ``plot_param_importances`` drawn from importances already computed (largest first).

    Optuna's own would recompute them (or need ``optuna.importance``, which loads scikit-learn) and, for the
    hover text, deep-copies every trial once per parameter.
    """
    ordered = dict(reversed(list(importances.items())))  # Optuna draws the largest at the top
    kinds = {}
    for trial in trials:
        for name, distribution in trial.distributions.items():
            kinds.setdefault(name, type(distribution).__name__)
    figure = go.Figure(layout={"title": "Hyperparameter Importances", "xaxis": {"title": "Hyperparameter Importance"},
                               "yaxis": {"title": "Hyperparameter"}})  # fmt: skip
    if ordered:
        figure.add_bar(
            x=list(ordered.values()), y=[plotly_text(k) for k in ordered], name="Objective Value", orientation="h",
            text=[f"{v:.2f}" if v >= 0.01 else "<0.01" for v in ordered.values()], textposition="outside",
            cliponaxis=False,
            hovertemplate=[f"{plotly_text(k)} ({kinds.get(k, '')}): {v}<extra></extra>" for k, v in ordered.items()],
        )  # fmt: skip
    return figure


PARALLEL_BANDS = 64  # colour levels of the parallel-coordinate lines: neighbours differ by at most 6 of 255


def parallel_figure(study: optuna.Study) -> go.Figure:
    """Optuna's parallel-coordinate plot with one line trace per colour band instead of one per trial.

    Optuna 5 draws each trial as its own Plotly trace: 750 traces for a 1,000-trial study, about a second to
    build and as much again for the browser to draw. Here the same lines (values, hover texts) are grouped
    into ``PARALLEL_BANDS`` traces by colour, drawn worst band first so the best lines lie on top (Optuna
    draws them in trial order). Axes, annotations and colour bar are Optuna's own, built by its (private)
    helpers; tests compare the result with Optuna's figure.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = optuna_parallel._get_parallel_coordinate_info(study, target_name="Accuracy (%)")
        figure = _escaped(optuna_parallel._get_parallel_coordinate_plot(info._replace(draw_order=())))  # no lines
    if not info.draw_order:
        return figure
    dimensions = info.dims_objectives + info.dims_params
    normalized = [optuna_parallel._normalize_dimension(d) for d in dimensions]
    low, high = optuna_parallel._get_color_range(info.color_values, info.is_rank_color)
    bands: dict[tuple[int, bool], tuple[list, list, list]] = {}
    for trial in info.draw_order:
        share = (info.color_values[trial] - low) / (high - low) if high > low else 0.5
        feasible = info.feasibility is None or info.feasibility[trial]
        xs, ys, hover = bands.setdefault((round(share * (PARALLEL_BANDS - 1)), feasible), ([], [], []))
        xs += [*range(len(dimensions)), np.nan]
        ys += [values[trial] for values in normalized] + [np.nan]
        hover += [[plotly_text(d.label), plotly_text(optuna_parallel._format_dimension_value(d, d.values[trial]))]
                  for d in dimensions]  # fmt: skip
        hover.append(["", ""])
    lines = []
    for band, feasible in sorted(bands, reverse=info.reverse_scale):  # reversed scale: the lowest is best
        xs, ys, hover = bands[band, feasible]
        share = band / (PARALLEL_BANDS - 1)
        colour = optuna_parallel._sample_colorscale(COLOR_SCALE, 1.0 - share if info.reverse_scale else share)
        lines.append({
            "type": "scatter", "x": np.array(xs, np.float32), "y": np.array(ys, np.float32),
            "customdata": np.array(hover, dtype=object), "mode": "lines", "opacity": 0.5, "showlegend": False,
            "connectgaps": False, "line": {"color": colour, "dash": "solid" if feasible else "dot", "width": 1.2},
            "hovertemplate": "%{customdata[0]}: %{customdata[1]}<extra></extra>",
        })  # fmt: skip  (dicts and arrays: Plotly checks them once, and at array speed)
    return go.Figure(data=lines + list(figure.data), layout=figure.layout)


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
        return importance_figure(importances or {}, trials)
    if kind == "parallel":
        return parallel_figure(study)
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
