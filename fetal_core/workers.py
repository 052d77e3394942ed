"""Study workers: run one or more study plans in a separate process, stoppable, with a lease.

A page never trains a study in its own script: it starts a worker (a ``spawn`` process, so several
students' studies use both cores and nothing forked inherits torch/BLAS thread state) and follows the
study in the storage. The worker

- stops cleanly when asked (``stop()``): the running trial is told FAIL at its next epoch, finished
  trials stay, the study can be continued later;
- stops by itself when its owner stops renewing the lease (the browser tab was closed);
- falls back to SIGTERM (``SystemExit`` inside the worker, which also fails the trial) if a cooperative
  stop does not end it in time.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import time
from dataclasses import dataclass, field

from .data import Dataset
from .search import StudyPlan, StudySummary

LEASE_SECONDS = 30.0


def _worker_main(plans: list[StudyPlan], data: str | Dataset, stop_event, lease, lease_seconds: float, messages):
    # Runs in the child process. Imports stay inside: a spawned child imports only what it needs.
    def terminate(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the server's terminal is the server's business

    import optuna

    from .data import load_dataset
    from .search import run_study
    from .storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def should_stop() -> bool:
        if stop_event.is_set():
            return True
        if time.time() - lease.value > lease_seconds:
            stop_event.set()  # nobody is watching any more (tab closed)
            return True
        return False

    try:
        if not isinstance(data, Dataset):
            data = load_dataset(data)
        storages: dict[str, optuna.storages.BaseStorage] = {}
        for plan in plans:
            if should_stop():
                break
            storage = storages.get(plan.storage_url) or open_storage(plan.storage_url)
            storages[plan.storage_url] = storage
            summary = run_study(plan, data, storage, should_stop=should_stop)
            messages.put(("study", summary))
        messages.put(("done", None))
    except Exception as err:  # reported to the page as one line; the process then exits
        messages.put(("error", f"{type(err).__name__}: {err}"))


@dataclass
class StudyWorker:
    """Handle on a worker process (kept in the owner's ``st.session_state``)."""

    plans: list[StudyPlan]
    process: multiprocessing.process.BaseProcess
    stop_event: object
    lease: object
    messages: object
    started: float = field(default_factory=time.time)
    summaries: list[StudySummary] = field(default_factory=list)
    error: str | None = None
    finished: bool = False

    def renew(self) -> None:
        """Tell the worker its owner is still there (call at least every ``LEASE_SECONDS``)."""
        self.lease.value = time.time()

    def poll(self) -> None:
        """Collect the worker's messages (finished studies, an error, done)."""
        while True:
            try:
                kind, payload = self.messages.get_nowait()
            except (queue.Empty, OSError, ValueError):
                break
            if kind == "study":
                self.summaries.append(payload)
            elif kind == "error":
                self.error = payload
            elif kind == "done":
                self.finished = True

    def alive(self) -> bool:
        return self.process.is_alive()

    def stop(self, timeout: float = 20.0) -> None:
        """Stop cooperatively (the running trial becomes FAIL), then by SIGTERM, then SIGKILL."""
        self.stop_event.set()
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.poll()


def start_worker(
    plans: StudyPlan | list[StudyPlan], data: str | os.PathLike | Dataset, lease_seconds: float = LEASE_SECONDS
) -> StudyWorker:
    """Start a spawn process that runs ``plans`` one after another on their storages.

    ``data`` is a CSV path the worker loads, or a validated ``Dataset`` handed over whole (a session's upload,
    which exists nowhere on disk).
    """
    plans = [plans] if isinstance(plans, StudyPlan) else list(plans)
    context = multiprocessing.get_context("spawn")
    stop_event = context.Event()
    lease = context.Value("d", time.time(), lock=False)
    messages = context.Queue()
    process = context.Process(
        target=_worker_main,
        args=(plans, data if isinstance(data, Dataset) else str(data), stop_event, lease, lease_seconds, messages),
        name="fetal-hpo-study-worker",
        daemon=True,
    )
    process.start()
    # Exited workers are reaped by is_alive() and by multiprocessing at the next start().
    return StudyWorker(plans=plans, process=process, stop_event=stop_event, lease=lease, messages=messages)
