"""Class mode: nicknames, Part I runs recorded in the lesson's study, the leaderboard and the instructor page."""

from __future__ import annotations

from datetime import datetime

import optuna
import pytest
from optuna.trial import TrialState
from streamlit.testing.v1 import AppTest

from fetal_core.lesson import (
    DEFAULT_LESSON,
    check_nickname,
    current_lesson,
    findings,
    hand_study_name,
    lesson_trials,
    record_run,
)
from fetal_core.limits import ConfigError
from fetal_core.review import load_trials, trials_frame
from fetal_core.search import SearchSpace
from fetal_core.storage import open_storage
from fetal_core.training import TrainConfig
from tests.conftest import ROOT, shown

PART1 = "pages/part1_manual.py"


@pytest.fixture
def app_env(monkeypatch, tmp_path, data_path):
    monkeypatch.setenv("FETAL_HPO_DATA", str(data_path))
    monkeypatch.setenv("FETAL_HPO_STORAGE", f"sqlite:///{tmp_path}/app.sqlite3")
    monkeypatch.delenv("FETAL_HPO_INSTRUCTOR_KEY", raising=False)
    monkeypatch.chdir(ROOT)


def app(query: dict | None = None, page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    if page is not None:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


HOSTILE_NICKNAMES = ["<b>x</b>", "**x**", "x" * 200, "", "   ", "[a](http://e.vil)", "a\nb", "Ada\u202e", ":red[x]"]


@pytest.mark.parametrize("value", HOSTILE_NICKNAMES)
def test_nicknames_with_markup_or_out_of_range_are_refused(value):
    with pytest.raises(ConfigError, match="nickname"):
        check_nickname(value)


def test_plain_nicknames_are_accepted():
    assert check_nickname("  Ada_42 ") == "Ada_42"
    assert check_nickname("Zoë de-la Cruz") == "Zoë de-la Cruz"
    assert check_nickname("x" * 24) == "x" * 24


def nickname_box() -> AppTest:
    """The sidebar's nickname box alone (AppTest loses an st.navigation app's sidebar after its first run)."""
    script = "\n".join(["import sys", f"sys.path.insert(0, {str(ROOT)!r})",
                         "from pages.class_mode import nickname_sidebar", "nickname_sidebar()"])  # fmt: skip
    return AppTest.from_string(script, default_timeout=60).run()


def type_nickname(at: AppTest, value: str) -> AppTest:
    at.text_input(key="nick_input").set_value(value)
    at.button(key="nick_submit").click().run()
    assert not at.exception, at.exception
    return at


def test_the_nickname_is_asked_once_kept_in_the_url_and_shown_as_text(app_env):
    at = app()
    assert at.text_input(key="nick_input").value == "" and "nick" not in at.query_params  # asked on every page

    box = type_nickname(nickname_box(), "Ada_42")
    assert box.session_state["nickname"] == "Ada_42" and box.query_params["nick"] == "Ada_42"
    assert not [t for t in box.text_input if t.key == "nick_input"]  # asked once
    assert [m.value for m in box.markdown] == ["**Ada\\_42**"]  # shown as text: the underscore escaped

    reloaded = app({"nick": "Ada_42"})  # a reload is a new session with the same URL
    assert reloaded.session_state["nickname"] == "Ada_42"
    assert not [t for t in reloaded.text_input if t.key == "nick_input"]
    reloaded.switch_page(PART1).run()  # Part I rewrites the query with its settings link: the nickname stays
    assert reloaded.query_params["nick"] == "Ada_42" and reloaded.query_params["hl"] == "15-10"


@pytest.mark.parametrize("value", ["<b>x</b>", "**x**", "x" * 200, ""])
def test_a_hostile_nickname_is_refused_with_one_error_in_the_form_and_in_the_url(app_env, value):
    box = type_nickname(nickname_box(), value)
    assert "nickname" not in box.session_state and "nick" not in box.query_params
    [error] = [e.value for e in box.error]
    assert shown(error).startswith("nickname:")

    linked = app({"nick": value})
    assert "nickname" not in linked.session_state and "nick" not in linked.query_params
    if value:
        [error] = [e.value for e in linked.error]
        assert shown(error).startswith("Ignored the nickname in the link: nickname:")


# ---------------------------------------------------------------- Part I runs recorded in the lesson's study


def constructed_record(stopped: bool = False, accuracy=(80.0, 85.0, 88.0), label: str = "Run 1") -> dict:
    config = TrainConfig(hidden_layers=(32, 16, 8), batch_size=64, optimizer="RMSprop", learning_rate=3e-4,
                         weight_decay=1e-4, scheduler=False, epochs=5 if stopped else 3, seed=7)  # fmt: skip
    history = [{"epoch": e + 1, "train_loss": 1.0 / (e + 1), "val_loss": 0.5, "val_accuracy": a,
                "balanced_accuracy": 60.0, "seconds": 0.1 * (e + 1)} for e, a in enumerate(accuracy)]  # fmt: skip
    return {"config": config.to_dict(), "history": history, "final_val_accuracy": accuracy[-1],
            "best_val_accuracy": max(accuracy), "balanced_accuracy": 60.0, "confusion_matrix": None,
            "per_class_recall": {}, "stopped_early": stopped, "seconds": 0.3, "null_accuracy": 77.8,
            "number": 1, "label": label, "waited_seconds": 0.0}  # fmt: skip


def test_a_run_is_a_trial_in_the_search_space_names_with_its_curve_and_who_ran_it(sqlite_url):
    storage = open_storage(sqlite_url)
    lesson = current_lesson(storage)
    assert lesson.name == DEFAULT_LESSON  # before any instructor: the default lesson
    assert record_run(storage, lesson, constructed_record(), "Ada") == 0
    assert record_run(storage, lesson, constructed_record(stopped=True, accuracy=(70.0, 75.0)), "Bob") == 1

    finished, stopped = optuna.load_study(study_name=hand_study_name(DEFAULT_LESSON), storage=storage).trials
    assert (finished.state, finished.value, stopped.state, stopped.value) == (
        TrialState.COMPLETE, 88.0, TrialState.PRUNED, 75.0
    )  # fmt: skip
    assert finished.intermediate_values == {1: 80.0, 2: 85.0, 3: 88.0} and stopped.intermediate_values == {1: 70.0,
                                                                                                            2: 75.0}
    assert finished.user_attrs["nickname"] == "Ada" and stopped.user_attrs["nickname"] == "Bob"
    assert not finished.user_attrs["stopped_early"] and stopped.user_attrs["stopped_early"]
    assert datetime.fromisoformat(finished.user_attrs["recorded"])
    assert finished.user_attrs["config"] == constructed_record()["config"]
    assert finished.user_attrs["history"]["val_accuracy"] == [80.0, 85.0, 88.0]
    # The same names a study's trial has: the search space reads the run's params back into its config.
    space = SearchSpace(min_layers=1, max_layers=8, min_units=1, max_units=1024, min_batch=1, max_batch=2048)
    suggested = space.suggest(optuna.trial.FixedTrial(finished.params))
    config = TrainConfig.from_dict(finished.user_attrs["config"])
    assert suggested == {k: getattr(config, k) for k in suggested}
    # ... and the Results page reads it like any study.
    frame = trials_frame(load_trials(storage, storage.get_study_id_from_name(hand_study_name(DEFAULT_LESSON))))
    assert len(frame) == 2


def test_every_finished_or_stopped_part1_run_lands_in_the_lesson_study(app_env, tmp_path):
    at = app({"nick": "Ada_42"}, page=PART1)
    at.slider(key="part1_epochs_slider").set_value(3)
    at.button(key="part1_train").click().run()
    assert not at.exception, at.exception
    history = [{"epoch": e, "train_loss": 1.0, "val_loss": 1.0, "val_accuracy": 70.0 + e, "balanced_accuracy": 40.0,
                "seconds": 0.01 * e} for e in (1, 2)]  # fmt: skip
    at.session_state["part1_live_run"] = {"config": TrainConfig(epochs=400).to_dict(), "history": history,
                                          "number": 2, "null_accuracy": 77.8, "waited_seconds": 0.0}  # fmt: skip
    at.run()  # a run whose script was interrupted mid-training: kept as stopped, and recorded as such
    assert not at.exception, at.exception

    storage = open_storage(f"sqlite:///{tmp_path}/app.sqlite3")
    trials = optuna.load_study(study_name=hand_study_name(DEFAULT_LESSON), storage=storage).trials
    runs = at.session_state["manual_runs"]
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED]
    assert [t.user_attrs["nickname"] for t in trials] == ["Ada_42", "Ada_42"]
    assert [t.value for t in trials] == [runs[0]["final_val_accuracy"], 72.0]
    assert trials[0].intermediate_values == {h["epoch"]: h["val_accuracy"] for h in runs[0]["history"]}
    assert trials[1].user_attrs["stopped_early"] is True


