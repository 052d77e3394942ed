"""Class mode's study names are reserved: only the class code creates a lesson's by-hand study or the control
study; Part II, the race and the CLI refuse those names, the recorder never writes into a study it did not make
and records under a free name when a lesson's is taken, and storages squatted before all this still read."""

from __future__ import annotations

import subprocess
import sys
import threading

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from streamlit.testing.v1 import AppTest

from fetal_core import lesson as lesson_module
from fetal_core import records
from fetal_core.lesson import (
    CLASS_ENV,
    DEFAULT_LESSON,
    claim_hand_study,
    control_study_name,
    current_lesson,
    hand_study_name,
    is_reserved_name,
    leaderboard_rows,
    lesson_trials,
    record_run,
    save_lesson,
    start_lesson,
)
from fetal_core.limits import ConfigError
from fetal_core.race import RacePlan
from fetal_core.review import list_studies, load_trials
from fetal_core.search import StudyPlan, check_study_name
from fetal_core.storage import open_storage
from tests.conftest import ROOT, shown
from tests.test_class_mode import KEY, constructed_record, unlock

RESERVED = [
    "Lesson 2 (by hand)",
    "Lesson 1 (by hand)",
    "  lesson 2 (BY HAND)  ",
    "Lesson 2 (by hand, 2)",
    "anything at all (by hand)",
    "Fetal_HPO_Class",
    "fetal_hpo_class",
    "Some class: Fetal_HPO_Class",
]
FREE = ["Lesson 2", "by hand", "(by hand) and then some", "Fetal_HPO_Class study", "Lesson 2 class study"]


def squat(storage, name: str, trials: int = 1) -> None:
    """What a Part II study (or any Optuna client) under a class-mode name left in a storage before the names
    were reserved: trials whose distributions clash with a recorded run's."""
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
    for i in range(trials):
        study.add_trial(
            create_trial(
                value=50.0 + i,
                params={"batch_size": 8.0 + i},
                distributions={"batch_size": FloatDistribution(1.0, 2048.0, log=True)},
            )
        )


@pytest.fixture
def no_class_env(monkeypatch):
    monkeypatch.delenv(CLASS_ENV, raising=False)


@pytest.mark.parametrize("name", RESERVED)
def test_class_mode_names_are_reserved_for_part2_and_the_instructors_class_study(name, no_class_env):
    assert is_reserved_name(name)
    with pytest.raises(ConfigError, match=r"^study name: '.*' is reserved \(.*\); choose another\.$"):
        StudyPlan("sqlite:///unused.sqlite3", name, trials=3, epochs=5)  # what Part II's Start builds first
    with pytest.raises(ConfigError, match="is reserved"):
        check_study_name(name)  # the instructor's class study


@pytest.mark.parametrize("name", FREE)
def test_other_names_stay_free(name):
    assert not is_reserved_name(name) and check_study_name(name) == name.strip()


def test_the_names_the_class_code_makes_are_reserved(no_class_env, monkeypatch):
    for lesson in (DEFAULT_LESSON, "Lesson 2", "Week 3: trees"):
        assert all(is_reserved_name(hand_study_name(lesson, n)) for n in (1, 2, 19))
    assert is_reserved_name(control_study_name())
    monkeypatch.setenv(CLASS_ENV, "Group B")
    assert is_reserved_name(control_study_name()) and is_reserved_name(hand_study_name("Lesson 2"))


def test_the_race_refuses_a_reserved_name_and_its_studies_never_have_one():
    with pytest.raises(ConfigError, match=r"^race name: 'Lesson 2 \(by hand\)' is reserved"):
        RacePlan(name="Lesson 2 (by hand)")
    plan = RacePlan(name="by hand", strategies=("tpe", "random", "grid"), pruning=(True, False), reduced=True)
    for run in plan.runs():
        assert not is_reserved_name(run.study_name(plan.name))
        plan.study_plan(run, "sqlite:///unused.sqlite3", 1)  # what the race opens: accepted


