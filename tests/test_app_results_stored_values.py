"""Results on a study whose stored values are odd (an uploaded file, another tool, a hand-edited storage):
non-finite numbers, strings where numbers belong, start times with and without microseconds. Every tab and
sub-tab renders; the odd values show as empty cells, never as a crash page."""

from __future__ import annotations

import json
import math
import re
import sqlite3
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState, create_trial
from streamlit.testing.v1 import AppTest

from benchmarks.results_render import build_study, synthetic_trials
from fetal_core import figures, review

ROOT = Path(__file__).resolve().parent.parent
STUDY = "odd_values"
TRIALS = figures.TIMELINE_BARS + 10  # beyond the timeline's bar limit: its segments parse the start times
optuna.logging.set_verbosity(optuna.logging.WARNING)


def odd_trials() -> list:
    trials = synthetic_trials(TRIALS, seed=11)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    first, second, third = complete[:3]
    first.user_attrs["config"] = {**first.user_attrs["config"], "hidden_layers": [math.inf, 32]}  # JSON Infinity
    second.user_attrs["config"] = {**second.user_attrs["config"], "hidden_layers": [math.nan, "wide", True]}
    history = dict(first.user_attrs["history"])
    history["val_accuracy"] = [math.nan, math.inf, -math.inf, "high", *history["val_accuracy"][4:]]
    history["val_loss"] = ["n/a", {"nested": [1]}, *history["val_loss"][2:]]
    first.user_attrs["history"] = history
    first.user_attrs["metrics"] = {"balanced_accuracy": math.inf, "seconds": "slow"}
    second.user_attrs["metrics"] = {"balanced_accuracy": "high", "seconds": math.nan}
    second.user_attrs["note"] = math.inf  # another tool's attr: shown in a user_ column
    third.user_attrs["note"] = {"deep": [math.nan, "x"]}
    epochs = third.user_attrs["history"]["epoch"]
    third.user_attrs["history"] = {**third.user_attrs["history"], "epoch": ["one", *epochs[1:]]}
    fourth, pruned = complete[3], next(t for t in trials if t.state == TrialState.PRUNED)
    infinite = create_trial(  # Optuna stores an infinite objective value (a diverged loss, say)
        state=TrialState.COMPLETE,
        value=math.inf,
        params=fourth.params,
        distributions=fourth.distributions,
        user_attrs=fourth.user_attrs,
        intermediate_values={1: math.inf, 2: math.nan, 3: -math.inf},
    )
    infinite.datetime_start, infinite.datetime_complete = fourth.datetime_start, fourth.datetime_complete
    trials[trials.index(fourth)] = infinite
    pruned.intermediate_values[max(pruned.intermediate_values)] = math.nan
    return trials


@pytest.fixture(scope="module")
def odd_storage(tmp_path_factory) -> str:
    """A SQLite storage whose study has the odd values above, and start times written both as Optuna writes
    them (with microseconds) and on an exact second (as a PostgreSQL storage hands them out, or another tool
    writes them)."""
    path = tmp_path_factory.mktemp("odd") / "odd.sqlite3"
    url = f"sqlite:///{path}"
    build_study(url, STUDY, odd_trials(), {"sampler": "tpe", "pruner": "median", "epochs": "fifty"})
    build_study(url, "plain", synthetic_trials(6, seed=12))  # for the Compare tab
    with sqlite3.connect(path) as connection:
        connection.execute(
            "UPDATE trials SET datetime_start = strftime('%Y-%m-%d %H:%M:%S', datetime_start) WHERE number % 2 = 0"
        )
        connection.execute(
            "UPDATE trials SET datetime_start = strftime('%Y-%m-%d %H:%M:%S', datetime_start) || '.250000' "
            "WHERE number % 2 = 1"
        )
    connection.close()
    return url


