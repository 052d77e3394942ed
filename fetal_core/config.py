"""Settings read from the environment, in one place, for the CLI and the app.

- ``FETAL_HPO_DATA``: path of the CSV (default ``data/fetal_health.csv``).
- ``FETAL_HPO_STORAGE``: Optuna storage URL (default ``sqlite:///data/Fetal_Health.sqlite3``).
- ``FETAL_HPO_TORCH_THREADS``: torch threads per training (default 1, see ``training.py``).
- ``FETAL_HPO_HEARTBEAT``: seconds between the heartbeats of a running trial (default 10); a RUNNING trial
  silent for three of them belongs to a dead worker and is failed. One value for every process of a class.

Relative paths are relative to the working directory, like the notebook's ``data/...`` paths.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATA_PATH = "data/fetal_health.csv"
DEFAULT_STORAGE_URL = "sqlite:///data/Fetal_Health.sqlite3"
DEFAULT_STUDY_NAME = "Fetal_Health_Study"
SHARED_DATA_PATH = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "fetal_health.csv"
KAGGLE_DATASET = "andrewmvd/fetal-health-classification"


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
