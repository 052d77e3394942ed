"""The compute pool: every training (Part I runs, Part II and race trials, CLI studies on a cluster) runs on
Dask workers, never in the web server.

- Embedded (the default): a ``LocalCluster`` of worker processes, one thread each, as many as cores
  (``FETAL_HPO_POOL_WORKERS`` to change), plus one interactive worker that only Part I runs use
  (``FETAL_HPO_INTERACTIVE_WORKERS``, 0 for none), started once per server and closed with it.
- ``FETAL_HPO_SCHEDULER=tcp://host:port``: an existing Dask cluster, whose workers other machines started with
  ``dask worker tcp://host:port`` (same requirements, the project on ``PYTHONPATH``, the same storage URL).

Work comes as jobs. A ``TrainingRun`` is one Part I run: its epochs stream back live (``pool_tasks``, what runs on
the workers, says how).
A ``StudyRun`` is one or more study plans run trial by trial: one task per trial, never two trials of the same
plan at once (a seeded study stays reproducible, and a race's runs stay sequential). A dispatcher thread hands
each free worker slot to the job with the fewest tasks in flight, then to the one served least recently, so a
student who presses Train waits for one trial, not for another student's whole study.

Part I is the interactive part of a lesson, so it never queues behind studies: Part I runs go before every
study in the queue, and the embedded cluster keeps a reserved worker (Dask resource ``interactive``) that study
trials cannot use (they ask for the resource ``study``, which every other worker has), so a Part I click
starts at once while studies fill every other worker. The reserved worker oversubscribes the cores while it
trains (studies slow down meanwhile: ``benchmarks/class_fairness.py`` measures by how much) and costs nothing
while idle. On an external cluster (``FETAL_HPO_SCHEDULER``) the priority alone applies. Every training has the
server's time budget (``config.time_budget``), enforced on the worker: no task holds a worker longer, which
also bounds a queued run's wait.

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

from .config import time_budget
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
INTERACTIVE_ENV = "FETAL_HPO_INTERACTIVE_WORKERS"
INTERACTIVE, STUDY = "interactive", "study"  # the embedded workers' Dask resources: the lanes a task may use
RUN_LEASE_SECONDS = 15.0  # a Part I page renews while it waits; a closed tab frees the slot after this
STUDY_LEASE_SECONDS = 30.0  # the sidebar renews a study every 5 s
CONNECT_SECONDS = 10.0
STARTUP_SECONDS = 180.0  # the embedded workers' start (a loaded 2-core machine took over 60 s once)
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
    lane: str = STUDY
    budget: float | None = None  # seconds: the task ends by then (plus its set-up)


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
    budget_seconds: float | None = None  # the server's time budget per task (a run, a trial)

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
        return train_task, (self.id, self.config, self.data, self.stop_name, self.budget_seconds), -1

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
        """Seconds until this queued run starts, from how long recent tasks took (at most ``longest_wait``)."""
        position = self.queue_position()
        if position is None:
            return 0.0
        estimate = self.pool.mean_task_seconds * position / max(1, self.pool.slots())
        latest = self.longest_wait()
        return estimate if latest is None else min(estimate, latest)

    def longest_wait(self) -> float | None:
        """Seconds by which this queued run starts at the latest, from the time budgets of the tasks before it
        (None when a task has no budget or the run is not queued)."""
        position = self.queue_position()
        return None if position is None else self.pool._latest_start(position, self.budget_seconds)


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
    budget_failures: list[tuple[str, int]] = field(default_factory=list)  # (study, trial) stopped by the budget

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
        return trial_task, (self.id, state.plan, self.data, self.stop_name, self.budget_seconds), index

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
            if result.get("state") == "FAIL" and result.get("fail_reason"):
                self.budget_failures.append((state.plan.study_name, result["number"]))
                self.notices.append(
                    f"trial {result['number']} of {state.plan.study_name}: {result['fail_reason']}; it is FAIL "
                    "and the study goes on"
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


def _worker_threads(dask_scheduler) -> dict[str, tuple[int, list[str]]]:
    """Run on the scheduler: every live worker's address, thread count and resource names."""
    return {address: (w.nthreads, sorted(w.resources)) for address, w in dask_scheduler.workers.items()}


