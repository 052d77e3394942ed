"""Trials left RUNNING by a dead server or worker: failed in every study of the storage, at the server's start and
by any page run, once their heartbeat is older than the grace period; a live worker's trial is left RUNNING."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from fetal_core.storage import open_storage, reap_stale_trials_everywhere
from tests.conftest import ROOT, StreamlitServer

# Grace period 3 x 60 s: a heartbeat recorded by the test stays fresh however slow the machine is.
HEARTBEAT = 60
LONG_AGO = "2000-01-01 00:00:00"  # a heartbeat from a worker that died long ago


def plant_running_trials(url: str, study_name: str) -> dict[str, int]:
    """Three RUNNING trials in a new study: one whose worker died (heartbeat long ago), one of a live worker (a
    heartbeat just now) and one that never sent a heartbeat. Their numbers by kind."""
    storage = open_storage(url, heartbeat_interval=HEARTBEAT, grace_period=3 * HEARTBEAT)
    study = optuna.create_study(study_name=study_name, storage=storage, direction="maximize")
    numbers = {}
    for kind in ("dead", "live", "silent"):
        trial = study.ask()
        numbers[kind] = trial.number
        if kind != "silent":
            storage.record_heartbeat(trial._trial_id)
        if kind == "dead":
            with storage.engine.begin() as connection:
                connection.execute(
                    text("UPDATE trial_heartbeats SET heartbeat = :then WHERE trial_id = :id"),
                    {"then": LONG_AGO, "id": trial._trial_id},
                )
    return numbers


def states(url: str, study_name: str) -> dict[int, TrialState]:
    return {t.number: t.state for t in optuna.load_study(study_name=study_name, storage=url).trials}


def expected(numbers: dict[str, int]) -> dict[int, TrialState]:
    """The dead worker's trial failed, the others still RUNNING."""
    return {number: TrialState.FAIL if kind == "dead" else TrialState.RUNNING for kind, number in numbers.items()}


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_every_study_s_dead_trials_fail_and_live_ones_run_on(kind, tmp_path, request):
    url = f"sqlite:///{tmp_path}/s.sqlite3" if kind == "sqlite" else request.getfixturevalue("fresh_postgres_url")
    first, second = plant_running_trials(url, "nobody follows"), plant_running_trials(url, "another")
    storage = open_storage(url, heartbeat_interval=HEARTBEAT, grace_period=3 * HEARTBEAT)
    assert reap_stale_trials_everywhere(storage) == 2
    assert states(url, "nobody follows") == expected(first) and states(url, "another") == expected(second)
    assert reap_stale_trials_everywhere(storage) == 0  # nothing left to fail; the live trial still runs


def test_journal_storages_have_no_heartbeat_and_are_left_alone(tmp_path):
    storage = open_storage(f"journal:///{tmp_path}/j.log")
    optuna.create_study(study_name="j", storage=storage).ask()
    assert reap_stale_trials_everywhere(storage) == 0


@pytest.fixture
def server_env(monkeypatch, tmp_path, data_path) -> dict[str, str]:
    env = {
        "FETAL_HPO_DATA": str(data_path),
        "FETAL_HPO_STORAGE": f"sqlite:///{tmp_path}/app.sqlite3",
        "FETAL_HPO_HEARTBEAT": str(HEARTBEAT),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("FETAL_HPO_INSTRUCTOR_KEY", raising=False)
    monkeypatch.chdir(ROOT)
    return env


def test_the_server_fails_a_dead_server_s_trials_at_start(server_env, tmp_path):
    """`streamlit run serve.py` on a storage a killed server left: once its health check answers (it is ready),
    the dead trial is failed in a study nobody follows, before any page is opened; the live one runs on."""
    url = server_env["FETAL_HPO_STORAGE"]
    numbers = plant_running_trials(url, "left by a killed server")
    server = StreamlitServer(server_env, tmp_path / "streamlit.log")
    try:
        assert states(url, "left by a killed server") == expected(numbers)
    finally:
        server.stop()
    assert "failed 1 trial(s) left RUNNING" in (tmp_path / "streamlit.log").read_text()


def test_the_results_page_fails_dead_trials_before_listing_them(server_env):
    url = server_env["FETAL_HPO_STORAGE"]
    numbers = plant_running_trials(url, "left by a killed server")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/results.py").run()
    assert not at.exception, at.exception
    assert states(url, "left by a killed server") == expected(numbers)
