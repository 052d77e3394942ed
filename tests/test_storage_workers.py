"""Storages, interruption, study workers and many workers on the real PostgreSQL server."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid

import optuna
import pytest
from optuna.trial import TrialState

from fetal_core.search import SearchSpace, StudyPlan, run_study
from fetal_core.storage import StorageError, open_storage
from tests.conftest import NO_POSTGRES, POSTGRES_URL, ROOT, postgres_answers, start_cli_study

SMALL = SearchSpace(depth=2, min_units=8, max_units=32, min_batch=64, max_batch=128)
# Worker processes on a busy shared machine can take minutes; the waits below end as soon as their condition
# holds, and pytest's 600 s default would cut some of them short.
pytestmark = pytest.mark.timeout(1800)


def states(study_name: str, storage) -> list[TrialState]:
    return [t.state for t in optuna.load_study(study_name=study_name, storage=storage).trials]


def wait_for(condition, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


# ---------------------------------------------------------------- storages


def test_sqlite_storage_uses_wal_and_reloads_a_study(dataset, tmp_path):
    path = tmp_path / "studies" / "s.sqlite3"  # the folder does not exist yet
    url = f"sqlite:///{path}"
    summary = run_study(StudyPlan(url, "wal", trials=3, epochs=2, space=SMALL), dataset, open_storage(url))
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    reloaded = optuna.load_study(study_name="wal", storage=url)  # a plain Optuna URL, fresh engine
    assert len(reloaded.trials) == 3 and all(t.state == TrialState.COMPLETE for t in reloaded.trials)
    assert reloaded.best_value == summary.best_value
    assert reloaded.user_attrs["sampler"] == "tpe" and reloaded.user_attrs["epochs"] == 2
    assert all(len(t.user_attrs["history"]["epoch"]) == 2 for t in reloaded.trials)


def test_journal_file_storage_stores_and_reloads_a_study(dataset, tmp_path):
    path = tmp_path / "journal" / "studies.log"
    url = f"journal:///{path}"  # tmp_path is absolute: journal:////tmp/...
    summary = run_study(StudyPlan(url, "journal", trials=3, epochs=2, space=SMALL), dataset, open_storage(url))
    assert path.exists() and path.stat().st_size > 0

    reloaded = optuna.load_study(study_name="journal", storage=open_storage(url))
    assert [t.number for t in reloaded.trials] == [0, 1, 2]
    assert reloaded.best_value == summary.best_value
    assert reloaded.trials[0].user_attrs["config"]["hidden_layers"] == [
        reloaded.trials[0].params["layer_0"],
        reloaded.trials[0].params["layer_1"],
    ]


def test_redis_journal_storage_stores_and_reloads_a_study(dataset):
    """The real Redis at 127.0.0.1:6379 (a journal storage); skips only when no server answers."""
    redis = pytest.importorskip("redis")
    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=2).ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("no Redis server answers at 127.0.0.1:6379")
    name = f"redis_{uuid.uuid4().hex[:8]}"
    url = "redis://127.0.0.1:6379/0"
    summary = run_study(StudyPlan(url, name, trials=2, epochs=2, space=SMALL), dataset, open_storage(url))
    reloaded = optuna.load_study(study_name=name, storage=open_storage(url))
    assert [t.number for t in reloaded.trials] == [0, 1]
    assert reloaded.best_value == summary.best_value
    optuna.delete_study(study_name=name, storage=open_storage(url))


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "give an Optuna storage URL"),
        ("   ", "give an Optuna storage URL"),
        ("mongodb://127.0.0.1/x", "is not a supported URL"),
        ("data/Fetal_Health.sqlite3", "is not a supported URL"),
        ("sqlite:////dev/null/sub/x.sqlite3", "cannot open"),
        ("journal:////dev/null/sub/studies.log", "Not a directory"),
        ("postgresql://postgres@127.0.0.1:1/test", "Connection refused"),
        ("postgresql://postgres@127.0.0.1:5432/no_such_database_fetal", 'database "no_such_database_fetal" does not'),
    ],
)
def test_open_storage_rejects_bad_urls_in_one_line(url, reason, tmp_path):
    with pytest.raises(StorageError) as caught:
        open_storage(url)
    message = str(caught.value)
    assert reason in message
    assert "\n" not in message
    if url.strip():
        assert url in message


def test_open_storage_rejects_a_file_that_is_not_sqlite(tmp_path):
    path = tmp_path / "notes.sqlite3"
    path.write_text("this is not a database\n" * 100)
    with pytest.raises(StorageError, match="is not a SQLite database") as caught:
        open_storage(f"sqlite:///{path}")
    assert "\n" not in str(caught.value)


# ---------------------------------------------------------------- interruption


class StreamlitLikeStop(BaseException):
    """Like Streamlit's StopException: a BaseException that is not an Exception."""


