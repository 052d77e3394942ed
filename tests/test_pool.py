"""The compute pool (Dask): Part I runs and study trials on worker processes, leases, Stop, fairness, a killed
worker, a second machine's `dask worker`, a scheduler that cannot be reached, and the CLI on a cluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import optuna
import pytest
from optuna.trial import TrialState

from fetal_core import pool as pool_module
from fetal_core import records
from fetal_core.cli import main
from fetal_core.pool import PoolError, open_pool
from fetal_core.search import FAIL_REASON, SearchSpace, StudyPlan
from fetal_core.storage import open_storage
from fetal_core.training import TrainConfig
from tests.conftest import ROOT, cli_study_command, free_port, wait_until

SMALL = SearchSpace(depth=2, min_units=8, max_units=32, min_batch=64, max_batch=128)
LONG_RUN = TrainConfig(hidden_layers=(64, 64), batch_size=8, epochs=10_000)
ENDED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


@pytest.fixture
def sqlite_url(sqlite_url):
    """The test's SQLite storage, created before any worker opens it (as the pages and the CLI do: two
    processes creating Optuna's tables at once may collide)."""
    open_storage(sqlite_url)
    return sqlite_url


def renewed(job) -> bool:
    """Renew the job's lease (as its page does) and fail at once if it stopped with an error."""
    job.renew()
    assert job.error is None, job.error
    return True


def trials_of(name: str, url: str) -> list:
    try:
        return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
    except KeyError:  # not created yet
        return []


def count(name: str, url: str, states=(TrialState.COMPLETE, TrialState.PRUNED)) -> int:
    return sum(t.state in states for t in trials_of(name, url))


def follow(job, pool, timeout: float = 600) -> None:
    """Renew the job's lease (as a page does) until it has finished."""
    deadline = time.monotonic() + timeout
    while job.alive():
        assert time.monotonic() < deadline, f"the job still runs after {timeout:.0f} s"
        job.renew()
        pool.wait(job, 0.2)


# ---------------------------------------------------------------- Part I runs


def test_a_run_streams_its_epochs_and_stop_keeps_the_partial_curve(pool, dataset) -> None:
    run = pool.train(LONG_RUN, dataset)
    wait_until(lambda: (run.renew(), len(run.history) >= 3)[1], "three epochs streamed back")
    assert run.state == "running" and run.result is None  # live: epochs arrive while the run trains
    streamed = len(run.history)
    run.stop(timeout=30)
    assert run.state == "stopped" and run.result is not None and run.result.stopped_early
    assert len(run.result.history) >= streamed and run.history == [m.to_dict() for m in run.result.history]
    assert run.worker and run.worker.rsplit(":", 1)[1].isdigit()  # host:pid of the process that trained it
    assert int(run.worker.rsplit(":", 1)[1]) != os.getpid()  # not this process: the server never trains


def test_a_run_whose_lease_is_not_renewed_frees_its_worker(dataset) -> None:
    """A closed tab renews nothing: the run stops after its lease and the worker takes the next run."""
    pool = open_pool(workers=1, interactive=0)
    try:
        run = pool.train(LONG_RUN, dataset, lease_seconds=3.0)
        wait_until(lambda: run.history, "the first epochs")
        waiting = pool.train(TrainConfig(epochs=3), dataset)
        assert waiting.queue_position() == 1
        follow(waiting, pool, timeout=300)
        assert run.state == "stopped" and any("nobody followed it" in n for n in run.notices)
        assert waiting.state == "finished" and len(waiting.history) == 3
    finally:
        pool.close()


# ---------------------------------------------------------------- studies


def test_a_stopped_study_leaves_no_running_trial_and_keeps_finished_ones(pool, dataset, sqlite_url) -> None:
    plan = StudyPlan(sqlite_url, "stopped", trials=500, epochs=40, pruner="none", space=SMALL)
    job = pool.run_studies(plan, dataset)
    wait_until(lambda: renewed(job) and count("stopped", sqlite_url) >= 2, "two finished trials", timeout=300)
    job.stop(timeout=60)
    assert not job.alive() and job.error is None
    after = [t.state for t in trials_of("stopped", sqlite_url)]
    assert TrialState.RUNNING not in after and after.count(TrialState.COMPLETE) >= 2 and len(after) < 500
    [summary] = job.summaries
    assert summary.interrupted and summary.trials == len(after)


