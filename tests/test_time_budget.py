"""A fair share of a class server: every training has a time budget, cut on the clock inside the epoch, and no
network may make one epoch long (the pool's side, a reserved Part I worker and the budget on the workers, is in
tests/test_pool.py)."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from fetal_core import limits
from fetal_core.cli import main
from fetal_core.config import TimeBudget, time_budget
from fetal_core.data import split_dataset
from fetal_core.search import FAIL_REASON, SearchSpace, StudyPlan, run_study
from fetal_core.training import ConfigError, TrainConfig, train

SMALL = SearchSpace(depth=2, min_units=8, max_units=32, min_batch=64, max_batch=128)
# The defect: 8 layers of 1,024 units at batch size 1, 58 s an epoch on a 2-core machine.
HOSTILE = dict(hidden_layers=(1024,) * 8, batch_size=1)


@pytest.fixture(scope="module")
def split(dataset):
    return split_dataset(dataset)


# ---------------------------------------------------------------- the budget in the training loop


def test_a_run_stops_at_its_time_budget_and_keeps_the_epochs_it_finished(split):
    seen = []
    config = TrainConfig(hidden_layers=(64, 64), batch_size=8, epochs=10_000)
    result = train(config, split, seen.append, time_budget=1.0)
    assert result.stopped_early and result.stopped_by_budget == 1.0
    assert 0 < len(result.history) < config.epochs
    assert [m.epoch for m in result.history] == list(range(1, len(result.history) + 1))
    assert seen == result.history  # every kept epoch was reported as it ended
    assert result.to_dict()["stopped_by_budget"] == 1.0


def test_the_budget_cuts_an_epoch_short_instead_of_waiting_for_its_end(split):
    """The clock is read per batch: an epoch of 213 steps on 1.1 M weights ends at the budget, reporting nothing."""
    config = TrainConfig(hidden_layers=(1024, 1024), batch_size=8, epochs=3)
    result = train(config, split, time_budget=0.01)
    assert result.stopped_by_budget == 0.01 and result.stopped_early and result.history == []


def test_without_a_budget_nothing_changes(split):
    result = train(TrainConfig(epochs=3), split)
    assert not result.stopped_early and result.stopped_by_budget is None and len(result.history) == 3


def test_a_trial_over_its_budget_fails_with_its_reason_and_the_study_goes_on(dataset):
    storage = optuna.storages.InMemoryStorage()
    plan = StudyPlan("sqlite://", "budget", trials=2, epochs=10_000, pruner="none", space=SMALL)
    summary = run_study(plan, dataset, storage, time_budget=0.5)
    trials = optuna.load_study(study_name="budget", storage=storage).trials
    assert summary.ran == 2 and not summary.interrupted
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
    for trial in trials:
        reason = trial.user_attrs[FAIL_REASON]
        epochs = len(trial.user_attrs["history"]["epoch"])  # the curve up to the budget is kept
        assert reason == f"stopped by the server's time budget of 0.5 s per trial after epoch {epochs} of 10000"


def test_the_cli_study_honours_the_servers_budget_variable(monkeypatch, capsys, sqlite_url):
    """A local CLI study applies FETAL_HPO_TRIAL_SECONDS when it is set: 2,000 epochs (seconds of training) end
    at a 1 s budget, each trial's line says why."""
    monkeypatch.setenv("FETAL_HPO_TRIAL_SECONDS", "1")
    args = ["study", "--storage", sqlite_url, "--study-name", "cli-budget", "--trials", "2", "--epochs", "2000"]
    assert main([*args, "--pruner", "none", "--depth", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("FAIL") == 2 and out.count("time budget of 1 s per trial after epoch") == 2, out
    trials = optuna.load_study(study_name="cli-budget", storage=sqlite_url).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]


@pytest.mark.parametrize(("value", "seconds"), [("0", None), ("45.5", 45.5), ("86400", 86_400.0), (" 7 ", 7.0)])
def test_the_budget_variables_take_seconds_or_0_for_none(monkeypatch, value, seconds):
    monkeypatch.setenv("FETAL_HPO_TRIAL_SECONDS", value)
    monkeypatch.setenv("FETAL_HPO_RUN_SECONDS", value)
    assert time_budget() == time_budget(defaults=False) == TimeBudget(trial_seconds=seconds, run_seconds=seconds)


def test_unset_budget_variables_give_the_servers_defaults_and_none_to_a_local_cli(monkeypatch):
    monkeypatch.delenv("FETAL_HPO_TRIAL_SECONDS", raising=False)
    monkeypatch.delenv("FETAL_HPO_RUN_SECONDS", raising=False)
    assert time_budget() == TimeBudget(trial_seconds=120.0, run_seconds=300.0)
    assert time_budget(defaults=False) == TimeBudget(trial_seconds=None, run_seconds=None)


@pytest.mark.parametrize("value", ["abc", "-1", "0.5", "inf", "nan", "86401", "1e400"])
def test_a_bad_budget_variable_is_one_clear_error_naming_it(monkeypatch, value):
    monkeypatch.setenv("FETAL_HPO_RUN_SECONDS", value)
    with pytest.raises(ConfigError, match=r"^FETAL_HPO_RUN_SECONDS: .* is not a time budget; use seconds from 1 to"):
        time_budget()


def test_a_bad_budget_variable_stops_the_pool_with_one_line(monkeypatch):
    from fetal_core.pool import PoolError, open_pool

    monkeypatch.setenv("FETAL_HPO_TRIAL_SECONDS", "soon")
    with pytest.raises(PoolError, match="compute pool: FETAL_HPO_TRIAL_SECONDS: 'soon' is not a time budget"):
        open_pool()  # refused before any worker starts


# ---------------------------------------------------------------- the network caps


def test_the_defects_network_is_refused_naming_its_size():
    for batch_size in (1, 2, 100):
        with pytest.raises(ConfigError) as caught:
            TrainConfig(**{**HOSTILE, "batch_size": batch_size})
        assert str(caught.value).startswith("hidden layers 1,024×8 have 7.37 M weights; the lab allows at most 1.2 M")


def test_a_network_that_fits_only_with_a_larger_batch_says_which_batch():
    with pytest.raises(ConfigError, match=r"hidden layers 256×4 .* at batch size 1 .* use a batch size of at least 2"):
        TrainConfig(hidden_layers=(256,) * 4, batch_size=1)
    TrainConfig(hidden_layers=(256,) * 4, batch_size=2)
    with pytest.raises(ConfigError) as caught:
        TrainConfig(hidden_layers=(1024, 512, 16), batch_size=3)
    assert str(caught.value) == (
        "hidden layers 1,024, 512, 16 (0.556 M weights) at batch size 3 update 315 M weights an epoch (567 steps); "
        "the lab allows at most 250 M: use a batch size of at least 4 or a smaller network."
    )


@pytest.mark.parametrize(
    ("layers", "batch_size"),
    [((1024,), 1), ((1024, 1024), 8), ((512,) * 4, 8), ((128,) * 8, 1), ((384,) * 8, 9), ((15, 10), 100)],
)
def test_the_caps_leave_wide_deep_and_small_batch_networks(layers, batch_size):
    TrainConfig(hidden_layers=layers, batch_size=batch_size)
    weights = limits.network_weights(layers)
    assert weights <= limits.MAX_WEIGHTS and weights * limits.steps_per_epoch(batch_size) <= limits.MAX_WEIGHT_STEPS


def test_the_smallest_batch_named_is_the_smallest_that_fits():
    for layers in [(256,) * 4, (1024, 1024), (700, 700), (300,) * 8]:
        weights = limits.network_weights(layers)
        fits = [b for b in range(1, 1701) if weights * limits.steps_per_epoch(b) <= limits.MAX_WEIGHT_STEPS]
        with pytest.raises(ConfigError, match=f"use a batch size of at least {fits[0]:,} "):
            TrainConfig(hidden_layers=layers, batch_size=fits[0] - 1)
        TrainConfig(hidden_layers=layers, batch_size=fits[0])


def test_a_study_whose_largest_network_is_too_big_is_refused_before_it_starts():
    space = SearchSpace(min_layers=1, max_layers=8, min_units=8, max_units=1024, min_batch=1, max_batch=2048)
    with pytest.raises(ConfigError, match=r"^search space: its largest network 1,024×8 have 7.37 M weights"):
        StudyPlan("sqlite://", "wide", space=space)
    fixed = SearchSpace(depth=2, max_units=1024, min_batch=4)
    with pytest.raises(ConfigError, match="use a batch size of at least 8"):
        StudyPlan("sqlite://", "wide", space=fixed)
    StudyPlan("sqlite://", "default", space=SearchSpace())  # the notebook's space fits
    StudyPlan("sqlite://", "wide enough", space=SearchSpace(depth=2, max_units=1024, min_batch=8))


def test_the_cli_refuses_the_defects_network_in_one_line(capsys):
    layers = [str(u) for u in HOSTILE["hidden_layers"]]
    assert main(["train", "--layers", *layers, "--batch-size", "1", "--epochs", "1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "7.37 M weights; the lab allows at most 1.2 M" in err


def test_a_link_with_a_network_over_the_caps_keeps_the_forms_network_with_a_note():
    from fetal_core.manual import config_from_query

    config, notes = config_from_query({"hl": ",".join(["1024"] * 8), "ep": "7"}, TrainConfig())
    assert config.hidden_layers == TrainConfig().hidden_layers and config.epochs == 7
    assert len(notes) == 1 and "7.37 M weights" in notes[0]