@pytest.mark.parametrize("interruption", [StreamlitLikeStop, SystemExit, KeyboardInterrupt])
def test_a_base_exception_inside_a_trial_leaves_it_failed(dataset, sqlite_url, interruption):
    calls = []

    def raise_in_second_trial() -> bool:  # polled after every epoch, inside the trial
        calls.append(1)
        if len(calls) == 3 + 1 + 2:  # trial 0: 3 epochs, 1 poll between trials, trial 1: stop at epoch 2
            raise interruption("stop")
        return False

    plan = StudyPlan(sqlite_url, "interrupted", trials=5, epochs=3, pruner="none", space=SMALL)
    with pytest.raises(interruption):
        run_study(plan, dataset, open_storage(sqlite_url), should_stop=raise_in_second_trial)

    fresh = optuna.load_study(study_name="interrupted", storage=sqlite_url)  # the file is still readable
    assert [t.state for t in fresh.trials] == [TrialState.COMPLETE, TrialState.FAIL]
    assert len(fresh.trials[1].user_attrs["history"]["epoch"]) == 2  # the curve so far is kept
    summary = run_study(StudyPlan(sqlite_url, "interrupted", trials=1, epochs=3, space=SMALL), dataset)
    assert summary.trials == 3 and summary.running == 0  # and the study can go on


def test_should_stop_ends_the_study_without_a_running_trial(dataset, sqlite_url):
    plan = StudyPlan(sqlite_url, "stopped", trials=5, epochs=3, space=SMALL)
    summary = run_study(plan, dataset, open_storage(sqlite_url), should_stop=lambda: True)
    assert summary.interrupted is True
    assert summary.running == 0 and summary.trials == 1 and summary.failed == 1
    assert states("stopped", sqlite_url) == [TrialState.FAIL]


# ---------------------------------------------------------------- PostgreSQL: many workers, killed workers


needs_postgres = pytest.mark.skipif(not postgres_answers(), reason=NO_POSTGRES)


@pytest.fixture
def postgres_study():
    """A unique study name on the real server's `test` database, deleted afterwards."""
    name = f"pytest-{uuid.uuid4().hex[:12]}"
    yield name
    try:
        optuna.delete_study(study_name=name, storage=open_storage(POSTGRES_URL))
    except KeyError:
        pass


def cli_study(storage_url: str, study_name: str, data_path, *extra: str) -> subprocess.Popen:
    """A CLI study worker on the data set, its stdout and stderr piped as text (for communicate())."""
    return start_cli_study(
        storage_url,
        study_name,
        "--data",
        str(data_path),
        *extra,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@needs_postgres
def test_four_worker_processes_share_one_postgres_study(data_path, postgres_study):
    workers = [
        cli_study(POSTGRES_URL, postgres_study, data_path, "--trials", "10", "--epochs", "3", "--depth", "2", "--json")
        for _ in range(4)
    ]
    outputs = []
    try:
        for worker in workers:
            stdout, stderr = worker.communicate(timeout=900)
            assert worker.returncode == 0, stderr
            outputs.append(json.loads(stdout))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    assert [o["ran"] for o in outputs] == [10, 10, 10, 10]

    trials = optuna.load_study(study_name=postgres_study, storage=open_storage(POSTGRES_URL)).trials
    assert len(trials) == 40
    assert sorted(t.number for t in trials) == list(range(40))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials), [t.state for t in trials]
    assert max(o["trials"] for o in outputs) == 40  # the last one to finish saw all 40


