"""A class server one student cannot starve: epoch times at the network caps, a Part I click's first epoch while
the largest allowed studies fill the pool, and what the reserved Part I worker and the time budget cost studies.

Drives the compute pool's API (``fetal_core.pool``, what the pages call: ``Pool.run_studies`` for a Part II tab,
``Pool.train`` for a Train click, leases renewed as the pages do) on the server's default embedded pool (one
study worker per core plus the reserved Part I worker), not Streamlit sessions: the pool is where a click
waited (issue 22: "starts by itself in about 4 s", not started after 150 s). A page adds its own redraw on top
(``benchmarks/class_load.py`` measures pages).

- ``epochs``: one epoch of the largest networks the caps allow (``limits.check_network``), alone in this
  process (``--defect`` adds the defect's 8 x 1,024 units at batch 1: about a minute).
- ``clicks``: two students' studies of the largest allowed trials (2 layers of 1,000-1,024 units, batch 8-9,
  10,000 epochs, no pruner: every trial runs until the server's time budget) fill every study worker; a third
  student clicks Train ``--clicks`` times ([64, 32], batch 16, 20 epochs, 2 s apart): seconds from the click
  to its first epoch back on the server. Targets: <= 3 s (issue 22), p95 <= 1 s (issue 23). ``--no-reserve``
  repeats it on a pool without the reserved worker (priority alone: a click waits for a trial to end).
- ``cost``: trials per minute of two studies of the notebook's default space (30 epochs, no pruner) over
  ``--window`` seconds with Part I idle, then with a student training back to back (400-epoch runs), alternating
  ``--repeats`` times; and the time budget's clock check: one small-step training (batch 1) with and without
  a budget, alternating.

    .venv/bin/python -m benchmarks.class_fairness [--phase all|epochs|clicks|cost] [--clicks 20] [--window 90]
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import tempfile
import time
from pathlib import Path

import optuna

from fetal_core import limits
from fetal_core.config import settings, time_budget
from fetal_core.data import load_dataset, split_dataset
from fetal_core.pool import open_pool
from fetal_core.search import SearchSpace, StudyPlan
from fetal_core.storage import open_storage
from fetal_core.training import TrainConfig, train

CLICK = TrainConfig(hidden_layers=(64, 32), batch_size=16, learning_rate=1e-3, weight_decay=1e-4, epochs=20)
PART1_RUN = TrainConfig(hidden_layers=(64, 32), batch_size=16, learning_rate=1e-3, weight_decay=1e-4, epochs=400)
# The largest trials a study may draw (2 layers of 1,024 units at batch 8 are at the weight-steps cap).
LARGEST = SearchSpace(depth=2, min_units=1000, max_units=1024, min_batch=8, max_batch=9)
AT_THE_CAPS = [
    ((1024, 1024), 8),  # at both caps
    ((384,) * 8, 9),  # the deepest network near the weights cap
    ((128,) * 8, 1),  # batch size 1, 8 layers
    ((256,) * 4, 2),  # the notebook's widest search space at its smallest allowed batch
    ((1024,), 1),  # the widest layer at batch size 1
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def epoch_seconds(layers: tuple[int, ...], batch_size: int, split, epochs: int = 2) -> float:
    config = TrainConfig(layers, batch_size, "Adam", learning_rate=1e-3, weight_decay=1e-4, epochs=epochs)
    history = train(config, split).history
    return min(b.seconds - a.seconds for a, b in zip(history, history[1:])) if epochs > 1 else history[0].seconds


def phase_epochs(data, defect: bool) -> list[str]:
    split = split_dataset(data)
    lines = ["one epoch (Adam, weight decay; the faster of 2) of the largest allowed networks, alone:"]
    for layers, batch in AT_THE_CAPS:
        weights = limits.network_weights(layers)
        seconds = epoch_seconds(layers, batch, split)
        lines.append(
            f"  {str(list(layers)):<42} batch {batch:<3} {weights / 1e6:5.2f} M weights, "
            f"{weights * limits.steps_per_epoch(batch) / 1e6:5.0f} M weight-steps: {seconds:6.2f} s"
        )
        print(lines[-1], flush=True)
    if defect:
        limits_now = (limits.MAX_WEIGHTS, limits.MAX_WEIGHT_STEPS)
        limits.MAX_WEIGHTS, limits.MAX_WEIGHT_STEPS = 10**12, 10**15  # the defect's network, refused since
        try:
            seconds = epoch_seconds((1024,) * 8, 1, split, epochs=1)
        finally:
            limits.MAX_WEIGHTS, limits.MAX_WEIGHT_STEPS = limits_now
        lines.append(f"  the defect's [1024 x 8] at batch 1 (refused now): {seconds:.1f} s an epoch")
        print(lines[-1], flush=True)
    return lines


def renew(jobs) -> None:
    for job in jobs:
        job.renew()
        if job.error:
            raise RuntimeError(job.error)


def start_studies(pool, url: str, data, space: SearchSpace, epochs: int, names: list[str]):
    open_storage(url)  # the tables exist before two workers create the studies at once
    return [
        pool.run_studies(StudyPlan(url, name, trials=10_000, epochs=epochs, pruner="none", space=space), data)
        for name in names
    ]


def wait_busy(pool, studies, timeout: float = 300) -> None:
    """Until every study has a trial on a worker."""
    deadline = time.monotonic() + timeout
    while not all(s.tasks for s in studies):
        if time.monotonic() > deadline:
            raise RuntimeError("the studies did not start")
        renew(studies)
        pool.wait(studies[0], 0.2)


def click_latencies(pool, data, studies, clicks: int, gap: float) -> list[float]:
    latencies = []
    for _ in range(clicks):
        started = time.perf_counter()
        run = pool.train(CLICK, data)
        while not run.history and run.alive():
            run.renew()
            renew(studies)
            pool.wait(run, 0.02)
        latencies.append(time.perf_counter() - started)
        while run.alive():
            run.renew()
            renew(studies)
            pool.wait(run, 0.1)
        if run.error:
            raise RuntimeError(run.error)
        pause = time.monotonic() + gap
        while time.monotonic() < pause:
            renew(studies)
            time.sleep(0.2)
    return latencies


def phase_clicks(data, workdir: Path, clicks: int, reserve: bool) -> list[str]:
    pool = open_pool(interactive=None if reserve else 0)
    url = f"sqlite:///{workdir}/clicks-{'reserved' if reserve else 'priority'}.sqlite3"
    try:
        studies = start_studies(pool, url, data, LARGEST, 10_000, ["student A", "student B"])
        wait_busy(pool, studies)
        print(f"clicks ({'reserved worker' if reserve else 'priority only'}): studies busy, clicking", flush=True)
        latencies = click_latencies(pool, data, studies, clicks, gap=2.0)
        hit = sum(len(s.budget_failures) for s in studies)
        slots = f"{pool.study_slots()} study + {pool.slots() - pool.study_slots()} reserved"
        for study in studies:
            study.stop(timeout=30)
    finally:
        pool.close()
    shown = ", ".join(f"{s:.2f}" for s in latencies)
    return [
        f"Part I first epoch after the click, {'reserved worker + priority' if reserve else 'priority only'} "
        f"({slots} worker(s)), two studies of the largest allowed trials running: p50 "
        f"{statistics.median(latencies):.2f} s, p95 {percentile(latencies, 0.95):.2f} s, max {max(latencies):.2f} s "
        f"over {len(latencies)} clicks ({shown})",
        f"  trials that reached the time budget of {time_budget().trial_seconds:g} s meanwhile: {hit}",
    ]


def finished_trials(studies) -> int:
    return sum(state.ran for study in studies for state in study.states)


def study_window(pool, data, studies, seconds: float, part1: bool) -> tuple[float, int]:
    """Trials per minute of ``studies`` over ``seconds``, with a student training back to back or not."""
    before, started = finished_trials(studies), time.monotonic()
    runs = 0
    run = None
    while time.monotonic() - started < seconds:
        renew(studies)
        if part1:
            if run is None or not run.alive():
                if run is not None and run.error:
                    raise RuntimeError(run.error)
                run, runs = pool.train(PART1_RUN, data), runs + 1
            run.renew()
        pool.wait(studies[0], 0.2)
    if run is not None:
        run.stop(timeout=10)
    return 60 * (finished_trials(studies) - before) / (time.monotonic() - started), runs


def phase_cost(data, workdir: Path, window: float, repeats: int) -> list[str]:
    pool = open_pool()
    url = f"sqlite:///{workdir}/cost.sqlite3"
    idle, busy, runs = [], [], 0
    slots = pool.study_slots()
    try:
        studies = start_studies(pool, url, data, SearchSpace(), 30, ["study 1", "study 2"])
        wait_busy(pool, studies)
        study_window(pool, data, studies, 15, part1=False)  # warm: the first trials import and split
        print(f"cost: {window:.0f} s windows, Part I idle or training, alternating", flush=True)
        for repeat in range(repeats):
            for part1 in (False, True) if repeat % 2 == 0 else (True, False):
                rate, made = study_window(pool, data, studies, window, part1)
                (busy if part1 else idle).append(rate)
                runs += made
                print(f"  window: Part I {'training' if part1 else 'idle'}: {rate:.1f} trials/min", flush=True)
        for study in studies:
            study.stop(timeout=30)
    finally:
        pool.close()
    idle_rate, busy_rate = statistics.median(idle), statistics.median(busy)
    split = split_dataset(data)
    small = TrainConfig(hidden_layers=(15, 10), batch_size=1, epochs=10)
    plain, budgeted = [], []
    for _ in range(9):  # alternating; the fastest of each is the least disturbed by the machine's other work
        plain.append(train(small, split).seconds)
        budgeted.append(train(small, split, time_budget=10**6).seconds)
    clock = min(budgeted) / min(plain) - 1
    return [
        f"two studies (default space, 30 epochs) on {slots} study worker(s), {window:.0f} s windows x "
        f"{repeats}: {idle_rate:.1f} trials/min with Part I idle, {busy_rate:.1f} with a student training back "
        f"to back on the reserved worker ({runs} runs of 400 epochs): the reserved worker costs the studies "
        f"{100 * (1 - busy_rate / idle_rate):.0f} % while it trains, nothing while idle (windows: idle "
        f"{', '.join(f'{r:.1f}' for r in idle)}; training {', '.join(f'{r:.1f}' for r in busy)})",
        f"the time budget's clock check per batch: {100 * clock:+.1f} % on [15, 10] at batch size 1 (1,700 steps an "
        f"epoch, 10 epochs; fastest of 9 each, {min(plain):.3f} s without)",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase", choices=["all", "epochs", "clicks", "cost"], default="all")
    parser.add_argument("--clicks", type=int, default=20)
    parser.add_argument("--window", type=float, default=90.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--defect", action="store_true", help="also time one epoch of the defect's network")
    parser.add_argument("--no-reserve", action="store_true", help="clicks also on a pool without a reserved worker")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = load_dataset(settings().data_path)
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.phase in ("all", "epochs"):
            lines += phase_epochs(data, args.defect)
        if args.phase in ("all", "clicks"):
            lines += phase_clicks(data, Path(tmp), args.clicks, reserve=True)
            if args.no_reserve:
                lines += phase_clicks(data, Path(tmp), max(2, args.clicks // 10), reserve=False)
        if args.phase in ("all", "cost"):
            lines += phase_cost(data, Path(tmp), args.window, args.repeats)
    print()
    print(f"{datetime.date.today()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
