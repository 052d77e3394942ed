"""Part II in AppTest: set up and run a study from the page, refuse bad ranges; the live-view helpers."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest
from optuna.distributions import IntDistribution
from optuna.trial import TrialState, create_trial
from streamlit.testing.v1 import AppTest

from fetal_core import figures, live, review
from tests.conftest import median_pruning_replayed, shown, wait_until

ROOT = Path(__file__).resolve().parent.parent
TERMINAL = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


@pytest.fixture
def app(monkeypatch, tmp_path, data_path):
    url = f"sqlite:///{tmp_path}/app.sqlite3"
    monkeypatch.setenv("FETAL_HPO_DATA", str(data_path))
    monkeypatch.setenv("FETAL_HPO_STORAGE", url)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/part2_study.py").run()
    assert not at.exception, at.exception
    yield at, url
    for worker in at.session_state["workers"].values() if "workers" in at.session_state else []:
        worker.stop()


def fill(at: AppTest, **values) -> None:
    for key, value in values.items():
        for kind in ("text_input", "number_input", "selectbox", "multiselect", "radio"):
            found = [w for w in getattr(at, kind) if w.key == key]
            if found:
                found[0].set_value(value)
                break
        else:
            raise AssertionError(f"no widget with key {key}")


def test_tpe_study_with_median_pruning_runs_from_the_page(app):
    """12 trials of 4 epochs: the median pruner (5 start-up trials) pruned 3 to 7 of them for each of study
    seeds 0-9 and 42 on the Haswell, SandyBridge and SkylakeX kernels, so "at least one" holds on any CPU; and
    every trial's state and length must be exactly what Optuna's MedianPruner decides on the stored values."""
    at, url = app
    fill(at, p2_name="apptest", p2_sampler="tpe", p2_pruner="median", p2_trials=12, p2_epochs=4)
    at.button(key="p2_start").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    worker = at.session_state["workers"]["Part II"]
    assert worker.plans[0].trials == 12 and worker.plans[0].pruner == "median"
    deadline = time.monotonic() + 600  # generous: only a hung worker should reach it
    while worker.alive() and time.monotonic() < deadline:
        time.sleep(1)
        at.run()  # what the page's 1 s fragment does in a browser: renew, poll, redraw
        assert not at.exception, at.exception
    assert not worker.alive(), "the study did not finish in 600 s"
    at.run()
    assert worker.error is None, worker.error
    study = optuna.load_study(study_name="apptest", storage=url)
    trials = study.get_trials()
    assert len(trials) == 12
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials), [t.state for t in trials]
    assert all(len(t.intermediate_values) >= 1 for t in trials)
    assert [(t.number, t.state, len(t.intermediate_values)) for t in trials] == median_pruning_replayed(trials)
    assert any(t.state == TrialState.PRUNED for t in trials), "no trial was pruned"
    assert study.user_attrs["sampler"] == "tpe" and study.user_attrs["pruner"] == "median"
    # the page shows the finished study and its best trial
    texts = " ".join(str(m.value) for m in at.markdown) + " ".join(str(s.value) for s in at.subheader)
    assert "Best trial" in texts
    assert at.session_state["results_study"] == "apptest"
    # "Use these settings in Part I": the best trial's TrainConfig goes to Part I, which opens
    at.button(key="p2_use_best").click().run()
    assert not at.exception, at.exception
    assert any("Loaded the settings from Part II" in str(s.value) for s in at.success), [s.value for s in at.success]
    loaded = at.session_state["part1_config"]  # Part I pops the hand-over and keeps the config here
    best_config = study.best_trial.user_attrs["config"]
    assert loaded["hidden_layers"] == best_config["hidden_layers"] and loaded["epochs"] == 4
    assert loaded["learning_rate"] == pytest.approx(best_config["learning_rate"], rel=1e-3)
    assert not [b for b in at.button if b.key == "p2_use_best"]  # we are on Part I now


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"p2_min_units": 300, "p2_max_units": 256}, "units"),
        ({"p2_min_lr": -0.001}, "learning rate"),
        ({"p2_min_wd": 0.5, "p2_max_wd": 0.1}, "weight decay"),
        ({"p2_optimizers": []}, "optimizers"),
        ({"p2_sampler": "grid", "p2_depth": "define-by-run"}, "grid"),
    ],
)
def test_invalid_ranges_are_refused_and_nothing_starts(app, values, message):
    at, url = app
    fill(at, p2_name="refused", **values)
    at.button(key="p2_start").click().run()
    assert not at.exception, at.exception
    errors = [shown(e.value) for e in at.error]
    assert errors and message in errors[0] and "Not started" in errors[0], errors
    assert not at.session_state["workers"]
    assert "refused" not in optuna.study.get_all_study_names(url)


def _trial(number: int, state: TrialState, values: list[float], start: float, seconds: float):
    from datetime import datetime

    trial = create_trial(
        state=state,
        value=values[-1] if state == TrialState.COMPLETE else None,
        params={"layer_0": 16},
        distributions={"layer_0": IntDistribution(8, 256)},
        intermediate_values=dict(enumerate(values, start=1)),
    )
    trial.number = number
    trial.datetime_start = datetime.fromtimestamp(start)
    trial.datetime_complete = None if state == TrialState.RUNNING else datetime.fromtimestamp(start + seconds)
    return trial


def test_live_helpers_progress_eta_and_cut_short_curves():
    t0 = 1_000_000.0
    trials = [
        _trial(0, TrialState.COMPLETE, [70, 80, 85, 90], t0, 10),
        _trial(1, TrialState.PRUNED, [60, 61], t0 + 10, 10),
        _trial(2, TrialState.FAIL, [75], t0 + 20, 5),
        _trial(3, TrialState.RUNNING, [72, 74], t0 + 25, 0),
    ]
    assert live.finished_count(trials) == 2
    assert live.trials_to_run(10, trials) == 8  # "reach the total": the FAIL one does not count
    assert live.trials_to_run(2, trials) == 0
    p = live.progress(trials, 10, run_started=t0, now=t0 + 30)
    assert (p.finished, p.running, p.failed, p.best_value, p.best_number) == (2, 1, 1, 90, 0)
    assert p.elapsed == pytest.approx(30)
    assert p.eta == pytest.approx(8 * 10)  # 8 remaining x 10 s mean, one trial at a time
    done = trials[:3]  # nothing running: the clock stops at the last trial's end (t0 + 25)
    assert live.progress(done, 3, run_started=t0, now=t0 + 500).elapsed == pytest.approx(25)

    curves = figures.intermediate_figure(trials, epochs=4)
    assert len(curves.data) == 4  # the running trial's epochs so far are drawn too
    by_name = {trace.name: trace for trace in curves.data}
    pruned = by_name["trial 1 (pruned)"]
    assert pruned.line.dash == "dash" and list(pruned.x) == [1, 2]
    assert pruned.line.color == figures.STATE_COLOURS["PRUNED"]
    assert list(pruned.marker.size) == [0, 10] and pruned.marker.symbol == "x"  # cut short: a cross at the end
    assert by_name["trial 0 (complete)"].line.dash is None
    assert list(by_name["trial 3 (running)"].y) == [72, 74]

    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    history = figures.history_figure(review.snapshot(finished), finished[1:2], manual_best=88.5)
    assert [shape.y0 for shape in history.layout.shapes] == [88.5]
    assert "88.50%" in history.layout.annotations[0].text
    assert figures.history_figure(review.snapshot(finished)).layout.shapes == ()
    best_so_far = next(trace for trace in history.data if trace.name == "Best Value")
    assert max(best_so_far.y) == best_so_far.y[-1] == 90
    cross = next(trace for trace in history.data if trace.name.startswith("pruned"))
    assert (list(cross.x), list(cross.y)) == ([1], [61])  # the pruned trial at its last reported value

    table = live.trial_table(trials)
    assert list(table["trial"]) == [3, 2, 1, 0] and list(table["epochs"]) == [2, 1, 2, 4]
    assert list(figures.architecture_figure([64, 32]).data[0].y) == [21, 64, 32, 3]


def test_an_unusable_storage_is_reported_not_a_crash(monkeypatch, data_path):
    monkeypatch.setenv("FETAL_HPO_DATA", str(data_path))
    monkeypatch.setenv("FETAL_HPO_STORAGE", "ftp://nowhere/studies")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/part2_study.py").run()
    assert not at.exception, at.exception
    assert any("storage is not available" in shown(e.value) and "ftp://nowhere" in shown(e.value) for e in at.error)
    assert not [b for b in at.button if b.key == "p2_start"]


def test_a_study_trains_on_the_sessions_uploaded_data_when_the_server_has_none(monkeypatch, tmp_path, data_path):
    """The worker gets the session's data set itself: the server has no data file for it to load."""
    url = f"sqlite:///{tmp_path}/app.sqlite3"
    monkeypatch.setenv("FETAL_HPO_DATA", str(tmp_path / "none.csv"))
    monkeypatch.setenv("FETAL_HPO_STORAGE", url)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.file_uploader(key="home_upload").set_value(("fetal_health.csv", data_path.read_bytes(), "text/csv")).run()
    at.switch_page("pages/part2_study.py").run()
    fill(at, p2_name="uploaded", p2_sampler="random", p2_pruner="none", p2_trials=2, p2_epochs=2)
    at.button(key="p2_start").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    worker = at.session_state["workers"]["Part II"]
    try:
        wait_until(lambda: (worker.renew(), not worker.alive())[1], "the study on the pool to finish", timeout=300)
        assert worker.error is None, worker.error
        trials = optuna.load_study(study_name="uploaded", storage=url).trials
        assert len(trials) == 2 and all(t.state == TrialState.COMPLETE for t in trials), [t.state for t in trials]
    finally:
        worker.stop()
    assert not (tmp_path / "none.csv").exists()
