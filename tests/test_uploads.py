"""fetal_core.uploads: hostile study files are refused in a limited process; upload folders are cleaned up."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from fetal_core import review, uploads
from tests.conftest import ROOT

optuna.logging.set_verbosity(optuna.logging.WARNING)


def study_file(path: Path, trials: int = 3) -> Path:
    """A small, honest Optuna file: one study, ``trials`` completed trials with a param and a curve."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{path}")
    study = optuna.create_study(storage=storage, study_name="honest", direction="maximize")
    study.set_user_attr("sampler", "tpe")
    study.add_trials(
        [
            create_trial(
                state=TrialState.COMPLETE,
                value=80.0 + i,
                params={"lr": 0.01 * (i + 1)},
                distributions={"lr": FloatDistribution(1e-4, 1.0)},
                user_attrs={"history": {"epoch": [1, 2]}},
                intermediate_values={1: 70.0 + i, 2: 75.0 + i},
            )
            for i in range(trials)
        ]
    )
    storage.engine.dispose()
    return path


def tampered(path: Path, *statements: str) -> bytes:
    with sqlite3.connect(path) as connection:
        for statement in statements:
            connection.execute(statement)
    connection.close()
    return path.read_bytes()


HUGE_VIEW = (
    "DROP TABLE trial_params",
    """CREATE VIEW trial_params AS
       WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 3000000)
       SELECT x AS param_id, (SELECT MIN(trial_id) FROM trials) AS trial_id, 'p' || x AS param_name,
              0.5 AS param_value,
              '{"name": "FloatDistribution", "attributes": {"low": 0.0, "high": 1.0, "log": false, "step": null}}'
              AS distribution_json
       FROM n""",
)

LOADER = """
import resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (int(1.5 * 2**30), int(1.5 * 2**30)))
from pathlib import Path
from fetal_core import review
began = time.monotonic()
try:
    url, storage = review.open_study_file(Path(sys.argv[1]).read_bytes(), sys.argv[2])
    for row in review.list_studies(storage):  # then what the Results page reads
        review.load_trials(storage, review.study_state(storage, row.name).study_id)
    print("READ", f"{time.monotonic() - began:.1f}")
except review.ReviewError as err:
    print("REFUSED", f"{time.monotonic() - began:.1f}", err)
"""


