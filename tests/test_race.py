"""The strategy race: plan validation, real tiny races on the compute pool, stop/resume, grid coverage,
repeatability, and the analysis checked against numbers stored in (or written to) the storage."""

from __future__ import annotations

import itertools
import json
import math
import time

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from fetal_core import race as race_module
from fetal_core import review
from fetal_core.cli import main
from fetal_core.race import (
    REDUCED_SPACE,
    RacePlan,
    RaceRun,
    grid_size,
    list_races,
    load_plan,
    prepare_race,
    race_progress,
    start_race,
    stored_trials,
)
from fetal_core.race_analysis import analyze_race, table_rows
from fetal_core.search import run_study
from fetal_core.storage import open_storage
from fetal_core.training import ConfigError

TINY = dict(strategies=("tpe", "random"), pruning=(True,), seeds=2, trials=4, epochs=3)


def wait_for(workers, timeout: float = 240.0) -> None:
    """Renew the leases (as the page and the CLI do) until every worker has exited."""
    deadline = time.monotonic() + timeout
    while any(w.alive() for w in workers):
        if time.monotonic() > deadline:
            for w in workers:
                w.stop()
            pytest.fail(f"race workers still running after {timeout:.0f} s")
        for w in workers:
            w.renew()
        time.sleep(0.2)
    for w in workers:
        assert w.error is None, w.error


def race_trials(storage, plan: RacePlan) -> dict[str, list]:
    return {
        s.study_name: optuna.load_study(study_name=s.study_name, storage=storage).get_trials()
        for s in storage.get_all_studies()
        if s.study_name.startswith(f"race:{plan.name}:")
    }


# ---------------------------------------------------------------- plan


def test_plan_names_runs_and_cost() -> None:
    plan = RacePlan("lesson 1", ("tpe", "grid"), (True, False), seeds=3, trials=20, epochs=30, reduced=True)
    runs = plan.runs()
    assert len(runs) == 2 * 2 * 3
    assert runs[0].study_name("lesson 1") == "race:lesson 1:tpe:pruned:seed0"
    assert RaceRun("grid", False, 2).study_name("x") == "race:x:grid:full:seed2"
    assert plan.estimated_epochs == 12 * 20 * 30  # the grid (3^5 points) is larger than 20 trials
    assert RacePlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    small_grid = RacePlan("g", strategies=("grid",), trials=50, epochs=2, grid_points=2, seeds=1, reduced=True)
    assert grid_size(REDUCED_SPACE, 2) == 2**5
    assert small_grid.estimated_epochs == 32 * 2  # never more trials than grid points


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(name="a:b"), "without ':'"),
        (dict(name="  "), "give the race a name"),
        (dict(name="r", strategies=()), "at least one strategy"),
        (dict(name="r", strategies=("tpe", "bayes")), "bayes"),
        (dict(name="r", pruning=()), "pruning"),
        (dict(name="r", seeds=0), "seeds: 0"),
        (dict(name="r", trials=5000), "trials: 5000"),
        (dict(name="r", strategies=("grid",)), "grid needs the reduced search space"),
    ],
)
def test_plan_rejects_bad_settings_with_one_clear_error(settings, message) -> None:
    with pytest.raises(ConfigError, match=message):
        RacePlan(**settings)


def test_a_race_advances_all_its_runs_together_on_the_pool(sqlite_url, dataset, pool) -> None:
    """One trial per run at a time, the run with the fewest trials next: after the first round every run
    has one trial, and no run is ever two trials ahead of another."""
    plan = RacePlan("together", strategies=("tpe", "random"), pruning=(True, False), seeds=1, trials=3, epochs=2)
    storage = open_storage(sqlite_url)
    [job] = start_race(plan, sqlite_url, dataset, storage, pool)
    spreads = []
    while job.alive():
        job.renew()
        trials = {row.name: row.trials for row in review.list_studies(storage)}  # one query: a consistent count
        counts = [trials.get(run.study_name("together"), 0) for run in plan.runs()]
        spreads.append((max(counts) - min(counts), counts))
        pool.wait(job, 0.05)
    assert job.error is None, job.error
    assert race_progress(plan, storage).complete
    assert max(spreads)[0] <= 2, max(spreads)  # one run may start its next trial while another's is created
    starts = sorted(
        (t.datetime_start, run.label) for run in plan.runs() for t in stored_trials(storage, run.study_name("together"))
    )
    first_round = {label for _, label in starts[: len(plan.runs())]}
    assert first_round == {run.label for run in plan.runs()}, "a run got a second trial before others got one"


