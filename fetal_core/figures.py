"""Every figure of the app (no Streamlit): one palette for trial states, Optuna's plots made safe to show, and
the curve, history and intermediate-value plots that Part I, Part II and Results share.

Optuna's own plots (``optuna.visualization``) are used wherever they draw what a page needs; ours add what
they cannot show (pruned trials cut short, a manual run to beat). Every label that can hold user text
(parameter, study and trial names, categorical values) is escaped as Plotly text. Public APIs only: Plotly
figures are built validated, and Optuna is reached through ``optuna.visualization``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import optuna
import optuna.visualization as ov
import pandas as pd
import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState
from plotly.colors import sample_colorscale

from . import records
from .data import CLASS_NAMES, FEATURES
from .review import snapshot
from .text import plotly_figure_text, plotly_text

TARGET_NAME = "Accuracy (%)"  # what every study of this lab maximises

# One colour per trial state, on every page and in every plot (Optuna's timeline included).
STATE_COLOURS: dict[str, str] = {
    "COMPLETE": "#1f77b4",  # blue
    "PRUNED": "#ff7f0e",  # orange
    "FAIL": "#d62728",  # red
    "RUNNING": "#2ca02c",  # green
    "WAITING": "#7f7f7f",  # grey
}
# How a state's per-epoch line is drawn (besides its colour): pruned lines end in a cross (cut short).
STATE_LINES: dict[str, dict[str, Any]] = {
    "COMPLETE": {"width": 1.5},
    "PRUNED": {"width": 1.5, "dash": "dash"},
    "FAIL": {"width": 1.5, "dash": "dot"},
    "RUNNING": {"width": 3},
    "WAITING": {"width": 1.5},
}
STATE_ORDER = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")
MANUAL_COLOUR = "#444444"  # Part I's best run, drawn on Part II's history
NULL_COLOUR = "#595959"  # the null-accuracy line and its label (7:1 on white: WCAG AA text contrast)
PER_TRIAL_LINES = 60  # up to this many trials, one trace (legend entry, hover name) per trial
INTERMEDIATE_POINTS = 20_000  # per state, beyond: every n-th epoch of each trial (and its last)
TIMELINE_BARS = 100  # up to this many trials, Optuna's timeline bars; beyond, one trace of segments per state


def state_colour(state: TrialState | str) -> str:
    """The palette colour of a trial state (``TrialState.PRUNED`` or ``"PRUNED"``)."""
    name = state.name if isinstance(state, TrialState) else str(state).upper()
    return STATE_COLOURS.get(name, STATE_COLOURS["WAITING"])


# ---------------------------------------------------------------- Optuna's plots, escaped and recoloured


def escaped(figure: go.Figure) -> go.Figure:
    """``figure`` with every label escaped as Plotly text (Optuna puts parameter names and categorical values
    into titles, ticks, legends and hover texts as markup). The same object when there was nothing to escape."""
    spec = figure.to_dict()
    safe = plotly_figure_text(spec)
    return figure if safe is spec else go.Figure(safe)


def optuna_figure(plot: Callable[..., go.Figure], *args: Any, **kwargs: Any) -> go.Figure:
    """One of ``optuna.visualization``'s plots, without its warnings, escaped, with our state colours."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        figure = plot(*args, **kwargs)
    figure = escaped(figure)
    if plot is ov.plot_timeline:  # one bar trace per state, named by the state
        figure.for_each_trace(lambda t: t.update(marker_color=state_colour(t.name)) if t.name in STATE_COLOURS else t)
    return figure


def slice_figure(study: optuna.Study, param: str | None = None) -> go.Figure:
    """Optuna's slice plot of one parameter (or of every one, a panel each: ~750 SVG dots per panel at 1,000
    trials, which costs a browser about half a second of CPU per panel)."""
    return optuna_figure(ov.plot_slice, study, params=None if param is None else [param], target_name=TARGET_NAME)


def edf_figure(studies: optuna.Study | Sequence[optuna.Study]) -> go.Figure:
    """Optuna's EDF of one study, or of several overlaid (their names, user text, in the legend)."""
    return optuna_figure(ov.plot_edf, studies, target_name=TARGET_NAME)


