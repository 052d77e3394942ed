"""Part I under a lesson's presets, in Streamlit's AppTest: settings handed over by Part II or Results, a link, or
kept in the session from an earlier lesson are moved into the lesson's ranges with one line per changed setting;
never a widget's "value above max" error page (a 30-epoch trial under a 20-epoch cap once gave one on every visit).
"""

from __future__ import annotations

import dataclasses

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from fetal_core.lesson import Presets, current_lesson, save_lesson
from fetal_core.manual import fit_to_lesson
from fetal_core.storage import open_storage
from fetal_core.training import ConfigError, TrainConfig
from tests.conftest import ROOT, shown

PART1, HOME = "pages/part1_manual.py", "pages/home.py"
LESSON = Presets(
    {"optimizer": "fixed"}, {"optimizer": "SGD"}, {"batch_size": (8, 64), "learning_rate": (1e-3, 0.1)}, 20
)
TRIAL = TrainConfig(hidden_layers=(40, 20), batch_size=128, optimizer="Adam", learning_rate=0.5, epochs=30)


@pytest.fixture
def lesson_env(monkeypatch, tmp_path, data_path) -> str:
    """A server with the instructor key whose current lesson has ``LESSON``'s presets."""
    url = f"sqlite:///{tmp_path}/app.sqlite3"
    monkeypatch.setenv("FETAL_HPO_DATA", str(data_path))
    monkeypatch.setenv("FETAL_HPO_STORAGE", url)
    monkeypatch.setenv("FETAL_HPO_INSTRUCTOR_KEY", "a long enough instructor key")
    monkeypatch.chdir(ROOT)
    set_presets(url, LESSON)
    return url


def set_presets(url: str, presets: Presets) -> None:
    storage = open_storage(url)
    lesson = current_lesson(storage)
    save_lesson(storage, dataclasses.replace(lesson, presets=presets.to_dict()), make_current=True)
    st.cache_data.clear()  # Part I reads the presets through a 2 s cache


