"""Benchmark: how fast the Results page paints its plots, in Chromium, for studies of 30, 300 and 1,000 trials.

Each study is synthetic but shaped like ours: 8 parameters, 50 intermediate values per trial (pruned
trials fewer), the engine's user attrs (config, history, metrics), about a quarter pruned. For each size a
FRESH ``streamlit run serve.py`` server (as ``make run`` starts it) is started on a storage holding only that
study: nothing read or cached yet. Chromium opens ``/results`` and the page records, from navigation start,
when the first Plotly chart is painted with data and when all default plots are (the Plots tab opens on its
"Search progress" sub-tab: four plots), then clicks the "Parameters" sub-tab and records when its four plots
(importances computed on the server first) are painted. Three loads per size:

- ``fresh/new``: the fresh server, a new browser context (nothing cached in the browser either);
- ``warm/new``: the same server again, another new context (server caches warm);
- ``fresh/back``: that second context again, on a new fresh server restarted on the same address: a browser
  that has opened the app before (Streamlit's and Plotly's scripts in its caches) after a server restart.

Targets at 1,000 trials on a fresh server: first plot <= 2 s, all default plots <= 5 s. The server's start (until its
health check answers, which includes getting ready: imports, storage, compute pool) is printed too, and so is
the floor under both targets, measured in the same run: a bare Streamlit page (``benchmarks/floor_page.py``)
painting one, and four, three-point Plotly charts.

    .venv/bin/python benchmarks/results_render.py [--sizes 30 300 1000] [--repeats 2] [--folder /tmp/fetal_hpo_bench]

Each load also reports the CPU seconds the server and Chromium used while it ran: on a shared machine the
waits vary with the other processes, the work behind them much less.

Building the SQLite studies is slow (Optuna writes trial by trial, ~40 ms each), so they are kept in
``--folder`` and reused by later runs.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTIONS = {
    "batch_size": IntDistribution(8, 128),
    "optimizer": CategoricalDistribution(["SGD", "Adam", "RMSprop"]),
    "learning_rate": FloatDistribution(1e-5, 1e-1, log=True),
    "weight_decay": FloatDistribution(1e-5, 1e-1, log=True),
    "scheduler": IntDistribution(0, 1),
    "num_layers": IntDistribution(2, 4),
    "layer_0": IntDistribution(8, 256),
    "layer_1": IntDistribution(8, 256),
}


def synthetic_trials(n: int, seed: int = 0, epochs: int = 50, pruned_share: float = 0.25) -> list[FrozenTrial]:
    """``n`` finished trials with 8 params and per-epoch curves whose accuracy peaks near lr 3e-3 with Adam."""
    rng = np.random.default_rng(seed)
    start = dt.datetime(2025, 1, 1, 9, 0, 0)
    trials = []
    for number in range(n):
        lr = float(np.exp(rng.uniform(math.log(1e-5), math.log(1e-1))))
        params = {
            "batch_size": int(rng.integers(8, 129)),
            "optimizer": str(rng.choice(["SGD", "Adam", "RMSprop"])),
            "learning_rate": lr,
            "weight_decay": float(np.exp(rng.uniform(math.log(1e-5), math.log(1e-1)))),
            "scheduler": int(rng.integers(0, 2)),
            "num_layers": int(rng.integers(2, 5)),
            "layer_0": int(rng.integers(8, 257)),
            "layer_1": int(rng.integers(8, 257)),
        }
        ceiling = 78 + 14 * math.exp(-((math.log10(lr) + 2.5) ** 2)) + (2 if params["optimizer"] == "Adam" else 0)
        pruned = rng.random() < pruned_share
        run = int(rng.integers(3, epochs)) if pruned else epochs
        curve = [
            round(float(min(ceiling * (1 - 0.25 * math.exp(-e / 6)) + rng.normal(0, 0.4), 100)), 3)
            for e in range(1, run + 1)
        ]
        seconds = [round(0.05 * e, 3) for e in range(1, run + 1)]
        history = {
            "epoch": list(range(1, run + 1)),
            "train_loss": [round(1 / e, 4) for e in range(1, run + 1)],
            "val_loss": [round(1.2 / e, 4) for e in range(1, run + 1)],
            "val_accuracy": curve,
            "balanced_accuracy": [round(v - 10, 3) for v in curve],
            "seconds": seconds,
        }
        layers = [params["layer_0"], params["layer_1"]] + [32] * (params["num_layers"] - 2)
        config = {
            "hidden_layers": layers,
            "batch_size": params["batch_size"],
            "optimizer": params["optimizer"],
            "learning_rate": lr,
            "weight_decay": params["weight_decay"],
            "scheduler": bool(params["scheduler"]),
            "epochs": epochs,
            "seed": 42 + number,
            "standardize": False,
        }
        began = start + dt.timedelta(seconds=3 * number)
        attrs = {"config": config, "history": history}
        if not pruned:
            attrs["metrics"] = {"balanced_accuracy": curve[-1] - 10, "seconds": seconds[-1]}
        trials.append(
            create_trial(
                state=TrialState.PRUNED if pruned else TrialState.COMPLETE,
                value=None if pruned else curve[-1],
                params=params,
                distributions=DISTRIBUTIONS,
                user_attrs=attrs,
                intermediate_values=dict(zip(history["epoch"], curve)),
            )
        )
        trials[-1].datetime_start = began
        trials[-1].datetime_complete = began + dt.timedelta(seconds=seconds[-1] + 0.1)
    return trials


def build_study(url: str, name: str, trials: list[FrozenTrial], attrs: dict | None = None) -> None:
    """Write ``trials`` as study ``name`` (maximise) into the storage at ``url``, with our study attrs."""
    study = optuna.create_study(storage=url, study_name=name, direction="maximize")
    for key, value in (attrs or {"sampler": "tpe", "pruner": "median", "epochs": 50}).items():
        study.set_user_attr(key, value)
    study.add_trials(trials)


DEFAULT_PLOTS = 4  # what the Plots tab shows first for a study with completed trials (its "Search progress")
PARAMETER_PLOTS = ("plot_importance", "plot_slice", "plot_parallel", "plot_contour")  # the "Parameters" sub-tab
FIRST_PLOT_TARGET, ALL_PLOTS_TARGET = 2.0, 5.0  # seconds at 1,000 trials on a fresh server
# Runs in the page before its own scripts: on every animation frame (just before the browser paints) counts
# the Plotly charts drawn with data, and keeps the time since navigation start when each count was reached;
# it stops once all default plots are there. ``window.__watchParameters()`` (called just before the click on the
# "Parameters" sub-tab) keeps the time when that sub-tab's plots are all drawn, in ``window.__parametersPainted``.
PAINT_WATCH = """(() => {
  const marks = window.__plotsPainted = {};
  const check = () => {
    const drawn = Array.from(document.querySelectorAll('.js-plotly-plot'))
      .filter(e => (e.calcdata || []).some(cd => cd && cd.length > 0)).length;
    for (let k = 1; k <= drawn; k++) if (!(k in marks)) marks[k] = performance.now();
    if (drawn < DEFAULT_PLOTS) requestAnimationFrame(check);
  };
  requestAnimationFrame(check);
  window.__watchParameters = () => {
    const wanted = PARAMETER_PLOTS;
    const watch = () => {
      const drawn = wanted.filter(key => Array.from(document.querySelectorAll(`.st-key-${key} .js-plotly-plot`))
        .some(e => (e.calcdata || []).some(cd => cd && cd.length > 0)));
      if (drawn.length === wanted.length) window.__parametersPainted = performance.now();
      else requestAnimationFrame(watch);
    };
    requestAnimationFrame(watch);
  };
})();""".replace("DEFAULT_PLOTS", str(DEFAULT_PLOTS)).replace("PARAMETER_PLOTS", repr(list(PARAMETER_PLOTS)))


def _process_times(root: int) -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) so far of ``root`` and every process below it, by pid: (name, seconds)."""
    tick, children, times = os.sysconf("SC_CLK_TCK"), {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        name, fields = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
        times[int(entry.name)] = (name, (int(fields[11]) + int(fields[12])) / tick)
    found, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in times:
            found[pid] = times[pid]
        todo += children.get(pid, [])
    return found


def cpu_used(before: dict, after: dict, pids=None, name: str = "") -> float:
    """CPU seconds used between two ``_process_times`` by the processes in ``pids`` (all when None) whose
    name contains ``name``."""
    return sum(
        s - before.get(pid, ("", 0.0))[1]
        for pid, (n, s) in after.items()
        if name in n and (pids is None or pid in pids)
    )


@dataclass
class Load:
    """One opening of the Results page: seconds from navigation until k plots were painted (by k), and the
    CPU seconds the server and Chromium used meanwhile (on a shared machine, the work behind the wait); then
    seconds from the click on the "Parameters" sub-tab until its plots were all painted."""

    painted: dict[int, float]
    server_cpu: float
    browser_cpu: float
    parameters: float | None = None

    def cells(self) -> tuple[str, str, str, str]:
        first, every = self.painted[1], self.painted[DEFAULT_PLOTS]
        parameters = "-" if self.parameters is None else f"{self.parameters:.2f}"
        return f"{first:.2f}", f"{every:.2f}", f"{self.server_cpu:.1f}+{self.browser_cpu:.1f}", parameters


def time_load(
    context, url: str, server_pid: int, timeout_s: float = 300, plots: int = DEFAULT_PLOTS, parameters: bool = True
) -> Load:
    """Open ``url`` in a new page of ``context`` and wait for ``plots`` plots (all default plots); then, when
    ``parameters``, click the "Parameters" sub-tab and wait for its plots."""
    page = context.new_page()
    try:
        before = _process_times(os.getpid())  # the server and Chromium both run below this process
        page.goto(url)
        page.wait_for_function(
            f"() => Object.keys(window.__plotsPainted || {{}}).length >= {plots}", timeout=timeout_s * 1000
        )
        after = _process_times(os.getpid())
        if page.locator(".stException").count():
            raise RuntimeError("the Results page shows an exception")
        painted = {int(k): ms / 1000 for k, ms in page.evaluate("window.__plotsPainted").items()}
        server = cpu_used(before, after, pids=_process_times(server_pid))
        load = Load(painted, server, cpu_used(before, after, name="chrom"))
        if parameters:
            clicked = page.evaluate("() => { window.__watchParameters(); return performance.now(); }")
            page.get_by_role("tab", name="Parameters").click()
            page.wait_for_function("() => window.__parametersPainted", timeout=timeout_s * 1000)
            load.parameters = (page.evaluate("window.__parametersPainted") - clicked) / 1000
            if page.locator(".stException").count():
                raise RuntimeError("the Results page's Parameters sub-tab shows an exception")
        return load
    finally:
        page.close()


def new_browser(browser):
    """A new browser context: nothing cached (Streamlit's and Plotly's scripts are fetched and compiled again)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.add_init_script(PAINT_WATCH)
    return context


FLOOR_LOADS = 3


def time_floor(browser, workdir: Path, loads: int = FLOOR_LOADS) -> dict[int, list[float]]:
    """Seconds from navigation until a bare Streamlit page (``benchmarks/floor_page.py``) painted its one, or
    its eight, three-point Plotly charts: each load in a new browser context, on a warm server. What any
    Streamlit page with Plotly costs on this machine, under the Results page's first-plot and all-plots times."""
    from tests.conftest import StreamlitServer

    server = StreamlitServer({}, workdir / "floor.log", script="benchmarks/floor_page.py")
    times: dict[int, list[float]] = {1: [], DEFAULT_PLOTS: []}
    try:
        for charts, seconds in times.items():
            for _ in range(loads + 1):  # the first load warms the server
                with contextlib.closing(new_browser(browser)) as context:
                    url = f"{server.url}/?charts={charts}"
                    load = time_load(context, url, server.process.pid, plots=charts, parameters=False)
                seconds.append(load.painted[charts])
            del seconds[0]
    finally:
        server.stop()
    return times


@dataclass
class Loads:
    """The loads of one study size: on a fresh server with a new browser, the same server again with another
    new browser, and a fresh server (restarted on the same address) with a browser that has opened the app
    before (its HTTP and code caches warm: a student reviewing a study after a server restart)."""

    ready: float  # seconds from starting the server until its health check answered
    new_browser: Load
    second: Load
    returning: Load


def time_fresh_server(browser, path: Path, study: str, data_path: Path, workdir: Path) -> Loads:
    """The three loads of ``Loads``, each server a fresh ``streamlit run serve.py`` whose storage holds only
    ``study``."""
    from tests.conftest import StreamlitServer, free_port

    copy = workdir / path.name  # the server may switch the file to WAL mode: never touch the kept study
    env = {"FETAL_HPO_DATA": str(data_path), "FETAL_HPO_STORAGE": f"sqlite:///{copy}"}
    port = free_port()

    def fresh_server() -> tuple[StreamlitServer, float]:
        shutil.copyfile(path, copy)
        started = time.perf_counter()
        server = StreamlitServer(env, workdir / "streamlit.log", port=port)
        return server, time.perf_counter() - started

    returning = new_browser(browser)
    server, ready = fresh_server()
    try:
        with contextlib.closing(new_browser(browser)) as context:
            first = time_load(context, f"{server.url}/results", server.process.pid)
        second = time_load(returning, f"{server.url}/results", server.process.pid)
    finally:
        server.stop()
        copy.unlink()
    server, _ = fresh_server()
    try:
        again = time_load(returning, f"{server.url}/results", server.process.pid)
    finally:
        server.stop()
        copy.unlink()
        returning.close()
    return Loads(ready, first, second, again)


def spread(values: list[float]) -> str:
    """'median (min-max)' of several runs, or the one value."""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[30, 300, 1000])
    parser.add_argument("--repeats", type=int, default=1, help="fresh servers per size (the spread is printed)")
    parser.add_argument("--folder", default="/tmp/fetal_hpo_bench")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    from playwright.sync_api import sync_playwright

    from fetal_core.config import settings
    from tests.conftest import CHROMIUM_ARGS

    data_path = settings().data_path.resolve()
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for n in args.sizes:
        paths[n] = folder / f"results_{n}.sqlite3"
        if not paths[n].exists():
            began = time.perf_counter()
            build_study(f"sqlite:///{paths[n]}.part", f"bench_{n}", synthetic_trials(n, seed=n))
            os.replace(f"{paths[n]}.part", paths[n])
            print(f"built the {n}-trial study in {time.perf_counter() - began:.0f} s (kept in {folder})")
    print(f"cores: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f} (machine shared: numbers vary)")
    print(
        f"targets at 1,000 trials on a fresh server: first plot <= {FIRST_PLOT_TARGET:g} s, all {DEFAULT_PLOTS} "
        f"default plots <= {ALL_PLOTS_TARGET:g} s. Seconds from navigation; CPU s = server + Chromium during the "
        "load; parameters s = from the click on the Parameters sub-tab until its plots are painted."
    )
    results: dict[int, list[Loads]] = {n: [] for n in args.sizes}
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as tmp:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        try:
            floor = time_floor(browser, Path(tmp))
            print(
                f"floor: a bare Streamlit page (warm server, new browser context, median of {FLOOR_LOADS}) paints "
                f"1 three-point Plotly chart after {statistics.median(floor[1]):.2f} s, {DEFAULT_PLOTS} after "
                f"{statistics.median(floor[DEFAULT_PLOTS]):.2f} s"
            )
            header = ("trials", "run", "ready s", "load", "first plot s", "all plots s", "CPU s", "parameters s")
            print(" ".join(f"{h:>12}" for h in header))
            for repeat in range(args.repeats):
                for n in args.sizes:
                    loads = time_fresh_server(browser, paths[n], f"bench_{n}", data_path, Path(tmp))
                    results[n].append(loads)
                    for label in LOAD_LABELS:
                        load = getattr(loads, label)
                        painted = ", ".join(f"{load.painted[k]:.1f}" for k in sorted(load.painted))
                        cells = (n, repeat + 1, f"{loads.ready:.1f}", LOAD_LABELS[label], *load.cells())
                        print(" ".join(f"{c:>12}" for c in cells), f"  plots 1..{DEFAULT_PLOTS} at {painted} s")
                    sys.stdout.flush()
        finally:
            browser.close()
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print("median (min-max) over repeats:")
    for n, runs in results.items():
        print(f"  {n:>5} trials: server ready {spread([r.ready for r in runs])} s after its start")
        for label, name in LOAD_LABELS.items():
            first_plot = [getattr(r, label).painted[1] for r in runs]
            all_plots = [getattr(r, label).painted[DEFAULT_PLOTS] for r in runs]
            verdict = ""
            if n == 1000 and label != "second":
                met = max(first_plot) <= FIRST_PLOT_TARGET and max(all_plots) <= ALL_PLOTS_TARGET
                verdict = "  (targets met)" if met else "  (targets MISSED)"
                verdict += (
                    f"; vs the floor: first plot {max(first_plot) / statistics.median(floor[1]):.2f}x, all plots "
                    f"{max(all_plots) / statistics.median(floor[DEFAULT_PLOTS]):.2f}x"
                )
            parameters = spread([getattr(r, label).parameters for r in runs])
            print(
                f"    {name:>9}: first plot {spread(first_plot)} s, all {DEFAULT_PLOTS} default plots "
                f"{spread(all_plots)} s{verdict}; Parameters sub-tab {parameters} s after its click"
            )


LOAD_LABELS = {"new_browser": "fresh/new", "second": "warm/new", "returning": "fresh/back"}


if __name__ == "__main__":
    main()
