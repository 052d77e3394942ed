"""What streaming Part I's epochs back from a pool worker costs: the same run on the same one-worker pool,
once as a plain task (no callback) and once as the page's task (epochs sent through the event log at most
every 0.2 s, the stop event checked as often), alternating, median of the repeats. Target: <= 5 %.

    .venv/bin/python -m benchmarks.pool_streaming [--epochs 400] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics

from fetal_core.config import settings
from fetal_core.data import Dataset, load_dataset
from fetal_core.pool import open_pool
from fetal_core.pool_tasks import worker_split
from fetal_core.training import TrainConfig, train


def plain_task(config: TrainConfig, data: Dataset) -> float:
    """The same training on a worker with nothing sent back but the result (the baseline)."""
    return train(config, worker_split(data, config.standardize)).seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    config = TrainConfig(
        hidden_layers=(64, 32), batch_size=16, learning_rate=1e-3, weight_decay=1e-4, epochs=args.epochs
    )
    data = load_dataset(settings().data_path)
    pool = open_pool(workers=1)
    try:
        pool.client.submit(plain_task, TrainConfig(epochs=2), data, pure=False).result()  # warm: split cached
        plain, streamed, epochs_seen = [], [], []
        for _ in range(args.repeats):
            plain.append(pool.client.submit(plain_task, config, data, pure=False).result())
            run = pool.train(config, data)
            while run.alive():
                run.renew()
                pool.wait(run, 0.1)
            assert run.result is not None, run.error
            streamed.append(run.result.seconds)
            epochs_seen.append(len(run.history))
    finally:
        pool.close()
    base, live = statistics.median(plain), statistics.median(streamed)
    print(f"[64,32] batch 16 Adam, {args.epochs} epochs, one pool worker, {args.repeats} repeats each, alternating")
    print(f"load average {os.getloadavg()[0]:.1f} (shared machine: the ratio is what counts)")
    print(f"plain task:     median {base:.2f} s  ({', '.join(f'{s:.2f}' for s in plain)})")
    print(f"streamed (Part I): median {live:.2f} s  ({', '.join(f'{s:.2f}' for s in streamed)})")
    print(f"streaming costs {100 * (live / base - 1):+.1f} % of the training time (target <= 5 %)")


if __name__ == "__main__":
    main()
