"""Optuna storages: open any storage URL tuned for many workers, and fail trials of dead workers."""

from __future__ import annotations

import sqlite3
import time
import warnings
from pathlib import Path
from typing import Any

import optuna


class StorageError(ValueError):
    """A storage URL that cannot be opened, with the reason."""


OPTUNA_TABLES = {"studies", "trials", "version_info"}  # present in every Optuna RDB storage


def _sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (None for ``:memory:``); an empty path is refused."""
    rest = url[len("sqlite:///") :].split("?", 1)[0]
    if rest == ":memory:":
        return None
    if not rest.strip():
        raise StorageError("storage: 'sqlite:///' names no file; use sqlite:///data/Fetal_Health.sqlite3.")
    return Path(rest)


def _check_sqlite_file_is_ours(path: Path) -> None:
    """Refuse an existing file that is not an (empty or) Optuna SQLite storage, before anything writes to it.

    Opened read-only: a user's own database pointed at by mistake stays byte-for-byte unchanged.
    """
    if not path.exists():
        return
    if not path.is_file():
        raise StorageError(f"storage: '{path}' is not a regular file.")
    if path.stat().st_size == 0:
        return
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=60)
        try:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            connection.close()
    except sqlite3.DatabaseError as err:
        raise StorageError(f"storage: '{path}' is not a SQLite database ({err}); nothing was written to it.") from None
    if tables and not OPTUNA_TABLES <= tables:
        raise StorageError(
            f"storage: '{path}' is a SQLite database of something else (no Optuna tables); nothing was written to it. "
            "Give a new file name or an Optuna storage."
        )


def _check_server_url(url: str) -> None:
    """A PostgreSQL/MySQL URL must name a host and a database: a bare ``postgresql://`` would connect by
    socket to whatever database the OS user maps to, and create tables there."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        raise StorageError(f"storage: '{url}' is not a valid database URL.") from None
    missing = [part for part, value in (("host", parsed.host), ("database", parsed.database)) if not value]
    if missing:
        raise StorageError(
            f"storage: '{parsed.render_as_string(hide_password=True)}' names no {' and no '.join(missing)}; "
            "use e.g. postgresql://postgres@127.0.0.1:5432/test."
        )


def open_storage(
    url: str, heartbeat_interval: int | None = None, grace_period: int | None = None
) -> optuna.storages.BaseStorage:
    """Open any Optuna storage URL, tuned for many workers.

    - ``sqlite:///path``: WAL journal (readers never block the writer), 60 s busy timeout and
      ``synchronous=NORMAL`` (no fsync per trial report; a crash of the app loses nothing committed).
    - ``postgresql://...`` / ``mysql+...://``: RDB with pre-ping; the choice for many workers.
    - ``journal:///path`` (relative, like sqlite) or ``journal:////abs/path``: Optuna's journal file.
    - ``redis://host:port``: journal in Redis.
    RDB storages get a heartbeat so trials of killed workers can be failed after ``grace_period``
    (both default to ``FETAL_HPO_HEARTBEAT`` and three times it: every process of a class must agree).
    """
    if heartbeat_interval is None or grace_period is None:
        from .config import settings

        heartbeat_interval = heartbeat_interval or settings().heartbeat_seconds
        grace_period = grace_period or 3 * heartbeat_interval
    if not isinstance(url, str) or not url.strip():
        raise StorageError("storage: give an Optuna storage URL such as sqlite:///data/Fetal_Health.sqlite3.")
    url = url.strip()
    try:
        if url.startswith("journal:///"):
            path = Path(url[len("journal:///") :])
            path.parent.mkdir(parents=True, exist_ok=True)
            backend = optuna.storages.journal.JournalFileBackend(
                str(path), lock_obj=optuna.storages.journal.JournalFileOpenLock(str(path))
            )
            return optuna.storages.journal.JournalStorage(backend)
        if url.startswith("redis://"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.journal.JournalStorage(optuna.storages.journal.JournalRedisBackend(url))
        if url.startswith("sqlite:///"):
            path = _sqlite_path(url)
            engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}}
            if path is not None:
                _check_sqlite_file_is_ours(path)
                path.parent.mkdir(parents=True, exist_ok=True)
                _use_wal(path)
        elif url.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "mysql"):
            _check_server_url(url)
            engine_kwargs = {"pool_pre_ping": True}
        else:
            raise StorageError(
                f"storage: '{url}' is not a supported URL (sqlite:///…, postgresql://…, mysql://…, "
                "journal:///…, redis://…)."
            )
        storage = _rdb_storage(url, engine_kwargs, heartbeat_interval, grace_period)
        if url.startswith("sqlite:///"):
            from sqlalchemy import event

            @event.listens_for(storage.engine, "connect")
            def _sqlite_pragmas(dbapi_connection, _record) -> None:
                dbapi_connection.execute("PRAGMA synchronous=NORMAL")

            storage.engine.dispose()  # reconnect with the pragma
        return storage
    except StorageError:
        raise
    except (sqlite3.DatabaseError, OSError) as err:
        raise StorageError(f"storage: cannot open '{url}': {err}") from None
    except Exception as err:  # SQLAlchemy/driver/redis errors: one line, no traceback
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StorageError(f"storage: cannot open '{url}': {message}") from None