# ---------------------------------------------------------------- the leaderboard


def test_leaderboard_ranks_each_students_best_run_and_computes_findings(app_env, tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/app.sqlite3")
    lesson = current_lesson(storage)
    for nick, accuracy in (("Ada", (80.0, 86.0)), ("Bob", (81.0, 90.0)), ("Ada", (82.0, 88.5)), ("Cy", (70.0, 79.0))):
        record_run(storage, lesson, constructed_record(accuracy=accuracy), nick)
    record_run(storage, lesson, constructed_record(stopped=True, accuracy=(95.0,)), "Dee")  # stopped: no best
    tampered = constructed_record(accuracy=(60.0, 61.0))
    record_run(storage, lesson, tampered, "<b>x</b>")  # written around the UI: shown without its markup

    at = app(page="pages/leaderboard.py")
    [table] = [d.value for d in at.dataframe if "student" in d.value.columns]
    assert list(table["student"]) == ["Bob", "Ada", "Cy", "(no nickname)", "Dee"]
    assert list(table["best accuracy %"])[:4] == [90.0, 88.5, 79.0, 61.0]
    assert list(table["runs"]) == [1, 2, 1, 1, 1]
    assert not any("<b>" in str(v) for v in table.to_numpy().ravel())
    [chart] = at.get("plotly_chart")
    assert "by hand: each run" in chart.proto.spec
    notes = " ".join(shown(m.value) for m in at.markdown)
    assert "share optimiser = RMSprop" in notes and "Never tried by the class: the SGD optimiser" in notes

    record_run(storage, lesson, constructed_record(accuracy=(91.0, 93.0)), "Cy")  # a new run lands ...
    at.run()  # ... and the next look of the board shows it
    [table] = [d.value for d in at.dataframe if "student" in d.value.columns]
    assert list(table["student"])[:2] == ["Cy", "Bob"] and list(table["best accuracy %"])[0] == 93.0


def test_findings_name_what_the_top_runs_share_and_what_nobody_tried(sqlite_url):
    storage = open_storage(sqlite_url)
    lesson = current_lesson(storage)
    assert findings([]) == ["Findings appear once the class has finished 3 runs (0 so far)."]
    for accuracy in ((80.0, 85.0), (80.0, 87.0), (80.0, 89.0)):
        record_run(storage, lesson, constructed_record(accuracy=accuracy), "Ada")
    hand, machine = lesson_trials(storage, lesson)
    notes = findings(hand, machine)
    assert "3 of the top 3 runs share optimiser = RMSprop (3 of all 3 finished runs)." in notes
    assert any(n.startswith("Never tried by the class: the SGD optimiser; the Adam optimiser; the cosine scheduler "
                            "on; standardised features; a learning rate in [1e-5, 1e-4)") for n in notes)  # fmt: skip
    assert not any("3 hidden layers" in n for n in notes)  # the runs used 3 layers