EMBEDDED_WORKER_NICE = 10  # the embedded workers run on the web server's own cores: the pages go first


class Pool:
    """A Dask client (and, when embedded, its LocalCluster) plus the dispatcher that shares it fairly."""

    def __init__(self, client, cluster=None) -> None:
        self.client, self.cluster = client, cluster
        self.reserved = cluster is not None  # lanes by Dask resources (embedded); priority alone (external)
        self.address: str = client.scheduler.address
        self._lock = threading.Condition()
        self._jobs: list[Job] = []
        self._storages: dict[str, object] = {}
        self._live_workers: set[str] = set()
        self._seen_workers: set[str] = set()  # every worker address ever live: only those can die
        self._slots = 1
        self._lanes = {INTERACTIVE: 0, STUDY: 1}
        self._checked = -math.inf
        self.mean_task_seconds = DEFAULT_TASK_SECONDS
        self._closed = False
        from .warmup import WarmUp

        client.register_plugin(WarmUp(nice=EMBEDDED_WORKER_NICE if self.reserved else 0, tag=self.reserved))
        self._refresh_workers()
        client.subscribe_topic(TOPIC, self._on_event)
        self._thread = threading.Thread(target=self._dispatch_loop, name="fetal-hpo-dispatcher", daemon=True)
        self._thread.start()

    # ------------------------------------------------ public

    def slots(self) -> int:
        """Worker threads in the cluster (the number of trainings that run at once)."""
        return self._slots

    def study_slots(self) -> int:
        """Worker threads that study trials may use (all but the reserved interactive ones)."""
        return self._lanes[STUDY]

    def workers(self) -> int:
        """Worker processes the scheduler knows now."""
        return len(self._live_workers)

    def jobs(self) -> list[Job]:
        """The jobs queued or running now (every session's)."""
        with self._lock:
            return list(self._jobs)

    def train(self, config: TrainConfig, data: Dataset, lease_seconds: float = RUN_LEASE_SECONDS) -> TrainingRun:
        """Queue one Part I run (ahead of every study); follow it through the returned handle."""
        budget = time_budget().run_seconds
        return self._add(
            TrainingRun(lease_seconds=lease_seconds, pool=self, config=config, data=data, budget_seconds=budget)
        )

    def run_studies(
        self, plans: StudyPlan | list[StudyPlan], data: Dataset, lease_seconds: float = STUDY_LEASE_SECONDS
    ) -> StudyRun:
        """Queue the plans' trials (a Part II study, a race's runs); follow them through the handle."""
        plans = [plans] if isinstance(plans, StudyPlan) else list(plans)
        budget = time_budget().trial_seconds
        job = StudyRun(lease_seconds=lease_seconds, pool=self, plans=plans, data=data, budget_seconds=budget)
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
        # Part I runs first: the interactive part of a lesson never queues behind studies.
        return (not isinstance(job, TrainingRun), len(job.tasks), job.served, job.created)

    @staticmethod
    def _lanes_for(job: Job) -> tuple[str, ...]:
        return (INTERACTIVE, STUDY) if isinstance(job, TrainingRun) else (STUDY,)

    def _latest_start(self, position: int, own_budget: float | None) -> float | None:
        """Seconds until the ``position``-th queued Part I run starts at the latest: the busy tasks end by their
        budgets, then each earlier run holds the freed worker for at most its own."""
        with self._lock:
            now = time.monotonic()
            ends = [
                None if t.budget is None else max(0.0, t.submitted + t.budget - now)
                for j in self._jobs
                for t in j.tasks
            ]
        if not ends or None in ends or (own_budget is None and position > len(ends)):
            return None
        ends.sort()
        rounds, index = divmod(position - 1, len(ends))
        return ends[index] + rounds * (own_budget or 0.0)

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
        workers = self.client.run_on_scheduler(_worker_threads)
        self._seen_workers |= set(workers)
        self._live_workers = set(workers)
        total = sum(threads for threads, _ in workers.values())
        interactive = sum(threads for threads, resources in workers.values() if INTERACTIVE in resources)
        study = sum(threads for threads, resources in workers.values() if STUDY in resources)
        with self._lock:
            self._slots = max(1, total)
            # An external cluster's workers have no lanes; a worker that joined the embedded one gets STUDY from
            # the warm-up plugin and counts once it has it.
            self._lanes = {INTERACTIVE: interactive, STUDY: study} if self.reserved else {INTERACTIVE: 0, STUDY: total}
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
                free = dict(self._lanes)
                for task in (t for j in self._jobs for t in j.tasks):
                    free[task.lane] -= 1
                chosen = None
                for job in sorted((j for j in self._jobs if j.wants_task()), key=self._priority):
                    lane = next((lane for lane in self._lanes_for(job) if free[lane] > 0), None)
                    if lane is not None:
                        chosen = job, lane
                        break
                if chosen is None:
                    return
                job, lane = chosen
                function, args, plan_index = job.next_task()
                job.served = time.monotonic()
            resources = {lane: 1} if self.reserved else None
            future = self.client.submit(
                function, *args, pure=False, key=f"{job.id}-{time.time_ns()}", resources=resources
            )
            with self._lock:
                job.tasks.append(_Task(future=future, plan_index=plan_index, lane=lane, budget=job.budget_seconds))

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