def test_the_cli_refuses_a_reserved_study_name_with_one_line(sqlite_url, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "fetal_core", "study", "--storage", sqlite_url, "--study-name", "Lesson 2 (by hand)",
         "--trials", "1", "--epochs", "2", "--data", str(tmp_path / "not read.csv")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "error: study name: 'Lesson 2 (by hand)' is reserved (a name ending in '(by hand)' or 'Fetal_HPO_Class' "
        "belongs to class mode); choose another."
    ]
    assert optuna.get_all_study_names(storage=sqlite_url) == []  # nothing created


def test_a_taken_lesson_name_is_recovered_and_the_run_lands_with_its_nickname(sqlite_url, no_class_env):
    storage = open_storage(sqlite_url)
    squat(storage, "Lesson 2 (by hand)", trials=3)
    first = current_lesson(storage)
    record_run(storage, first, constructed_record(), "Ada")  # Lesson 1: its own name is free

    started = start_lesson(storage, "Lesson 2", first)  # the instructor's button
    assert started.name_taken and started.hand_study == "Lesson 2 (by hand, 2)"
    assert current_lesson(storage).hand_study == "Lesson 2 (by hand, 2)"  # stored: every process reads it
    assert record_run(storage, current_lesson(storage), constructed_record(accuracy=(80.0, 91.0)), "Grace") == 0

    hand, _ = lesson_trials(storage, current_lesson(storage))
    assert [(row["student"], row["best accuracy %"]) for row in leaderboard_rows(hand)] == [("Grace", 91.0)]
    kinds = {s.study_name: records.lesson_record(s.user_attrs) for s in storage.get_all_studies()}
    assert kinds["Lesson 2 (by hand)"] is None and kinds["Lesson 2 (by hand, 2)"] == "by hand"
    squatted = optuna.load_study(study_name="Lesson 2 (by hand)", storage=storage).trials
    assert len(squatted) == 3 and not any("nickname" in t.user_attrs for t in squatted)  # never written to


def test_the_first_run_recovers_a_default_lesson_taken_before_it(sqlite_url, no_class_env):
    """On a fresh server no instructor has claimed Lesson 1's study: the first run does, and says where."""
    storage = open_storage(sqlite_url)
    squat(storage, hand_study_name(DEFAULT_LESSON))
    lesson = current_lesson(storage)
    assert lesson_trials(storage, lesson) == ([], [])  # the squatter's trials are not the class's runs
    assert record_run(storage, lesson, constructed_record(), "Ada") == 0
    later = current_lesson(storage)
    assert later.hand_study == "Lesson 1 (by hand, 2)" and later.name_taken
    assert [t.user_attrs["nickname"] for t in lesson_trials(storage, later)[0]] == ["Ada"]
    assert record_run(storage, lesson, constructed_record(), "Bob") == 1  # a process that read the lesson before
    assert [t.user_attrs["nickname"] for t in lesson_trials(storage, later)[0]] == ["Ada", "Bob"]


def test_an_empty_unmarked_study_counts_as_taken_once_it_stays_unmarked(sqlite_url, no_class_env, monkeypatch):
    storage = open_storage(sqlite_url)
    monkeypatch.setattr(lesson_module, "MARK_WAIT_SECONDS", 0.2)
    storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], hand_study_name(DEFAULT_LESSON))
    _, lesson = claim_hand_study(storage, current_lesson(storage))
    assert lesson.hand_study == "Lesson 1 (by hand, 2)"


def test_a_study_another_process_is_creating_is_waited_for_not_taken(sqlite_url, no_class_env):
    """Creating and marking a by-hand study are two writes: another process's half-made study is ours."""
    storage = open_storage(sqlite_url)
    name = hand_study_name(DEFAULT_LESSON)
    study_id = storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], name)
    marker = threading.Timer(0.3, records.mark_lesson_record, (storage, study_id, "by hand"))
    marker.start()
    try:
        claimed, lesson = claim_hand_study(storage, current_lesson(storage))
    finally:
        marker.join()
    assert (claimed, lesson.hand_study, lesson.name_taken) == (study_id, name, False)


