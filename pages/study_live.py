"""Part II's view of a live study: read it from the storage, then progress, table and figures.

Nothing here calls Streamlit or trains: the functions turn the trials a worker (or any other session,
or a CLI worker) has written into numbers, a table and Plotly figures, so the page stays thin and
these can be tested on their own.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime

import optuna
import pandas as pd
import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState

from fetal_core import records
from fetal_core.data import CLASS_NAMES, FEATURES
from fetal_core.search import SearchSpace

STATE_COLOURS = {"COMPLETE": "#1f77b4", "PRUNED": "#9e9e9e", "RUNNING": "#ff7f0e", "FAIL": "#d62728"}


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    """Names of the studies in the storage, newest first (a ``FrozenStudy`` sorts in creation order)."""
    return [s.study_name for s in sorted(storage.get_all_studies(), reverse=True)]


def read_trials(storage: optuna.storages.BaseStorage, study_name: str) -> tuple[list[FrozenTrial], dict] | None:
    """All trials of ``study_name`` (RUNNING ones included, with their intermediate values so far) and the
    study's user attrs; None when there is no such study."""
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return None
    return storage.get_all_trials(study_id, deepcopy=False), storage.get_study_user_attrs(study_id)


def finished_count(trials: list[FrozenTrial]) -> int:
    """Trials that count towards the total: ``records.FINISHED`` (a FAIL, e.g. a stopped trial, does not)."""
    return records.count(trials, records.FINISHED)


def trials_to_run(target_total: int, trials: list[FrozenTrial]) -> int:
    """How many more trials reach ``target_total`` finished trials ("reach the total")."""
    return max(0, target_total - finished_count(trials))


@dataclass(frozen=True)
class Progress:
    finished: int
    target: int
    running: int
    failed: int
    elapsed: float  # seconds
    eta: float | None  # seconds; None until a trial has finished
    best_value: float | None
    best_number: int | None

    @property
    def fraction(self) -> float:
        return min(1.0, self.finished / self.target) if self.target else 0.0


def _seconds(trial: FrozenTrial, now: datetime) -> float | None:
    if trial.datetime_start is None:
        return None
    end = trial.datetime_complete or now
    return (end - trial.datetime_start).total_seconds()


def progress(trials: list[FrozenTrial], target: int, run_started: float | None, now: float | None = None) -> Progress:
    """n of N; elapsed since ``run_started`` (or the first trial) until now, or until the last trial
    ended when none is running; ETA from this run's mean trial duration divided by the trials running
    side by side; the best value so far."""
    now = time.time() if now is None else now
    now_dt = datetime.fromtimestamp(now)
    starts = [t.datetime_start.timestamp() for t in trials if t.datetime_start is not None]
    begin = run_started if run_started is not None else (min(starts) if starts else now)
    this_run = [t for t in trials if t.datetime_start is not None and t.datetime_start.timestamp() >= begin - 1]
    durations = [_seconds(t, now_dt) for t in records.in_states(this_run, records.FINISHED)]
    running = sum(t.state == TrialState.RUNNING for t in trials)
    ends = [t.datetime_complete.timestamp() for t in this_run if t.datetime_complete is not None]
    end = now if running or not ends else max(ends)  # the clock stops when the last trial ends
    remaining = max(0, target - finished_count(trials))
    eta = None
    if remaining == 0:
        eta = 0.0
    elif durations:
        eta = remaining * (sum(durations) / len(durations)) / max(1, running)
    best = records.best_trial(trials)
    return Progress(
        finished=finished_count(trials),
        target=target,
        running=running,
        failed=records.count(trials, records.FAILED),
        elapsed=max(0.0, end - begin),
        eta=eta,
        best_value=None if best is None else best.value,
        best_number=None if best is None else best.number,
    )


def format_seconds(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "–"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}:{secs:02d}" if minutes < 60 else f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def _format_param(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def trial_table(trials: list[FrozenTrial]) -> pd.DataFrame:
    """One row per trial: number, state, value, epochs reached, params, duration (newest first)."""
    now = datetime.now()
    rows = []
    for t in sorted(trials, key=lambda t: t.number, reverse=True):
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name,
                "value (%)": None if t.value is None else round(t.value, 2),
                "epochs": len(t.intermediate_values),
                "params": ", ".join(f"{k}={_format_param(v)}" for k, v in t.params.items()),
                "duration (s)": None if t.datetime_start is None else round(_seconds(t, now), 1),
            }
        )
    columns = ["trial", "state", "value (%)", "epochs", "params", "duration (s)"]
    return pd.DataFrame(rows, columns=columns)


