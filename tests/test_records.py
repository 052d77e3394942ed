"""The study record (fetal_core.records): state groups, best and best so far, every stored attr read back as
written, hostile attrs read as None, our median rule against Optuna's, and one vocabulary in the code."""

from __future__ import annotations

import math
import random
import re
import warnings
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from fetal_core import records
from fetal_core.pruning import MEDIAN_RULE, MedianRule, make_pruner
from fetal_core.race import RacePlan
from fetal_core.search import SearchSpace, StudyPlan, run_study

ROOT = Path(__file__).resolve().parent.parent


def trial(number: int, state: TrialState, value: float | None = None, steps: dict | None = None) -> FrozenTrial:
    made = create_trial(
        state=state,
        value=value if state == TrialState.COMPLETE else None,
        params={"x": 0.5},
        distributions={"x": FloatDistribution(0, 1)},
        intermediate_values=steps or {},
    )
    made.number = number
    return made


# ---------------------------------------------------------------- state groups


def test_state_groups_partition_every_trial_state_and_ended_is_optunas_finished():
    groups = (records.FINISHED, records.FAILED, records.LIVE)
    every = [state for group in groups for state in group]
    assert sorted(every) == sorted(TrialState) and len(every) == len(set(every))  # each state in exactly one
    assert set(records.ENDED) == {state for state in TrialState if state.is_finished()}
    assert set(records.FINISHED) == {TrialState.COMPLETE, TrialState.PRUNED}  # what a target counts
    trials = [
        trial(0, TrialState.COMPLETE, 80),
        trial(1, TrialState.PRUNED),
        trial(2, TrialState.FAIL),
        trial(3, TrialState.RUNNING),
        trial(4, TrialState.WAITING),
    ]
    assert [t.number for t in records.in_states(trials, records.ENDED)] == [0, 1, 2]
    assert (
        records.count(trials, records.FINISHED),
        records.count(trials, records.FAILED),
        records.count(trials, records.LIVE),
    ) == (2, 1, 2)


# ---------------------------------------------------------------- best and best so far


def test_best_trial_and_best_so_far_use_completed_values_only():
    trials = [
        trial(0, TrialState.PRUNED, steps={1: 99.0}),  # a pruned trial's high epoch is not a result
        trial(1, TrialState.COMPLETE, 85.0),
        trial(2, TrialState.FAIL),
        trial(3, TrialState.COMPLETE, 80.0),
        trial(4, TrialState.COMPLETE, 91.0),
        trial(5, TrialState.COMPLETE, 91.0),  # a tie: the earlier trial is the best
        trial(6, TrialState.RUNNING, steps={1: 99.5}),
    ]
    assert records.best_trial(trials).number == 4
    assert records.best_trial(list(reversed(trials))).number == 4
    assert records.best_trial(trials, maximize=False).number == 3
    assert records.best_trial(trials[:1]) is None and records.best_trial([]) is None
    curve = records.best_so_far(trials)
    assert math.isnan(curve[0]) and curve[1:] == [85.0, 85.0, 85.0, 91.0, 91.0, 91.0]
    assert records.best_so_far(trials, maximize=False)[1:] == [85.0, 85.0, 80.0, 80.0, 80.0, 80.0]
    assert [t.number for t in records.completed(trials)] == [1, 3, 4, 5]


# ---------------------------------------------------------------- attrs: what is written reads back


