"""Careless or hostile input: one set of limits, one error line, never a traceback, never someone else's file."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import threading
import uuid

import optuna
import pytest

from fetal_core import cli, limits, records
from fetal_core.search import SearchSpace, StudyPlan, open_study, run_study
from fetal_core.storage import StorageError, open_storage
from fetal_core.training import ConfigError, TrainConfig
from tests.conftest import POSTGRES_URL, ROOT, start_cli_study


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fetal_core", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def assert_one_error_line(result: subprocess.CompletedProcess, *expected: str) -> None:
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for text in expected:
        assert text in lines[0]


# ---------------------------------------------------------------- one set of limits


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(seed=-5), "seed: -5 is outside the allowed range 0 to 2,147,483,647"),
        (dict(seed=2**32), "seed: 4294967296 is outside"),
        (dict(hidden_layers=(1,) * 100_000), "number of layers: 100000 is outside the allowed range 1 to 8"),
        (dict(hidden_layers=(15, 5000)), "hidden_layers: layer 1 units: 5000 is outside the allowed range 1 to 1,024"),
        (dict(batch_size=100_001), "batch_size: 100001 is outside the allowed range 1 to 2,048"),
        (dict(epochs=10_001), "epochs: 10001 is outside the allowed range 1 to 10,000"),
        (dict(learning_rate=0.0), "learning_rate: 0.0 is outside the allowed range 1e-07 to 10"),
        (dict(learning_rate=float("inf")), "learning_rate: inf is not a finite number"),
        (dict(weight_decay=-1.0), "weight_decay: -1.0 is outside the allowed range 0 to 10"),
        (dict(optimizer="x" * 10_000), "optimizer: 'xxxxxxx"),
    ],
)
def test_train_config_refuses_values_outside_the_limits_in_one_short_line(settings, message):
    with pytest.raises(ConfigError) as caught:
        TrainConfig(**settings)
    text = str(caught.value)
    assert message in text and "\n" not in text and len(text) < 200


def test_the_ui_the_cli_and_the_engine_read_the_same_limits():
    from fetal_core import manual

    assert (manual.MAX_LAYERS, manual.MAX_UNITS) == (limits.LAYERS.high, limits.UNITS.high)
    assert (manual.MAX_BATCH, manual.MAX_EPOCHS) == (limits.BATCH_SIZE.high, limits.EPOCHS.high)
    with pytest.raises(ConfigError, match="batch size: the high end: 100001"):
        SearchSpace(max_batch=100_001)  # passed the search-space checks before, then every trial failed
    # Each range's high end is usable (the widest layer, the most layers); together they pass the network caps'
    # check (limits.check_network) or not, which tests/test_time_budget.py covers.
    TrainConfig(hidden_layers=(int(limits.UNITS.high),), seed=int(limits.SEED.high))
    TrainConfig(hidden_layers=(64,) * int(limits.LAYERS.high), batch_size=int(limits.BATCH_SIZE.high))


# ---------------------------------------------------------------- the command line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("train", "--seed", "-5", "--epochs", "1"), "seed: -5 is outside"),
        (("study", "--seed", "-1", "--trials", "1", "--storage", "sqlite:///{tmp}/s.sqlite3"), "seed: -1 is outside"),
        (("study", "--storage", "sqlite:///", "--trials", "1"), "'sqlite:///' names no file"),
        (("study", "--storage", "postgresql://", "--trials", "1"), "names no host and no database"),
        (("study", "--storage", "postgresql:///test", "--trials", "1"), "names no host"),
        (("train", "--epochs", "1", "--layers", *["1"] * 100_000), "number of layers: 100000 is outside"),
    ],
)
def test_cli_bad_values_end_with_one_line_and_a_nonzero_exit(tmp_path, args, expected):
    result = run_cli(*(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert_one_error_line(result, expected)


def test_cli_last_resort_turns_any_unforeseen_error_into_one_line(monkeypatch, capsys):
    def unreadable(_path):
        raise PermissionError(13, "Permission denied", "data/fetal_health.csv")

    monkeypatch.setattr(cli, "load_dataset", unreadable)
    code = cli.main(["train", "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == ["error: PermissionError: [Errno 13] Permission denied: 'data/fetal_health.csv'"]


def test_cli_error_lines_quote_at_most_a_few_hundred_characters(monkeypatch, capsys):
    def huge(_path):
        raise ValueError("bad cell " + "9" * 10_000_000)

    monkeypatch.setattr(cli, "load_dataset", huge)
    assert cli.main(["train", "--epochs", "1"]) == 2
    assert len(capsys.readouterr().err) < 400


# ---------------------------------------------------------------- never someone else's file


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_existing_sqlite_file_of_something_else_is_refused_and_left_byte_for_byte(tmp_path):
    theirs = tmp_path / "their.db"
    with sqlite3.connect(theirs) as connection:
        connection.execute("CREATE TABLE notes (text TEXT)")
        connection.execute("INSERT INTO notes VALUES ('my thesis')")
    before = sha256(theirs)
    result = run_cli("study", "--storage", f"sqlite:///{theirs}", "--trials", "1", "--epochs", "1")
    assert_one_error_line(result, "is a SQLite database of something else", "nothing was written")
    assert sha256(theirs) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["their.db"]  # no -wal/-shm/journal left either


def test_a_file_that_is_not_a_database_is_refused_and_left_alone(tmp_path):
    text = tmp_path / "notes.db"
    text.write_text("dear diary")
    with pytest.raises(StorageError, match="is not a SQLite database"):
        open_storage(f"sqlite:///{text}")
    assert text.read_text() == "dear diary"


def test_our_own_and_new_and_empty_sqlite_files_still_open(tmp_path):
    url = f"sqlite:///{tmp_path}/new.sqlite3"
    optuna.create_study(storage=open_storage(url), study_name="s")
    assert [s.study_name for s in optuna.get_all_study_summaries(open_storage(url))] == ["s"]  # reopened: ours
    (tmp_path / "empty.sqlite3").touch()
    open_storage(f"sqlite:///{tmp_path}/empty.sqlite3")


def postgres_available() -> bool:
    try:
        import psycopg

        psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", connect_timeout=3).close()
        return True
    except Exception:
        return False


def test_a_plain_postgresql_url_works_with_optuna_itself():
    """The README's URL, with no driver suffix, opens in Optuna (and so optuna-dashboard) and in the app alike."""
    if not postgres_available():
        pytest.fail("PostgreSQL at 127.0.0.1:5432 is required for this test (CI starts it).")
    name = f"plain-url-{uuid.uuid4().hex[:8]}"
    study = optuna.create_study(storage=open_storage(POSTGRES_URL), study_name=name, direction="maximize")
    study.enqueue_trial({"x": 1.0})
    try:
        loaded = optuna.load_study(study_name=name, storage=POSTGRES_URL)
        assert loaded.study_name == name
    finally:
        optuna.delete_study(study_name=name, storage=POSTGRES_URL)


