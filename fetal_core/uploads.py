"""Untrusted uploads (no Streamlit): study files read in a limited process, and per-session upload folders.

An uploaded study file is a whole SQLite database made by anyone: a view named like an Optuna table can
make its reader build millions of rows, a trigger or a doctored query plan can do worse. The server never
opens one. ``import_study_file`` gives the bytes to a new Python process limited in memory
(``RLIMIT_AS``) and processor time (``RLIMIT_CPU``), and killed after a wall-clock limit, which

1. refuses what Optuna never writes: views, triggers, virtual tables, computed columns, an Optuna name
   that is not a plain table, and more rows than ``UploadLimits`` allows;
2. copies the rows of Optuna's tables into a fresh storage whose schema Optuna itself created (nothing of
   the upload's schema, indexes or query statistics survives);
3. reads every study of that copy back through Optuna's API, as the Results page will.

Only that copy is then opened by the server: what it will read has been read once within the limits.

Uploads live in ``<temp>/fetal_hpo_uploads/<server pid>/<session folder>/``. ``sweep_sessions`` removes the
folders unused for a while (ended sessions, or idle ones, which re-make their copy from the upload), and
``sweep_servers`` (at start-up) the folders of servers that exited.
This module imports only the standard library at the top, so the child sets its limits before it loads
anything large.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

SQLITE_HEADER = b"SQLite format 3\x00"
UPLOADS_ROOT = Path(tempfile.gettempdir()) / "fetal_hpo_uploads"
ROOT = Path(__file__).resolve().parent.parent  # where ``fetal_core`` is importable from
SESSION_GRACE_SECONDS = 900.0  # an upload folder unused this long is deleted (its copy is re-made if needed)

# Optuna's tables whose rows are copied, parents before children. The copy's version_info and
# alembic_version are Optuna's own; trial_heartbeats only matter to live workers.
COPIED_TABLES = (
    "studies", "study_directions", "study_user_attributes", "study_system_attributes", "trials",
    "trial_params", "trial_values", "trial_intermediate_values", "trial_user_attributes", "trial_system_attributes",
)  # fmt: skip
OPTUNA_TABLES = (*COPIED_TABLES, "trial_heartbeats", "version_info", "alembic_version")
REQUIRED_TABLES = ("studies", "trials", "trial_values", "version_info")


class UploadError(ValueError):
    """An upload that is refused, with the reason in one sentence."""


@dataclass(frozen=True)
class UploadLimits:
    """What an uploaded study file may hold and cost to read (this app's own studies are far below)."""

    max_bytes: int = 200 * 2**20  # Streamlit's default upload size limit
    max_studies: int = 1_000
    max_trials: int = 100_000  # all studies together
    max_rows: int = 2_000_000  # all Optuna tables together (a 1,000-trial, 50-epoch study has ~40,000)
    max_value_bytes: int = 16 * 2**20  # one stored text (a trial's 2,000-epoch history is ~0.2 MB)
    memory_bytes: int = 2**30  # address space of the reading process
    cpu_seconds: int = 20  # processor time of the reading process (the work, however busy the server is)
    wall_seconds: float = 60.0  # it is killed after this, working or not

    def describe(self) -> str:
        return (
            f"at most {self.max_studies:,} studies, {self.max_trials:,} trials and {self.max_rows:,} rows in "
            "Optuna's tables"
        )


# ---------------------------------------------------------------- running a function under limits


def _first_line(err: BaseException) -> str:
    return ((str(err).strip().splitlines() or [type(err).__name__])[0])[:200]


def _limit(kind: int, value: int) -> None:
    soft, hard = resource.getrlimit(kind)
    resource.setrlimit(kind, (value if hard == resource.RLIM_INFINITY else min(value, hard), hard))


def _child_main(argv: list[str]) -> None:
    """``python -m fetal_core.uploads MEMORY CPU_SECONDS module:function JSON_ARGS``: limits, then the call.

    Prints one JSON line ``[kind, payload]``: ``["ok", result]``, ``["error", line]`` or ``["memory", null]``.
    """
    memory_bytes, cpu_seconds, target, args = int(argv[0]), int(argv[1]), argv[2], json.loads(argv[3])
    _limit(resource.RLIMIT_AS, memory_bytes)
    _limit(resource.RLIMIT_CPU, cpu_seconds)  # SIGXCPU ends it, also if its parent died without killing it
    try:
        module, name = target.split(":")
        result: list = ["ok", getattr(importlib.import_module(module), name)(*args)]
    except UploadError as err:
        result = ["error", str(err)]
    except MemoryError:
        result = ["memory", None]
    except Exception as err:
        result = ["error", f"it cannot be read: {_first_line(err)}"]
    print(json.dumps(result), flush=True)


LIMIT = "the limit for an uploaded file"


def run_limited(target: str, args: list, memory_bytes: int, cpu_seconds: int, wall_seconds: float) -> Any:
    """Call ``target`` (``"module:function"``) with ``args`` in a new Python process limited to ``memory_bytes`` of
    address space (``RLIMIT_AS``) and ``cpu_seconds`` of processor time (``RLIMIT_CPU``), killed after
    ``wall_seconds``; arguments and result are plain JSON data.

    A fresh interpreter, not a fork: it shares nothing with the server, and (unlike a multiprocessing
    child, which re-runs the parent's ``__main__``, in Streamlit the page script) imports only what the call
    needs, after its limits are set. Raises ``UploadError`` with the call's own ``UploadError`` message, its
    first error line, or the limit it ran into.
    """
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    command = [
        sys.executable,
        "-m",
        "fetal_core.uploads",
        str(memory_bytes),
        str(cpu_seconds),
        target,
        json.dumps(args),
    ]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=wall_seconds,
            env=environment,
            cwd=ROOT,
            start_new_session=True,
        )  # Ctrl-C in the terminal is the server's
    except subprocess.TimeoutExpired:  # run() has killed it
        raise UploadError(f"reading it did not end within {wall_seconds:g} s, {LIMIT}.") from None
    if done.returncode == -signal.SIGXCPU:
        raise UploadError(f"reading it needs more than {cpu_seconds} s of processor time, {LIMIT}.")
    try:
        kind, payload = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        kind, payload = "died", None
    if kind == "ok":
        return payload
    if kind == "error":
        raise UploadError(payload)
    memory = f"{memory_bytes / 2**30:g} GiB"
    if kind == "memory":
        raise UploadError(f"reading it needs more than {memory} of memory, {LIMIT}.")
    raise UploadError(
        f"the process reading it stopped (exit code {done.returncode}); it may need more than {memory} of memory, "
        f"{LIMIT}."
    )