def test_a_study_run_records_everything_the_pages_read(dataset):
    storage = optuna.storages.InMemoryStorage()
    space = SearchSpace(depth=2, min_units=8, max_units=16, min_batch=64, max_batch=128)
    plan = StudyPlan(
        storage_url="sqlite:///:memory:",
        study_name="recorded",
        trials=2,
        epochs=2,
        sampler="random",
        pruner="none",
        seed=7,
        space=space,
    )
    run_study(plan, dataset, storage)
    study = optuna.load_study(study_name="recorded", storage=storage)
    made = records.study_description(study.user_attrs)
    assert (made.sampler, made.pruner, made.seed, made.epochs, made.standardize) == ("random", "none", 7, 2, False)
    assert SearchSpace.from_dict(made.search_space) == space and made.created_by == "fetal_core"
    assert records.target_trials(study.user_attrs) is None and records.run_started(study.user_attrs) is None

    records.describe_study(study, StudyPlan(storage_url="x", study_name="other", sampler="tpe").description())
    assert records.study_description(study.user_attrs).sampler == "random"  # a study keeps how it was made
    records.set_target_trials(study, 12)
    records.set_run_started(study, 1_700_000_000.5)
    assert records.target_trials(study.user_attrs) == 12
    assert records.run_started(storage.get_study_user_attrs(study._study_id)) == 1_700_000_000.5

    for t in study.trials:
        config = records.trial_config(t)
        assert config["epochs"] == 2 and records.hidden_layers(t) == config["hidden_layers"]
        assert records.trial_history(t)["epoch"] == [1, 2]
        assert set(records.trial_metrics(t)) >= {"balanced_accuracy", "confusion_matrix"}
    assert all(records.other_trial_attrs(t) == {} for t in study.trials)


def test_race_attrs_say_which_run_a_study_is():
    study = optuna.create_study(direction="maximize")
    assert not records.is_race_study(study.user_attrs) and records.race_run(study.user_attrs) is None
    plan = RacePlan("lesson", strategies=("tpe", "grid"), reduced=True)
    records.mark_race_study(study, plan.to_dict(), records.RaceRunRecord("grid", True, 2), 9)
    records.mark_race_study(study, {"name": "other"}, records.RaceRunRecord("tpe", False, 0), 1)  # once only
    assert RacePlan.from_dict(records.race_plan(study.user_attrs)) == plan
    assert records.race_run(study.user_attrs) == ("grid", True, 2)
    assert records.target_trials(study.user_attrs) == 9


@pytest.mark.parametrize(
    "attrs",
    [
        {
            "target_trials": "many",
            "run_started": "now",
            "epochs": True,
            "seed": 1.5,
            "sampler": 3,
            "race": [1],
            "race_run": {"strategy": "tpe", "pruned": 1, "seed": "0"},
            "search_space": "all",
        },
        {
            "target_trials": float("nan"),
            "run_started": float("inf"),
            "epochs": float("nan"),
            "race": {"name": 1},
            "race_run": {"strategy": "tpe", "pruned": True, "seed": True},
        },
        {"target_trials": -3, "epochs": 0, "race_run": "tpe"},
        None,
    ],
)
def test_attrs_of_the_wrong_type_read_as_none(attrs):
    """A study from an uploaded file or another tool may hold anything under our keys."""
    made = records.study_description(attrs)
    assert (made.sampler, made.seed, made.epochs, made.search_space) == (None, None, None, None)
    assert records.target_trials(attrs) is None and records.run_started(attrs) is None
    assert records.race_plan(attrs) is None and records.race_run(attrs) is None


def test_trial_attrs_of_the_wrong_type_read_as_none():
    odd = trial(0, TrialState.COMPLETE, 80.0)
    for key, value in {"config": [15, 10], "history": {"val_accuracy": [1.0]}, "metrics": 0.5}.items():
        odd.set_user_attr(key, value)
    assert records.trial_config(odd) is None and records.hidden_layers(odd) is None
    assert records.trial_history(odd) is None and records.trial_metrics(odd) is None
    odd.set_user_attr("config", {"hidden_layers": ["wide"]})
    assert records.hidden_layers(odd) is None


@pytest.mark.parametrize(
    ("stored", "read"),
    [
        (3, 3),
        (2.5, 2.5),
        (-1e300, -1e300),
        (math.inf, None),
        (-math.inf, None),
        (math.nan, None),
        (10**400, None),  # an int no float can hold
        (True, None),
        ("3", None),
        ([3], None),
        (None, None),
    ],
)
def test_a_stored_number_reads_as_a_finite_number_or_none(stored, read):
    assert records.number(stored) == read
    assert type(records.number(stored)) is type(read)


