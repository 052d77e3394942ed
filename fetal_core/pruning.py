"""Pruners: which ones a study may use, and a cheap per-epoch pruning decision for the median pruner."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import optuna
from optuna.trial import TrialState

from .training import ConfigError

PRUNERS = ("median", "hyperband", "halving", "none")


def make_pruner(name: str, epochs: int = 50) -> optuna.pruners.BasePruner:
    """Median (the notebook's), Hyperband, successive halving, or none."""
    if name == "median":
        return optuna.pruners.MedianPruner()
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"pruner: '{name}' is not one of {', '.join(PRUNERS)}.")


PRUNING_REFRESH_SECONDS = 5.0


class _CompletedTrials:
    """What a median (percentile) pruner reads of a study, its direction and its COMPLETE trials, re-read
    from storage at most every ``PRUNING_REFRESH_SECONDS``.

    ``Trial.should_prune`` re-reads the study at every epoch, and with SQLite each read also reloads the
    running trial with all its reported values: 3.4 ms an epoch, a tenth of a whole study's time. With
    one worker nothing completes while a trial runs, so the decisions are the same; with many workers a
    trial is compared with the trials completed up to ``PRUNING_REFRESH_SECONDS`` ago.
    """

    def __init__(self, study: optuna.Study) -> None:
        self._study, self.direction = study, study.direction
        self._read_at, self._complete = -math.inf, []

    def get_trials(self, deepcopy: bool = False, states: tuple | None = None) -> list:
        if states != (TrialState.COMPLETE,):
            raise NotImplementedError("only COMPLETE trials are kept for pruning")
        if time.monotonic() - self._read_at >= PRUNING_REFRESH_SECONDS:
            self._complete = self._study.get_trials(deepcopy=False, states=states)
            self._read_at = time.monotonic()
        return self._complete


def pruning_check(trial: optuna.Trial) -> Callable[[dict[int, float]], bool]:
    """``trial.should_prune()`` given the values reported so far (step -> value), cheaper for the median
    pruner (see ``_CompletedTrials``); other pruners keep Optuna's own path."""
    pruner = trial.study.pruner
    if not isinstance(pruner, optuna.pruners.PercentilePruner):
        return lambda _reported: trial.should_prune()
    completed = _CompletedTrials(trial.study)
    running = optuna.trial.FrozenTrial(
        number=trial.number, trial_id=trial.number, state=TrialState.RUNNING, value=None,
        datetime_start=trial.datetime_start, datetime_complete=None, params={}, distributions={},
        user_attrs={}, system_attrs={}, intermediate_values={},
    )  # fmt: skip  (the pruner reads only the reported values; trial_id is not used)

    def check(reported: dict[int, float]) -> bool:
        running.intermediate_values = reported
        return pruner.prune(completed, running)

    return check