def test_a_study_whose_lease_is_not_renewed_stops_by_itself(pool, dataset, sqlite_url) -> None:
    """Renewed (by a thread, as the sidebar does, however slow the storage reads of this test are) until a
    trial has finished, then left alone: the study stops after its lease, its running trial FAIL."""
    plan = StudyPlan(sqlite_url, "lease", trials=500, epochs=40, pruner="none", space=SMALL)
    job = pool.run_studies(plan, dataset, lease_seconds=6.0)
    owner_there = threading.Event()
    owner_there.set()

    def sidebar() -> None:
        while owner_there.is_set():
            job.renew()
            time.sleep(0.2)

    renewer = threading.Thread(target=sidebar, daemon=True)
    renewer.start()
    try:
        wait_until(lambda: renewed(job) and count("lease", sqlite_url) >= 1, "a finished trial", timeout=300)
        assert job.alive(), "the study stopped although its lease was renewed"
    finally:
        owner_there.clear()
        renewer.join()
    last_renewal = time.monotonic()
    wait_until(lambda: not job.alive(), "the study to stop without its lease", timeout=300)
    assert time.monotonic() - last_renewal >= 6.0 - 0.5
    assert any("nobody followed it" in n for n in job.notices)
    assert TrialState.RUNNING not in [t.state for t in trials_of("lease", sqlite_url)]


def test_every_trial_records_the_pool_worker_that_trained_it(pool, dataset, sqlite_url) -> None:
    plan = StudyPlan(sqlite_url, "attrs", trials=4, epochs=2, space=SMALL)
    job = pool.run_studies(plan, dataset)
    follow(job, pool)
    trials = trials_of("attrs", sqlite_url)
    assert len(trials) == 4 and all(t.state in ENDED for t in trials)
    pids = {records.trial_worker_pid(t) for t in trials}
    assert os.getpid() not in pids and pids <= set(worker_pids(pool))


def test_sessions_share_a_busy_pool_fairly(dataset, sqlite_url) -> None:
    """Two sessions' studies queued behind a busy worker take turns, trial by trial (f s f s ...): the
    dispatcher serves the job with the fewest tasks in flight, then the one served least recently. Both are
    queued before the worker frees up, so the order does not depend on how fast a trial is."""
    pool = open_pool(workers=1, interactive=0)
    try:
        blocker = pool.train(LONG_RUN, dataset)
        wait_until(lambda: blocker.worker is not None, "a Part I run to hold the only worker")
        first = pool.run_studies(StudyPlan(sqlite_url, "first", trials=6, epochs=3, space=SMALL), dataset)
        second = pool.run_studies(StudyPlan(sqlite_url, "second", trials=6, epochs=3, space=SMALL), dataset)
        blocker.stop()
        while first.alive() or second.alive():
            first.renew(), second.renew()
            pool.wait(first, 0.2)
    finally:
        pool.close()
    starts = sorted((t.datetime_start, name) for name in ("first", "second") for t in trials_of(name, sqlite_url))
    assert "".join(name[0] for _, name in starts) == "fs" * 6


# ---------------------------------------------------------------- a fair share: time budgets, Part I first

LONG_TRIALS = SearchSpace(depth=2, min_units=32, max_units=64, min_batch=8, max_batch=16)  # minutes a trial