# ---------------------------------------------------------------- two sessions, one target


def test_two_sessions_starting_the_same_study_share_one_target(tmp_path, dataset):
    """Both computed "3 trials to run" before either started; together they stop near 3, not at 6.

    At most one trial per extra worker overshoots (both may start a trial at the same moment)."""
    url = f"sqlite:///{tmp_path}/shared.sqlite3"
    storage = open_storage(url)
    plan = StudyPlan(
        storage_url=url,
        study_name="same name",
        trials=3,
        sampler="random",
        pruner="none",
        epochs=2,
        space=SearchSpace(depth=2, max_units=16),
        shared_target=True,
    )
    records.set_target_trials(open_study(plan, storage), 3)
    errors: list[BaseException] = []

    def session() -> None:
        try:
            run_study(plan, dataset, open_storage(url))
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=session) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    trials = optuna.load_study(study_name="same name", storage=storage).trials
    assert 3 <= len(trials) <= 4, [t.state for t in trials]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)


# ---------------------------------------------------------------- a worker killed with kill -9


def test_the_page_following_a_study_fails_the_trial_of_a_killed_cli_worker(monkeypatch, tmp_path, data_path):
    """A CLI worker SIGKILLed mid-trial: Part II, following the study, fails its trial after the grace period
    (FETAL_HPO_HEARTBEAT=1: grace 3 s), with no other worker touching the study."""
    import os
    import signal
    import time

    from streamlit.testing.v1 import AppTest

    url = f"sqlite:///{tmp_path}/class.sqlite3"
    env = {**os.environ, "FETAL_HPO_HEARTBEAT": "1", "FETAL_HPO_DATA": str(data_path)}
    worker = start_cli_study(
        url,
        "killed",
        *("--trials", "1", "--epochs", "10000", "--pruner", "none"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        running = []
        storage = open_storage(url)  # creating the tables may race the worker's: open_storage retries
        while not running and time.monotonic() < deadline:  # mid-trial: it has reported an epoch
            time.sleep(0.5)
            try:
                trials = optuna.load_study(study_name="killed", storage=storage).get_trials(
                    states=(optuna.trial.TrialState.RUNNING,)
                )
            except KeyError:
                continue
            # Optuna starts a trial's heartbeat just after creating it: a worker killed in between leaves a
            # trial no heartbeat reaper can tell from a live one. An epoch reported means training has begun.
            running = [t for t in trials if t.intermediate_values]
        assert running, "the worker never reported an epoch"
        worker.send_signal(signal.SIGKILL)
        worker.wait(30)
    finally:
        if worker.poll() is None:
            worker.kill()
    monkeypatch.setenv("FETAL_HPO_HEARTBEAT", "1")
    monkeypatch.setenv("FETAL_HPO_STORAGE", url)
    monkeypatch.setenv("FETAL_HPO_DATA", str(data_path))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/part2_study.py").run()
    at.selectbox(key="p2_choice").set_value("killed").run()
    deadline = time.monotonic() + 90
    state = optuna.trial.TrialState.RUNNING
    while state == optuna.trial.TrialState.RUNNING and time.monotonic() < deadline:
        time.sleep(1)
        at.run()
        state = optuna.load_study(study_name="killed", storage=url).trials[0].state
    assert not at.exception, at.exception
    assert state == optuna.trial.TrialState.FAIL


def test_the_sidebar_never_shows_a_database_password():
    from pages.common import shown_storage_url

    assert shown_storage_url("postgresql://teacher:s3cret@db.school:5432/class") == (
        "postgresql://teacher:***@db.school:5432/class"
    )
    assert "s3cret" not in shown_storage_url("redis://:s3cret@127.0.0.1:6379")
    assert shown_storage_url("sqlite:///data/Fetal_Health.sqlite3") == "sqlite:///data/Fetal_Health.sqlite3"