def test_a_stored_time_reads_in_either_iso_format():
    """SQLite hands out text, with or without a fraction of a second; PostgreSQL hands out datetimes."""
    from datetime import datetime

    assert records.timestamp("2025-01-01 09:00:00") == datetime(2025, 1, 1, 9)
    assert records.timestamp("2025-01-01 09:00:00.250000") == datetime(2025, 1, 1, 9, 0, 0, 250_000)
    assert records.timestamp("2025-01-01T10:00:00+01:00") == datetime(2025, 1, 1, 9)  # naive UTC, as Optuna's
    assert records.timestamp(datetime(2025, 1, 1, 9)) == datetime(2025, 1, 1, 9)
    for odd in ("yesterday", "", "9" * 10_000, 1735722000, None, math.inf):
        assert records.timestamp(odd) is None


def test_a_stored_value_reads_as_one_table_cell():
    assert [records.cell(v) for v in (None, True, 4, 2.5, "text")] == [None, True, 4, 2.5, "text"]
    assert records.cell(math.inf) is None and records.cell(math.nan) is None
    assert records.cell({"deep": [1, math.nan]}) == "{'deep': [1, nan]}"
    long = records.cell("x" * 10_000)
    assert len(long) == records.CELL_CHARS and long.endswith("…")


@pytest.mark.parametrize(
    "layers",
    [[math.inf, 32], [math.nan], ["64"], [True, 8], [0, 8], [-4], [64.5], [], "64-32", None, {"0": 64}],
)
def test_odd_layer_widths_read_as_none(layers):
    """JSON Infinity in hidden_layers once broke the Results page's Trials tab (int(inf): OverflowError)."""
    odd = trial(0, TrialState.COMPLETE, 80.0)
    odd.set_user_attr("config", {"hidden_layers": layers})
    assert records.layer_widths(layers) is None
    assert records.hidden_layers(odd) is None


def test_whole_number_layer_widths_read_as_ints():
    assert records.layer_widths([64, 32.0]) == [64, 32]
    assert all(type(w) is int for w in records.layer_widths([64, 32.0]))


def test_a_stored_history_reads_as_columns_of_finite_numbers_or_none():
    odd = trial(0, TrialState.COMPLETE, 80.0)
    odd.set_user_attr(
        "history",
        {
            "epoch": [1, 2, 3],
            "val_accuracy": [math.nan, math.inf, 70.5],
            "val_loss": ["n/a", {"x": 1}, 0.5],
            "seconds": [0.1, 0.2],  # not one value per epoch: left out
            "note": "hand-edited",
        },
    )
    assert records.trial_history(odd) == {
        "epoch": [1, 2, 3],
        "val_accuracy": [None, None, 70.5],
        "val_loss": [None, None, 0.5],
    }


def test_a_stored_metric_reads_as_a_finite_number_or_none():
    odd = trial(0, TrialState.COMPLETE, 80.0)
    odd.set_user_attr("metrics", {"balanced_accuracy": math.inf, "seconds": "slow", "other": 2})
    assert records.trial_metric(odd, "balanced_accuracy") is None and records.trial_metric(odd, "seconds") is None
    assert records.trial_metric(odd, "other") == 2 and records.trial_metric(odd, "missing") is None
    assert records.trial_metric(trial(1, TrialState.PRUNED), "seconds") is None


# ---------------------------------------------------------------- our median rule is Optuna's


def _optunas_decision(pruner, completed: list[FrozenTrial], reported: dict[int, float], maximize: bool) -> bool:
    study = optuna.create_study(direction="maximize" if maximize else "minimize", pruner=pruner)
    study.add_trials(completed)
    running = create_trial(
        state=TrialState.RUNNING,
        params={"x": 0.5},
        distributions={"x": FloatDistribution(0, 1)},
        intermediate_values=reported,
    )
    return pruner.prune(study, running)


