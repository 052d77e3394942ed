"""Class mode: nicknames, Part I runs recorded in the lesson's study, the leaderboard and the instructor page."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import optuna
import pytest
from optuna.trial import TrialState
from streamlit.testing.v1 import AppTest

from fetal_core.lesson import (
    BOARD_COLUMNS,
    DEFAULT_LESSON,
    KeyGuard,
    Presets,
    check_nickname,
    current_lesson,
    findings,
    hand_study_name,
    lesson_nicknames,
    lesson_trials,
    lessons,
    record_run,
    save_lesson,
    session_token,
    student,
)
from fetal_core.limits import ConfigError
from fetal_core.review import load_trials, trials_frame
from fetal_core.search import SearchSpace
from fetal_core.storage import open_storage
from fetal_core.training import TrainConfig
from tests.conftest import ROOT, live_part1_run, made_up_history, shown, wait_until

PART1 = "pages/part1_manual.py"
INSTRUCTOR = "pages/instructor.py"


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


INVISIBLE_NICKNAMES = ["\u3164\u3164\u3164", "\u115f", "\u1160Ada", "\uffa0", "Ada\u200d", "A\u034fda", "\u2800"]


@pytest.mark.parametrize("value", INVISIBLE_NICKNAMES)
def test_invisible_characters_are_refused_in_a_nickname(value):
    """The Hangul fillers are letters (Lo) that draw nothing: a nickname of them looks empty on the board."""
    with pytest.raises(ConfigError, match="not allowed"):
        check_nickname(value)
    trial = optuna.trial.create_trial(value=1.0, user_attrs={"nickname": value})
    assert student(trial) == "(no nickname)"  # one recorded around the UI is shown as none


def test_letters_and_digits_of_any_script_are_accepted():
    for name in ("Ἀριστοτέλης", "李小龙", "Åsa_٣", "محمد", "Ада Лавлейс", "Zoë"):
        assert check_nickname(name) == name


def test_a_look_alike_of_a_nickname_in_the_lesson_is_refused():
    taken = ["Ada", "m", "Ada Lovelace"]
    for look_alike, original in (("\u0410da", "Ada"), ("Αda", "Ada"), ("rn", "m"), ("Ada  Lovelace", "Ada Lovelace")):
        with pytest.raises(ConfigError) as refused:
            check_nickname(look_alike, taken)
        assert str(refused.value) == f"nickname: looks like '{original}', already in this lesson; choose another."
    assert check_nickname("Ada", taken) == "Ada"  # the same student after a reload
    assert check_nickname(" Ada ", ["\u0410da", "Ada"]) == "Ada"  # the same one, even beside an older look-alike
    assert check_nickname("Grace", taken) == "Grace" and check_nickname("ada", taken) == "ada"
    assert check_nickname("\u0410da") == "\u0410da"  # alone in its lesson, a Cyrillic А is a letter like any


def nickname_box() -> AppTest:
    """The sidebar's nickname box alone (AppTest loses an st.navigation app's sidebar after its first run)."""
    script = "\n".join(
        [
            "import sys",
            f"sys.path.insert(0, {str(ROOT)!r})",
            "from pages.class_mode import nickname_sidebar",
            "nickname_sidebar()",
        ]
    )
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
    config = TrainConfig(
        hidden_layers=(32, 16, 8),
        batch_size=64,
        optimizer="RMSprop",
        learning_rate=3e-4,
        weight_decay=1e-4,
        scheduler=False,
        epochs=5 if stopped else 3,
        seed=7,
    )
    history = [
        {
            "epoch": e + 1,
            "train_loss": 1.0 / (e + 1),
            "val_loss": 0.5,
            "val_accuracy": a,
            "balanced_accuracy": 60.0,
            "seconds": 0.1 * (e + 1),
        }
        for e, a in enumerate(accuracy)
    ]
    return {
        "config": config.to_dict(),
        "history": history,
        "final_val_accuracy": accuracy[-1],
        "best_val_accuracy": max(accuracy),
        "balanced_accuracy": 60.0,
        "confusion_matrix": None,
        "per_class_recall": {},
        "stopped_early": stopped,
        "seconds": 0.3,
        "null_accuracy": 77.8,
        "number": 1,
        "label": label,
        "waited_seconds": 0.0,
    }


def test_a_run_is_a_trial_in_the_search_space_names_with_its_curve_and_who_ran_it(sqlite_url):
    storage = open_storage(sqlite_url)
    lesson = current_lesson(storage)
    assert lesson.name == DEFAULT_LESSON  # before any instructor: the default lesson
    assert record_run(storage, lesson, constructed_record(), "Ada") == 0
    assert record_run(storage, lesson, constructed_record(stopped=True, accuracy=(70.0, 75.0)), "Bob") == 1

    finished, stopped = optuna.load_study(study_name=hand_study_name(DEFAULT_LESSON), storage=storage).trials
    assert (finished.state, finished.value, stopped.state, stopped.value) == (
        TrialState.COMPLETE,
        88.0,
        TrialState.PRUNED,
        75.0,
    )
    assert finished.intermediate_values == {1: 80.0, 2: 85.0, 3: 88.0} and stopped.intermediate_values == {
        1: 70.0,
        2: 75.0,
    }
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
    at.session_state["part1_live_run"] = live_part1_run(made_up_history(2), number=2)
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


def test_a_nickname_that_looks_like_one_in_the_lesson_is_refused_in_the_form_and_the_link(app_env, tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/app.sqlite3")
    record_run(storage, current_lesson(storage), constructed_record(), "Ada")
    record_run(storage, current_lesson(storage), constructed_record(), "Bob")
    assert lesson_nicknames(storage, current_lesson(storage)) == {"Ada", "Bob"}

    box = type_nickname(nickname_box(), "\u0410da")  # a Cyrillic А
    assert "nickname" not in box.session_state and "nick" not in box.query_params
    assert [shown(e.value) for e in box.error] == [
        "nickname: looks like 'Ada', already in this lesson; choose another."
    ]
    box = type_nickname(box, "Ada")  # the same student again (another tab, a reload without the link)
    assert box.session_state["nickname"] == "Ada"

    linked = app({"nick": "\u0410da"})
    assert "nickname" not in linked.session_state and "nick" not in linked.query_params
    [error] = [shown(e.value) for e in linked.error]
    assert (
        error == "Ignored the nickname in the link: nickname: looks like 'Ada', already in this lesson; choose another."
    )
    assert app({"nick": "Bob"}).session_state["nickname"] == "Bob"


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
    [table] = [d.value for d in at.table if "student" in d.value.columns]
    assert tuple(table.columns) == BOARD_COLUMNS
    assert list(table["student"]) == ["Bob", "Ada", "Cy", "(no nickname)", "Dee"]
    assert list(table["best accuracy %"])[:4] == [90.0, 88.5, 79.0, 61.0]
    assert list(table["runs"]) == [1, 2, 1, 1, 1]
    assert not any("<b>" in str(v) for v in table.to_numpy().ravel())
    [chart] = at.get("plotly_chart")
    assert "by hand: each run" in chart.proto.spec
    notes = " ".join(shown(m.value) for m in at.markdown)
    assert "share optimiser = RMSprop" in notes and "Never tried by the class: the SGD optimiser" in notes

    record_run(storage, lesson, constructed_record(accuracy=(91.0, 93.0)), "Cy")  # a new run lands ...

    def board_top() -> tuple:  # a later look of the board (its storage fingerprint is cached for 0.5 s)
        at.run()
        [table] = [d.value for d in at.table if "student" in d.value.columns]
        return list(table["student"])[:2] == ["Cy", "Bob"] and list(table["best accuracy %"])[0] == 93.0

    wait_until(board_top, "the new run on the leaderboard", timeout=60)


def test_an_empty_leaderboard_draws_its_table_from_the_first_look(app_env):
    """Its columns and no row (so the browser loads the table's code with the page), and says why it is empty."""
    at = app(page="pages/leaderboard.py")
    [table] = [d.value for d in at.table]
    assert tuple(table.columns) == BOARD_COLUMNS and len(table) == 0
    assert any("No run yet" in i.value for i in at.info)


def test_findings_name_what_the_top_runs_share_and_what_nobody_tried(sqlite_url):
    storage = open_storage(sqlite_url)
    lesson = current_lesson(storage)
    assert findings([]) == ["Findings appear once the class has finished 3 runs (0 so far)."]
    for accuracy in ((80.0, 85.0), (80.0, 87.0), (80.0, 89.0)):
        record_run(storage, lesson, constructed_record(accuracy=accuracy), "Ada")
    hand, machine = lesson_trials(storage, lesson)
    notes = findings(hand, machine)
    assert "3 of the top 3 runs share optimiser = RMSprop (3 of all 3 finished runs)." in notes
    assert any(
        n.startswith(
            "Never tried by the class: the SGD optimiser; the Adam optimiser; the cosine scheduler "
            "on; standardised features; a learning rate in [1e-5, 1e-4)"
        )
        for n in notes
    )
    assert not any("3 hidden layers" in n for n in notes)  # the runs used 3 layers


# ---------------------------------------------------------------- the instructor

KEY = "c0rrect horse-battery"


class Clock:
    """A clock the test moves (for the instructor key's waits)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def key_clock(monkeypatch) -> Clock:
    """The server's key guard starts afresh on a clock the test moves (AppTest sessions share one session id)."""
    from pages import class_mode

    clock = Clock()
    monkeypatch.setattr(class_mode, "KeyGuard", lambda: KeyGuard(clock=clock))
    class_mode.key_guard.clear()
    yield clock
    class_mode.key_guard.clear()


@pytest.fixture
def instructor_env(app_env, monkeypatch, key_clock):
    monkeypatch.setenv("FETAL_HPO_INSTRUCTOR_KEY", KEY)


def instructor(query: dict | None = None) -> AppTest:
    return app(query, page=INSTRUCTOR)


def unlock(at: AppTest, typed: str) -> AppTest:
    at.text_input(key="instructor_key_input").input(typed)
    at.button(key="instructor_unlock_button").click().run()
    assert not at.exception, at.exception
    return at


def actions(at: AppTest) -> list[str]:
    return [b.key for b in at.button if (b.key or "").startswith("instr")]


def page_text(at: AppTest) -> str:
    return repr(at.main) + repr(at.session_state._state.filtered_state)


def test_without_the_variable_there_is_no_instructor_page(app_env):
    at = app()
    with pytest.raises(Exception):  # noqa: B017 (AppTest's error for a page that is not in st.navigation)
        at.switch_page(INSTRUCTOR).run()
    direct = AppTest.from_file(str(ROOT / INSTRUCTOR), default_timeout=60).run()  # the file run by itself
    assert actions(direct) == [] and "no instructor key" in " ".join(i.value for i in direct.info)


def test_no_key_a_wrong_key_a_tampered_url_or_session_value_reach_no_instructor_action(instructor_env, key_clock):
    at = instructor({"key": KEY, "instructor": "1", "instructor_token": KEY})  # a tampered URL
    assert at.text_input(key="instructor_key_input").value == "" and actions(at) == ["instructor_unlock_button"]
    for wrong in ("", "c0rrect horse", KEY + " ", KEY.upper(), "x" * 10_000):
        unlock(at, wrong)
        assert actions(at) == ["instructor_unlock_button"] and "instructor_token" not in at.session_state
        [error] = [shown(e.value) for e in at.error]
        assert error.startswith("That is not the instructor key. Wait "), error
        unlock(at, KEY)  # at once: refused unchecked, even the right key
        assert actions(at) == ["instructor_unlock_button"] and "instructor_token" not in at.session_state
        [error] = [shown(e.value) for e in at.error]
        assert error.startswith("Too many wrong keys: wait "), error
        key_clock.now += 60
    for forged in (True, "1", KEY, session_token("another key")):  # a session value set around the form
        at.session_state["instructor_token"] = forged
        at.run()
        assert actions(at) == ["instructor_unlock_button"], forged
    assert KEY not in page_text(at)

    unlock(at, KEY)
    assert "instr_presets_save" in actions(at)
    assert KEY not in page_text(at)  # the key is neither shown nor kept: only a keyed hash of it
    assert at.session_state["instructor_token"] == session_token(KEY) != KEY


def test_presets_apply_to_every_students_part1(instructor_env, tmp_path):
    at = unlock(instructor(), KEY)
    at.selectbox(key="instr_seen_optimizer").set_value("fixed")
    at.selectbox(key="instr_fixed_optimizer").set_value("SGD")
    at.selectbox(key="instr_seen_seed").set_value("hidden")
    at.number_input(key="instr_low_learning_rate").set_value(1e-3)
    at.number_input(key="instr_high_learning_rate").set_value(0.1)
    at.number_input(key="instr_epochs_cap").set_value(30)
    at.button(key="instr_presets_save").click().run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])

    for nick in ("Ada", "Bob"):  # two students' sessions
        student_at = app({"nick": nick}, page=PART1)
        assert "part1_optimizer" not in [w.key for w in student_at.segmented_control]
        assert "part1_seed" not in [w.key for w in student_at.number_input]
        [fixed] = [c.value for c in student_at.caption if "Fixed for this lesson" in c.value]
        assert "optimiser SGD" in shown(fixed)
        assert student_at.slider(key="part1_epochs_slider").max == 30
        assert student_at.slider(key="part1_epochs_slider").value == 30  # the default 50 moved under the cap
        rates = student_at.select_slider(key="part1_lr").options
        assert [float(r) for r in (rates[0], rates[-1])] == [1e-3, 0.1]
        student_at.slider(key="part1_epochs_slider").set_value(2)
        student_at.button(key="part1_train").click().run()
        assert not student_at.exception, student_at.exception
        config = student_at.session_state["manual_runs"][-1]["config"]
        assert config["optimizer"] == "SGD" and config["seed"] == 42 and config["learning_rate"] == 0.1