def test_the_study_holds_the_odd_values(odd_storage):
    """The values reach the readers as stored: Infinity and NaN in JSON, both time formats."""
    with sqlite3.connect(odd_storage.removeprefix("sqlite:///")) as connection:
        starts = [row[0] for row in connection.execute("SELECT datetime_start FROM trials ORDER BY trial_id LIMIT 2")]
        attrs = " ".join(row[0] for row in connection.execute("SELECT value_json FROM trial_user_attributes"))
    connection.close()
    assert len(starts[0]) == 19 and starts[1].endswith(".250000")
    assert "Infinity" in attrs and "NaN" in attrs


def test_the_timeline_of_starts_with_and_without_microseconds(odd_storage):
    storage = optuna.storages.RDBStorage(odd_storage)
    trials = review.load_trials(storage, storage.get_study_id_from_name(STUDY))
    assert {t.datetime_start.microsecond for t in trials} == {0, 250_000}
    figure = figures.timeline_figure(review.snapshot(trials))
    assert sum(len([x for x in trace.x if x is not None]) for trace in figure.data) == 2 * TRIALS


def open_results(monkeypatch, data_path, url: str, **state) -> AppTest:
    monkeypatch.setenv("FETAL_HPO_STORAGE", url)
    monkeypatch.setenv("FETAL_HPO_DATA", str(data_path))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["results_study"] = STUDY
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    at.switch_page("pages/results.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def rerun(at: AppTest, **state) -> AppTest:
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_both_plot_sub_tabs_of_a_study_with_odd_stored_values_render(monkeypatch, data_path, odd_storage):
    at = open_results(monkeypatch, data_path, odd_storage)
    titles = [json.loads(chart.proto.spec)["layout"]["title"]["text"] for chart in at.get("plotly_chart")]
    assert len(titles) == 4 and any("Timeline" in title for title in titles)
    rerun(at, results_plot_group="Parameters")
    assert len(at.get("plotly_chart")) == 4


def test_the_trials_tab_of_a_study_with_odd_stored_values_renders(monkeypatch, data_path, odd_storage):
    at = open_results(monkeypatch, data_path, odd_storage, results_tab="Trials")
    table = at.dataframe[0].value
    assert len(table) == TRIALS
    odd = table.set_index("number")
    complete = sorted(table.loc[table["state"] == "COMPLETE", "number"])
    first, second, third, infinite = complete[:4]
    for number in (first, second):  # Infinity, NaN, text in the stored widths: the params' widths instead
        assert re.fullmatch(r"\d+(-\d+)+", odd.loc[number, "architecture"])
    assert odd.loc[[first, second], ["metrics_balanced_accuracy", "metrics_seconds"]].isna().all(axis=None)
    assert pd.isna(odd.loc[second, "user_note"]) and odd.loc[third, "user_note"] == "{'deep': [nan, 'x']}"
    assert pd.isna(odd.loc[infinite, "value"]) and pd.isna(odd.loc[infinite, "last_reported"])
    assert at.selectbox(key="results_trial").value == infinite  # the best value, as Optuna sees it
    assert "value –" in " ".join(m.value for m in at.markdown)
    for number in (first, second, third):  # the detail of each odd trial: its architecture and curve
        at.selectbox(key="results_trial").set_value(number).run()
        assert not at.exception, [e.message for e in at.exception]
        assert len(at.get("plotly_chart")) == 1
        assert any(m.value.startswith("Architecture: 21 inputs →") for m in at.markdown)


def test_the_compare_tab_and_study_list_of_a_study_with_odd_stored_values_render(monkeypatch, data_path, odd_storage):
    at = open_results(monkeypatch, data_path, odd_storage, results_tab="Compare studies")
    assert len(at.get("plotly_chart")) == 2
    rerun(at, results_studies_open=True)
    listed = at.dataframe[0].value.set_index("study")
    assert listed.loc[STUDY, "trials"] == TRIALS and listed.loc[STUDY, "started"] is not None
