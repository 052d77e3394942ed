"""Shared fixtures: the real data set, temporary storages, a live `streamlit run` server, Chromium."""

from __future__ import annotations

import copy
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parent.parent
DATA_PATH = ROOT / "data" / "fetal_health.csv"
ARTIFACTS = ROOT / "artifacts"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def pytest_report_header(config) -> str:
    """Which BLAS kernel and thread count this run trains with (results may differ in the last bits between
    kernels, so tests assert only what holds on all of them; set OPENBLAS_CORETYPE to try another)."""
    import numpy  # noqa: F401  (loads OpenBLAS)
    from threadpoolctl import threadpool_info

    kernels = sorted({f"{i['internal_api']} {i.get('architecture')}" for i in threadpool_info()})
    threads = os.environ.get("FETAL_HPO_TORCH_THREADS", "1")
    return f"BLAS: {', '.join(kernels)}; FETAL_HPO_TORCH_THREADS={threads}"


@pytest.fixture(scope="session")
def data_path() -> Path:
    if not DATA_PATH.exists():
        pytest.fail(f"{DATA_PATH} is missing: run the tests with `make test`, which fetches it.")
    return DATA_PATH


@pytest.fixture(scope="session")
def dataset(data_path):
    from fetal_core.data import load_dataset

    return load_dataset(data_path)


@pytest.fixture(scope="session")
def pool():
    """The compute pool the pages use in this test process (``pages.common.compute_pool``, 2 workers):
    one LocalCluster shared by the AppTests and the pool tests, closed at the end of the session."""
    from pages.common import compute_pool

    shared = compute_pool()
    assert shared is not None, "the embedded compute pool did not start"
    return shared


@pytest.fixture(autouse=True)
def pool_before_apptest(request) -> None:
    """Page tests (modules using AppTest) start the pool before their first script run: starting it inside
    the run (as a server's first visit does) can outlast AppTest's timeout on a loaded machine."""
    if "AppTest" in vars(request.module):
        request.getfixturevalue("pool")


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/study.sqlite3"


def cli_study_command(storage_url: str, study_name: str, *extra: str) -> list[str]:
    """`python -m fetal_core study --storage URL --study-name NAME` followed by ``extra`` arguments."""
    return [sys.executable, "-m", "fetal_core", "study", "--storage", storage_url, "--study-name", study_name, *extra]


def start_cli_study(storage_url: str, study_name: str, *extra: str, **popen) -> subprocess.Popen:
    """Start cli_study_command in the project folder; ``popen`` (stdout, stderr, env, text...) goes to Popen."""
    return subprocess.Popen(cli_study_command(storage_url, study_name, *extra), cwd=ROOT, **popen)


POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
NO_POSTGRES = "no PostgreSQL server answers at 127.0.0.1:5432"


