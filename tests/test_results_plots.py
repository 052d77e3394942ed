"""The app's figures (fetal_core.figures): Optuna's plots where drawn faster, equal to Optuna's; one palette."""

from __future__ import annotations

import base64
import math

import numpy as np
import optuna
import optuna.importance
import plotly.io as pio
import pytest
from optuna.trial import TrialState, create_trial

from benchmarks.results_render import synthetic_trials
from fetal_core import review
from fetal_core.figures import PARALLEL_BANDS, importance_figure, intermediate_figure, parallel_figure

optuna.logging.set_verbosity(optuna.logging.WARNING)


def values(array) -> list:
    """A figure's data array as a list: lists as they are, numpy arrays and Plotly's base64 specs decoded."""
    if isinstance(array, dict):  # {"dtype": "f4", "bdata": "..."} in a serialised figure
        array = np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"])
    return list(array.tolist() if isinstance(array, np.ndarray) else array)


def segments(xs, ys, custom) -> list[tuple]:
    """The polylines of a trace whose lines are separated by NaN/None gaps: [(points, hover texts), ...]."""
    out, points, hover = [], [], []
    for x, y, c in zip(values(xs), values(ys), values(custom)):
        if x is None or (isinstance(x, float) and math.isnan(x)):
            out.append((tuple(points), tuple(hover)))
            points, hover = [], []
        else:
            points.append((x, round(y, 5)))
            hover.append(tuple(c) if isinstance(c, list | tuple | np.ndarray) else c)
    return out + ([(tuple(points), tuple(hover))] if points else [])


def test_importance_figure_from_computed_importances_is_optunas_plot():
    """The page draws importances it has already computed; the figure is Optuna's, trace for trace."""
    trials = synthetic_trials(30, seed=4)
    given = {"learning_rate": 0.5, "batch_size": 0.4921875, "optimizer": 0.0078125}  # sums to 1 exactly

    class Given(optuna.importance.BaseImportanceEvaluator):
        def evaluate(self, study, params=None, *, target=None) -> dict[str, float]:
            return dict(given)

    theirs = optuna.visualization.plot_param_importances(review.snapshot(trials), evaluator=Given())
    ours = importance_figure(given, trials)
    assert ours.to_plotly_json() == theirs.to_plotly_json()
    assert list(ours.data[0].text) == ["<0.01", "0.49", "0.50"]


@pytest.mark.parametrize("maximize", [True, False])
def test_parallel_figure_draws_optunas_lines_in_colour_bands(maximize):
    """Same axes, annotations, colour bar, lines and hover texts, the best lines on top; each line's
    colour is Optuna's to within half a band on the colour scale's steepest stretch (3.2 of 255 per channel)."""
    trials = synthetic_trials(120, seed=8)
    study = review.snapshot(trials, maximize)
    theirs = optuna.visualization.plot_parallel_coordinate(study, target_name="Accuracy (%)")
    ours = parallel_figure(study)
    low, high = ours.layout.xaxis.range
    assert high == theirs.layout.xaxis.range[1] and -low / (high - low) >= 0.08  # room for the objective's labels
    theirs.update_xaxes(range=[low, high])
    assert ours.layout.to_plotly_json() == theirs.layout.to_plotly_json()
    assert ours.data[-1].to_plotly_json() == theirs.data[-1].to_plotly_json()  # the colour bar
    assert len(ours.data) - 1 <= PARALLEL_BANDS
    their_lines = [(segments(t.x, t.y, t.customdata)[0], t.line.color) for t in theirs.data[:-1]]
    our_lines = [(line, t.line.color) for t in ours.data[:-1] for line in segments(t.x, t.y, t.customdata)]
    assert sorted(line for line, _ in our_lines) == sorted(line for line, _ in their_lines)
    complete = sum(t.state == TrialState.COMPLETE for t in trials)
    assert len(our_lines) == complete
    theirs_colour = dict(their_lines)
    rgb = lambda text: [float(c) for c in text[text.index("(") + 1 : -1].split(",")]  # noqa: E731
    scale = [colour for _, colour in theirs.data[-1].marker.colorscale]  # Optuna's, from its colour bar
    steepest = max(abs(a - b) for lo, hi in zip(scale, scale[1:]) for a, b in zip(rgb(lo), rgb(hi)))
    half_band = steepest * (len(scale) - 1) * 0.5 / (PARALLEL_BANDS - 1)
    for line, colour in our_lines:
        assert max(abs(a - b) for a, b in zip(rgb(colour), rgb(theirs_colour[line]))) <= half_band + 1e-9, line
    top = ours.data[-2]  # drawn last, so on top: the band of the best trial
    best = max if maximize else min
    best_value = best(t.value for t in trials if t.state == TrialState.COMPLETE)
    assert any(hover[0] == ("Accuracy (%)", f"{best_value:.3g}") for _, hover in segments(top.x, top.y, top.customdata))


