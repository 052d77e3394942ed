"""The take-home report (fetal_core.report): one self-contained HTML file of a lesson or of a study."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import optuna
import pytest
from optuna.trial import TrialState

from fetal_core import report
from fetal_core.lesson import current_lesson, record_run, run_params, save_lesson
from fetal_core.limits import ConfigError
from fetal_core.storage import open_storage
from fetal_core.training import TrainConfig
from tests import test_class_mode
from tests.conftest import ROOT
from tests.test_class_mode import KEY, app, constructed_record, instructor, unlock

# Class mode's fixtures: the app on a temporary storage, with an instructor key
app_env, key_clock, instructor_env = test_class_mode.app_env, test_class_mode.key_clock, test_class_mode.instructor_env
HOSTILE = "<script>alert(1)</script>"
PLOTLY_BANNER = "* plotly.js v"  # the licence banner at the top of plotly.min.js


def add_study(storage, name: str, values: list[float]) -> None:
    """A finished study of made-up trials in the lab's search-space names, each with its stored config."""
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
    start = datetime(2026, 12, 6, 10, tzinfo=UTC)
    for i, value in enumerate(values):
        config = TrainConfig(
            hidden_layers=(16 + i, 8),
            batch_size=32 * (1 + i % 3),
            optimizer=("Adam", "SGD", "RMSprop")[i % 3],
            learning_rate=10 ** -(1 + i % 4),
            weight_decay=1e-4,
            epochs=4,
        )
        params, distributions = run_params(config)
        state = TrialState.PRUNED if i % 4 == 3 else TrialState.COMPLETE
        epochs = 2 if state == TrialState.PRUNED else 4
        trial = optuna.trial.create_trial(
            state=state,
            value=value if state == TrialState.COMPLETE else None,
            params=params,
            distributions=distributions,
            intermediate_values={e: value - 4 + e for e in range(1, epochs + 1)},
            user_attrs={"config": config.to_dict()},
        )
        trial.datetime_start = start + timedelta(seconds=10 * i)  # for the timeline
        trial.datetime_complete = start + timedelta(seconds=10 * i + 15)
        study.add_trial(trial)


def make_lesson(url: str):
    """The current lesson: four runs (one by a hostile nickname), one of them removed, and a class study."""
    storage = open_storage(url)
    lesson = current_lesson(storage)
    record_run(storage, lesson, constructed_record(accuracy=(80.0, 85.0, 88.0)), "Ada")  # run 0
    record_run(storage, lesson, constructed_record(accuracy=(80.0, 90.0, 91.5)), "Bob")  # run 1
    record_run(storage, lesson, constructed_record(accuracy=(70.0, 96.0, 99.25)), "Cheater")  # run 2: removed
    record_run(storage, lesson, constructed_record(accuracy=(70.0, 72.0, 79.0)), HOSTILE)  # run 3
    add_study(storage, "class study", [82.0, 86.5, 84.0, 80.0, 89.0, 87.0, 85.0, 81.0, 88.0, 83.0])
    save_lesson(storage, dataclasses.replace(current_lesson(storage), removed=(2,), class_study="class study"), True)
    return storage


@pytest.fixture
def lesson_storage(sqlite_url):
    return sqlite_url, make_lesson(sqlite_url)


def assert_offline(page: str) -> None:
    """One copy of plotly.js, inline; nothing the browser would fetch."""
    assert page.count(PLOTLY_BANNER) == 1
    assert not re.search(r"<script[^>]*\ssrc=", page, re.I)
    assert not re.search(r"<link[^>]*href=[\"']?https?:", page, re.I)
    assert not re.search(r"<(img|iframe)[^>]*src=[\"']?https?:", page, re.I)


