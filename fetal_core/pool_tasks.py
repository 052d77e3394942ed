"""What runs on a pool worker (``fetal_core.pool`` submits it): one Part I run or one study trial per task.

A task talks to the pool through a ``_Channel``: its epochs go out batched, a few per ``FLUSH_SECONDS``, through the
worker's event log (~30 µs an event, where a ``distributed.Queue.put`` costs ~10 ms), and it looks at its job's
stop ``distributed.Event`` as often. The data set arrives with every task; its split is made once per worker.
"""

from __future__ import annotations

import hashlib
import math
import time

from optuna.trial import TrialState

from . import records
from .data import Dataset, Split, split_dataset
from .search import (
    StudyInterrupted,
    StudyPlan,
    make_objective,
    open_study,
    run_trials,
    target_reached,
)
from .training import TrainConfig, TrainResult, train

TOPIC = "fetal-hpo"  # the workers' event-log topic the pool subscribes to
FLUSH_SECONDS = 0.2  # a task sends its epochs and looks at its stop event at most this often


_SPLITS: dict[tuple[str, bool], Split] = {}  # per worker process: the data set arrives with every task
_STORAGES: dict[str, object] = {}


def worker_split(data: Dataset, standardize: bool) -> Split:
    """The notebook's split of ``data``, made once per worker process (the data set arrives with every task)."""
    digest = hashlib.sha1(data.features.tobytes() + data.labels.tobytes()).hexdigest()
    key = (digest, standardize)
    if key not in _SPLITS:
        if len(_SPLITS) >= 8:
            _SPLITS.clear()
        _SPLITS[key] = split_dataset(data, standardize=standardize)
    return _SPLITS[key]


def _storage(url: str):
    from .storage import open_storage

    if url not in _STORAGES:
        _STORAGES[url] = open_storage(url)
    return _STORAGES[url]


class _Channel:
    """A task's line to the pool: batched epochs out, the stop event in (both at most every FLUSH_SECONDS)."""

    def __init__(self, job: str, stop_name: str) -> None:
        from distributed import Event, get_worker

        self.job, self.worker = job, get_worker()
        self.key = str(self.worker.get_current_task())
        self.stop_event = Event(stop_name)
        self.buffer: list[dict] = []
        self.last_flush = -math.inf
        self.stopped = False

    def send(self, kind: str, **payload) -> None:
        sender = {"job": self.job, "task": self.key, "worker": records.this_process(), "address": self.worker.address}
        self.worker.log_event(TOPIC, sender | {"kind": kind} | payload)

    def flush(self) -> None:
        if self.buffer:
            self.send("epochs", epochs=self.buffer)
            self.buffer = []
        self.last_flush = time.monotonic()
        self.stopped = self.stopped or self.stop_event.is_set()

    def epoch(self, metrics) -> bool:
        """``train``'s per-epoch callback: queue the epoch, flush when due; True once the run must stop."""
        self.buffer.append(metrics.to_dict())
        if time.monotonic() - self.last_flush >= FLUSH_SECONDS:
            self.flush()
        return self.stopped

    def should_stop(self) -> bool:
        if time.monotonic() - self.last_flush >= FLUSH_SECONDS:
            self.flush()
        return self.stopped


def train_task(
    job: str, config: TrainConfig, data: Dataset, stop_name: str, time_budget: float | None = None
) -> TrainResult:
    """One Part I run on a worker, streaming its epochs; returns the result (without the network). It ends at
    ``time_budget`` seconds (the server's), keeping what it trained."""
    channel = _Channel(job, stop_name)
    channel.send("start")
    result = train(config, worker_split(data, config.standardize), channel.epoch, time_budget=time_budget)
    channel.flush()
    result.model = None
    return result


def trial_task(job: str, plan: StudyPlan, data: Dataset, stop_name: str, time_budget: float | None = None) -> dict:
    """One trial of ``plan`` on a worker (the study's sampler and pruner are rebuilt from the storage); a trial
    longer than ``time_budget`` seconds (the server's) is FAIL and its reason comes back as ``fail_reason``."""
    channel = _Channel(job, stop_name)
    study = open_study(plan, _storage(plan.storage_url))
    from .storage import reap_stale_trials

    reap_stale_trials(study)
    if plan.shared_target and target_reached(study):
        return {"ran": 0, "target_reached": True}
    objective = make_objective(plan, worker_split(data, plan.standardize), channel.should_stop, time_budget)
    finished: list = []
    started: list = []

    def announced(trial):
        started.append(trial)
        channel.send("trial", storage=plan.storage_url, study=plan.study_name, number=trial.number)
        return objective(trial)

    try:
        run_trials(study, announced, 1, [lambda _study, trial: finished.append(trial)])
    except StudyInterrupted:
        return {"ran": 0, "interrupted": True}
    except Exception:
        # Another process failed our trial while it ran (the pool took its worker for dead, or the storage
        # reaped it after a heartbeat delayed by an overloaded machine): Optuna then cannot tell it. The trial
        # is FAIL already; the study goes on.
        if started and study.get_trials(deepcopy=False)[started[0].number].state != TrialState.RUNNING:
            return {"ran": 0, "lost": started[0].number}
        raise
    trial = finished[-1] if finished else None
    return {
        "ran": 1,
        "number": None if trial is None else trial.number,
        "state": None if trial is None else trial.state.name,
        "value": None if trial is None else trial.value,
        "fail_reason": None if trial is None else records.trial_fail_reason(trial),
        "interrupted": channel.stopped,
    }