def test_intermediate_figure_one_trace_per_state_with_gaps_between_trials():
    """Every trial's per-epoch values, unchanged and in order, in its state's trace; the serialised figure
    (what the browser receives) holds the same numbers."""
    trials = synthetic_trials(80, seed=9)  # more than PER_TRIAL_LINES: one trace per state
    running = create_trial(state=TrialState.COMPLETE, value=80.0, intermediate_values={1: 70.5, 2: 71.25})
    running.state, running.number = TrialState.RUNNING, 80
    trials.append(running)
    figure = intermediate_figure(trials)
    spec = pio.from_json(pio.to_json(figure)).to_plotly_json()  # what st.plotly_chart sends, read back
    by_state = {t.state.name: [] for t in trials}
    for t in trials:
        by_state[t.state.name].append(tuple((float(s), round(v, 3)) for s, v in sorted(t.intermediate_values.items())))
    lines = [trace for trace in spec["data"] if trace["mode"] == "lines"]
    assert [trace["name"] for trace in lines] == [
        f"{s.lower()} ({len(by_state[s])})" for s in ("COMPLETE", "PRUNED", "RUNNING")
    ]
    [crosses] = [trace for trace in spec["data"] if trace["mode"] == "markers"]  # one where each pruned line ends
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert values(crosses["customdata"]) == [t.number for t in pruned]
    assert values(crosses["x"]) == [max(t.intermediate_values) for t in pruned]
    for trace, state in zip(lines, ("COMPLETE", "PRUNED", "RUNNING")):
        drawn = segments(trace["x"], trace["y"], trace["customdata"])
        assert [tuple((x, round(y, 3)) for x, y in points) for points, _ in drawn] == by_state[state]
        numbers = [t.number for t in trials if t.state.name == state]
        assert [set(hover) for _, hover in drawn] == [{n} for n in numbers]


