"""Numbers a person can read: accuracies to 2 decimals, rates in short scientific form, switches as on/off,
whole-number axes for counts and run numbers, labels that no line hides and axes that fit their labels."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from fetal_core import figures, insights, live, review
from fetal_core.lesson import current_lesson, findings, leaderboard_rows, lesson_trials, record_run, student
from fetal_core.storage import open_storage
from tests.test_class_mode import constructed_record

DISTRIBUTIONS = {
    "learning_rate": FloatDistribution(1e-5, 1e-1, log=True),
    "scheduler": IntDistribution(0, 1),
    "batch_size": IntDistribution(8, 256),
    "optimizer": CategoricalDistribution(["Adam", "SGD"]),
}
START = datetime(2026, 12, 6, 12, 0, 0)


def trial(number: int, value: float, lr: float = 0.007014571289639968, scheduler: int = 1):
    made = create_trial(
        state=TrialState.COMPLETE,
        value=value,
        params={"learning_rate": lr, "scheduler": scheduler, "batch_size": 32, "optimizer": "Adam"},
        distributions=DISTRIBUTIONS,
        intermediate_values={e: value - 5 + e for e in range(1, 6)},
    )
    made.number = made._trial_id = number
    made.datetime_start, made.datetime_complete = (
        START + timedelta(seconds=number),
        START + timedelta(seconds=number + 1),
    )
    return made


TRIALS = [trial(i, 90.0 + i / 3, 10 ** (-3 - i / 7), i % 2) for i in range(7)]


def test_values_read_as_a_person_writes_them():
    assert insights.format_value(0.007014571289639968, "learning_rate") == "7.01e-3"
    assert insights.format_value(1, "scheduler") == "on" and insights.format_value(0, "scheduler") == "off"
    assert insights.format_value(True) == "on" and insights.format_value(32, "batch_size") == "32"
    params = live.trial_table([trial(0, 92.49)])["params"].iloc[0]
    assert "learning_rate=7.01e-3" in params and "scheduler=on" in params and "scheduler=1" not in params
    contour = insights.contour_finding([trial(0, 92.49)], "learning_rate", "batch_size")
    assert "learning_rate 7.01e-3..7.01e-3 and batch_size 32..32" in contour


def test_the_results_table_shows_readable_values_and_the_csv_keeps_the_stored_ones():
    frame = review.trials_frame([trial(0, 92.4900001), trial(1, 80.123456, 1e-4, 0)])
    shown = insights.readable_trials(frame)
    assert list(shown["value"]) == [92.49, 80.12]
    assert list(shown["params_learning_rate"]) == ["7.01e-3", "1e-4"]
    assert list(shown["params_scheduler"]) == ["on", "off"]
    assert frame["params_learning_rate"].iloc[0] == pytest.approx(0.007014571289639968)  # unchanged for the CSV


def test_leaderboard_rows_and_findings_are_readable(sqlite_url):
    storage = open_storage(sqlite_url)
    lesson = current_lesson(storage)
    for accuracy in ((80.0, 85.0), (80.0, 87.0), (80.0, 89.0)):
        record_run(storage, lesson, constructed_record(accuracy=accuracy), "Ada")
    hand, machine = lesson_trials(storage, lesson)
    [row] = leaderboard_rows(hand)
    assert (row["lr"], row["scheduler"], row["standardised"]) == ("3e-4", "off", "off")
    assert any("learning rates from 3e-4 to 3e-4" in n for n in findings(hand, machine))


def test_counts_and_run_numbers_get_whole_number_ticks():
    assert [figures.integer_axis(n)["dtick"] for n in (1, 4, 10, 11, 25, 120)] == [1, 1, 1, 2, 5, 20]
    board = figures.hand_vs_machine_figure(TRIALS[:3], TRIALS[:2], student)
    assert (board["layout"]["xaxis"]["dtick"], board["layout"]["xaxis"]["tickformat"]) == (1, "d")
    empty = figures.hand_vs_machine_figure([], [], student)["layout"]
    assert empty["yaxis"]["range"] == [0, 100] and empty["xaxis"]["range"][0] >= 0.5 and empty["xaxis"]["dtick"] == 1
    curves = figures.intermediate_figure(TRIALS, 5)
    assert (curves.layout.xaxis.dtick, curves.layout.xaxis.tickformat) == (1, "d")
    history = figures.history_figure(review.snapshot(TRIALS))
    assert history.layout.xaxis.dtick == 1 and history.layout.xaxis.tickformat == "d"


def test_the_best_manual_run_label_sits_above_its_line_on_its_own_background():
    history = figures.history_figure(review.snapshot(TRIALS), manual_best=91.0)
    [label] = history.layout.annotations
    assert label.text == "best manual run (Part I): 91.00%"
    assert label.yanchor == "bottom" and label.bgcolor is not None and label.xanchor == "left"


def test_the_parallel_plot_leaves_room_for_the_accuracy_labels():
    study = review.snapshot([trial(i, 90.0 + i, 10 ** (-3 - i / 7), i % 2) for i in range(12)])
    low, high = figures.parallel_figure(study).layout.xaxis.range
    assert -low / (high - low) >= 0.08, (low, high)  # ~55 px of a 700 px plot left of the first axis
