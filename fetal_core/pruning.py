"""Pruners: which ones a study may use, and the median rule decided per epoch without re-reading the study."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from .training import ConfigError

# The pruners a study may use: name -> what it does (the pages' help texts; the CLI's choices).
PRUNERS: dict[str, str] = {
    "median": "Median: stop a trial whose accuracy is below the median of earlier trials at the same epoch.",
    "hyperband": "Hyperband: successive halving over several budgets; prunes hard, saves the most time.",
    "halving": "Successive halving: at each rung keep only the best share of trials that got there.",
    "none": "None: every trial runs all its epochs (slower, but no good late-bloomer is cut).",
}


def make_pruner(name: str, epochs: int = 50) -> optuna.pruners.BasePruner:
    """Median (the notebook's), Hyperband, successive halving, or none."""
    if name == "median":
        return MEDIAN_RULE.optuna_pruner()
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"pruner: '{name}' is not one of {', '.join(PRUNERS)}.")


PRUNING_REFRESH_SECONDS = 5.0


@dataclass(frozen=True)
class MedianRule:
    """Optuna's ``MedianPruner`` rule (a 50th-percentile ``PercentilePruner``, one check per reported step),
    written out so that a trial can apply it to values it already holds.

    Prune at step ``s`` (the last one reported) when at least ``n_startup_trials`` trials have completed,
    ``s >= n_warmup_steps``, and the trial's best value so far is worse than the median of the completed
    trials' values at step ``s`` (a trial whose values are all NaN is pruned; no completed value at ``s``: kept).
    ``optuna_pruner()`` is the same rule as Optuna's pruner, which the study itself carries.
    """

    n_startup_trials: int = 5
    n_warmup_steps: int = 0

    def optuna_pruner(self) -> optuna.pruners.MedianPruner:
        """Optuna's pruner with this rule's settings (what the study carries and its other workers use)."""
        return optuna.pruners.MedianPruner(n_startup_trials=self.n_startup_trials, n_warmup_steps=self.n_warmup_steps)

    def prunes(self, reported: dict[int, float], completed: list[FrozenTrial], maximize: bool = True) -> bool:
        """Whether a trial that reported ``reported`` (step -> value) is pruned, given the COMPLETE trials."""
        if not completed or len(completed) < self.n_startup_trials or not reported:
            return False
        step = max(reported)
        if step < self.n_warmup_steps:
            return False
        values = [v for v in reported.values() if not math.isnan(v)]
        if not values:
            return True
        best = max(values) if maximize else min(values)
        at_step = [t.intermediate_values[step] for t in completed if step in t.intermediate_values]
        if not at_step:
            return False
        median = float(np.nanpercentile(np.array(at_step, dtype=float), 50))
        if math.isnan(median):
            return False
        return best < median if maximize else best > median


MEDIAN_RULE = MedianRule()  # the lab's median pruner (``make_pruner("median")``)


def pruning_check(trial: optuna.Trial, rule: MedianRule | None = None) -> Callable[[dict[int, float]], bool]:
    """``trial.should_prune()`` given the values reported so far (step -> value).

    With ``rule`` (the study's pruner is ``rule.optuna_pruner()``) the decision is made here, from the completed
    trials read once per trial and at most every ``PRUNING_REFRESH_SECONDS``: ``Trial.should_prune`` re-reads the
    study at every epoch, and with SQLite each read also reloads the running trial with all its reported values,
    3.4 ms an epoch, a tenth of a whole study's time. With one worker nothing completes while a trial runs, so the
    decisions are Optuna's; with many workers a trial is compared with the trials completed up to
    ``PRUNING_REFRESH_SECONDS`` ago. Without ``rule`` (other pruners) Optuna decides.
    """
    if rule is None:
        return lambda _reported: trial.should_prune()
    study = trial.study
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    completed: list[FrozenTrial] = []
    read_at = -math.inf

    def check(reported: dict[int, float]) -> bool:
        nonlocal completed, read_at
        if time.monotonic() - read_at >= PRUNING_REFRESH_SECONDS:
            completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            read_at = time.monotonic()
        return rule.prunes(reported, completed, maximize)

    return check