def test_a_view_yielding_millions_of_rows_is_refused_by_a_memory_limited_loader(tmp_path):
    """The reported attack: trial_params replaced by a view of 3 million rows (the server grew to ~5 GB).

    The whole load (open the upload, list its studies, read their trials as Results does) runs in a
    subprocess limited to 1.5 GiB of address space, so a regression fails here instead of eating the machine.
    """
    path = tmp_path / "view.sqlite3"
    path.write_bytes(tampered(study_file(path), *HUGE_VIEW))
    assert path.stat().st_size < 200_000
    done = subprocess.run(
        [sys.executable, "-c", LOADER, str(path), str(tmp_path / "uploads")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("REFUSED"), done.stdout
    assert "contains a view ('trial_params')" in done.stdout
    assert list((tmp_path / "uploads").iterdir()) == []  # neither the upload nor a half-made copy is left


@pytest.mark.parametrize(
    ("statements", "message"),
    [
        (("CREATE TRIGGER noisy AFTER INSERT ON trials BEGIN SELECT 1; END",), "contains a trigger ('noisy')"),
        (("CREATE VIEW harmless AS SELECT 1",), "contains a view ('harmless')"),
        (
            ("ALTER TABLE trials ADD COLUMN extra TEXT GENERATED ALWAYS AS (printf('%.*c', 1000, 'x')) VIRTUAL",),
            "table 'trials' has computed columns",
        ),
        (
            ("DROP TABLE trial_values", "CREATE VIEW trial_values AS SELECT * FROM trials"),
            "contains a view ('trial_values')",
        ),
    ],
)
def test_what_optuna_never_writes_is_refused(tmp_path, statements, message):
    path = study_file(tmp_path / "study.sqlite3")
    with pytest.raises(review.ReviewError, match=message.replace("(", r"\(").replace(")", r"\)")):
        review.open_study_file(tampered(path, *statements), tmp_path / "uploads")


ADD_TRIALS = """INSERT INTO trials (number, study_id, state)
    WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < {count})
    SELECT x + 100, (SELECT MIN(study_id) FROM studies), 'COMPLETE' FROM n"""


def test_more_trials_than_the_limit_are_refused_before_anything_is_read(tmp_path):
    path = study_file(tmp_path / "study.sqlite3")
    data = tampered(path, ADD_TRIALS.format(count=100_000))  # 100,003 real rows in a real table
    with pytest.raises(review.ReviewError, match="holds 100,003 trials, more than the 100,000"):
        review.open_study_file(data, tmp_path / "uploads")


def test_more_rows_than_the_limit_are_refused(tmp_path):
    path = study_file(tmp_path / "study.sqlite3", trials=3)
    rows = sum(
        sqlite3.connect(path).execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in uploads.OPTUNA_TABLES
    )
    data = path.read_bytes()
    limits = uploads.UploadLimits(max_rows=rows)
    uploads.import_study_file(data, tmp_path / "fits.sqlite3", limits)  # exactly at the limit: read
    message = f"holds {rows + 1:,} rows in Optuna's tables, more than the {rows:,}"
    with pytest.raises(uploads.UploadError, match=message):
        uploads.import_study_file(tampered(path, ADD_TRIALS.format(count=1)), tmp_path / "over.sqlite3", limits)
    assert not (tmp_path / "over.sqlite3").exists()


def test_an_honest_file_is_copied_and_only_the_copy_is_opened(tmp_path):
    """The copy holds the same studies and trials, and nothing of the upload's own schema (an extra table,
    index and query statistics are dropped); the upload's bytes are not kept."""
    path = study_file(tmp_path / "study.sqlite3", trials=4)
    data = tampered(path, "CREATE TABLE notes (text TEXT)", "CREATE INDEX odd ON trials (state, number)", "ANALYZE")
    url, storage = review.open_study_file(data, tmp_path / "uploads")
    copy = Path(url.removeprefix("sqlite:///"))
    assert [p.name for p in (tmp_path / "uploads").iterdir()] == [copy.name]
    names = {r[0] for r in sqlite3.connect(copy).execute("SELECT name FROM sqlite_master")}
    assert not {"notes", "odd", "sqlite_stat1"} & names
    original = optuna.storages.RDBStorage(f"sqlite:///{path}")
    assert [s.study_name for s in storage.get_all_studies()] == ["honest"]
    assert storage.get_all_studies()[0].user_attrs == {"sampler": "tpe"}
    assert storage.get_all_trials(storage.get_all_studies()[0]._study_id) == original.get_all_trials(
        original.get_all_studies()[0]._study_id
    )


def allocate(size: int) -> int:
    """Called by ``run_limited`` in its child: allocate (and zero) ``size`` bytes."""
    return len(bytearray(size))


def test_the_reading_process_is_stopped_at_its_memory_limit():
    assert uploads.run_limited("tests.test_uploads:allocate", [100 * 2**20], 2**30, 60, 120) == 100 * 2**20
    with pytest.raises(uploads.UploadError, match="needs more than 1 GiB of memory"):
        uploads.run_limited("tests.test_uploads:allocate", [int(1.5 * 2**30)], 2**30, 60, 120)


def test_the_reading_process_is_stopped_at_its_processor_time_limit():
    with pytest.raises(uploads.UploadError, match="needs more than 2 s of processor time"):
        uploads.run_limited("math:factorial", [2 * 10**6], 2**30, 2, 600)  # ~20 s of work


def test_the_reading_process_is_killed_at_its_wall_clock_limit():
    began = time.monotonic()
    with pytest.raises(uploads.UploadError, match="did not end within 3 s"):
        uploads.run_limited("time:sleep", [120], 2**30, 60, 3)  # sleeping costs no processor time
    assert time.monotonic() - began < 100  # killed, not waited for (generous: the limit is 3 s)


# ---------------------------------------------------------------- upload folders


def test_session_folders_are_swept_only_when_unused_for_the_grace_period(tmp_path):
    server = tmp_path / "server"
    for session in ("ended", "recent"):
        (uploads.session_folder(server, session) / "copy.sqlite3").write_bytes(b"x")
    now = time.time()
    old = now - uploads.SESSION_GRACE_SECONDS - 1
    os.utime(server / "ended", (old, old))
    assert uploads.sweep_sessions(server, now=now) == [server / "ended"]
    assert [p.name for p in server.iterdir()] == ["recent"]
    uploads.session_folder(server, "recent")  # a page run marks it as used
    assert uploads.sweep_sessions(server, now=time.time() + uploads.SESSION_GRACE_SECONDS - 60) == []
    assert uploads.sweep_sessions(server, now=time.time() + uploads.SESSION_GRACE_SECONDS + 1)
    assert list(server.iterdir()) == []


def test_start_up_sweep_removes_folders_of_exited_servers_and_old_loose_files_only(tmp_path):
    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(exited.stdout)
    ours = uploads.server_folder(tmp_path)
    assert ours == tmp_path / str(os.getpid()) and oct(ours.stat().st_mode & 0o777) == "0o700"
    (uploads.session_folder(ours, "s1") / "copy.sqlite3").write_bytes(b"x")
    (tmp_path / str(dead_pid) / "s2").mkdir(parents=True)
    (tmp_path / str(os.getppid()) / "s3").mkdir(parents=True)  # another server, still running
    for name in ("0123abcd.sqlite3", "4567cdef.sqlite3"):
        (tmp_path / name).write_bytes(b"an older version's loose upload")
    old = time.time() - uploads.SESSION_GRACE_SECONDS - 1
    os.utime(tmp_path / "0123abcd.sqlite3", (old, old))  # the other one may be in use right now
    assert sorted(p.name for p in uploads.sweep_servers(tmp_path)) == sorted([str(dead_pid), "0123abcd.sqlite3"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [str(os.getpid()), str(os.getppid()), "4567cdef.sqlite3"]
    )
    assert (ours / "s1" / "copy.sqlite3").exists()


def test_a_session_id_cannot_leave_its_server_folder(tmp_path):
    for bad in ("", "../other", ".hidden", "a/b"):
        with pytest.raises(uploads.UploadError, match="is not a session id"):
            uploads.session_folder(tmp_path, bad)