def timeline_figure(study: optuna.Study) -> go.Figure:
    """Optuna's timeline: a bar per trial from its start to its end, coloured by state.

    Beyond ``TIMELINE_BARS`` trials each state's bars become one trace of line segments (start to end, a gap
    between trials) with Optuna's hover texts: the same picture in a few SVG paths instead of one per trial
    (1,000 bars cost Chromium ~0.9 s of CPU beyond a tiny chart; the segments 0.5-0.8 s in the same probe)."""
    figure = optuna_figure(ov.plot_timeline, study)
    bars = [trace for trace in figure.data if trace.type == "bar"]
    trials = sum(len(bar.y) for bar in bars)
    if trials <= TIMELINE_BARS or len(bars) != len(figure.data):
        return figure
    width = max(1.0, min(4.0, 400 / trials))  # about a bar's height: the plot is a few hundred pixels tall
    segments = []
    for bar in bars:
        # Optuna writes each start with isoformat(), which leaves out a zero fraction of a second: a trial that
        # starts on an exact second is written without one, so the format is ISO 8601's, not the first one's.
        starts = pd.to_datetime(pd.Series(bar.base), format="ISO8601")
        ends = starts + pd.to_timedelta(pd.Series(bar.x, dtype=float), unit="ms")
        xs, ys, texts = (np.full(3 * len(starts), None, dtype=object) for _ in range(3))  # a gap after each
        xs[0::3], xs[1::3] = starts.dt.strftime("%Y-%m-%dT%H:%M:%S.%f"), ends.dt.strftime("%Y-%m-%dT%H:%M:%S.%f")
        ys[0::3] = ys[1::3] = list(bar.y)
        texts[0::3] = texts[1::3] = list(bar.text)
        segments.append(
            go.Scatter(
                x=xs[:-1],
                y=ys[:-1],
                text=texts[:-1],
                mode="lines",
                name=bar.name,
                connectgaps=False,
                line={"color": bar.marker.color, "width": width},
                hovertemplate=bar.hovertemplate,
            )
        )
    return go.Figure(segments, figure.layout)


def contour_figure(study: optuna.Study, x: str, y: str) -> go.Figure:
    """Optuna's contour plot for exactly one pair of parameters."""
    return optuna_figure(ov.plot_contour, study, params=[x, y], target_name=TARGET_NAME)


def integer_axis(largest: float) -> dict[str, Any]:
    """Axis settings for counts and run or trial numbers: ticks on whole numbers only (1, 2, 5, 10, ... apart,
    at most about 10 of them), never at 1.5."""
    steps = (m * 10**e for e in range(12) for m in (1, 2, 5))
    step = next(s for s in steps if s * 10 >= largest)
    return {"tick0": 0, "dtick": step, "tickformat": "d"}


def history_figure(
    studies: optuna.Study | Sequence[optuna.Study],
    pruned: Iterable[FrozenTrial] = (),
    manual_best: float | None = None,
) -> go.Figure:
    """Optuna's optimisation history (of one study, or several overlaid), complete trials in the palette's
    colour; ``pruned`` trials as crosses at the last value they reported; ``manual_best`` (Part I's best
    run) as a dashed line to beat."""
    figure = optuna_figure(ov.plot_optimization_history, studies, target_name=TARGET_NAME)
    if isinstance(studies, optuna.Study):  # several studies keep Optuna's one colour per study
        figure.update_traces(marker_color=STATE_COLOURS["COMPLETE"], selector={"mode": "markers", "name": TARGET_NAME})
    cut = [t for t in pruned if t.intermediate_values]
    if cut:
        figure.add_scatter(
            x=[t.number for t in cut],
            y=[t.intermediate_values[max(t.intermediate_values)] for t in cut],
            mode="markers",
            name="pruned (last epoch reached)",
            marker={"color": STATE_COLOURS["PRUNED"], "symbol": "x", "size": 8},
        )
    if manual_best is not None and math.isfinite(manual_best):
        figure.add_hline(
            y=manual_best,
            line={"color": MANUAL_COLOUR, "dash": "dash"},
            annotation={  # above its line, on the left (the best-value line starts low) and on its own background
                "text": f"best manual run (Part I): {manual_best:.2f}%",
                "xanchor": "left",
                "x": 0,
                "yanchor": "bottom",
                "showarrow": False,
                "bgcolor": "rgba(255, 255, 255, 0.85)",
            },
        )
    numbers = [x for trace in figure.data for x in (trace.x or ()) if isinstance(x, int | float)]
    figure.update_xaxes(**integer_axis(max(numbers, default=1)))
    return figure


