"""Benchmark: time to render the Results page for studies of 30, 300 and 1,000 trials.

Each study is synthetic but shaped like ours: 8 parameters, 50 intermediate values per trial (pruned
trials fewer), the engine's user attrs (config, history, metrics), about a quarter pruned. The page runs
in Streamlit's AppTest against a SQLite storage: a first load (trials read from the storage, plots and
importances computed) and a second load (cached). Target: <= 2 s at 1,000 trials after the first load.

    .venv/bin/python benchmarks/results_render.py [--sizes 30 300 1000] [--folder /tmp/fetal_hpo_bench]

Building the SQLite studies is slow (Optuna writes trial by trial, ~50 ms each), so they are kept in
``--folder`` and reused by later runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import shutil
import sys
import time
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
            "epoch": list(range(1, run + 1)), "train_loss": [round(1 / e, 4) for e in range(1, run + 1)],
            "val_loss": [round(1.2 / e, 4) for e in range(1, run + 1)], "val_accuracy": curve,
            "balanced_accuracy": [round(v - 10, 3) for v in curve], "seconds": seconds,
        }  # fmt: skip
        layers = [params["layer_0"], params["layer_1"]] + [32] * (params["num_layers"] - 2)
        config = {"hidden_layers": layers, "batch_size": params["batch_size"], "optimizer": params["optimizer"],
                  "learning_rate": lr, "weight_decay": params["weight_decay"], "scheduler": bool(params["scheduler"]),
                  "epochs": epochs, "seed": 42 + number, "standardize": False}  # fmt: skip
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


def time_page(url: str, study: str) -> tuple[float, float, int]:
    """(first run s, second run s, number of Plotly charts) of the Results page in AppTest."""
    from streamlit.testing.v1 import AppTest

    os.environ["FETAL_HPO_STORAGE"] = url
    at = AppTest.from_file(str(ROOT / "pages" / "results.py"), default_timeout=300)
    at.session_state["results_study"] = study
    began = time.perf_counter()
    at.run()
    first = time.perf_counter() - began
    if at.exception:
        raise RuntimeError(at.exception[0].message)
    began = time.perf_counter()
    at.run()
    second = time.perf_counter() - began
    charts = len(at.get("plotly_chart"))
    return first, second, charts


def time_live_refresh(path: Path, study: str, folder: Path) -> float:
    """Seconds for one refresh of the page while a trial runs (on a copy with one RUNNING trial)."""
    from streamlit.testing.v1 import AppTest

    live = folder / f"live_{path.name}"
    shutil.copyfile(path, live)
    running = optuna.load_study(study_name=study, storage=f"sqlite:///{live}").ask()
    running.suggest_float("learning_rate", 1e-5, 1e-1, log=True)
    running.report(70.0, 1)
    os.environ["FETAL_HPO_STORAGE"] = f"sqlite:///{live}"
    at = AppTest.from_file(str(ROOT / "pages" / "results.py"), default_timeout=300)
    at.session_state["results_study"] = study
    at.run()
    running.report(71.0, 2)  # what a poll sees: the running trial moved on by one epoch
    began = time.perf_counter()
    at.run()
    seconds = time.perf_counter() - began
    if at.exception:
        raise RuntimeError(at.exception[0].message)
    live.unlink()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[30, 300, 1000])
    parser.add_argument("--folder", default="/tmp/fetal_hpo_bench")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    header = ("trials", "build s", "first load s", "second load s", "live refresh s", "charts")
    print(" ".join(f"{h:>14}" for h in header), "  target: second load <= 2 s")
    for n in args.sizes:
        path = folder / f"results_{n}.sqlite3"
        built = 0.0
        if not path.exists():
            began = time.perf_counter()
            build_study(f"sqlite:///{path}.part", f"bench_{n}", synthetic_trials(n, seed=n))
            os.replace(f"{path}.part", path)
            built = time.perf_counter() - began
        first, second, charts = time_page(f"sqlite:///{path}", f"bench_{n}")
        refresh = time_live_refresh(path, f"bench_{n}", folder)
        verdict = "ok" if second <= 2 else "SLOW"
        cells = (f"{n}", f"{built:.1f}", f"{first:.2f}", f"{second:.2f}", f"{refresh:.2f}", f"{charts}")
        print(" ".join(f"{c:>14}" for c in cells), f"  {verdict}", flush=True)


if __name__ == "__main__":
    main()