def ran(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def warnings(at: AppTest) -> list[str]:
    return [shown(w.value) for w in at.warning]


def test_settings_handed_over_above_the_lessons_cap_load_inside_it_with_a_line_each(lesson_env):
    at = ran(AppTest.from_file(str(ROOT / "app.py"), default_timeout=60))
    at.switch_page(PART1)  # the session has seen this lesson's presets: its widgets are set up for them
    ran(at)
    at.switch_page(HOME)
    ran(at)
    at.session_state["load_into_part1"] = TRIAL.to_dict()  # Part II's or Results' "Use these settings in Part I"
    at.switch_page(PART1)
    ran(at)
    assert any("Loaded the settings from Part II" in s.value for s in at.success)
    epochs = at.slider(key="part1_epochs_slider")
    assert (epochs.value, epochs.max) == (20, 20)
    assert at.slider(key="part1_batch_slider").value == 64
    rates = at.select_slider(key="part1_lr")  # the log grid inside the lesson's range, ends included
    assert rates.value == 0.1 and (float(rates.options[0]), float(rates.options[-1])) == (1e-3, 0.1)
    assert warnings(at) == [
        "batch size 128 → 64: this lesson allows a batch size of 8 to 64.",
        "optimiser Adam → SGD: this lesson fixes the optimiser at SGD.",
        "learning rate 0.5 → 0.1: this lesson allows a learning rate of 1e-3 to 0.1.",
        "epochs 30 → 20: this lesson caps epochs at 20.",
    ]
    assert at.session_state["part1_config"]["epochs"] == 20  # what a revisit starts from
    for page in (HOME, PART1, HOME, PART1):  # revisits: the settings stay inside, said once
        at.switch_page(page)
        ran(at)
    assert at.slider(key="part1_epochs_slider").value == 20 and warnings(at) == []
    at.toggle(key="part1_exact").set_value(True)
    ran(at)
    box = at.number_input(key="part1_epochs")  # takes the lab's range; Train checks the lesson's and says why
    assert box.value == 20 and box.help == "This lesson allows 1 to 20 epochs."


def test_a_link_above_the_cap_loads_inside_it_with_a_line(lesson_env):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params.update({"ep": "30", "bs": "16"})
    ran(at)
    at.switch_page(PART1)
    ran(at)
    assert at.slider(key="part1_epochs_slider").value == 20 and at.slider(key="part1_batch_slider").value == 16
    assert warnings(at) == ["epochs 30 → 20: this lesson caps epochs at 20."]  # the untouched defaults move quietly


def test_settings_kept_from_an_earlier_lesson_move_into_a_narrower_one(lesson_env):
    set_presets(lesson_env, Presets())  # a lesson without presets: 80 epochs are allowed
    at = ran(AppTest.from_file(str(ROOT / "app.py"), default_timeout=60))
    at.switch_page(PART1)
    ran(at)
    at.session_state["part1_config"] = TRIAL.to_dict() | {"epochs": 80}  # as kept after a Train
    at.switch_page(HOME)
    ran(at)
    set_presets(lesson_env, LESSON)  # the instructor narrows the lesson meanwhile
    at.switch_page(PART1)
    ran(at)
    assert at.slider(key="part1_epochs_slider").value == 20
    assert "epochs 80 → 20: this lesson caps epochs at 20." in warnings(at)


def test_fit_to_lesson_says_each_change_once_and_never_raises():
    fitted, notes = fit_to_lesson(TRIAL, LESSON)
    assert (fitted.epochs, fitted.batch_size, fitted.optimizer, fitted.learning_rate) == (20, 64, "SGD", 0.1)
    assert len(notes) == 4 and notes[-1] == "epochs 30 → 20: this lesson caps epochs at 20."
    assert fit_to_lesson(fitted, LESSON) == (fitted, [])  # inside already: nothing to say
    narrow = Presets(ranges={"units": (8, 16), "layers": (1, 2)})
    fitted, [note] = fit_to_lesson(dataclasses.replace(TRIAL, hidden_layers=(40, 20, 10)), narrow)
    assert fitted.hidden_layers == (16, 16)
    assert note == "hidden layers 40, 20, 10 → 16, 16: this lesson allows 1 to 2 hidden layers of 8 to 16 units."
    defaults, quiet = fit_to_lesson(TrainConfig(), LESSON, defaults=TrainConfig())
    assert defaults.epochs == 20 and quiet == []  # the notebook's defaults are nobody's choice: moved quietly


def test_a_range_of_one_value_is_shown_as_that_value_and_trains(lesson_env):
    """A slider cannot have equal ends (Streamlit raises): such a range is shown as text and used."""
    set_presets(lesson_env, Presets(ranges={"batch_size": (32, 32), "layers": (2, 2)}, max_epochs=1))
    at = ran(AppTest.from_file(str(ROOT / "app.py"), default_timeout=60))
    at.switch_page(PART1)
    ran(at)
    captions = [c.value for c in at.caption]
    for line in ("Batch size: 32", "Number of hidden layers: 2", "Epochs: 1"):
        assert f"{line} (the only value this lesson allows)" in captions
    at.button(key="part1_train").click()
    ran(at)
    config = at.session_state["manual_runs"][-1]["config"]
    assert (config["batch_size"], len(config["hidden_layers"]), config["epochs"]) == (32, 2, 1)


class Tight(Presets):
    """A lesson whose ranges hold each setting of ``TRIAL`` but not all of them together."""

    def apply(self, config: TrainConfig) -> TrainConfig:
        if config.hidden_layers != (8,):
            raise ConfigError("hidden layers 40, 20 at batch size 64: too much work an epoch.")
        return config


def test_settings_that_fit_the_ranges_only_one_by_one_get_the_lessons_smallest_network():
    fitted, [note] = fit_to_lesson(TRIAL, Tight(ranges={"units": (8, 64)}))
    assert fitted.hidden_layers == (8,)
    assert note.startswith("These settings do not fit this lesson's ranges together (hidden layers 40, 20 at ")


def test_the_caption_lists_what_the_lesson_fixes_and_caps(lesson_env):
    set_presets(lesson_env, dataclasses.replace(LESSON, visibility={"optimizer": "fixed", "seed": "hidden"}))
    at = ran(AppTest.from_file(str(ROOT / "app.py"), default_timeout=60))
    at.switch_page(PART1)
    ran(at)
    [caption] = [shown(c.value) for c in at.caption if "this lesson" in c.value]
    assert caption == (
        "Fixed for this lesson by your instructor: optimiser SGD; seed 42 (not shown). "
        "Allowed in this lesson: epochs at most 20; batch size 8 to 64; learning rate 1e-3 to 0.1."
    )


def test_a_value_outside_the_lessons_range_is_an_error_next_to_train(lesson_env):
    """Typed in exact mode, 3000 epochs under a 20-epoch cap: the box takes it and Train says why it refuses."""
    at = ran(AppTest.from_file(str(ROOT / "app.py"), default_timeout=60))
    at.switch_page(PART1)
    ran(at)
    at.toggle(key="part1_exact").set_value(True)
    ran(at)
    at.number_input(key="part1_epochs").set_value(3000)
    at.button(key="part1_train").click()
    ran(at)
    assert [shown(e.value) for e in at.error] == ["Not trained: epochs: 3000 is outside this lesson's range 1 to 20."]
    assert "manual_runs" not in at.session_state or not at.session_state["manual_runs"]


def test_presets_changed_while_part1_is_open_move_its_widgets_and_the_run_says_so(lesson_env):
    """The instructor changes the presets while a student's Part I is open: its next run (the page's check every
    second) sets the widgets up for them, and a Train at that moment says in one line what the presets changed."""
    set_presets(lesson_env, Presets())
    at = ran(AppTest.from_file(str(ROOT / "app.py"), default_timeout=60))
    at.switch_page(PART1)
    ran(at)
    at.slider(key="part1_epochs_slider").set_value(2)  # the student's choices, not trained yet
    assert at.segmented_control(key="part1_optimizer").value == "Adam"
    set_presets(lesson_env, Presets({"optimizer": "fixed"}, {"optimizer": "SGD"}, {}, 1))
    at.button(key="part1_train").click()
    ran(at)
    assert "part1_optimizer" not in [w.key for w in at.segmented_control]
    assert "Epochs: 1 (the only value this lesson allows)" in [c.value for c in at.caption]
    [note] = [shown(i.value) for i in at.info if i.value.startswith("Trained with")]
    assert note == (
        "Trained with this lesson's presets: optimiser Adam → SGD: this lesson fixes the optimiser at SGD; "
        "epochs 2 → 1: this lesson caps epochs at 1."
    )
    config = at.session_state["manual_runs"][-1]["config"]
    assert (config["optimizer"], config["epochs"]) == ("SGD", 1)
