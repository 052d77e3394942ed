"""What every page shares: the data set (the server's, or this session's upload), the storage, uploads, sidebar."""

from __future__ import annotations

import atexit
import hashlib
import math
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from fetal_core import records, review, uploads
from fetal_core.config import Settings, settings
from fetal_core.data import Dataset, DatasetError, load_dataset
from fetal_core.text import plain
from pages import keys


def app_settings() -> Settings:
    """Data path and storage URL from the environment (an instructor's choice, not a student's)."""
    return settings()


# ---------------------------------------------------------------- the data set


@dataclass(frozen=True)
class SessionData:
    """A CSV uploaded on Home: this session's data set only (kept in session_state, never written to disk)."""

    name: str
    digest: str
    dataset: Dataset


def _version(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:  # missing or unreadable: load_dataset says which
        return None
    return info.st_mtime_ns, info.st_size


@st.cache_data(show_spinner=False, max_entries=4)
def _load(path: str, version: tuple[int, int] | None) -> Dataset:
    return load_dataset(path)


def server_dataset() -> Dataset | None:
    """The server's data set (``FETAL_HPO_DATA``, set by whoever runs the server), or None when unusable."""
    path = app_settings().data_path
    try:
        return _load(str(path), _version(path))
    except DatasetError:
        return None


def dataset_problem() -> str | None:
    """Why the server's data file cannot be used (None when it can)."""
    path = app_settings().data_path
    try:
        _load(str(path), _version(path))
    except DatasetError as err:
        return str(err)
    return None


def session_data() -> SessionData | None:
    """This session's uploaded data set, if it uploaded one."""
    return st.session_state.get(keys.SESSION_DATA)


def use_uploaded_data(raw: bytes, name: str) -> SessionData:
    """Validate an uploaded CSV and make it this session's data set. Raises ``DatasetError``."""
    digest = hashlib.sha256(raw).hexdigest()
    held = session_data()
    if held is not None and held.digest == digest:
        return held
    held = SessionData(name, digest, load_dataset(raw, name))
    st.session_state[keys.SESSION_DATA] = held
    return held


def current_dataset() -> Dataset | None:
    """The data set this session works on: its own upload, else the server's; None when there is none."""
    held = session_data()
    return held.dataset if held is not None else server_dataset()


# ---------------------------------------------------------------- uploaded files on disk


@st.cache_resource(show_spinner=False)
def _server_upload_folder() -> Path:
    """This server's upload folder, made once per server process after removing what exited servers left."""
    uploads.sweep_servers()
    return uploads.server_folder()


def session_upload_folder() -> Path:
    """This browser session's folder for uploaded files, marked as used (every page run of the session marks it
    again; a folder unused for ``uploads.SESSION_GRACE_SECONDS`` is swept, and re-made from the upload if needed)."""
    name = st.session_state.setdefault(keys.UPLOAD_FOLDER, uuid.uuid4().hex)
    return uploads.session_folder(_server_upload_folder(), name)


SWEEP_SECONDS = 2.0  # a sweep lists one small folder (a folder per session): cheap


@st.cache_resource(show_spinner=False)
def _last_sweep() -> list[float]:
    return [-SWEEP_SECONDS]


def sweep_uploads() -> None:
    """Mark this session's upload folder as used, and delete the folders nobody used for the grace period
    (looked at, at most every ``SWEEP_SECONDS``, by any page run). Streamlit has no public session-end hook: an ended
    session's folder goes once unused; an idle session that comes back re-makes its copy from its upload."""
    if keys.UPLOAD_FOLDER in st.session_state:
        session_upload_folder()
    last = _last_sweep()
    if time.monotonic() - last[0] < SWEEP_SECONDS:
        return
    last[0] = time.monotonic()
    uploads.sweep_sessions(_server_upload_folder())


APP_SCRIPT = Path(__file__).resolve().parent.parent / "app.py"


def use_app_navigation() -> None:
    """Put the server in ``st.navigation`` mode (app.py routes every page), as app.py's first run would.

    With a folder named ``pages/`` beside app.py, a freshly started Streamlit server treats every run as a
    legacy multipage app until app.py has called ``st.navigation`` once: it runs the requested page file alone,
    under a navigation made of the folder's files (``keys``, ``common``, ...), without app.py's sidebar or
    nickname. serve.py calls this at start, before any session; ``enter_through_app`` covers ``streamlit run
    app.py``.
    """
    # The one use of a Streamlit private module, kept in this function and the next. Upstream behaviour it works
    # around (Streamlit 1.67, streamlit/runtime/pages_manager.py): the first ``PagesManager`` sets the class flag
    # ``PagesManager.uses_pages_directory`` to whether a ``pages/`` folder sits beside the main script (only when
    # it is still None), and while it is True the ScriptRunner runs the requested page file through ``_mpa_v1``
    # instead of app.py; only ``st.navigation`` sets it to False. tests/test_app_routing.py fails if any of that
    # changes.
    from streamlit.runtime.pages_manager import PagesManager

    PagesManager.uses_pages_directory = False


def enter_through_app() -> None:
    """Make sure this page runs inside app.py (navigation, sidebar, nickname, worker leases), even on a direct link.

    Each page calls this first. A page run by a server still in legacy mode (see ``use_app_navigation``) is
    recognised by its main script being app.py while app.py has not run for this session: the flag alone is not
    enough, as another session may switch it between this run's start and this call (after a restart, every open
    tab reconnects at once). Such a run switches the server to ``st.navigation`` mode and reruns, so app.py runs
    and routes to the same page with the same query parameters.
    """
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    if st.session_state.get(keys.ENTERED_THROUGH_APP):
        return
    ctx = get_script_run_ctx()
    main_is_app = ctx is not None and Path(ctx.main_script_path).resolve() == APP_SCRIPT
    if PagesManager.uses_pages_directory or main_is_app:
        use_app_navigation()
        st.rerun()


def sidebar() -> None:
    """Data set and study storage in use."""
    config = app_settings()
    data, held = current_dataset(), session_data()
    sweep_uploads()
    with st.sidebar:
        st.caption("Data set")
        if data is None:
            st.warning("No data set yet: upload it on Home.")
        else:
            st.text(f"{held.name} (your upload, this session only)" if held else str(config.data_path))
            st.caption(f"{data.rows:,} rows · null accuracy {data.null_accuracy:.1f}%")
        st.caption("Study storage")
        st.text(shown_storage_url(config.storage_url))
        worker_leases()
    reap_dead_trials(config.storage_url)  # before the page lists any trial


def shown_storage_url(url: str) -> str:
    """The storage URL as students may see it: a database password in it is masked."""
    if "@" not in url or "://" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a database URL (journal, redis): hide whatever precedes '@'
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


@st.cache_resource(show_spinner=False)
def shared_storage(url: str):
    """One Optuna storage handle per URL for the whole server (connection pool, caches)."""
    from fetal_core.storage import open_storage

    return open_storage(url)


@st.cache_data(ttl=10, show_spinner=False)
def reap_dead_workers(url: str, study_name: str) -> None:
    """FAIL the study's RUNNING trials whose worker (a killed CLI worker, a crashed process) stopped sending
    heartbeats more than the grace period ago. Cached: at most one look per study every 10 s for the server."""
    import optuna

    from fetal_core.storage import reap_stale_trials

    try:
        reap_stale_trials(optuna.load_study(study_name=study_name, storage=shared_storage(url)))
    except Exception:  # the storage is busy or the study vanished: the next look tries again
        pass


REAP_SECONDS = 10  # a third of the default grace period (FETAL_HPO_HEARTBEAT x 3)


@st.cache_data(ttl=REAP_SECONDS, show_spinner=False)
def reap_dead_trials(url: str) -> int:
    """FAIL the RUNNING trials of every study whose worker stopped sending heartbeats more than the grace period
    ago (a server killed mid-trial, a killed CLI worker), whether or not anyone follows the study. Every full page
    run calls it (from the sidebar, before the page lists anything); cached: at most one look every
    ``REAP_SECONDS`` for the server, one query plus one per study with a RUNNING trial. serve.py does the same
    at start."""
    from fetal_core.storage import reap_stale_trials_everywhere

    try:
        return reap_stale_trials_everywhere(shared_storage(url))
    except Exception:  # the storage is down or busy: the next look tries again
        return 0


def configured_storage():
    """The server's configured storage (students cannot choose another)."""
    return shared_storage(app_settings().storage_url)


# ---------------------------------------------------------------- the compute pool


@dataclass
class PoolHolder:
    """The server's compute pool, or why there is none (retried at most every ``POOL_RETRY_SECONDS``)."""

    pool: object | None = None
    problem: str | None = None
    tried: float = -math.inf
    starting: threading.Lock = field(default_factory=threading.Lock)  # sessions arriving meanwhile wait for it


POOL_RETRY_SECONDS = 30.0


@st.cache_resource(show_spinner=False)
def _pool_holder() -> PoolHolder:
    return PoolHolder()


def compute_pool():
    """The server's one ``fetal_core.pool.Pool`` (started on first use, closed with the server), or None when
    the scheduler cannot be reached (``pool_problem()`` says why; the app stays up and tries again later)."""
    from fetal_core.pool import PoolError, open_pool

    holder = _pool_holder()
    if holder.pool is not None:
        return holder.pool
    if time.monotonic() - holder.tried < POOL_RETRY_SECONDS and not holder.starting.locked():
        # The last try failed moments ago (or just succeeded): no spinner on every page run until the next try.
        return holder.pool
    with st.spinner("Starting the compute pool…"), holder.starting:
        if holder.pool is None and time.monotonic() - holder.tried >= POOL_RETRY_SECONDS:
            holder.tried = time.monotonic()
            try:
                holder.pool = open_pool()
            except PoolError as err:
                holder.problem = str(err)
            else:
                holder.problem = None
                atexit.register(holder.pool.close)
    return holder.pool


def pool_problem() -> str | None:
    """Why there is no compute pool (None when there is one)."""
    return _pool_holder().problem


def show_pool_problem() -> None:
    st.error(f"Training is unavailable: {plain(pool_problem() or 'the compute pool is not running')}")


def session_workers() -> dict:
    """This browser session's background studies on the compute pool, by name (Part II, the race).

    Each value is a ``fetal_core.pool.StudyRun``; the sidebar renews their leases while the tab is
    open, so closing the tab stops them.
    """
    return st.session_state.setdefault(keys.WORKERS, {})


LEASE_RENEW_SECONDS = 5  # well inside fetal_core.pool.STUDY_LEASE_SECONDS (30 s)


def _finished_and_target(url: str, study_name: str, default_target: int) -> tuple[int, int]:
    """(complete or pruned trials, the study's target): counted, not read (one grouped query)."""
    storage = shared_storage(url)
    state = review.study_state(storage, study_name)
    target = records.target_trials(storage.get_study_user_attrs(state.study_id)) or default_target
    return state.finished - state.failed, int(target)


def worker_status_line(worker) -> str:
    """'study X: 7/10 trials' for each of the worker's studies, and whether it is still running."""
    parts = []
    for plan in worker.plans:
        try:
            finished, target = _finished_and_target(plan.storage_url, plan.study_name, plan.trials)
            parts.append(f"study {plan.study_name}: {finished}/{target} trials")
        except Exception:  # not created yet, or the storage is busy: a status line must never break a page
            parts.append(f"study {plan.study_name}: starting")
    if worker.error:
        state = f"error: {worker.error}"
    elif worker.alive():
        state = "running"
    elif worker.stopped or (worker.summaries and worker.summaries[-1].interrupted):
        state = "stopped"
    else:
        state = "done"
    return f"{'; '.join(parts)} ({state})"


@st.fragment(run_every=LEASE_RENEW_SECONDS)
def worker_leases() -> None:
    """The pool's load, and the lease of every study of this session renewed (so they run on while the
    student is on another page and stop ~30 s after the tab is closed), with one status line each."""
    pool = _pool_holder().pool
    st.caption("Compute pool")
    if pool is not None:
        where = "on this server" if pool.cluster is not None else f"at {pool.address}"
        jobs = pool.jobs()
        running = sum(1 for job in jobs if job.tasks)
        st.text(f"{pool.workers()} worker(s) {where}\n{running} running, {len(jobs) - running} queued")
    else:
        st.caption(plain(pool_problem() or "not started"))
    workers = session_workers()
    if workers:
        st.caption("Background studies")
    for worker in list(workers.values()):
        if worker.alive():
            worker.renew()
        worker.poll()
        st.caption(plain(worker_status_line(worker)))  # study and race names are user text
        for notice in worker.notices[-3:]:
            st.caption(plain(f"⚠️ {notice}"))


# ---------------------------------------------------------------- reports


def report_download(build, file_name: str, key: str, help: str | None = None) -> None:
    """A report built when asked ("Build the report"), then offered as a download of the built bytes (widget key
    ``key``; kept for this session until another file is asked for).

    Not Streamlit's deferred download (a callable as ``data``): the file it builds at the click is referenced by no
    session, and the end of any session's next two script runs deletes it (a class's fragments run several times a
    second), so the browser's download was cancelled.
    """
    held = st.session_state.get(f"{key}_built")
    fresh = held is None or held[0] != file_name
    build_column, download_column = st.columns(2)
    label = "Build the report" if fresh else "Build it again (with what is stored now)"
    if build_column.button(label, key=f"{key}_build", icon=":material/description:", help=help):
        with st.spinner("Building the report…"):
            held = (file_name, build().encode(), time.strftime("%H:%M:%S"))
        st.session_state[f"{key}_built"] = held
    elif fresh:
        return
    download_column.download_button(
        "Download the report",
        held[1],
        file_name=file_name,
        mime="text/html",
        on_click="ignore",
        icon=":material/download:",
        key=key,
        help=f"Built at {held[2]}.",
    )