def test_a_trial_over_the_servers_time_budget_fails_and_the_study_goes_on(pool, dataset, sqlite_url, monkeypatch):
    """The server's FETAL_HPO_TRIAL_SECONDS=1: each trial of 3,000 epochs ends FAIL on its worker with its reason,
    the study runs its next trial, and the job tells the page which trial and why."""
    monkeypatch.setenv("FETAL_HPO_TRIAL_SECONDS", "1")
    job = pool.run_studies(StudyPlan(sqlite_url, "budget", trials=2, epochs=3000, pruner="none", space=SMALL), dataset)
    follow(job, pool, timeout=300)
    assert job.error is None, job.error
    trials = trials_of("budget", sqlite_url)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
    reasons = [t.user_attrs[FAIL_REASON] for t in trials]
    assert all(r.startswith("stopped by the server's time budget of 1 s per trial after epoch ") for r in reasons)
    assert all(t.user_attrs["history"]["epoch"] for t in trials)  # the curve up to the budget is kept
    assert job.budget_failures == [("budget", 0), ("budget", 1)]
    told = [n for n in job.notices if "time budget" in n]
    assert told == [f"trial {i} of budget: {reasons[i]}; it is FAIL and the study goes on" for i in (0, 1)]
    [summary] = job.summaries
    assert summary.failed == 2 and not summary.interrupted


def test_a_part1_run_stops_at_the_servers_time_budget_and_keeps_its_curve(pool, dataset, monkeypatch):
    monkeypatch.setenv("FETAL_HPO_RUN_SECONDS", "2")
    run = pool.train(TrainConfig(hidden_layers=(64, 64), batch_size=8, epochs=3000), dataset)
    follow(run, pool, timeout=300)
    assert run.error is None and run.state == "stopped" and run.result.stopped_by_budget == 2.0
    assert 0 < len(run.history) < 3000 and run.history == [m.to_dict() for m in run.result.history]


def test_a_part1_click_starts_at_once_while_studies_fill_every_study_worker(dataset, sqlite_url, monkeypatch):
    """One study worker busy with a trial that outlasts the test (no time budget) and another study queued
    behind it: a Part I run starts on the reserved worker and finishes while that trial still runs."""
    monkeypatch.setenv("FETAL_HPO_TRIAL_SECONDS", "0")
    pool = open_pool(workers=1)  # and, by default, one worker reserved for Part I
    try:
        busy = pool.run_studies(
            StudyPlan(sqlite_url, "busy", trials=3, epochs=10_000, pruner="none", space=LONG_TRIALS), dataset
        )

        def running_trial():
            renewed(busy)
            running = [t for t in trials_of("busy", sqlite_url) if t.state == TrialState.RUNNING]
            return running[0] if running else None

        trial = wait_until(running_trial, "the study worker to run a trial", timeout=300)
        queued = pool.run_studies(StudyPlan(sqlite_url, "queued", trials=2, epochs=3, space=SMALL), dataset)
        run = pool.train(TrainConfig(epochs=3), dataset)

        def run_done() -> bool:
            for job in (busy, queued, run):
                renewed(job)
            return not run.alive()

        wait_until(run_done, "the Part I run to finish while the study worker is busy", timeout=120)
        assert run.state == "finished" and len(run.history) == 3
        assert int(run.worker.rsplit(":", 1)[1]) != records.trial_worker_pid(trial)
        assert [t.state for t in trials_of("busy", sqlite_url)] == [TrialState.RUNNING]  # not one trial ended
        assert trials_of("queued", sqlite_url) == [] and queued.alive()  # studies never use the reserved worker
    finally:
        pool.close()


def test_a_queued_part1_run_goes_before_every_queued_study(dataset, sqlite_url, monkeypatch):
    """Without a reserved worker (FETAL_HPO_INTERACTIVE_WORKERS=0; on an external cluster too), a Part I run
    queued after a study still gets the next free worker first."""
    monkeypatch.setenv("FETAL_HPO_INTERACTIVE_WORKERS", "0")
    pool = open_pool(workers=1)
    try:
        blocker = pool.train(LONG_RUN, dataset)
        wait_until(lambda: renewed(blocker) and blocker.worker is not None, "a Part I run to hold the only worker")
        study = pool.run_studies(StudyPlan(sqlite_url, "after", trials=1, epochs=3, space=SMALL), dataset)
        run = pool.train(TrainConfig(epochs=3), dataset)
        assert run.queue_position() == 1
        blocker.stop()
        wait_until(lambda: renewed(study) and renewed(run) and not (study.alive() or run.alive()), "both to end", 300)
    finally:
        pool.close()
    assert run.state == "finished" and study.error is None and count("after", sqlite_url) == 1
    assert run.started < study.served  # the dispatcher gave the freed worker to the run first