def _count_from_env(name: str, default: int) -> int:
    try:
        return max(0, int(os.environ.get(name) or default))
    except ValueError:
        return default


def open_pool(address: str | None = None, workers: int | None = None, interactive: int | None = None) -> Pool:
    """Connect to ``address`` (default ``$FETAL_HPO_SCHEDULER``) or start the embedded LocalCluster: ``workers``
    study workers (default ``$FETAL_HPO_POOL_WORKERS`` or one per core) and ``interactive`` workers reserved for
    Part I runs (default ``$FETAL_HPO_INTERACTIVE_WORKERS`` or 1).

    Raises ``PoolError`` with one line when the scheduler cannot be reached or the time budget is not valid.
    """
    from distributed import Client, LocalCluster

    from .limits import ConfigError

    try:
        time_budget()  # checked once here: one line on the page or from the CLI, not an error at every Train
    except ConfigError as err:
        raise PoolError(f"compute pool: {err}") from None
    address = (address or os.environ.get(SCHEDULER_ENV) or "").strip() or None
    if address is not None:
        try:
            client = Client(address, timeout=CONNECT_SECONDS, set_as_default=False)
        except Exception as err:
            message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise PoolError(f"compute pool: cannot reach the Dask scheduler at {address}: {message}") from None
        return Pool(client)
    if workers is None:
        workers = _count_from_env(WORKERS_ENV, 0) or None
    workers = max(1, workers or os.cpu_count() or 1)
    interactive = max(0, _count_from_env(INTERACTIVE_ENV, 1) if interactive is None else interactive)
    import dask

    # Dask's statistical profiler samples a worker's task thread every 10 ms: measured here, it made our
    # small-step training loop 2-2.5x slower on a pool worker than in the CLI (benchmarks/pool_streaming).
    dask.config.set({"distributed.worker.profile.enabled": False})
    try:
        from distributed.worker_memory import parse_memory_limit

        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.ERROR,
            resources={STUDY: 1},
            memory_limit=parse_memory_limit("auto", 1, workers + interactive, logger=logging.getLogger(__name__)),
        )
        if interactive:  # the reserved workers: the same spec with the other resource (a nanny restarts one as it was)
            study_spec = cluster.new_spec
            cluster.new_spec = {**study_spec, "options": {**study_spec["options"], "resources": {INTERACTIVE: 1}}}
            cluster.scale(workers + interactive)
            cluster.new_spec = study_spec
        client = Client(cluster, set_as_default=False)
        client.wait_for_workers(workers + interactive, timeout=STARTUP_SECONDS)
    except Exception as err:
        raise PoolError(f"compute pool: cannot start {workers} local worker(s): {err}") from None
    return Pool(client, cluster)