def test_a_squatted_control_study_is_never_written_and_still_reads(sqlite_url, no_class_env):
    storage = open_storage(sqlite_url)
    squat(storage, control_study_name())
    assert current_lesson(storage).name == DEFAULT_LESSON  # reads as "no lesson started"
    with pytest.raises(ConfigError, match=f"{CLASS_ENV}=<a class name>"):
        save_lesson(storage, current_lesson(storage), make_current=True)
    assert (
        records.lesson_record(storage.get_study_user_attrs(storage.get_study_id_from_name("Fetal_HPO_Class"))) is None
    )


def test_a_squatted_storage_still_reads_on_results_and_the_leaderboard(sqlite_url, tmp_path, monkeypatch, data_path):
    storage = open_storage(sqlite_url)
    squat(storage, hand_study_name(DEFAULT_LESSON), trials=2)
    squat(storage, "Lesson 2 (by hand)")
    rows = {r.name: r for r in list_studies(storage)}  # Results' study list
    assert rows["Lesson 1 (by hand)"].complete == 2 and rows["Lesson 2 (by hand)"].complete == 1
    assert len(load_trials(storage, storage.get_study_id_from_name("Lesson 1 (by hand)"))) == 2

    monkeypatch.setenv("FETAL_HPO_DATA", str(data_path))
    monkeypatch.setenv("FETAL_HPO_STORAGE", sqlite_url)
    monkeypatch.delenv("FETAL_HPO_INSTRUCTOR_KEY", raising=False)
    monkeypatch.chdir(ROOT)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page("pages/leaderboard.py").run()
    assert not at.exception, at.exception
    [table] = [d.value for d in at.table if "student" in d.value.columns]
    assert len(table) == 0  # the squatter's trials are not shown as "(no nickname)" runs
    at.switch_page("pages/results.py").run()
    assert not at.exception, at.exception


@pytest.fixture
def fresh_key_guard():
    """No wrong key counted before (AppTest sessions share one session id, and the guard is the server's)."""
    from pages import class_mode

    class_mode.key_guard.clear()
    yield
    class_mode.key_guard.clear()


def test_the_instructor_page_says_where_a_taken_lessons_runs_go(monkeypatch, tmp_path, data_path, fresh_key_guard):
    url = f"sqlite:///{tmp_path}/app.sqlite3"
    for name, value in (
        ("FETAL_HPO_DATA", str(data_path)),
        ("FETAL_HPO_STORAGE", url),
        ("FETAL_HPO_INSTRUCTOR_KEY", KEY),
    ):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(CLASS_ENV, raising=False)
    monkeypatch.chdir(ROOT)
    storage = open_storage(url)
    squat(storage, "Lesson 2 (by hand)")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page("pages/instructor.py").run()
    unlock(at, KEY)
    assert not at.warning  # Lesson 1's own name is free
    at.text_input(key="instr_new_lesson").set_value("Lesson 2")
    at.button(key="instr_new_lesson_start").click().run()
    assert not at.exception, at.exception
    assert [shown(s.value) for s in at.success] == ["Lesson Lesson 2 started; Lesson 1 is archived."]
    [warning] = [shown(w.value) for w in at.warning]
    assert "'Lesson 2 (by hand)' was taken" in warning and "recorded in 'Lesson 2 (by hand, 2)'" in warning
    assert current_lesson(storage).hand_study == "Lesson 2 (by hand, 2)"
    assert [t.state for t in optuna.load_study(study_name="Lesson 2 (by hand)", storage=storage).trials] == [
        TrialState.COMPLETE
    ]  # untouched
