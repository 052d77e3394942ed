"""A lesson-sized strategy race on a compute pool of two workers (both cores) vs one, in the same run.

    .venv/bin/python -m benchmarks.race_lesson [--epochs 20] [--trials 20] [--seeds 3]

Race: grid, random, TPE and GP x 3 seeds x 20 trials, median pruning on, reduced search space (2 layers,
Adam), 20 epochs per trial by default. Each variant runs the same race (same name and seeds) in its own
temporary SQLite storage; prints the wall time of each, the speed-up from the second core, and the race's
summary table so the two runs can be compared (same seeds: same numbers).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from fetal_core.config import settings
from fetal_core.data import load_dataset
from fetal_core.pool import open_pool
from fetal_core.race import RacePlan, race_progress, start_race
from fetal_core.race_analysis import analyze_race, table_rows
from fetal_core.storage import open_storage


def run_race(plan: RacePlan, workers: int, folder: Path, data_path: Path) -> tuple[float, list[dict]]:
    url = f"sqlite:///{folder}/race_{workers}.sqlite3"
    storage = open_storage(url)
    pool = open_pool(workers=workers)  # started (and warm) before the clock starts, as a server's pool is
    started = time.perf_counter()
    handles = start_race(plan, url, load_dataset(data_path), storage, pool)
    while any(h.alive() for h in handles):
        for h in handles:
            h.renew()
        time.sleep(0.5)
    seconds = time.perf_counter() - started
    pool.close()
    for h in handles:
        if h.error:
            raise SystemExit(f"worker failed: {h.error}")
    progress = race_progress(plan, storage)
    assert progress.complete, progress
    return seconds, table_rows(analyze_race(plan, storage))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    plan = RacePlan(
        "lesson",
        strategies=("grid", "random", "tpe", "gp"),
        pruning=(True,),
        seeds=args.seeds,
        trials=args.trials,
        epochs=args.epochs,
        reduced=True,
    )
    data_path = settings().data_path
    print(
        f"race: {len(plan.runs())} runs (grid, random, TPE, GP x {plan.seeds} seeds) x {plan.trials} trials x "
        f"{plan.epochs} epochs, median pruning, reduced space; at most {plan.estimated_epochs:,} epochs"
    )
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")
    with tempfile.TemporaryDirectory() as folder:
        two, table_two = run_race(plan, 2, Path(folder), data_path)
        print(f"two workers: {two:7.1f} s")
        one, table_one = run_race(plan, 1, Path(folder), data_path)
        print(f"one worker:  {one:7.1f} s")
    print(f"speed-up from the second core: {one / two:.2f}x (load average now {os.getloadavg()[0]:.2f})")
    print("same results with one and two workers:", table_one == table_two)
    for row in table_two:
        print("  ", row)


if __name__ == "__main__":
    main()