def cli_worker(storage_url: str, study_name: str, data_path, *extra: str) -> subprocess.Popen:
    """cli_study on a small space with no pruner (depth 2, --pruner none): the killed-worker tests' worker."""
    return cli_study(storage_url, study_name, data_path, "--depth", "2", "--pruner", "none", *extra)


def run_cli_worker(storage_url: str, study_name: str, data_path, *extra: str) -> None:
    worker = cli_worker(storage_url, study_name, data_path, *extra)
    stdout, stderr = worker.communicate(timeout=300)
    assert worker.returncode == 0, stderr


@pytest.fixture(params=["sqlite", "postgresql"])
def kill_storage(request, tmp_path):
    """A SQLite file, or the real PostgreSQL server's `test` database (a unique study, deleted afterwards)."""
    name = f"killed-{uuid.uuid4().hex[:12]}"
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/killed.sqlite3", name
        return
    if not postgres_answers():
        pytest.skip(NO_POSTGRES)
    yield POSTGRES_URL, name
    try:
        optuna.delete_study(study_name=name, storage=open_storage(POSTGRES_URL))
    except KeyError:
        pass


def test_a_new_worker_fails_the_trial_of_a_killed_worker_after_the_grace_period(kill_storage, data_path):
    """A CLI worker is SIGKILLed mid-trial (no chance to tell its trial FAIL). A new worker started within the
    grace period leaves that trial RUNNING; one started after it (grace = 3 x --heartbeat) fails it on start."""
    url, name = kill_storage
    worker = cli_worker(url, name, data_path, "--trials", "3", "--epochs", "10000", "--heartbeat", "1")
    storage = open_storage(url)
    try:

        def running_trial_with_progress():
            assert worker.poll() is None, worker.communicate()[1]
            try:
                trials = optuna.load_study(study_name=name, storage=storage).trials
            except KeyError:  # the worker has not created the study yet
                return None
            return next((t for t in trials if t.state == TrialState.RUNNING and t.intermediate_values), None)

        killed = wait_for(running_trial_with_progress, 300, "a RUNNING trial that has reported an epoch")
        os.kill(worker.pid, signal.SIGKILL)
        worker.communicate(timeout=60)
        killed_at = time.monotonic()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert worker.returncode == -signal.SIGKILL

    # Grace 180 s: the killed worker's last heartbeat is far more recent, so its trial must stay RUNNING.
    run_cli_worker(url, name, data_path, "--trials", "1", "--epochs", "1", "--heartbeat", "60")
    after_early_start = optuna.load_study(study_name=name, storage=storage).trials
    assert after_early_start[killed.number].state == TrialState.RUNNING, "failed within the grace period"
    assert [t.state for t in after_early_start[killed.number + 1 :]] == [TrialState.COMPLETE]

    # Grace 3 s, started more than 3 s after the last heartbeat: the new worker fails the stale trial first.
    time.sleep(max(0.0, killed_at + 4.0 - time.monotonic()))
    run_cli_worker(url, name, data_path, "--trials", "1", "--epochs", "1", "--heartbeat", "1")
    trials = optuna.load_study(study_name=name, storage=storage).trials
    assert trials[killed.number].state == TrialState.FAIL
    assert trials[killed.number].intermediate_values  # what it reported before the kill is kept
    assert TrialState.RUNNING not in [t.state for t in trials]
    assert [t.state for t in trials if t.number != killed.number] == [TrialState.COMPLETE] * (len(trials) - 1)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_workers_started_at_once_on_a_new_database_all_open_it(kind, tmp_path, request):
    """Four processes open the same new database at the same instant: each creates Optuna's tables, the
    losers of that race retry instead of failing (without the retry one or more failed in 5 of 5 tries)."""
    url = f"sqlite:///{tmp_path}/new.sqlite3" if kind == "sqlite" else request.getfixturevalue("fresh_postgres_url")
    start = time.time() + 5  # after every interpreter has started and imported the storage module
    code = (
        "import time\nfrom fetal_core.storage import open_storage\n"
        f"while time.time() < {start}: time.sleep(0.001)\nopen_storage({url!r})\nprint('opened')"
    )
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    results = [(w.wait(timeout=300), *w.communicate()) for w in workers]
    assert [(code, out.strip()) for code, out, _ in results] == [(0, "opened")] * 4, [e[-300:] for *_, e in results]