# ---------------------------------------------------------------- an uploaded study file (runs in the child)


def _uri(path: str | Path, mode: str) -> str:
    return f"file:{quote(str(path))}?mode={mode}"


def _harden(connection: sqlite3.Connection, limits: UploadLimits) -> None:
    connection.execute("PRAGMA trusted_schema = OFF")  # no functions with side effects from the file's schema
    connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, limits.max_value_bytes)


def _check_schema(source: sqlite3.Connection) -> set[str]:
    """The file's table names, once it is shown to hold only what Optuna writes (and other plain tables)."""
    if source.execute("PRAGMA quick_check").fetchone()[0] != "ok":
        raise UploadError("the uploaded SQLite file is damaged (its integrity check fails).")
    schema = source.execute("SELECT type, name, sql FROM sqlite_master").fetchall()
    for kind in ("view", "trigger"):
        names = [name for t, name, _ in schema if t == kind]
        if names:
            raise UploadError(
                f"the uploaded file contains a {kind} ('{names[0][:80]}'); a study file written by Optuna has none, "
                "so it is not opened."
            )
    tables = {name: sql or "" for t, name, sql in schema if t == "table"}
    virtual = [name for name, sql in tables.items() if sql.lstrip().upper().startswith("CREATE VIRTUAL")]
    if virtual:
        raise UploadError(f"the uploaded file contains a virtual table ('{virtual[0][:80]}'); Optuna writes none.")
    missing = [name for name in REQUIRED_TABLES if name not in tables]
    if missing:
        raise UploadError(
            "the uploaded SQLite file is not an Optuna study storage (it has no "
            f"{', '.join(missing)} table{'s' if len(missing) > 1 else ''})."
        )
    for name in OPTUNA_TABLES:
        if name in tables and any(row[6] for row in source.execute(f'PRAGMA table_xinfo("{name}")')):
            raise UploadError(f"the uploaded file's table '{name}' has computed columns; Optuna writes none.")
    return set(tables)