def test_presets_refuse_what_the_widgets_would_not_offer():
    presets = Presets({"optimizer": "fixed"}, {"optimizer": "SGD"}, {"batch_size": (8, 64)}, 30)
    config = presets.enforce(TrainConfig(batch_size=32, epochs=30, optimizer="Adam"))
    assert config.optimizer == "SGD"  # a fixed control is set whatever the session sent
    for tampered, message in (
        (TrainConfig(batch_size=100, epochs=10), "batch size: 100 is outside"),
        (TrainConfig(batch_size=16, epochs=31), "epochs: 31 is outside"),
    ):
        with pytest.raises(ConfigError, match=message):
            presets.enforce(tampered)
    with pytest.raises(ConfigError):
        Presets({"optimizer": "sometimes"})
    assert Presets.from_dict({"visibility": {"rm -rf": "hidden"}}) == Presets()  # a storage edited by hand


def test_class_study_new_lesson_and_removed_run(instructor_env, tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/app.sqlite3")
    for nick, accuracy in (("Ada", (80.0, 86.0)), ("Bob", (81.0, 90.0))):
        record_run(storage, current_lesson(storage), constructed_record(accuracy=accuracy), nick)
    at = unlock(instructor(), KEY)
    at.text_input(key="instr_class_study_name").set_value("Class <b>study</b>")
    at.button(key="instr_class_study_start").click().run()
    assert not at.exception, at.exception
    assert current_lesson(storage).class_study == "Class <b>study</b>"
    assert optuna.load_study(study_name="Class <b>study</b>", storage=storage).user_attrs["sampler"] == "tpe"

    part2 = app({"nick": "Ada"}, page="pages/part2_study.py")  # a student's Part II selects the class study
    assert part2.selectbox(key="p2_choice").value == "Class <b>study</b>"

    at.selectbox(key="instr_remove_run").set_value(1)  # Bob's run
    at.button(key="instr_remove").click().run()
    hand, _ = lesson_trials(storage, current_lesson(storage))
    assert [student(t) for t in hand] == ["Ada"]

    at.text_input(key="instr_new_lesson").set_value("Lesson 2")
    at.button(key="instr_new_lesson_start").click().run()
    assert not at.exception, at.exception
    assert current_lesson(storage).name == "Lesson 2" and lesson_trials(storage, current_lesson(storage)) == ([], [])
    assert [(x.name, x.archived) for x in lessons(storage)] == [(DEFAULT_LESSON, True), ("Lesson 2", False)]


def test_class_mode_record_studies_are_not_optuna_studies(sqlite_url):
    """The lessons' control study and a by-hand study are marked: Part II and the instructor never offer them,
    no Optuna study may add trials to them, and Results lists the by-hand runs but not the control study."""
    from fetal_core import records
    from fetal_core.lesson import control_study_name, save_lesson
    from fetal_core.live import study_names
    from fetal_core.review import list_studies
    from fetal_core.search import StudyPlan, open_study

    storage = open_storage(sqlite_url)
    lesson = current_lesson(storage)
    record_run(storage, lesson, constructed_record(), "Ada")
    save_lesson(storage, lesson, make_current=True)
    optuna.create_study(storage=storage, study_name="an optuna study", direction="maximize")
    hand, control = hand_study_name(DEFAULT_LESSON), control_study_name()
    kinds = {s.study_name: records.lesson_record(s.user_attrs) for s in storage.get_all_studies()}
    assert kinds == {hand: "by hand", control: "control", "an optuna study": None}

    assert study_names(storage, optuna_only=True) == ["an optuna study"]
    assert set(study_names(storage)) == set(kinds)
    for name in (hand, control):
        with pytest.raises(ConfigError, match="is reserved"):
            open_study(StudyPlan(sqlite_url, name, trials=1, epochs=2), storage)
    assert len(optuna.load_study(study_name=hand, storage=storage).trials) == 1  # nothing added
    assert sorted(r.name for r in list_studies(storage)) == sorted([hand, "an optuna study"])


def test_presets_whose_ranges_fit_no_network_are_refused():
    """Every student's Part I must have a network to train: ranges whose smallest one breaks the size caps fail."""
    with pytest.raises(ConfigError, match="smallest network"):
        Presets(ranges={"units": (1024, 1024), "layers": (8, 8)})
    assert Presets(ranges={"units": (8, 64), "layers": (1, 3)}).range("units") == (8, 64)


def test_the_instructor_form_shows_what_is_saved_after_a_new_lesson_or_another_tab(instructor_env, tmp_path):
    at = unlock(instructor(), KEY)
    assert at.text_input(key="instr_class_study_name").value == f"{DEFAULT_LESSON} class study"
    at.selectbox(key="instr_seen_optimizer").set_value("fixed")
    at.selectbox(key="instr_fixed_optimizer").set_value("SGD")
    at.number_input(key="instr_epochs_cap").set_value(40)
    at.button(key="instr_presets_save").click().run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    assert at.selectbox(key="instr_seen_optimizer").value == "fixed"

    at.text_input(key="instr_new_lesson").set_value("Lesson 2")
    at.button(key="instr_new_lesson_start").click().run()
    assert not at.exception, at.exception
    # The new lesson has no presets: the form says so, and offers a class study named after it.
    assert at.selectbox(key="instr_seen_optimizer").value == "choose"
    assert at.selectbox(key="instr_fixed_optimizer").value == "Adam"
    assert at.number_input(key="instr_epochs_cap").value == 0
    assert at.text_input(key="instr_class_study_name").value == "Lesson 2 class study"
    at.button(key="instr_class_study_start").click().run()
    storage = open_storage(f"sqlite:///{tmp_path}/app.sqlite3")
    assert current_lesson(storage).class_study == "Lesson 2 class study"

    other_tab = Presets({"seed": "hidden"}, {"seed": 7}, {"batch_size": (8, 64)}, 25)
    save_lesson(storage, dataclasses.replace(current_lesson(storage), presets=other_tab.to_dict()), make_current=True)
    at.run()  # this tab's next run (its check every 2 s starts one)
    assert at.selectbox(key="instr_seen_seed").value == "hidden" and at.number_input(key="instr_fixed_seed").value == 7
    assert at.number_input(key="instr_epochs_cap").value == 25
    assert (at.number_input(key="instr_low_batch_size").value, at.number_input(key="instr_high_batch_size").value) == (
        8,
        64,
    )


def test_the_address_students_type_follows_the_servers_options():
    from pages.class_mode import class_address

    assert class_address("0.0.0.0", 8501, lan="192.168.1.20") == ("http://192.168.1.20:8501/", None)
    assert class_address("", 9000, "lab", True, "10.0.0.5") == ("https://10.0.0.5:9000/lab/", None)
    assert class_address("10.1.2.3", 8501) == ("http://10.1.2.3:8501/", None)
    url, unreachable = class_address("127.0.0.1", 8501, lan="192.168.1.20")
    assert url == "http://127.0.0.1:8501/" and "HOST=0.0.0.0" in unreachable
    assert class_address("0.0.0.0", 8501)[1] is not None  # no network address at all
    behind_proxy = class_address("127.0.0.1", 8501, browser_url="https://lab.example.edu/part1_manual")
    assert behind_proxy == ("https://lab.example.edu/", None)  # what the instructor's browser reached works


def test_the_instructor_page_shows_the_address_students_type_and_its_qr_code(instructor_env, monkeypatch):
    from streamlit import config

    from pages import class_mode

    monkeypatch.setattr(class_mode, "lan_ipv4", lambda: "192.168.1.20")
    encoded, make_png = [], class_mode.qr_png
    monkeypatch.setattr(class_mode, "qr_png", lambda text: encoded.append(text) or make_png(text))
    served = {"server.address": "0.0.0.0", "server.port": 8765}
    before = {option: config.get_option(option) for option in served}
    try:
        for option, value in served.items():
            config.set_option(option, value)
        at = unlock(instructor(), KEY)
    finally:
        for option, value in before.items():
            config.set_option(option, value)
    assert [c.value for c in at.get("code")] == ["http://192.168.1.20:8765/"]
    [image] = at.get("image")
    [picture] = image.proto.imgs
    assert picture.caption == "Scan to open the lab" and picture.url.endswith(".png")
    assert encoded[-1] == "http://192.168.1.20:8765/" and make_png(encoded[-1]).startswith(b"\x89PNG")
    assert not at.warning or all("listens on" not in w.value for w in at.warning)