@pytest.mark.parametrize("maximize", [True, False])
def test_median_rule_decides_as_optunas_median_pruner(maximize):
    """Many small made-up studies (NaNs, missing epochs, ties, too few trials): the same decision every time."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    rng = random.Random(5)
    outcomes = set()

    def accuracy() -> float:  # whole numbers, so that ties with the median occur; now and then NaN
        return math.nan if rng.random() < 0.1 else float(rng.randint(60, 90))

    for case in range(300):
        rule = MedianRule(n_startup_trials=rng.choice([0, 1, 3, 5]), n_warmup_steps=rng.choice([0, 0, 2]))
        completed = []
        for number in range(rng.randint(0, 8)):
            epochs = range(1, rng.randint(1, 6) + 1)
            steps = {s: accuracy() for s in epochs if rng.random() < 0.9}  # some epochs missing
            completed.append(trial(number, TrialState.COMPLETE, float(rng.randint(60, 90)), steps))
        reported = {s: accuracy() for s in range(1, rng.randint(1, 6) + 1)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # NumPy on an all-NaN epoch, in both
            ours = rule.prunes(reported, completed, maximize)
            theirs = _optunas_decision(rule.optuna_pruner(), completed, reported, maximize)
        assert ours == theirs, (case, rule, completed, reported)
        outcomes.add(ours)
    assert outcomes == {True, False}, "the cases must exercise both decisions"


def test_the_labs_median_pruner_is_the_rules_and_the_notebooks():
    """make_pruner("median"), MEDIAN_RULE and the notebook's ``MedianPruner()`` (Optuna's defaults) agree."""
    pruner = make_pruner("median")
    assert isinstance(pruner, optuna.pruners.MedianPruner)
    decisions = set()
    for n_completed in range(8):  # before, at and after the start-up trials
        completed = [trial(n, TrialState.COMPLETE, 80.0, {1: 70.0 + n, 2: 80.0}) for n in range(n_completed)]
        for reported in ({1: 71.0}, {1: 73.0}, {1: 71.0, 2: 79.0}, {1: 90.0, 2: 10.0}):
            ours = MEDIAN_RULE.prunes(reported, completed)
            assert ours == _optunas_decision(pruner, completed, reported, True), (n_completed, reported)
            assert ours == _optunas_decision(optuna.pruners.MedianPruner(), completed, reported, True)
            decisions.add((n_completed, ours))
    assert {ours for _, ours in decisions} == {True, False}


# ---------------------------------------------------------------- one vocabulary in the code


def _code() -> dict[str, str]:
    files = [
        *sorted((ROOT / "fetal_core").glob("*.py")),
        *sorted((ROOT / "pages").glob("*.py")),
        ROOT / "app.py",
        ROOT / "serve.py",
    ]
    return {str(path.relative_to(ROOT)): path.read_text() for path in files}


def test_no_private_optuna_ids_and_user_attrs_only_through_records():
    for name, text in _code().items():
        assert not re.search(r"\._(study|trial)_id\b", text), f"{name} uses Optuna's private ids"
        if name != "fetal_core/records.py":
            found = re.findall(r"set_user_attr\(|user_attrs\.get\(|user_attrs\[|in \w+\.user_attrs", text)
            assert not found, f"{name} reads or writes user attrs itself: {found}"


def test_session_state_keys_are_constants():
    """Pages use pages.keys for every key they read or write themselves; a widget's own key (p2_* on Part II,
    part1_* on Part I) may stay beside its widget, on its own page only."""
    own = {"pages/part2_study.py": "p2_", "pages/part1_manual.py": "part1_", "pages/manual_support.py": "part1_"}
    for name, text in _code().items():
        if name.startswith("fetal_core/"):  # the engine never imports Streamlit
            continue
        allowed = f"(?!{own[name]})" if name in own else ""
        literal = re.compile(rf'(?:session_state|\bstate)(?:\.(?:get|pop|setdefault)\(|\[)\s*"{allowed}')
        assert not literal.findall(text), f"{name} uses a session_state key literal"


def test_pages_hold_only_streamlit_code():
    """Code that draws nothing lives in fetal_core (tested on its own); pages/ holds pages and their widgets."""
    plain_modules = {"pages/__init__.py", "pages/keys.py"}  # the package marker and the session-state keys
    for name, text in _code().items():
        if name.startswith("pages/") and name not in plain_modules:
            assert "import streamlit as st" in text, f"{name} draws nothing: move it to fetal_core"