def _check_counts(source: sqlite3.Connection, present: set[str], limits: UploadLimits) -> None:
    # NOT INDEXED: count the table itself (quick_check does not prove an index matches its table)
    counts = {
        name: source.execute(f'SELECT COUNT(*) FROM "{name}" NOT INDEXED').fetchone()[0]
        for name in OPTUNA_TABLES
        if name in present
    }
    too_many = [
        (what, n, cap)
        for what, n, cap in (
            ("studies", counts.get("studies", 0), limits.max_studies),
            ("trials", counts.get("trials", 0), limits.max_trials),
            ("rows in Optuna's tables", sum(counts.values()), limits.max_rows),
        )
        if n > cap
    ]
    if too_many:
        what, n, cap = too_many[0]
        raise UploadError(
            f"the uploaded file holds {n:,} {what}, more than the {cap:,} an uploaded study file may have "
            f"({limits.describe()})."
        )


def copy_study_file(raw: str, target: str, limits: dict) -> dict[str, int]:
    """Check ``raw``, copy its Optuna rows into a new storage at ``target``, read that back (in the child)."""
    limits = UploadLimits(**limits)
    with closing(sqlite3.connect(_uri(raw, "ro"), uri=True)) as source:
        _harden(source, limits)
        try:
            tables = _check_schema(source)
            _check_counts(source, tables, limits)
            version = (
                source.execute("SELECT version_num FROM alembic_version").fetchone()
                if ("alembic_version" in tables)
                else None
            )
        except sqlite3.DatabaseError as err:
            raise UploadError(f"the uploaded file is a damaged SQLite database ({_first_line(err)}).") from None

    import optuna
    from optuna.storages import RDBStorage

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fresh = RDBStorage(f"sqlite:///{target}")  # Optuna creates the current schema
        head = fresh.get_head_version()
        fresh.engine.dispose()
        if version is None or version[0] != head:  # an older Optuna's file: upgrade our private raw copy first
            old = RDBStorage(f"sqlite:///{raw}", skip_compatibility_check=True, skip_table_creation=True)
            old.upgrade()
            old.engine.dispose()

    with closing(sqlite3.connect(_uri(target, "rw"), uri=True)) as copy:
        _harden(copy, limits)
        copy.execute("ATTACH DATABASE ? AS upload", (_uri(raw, "ro"),))
        for table in COPIED_TABLES:
            wanted = [r[1] for r in copy.execute(f'PRAGMA main.table_info("{table}")')]
            present = {r[1] for r in copy.execute(f'PRAGMA upload.table_info("{table}")')}
            if not present:
                continue
            absent = [c for c in wanted if c not in present]
            if absent:
                raise UploadError(f"the uploaded file's table '{table}' has no column '{absent[0]}'.")
            columns = ", ".join(f'"{c}"' for c in wanted)  # a column list: values are decoded and checked
            copy.execute(f'INSERT INTO main."{table}" ({columns}) SELECT {columns} FROM upload."{table}"')
        copy.commit()
        copy.execute("DETACH DATABASE upload")

    storage = RDBStorage(f"sqlite:///{target}", skip_compatibility_check=True, skip_table_creation=True)
    studies = storage.get_all_studies()
    ids = [storage.get_study_id_from_name(s.study_name) for s in studies]
    trials = sum(len(storage.get_all_trials(study_id, deepcopy=False)) for study_id in ids)
    storage.engine.dispose()
    return {"studies": len(studies), "trials": trials}