def importance_figure(importances: Mapping[str, float], trials: Sequence[FrozenTrial]) -> go.Figure:
    """Optuna's ``plot_param_importances`` drawn from importances already computed (largest first).

    Optuna's own would recompute them (or need ``optuna.importance``, which loads scikit-learn) and, for the
    hover text, deep-copies every trial once per parameter. Tests compare it with Optuna's figure.
    """
    ordered = dict(reversed(list(importances.items())))  # Optuna draws the largest at the top
    kinds: dict[str, str] = {}
    for trial in trials:
        for name, distribution in trial.distributions.items():
            kinds.setdefault(name, type(distribution).__name__)
    figure = go.Figure(
        layout={
            "title": "Hyperparameter Importances",
            "xaxis": {"title": "Hyperparameter Importance"},
            "yaxis": {"title": "Hyperparameter"},
        }
    )
    if ordered:
        figure.add_bar(
            x=list(ordered.values()),
            y=[plotly_text(k) for k in ordered],
            name="Objective Value",
            orientation="h",
            text=[f"{v:.2f}" if v >= 0.01 else "<0.01" for v in ordered.values()],
            textposition="outside",
            cliponaxis=False,
            hovertemplate=[f"{plotly_text(k)} ({kinds.get(k, '')}): {v}<extra></extra>" for k, v in ordered.items()],
        )
    return figure


PARALLEL_BANDS = 64  # colour levels of the parallel-coordinate lines: neighbours differ by at most 6 of 255


PARALLEL_LINES, PARALLEL_BEST = 300, 100  # above 300 completed trials: the best 100 and 200 spread over the rest


def lines_shown(complete: Sequence[FrozenTrial], maximize: bool = True) -> list[FrozenTrial]:
    """The completed trials the parallel-coordinate plot draws: all of them up to ``PARALLEL_LINES``; beyond,
    the best ``PARALLEL_BEST``, the worst, and others evenly spread over the rest in trial order (hundreds
    of lines overplot each other, and Optuna builds one Plotly trace per line: seconds at 1,000 trials)."""
    if len(complete) <= PARALLEL_LINES:
        return list(complete)
    order = sorted(range(len(complete)), key=lambda i: complete[i].value if maximize else -complete[i].value)
    ranked = order[::-1]  # positions in ``complete``, best first
    chosen = {*ranked[:PARALLEL_BEST], ranked[-1]}  # the worst too: the colour bar keeps its range
    rest = sorted(ranked[PARALLEL_BEST:-1])
    step = len(rest) / (PARALLEL_LINES - len(chosen))
    chosen.update(rest[int(i * step)] for i in range(PARALLEL_LINES - len(chosen)))
    return [complete[i] for i in sorted(chosen)]


def _colour_at(scale: list, share: float) -> str:
    """The colour at ``share`` (0-1) of a Plotly colour scale, unrounded like Optuna's line colours."""
    red, green, blue = (255 * c for c in sample_colorscale(scale, share, colortype="tuple")[0])
    return f"rgb({red},{green},{blue})"