def _use_wal(path: Path, tries: int = 50) -> None:
    """Put the SQLite file in WAL mode (a property of the file). Switching skips SQLite's busy timeout: when
    several processes open a new file at once, the losers see "database is locked" and try again shortly."""
    for attempt in range(1, tries + 1):
        try:
            with sqlite3.connect(path, timeout=60) as connection:
                connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or attempt == tries:
                raise
            time.sleep(0.1)


TABLE_RACE_TRIES = 5


def _rdb_storage(url: str, engine_kwargs: dict, heartbeat_interval: int, grace_period: int):
    """Optuna's RDB storage. Workers started at once on a new database all create Optuna's tables: the losers
    of that race get an integrity error (a unique key such as PostgreSQL's ``pg_type`` or the alembic version
    row) or "already exists", and simply try again, when the tables are there."""
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    tries = 0
    while True:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval, grace_period=grace_period
                )
        except (IntegrityError, OperationalError, ProgrammingError) as err:
            tries += 1
            racing = isinstance(err, IntegrityError) or "already exists" in str(err).lower()
            if not racing or tries == TABLE_RACE_TRIES:
                raise
            time.sleep(0.2 * tries)


def reap_stale_trials(study: optuna.Study) -> None:
    """FAIL the RUNNING trials whose worker stopped sending heartbeats (RDB storage only)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def reap_stale_trials_everywhere(storage: optuna.storages.BaseStorage) -> int:
    """FAIL the RUNNING trials of every study whose worker stopped sending heartbeats (RDB storage only), in one
    query for the studies with a RUNNING trial and one per such study. Returns how many were failed.

    A trial whose heartbeat is within the grace period (a live worker, or one that died moments ago) is left, as
    is a trial that never sent one: the same rule as Optuna's ``fail_stale_trials``, for a whole storage.
    """
    if not isinstance(storage, optuna.storages.RDBStorage) or storage.get_heartbeat_interval() is None:
        return 0
    from optuna.storages._rdb.models import TrialModel  # Optuna's own table model: one query for all studies
    from sqlalchemy import select

    with storage.engine.connect() as connection:
        running = select(TrialModel.study_id).where(TrialModel.state == optuna.trial.TrialState.RUNNING).distinct()
        study_ids = list(connection.execute(running).scalars())
    failed = 0
    for study_id in study_ids:
        for trial_id in storage._get_stale_trial_ids(study_id):
            try:
                failed += bool(storage.set_trial_state_values(trial_id, state=optuna.trial.TrialState.FAIL))
            except optuna.exceptions.UpdateFinishedTrialError:  # another process failed or finished it meanwhile
                pass
    return failed
