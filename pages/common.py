"""What every page shares: the configured data set and storage, cached per server, and the sidebar."""

from __future__ import annotations

import streamlit as st

from fetal_core.config import Settings, settings
from fetal_core.data import Dataset, DatasetError, load_dataset


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


def sidebar() -> None:
    """Data set and study storage in use."""
    config = app_settings()
    data = current_dataset()
    with st.sidebar:
        st.caption("Data set")
        if data is None:
            st.warning("No data set yet: upload it on Home.")
        else:
            st.write(f"`{config.data_path}`: {data.rows:,} rows, null accuracy {data.null_accuracy:.1f}%")
        st.caption("Study storage")
        st.code(config.storage_url, language=None)


@st.cache_resource(show_spinner=False)
def shared_storage(url: str):
    """One Optuna storage handle per URL for the whole server (connection pool, caches)."""
    from fetal_core.search import open_storage

    return open_storage(url)


def configured_storage():
    """The server's configured storage (students cannot choose another)."""
    return shared_storage(app_settings().storage_url)


def session_workers() -> dict:
    """This browser session's background study workers, by name (Part II, the race).

    Each value is a ``fetal_core.workers.StudyWorker``; the sidebar renews their leases while the tab is
    open, so closing the tab stops them.
    """
    return st.session_state.setdefault("workers", {})