# ---------------------------------------------------------------- faults


def worker_pids(pool) -> list[int]:
    return list(pool.client.run(os.getpid).values())


def test_a_worker_killed_mid_trial_fails_that_trial_and_the_study_goes_on(dataset, sqlite_url) -> None:
    pool = open_pool(workers=2)  # and the reserved Part I worker
    try:
        plan = StudyPlan(sqlite_url, "killed", trials=3, epochs=150, pruner="none", space=SMALL)
        job = pool.run_studies(plan, dataset)

        def running_trial():
            renewed(job)
            running = [t for t in trials_of("killed", sqlite_url) if t.state == TrialState.RUNNING]
            return running[0] if running and running[0].intermediate_values else None

        victim = wait_until(running_trial, "a RUNNING trial that has reported an epoch", timeout=300)
        pid = records.trial_worker_pid(victim)
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()

        def failed() -> bool:
            job.renew()
            return trials_of("killed", sqlite_url)[victim.number].state == TrialState.FAIL

        wait_until(failed, "the killed worker's trial to be failed", timeout=120)
        failed_after = time.monotonic() - killed_at
        follow(job, pool)
        assert any(f"trial {victim.number} of killed failed" in n for n in job.notices), job.notices
        wait_until(lambda: pool.workers() == 3 and pid not in worker_pids(pool), "the pool to replace the worker")
        assert pool.study_slots() == 2  # the replacement has the study lane's resource, as the dead one had
    finally:
        pool.close()
    states = [t.state for t in trials_of("killed", sqlite_url)]
    assert TrialState.RUNNING not in states
    assert states.count(TrialState.COMPLETE) == 3 and states[victim.number] == TrialState.FAIL
    assert failed_after < 30.0, "the trial should fail well within the heartbeat grace period (30 s)"