# ---------------------------------------------------------------- a real tiny race


@pytest.fixture(scope="module")
def tiny_race(tmp_path_factory, dataset, pool):
    """2 strategies x 2 seeds x 4 trials x 3 epochs on the compute pool."""
    url = f"sqlite:///{tmp_path_factory.mktemp('race')}/race.sqlite3"
    storage = open_storage(url)
    plan = RacePlan("tiny", **TINY)
    workers = start_race(plan, url, dataset, storage, pool)
    assert len(workers) == 1
    wait_for(workers)
    return url, storage, plan


def test_tiny_race_stores_one_named_study_per_run(tiny_race) -> None:
    _, storage, plan = tiny_race
    trials = race_trials(storage, plan)
    assert sorted(trials) == sorted(run.study_name("tiny") for run in plan.runs())
    assert len(trials) == 4
    for name, study_trials in trials.items():
        states = [t.state for t in study_trials]
        assert len(states) == 4 and set(states) <= {TrialState.COMPLETE, TrialState.PRUNED}, (name, states)
        attrs = optuna.load_study(study_name=name, storage=storage).user_attrs
        assert RacePlan.from_dict(attrs["race"]) == plan
        assert name.endswith(f"seed{attrs['race_run']['seed']}")
    assert list_races(storage) == ["tiny"] and load_plan("tiny", storage) == plan
    assert race_progress(plan, storage).complete


def test_tiny_race_reloads_without_training(tiny_race, monkeypatch, dataset, pool) -> None:
    url, storage, plan = tiny_race

    def no_training(*args, **kwargs):
        raise AssertionError("a finished race must not train again")

    monkeypatch.setattr("fetal_core.search.train", no_training)
    monkeypatch.setattr("fetal_core.training.train", no_training)
    before = {name: len(t) for name, t in race_trials(storage, plan).items()}
    reopened = open_storage(url)  # as a new session would
    assert load_plan("tiny", reopened) == plan
    assert prepare_race(plan, url, reopened) == []
    assert start_race(plan, url, dataset, reopened, pool) == []  # nothing to run, nothing queued
    analysis = analyze_race(plan, reopened)
    assert len(analysis.runs) == 4 and analysis.target is not None
    assert {name: len(t) for name, t in race_trials(reopened, plan).items()} == before


def test_tiny_race_summary_matches_the_stored_numbers(tiny_race) -> None:
    _, storage, plan = tiny_race
    analysis = analyze_race(plan, storage)
    stored = race_trials(storage, plan)
    for row in analysis.runs.itertuples():
        trials = stored[row.study]
        complete = [t.value for t in trials if t.state == TrialState.COMPLETE]
        assert row.best == pytest.approx(max(complete))
        assert row.epochs == sum(len(t.intermediate_values) for t in trials)
        assert row.trials == 4
    for label_row in analysis.table:
        bests = analysis.runs[analysis.runs.label == label_row["label"]].best
        assert label_row["median_best"] == pytest.approx(float(np.median(bests)))
        last = analysis.by_trial[analysis.by_trial.label == label_row["label"]].iloc[-1]
        assert last.trials == 4 and last["median"] == pytest.approx(float(np.median(bests)))
    # The target is the highest level every strategy's median run reached, and the text names it.
    assert analysis.target == pytest.approx(math.floor(min(r["median_best"] for r in analysis.table) * 10) / 10)
    assert f"{analysis.target:.1f}%" in analysis.text[0]
    # Sampled points are the stored parameters.
    assert len(analysis.samples) == 16
    first = analysis.samples.iloc[0]
    stored_first = {t.number: t for t in stored[plan.runs()[0].study_name("tiny")]}[int(first.trial)]
    assert first.learning_rate == stored_first.params["learning_rate"]