def parallel_figure(study: optuna.Study) -> go.Figure:
    """Optuna's parallel-coordinate plot with its one-trace-per-trial lines grouped into ``PARALLEL_BANDS``
    traces by colour (hundreds of SVG traces cost the browser about a second at 1,000 trials).

    Axes, annotations, colour bar, lines and hover texts are Optuna's own figure's. A line's first point is
    its objective on a 0-1 axis, which is also where its colour lies on the colour bar's scale: each band is
    drawn in the colour of its middle, worst band first so the best lines lie on top (Optuna draws them in
    trial order). Tests compare the result with Optuna's figure.
    """
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    shown = lines_shown(complete, maximize)
    if len(shown) < len(complete):
        study = snapshot(shown, maximize, study.study_name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        figure = ov.plot_parallel_coordinate(study, target_name=TARGET_NAME)
    if len(shown) < len(complete):
        others = len(shown) - PARALLEL_BEST
        figure.update_layout(
            title=f"Parallel Coordinate Plot: the best {PARALLEL_BEST} and {others} others of "
            f"{len(complete)} completed trials"
        )
    *lines, colour_bar = figure.data
    if not lines or colour_bar.marker.colorscale is None:
        return escaped(figure)
    scale = [[float(at), colour] for at, colour in colour_bar.marker.colorscale]
    reverse = bool(colour_bar.marker.reversescale)
    bands: dict[tuple[int, str], tuple[list, list, list]] = {}
    for line in lines:
        share = float(line.y[0])
        band = round((share if math.isfinite(share) else 0.5) * (PARALLEL_BANDS - 1))
        xs, ys, hover = bands.setdefault((band, line.line.dash or "solid"), ([], [], []))
        xs += [*line.x, np.nan]
        ys += [*line.y, np.nan]
        hover += [*(list(c) for c in line.customdata), ["", ""]]
    style = {"opacity": lines[0].opacity, "width": lines[0].line.width, "hovertemplate": lines[0].hovertemplate}
    grouped = []
    for band, dash in sorted(bands, reverse=reverse):  # reversed scale (minimise): the lowest is best
        xs, ys, hover = bands[band, dash]
        share = band / (PARALLEL_BANDS - 1)
        grouped.append(
            {
                "type": "scatter",
                "x": np.array(xs, np.float32),
                "y": np.array(ys, np.float32),
                "customdata": np.array(hover, dtype=object),
                "mode": "lines",
                "opacity": style["opacity"],
                "showlegend": False,
                "connectgaps": False,
                "hovertemplate": style["hovertemplate"],
                "line": {
                    "color": _colour_at(scale, 1.0 - share if reverse else share),
                    "dash": dash,
                    "width": style["width"],
                },
            }
        )
    figure.data = [colour_bar]  # Optuna's layout and colour bar stay as they are (rebuilding them costs seconds)
    figure.add_traces(grouped)
    figure.data = [*figure.data[1:], figure.data[0]]
    _room_for_objective_labels(figure)
    return escaped(figure)


def _room_for_objective_labels(figure: go.Figure) -> None:
    """Optuna writes the objective's tick labels left of the first axis, 0.2 axis units from the plot's edge:
    with eight parameters that is ~15 px and "92.5" was cut off. Keep ~8% of the width (~55 px at 700 px)."""
    low, high = figure.layout.xaxis.range or (-0.2, 1.2)
    room = 0.08 * (high - low) / (1 - 0.08)
    figure.update_xaxes(range=[min(low, -room), high])


# ---------------------------------------------------------------- per-epoch values


def _finite_or_none(values: Iterable[float]) -> list[float | None]:
    return [v if isinstance(v, int | float) and math.isfinite(v) else None for v in values]


def _null_line(null_accuracy: float) -> dict:
    return {
        "shapes": [
            {
                "type": "line",
                "xref": "paper",
                "x0": 0,
                "x1": 1,
                "y0": null_accuracy,
                "y1": null_accuracy,
                "line": {"dash": "dash", "color": NULL_COLOUR, "width": 1.5},
            }
        ],
        "annotations": [
            {
                "xref": "paper",
                "x": 1,
                "y": null_accuracy,
                "yanchor": "top",
                "xanchor": "right",
                "text": f"null accuracy {null_accuracy:.1f}%",
                "showarrow": False,
                "font": {"color": NULL_COLOUR},
            }
        ],
    }


CURVE_ACCURACIES = {"val_accuracy": "validation accuracy %", "balanced_accuracy": "balanced accuracy %",
                    "intermediate_value": "reported value"}  # fmt: skip
CURVE_LOSSES = {"train_loss": "train loss (right axis)", "val_loss": "validation loss (right axis)"}
CURVE_COLOURS = {"val_accuracy": "#1f77b4", "balanced_accuracy": "#17becf", "intermediate_value": "#1f77b4",
                 "train_loss": "#ff7f0e", "val_loss": "#9467bd"}  # fmt: skip


def _columns(history: Sequence[Mapping[str, Any]] | pd.DataFrame | Mapping[str, Sequence]) -> dict[str, list]:
    if isinstance(history, pd.DataFrame):
        return {str(c): history[c].tolist() for c in history.columns}
    if isinstance(history, Mapping):
        return {str(k): list(v) for k, v in history.items()}
    keys = dict.fromkeys(k for row in history for k in row)
    return {k: [row.get(k) for row in history] for k in keys}


def curve_figure(
    history: Sequence[Mapping[str, Any]] | pd.DataFrame | Mapping[str, Sequence],
    null_accuracy: float | None = None,
    epochs: int | None = None,
    title: str = "",
) -> dict:
    """One run's (or trial's) per-epoch curve: accuracies on the left axis, losses on the right, the
    null-accuracy line when given, the x-axis spanning ``epochs`` when given.

    ``history``: per-epoch rows (Part I's run records), or columns (a trial's stored history, or its
    intermediate values as ``epoch``/``intermediate_value``). A plain Plotly figure dict: building it costs
    well under a millisecond, which matters when Part I redraws it while a run trains.
    """
    columns = _columns(history)
    x = columns.get("epoch", [])
    accuracies = [c for c in CURVE_ACCURACIES if c in columns] or ["val_accuracy"]
    losses = [c for c in CURVE_LOSSES if c in columns] or (["train_loss"] if not columns else [])
    traces = [
        {
            "type": "scatter",
            "x": x,
            "y": _finite_or_none(columns.get(c, [])),
            "name": CURVE_ACCURACIES[c],
            "mode": "lines+markers" if 0 < len(x) < 60 and c == accuracies[0] else "lines",
            "line": {"color": CURVE_COLOURS[c], "width": 2 if c == accuracies[0] else 1.5},
        }
        for c in accuracies
    ] + [
        {
            "type": "scatter",
            "x": x,
            "y": _finite_or_none(columns.get(c, [])),
            "name": CURVE_LOSSES[c],
            "yaxis": "y2",
            "mode": "lines",
            "line": {"color": CURVE_COLOURS[c], "width": 1.5, "dash": "dot" if c == "val_loss" else None},
        }
        for c in losses
    ]
    for trace in traces:
        if trace["line"].get("dash") is None:
            trace["line"].pop("dash", None)
    layout: dict[str, Any] = {
        "title": {"text": plotly_text(title)},
        "height": 380,
        "margin": {"l": 10, "r": 10, "t": 50, "b": 10},
        "legend": {"orientation": "h", "y": -0.2},
        "xaxis": {"title": {"text": "epoch"}},
        "yaxis": {"title": {"text": "accuracy %"}, "range": [0, 100]},
        "yaxis2": {
            "title": {"text": "loss"},
            "overlaying": "y",
            "side": "right",
            "rangemode": "tozero",
            "showgrid": False,
        },
    }
    if epochs:
        layout["xaxis"]["range"] = [0.5, max(epochs, 2) + 0.5]
    if null_accuracy is not None:
        layout.update(_null_line(null_accuracy))
    return {"data": traces, "layout": layout}


def overlay_figure(runs: Sequence[Mapping[str, Any]]) -> dict:
    """Part I: every run's validation-accuracy curve on one chart (a Plotly figure dict)."""
    traces = [
        {
            "type": "scatter",
            "mode": "lines",
            "name": plotly_text(run["label"]),
            "x": [h["epoch"] for h in run["history"]],
            "y": _finite_or_none(h["val_accuracy"] for h in run["history"]),
        }
        for run in runs
    ]
    layout = {
        "height": 340,
        "margin": {"l": 10, "r": 10, "t": 30, "b": 10},
        "xaxis": {"title": {"text": "epoch"}},
        "yaxis": {"title": {"text": "validation accuracy %"}, "range": [0, 100]},
    }
    if runs:
        layout.update(_null_line(runs[-1]["null_accuracy"]))
    return {"data": traces, "layout": layout}


def hand_vs_machine_figure(
    hand: Sequence[FrozenTrial], machine: Sequence[FrozenTrial], who: Callable[[FrozenTrial], str]
) -> dict:
    """Completed runs by hand (hover: ``who(trial)``) and Optuna's completed trials on one optimisation-history
    plot (a Plotly dict): each as points in the order they finished, with its best-so-far line."""
    data = []
    most = max(len(hand), len(machine))
    for by_hand, trials, colour in ((True, hand, MANUAL_COLOUR), (False, machine, state_colour("COMPLETE"))):
        finished = sorted(trials, key=lambda t: (t.datetime_complete or datetime.min, t.number))
        x = list(range(1, len(finished) + 1))
        label = "by hand" if by_hand else "Optuna"
        hover = [plotly_text(f"{who(t) if by_hand else 'trial'} #{t.number}: {t.value:.2f}%") for t in finished]
        marks = {"color": colour, "size": 7, "opacity": 0.6}
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": f"{label}: each {'run' if by_hand else 'trial'}",
                "x": x,
                "y": [t.value for t in finished],
                "text": hover,
                "hoverinfo": "text",
                "marker": marks,
            }
        )
        line = {"color": colour, "width": 2.5, "shape": "hv"}
        best = records.best_so_far(finished)
        data.append(
            {"type": "scatter", "mode": "lines", "name": f"{label}: best so far", "x": x, "y": best, "line": line}
        )
    return {
        "data": data,
        "layout": {
            "title": {"text": "Hand vs machine: the class's runs and Optuna's trials"},
            "height": 420,
            "margin": {"l": 10, "r": 10, "t": 50, "b": 10},
            "legend": {"orientation": "h", "y": -0.2},
            "xaxis": {
                "title": {"text": "run or trial, in the order they finished"},
                **integer_axis(most),
                **({} if most else {"range": [0.5, 10.5]}),  # empty: the axes a lesson's runs will fill
            },
            "yaxis": {"title": {"text": "final validation accuracy %"}, **({} if most else {"range": [0, 100]})},
        },
    }