def remove_sqlite(path: str | Path) -> None:
    """Delete an SQLite file and its journal, WAL and shared-memory files."""
    for suffix in ("", "-journal", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


_READERS = threading.BoundedSemaphore(2)  # uploads read at once by this server (each may use memory_bytes)


def import_study_file(data: bytes, destination: str | Path, limits: UploadLimits = UploadLimits()) -> dict[str, int]:
    """Check an uploaded study file in a limited child process and write our trusted copy to ``destination``.

    Returns ``{"studies": n, "trials": n}`` of the copy. Raises ``UploadError`` saying why the file is refused
    (nothing is left at ``destination`` then). The upload's bytes are kept only while they are read.
    """
    if not data:
        raise UploadError("the uploaded file is empty.")
    if len(data) > limits.max_bytes:
        size, cap = len(data) / 2**20, limits.max_bytes // 2**20
        raise UploadError(f"the uploaded file is {size:.0f} MB; the limit for a study file is {cap} MB.")
    if not data.startswith(SQLITE_HEADER):
        raise UploadError(
            "the uploaded file is not an SQLite database (an Optuna study file starts with 'SQLite format 3')."
        )
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    raw = destination.with_name(destination.name + ".upload")
    remove_sqlite(destination)
    raw.write_bytes(data)
    try:
        if not _READERS.acquire(timeout=limits.wall_seconds):
            raise UploadError("the server is busy reading other uploads; try again in a minute.")
        try:
            return run_limited(
                "fetal_core.uploads:copy_study_file",
                [str(raw), str(destination), asdict(limits)],
                limits.memory_bytes,
                limits.cpu_seconds,
                limits.wall_seconds,
            )
        finally:
            _READERS.release()
    except BaseException:
        remove_sqlite(destination)
        raise
    finally:
        remove_sqlite(raw)


# ---------------------------------------------------------------- upload folders and their clean-up


def _private_folder(folder: Path) -> Path:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise UploadError(f"'{folder}' is not a folder of this user, so uploads cannot be kept there safely.")
    return folder


def server_folder(root: str | Path = UPLOADS_ROOT) -> Path:
    """This server process's upload folder, ``root/<pid>`` (created, private to this user)."""
    return _private_folder(_private_folder(Path(root)) / str(os.getpid()))


def session_folder(server: str | Path, session_id: str) -> Path:
    """A session's upload folder inside ``server``, created if needed and marked as just used."""
    if not session_id or "/" in session_id or session_id.startswith("."):
        raise UploadError(f"'{session_id[:80]}' is not a session id.")
    folder = _private_folder(Path(server) / session_id)
    os.utime(folder)
    return folder


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_path(path: str | Path) -> None:
    """Delete a folder with its contents, or a file (a symlink itself, never what it points to)."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def sweep_servers(root: str | Path = UPLOADS_ROOT, now: float | None = None) -> list[Path]:
    """Delete the upload folders of server processes that have exited, and loose files (an older layout)
    unused for ``SESSION_GRACE_SECONDS``. Called once when a server starts; other servers' folders stay."""
    root = Path(root)
    if not root.is_dir():
        return []
    now = time.time() if now is None else now
    removed = []
    for entry in root.iterdir():
        if entry.name.isdigit() and entry.is_dir() and not entry.is_symlink():
            if _pid_alive(int(entry.name)):
                continue
        else:
            try:
                if now - entry.lstat().st_mtime < SESSION_GRACE_SECONDS:
                    continue
            except FileNotFoundError:
                continue
        remove_path(entry)
        removed.append(entry)
    return removed


def sweep_sessions(
    server: str | Path, grace_seconds: float = SESSION_GRACE_SECONDS, now: float | None = None
) -> list[Path]:
    """Delete the session folders in ``server`` not used for ``grace_seconds`` (each page run of a session marks
    its folder as used, so these are ended sessions, or idle ones whose copy is re-made from the upload)."""
    server = Path(server)
    if not server.is_dir():
        return []
    now = time.time() if now is None else now
    removed = []
    for entry in server.iterdir():
        try:
            idle = now - entry.lstat().st_mtime
        except FileNotFoundError:
            continue
        if idle >= grace_seconds:
            remove_path(entry)
            removed.append(entry)
    return removed


if __name__ == "__main__":  # the child of run_limited: run in the importable module (one UploadError class)
    from fetal_core.uploads import _child_main as main

    main(sys.argv[1:])