def test_an_unreachable_scheduler_is_one_clear_error(monkeypatch, capsys, sqlite_url) -> None:
    monkeypatch.setattr(pool_module, "CONNECT_SECONDS", 2.0)  # Dask retries a refused connection until then
    port = free_port()
    with pytest.raises(PoolError, match=f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}"):
        open_pool(f"tcp://127.0.0.1:{port}")
    monkeypatch.setenv("FETAL_HPO_SCHEDULER", f"tcp://127.0.0.1:{port}")
    assert main(["study", "--storage", sqlite_url, "--trials", "1", "--epochs", "1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot reach the Dask scheduler" in err


# ---------------------------------------------------------------- a second machine: `dask worker` on loopback


LOOPBACK_WORKER = ("--host", "127.0.0.1", "--no-dashboard")  # a test's "second machine" listens on loopback only


def dask_process(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "distributed.cli.dask_" + args[0], *args[1:]]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def test_a_study_shared_by_the_embedded_pool_and_another_machines_worker(dataset, sqlite_url) -> None:
    """An instructor's embedded pool (2 study workers, 1 for Part I) and a `dask worker` that joins it from
    "another machine": three sessions follow one study with a shared target; every trial is accounted for and
    the trials' ``worker`` attrs show both the embedded workers and the joined one (which the pool's plugin
    gave the study lane's resource)."""
    pool = open_pool(workers=2)
    joined = dask_process(
        "worker", pool.address, "--nthreads", "1", "--no-nanny", "--name", "second-machine", *LOOPBACK_WORKER
    )
    try:
        wait_until(lambda: pool.workers() == 4, "the second machine's worker to join", timeout=120)
        # ... and to be warm: a joining worker imports Optuna and scikit-learn (the pool's plugin) before it
        # answers; on a slow machine the two warm ones used to finish all 9 trials meanwhile.
        wait_until(lambda: joined.pid in pool.client.run(os.getpid).values(), "the joined worker to answer", 120)
        wait_until(lambda: pool.study_slots() == 3, "the joined worker to take study trials", 60)
        plan = StudyPlan(sqlite_url, "shared", trials=9, epochs=10, pruner="none", space=SMALL, shared_target=True)
        optuna.create_study(study_name="shared", storage=sqlite_url, direction="maximize").set_user_attr(
            "target_trials", 9
        )
        jobs = [pool.run_studies(plan, dataset) for _ in range(3)]
        while any(job.alive() for job in jobs):
            for job in jobs:
                job.renew()
            pool.wait(jobs[0], 0.2)
        assert all(job.error is None for job in jobs), [job.error for job in jobs]
    finally:
        pool.close()
        stop(joined)
    trials = trials_of("shared", sqlite_url)
    assert all(t.state in ENDED for t in trials) and count("shared", sqlite_url) >= 9
    pids = {records.trial_worker_pid(t) for t in trials}
    assert joined.pid in pids, "the second machine's worker trained nothing"
    assert pids - {joined.pid}, "the embedded workers trained nothing"


def test_the_cli_trains_every_trial_on_the_cluster_it_is_pointed_at(tmp_path, data_path) -> None:
    """`FETAL_HPO_SCHEDULER=tcp://... python -m fetal_core study ...` with a scheduler and one worker started
    by hand: every trial records that worker's pid."""
    port = free_port()
    scheduler = dask_process("scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard")
    worker = dask_process("worker", f"tcp://127.0.0.1:{port}", "--nthreads", "1", "--no-nanny", *LOOPBACK_WORKER)
    url = f"sqlite:///{tmp_path}/cluster.sqlite3"
    name = f"cli-{uuid.uuid4().hex[:8]}"
    try:
        env = dict(os.environ, FETAL_HPO_SCHEDULER=f"tcp://127.0.0.1:{port}", FETAL_HPO_DATA=str(data_path))
        done = subprocess.run(
            cli_study_command(url, name, "--trials", "3", "--epochs", "3", "--depth", "2"),
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        stop(worker)
        stop(scheduler)
    assert done.returncode == 0, done.stderr
    trials = trials_of(name, url)
    assert len(trials) == 3 and all(t.state in ENDED for t in trials)
    assert {records.trial_worker_pid(t) for t in trials} == {worker.pid}
    assert f":{worker.pid}" in done.stdout  # the CLI's progress lines name the worker too


def test_sessions_arriving_while_the_pool_starts_wait_for_it(monkeypatch) -> None:
    """Two students opening the app at once on a fresh server both get the one pool: the second waits for the
    first's start instead of seeing "no pool" and not retrying for 30 s."""
    import fetal_core.pool
    import pages.common as common

    started = []

    class SlowPool:
        def __init__(self) -> None:
            started.append(self)
            time.sleep(1.0)  # a LocalCluster takes seconds to start its workers

        def close(self) -> None:
            pass

    holder = common.PoolHolder()
    monkeypatch.setattr(common, "_pool_holder", lambda: holder)
    monkeypatch.setattr(fetal_core.pool, "open_pool", SlowPool)
    got = []
    sessions = [threading.Thread(target=lambda: got.append(common.compute_pool())) for _ in range(2)]
    for session in sessions:
        session.start()
        time.sleep(0.2)
    for session in sessions:
        session.join()
    assert len(started) == 1 and got == [started[0], started[0]]


def test_embedded_workers_yield_the_cpu_to_the_web_server(pool) -> None:
    """The embedded pool's workers share the server's cores at a lower priority, so pages and the health
    check do not queue behind training (an external cluster's workers keep theirs)."""
    from fetal_core.pool import EMBEDDED_WORKER_NICE

    niceness = pool.client.run(os.nice, 0)
    assert niceness and set(niceness.values()) == {os.nice(0) + EMBEDDED_WORKER_NICE}