def _steps(trial: FrozenTrial) -> tuple[list[int], list[float]]:
    steps = sorted(trial.intermediate_values)
    return steps, [trial.intermediate_values[s] for s in steps]


def intermediate_figure(
    trials: Sequence[FrozenTrial], epochs: int | None = None, title: str = "Intermediate values (accuracy per epoch)"
) -> go.Figure:
    """Every trial's per-epoch values (running ones so far), coloured by state; pruned lines dashed and ending
    in a cross (cut short), failed ones dotted, running ones bold.

    Up to ``PER_TRIAL_LINES`` trials, one trace per trial (``trial N (state)``); beyond, one trace per state
    with gaps (NaN) between trials, as float32 arrays, which Plotly checks and sends at array speed, with each
    point's trial number in its hover text; a state with more than ``INTERMEDIATE_POINTS`` values keeps every
    n-th epoch of each trial and its last (a 1,000-trial study has ~50,000 values: Chromium takes seconds to
    draw them as SVG).
    """
    drawn = [t for t in sorted(trials, key=lambda t: t.number) if t.intermediate_values]
    figure = go.Figure()
    per_trial = len(drawn) <= PER_TRIAL_LINES
    groups = [[t] for t in drawn] if per_trial else [[t for t in drawn if t.state.name == s] for s in STATE_ORDER]
    for group in groups:
        if not group:
            continue
        state = group[0].state.name
        xs: list = []
        ys: list = []
        numbers: list = []
        every = 1 if per_trial else math.ceil(sum(len(t.intermediate_values) for t in group) / INTERMEDIATE_POINTS)
        for t in group:
            steps, values = _steps(t)
            if every > 1:  # every n-th epoch and the last: the same curves to the eye, fewer SVG points
                keep = [*range(0, len(steps) - 1, every), len(steps) - 1]
                steps, values = [steps[i] for i in keep], [values[i] for i in keep]
            xs += [*steps, np.nan]
            ys += [*values, np.nan]
            numbers += [t.number] * len(steps) + [np.nan]
        name = f"trial {group[0].number} ({state.lower()})" if per_trial else f"{state.lower()} ({len(group)})"
        trace: dict[str, Any] = {
            "x": np.array(xs[:-1], np.float32),
            "y": np.array(ys[:-1], np.float32),
            "customdata": np.array(numbers[:-1], np.float32),
            "mode": "lines",
            "name": name,
            "line": {"color": state_colour(state), **STATE_LINES.get(state, {})},
            "opacity": 0.8,
            "connectgaps": False,
            "hovertemplate": "trial %{customdata}<br>epoch %{x}<br>%{y:.2f}<extra>" + state.lower() + "</extra>",
        }
        if state == "PRUNED" and per_trial:  # cut short: a cross at the line's end
            trace["mode"] = "lines+markers"
            trace["marker"] = {"size": [0] * (len(xs) - 2) + [10], "symbol": "x", "color": state_colour(state)}
        figure.add_scatter(**trace)
        if state == "PRUNED" and not per_trial:  # one cross per trial (a marker per point costs the browser seconds)
            ends = [_steps(t) for t in group]
            figure.add_scatter(
                x=np.array([s[-1] for s, _ in ends], np.float32),
                y=np.array([v[-1] for _, v in ends], np.float32),
                customdata=np.array([t.number for t in group], np.float32),
                mode="markers",
                showlegend=False,
                name=f"{name} cut short",
                marker={"symbol": "x", "size": 8, "color": state_colour(state)},
                hovertemplate="trial %{customdata}<br>pruned after epoch %{x}<extra></extra>",
            )
    figure.update_layout(
        title=title,
        xaxis_title="epoch",
        yaxis_title="validation accuracy (%)",
        legend_title_text="state",
        showlegend=len(figure.data) <= 20,
        height=380,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
    )
    if epochs:
        figure.update_xaxes(range=[0.5, epochs + 0.5])
    figure.update_xaxes(**integer_axis(epochs or max((max(t.intermediate_values) for t in drawn), default=1)))
    return figure


