"""Settings read from the environment, in one place, for the CLI and the app.

- ``FETAL_HPO_DATA``: path of the CSV (default ``data/fetal_health.csv``).
- ``FETAL_HPO_STORAGE``: Optuna storage URL (default ``sqlite:///data/Fetal_Health.sqlite3``).
- ``FETAL_HPO_TORCH_THREADS``: torch threads per training (default 1, see ``training.py``).
- ``FETAL_HPO_HEARTBEAT``: seconds between the heartbeats of a running trial (default 10); a RUNNING trial
  silent for three of them belongs to a dead worker and is failed. One value for every process of a class.
- ``FETAL_HPO_TRIAL_SECONDS`` / ``FETAL_HPO_RUN_SECONDS``: the server's time budget per study trial (default
  120) and per Part I run (default 300), in seconds of training, 0 for none (``time_budget``). The compute
  pool enforces them on its workers: a trial that reaches its budget is failed and the study goes on, a run
  keeps what it trained. What a 90-minute lesson can afford (timings alone on one core of a 2-core machine,
  2026-12-06, ``benchmarks/class_fairness.py``): a Part I run of [64, 32] at batch 16 takes 0.008 s an epoch,
  so 300 s is far beyond any exercise's 400-1,000 epochs and still 300 epochs of a network at the size caps
  (~1 s an epoch); no student holds a worker for more than 5 minutes. A trial of the default search space's
  largest network (4 x 256 units, batch 8) takes 0.16 s an epoch: Part II's default 50 epochs fit 120 s many
  times over, ~700 epochs fit it alone, and a study of 20 trials can hold a worker for at most 40 minutes.
  A local CLI study applies the trial budget only when the variable is set (it runs on the user's own machine).

Relative paths are relative to the working directory, like the notebook's ``data/...`` paths.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from .limits import ConfigError

DEFAULT_DATA_PATH = "data/fetal_health.csv"
DEFAULT_STORAGE_URL = "sqlite:///data/Fetal_Health.sqlite3"
DEFAULT_STUDY_NAME = "Fetal_Health_Study"
SHARED_DATA_PATH = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "fetal_health.csv"
KAGGLE_DATASET = "andrewmvd/fetal-health-classification"
TRIAL_SECONDS_ENV, RUN_SECONDS_ENV = "FETAL_HPO_TRIAL_SECONDS", "FETAL_HPO_RUN_SECONDS"
DEFAULT_TRIAL_SECONDS, DEFAULT_RUN_SECONDS = 120.0, 300.0
MAX_BUDGET_SECONDS = 86_400.0


@dataclass(frozen=True)
class Settings:
    data_path: Path
    storage_url: str
    torch_threads: int
    heartbeat_seconds: int = 10

    @property
    def grace_seconds(self) -> int:
        """A RUNNING trial without a heartbeat for this long belongs to a dead worker."""
        return 3 * self.heartbeat_seconds


def settings(data_path: str | os.PathLike | None = None, storage_url: str | None = None) -> Settings:
    """Effective settings: explicit arguments (CLI flags) win over the environment, then defaults."""
    threads = os.environ.get("FETAL_HPO_TORCH_THREADS", "1")
    try:
        torch_threads = max(1, int(threads))
    except ValueError:
        torch_threads = 1
    try:
        heartbeat = max(1, int(os.environ.get("FETAL_HPO_HEARTBEAT", "10")))
    except ValueError:
        heartbeat = 10
    return Settings(
        data_path=Path(data_path or os.environ.get("FETAL_HPO_DATA") or DEFAULT_DATA_PATH),
        storage_url=storage_url or os.environ.get("FETAL_HPO_STORAGE") or DEFAULT_STORAGE_URL,
        torch_threads=torch_threads,
        heartbeat_seconds=heartbeat,
    )


@dataclass(frozen=True)
class TimeBudget:
    """Seconds of training the server allows one study trial and one Part I run (None: no budget)."""

    trial_seconds: float | None = DEFAULT_TRIAL_SECONDS
    run_seconds: float | None = DEFAULT_RUN_SECONDS


def _budget_seconds(name: str, default: float | None) -> float | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and (seconds == 0 or 1 <= seconds <= MAX_BUDGET_SECONDS)):
        raise ConfigError(
            f"{name}: {raw[:40]!r} is not a time budget; use seconds from 1 to {MAX_BUDGET_SECONDS:,.0f}, "
            "or 0 for none."
        )
    return seconds or None


def time_budget(defaults: bool = True) -> TimeBudget:
    """The time budget from ``FETAL_HPO_TRIAL_SECONDS`` and ``FETAL_HPO_RUN_SECONDS``; unset variables give the
    defaults (or, with ``defaults=False``, no budget). A value that is not a budget is one ``ConfigError``."""
    return TimeBudget(
        trial_seconds=_budget_seconds(TRIAL_SECONDS_ENV, DEFAULT_TRIAL_SECONDS if defaults else None),
        run_seconds=_budget_seconds(RUN_SECONDS_ENV, DEFAULT_RUN_SECONDS if defaults else None),
    )