def postgres_answers() -> bool:
    """Whether the tests' PostgreSQL server (POSTGRES_URL; CI starts it) accepts connections."""
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database (dropped afterwards); skips without a server."""
    if not postgres_answers():
        pytest.skip(NO_POSTGRES)
    import psycopg

    name = f"pytest_{uuid.uuid4().hex[:12]}"
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVER_START_SECONDS = 180


class StreamlitServer:
    """`streamlit run serve.py` (the app, as `make run` serves it; or another ``script``) on
    127.0.0.1:<port, default a free one>, with its own data/storage environment; ready when its health check
    answers."""

    def __init__(self, env: dict[str, str], log_path: Path, port: int | None = None, script: str = "serve.py") -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log_path, "w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                script,
                "--server.address",
                "127.0.0.1",
                "--server.port",
                str(self.port),
                "--server.headless",
                "true",
            ],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        # It exits early if the process dies; the deadline only bounds a hang. Generous: on a loaded 2-core CI machine
        # (the suite's other worker running a server, pool workers and Chromium) a start took over 60 s once.
        deadline = time.monotonic() + SERVER_START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"streamlit exited with {self.process.returncode}; see {log_path}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"streamlit did not become healthy in {SERVER_START_SECONDS} s; see {log_path}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@pytest.fixture
def streamlit_server(tmp_path, data_path) -> Iterator[StreamlitServer]:
    """A live app on a temporary SQLite storage (FETAL_HPO_STORAGE) and the real data set."""
    env = {"FETAL_HPO_DATA": str(data_path), "FETAL_HPO_STORAGE": f"sqlite:///{tmp_path}/app.sqlite3"}
    server = StreamlitServer(env, tmp_path / "streamlit.log")
    yield server
    server.stop()


# Browser tests wait for what they need (an element, a text), never for a deadline sized for a quiet machine:
# every Playwright wait gets this long, and a wait ends as soon as its condition holds.
BROWSER_WAIT_SECONDS = 120


def new_page(browser_or_context, **options):
    """A page (in its own context when given the browser) whose waits last up to BROWSER_WAIT_SECONDS."""
    page = browser_or_context.new_page(**options)
    page.set_default_timeout(BROWSER_WAIT_SECONDS * 1000)
    return page


def wait_until(condition, what: str, timeout: float = BROWSER_WAIT_SECONDS, interval: float = 0.5):
    """Poll ``condition`` until it returns something truthy (returned); fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:.0f} s for {what}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def chromium():
    """Debian's chromium driven by PyPI playwright (never `playwright install`)."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("chromium is not on PATH: `make test` installs it (apt-get install chromium).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def artifacts() -> Path:
    """Where browser tests save screenshots (ignored by git)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def made_up_history(epochs: int) -> list[dict]:
    """A training run's per-epoch history with made-up values: validation accuracy 70 + epoch, the rest constant."""
    return [
        {
            "epoch": e,
            "train_loss": 1.0,
            "val_loss": 1.0,
            "val_accuracy": 70.0 + e,
            "balanced_accuracy": 40.0,
            "seconds": 0.01 * e,
        }
        for e in range(1, epochs + 1)
    ]


def live_part1_run(history: list[dict], number: int) -> dict:
    """Part I's run in progress (session state ``part1_live_run``), run ``number`` of TrainConfig(epochs=400) with
    the epochs of ``history`` done: what a script interrupted mid-training leaves behind."""
    from fetal_core.training import TrainConfig

    return {
        "config": TrainConfig(epochs=400).to_dict(),
        "history": history,
        "number": number,
        "null_accuracy": 77.8,
        "waited_seconds": 0.0,
    }


def shown(markdown: str) -> str:
    """What a reader sees of Markdown made with fetal_core.text.plain: escapes and word joiners removed.

    AppTest hands back the Markdown source of st.info/st.error/...; user text in it comes escaped.
    """
    return re.sub(r"\\(.)", r"\1", str(markdown)).replace("\u2060", "")


class CompletedBefore:
    """What a median pruner reads of a (maximising) study: the trials completed before a given trial."""

    direction = optuna.study.StudyDirection.MAXIMIZE

    def __init__(self, trials: list) -> None:
        self.trials = trials

    def get_trials(self, deepcopy: bool = False, states=None) -> list:
        return self.trials


def median_pruning_replayed(trials: list) -> list[tuple[int, TrialState, int]]:
    """Per trial, the state and epochs Optuna's own MedianPruner allows it, given the values the trials
    reported (one worker: a trial is compared with the trials completed before it started)."""
    pruner, replayed = optuna.pruners.MedianPruner(), []
    for trial in sorted(trials, key=lambda t: t.number):
        before = CompletedBefore([t for t in trials if t.number < trial.number and t.state == TrialState.COMPLETE])
        so_far, state = copy.deepcopy(trial), TrialState.COMPLETE
        so_far.state, so_far.intermediate_values = TrialState.RUNNING, {}
        for step in sorted(trial.intermediate_values):
            so_far.intermediate_values[step] = trial.intermediate_values[step]
            if pruner.prune(before, so_far):
                state = TrialState.PRUNED
                break
        replayed.append((trial.number, state, len(so_far.intermediate_values)))
    return replayed


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children, ...), read from /proc; [] once it has exited."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for children in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                kids = [int(k) for k in children.read_text().split()]
            except OSError:  # the thread or process ended meanwhile
                continue
            found += kids
            todo += kids
    return found


def process_identity(pid: int) -> tuple[int, int] | None:
    """(pid, start time in clock ticks) of a live process, None when it has exited or is a zombie (a reused pid
    has another start time, so this tells "the same process still runs" apart from "the pid was reused")."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # fields after the command name, from the state on
    return None if fields[0] in ("Z", "X") else (pid, int(fields[19]))
