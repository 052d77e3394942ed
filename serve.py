"""The lab's server: ``streamlit run serve.py`` serves ``app.py``, made ready before the first browser comes.

Streamlit runs no app code until a browser connects, so on a fresh ``streamlit run app.py`` the first visitor
waits for what every page needs once per process: importing Optuna, Plotly and scikit-learn, opening the study
storage and starting the compute pool (two worker processes): 10 s and more of CPU on a 2-core machine,
competing with that visitor's browser. ``st.App``'s lifespan hook does it at start instead; the server answers
its health check once it is ready. A step that fails here (an unreachable storage or scheduler) is left to the
pages, which say what is wrong: it never keeps the server from starting.
"""

import logging
from contextlib import asynccontextmanager

import anyio
import streamlit as st

LOG = logging.getLogger("fetal_hpo.serve")


def get_ready() -> None:
    """Do once, now, what the first page of a fresh server would otherwise do while its visitor waits."""
    from app import warm_up  # the entry script's imports too: pages.common, fetal_core.lesson, ...
    from pages.common import compute_pool, configured_storage, server_dataset

    for step in (lambda: warm_up().join(), server_dataset, configured_storage, compute_pool):
        try:
            step()
        except Exception:  # the page that needs it reports the problem to its user
            LOG.warning("getting ready at start: a step failed; the pages will report it", exc_info=True)


@asynccontextmanager
async def ready_at_start(_app):
    await anyio.to_thread.run_sync(get_ready)
    yield


app = st.App("app.py", lifespan=ready_at_start)
