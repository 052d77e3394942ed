"""Part II's default study is the student's own (named and seeded from the nickname or the session); joining
someone's study is a choice that shows whose it is and how many trials it holds, before Start."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from streamlit.testing.v1 import AppTest

from fetal_core import limits, records, search
from pages import keys

ROOT = Path(__file__).resolve().parent.parent


def test_own_study_names_and_seeds_differ_per_student_and_stay_put():
    ada, bob = search.own_study("Ada"), search.own_study("Bob")
    assert ada[0] == "Fetal_Health_Study (Ada)" and bob[0] == "Fetal_Health_Study (Bob)"
    assert ada[1] != bob[1] and ada[1] != 42
    assert search.own_study("Ada") == ada and ada[1] == search.name_seed(ada[0])
    assert all(limits.SEED.low <= seed <= limits.SEED.high for _, seed in (ada, bob))
    assert search.own_study("by hand")[0] == "Fetal_Health_Study (student by hand)"  # never one of class mode's names


def test_the_owner_is_recorded_once():
    study = optuna.create_study(direction="maximize")
    assert records.made_by(study.user_attrs) is None
    records.set_made_by(study, "Ada")
    records.set_made_by(study, "Bob")  # joining does not change it
    assert records.made_by(study.user_attrs) == "Ada"
    assert records.made_by({"made_by": 3}) is None


def part2(url: str, nick: str | None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    if nick:
        at.session_state[keys.NICKNAME] = nick
    at.run()
    at.switch_page("pages/part2_study.py").run()
    assert not at.exception, at.exception
    return at


def value(at: AppTest, key: str):
    return at.session_state[key]


@pytest.fixture
def storage_url(monkeypatch, tmp_path, data_path):
    url = f"sqlite:///{tmp_path}/own.sqlite3"
    monkeypatch.setenv("FETAL_HPO_DATA", str(data_path))
    monkeypatch.setenv("FETAL_HPO_STORAGE", url)
    return url


def test_two_students_get_their_own_default_study_and_seed(storage_url):
    ada, bob = part2(storage_url, "Ada"), part2(storage_url, "Bob")
    assert value(ada, "p2_name") == "Fetal_Health_Study (Ada)"
    assert value(bob, "p2_name") == "Fetal_Health_Study (Bob)"
    assert value(ada, "p2_seed") == search.own_study("Ada")[1] != value(bob, "p2_seed")
    guest1, guest2 = part2(storage_url, None), part2(storage_url, None)  # no nickname: one per session
    assert value(guest1, "p2_name") != value(guest2, "p2_name")
    assert value(guest1, "p2_name").startswith("Fetal_Health_Study (guest ")


def _adas_study(url: str) -> str:
    name = "Fetal_Health_Study (Ada)"
    study = optuna.create_study(study_name=name, storage=url, direction="maximize")
    study.set_user_attr("made_by", "Ada")  # as records.set_made_by writes it
    for v in (80.0, 85.0, 90.0):
        study.add_trial(optuna.trial.create_trial(value=v))
    return name


def test_a_new_study_never_joins_an_existing_one_silently(storage_url):
    name = _adas_study(storage_url)
    bob = part2(storage_url, "Bob")
    bob.text_input(key="p2_name").set_value(name)
    bob.button(key="p2_start").click().run()
    assert not bob.exception, bob.exception
    errors = [e.value for e in bob.error]
    assert errors and "Not started" in errors[0] and "Ada" in errors[0] and "3 trials" in errors[0], errors
    assert len(optuna.load_study(study_name=name, storage=storage_url).trials) == 3


def test_choosing_a_study_shows_whose_it_is_and_its_trials_before_start(storage_url):
    name = _adas_study(storage_url)
    bob = part2(storage_url, "Bob")
    assert value(bob, "p2_name") == "Fetal_Health_Study (Bob)"  # Ada's study exists: Bob's default is still his
    bob.selectbox(key=keys.P2_CHOICE).set_value(name).run()
    assert not bob.exception, bob.exception
    notes = " ".join(c.value for c in bob.caption)
    assert "made by 'Ada'" in notes and "3 trials" in notes, notes
    ada = part2(storage_url, "Ada")
    assert value(ada, "p2_name") == "Fetal_Health_Study (Ada) 2"  # her first one exists: a new one by default
    ada.selectbox(key=keys.P2_CHOICE).set_value(name).run()
    assert "made by you" in " ".join(c.value for c in ada.caption)