def architecture_figure(hidden_layers: Sequence[int]) -> go.Figure:
    """The network as bars of layer widths: 21 inputs, the hidden layers, 3 outputs."""
    names = ["input"] + [f"layer_{i}" for i in range(len(hidden_layers))] + ["output"]
    widths = [len(FEATURES), *[int(u) for u in hidden_layers], len(CLASS_NAMES)]
    colours = ["#9e9e9e"] + ["#1f77b4"] * len(hidden_layers) + ["#9e9e9e"]
    figure = go.Figure(go.Bar(x=names, y=widths, text=widths, textposition="outside", marker_color=colours))
    figure.update_layout(
        title="Architecture: units per layer",
        yaxis_title="units",
        height=300,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        showlegend=False,
    )
    return figure


# ---------------------------------------------------------------- the Results page's plots


def study_figure(
    kind: str,
    study: optuna.Study,
    trials: Sequence[FrozenTrial],
    importances: Mapping[str, float] | None = None,
    param: str | None = None,
) -> go.Figure:
    """One Results plot (``insights.PLOTS`` except the contour) of ``study`` (an in-memory snapshot of the
    finished trials) or of ``trials`` (with their per-epoch values, running ones included); the slice plot
    shows ``param`` only when given."""
    if kind == "history":
        return history_figure(study, pruned=[t for t in trials if t.state == TrialState.PRUNED])
    if kind == "intermediate":
        return intermediate_figure(trials)
    if kind == "slice":
        return slice_figure(study, param)
    if kind == "importance":
        return importance_figure(importances or {}, trials)
    if kind == "parallel":
        return parallel_figure(study)
    if kind == "edf":
        return edf_figure(study)
    if kind == "timeline":
        return timeline_figure(study)
    raise ValueError(f"unknown plot '{kind}'")


def compare_figures(studies: Sequence[optuna.Study]) -> tuple[go.Figure, go.Figure]:
    """Several studies overlaid: Optuna's optimisation history and EDF, each given the list of studies
    (snapshots named by their studies: the names, user text, appear escaped in the legends)."""
    progress = history_figure(studies)
    progress.update_layout(title="Optimisation history of each study", yaxis_title="Accuracy (%)")
    distribution = edf_figure(studies)
    distribution.update_layout(
        title="Empirical distribution of trial accuracies", yaxis_title="Share of trials with at most this accuracy"
    )
    return progress, distribution