def test_one_palette_for_every_trial_state_in_every_figure():
    """A trial state has one colour in every figure of every page: per-epoch lines (one trace per trial or one
    per state), Optuna's timeline bars and history markers; pruned lines are dashed and end in a cross."""
    from fetal_core.figures import STATE_COLOURS, history_figure, timeline_figure

    trials = synthetic_trials(70, seed=5)
    failed = create_trial(state=TrialState.FAIL, intermediate_values={1: 60.0, 2: 61.0})
    running = create_trial(state=TrialState.RUNNING, intermediate_values={1: 62.0})
    failed.number, running.number = 70, 71
    failed.datetime_start = running.datetime_start = trials[-1].datetime_complete
    trials += [failed, running]
    assert set(STATE_COLOURS) >= {"COMPLETE", "PRUNED", "FAIL", "RUNNING"}
    assert len(set(STATE_COLOURS.values())) == len(STATE_COLOURS)
    for shown in (trials, trials[:30] + [failed, running]):  # one trace per state, then one per trial
        traces = intermediate_figure(shown).data
        assert {next(s for s in STATE_COLOURS if s.lower() in t.name) for t in traces} == {
            "COMPLETE",
            "PRUNED",
            "FAIL",
            "RUNNING",
        }
        for trace in traces:
            state = next(s for s in STATE_COLOURS if s.lower() in trace.name)
            if "lines" in trace.mode:
                assert trace.line.color == STATE_COLOURS[state], trace.name
                assert (trace.line.dash == "dash") == (state == "PRUNED"), trace.name
            if "markers" in trace.mode:  # pruned lines end in a cross
                assert state == "PRUNED" and trace.marker.symbol == "x", trace.name
                assert trace.marker.color == STATE_COLOURS["PRUNED"], trace.name
    bars = {t.name: t.marker.color for t in timeline_figure(review.snapshot(trials)).data}
    assert bars == {state: STATE_COLOURS[state] for state in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")}, bars
    history = history_figure(review.snapshot(trials), pruned=[t for t in trials if t.state == TrialState.PRUNED])
    markers = {t.name: t.marker.color for t in history.data if t.mode == "markers" and t.x is not None and len(t.x)}
    assert markers == {
        "Accuracy (%)": STATE_COLOURS["COMPLETE"],
        "pruned (last epoch reached)": STATE_COLOURS["PRUNED"],
    }


def test_a_big_study_draws_its_best_lines_and_a_spread_of_the_rest_on_the_full_colour_range():
    from fetal_core.figures import PARALLEL_BEST, PARALLEL_LINES, lines_shown

    trials = synthetic_trials(480, seed=6)
    complete = review.snapshot(trials).get_trials(deepcopy=False, states=(TrialState.COMPLETE,))  # numbered
    assert len(complete) > PARALLEL_LINES
    shown = lines_shown(complete)
    ranked = sorted(complete, key=lambda t: -t.value)
    assert len(shown) == PARALLEL_LINES and len({t.number for t in shown}) == PARALLEL_LINES
    assert {t.number for t in ranked[:PARALLEL_BEST]} | {ranked[-1].number} <= {t.number for t in shown}
    ours = parallel_figure(review.snapshot(trials))
    theirs = optuna.visualization.plot_parallel_coordinate(review.snapshot(trials), target_name="Accuracy (%)")
    assert (ours.data[-1].marker.cmin, ours.data[-1].marker.cmax) == (
        theirs.data[-1].marker.cmin,
        theirs.data[-1].marker.cmax,
    )
    drawn = sum(len(segments(t.x, t.y, t.customdata)) for t in ours.data[:-1])
    assert drawn == PARALLEL_LINES and f"of {len(complete)} completed trials" in ours.layout.title.text
    assert lines_shown(complete[:PARALLEL_LINES]) == complete[:PARALLEL_LINES]  # a smaller study: every line


def test_a_big_study_s_curves_keep_every_nth_epoch_and_each_trial_s_last():
    from fetal_core.figures import INTERMEDIATE_POINTS

    trials = []
    for number in range(500):
        epochs = 61 if number % 5 else 8  # 25,200 values, some short curves among them
        values = {e: 50 + number % 40 + e / 10 for e in range(1, epochs + 1)}
        trials.append(create_trial(state=TrialState.COMPLETE, value=values[epochs], intermediate_values=values))
        trials[-1].number = number
    [trace] = intermediate_figure(trials).data
    drawn = segments(trace.x, trace.y, trace.customdata)
    assert sum(len(points) for points, _ in drawn) <= INTERMEDIATE_POINTS + len(trials)
    assert len(drawn) == len(trials)
    for trial, (points, hover) in zip(trials, drawn):
        every = sorted(trial.intermediate_values.items())
        assert points[0] == (every[0][0], round(every[0][1], 5)) and points[-1][0] == every[-1][0]  # first, last
        assert set(points) <= {(float(e), round(float(np.float32(v)), 5)) for e, v in every} and set(hover) == {
            trial.number
        }


def test_a_big_studys_timeline_draws_optunas_bars_as_segments():
    """Beyond ``TIMELINE_BARS`` trials the timeline is one trace per state whose segments are Optuna's bars:
    each trial from its start to its end, at its number, with Optuna's hover text, in the palette's colour."""
    import pandas as pd

    from fetal_core.figures import STATE_COLOURS, TIMELINE_BARS, optuna_figure, timeline_figure

    study = review.snapshot(synthetic_trials(TIMELINE_BARS + 20, seed=6))
    optunas = {bar.name: bar for bar in optuna_figure(optuna.visualization.plot_timeline, study).data}
    ours = timeline_figure(study)
    kinds, states = [t.type for t in ours.data], len(optunas)
    assert kinds == ["scatter"] * states
    assert (ours.layout.xaxis.type, ours.layout.title.text) == ("date", "Timeline Plot")
    for trace in ours.data:
        bar = optunas[trace.name]
        assert (trace.line.color, trace.mode) == (STATE_COLOURS[trace.name], "lines")
        drawn = segments(trace.x, trace.y, trace.text)
        assert len(drawn) == len(bar.y)
        for (points, hover), start, millis, number, text in zip(drawn, bar.base, bar.x, bar.y, bar.text):
            (begin, at), (end, again) = points
            assert at == again == number and set(hover) == {text}
            assert pd.Timestamp(end) - pd.Timestamp(begin) == pd.Timedelta(milliseconds=millis)
            assert pd.Timestamp(begin) == pd.Timestamp(start)
    small = timeline_figure(review.snapshot(synthetic_trials(TIMELINE_BARS, seed=6)))
    kinds = {t.type for t in small.data}
    assert kinds == {"bar"}
