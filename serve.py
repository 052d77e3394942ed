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
from starlette.middleware import Middleware

LOG = logging.getLogger("fetal_hpo.serve")


def get_ready() -> None:
    """Do once, now, what the first page of a fresh server would otherwise do while its visitor waits."""
    from app import warm_up  # the entry script's imports too: pages.common, fetal_core.lesson, ...
    from fetal_core.lesson import instructor_key
    from pages.common import compute_pool, server_dataset

    instructor_key()  # a key too short to resist guessing raises ConfigError: the server does not start
    for step in (lambda: warm_up().join(), server_dataset, fail_dead_trials, compute_pool):
        try:
            step()
        except Exception:  # the page that needs it reports the problem to its user
            LOG.warning("getting ready at start: a step failed; the pages will report it", exc_info=True)


def fail_dead_trials() -> None:
    """FAIL the trials a dead server or worker left RUNNING (stale heartbeat only: a live CLI worker's stay), in
    every study of the configured storage, before anyone lists them."""
    from fetal_core.storage import reap_stale_trials_everywhere
    from pages.common import configured_storage

    failed = reap_stale_trials_everywhere(configured_storage())
    if failed:
        LOG.warning("at start: failed %d trial(s) left RUNNING by a dead worker (no recent heartbeat)", failed)


@asynccontextmanager
async def ready_at_start(_app):
    from pages.common import use_app_navigation

    use_app_navigation()  # before any session: every page runs inside app.py, even a tab reconnecting after a restart
    await anyio.to_thread.run_sync(get_ready)
    yield


WIDGET_ID_PREFIX = "$$ID-"  # every id Streamlit gives a widget starts so (streamlit.runtime.state.common)


def without_forged_widget_ids(data: bytes) -> bytes:
    """A browser's message with the widget states whose id Streamlit never made dropped (the same bytes when none).

    Streamlit takes a widget state with any id: one that is not a widget id (``instructor_token``, ``x``) makes
    every widget of the sender's next run raise (``KeyError`` in ``SessionState.filtered_state``). A message that
    is not a rerun, or not a message at all, is passed on as it came: Streamlit refuses what it cannot read.
    """
    from streamlit.proto.BackMsg_pb2 import BackMsg

    if len(data) > st.get_option("server.maxWidgetStateSize") * 1_000_000:
        return data  # Streamlit closes the connection on it, unread
    message = BackMsg()
    try:
        message.ParseFromString(data)
    except Exception:
        return data
    if message.WhichOneof("type") != "rerun_script":
        return data
    widgets = message.rerun_script.widget_states.widgets
    kept = [w for w in widgets if w.id.startswith(WIDGET_ID_PREFIX)]
    if len(kept) == len(widgets):
        return data
    LOG.info("dropped %d widget state(s) whose id is not a widget's", len(widgets) - len(kept))
    del widgets[:]
    widgets.extend(kept)
    return message.SerializeToString()


class CheckWidgetIds:
    """ASGI middleware: every message of a browser's websocket goes through ``without_forged_widget_ids``."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "websocket":
            return await self.app(scope, receive, send)

        async def checked_receive():
            message = await receive()
            if message["type"] == "websocket.receive" and message.get("bytes"):
                message["bytes"] = without_forged_widget_ids(message["bytes"])
            return message

        await self.app(scope, checked_receive, send)


app = st.App("app.py", lifespan=ready_at_start, middleware=[Middleware(CheckWidgetIds)])