def test_a_lesson_report_has_the_board_the_removed_runs_apart_the_plots_and_the_best_settings(lesson_storage):
    _, storage = lesson_storage
    page = report.lesson_report(storage)
    assert_offline(page)
    board, rest = page.split("Removed runs", 1)
    assert "Bob" in board and "91.50" in board and "Ada" in board
    assert "Cheater" not in board and "99.25" not in board  # the removed run is not on the board ...
    removed, _ = rest.split("Hand vs machine", 1)
    assert "Cheater" in removed and "99.25" in removed and "removed" in removed  # ... but listed apart, marked
    assert page.count('class="plotly-graph-div"') >= 8  # hand vs machine and the class study's plots
    for title in ("Optimisation history", "Intermediate values", "Parallel coordinates", "Slice plot", "Timeline"):
        assert f"<h3>{title}" in page
    assert page.count("How to read this.") >= 7 and 'class="finding"' in page
    assert "What the runs show" in page
    assert "import torch" in page and "BATCH_SIZE = 64" in page  # Bob's best run as the course's PyTorch
    assert "The best trial of class study: #4, 89.00%" in page  # and the class study's best trial


def test_user_text_is_escaped_and_cannot_close_a_script(lesson_storage):
    url, storage = lesson_storage
    add_study(storage, HOSTILE, [80.0, 85.0, 90.0])
    for page in (report.lesson_report(storage), report.study_report(storage, HOSTILE)):
        assert_offline(page)
        assert HOSTILE not in page and "alert(1)</script>" not in page
    assert "Study report: &lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_study_report_and_unknown_names(lesson_storage):
    _, storage = lesson_storage
    page = report.study_report(storage, "class study", null_accuracy=77.8)
    assert_offline(page)
    assert "The null accuracy (always guessing &#x27;normal&#x27;) is 77.8%." in page
    assert page.count('class="plotly-graph-div"') >= 7
    optuna.create_study(storage=storage, study_name="empty")
    assert "nothing to plot" in report.study_report(storage, "empty")
    with pytest.raises(ConfigError, match="study 'nope' is not in this storage"):
        report.study_report(storage, "nope")
    with pytest.raises(ConfigError, match="lesson 'nope' is not in this storage"):
        report.lesson_report(storage, "nope")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fetal_core", "report", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_the_cli_writes_the_report_of_a_study_or_a_lesson_and_says_what_is_wrong_in_one_line(lesson_storage, tmp_path):
    url, storage = lesson_storage
    out = tmp_path / "lesson.html"
    done = run_cli("--storage", url, "--lesson", current_lesson(storage).name, "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert str(out) in done.stdout and "Cheater" in out.read_text()
    done = run_cli("--storage", url, "--study-name", "class study", "--out", str(tmp_path / "study.html"))
    assert done.returncode == 0, done.stderr
    assert_offline((tmp_path / "study.html").read_text())
    done = run_cli("--storage", url, "--study-name", "nope", "--out", str(tmp_path / "x.html"))
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "study 'nope'" in done.stderr
    assert not (tmp_path / "x.html").exists()
    done = run_cli("--storage", url, "--out", str(tmp_path / "x.html"))  # neither a study nor a lesson
    assert done.returncode == 2 and done.stderr.count("\n") == 1


def download_keys(at) -> list[str]:
    return [b.proto.id.rsplit("-", 1)[-1] for b in at.get("download_button")]


@pytest.mark.usefixtures("instructor_env")
def test_the_instructor_page_and_results_offer_the_report(tmp_path):
    at = unlock(instructor(), KEY)
    assert "instr_report" not in download_keys(at)  # built only when asked
    at.button(key="instr_report_build").click().run()
    assert not at.exception and "instr_report" in download_keys(at)
    make_lesson(f"sqlite:///{tmp_path}/app.sqlite3")  # the app's storage (app_env)
    at = app(page="pages/results.py")
    at.selectbox(key="results_pick").set_value("class study").run()
    assert not at.exception and "results_report" not in download_keys(at)
    at.button(key="results_report_build").click().run()
    assert not at.exception and "results_report" in download_keys(at)
