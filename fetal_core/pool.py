"""The compute pool: every training (Part I runs, Part II and race trials, CLI studies on a cluster) runs on
Dask workers, never in the web server.

- Embedded (the default): a ``LocalCluster`` of worker processes, one thread each, as many as cores
  (``FETAL_HPO_POOL_WORKERS`` to change), started once per server and closed with it.
- ``FETAL_HPO_SCHEDULER=tcp://host:port``: an existing Dask cluster, whose workers other machines started with
  ``dask worker tcp://host:port`` (same requirements, the project on ``PYTHONPATH``, the same storage URL).

Work comes as jobs. A ``TrainingRun`` is one Part I run: its epochs stream back live (``pool_tasks``, what runs on
the workers, says how).
A ``StudyRun`` is one or more study plans run trial by trial: one task per trial, never two trials of the same
plan at once (a seeded study stays reproducible, and a race's runs stay sequential). A dispatcher thread hands
each free worker slot to the job with the fewest tasks in flight, then to the one served least recently, so a
student who presses Train waits for one trial, not for another student's whole study.

A job runs while its owner renews its lease (the page, every few seconds); Stop and an expired lease set a
``distributed.Event`` that the task checks between epochs, so the running trial is told FAIL and a Part I run
returns what it trained. A worker killed mid-task: Dask runs the task again on another worker (the pool replaces
the dead process); the dispatcher FAILs the trial the dead worker left RUNNING and tells the page.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from optuna.trial import TrialState

from .data import Dataset
from .pool_tasks import TOPIC, train_task, trial_task
from .search import (
    StudyPlan,
    StudySummary,
    open_study,
    summarize,
)
from .training import TrainConfig, TrainResult

SCHEDULER_ENV = "FETAL_HPO_SCHEDULER"
WORKERS_ENV = "FETAL_HPO_POOL_WORKERS"
RUN_LEASE_SECONDS = 15.0  # a Part I page renews while it waits; a closed tab frees the slot after this
STUDY_LEASE_SECONDS = 30.0  # the sidebar renews a study every 5 s
CONNECT_SECONDS = 10.0
DEFAULT_TASK_SECONDS = 5.0  # queue estimate before any task has finished


class PoolError(RuntimeError):
    """The compute pool cannot be started or reached (one line, for the page or the CLI)."""


# ---------------------------------------------------------------- jobs (held by the server)

_JOB_IDS = itertools.count(1)


@dataclass
class _Task:
    future: object
    plan_index: int = -1
    submitted: float = field(default_factory=time.monotonic)
    address: str | None = None
    worker: str | None = None
    trial: tuple[str, str, int] | None = None  # (storage URL, study, number) once the trial exists
    abandoned: list[tuple[str | None, tuple[str, str, int]]] = field(default_factory=list)  # (worker, trial)


@dataclass(eq=False)
class Job:
    """What jobs share: lease, stop, tasks in flight, messages for the page."""

    lease_seconds: float
    pool: Pool = field(repr=False)
    id: str = ""
    created: float = field(default_factory=time.monotonic)
    renewed: float = field(default_factory=time.monotonic)
    served: float = -math.inf
    tasks: list[_Task] = field(default_factory=list)
    stopped: bool = False
    finished: bool = False
    error: str | None = None
    notices: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.id = f"{type(self).__name__.lower()}-{os.getpid()}-{next(_JOB_IDS)}"

    @property
    def stop_name(self) -> str:
        return f"{self.id}-stop"

    def renew(self) -> None:
        """The owner is still there (call at least every ``lease_seconds``)."""
        self.renewed = time.monotonic()

    def alive(self) -> bool:
        return not self.finished

    def poll(self) -> None:
        """Nothing to collect: the dispatcher updates the job (kept for the pages' worker loop)."""

    def stop(self, timeout: float = 20.0) -> None:
        """Stop: no new task; the running one ends at its next epoch (a trial becomes FAIL). Waits up to
        ``timeout`` for the job to finish."""
        self.pool._stop(self)
        self.pool._wait(lambda: self.finished, timeout)

    # the dispatcher's side
    def wants_task(self) -> bool:
        raise NotImplementedError

    def next_task(self) -> tuple[Callable, tuple, int]:
        raise NotImplementedError

    def task_done(self, task: _Task, result, error: BaseException | None) -> None:
        raise NotImplementedError

    def on_finish(self) -> None:
        """Called once, when the last task has ended (or at a stop with none running)."""


@dataclass(eq=False)
class TrainingRun(Job):
    """One Part I run: ``history`` grows live; ``result`` once it has finished or stopped."""

    config: TrainConfig | None = None
    data: Dataset | None = field(default=None, repr=False)
    history: list[dict] = field(default_factory=list)
    result: TrainResult | None = None
    worker: str | None = None
    started: float | None = None
    queued_seconds: float = 0.0

    @property
    def state(self) -> str:
        if self.error:
            return "failed"
        if self.result is not None:
            return "stopped" if self.result.stopped_early else "finished"
        if self.finished:
            return "stopped"
        return "running" if self.started is not None else "queued"

    def wants_task(self) -> bool:
        return not self.stopped and not self.tasks and not self.finished and self.started is None

    def next_task(self):
        self.started = time.monotonic()
        self.queued_seconds = self.started - self.created
        return train_task, (self.id, self.config, self.data, self.stop_name), -1

    def task_done(self, task, result, error) -> None:
        if error is not None:
            self.error = f"{type(error).__name__}: {error}"
        else:
            self.result = result
            self.history = [m.to_dict() for m in result.history]
        self.finished = True

    def queue_position(self) -> int | None:
        """1 for the next run to start; None once running."""
        return self.pool._position(self)

    def estimated_wait(self) -> float:
        """Seconds until this queued run starts, from how long recent tasks took."""
        position = self.queue_position()
        if position is None:
            return 0.0
        return self.pool.mean_task_seconds * position / max(1, self.pool.slots())


@dataclass
class _PlanState:
    plan: StudyPlan
    ran: int = 0
    busy: bool = False
    done: bool = False


@dataclass(eq=False)
class StudyRun(Job):
    """One or more study plans (Part II's study, a race's runs), trial by trial, one trial per plan at a time.

    The interface of the old worker processes: ``plans``, ``summaries``, ``error``, ``alive()``, ``renew()``,
    ``stop()``.
    """

    plans: list[StudyPlan] = field(default_factory=list)
    data: Dataset | None = field(default=None, repr=False)
    states: list[_PlanState] = field(default_factory=list)
    summaries: list[StudySummary] = field(default_factory=list)
    interrupted: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        self.states = [_PlanState(plan) for plan in self.plans]

    def wants_task(self) -> bool:
        return not self.stopped and self.error is None and any(self._idle())

    def _idle(self) -> list[_PlanState]:
        return [s for s in self.states if not s.busy and not s.done and s.ran < s.plan.trials]

    def next_task(self):
        # The run with the fewest trials so far goes next: all of a race's runs advance together.
        index = min(range(len(self.states)), key=lambda i: (self.states[i] not in self._idle(), self.states[i].ran))
        state = self.states[index]
        state.busy = True
        return trial_task, (self.id, state.plan, self.data, self.stop_name), index

    def task_done(self, task, result, error) -> None:
        state = self.states[task.plan_index]
        state.busy = False
        if error is not None:
            self.error = f"{type(error).__name__}: {error}"
            state.done = True
        else:
            state.ran += result.get("ran", 0)
            if result.get("lost") is not None:
                self.notices.append(
                    f"trial {result['lost']} of {state.plan.study_name} was failed by another process while it "
                    "ran; the study goes on"
                )
            if result.get("interrupted"):
                self.interrupted = True
                state.done = True
            if result.get("target_reached") or state.ran >= state.plan.trials:
                state.done = True

    def on_finish(self) -> None:
        """One summary per plan that ran or was stopped, read from the storage."""
        for state in self.states:
            if not (state.ran or state.done or self.stopped):
                continue
            try:
                study = open_study(state.plan, self.pool._storage(state.plan.storage_url))
                interrupted = self.interrupted or (self.stopped and state.ran < state.plan.trials)
                self.summaries.append(summarize(study, ran=state.ran, interrupted=interrupted))
            except Exception as err:  # the storage went away: the study's trials are still in it
                self.notices.append(f"could not summarise study {state.plan.study_name}: {err}")


# ---------------------------------------------------------------- the pool


def _worker_threads(dask_scheduler) -> dict[str, int]:
    """Run on the scheduler: every live worker's address and thread count."""
    return {address: worker.nthreads for address, worker in dask_scheduler.workers.items()}


EMBEDDED_WORKER_NICE = 10  # the embedded workers run on the web server's own cores: the pages go first


class Pool:
    """A Dask client (and, when embedded, its LocalCluster) plus the dispatcher that shares it fairly."""

    def __init__(self, client, cluster=None) -> None:
        self.client, self.cluster = client, cluster
        self.address: str = client.scheduler.address
        self._lock = threading.Condition()
        self._jobs: list[Job] = []
        self._storages: dict[str, object] = {}
        self._live_workers: set[str] = set()
        self._seen_workers: set[str] = set()  # every worker address ever live: only those can die
        self._slots = 1
        self._checked = -math.inf
        self.mean_task_seconds = DEFAULT_TASK_SECONDS
        self._closed = False
        from .warmup import WarmUp

        client.register_plugin(WarmUp(nice=EMBEDDED_WORKER_NICE if cluster is not None else 0))
        self._refresh_workers()
        client.subscribe_topic(TOPIC, self._on_event)
        self._thread = threading.Thread(target=self._dispatch_loop, name="fetal-hpo-dispatcher", daemon=True)
        self._thread.start()

    # ------------------------------------------------ public

    def slots(self) -> int:
        """Worker threads in the cluster (the number of trainings that run at once)."""
        return self._slots

    def workers(self) -> int:
        """Worker processes the scheduler knows now."""
        return len(self._live_workers)

    def jobs(self) -> list[Job]:
        """The jobs queued or running now (every session's)."""
        with self._lock:
            return list(self._jobs)

    def train(self, config: TrainConfig, data: Dataset, lease_seconds: float = RUN_LEASE_SECONDS) -> TrainingRun:
        """Queue one Part I run; follow it through the returned handle."""
        return self._add(TrainingRun(lease_seconds=lease_seconds, pool=self, config=config, data=data))

    def run_studies(
        self, plans: StudyPlan | list[StudyPlan], data: Dataset, lease_seconds: float = STUDY_LEASE_SECONDS
    ) -> StudyRun:
        """Queue the plans' trials (a Part II study, a race's runs); follow them through the handle."""
        plans = [plans] if isinstance(plans, StudyPlan) else list(plans)
        job = StudyRun(lease_seconds=lease_seconds, pool=self, plans=plans, data=data)
        if not plans:
            job.finished = True
            return job
        return self._add(job)

    def wait(self, job: Job, timeout: float) -> None:
        """Block up to ``timeout`` seconds or until the pool has news (new epochs, a finished task)."""
        with self._lock:
            self._lock.wait(timeout)

    def close(self) -> None:
        """Stop every job, then the client and (when embedded) the cluster's worker processes."""
        if self._closed:
            return
        for job in list(self._jobs):
            self._stop(job)
        self._closed = True
        with self._lock:
            self._lock.notify_all()
        self._thread.join(5)
        for closing in (self.client, self.cluster):
            if closing is not None:
                try:
                    closing.close()
                except Exception:  # already gone (the scheduler stopped first)
                    pass

    # ------------------------------------------------ internals

    def _add(self, job: Job) -> Job:
        with self._lock:
            self._jobs.append(job)
            self._lock.notify_all()
        return job

    def _stop(self, job: Job) -> None:
        from distributed import Event

        with self._lock:
            if job.stopped:
                return
            job.stopped = True
            running = bool(job.tasks)
            self._lock.notify_all()
        if not running:
            self._finish(job)
        else:
            try:
                Event(job.stop_name, client=self.client).set()
            except Exception as err:  # the scheduler is gone: its tasks are gone too
                job.notices.append(f"could not reach the scheduler to stop: {err}")

    def _wait(self, condition: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            while not condition() and time.monotonic() < deadline:
                self._lock.wait(min(0.1, max(0.0, deadline - time.monotonic())))

    def _storage(self, url: str):
        from .storage import open_storage

        if url not in self._storages:
            self._storages[url] = open_storage(url)
        return self._storages[url]

    def _position(self, job: Job) -> int | None:
        with self._lock:
            if job.tasks or job.finished or getattr(job, "started", None) is not None:
                return None
            waiting = sorted((j for j in self._jobs if j.wants_task()), key=self._priority)
            return waiting.index(job) + 1 if job in waiting else None

    @staticmethod
    def _priority(job: Job) -> tuple:
        return (len(job.tasks), job.served, job.created)

    def _on_event(self, event) -> None:  # runs on the client's event loop thread
        _, message = event
        with self._lock:
            job = next((j for j in self._jobs if j.id == message.get("job")), None)
            if job is None:
                return
            task = next((t for t in job.tasks if str(t.future.key) == message.get("task")), None)
            kind = message.get("kind")
            if task is not None and task.trial is not None and task.address not in (None, message["address"]):
                # Dask reruns the task of a worker that died, possibly before the dispatcher saw it die: the
                # dead worker's trial is still RUNNING; the dispatcher fails it.
                task.abandoned.append((task.worker, task.trial))
                task.trial = None
            if isinstance(job, TrainingRun):
                if kind == "start":
                    if job.worker is not None and job.worker != message["worker"]:
                        job.notices.append(
                            f"the worker training this run ({job.worker}) stopped; the run started again on "
                            f"{message['worker']}"
                        )
                        job.history = []
                    job.worker = message["worker"]
                elif kind == "epochs":
                    job.history.extend(message["epochs"])
            elif kind == "trial" and task is not None:
                task.trial = (message["storage"], message["study"], int(message["number"]))
            if task is not None:
                task.address, task.worker = message["address"], message["worker"]
            self._lock.notify_all()

    def _refresh_workers(self) -> None:
        # Asked of the scheduler itself: the client's cached view lags by seconds, and a worker that joined
        # since (a replacement) would look dead.
        threads = self.client.run_on_scheduler(_worker_threads)
        self._seen_workers |= set(threads)
        self._live_workers = set(threads)
        self._slots = max(1, sum(threads.values()))
        self._checked = time.monotonic()

    def _dispatch_loop(self) -> None:
        while not self._closed:
            try:
                with self._lock:
                    self._lock.wait(0.1)
                if self._closed:
                    return
                if time.monotonic() - self._checked >= 1.0:
                    self._refresh_workers()
                    self._fail_trials_of_dead_workers()
                self._collect()
                self._expire_leases()
                self._dispatch()
            except Exception as err:  # the scheduler went away: say so on every job, keep the server up
                logging.getLogger(__name__).warning("compute pool: %s", err)
                with self._lock:
                    for job in self._jobs:
                        if not job.finished and job.tasks:
                            job.notices.append(f"the compute pool had a problem: {err}")
                time.sleep(1.0)

    def _collect(self) -> None:
        for job in list(self._jobs):
            for task in list(job.tasks):
                status = task.future.status
                if status == "pending":
                    continue
                result, error = None, None
                if status == "finished":
                    result = task.future.result()
                    seconds = time.monotonic() - task.submitted
                    self.mean_task_seconds = 0.8 * self.mean_task_seconds + 0.2 * seconds
                elif status == "cancelled":
                    error = PoolError("the task was cancelled (the scheduler restarted?)")
                else:
                    error = task.future.exception()
                with self._lock:
                    job.tasks.remove(task)
                    job.task_done(task, result, error)
                    done = not job.tasks and (job.stopped or job.error is not None or not job.wants_task())
                if done:
                    self._finish(job)
        with self._lock:
            self._jobs = [j for j in self._jobs if not j.finished]

    def _finish(self, job: Job) -> None:
        job.on_finish()  # outside the lock: it may read the storage
        with self._lock:
            job.finished = True
            self._lock.notify_all()

    def _expire_leases(self) -> None:
        now = time.monotonic()
        for job in list(self._jobs):
            if not job.stopped and now - job.renewed > job.lease_seconds:
                job.notices.append("stopped: nobody followed it any more (the page was closed)")
                self._stop(job)

    def _dispatch(self) -> None:
        while True:
            with self._lock:
                free = self._slots - sum(len(j.tasks) for j in self._jobs)
                waiting = [j for j in self._jobs if j.wants_task()]
                if free <= 0 or not waiting:
                    return
                job = min(waiting, key=self._priority)
                function, args, plan_index = job.next_task()
                job.served = time.monotonic()
            future = self.client.submit(function, *args, pure=False, key=f"{job.id}-{time.time_ns()}")
            with self._lock:
                job.tasks.append(_Task(future=future, plan_index=plan_index))

    def _fail_trials_of_dead_workers(self) -> None:
        """A task whose worker vanished left its trial RUNNING: FAIL it now (Dask reruns the task elsewhere)."""
        for job in list(self._jobs):
            for task in list(job.tasks):
                with self._lock:
                    lost, task.abandoned = task.abandoned, []
                    dead = task.address is not None and task.address not in self._live_workers
                    if dead and task.address in self._seen_workers:  # (one that joined after the last look is new)
                        if task.trial is not None:
                            lost.append((task.worker, task.trial))
                        task.address, task.trial = None, None  # the rerun reports its own worker
                for worker, trial in lost:
                    self._fail_lost_trial(job, worker, trial)

    def _fail_lost_trial(self, job: Job, worker: str | None, trial: tuple[str, str, int]) -> None:
        url, study_name, number = trial
        try:
            storage = self._storage(url)
            study_id = storage.get_study_id_from_name(study_name)
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
            if storage.get_trial(trial_id).state == TrialState.RUNNING:
                storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except Exception as err:  # the storage's own heartbeat reaping catches it later
            job.notices.append(f"trial {number}: could not mark it failed yet ({err})")
        job.notices.append(
            f"trial {number} of {study_name} failed: its worker {worker} stopped; the pool replaced it and the "
            "study goes on"
        )


def open_pool(address: str | None = None, workers: int | None = None) -> Pool:
    """Connect to ``address`` (default ``$FETAL_HPO_SCHEDULER``) or start the embedded LocalCluster.

    Raises ``PoolError`` with one line when the scheduler cannot be reached.
    """
    from distributed import Client, LocalCluster

    address = (address or os.environ.get(SCHEDULER_ENV) or "").strip() or None
    if address is not None:
        try:
            client = Client(address, timeout=CONNECT_SECONDS, set_as_default=False)
        except Exception as err:
            message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise PoolError(f"compute pool: cannot reach the Dask scheduler at {address}: {message}") from None
        return Pool(client)
    if workers is None:
        try:
            workers = int(os.environ.get(WORKERS_ENV) or 0) or None
        except ValueError:
            workers = None
    workers = max(1, workers or os.cpu_count() or 1)
    import dask

    # Dask's statistical profiler samples a worker's task thread every 10 ms: measured here, it made our
    # small-step training loop 2-2.5x slower on a pool worker than in the CLI (benchmarks/pool_streaming).
    dask.config.set({"distributed.worker.profile.enabled": False})
    try:
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        client = Client(cluster, set_as_default=False)
    except Exception as err:
        raise PoolError(f"compute pool: cannot start {workers} local worker(s): {err}") from None
    return Pool(client, cluster)
