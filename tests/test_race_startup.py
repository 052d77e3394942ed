"""The race says why TPE and random search tie early: TPE's first trials are its random start-up (the same draws
as random search with the same seed), and the trials after it are shown apart."""

from __future__ import annotations

import optuna

from fetal_core.race import RacePlan, RaceRun
from fetal_core.race_analysis import analyze_race
from tests.test_race import add_run

STARTUP = 10  # TPESampler's default n_startup_trials in Optuna 5


def test_a_tie_within_tpes_start_up_says_why() -> None:
    storage = optuna.storages.InMemoryStorage()
    plan = RacePlan("startup", strategies=("tpe", "random"), pruning=(False,), seeds=1, trials=15, epochs=5)
    same = [(80.0 + i, 5) for i in range(8)] + [(87.0, 5)] * 7  # identical start-up, no gain after it
    add_run(storage, plan, RaceRun("tpe", False, 0), same)
    add_run(storage, plan, RaceRun("random", False, 0), same)
    text = " ".join(analyze_race(plan, storage).text)
    assert "tied" in text and "within TPE's random start-up of 10 trials" in text, text
    assert "first 10 trials are its random start-up" in text
    assert "Only the 5 trials after it" in text and "TPE +0.00" in text and "few to separate them" in text


def test_a_race_that_never_leaves_the_start_up_says_it_cannot_tell_them_apart() -> None:
    storage = optuna.storages.InMemoryStorage()
    plan = RacePlan("short", strategies=("tpe", "random"), pruning=(True,), seeds=1, trials=8, epochs=5)
    add_run(storage, plan, RaceRun("tpe", True, 0), [(80.0, 5)] * 8)
    add_run(storage, plan, RaceRun("random", True, 0), [(80.0, 5)] * 8)
    assert "cannot tell TPE from random search" in " ".join(analyze_race(plan, storage).text)


def test_no_start_up_note_without_tpe() -> None:
    storage = optuna.storages.InMemoryStorage()
    plan = RacePlan("norandom", strategies=("random", "gp"), pruning=(True,), seeds=1, trials=12, epochs=5)
    add_run(storage, plan, RaceRun("random", True, 0), [(80.0, 5)] * 12)
    assert "start-up" not in " ".join(analyze_race(plan, storage).text)