def test_cli_race_reads_a_finished_race_and_rejects_other_settings(tiny_race, capsys, monkeypatch) -> None:
    url, storage, plan = tiny_race
    monkeypatch.setattr("fetal_core.search.train", lambda *a, **k: pytest.fail("the CLI retrained"))
    args = [
        "race",
        "--name",
        "tiny",
        "--strategies",
        "tpe",
        "random",
        "--pruning",
        "on",
        "--seeds",
        "2",
        "--trials",
        "4",
        "--epochs",
        "3",
        "--storage",
        url,
    ]
    assert main([*args, "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["table"] == json.loads(json.dumps(table_rows(analyze_race(plan, storage))))
    assert payload["summary"] == analyze_race(plan, storage).text
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "TPE + pruning" in out and "random + pruning" in out and "already complete" in out
    assert main([*args[:-2], "--trials", "5", "--storage", url]) == 1
    assert "already exists with other settings (trials)" in capsys.readouterr().err


# ---------------------------------------------------------------- stop and resume


def test_stop_mid_race_leaves_no_running_trial_and_resume_finishes(sqlite_url, dataset, pool) -> None:
    storage = open_storage(sqlite_url)
    plan = RacePlan("stop", strategies=("tpe", "random"), pruning=(False,), seeds=1, trials=4, epochs=25)
    workers = start_race(plan, sqlite_url, dataset, storage, pool)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for w in workers:
            w.renew()
        progress = race_progress(plan, storage)
        if progress.finished_trials >= 1 and progress.running_trials >= 1:
            break
        time.sleep(0.1)
    else:
        pytest.fail("no trial finished while another ran")
    for w in workers:
        w.stop()
    states = [t.state for trials in race_trials(storage, plan).values() for t in trials]
    assert TrialState.RUNNING not in states
    progress = race_progress(plan, storage)
    assert not progress.complete  # stopped early; a trial running at Stop is FAIL (none is left RUNNING)
    remaining = prepare_race(plan, sqlite_url, storage)  # resume tops up exactly what is missing
    assert sum(p.trials for p in remaining) == progress.target_trials - progress.finished_trials > 0

    wait_for(start_race(plan, sqlite_url, dataset, storage, pool))  # resume
    assert race_progress(plan, storage).complete
    analysis = analyze_race(plan, storage)
    assert list(analysis.runs.trials) == [4, 4]  # failed (stopped) trials are not counted


# ---------------------------------------------------------------- grid and seeds (in-process, fast)


def run_in_process(plan: RacePlan, url: str, dataset) -> optuna.storages.BaseStorage:
    storage = open_storage(url)
    for study_plan in prepare_race(plan, url, storage):
        run_study(study_plan, dataset, storage)
    return storage


def test_grid_enumerates_its_whole_grid_once(tmp_path, dataset) -> None:
    plan = RacePlan("grid", ("grid",), (False,), seeds=1, trials=100, epochs=1, reduced=True, grid_points=2)
    storage = run_in_process(plan, f"sqlite:///{tmp_path}/grid.sqlite3", dataset)
    trials = race_trials(storage, plan)["race:grid:grid:full:seed0"]
    grid = REDUCED_SPACE.grid(2)
    names = sorted(grid)
    visited = [tuple(t.params[n] for n in names) for t in trials]
    assert len(visited) == 32 == len(set(visited))  # stopped at the grid's end, no point twice
    assert set(visited) == set(itertools.product(*(grid[n] for n in names)))
    samples = analyze_race(plan, storage).samples
    assert set(zip(samples.learning_rate, samples.batch_size)) == set(
        itertools.product(grid["learning_rate"], grid["batch_size"])
    )  # the lattice the scatter plot shows
    assert race_progress(plan, storage).complete


def test_seeds_make_runs_repeatable(tmp_path, dataset) -> None:
    plan = RacePlan("seeds", strategies=("tpe", "random"), pruning=(True,), seeds=2, trials=12, epochs=1)

    def outcome(storage):
        return {
            name: [(t.params, t.value, t.state) for t in trials] for name, trials in race_trials(storage, plan).items()
        }

    first = outcome(run_in_process(plan, f"sqlite:///{tmp_path}/a.sqlite3", dataset))
    second = outcome(run_in_process(plan, f"sqlite:///{tmp_path}/b.sqlite3", dataset))
    assert first == second  # same seed: same points, same accuracies, same pruning decisions
    seed0, seed1 = first["race:seeds:random:pruned:seed0"], first["race:seeds:random:pruned:seed1"]
    assert [p for p, _, _ in seed0] != [p for p, _, _ in seed1]  # another seed: another run


# ---------------------------------------------------------------- analysis on hand-written trials


def add_run(storage, plan: RacePlan, run: RaceRun, trials: list[tuple[float | None, int]]) -> None:
    """Trials as (value or None for pruned, epochs reported)."""
    study = optuna.create_study(storage=storage, study_name=run.study_name(plan.name), direction="maximize")
    study.set_user_attr("race", plan.to_dict())
    for value, epochs in trials:
        study.add_trial(
            create_trial(
                state=TrialState.PRUNED if value is None else TrialState.COMPLETE,
                value=value,
                params={"learning_rate": 0.01, "batch_size": 32},
                distributions={
                    "learning_rate": FloatDistribution(1e-5, 0.1, log=True),
                    "batch_size": IntDistribution(8, 128),
                },
                intermediate_values={e: 80.0 for e in range(1, epochs + 1)},
            )
        )


def test_analysis_and_summary_from_known_numbers() -> None:
    storage = optuna.storages.InMemoryStorage()
    plan = RacePlan("known", strategies=("tpe", "random"), pruning=(True,), seeds=2, trials=3, epochs=10)
    add_run(storage, plan, RaceRun("tpe", True, 0), [(80.0, 10), (90.0, 10), (85.0, 10)])
    add_run(storage, plan, RaceRun("tpe", True, 1), [(88.0, 10), (None, 3), (91.0, 10)])
    add_run(storage, plan, RaceRun("random", True, 0), [(70.0, 10), (75.0, 10), (86.0, 10)])
    add_run(storage, plan, RaceRun("random", True, 1), [(84.0, 10), (80.0, 10), (86.0, 10)])
    analysis = analyze_race(plan, storage)
    assert analysis.target == 86.0  # min over strategies of the median final best (TPE 90.5, random 86)
    tpe, rnd = analysis.table
    assert (tpe["median_best"], rnd["median_best"]) == (90.5, 86.0)
    assert tpe["epochs_to_target"] == 20 and tpe["trials_to_target"] == 2  # median of 90 and 88 at 20 epochs
    assert rnd["epochs_to_target"] == 30 and rnd["trials_to_target"] == 3
    assert tpe["epochs_to_target_iqr"] == 5.0 and rnd["epochs_to_target_iqr"] == 0.0  # seeds: 20 and 10; 30 and 30
    assert tpe["median_epochs"] == 26.5 and tpe["pruned_share"] == pytest.approx(1 / 6)
    tpe_curve = analysis.by_trial[analysis.by_trial.label == "TPE + pruning"]
    assert list(tpe_curve["median"]) == [84.0, 89.0, 90.5]
    assert list(tpe_curve.q1) == [82.0, 88.5, 90.25]
    by_epoch = analysis.by_epoch.set_index(["label", "epochs"])
    assert by_epoch.loc[("TPE + pruning", 13), "median"] == 84.0  # the pruned trial's 3 epochs bought nothing
    assert by_epoch.loc[("TPE + pruning", 23), "median"] == 90.5
    text = " ".join(analysis.text)
    assert "TPE + pruning reached 86.0% first: after 20 epochs (2 trials)" in text
    assert "needed 30 epochs, 10 more" in text
    assert "larger than the seed-to-seed spread" in text and "up to 5 epochs" in text

    later = analyze_race(plan, storage, target=89.0)
    assert "random + pruning, never did" in " ".join(later.text)
    assert "never reached the target" in " ".join(later.text)


def test_analysis_before_any_trial_finished() -> None:
    storage = optuna.storages.InMemoryStorage()
    plan = RacePlan("empty", **TINY)
    analysis = analyze_race(plan, storage)
    assert analysis.target is None and analysis.by_trial.empty
    assert "No finished trials yet" in analysis.text[0]
    assert race_module.race_progress(plan, storage).finished_trials == 0
