"""What every page shares: the configured data set and storage, cached per server, and the sidebar."""

from __future__ import annotations

import multiprocessing

import streamlit as st

from fetal_core.config import Settings, settings
from fetal_core.data import Dataset, DatasetError, load_dataset
from fetal_core.search import TARGET_ATTR
from fetal_core.text import plain


def app_settings() -> Settings:
    """Data path and storage URL from the environment (an instructor's choice, not a student's)."""
    return settings()


@st.cache_data(show_spinner=False, max_entries=4)
def _load(path: str, modified: float) -> Dataset:
    return load_dataset(path)


def current_dataset() -> Dataset | None:
    """The validated data set, or None when there is none yet (Home then offers an upload)."""
    path = app_settings().data_path
    try:
        return _load(str(path), path.stat().st_mtime)
    except FileNotFoundError:
        return None
    except DatasetError:
        return None


def dataset_problem() -> str | None:
    """Why the configured data file cannot be used (None when it can)."""
    path = app_settings().data_path
    try:
        _load(str(path), path.stat().st_mtime)
    except FileNotFoundError:
        return f"No data set at '{path}'."
    except DatasetError as err:
        return str(err)
    return None


ENTERED_THROUGH_APP = "entered_through_app"  # session_state marker set by app.py


def enter_through_app() -> None:
    """Make sure this page runs inside app.py (navigation, sidebar, worker leases), even on a direct link.

    With a folder named ``pages/`` beside app.py, a freshly started Streamlit server treats its first run
    as a legacy multipage app until app.py has called ``st.navigation`` once: a shared link such as
    ``/race`` would run pages/race.py alone. Each page calls this first; for a session that has not been
    through app.py yet it switches the server to ``st.navigation`` mode (Streamlit's own flag, which
    st.navigation sets too) and reruns, so app.py runs and routes to the same page.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory and not st.session_state.get(ENTERED_THROUGH_APP):
        PagesManager.uses_pages_directory = False
        st.rerun()


def sidebar() -> None:
    """Data set and study storage in use."""
    config = app_settings()
    data = current_dataset()
    with st.sidebar:
        st.caption("Data set")
        if data is None:
            st.warning("No data set yet: upload it on Home.")
        else:
            st.code(str(config.data_path), language=None)
            st.caption(f"{data.rows:,} rows · null accuracy {data.null_accuracy:.1f}%")
        st.caption("Study storage")
        st.code(config.storage_url, language=None)
        worker_leases()


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


def configured_storage():
    """The server's configured storage (students cannot choose another)."""
    return shared_storage(app_settings().storage_url)


def session_workers() -> dict:
    """This browser session's background study workers, by name (Part II, the race).

    Each value is a ``fetal_core.workers.StudyWorker``; the sidebar renews their leases while the tab is
    open, so closing the tab stops them.
    """
    return st.session_state.setdefault("workers", {})


LEASE_RENEW_SECONDS = 5  # well inside fetal_core.workers.LEASE_SECONDS (30 s)


def _finished_and_target(url: str, study_name: str, default_target: int) -> tuple[int, int]:
    from optuna.trial import TrialState

    storage = shared_storage(url)
    study_id = storage.get_study_id_from_name(study_name)
    finished = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    target = storage.get_study_user_attrs(study_id).get(TARGET_ATTR) or default_target
    return len(finished), int(target)


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
    elif worker.summaries and worker.summaries[-1].interrupted:
        state = "stopped"
    else:
        state = "done"
    return f"{'; '.join(parts)} ({state})"


@st.fragment(run_every=LEASE_RENEW_SECONDS)
def worker_leases() -> None:
    """Renew the lease of every worker of this session (so they run on while the student is on another
    page and stop ~30 s after the tab is closed), collect their messages and show one status line each."""
    workers = session_workers()
    multiprocessing.active_children()  # joins this server's finished worker processes (no <defunct> entries)
    if workers:
        st.caption("Background studies")
    for worker in list(workers.values()):
        if worker.alive():
            worker.renew()
        worker.poll()
        st.caption(plain(worker_status_line(worker)))  # study and race names are user text


def forget_dataset() -> None:
    """Drop the cached data set (after an upload replaced the file) so every page reads the new one."""
    _load.clear()
