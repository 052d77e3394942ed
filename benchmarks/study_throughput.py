"""Study throughput: one Part II session alone vs two sessions at the same time.

Each "session" is what the Part II page starts: ``fetal_core.workers.start_worker`` with one study
plan (a spawn process) on the server's storage, its lease renewed like the sidebar does. Both sessions'
studies use the same sampler seed, so they run the same trials (the same work) as the session alone.
The baseline (alone) is measured in the same run, right before the pair. Prints trials per minute for
each and the combined / alone ratio (target: >= 1.6x on 2 cores).

    .venv/bin/python benchmarks/study_throughput.py [--trials 12] [--epochs 20] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import optuna  # noqa: E402

from fetal_core.config import settings  # noqa: E402
from fetal_core.search import StudyPlan, open_storage, summarize  # noqa: E402
from fetal_core.workers import start_worker  # noqa: E402


def run_sessions(storage_url: str, data_path: Path, names: list[str], args) -> dict[str, float]:
    """Start one worker per study name at the same time; return each one's wall time (s) to finish."""
    started = time.perf_counter()
    workers = {
        name: start_worker(
            StudyPlan(
                storage_url=storage_url, study_name=name, trials=args.trials, sampler="tpe",
                pruner=args.pruner, seed=42, epochs=args.epochs,
            ),
            data_path,
        )
        for name in names
    }  # fmt: skip
    finished: dict[str, float] = {}
    while len(finished) < len(workers):
        time.sleep(0.1)
        for name, worker in workers.items():
            worker.renew()
            worker.poll()
            if name not in finished and not worker.alive():
                finished[name] = time.perf_counter() - started
                if worker.error:
                    raise SystemExit(f"{name}: {worker.error}")
    return finished


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12, help="trials per session's study")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--pruner", default="median")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    data_path = settings().data_path.resolve()
    print(f"cores: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f} (machine shared: numbers vary)")
    with tempfile.TemporaryDirectory() as tmp:
        storage_url = f"sqlite:///{tmp}/throughput.sqlite3"
        for repeat in range(args.repeats):
            alone = run_sessions(storage_url, data_path, [f"alone_{repeat}"], args)
            pair = run_sessions(storage_url, data_path, [f"pair_a_{repeat}", f"pair_b_{repeat}"], args)
            storage = open_storage(storage_url)
            for name in [*alone, *pair]:
                s = summarize(optuna.load_study(study_name=name, storage=storage))
                assert s.running == 0 and s.complete + s.pruned == args.trials, s
            alone_rate = 60 * args.trials / alone[f"alone_{repeat}"]
            rates = {name: 60 * args.trials / seconds for name, seconds in pair.items()}
            combined = 60 * args.trials * len(pair) / max(pair.values())
            print(f"repeat {repeat}: {args.trials} trials x {args.epochs} epochs, pruner {args.pruner}")
            print(f"  one session alone:   {alone_rate:6.1f} trials/min ({alone[f'alone_{repeat}']:.1f} s)")
            for name, rate in rates.items():
                print(f"  {name:>8s} (of two):  {rate:6.1f} trials/min ({pair[name]:.1f} s)")
            print(f"  two sessions combined: {combined:6.1f} trials/min")
            print(f"  combined / alone:      {combined / alone_rate:5.2f}x (target >= 1.6x)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