def _layout(title: str, x_title: str, **extra) -> dict:
    return {
        "title": {"text": title},
        "xaxis": {"title": {"text": x_title}},
        "yaxis": {"title": {"text": "validation accuracy (%)"}},
        "height": 380,
        "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
        **extra,
    }


def as_figure(spec: dict) -> go.Figure:
    """A Plotly figure from one of our specs without Plotly's per-property validation, which costs ~30 ms
    for 30 curves, every second, for every viewer; the specs' validity is checked by the tests."""
    return go.Figure(spec, _validate=False)


def curves_figure(trials: list[FrozenTrial], epochs: int | None = None) -> dict:
    """Validation accuracy per epoch for every trial, running ones included (a Plotly figure spec):
    complete trials solid, running ones bold orange, pruned ones dashed grey ending in a cross (cut
    short), failed ones dotted red."""
    traces = []
    for t in sorted(trials, key=lambda t: t.number):
        if not t.intermediate_values:
            continue
        steps = sorted(t.intermediate_values)
        state = t.state.name
        trace = {
            "type": "scatter",
            "x": steps,
            "y": [t.intermediate_values[s] for s in steps],
            "mode": "lines",
            "line": {"color": STATE_COLOURS.get(state, "#555555"), "width": 1.5},
            "opacity": 0.9,
            "name": f"trial {t.number} ({state.lower()})",
            "hovertemplate": f"trial {t.number}<br>epoch %{{x}}<br>%{{y:.2f}}%<extra>{state.lower()}</extra>",
        }
        if state == "PRUNED":
            trace["line"]["dash"] = "dash"
            trace["mode"] = "lines+markers"
            trace["marker"] = {"size": [0] * (len(steps) - 1) + [10], "symbol": "x", "color": STATE_COLOURS[state]}
            trace["opacity"] = 0.55
        elif state == "RUNNING":
            trace["line"]["width"] = 3
        elif state == "FAIL":
            trace["line"]["dash"] = "dot"
        traces.append(trace)
    layout = _layout("Accuracy per epoch (pruned: dashed grey, cut short)", "epoch", showlegend=len(traces) <= 20)
    if epochs:
        layout["xaxis"]["range"] = [0.5, epochs + 0.5]
    return {"data": traces, "layout": layout}


def history_figure(trials: list[FrozenTrial], manual_best: float | None = None) -> dict:
    """Optimisation history (a Plotly figure spec): each finished trial's value, the best so far, and
    (hand vs machine) the best manual run of Part I as a horizontal line."""
    by_number = sorted(trials, key=lambda t: t.number)
    complete = records.completed(by_number)
    pruned = [t for t in by_number if t.state == TrialState.PRUNED and t.intermediate_values]
    traces = [
        {
            "type": "scatter",
            "x": [t.number for t in complete],
            "y": [t.value for t in complete],
            "mode": "markers",
            "name": "complete trial",
            "marker": {"color": STATE_COLOURS["COMPLETE"], "size": 8},
        }
    ]
    if pruned:
        traces.append(
            {
                "type": "scatter",
                "x": [t.number for t in pruned],
                "y": [t.intermediate_values[max(t.intermediate_values)] for t in pruned],
                "mode": "markers",
                "name": "pruned (last epoch reached)",
                "marker": {"color": STATE_COLOURS["PRUNED"], "symbol": "x", "size": 8},
            }
        )
    traces.append(
        {
            "type": "scatter",
            "x": [t.number for t in complete],
            "y": records.best_so_far(complete),
            "mode": "lines",
            "name": "best so far",
            "line": {"shape": "hv"},
        }
    )
    layout = _layout("Optimisation history (hand vs machine)", "trial", shapes=[], annotations=[])
    if manual_best is not None and math.isfinite(manual_best):
        line = {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": manual_best, "y1": manual_best}
        layout["shapes"].append({**line, "line": {"color": "#2ca02c", "dash": "dash"}})
        layout["annotations"].append(
            {
                "xref": "paper", "x": 1, "xanchor": "right", "yref": "y", "y": manual_best, "yanchor": "top",
                "text": f"best manual run (Part I): {manual_best:.1f}%", "showarrow": False,
            }
        )  # fmt: skip
    return {"data": traces, "layout": layout}


def architecture_figure(hidden_layers: list[int] | tuple[int, ...]) -> go.Figure:
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


def saved_space(user_attrs: dict) -> SearchSpace | None:
    """The search space a study was created with (``records.study_description``), if readable."""
    stored = records.study_description(user_attrs).search_space
    if stored is None:
        return None
    try:
        return SearchSpace.from_dict(stored)
    except (TypeError, ValueError):
        return None
