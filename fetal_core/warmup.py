"""A Dask worker plugin: every pool worker, also one that joins later or replaces a dead one, is warm before
its first task (a cold worker spends seconds importing Optuna, SciPy and scikit-learn). Kept apart from
``pool`` so that importing the pool (the CLI, the pages) does not import Dask (~2 s)."""

from __future__ import annotations

from distributed.diagnostics.plugin import WorkerPlugin

from .pool import INTERACTIVE, STUDY


class WarmUp(WorkerPlugin):
    """Imports what a task needs and, on the embedded pool, lowers the worker's CPU priority by ``nice``: the
    workers share the web server's cores, and a page's drawing and health check must not queue behind
    training (the training takes what the server leaves, which is most of it).

    With ``tag`` (the embedded pool), a worker that joins without either lane's resource (``dask worker`` from
    another machine) gets the ``study`` resource, one per thread, before its first task: the embedded pool's
    study trials ask for it."""

    name = "fetal-hpo-warm-up"
    idempotent = True  # several app servers may share one cluster

    def __init__(self, nice: int = 0, tag: bool = False) -> None:
        self.nice = nice
        self.tag = tag

    async def setup(self, worker) -> None:
        import os

        if self.nice:
            os.nice(self.nice)
        import optuna
        import sklearn.model_selection  # noqa: F401 (a task's first data split would import it: ~0.7 s)

        from . import pool, pool_tasks, search, storage  # noqa: F401

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        resources = worker.state.total_resources
        if self.tag and INTERACTIVE not in resources and STUDY not in resources:
            await worker.set_resources(**{STUDY: worker.state.nthreads})
