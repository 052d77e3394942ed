"""Optuna studies: the search space, the objective, samplers and a safe trial runner (pruners: `pruning`).

The objective reads as the notebook's define-by-run search space; every trial keeps its full config and
per-epoch curve as user attrs, so a results page never retrains. ``run_study`` guarantees that a trial
interrupted by any exception (also ``BaseException``s such as KeyboardInterrupt, SystemExit or a
Streamlit Stop) is told FAIL before the exception propagates: no trial is left RUNNING.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from . import limits, records
from .config import DEFAULT_STUDY_NAME
from .data import Dataset, Split, split_dataset
from .lesson import check_not_reserved, is_reserved_name
from .pruning import MEDIAN_RULE, PRUNERS, make_pruner, pruning_check
from .storage import open_storage, reap_stale_trials
from .training import OPTIMIZERS, ConfigError, EpochMetrics, TrainConfig, train

# The samplers a study may use: name -> what it does (the pages' help texts; the CLI's choices).
SAMPLERS: dict[str, str] = {
    "tpe": "TPE (Bayesian): models good vs bad settings from past trials (its first 10 trials are random draws); "
    "the notebook's choice, best default.",
    "random": "Random: independent draws; the honest baseline, parallelises perfectly and needs no history.",
    "grid": "Grid: every combination of 3 values per range, visited in random order; needs a fixed depth (the "
    "race's reduced space), grows very fast.",
    "gp": "Gaussian process (GP): a smooth model of accuracy; strong with few trials, slower per trial.",
    "cmaes": "CMA-ES: evolves a population of settings; for many trials on numeric ranges.",
}
# Errors inside one trial that fail that trial but let the study go on (a NaN, a bad suggestion).
TRIAL_ERRORS = (ArithmeticError, RuntimeError, ValueError)


class StudyInterrupted(Exception):
    """Raised inside a trial when the caller asked the study to stop (the trial is then FAIL)."""


class TimeBudgetExceeded(RuntimeError):
    """A trial reached the server's time budget per trial: it is FAIL (reason in its ``fail_reason`` user attr)
    and the study goes on (a ``TRIAL_ERRORS`` error)."""


FAIL_REASON = records.FAIL_REASON  # a trial's user attr: why it failed, in a sentence


class _Interrupted(Exception):
    """Carries a BaseException through ``Study.optimize`` so that Optuna marks the trial FAIL first."""


# ---------------------------------------------------------------- search space


@dataclass(frozen=True)
class SearchSpace:
    """The notebook's search space; every range can be narrowed or widened.

    ``depth=None`` is the notebook's define-by-run architecture search (``num_layers`` between
    ``min_layers`` and ``max_layers``, then one width per layer); an int fixes the depth.
    ``scheduler=None`` searches it (on/off); True/False fixes it.
    """

    depth: int | None = None
    min_layers: int = 2
    max_layers: int = 4
    min_units: int = 8
    max_units: int = 256
    min_batch: int = 8
    max_batch: int = 128
    optimizers: tuple[str, ...] = OPTIMIZERS
    min_lr: float = 1e-5
    max_lr: float = 1e-1
    min_weight_decay: float = 1e-5
    max_weight_decay: float = 1e-1
    scheduler: bool | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "optimizers", tuple(self.optimizers))
        for name, low, high, allowed in (
            ("layers", self.min_layers, self.max_layers, limits.LAYERS),
            ("units", self.min_units, self.max_units, limits.UNITS),
            ("batch size", self.min_batch, self.max_batch, limits.BATCH_SIZE),
            ("learning rate", self.min_lr, self.max_lr, limits.LEARNING_RATE),
            ("weight decay", self.min_weight_decay, self.max_weight_decay, limits.WEIGHT_DECAY),
        ):
            whole = allowed in (limits.LAYERS, limits.UNITS, limits.BATCH_SIZE)
            limits.check(f"{name}: the low end", low, allowed, whole=whole)
            limits.check(f"{name}: the high end", high, allowed, whole=whole)
            if not low < high:
                raise ConfigError(f"{name}: the low end {low:g} must be below the high end {high:g}.")
        if self.min_weight_decay <= 0:
            low = self.min_weight_decay
            raise ConfigError(f"weight decay: a log-scale range needs a positive low end, not {low:g}.")
        if not self.optimizers:
            raise ConfigError("optimizers: choose at least one optimiser.")
        unknown = [o for o in self.optimizers if o not in OPTIMIZERS]
        if unknown:
            raise ConfigError(f"optimizers: {', '.join(unknown)} not one of {', '.join(OPTIMIZERS)}.")
        if self.depth is not None:
            limits.check("depth (fixed number of hidden layers)", self.depth, limits.LAYERS, whole=True)

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Ask ``trial`` for one configuration, in the notebook's order and with its parameter names."""
        batch_size = trial.suggest_int("batch_size", self.min_batch, self.max_batch)
        optimizer = trial.suggest_categorical("optimizer", list(self.optimizers))
        learning_rate = trial.suggest_float("learning_rate", self.min_lr, self.max_lr, log=True)
        weight_decay = trial.suggest_float("weight_decay", self.min_weight_decay, self.max_weight_decay, log=True)
        if self.scheduler is None:
            scheduler = trial.suggest_int("scheduler", 0, 1) == 1
        else:
            scheduler = self.scheduler
        if self.depth is None:
            depth = trial.suggest_int("num_layers", self.min_layers, self.max_layers)
        else:
            depth = self.depth
        hidden_layers = tuple(trial.suggest_int(f"layer_{i}", self.min_units, self.max_units) for i in range(depth))
        return dict(
            hidden_layers=hidden_layers,
            batch_size=batch_size,
            optimizer=optimizer,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            scheduler=scheduler,
        )

    def grid(self, points: int = 3) -> dict[str, list]:
        """A discretised version for ``GridSampler``: ``points`` values per numeric range (log-spaced
        where the range is log), every optimiser, scheduler on/off. Needs a fixed depth."""
        if self.depth is None:
            raise ConfigError("grid search needs a fixed depth (2, 3 or 4 layers), not define-by-run.")
        if points < 2:
            raise ConfigError(f"grid points: {points}; use at least 2 values per range.")

        def ints(low: int, high: int) -> list[int]:
            return sorted({int(round(v)) for v in np.linspace(low, high, points)})

        def logs(low: float, high: float) -> list[float]:
            return [float(f"{v:.3g}") for v in np.geomspace(low, high, points)]

        grid: dict[str, list] = {
            "batch_size": ints(self.min_batch, self.max_batch),
            "optimizer": list(self.optimizers),
            "learning_rate": logs(self.min_lr, self.max_lr),
            "weight_decay": logs(self.min_weight_decay, self.max_weight_decay),
        }
        if self.scheduler is None:
            grid["scheduler"] = [0, 1]
        for i in range(self.depth):
            grid[f"layer_{i}"] = ints(self.min_units, self.max_units)
        return grid

    def to_dict(self) -> dict:
        d = asdict(self)
        d["optimizers"] = list(self.optimizers)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SearchSpace:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def parse_depth(depth: str | int | None) -> int | None:
    """'nas' (or None) -> define-by-run; '2'/'3'/'4' -> a fixed depth."""
    if depth is None or str(depth).lower() in ("nas", "define-by-run", ""):
        return None
    try:
        return int(depth)
    except ValueError:
        raise ConfigError(f"depth: '{depth}' is not 'nas' or a number of layers.") from None


# ---------------------------------------------------------------- samplers


def make_sampler(name: str, seed: int | None = 42, space: SearchSpace | None = None, grid_points: int = 3):
    """TPE (Optuna 5 defaults), random, grid (on ``space.grid``), GP or CMA-ES, all seeded."""
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return optuna.samplers.GridSampler((space or SearchSpace()).grid(grid_points), seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    raise ConfigError(f"sampler: '{name}' is not one of {', '.join(SAMPLERS)}.")


def check_study_name(name: str) -> str:
    """A name for an Optuna study: 1-200 printable characters, not one of class mode's (``is_reserved_name``)."""
    name = (name or "").strip()
    if not name:
        raise ConfigError("study name: give the study a name.")
    if len(name) > 200 or not name.isprintable():
        raise ConfigError("study name: use up to 200 printable characters.")
    return check_not_reserved(name)


def own_study(owner: str) -> tuple[str, int]:
    """A student's own default study: ``Fetal_Health_Study (<owner>)`` (the nickname, or a tag of the session) and
    a seed derived from that name, stable across servers and within ``limits.SEED``, so two students' default
    studies neither merge nor draw the same trials."""
    owner = " ".join(str(owner).split())[:40] or "guest"
    name = f"{DEFAULT_STUDY_NAME} ({owner})"
    if is_reserved_name(name):  # a nickname such as "by hand"
        name = f"{DEFAULT_STUDY_NAME} (student {owner})"
    return name, name_seed(name)


def name_seed(name: str) -> int:
    """A seed derived from a study name: the same on every server and run, different for different names."""
    digest = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")
    return int(limits.SEED.low) + digest % (int(limits.SEED.high) - int(limits.SEED.low) + 1)


# ---------------------------------------------------------------- objective and runner


def history_columns(history: list[EpochMetrics]) -> dict[str, list[float]]:
    """A per-epoch curve as compact columns (what a trial stores in its ``history`` user attr)."""
    keys = ("epoch", "train_loss", "val_loss", "val_accuracy", "balanced_accuracy", "seconds")
    return {k: [round(float(getattr(m, k)), 5) if k != "epoch" else m.epoch for m in history] for k in keys}


@dataclass(frozen=True)
class StudyPlan:
    """Everything that defines a study run (what the CLI's ``study`` command and the pages set)."""

    storage_url: str
    study_name: str
    trials: int = 30
    sampler: str = "tpe"
    pruner: str = "median"
    seed: int = 42
    epochs: int = 50
    space: SearchSpace = field(default_factory=SearchSpace)
    standardize: bool = False
    grid_points: int = 3
    shared_target: bool = False  # stop once the study's target (records.target_trials) is reached by all its workers

    def __post_init__(self) -> None:
        check_study_name(self.study_name)
        limits.check("trials", self.trials, limits.TRIALS, whole=True)
        limits.check("epochs", self.epochs, limits.EPOCHS, whole=True)
        limits.check("seed", self.seed, limits.SEED, whole=True)
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"sampler: '{self.sampler}' is not one of {', '.join(SAMPLERS)}.")
        if self.pruner not in PRUNERS:
            raise ConfigError(f"pruner: '{self.pruner}' is not one of {', '.join(PRUNERS)}.")
        if self.sampler == "grid":
            self.space.grid(self.grid_points)  # validates: grid needs a fixed depth
        # The largest network the space can draw, at its smallest batch: every trial must fit the lab's caps. (Here,
        # not in SearchSpace, which also reads back wide by-hand runs and spaces stored before the caps.)
        widest = (self.space.max_units,) * (self.space.depth or self.space.max_layers)
        limits.check_network(widest, self.space.min_batch, "search space: its largest network")

    def description(self) -> records.StudyDescription:
        """What the study records about how it was made (study user attrs)."""
        return records.StudyDescription(
            sampler=self.sampler,
            pruner=self.pruner,
            seed=self.seed,
            epochs=self.epochs,
            standardize=self.standardize,
            search_space=self.space.to_dict(),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
        )


def make_objective(
    plan: StudyPlan,
    split: Split,
    should_stop: Callable[[], bool] | None = None,
    time_budget: float | None = None,
) -> Callable[[optuna.Trial], float]:
    """The notebook's objective: suggest a config, train it reporting every epoch, prune, return the
    final validation accuracy (%). ``should_stop`` is polled each epoch (a Stop button). A trial that trains
    longer than ``time_budget`` seconds ends FAIL with its reason (``TimeBudgetExceeded``); its curve is kept."""

    def objective(trial: optuna.Trial) -> float:
        config = TrainConfig(
            **plan.space.suggest(trial), epochs=plan.epochs, seed=plan.seed + trial.number, standardize=plan.standardize
        )
        records.store_config(trial, config.to_dict())
        records.store_worker(trial)  # the process that trained it
        history: list[EpochMetrics] = []
        reported: dict[int, float] = {}
        should_prune = pruning_check(trial, MEDIAN_RULE if plan.pruner == "median" else None)

        def report(metrics: EpochMetrics) -> None:
            history.append(metrics)
            trial.report(metrics.val_accuracy, metrics.epoch)
            reported[metrics.epoch] = metrics.val_accuracy
            if should_stop is not None and should_stop():
                raise StudyInterrupted(f"stopped by the user after epoch {metrics.epoch}")
            if should_prune(reported):
                raise optuna.TrialPruned(f"pruned after epoch {metrics.epoch}")

        try:
            result = train(config, split, report, time_budget=time_budget)
        finally:
            if history:
                try:
                    records.store_history(trial, history_columns(history))
                except Exception:  # the storage may be the reason we are unwinding; keep that error
                    pass
        if result.stopped_by_budget is not None:
            reason = (
                f"stopped by the server's time budget of {result.stopped_by_budget:g} s per trial after epoch "
                f"{len(history)} of {config.epochs}"
            )
            records.store_fail_reason(trial, reason)
            raise TimeBudgetExceeded(reason)
        records.store_metrics(
            trial,
            {
                "balanced_accuracy": result.final_balanced_accuracy,
                "confusion_matrix": result.confusion_matrix,
                "per_class_recall": result.per_class_recall,
                "seconds": result.seconds,
            },
        )
        return result.final_val_accuracy

    return objective


def run_trials(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    n_trials: int,
    callbacks: list[Callable] | None = None,
) -> None:
    """``study.optimize`` such that any interruption leaves the running trial FAIL, never RUNNING.

    Optuna marks a trial FAIL for ``Exception`` and ``KeyboardInterrupt`` only; other
    ``BaseException``s (SystemExit, Streamlit's Stop/rerun) would skip its bookkeeping. We carry them
    through as an ``Exception`` and re-raise the original afterwards.
    """

    def guarded(trial: optuna.Trial) -> float:
        try:
            return objective(trial)
        except Exception:
            raise
        except BaseException as err:
            raise _Interrupted() from err

    try:
        study.optimize(guarded, n_trials=n_trials, catch=TRIAL_ERRORS, callbacks=callbacks, gc_after_trial=False)
    except _Interrupted as wrapped:
        raise wrapped.__cause__ from None


@dataclass
class StudySummary:
    study: str
    trials: int
    complete: int
    pruned: int
    failed: int
    running: int
    best_value: float | None
    best_params: dict
    seconds: float
    ran: int = 0
    interrupted: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(study: optuna.Study, seconds: float = 0.0, ran: int = 0, interrupted: bool = False) -> StudySummary:
    """Counts by state and the best trial, read from the storage."""
    trials = study.get_trials(deepcopy=False)
    states = [t.state for t in trials]
    best = records.best_trial(trials, study.direction == optuna.study.StudyDirection.MAXIMIZE)
    return StudySummary(
        study=study.study_name,
        trials=len(trials),
        complete=states.count(TrialState.COMPLETE),
        pruned=states.count(TrialState.PRUNED),
        failed=states.count(TrialState.FAIL),
        running=states.count(TrialState.RUNNING),
        best_value=None if best is None else best.value,
        best_params={} if best is None else dict(best.params),
        seconds=seconds,
        ran=ran,
        interrupted=interrupted,
    )


def open_study(plan: StudyPlan, storage: optuna.storages.BaseStorage | None = None) -> optuna.Study:
    """Create the study or load it (``load_if_exists``), with the plan's sampler and pruner."""
    storage = storage if storage is not None else open_storage(plan.storage_url)
    study = optuna.create_study(
        storage=storage,
        study_name=check_study_name(plan.study_name),
        direction="maximize",
        sampler=make_sampler(plan.sampler, plan.seed, plan.space, plan.grid_points),
        pruner=make_pruner(plan.pruner, plan.epochs),
        load_if_exists=True,
    )
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise ConfigError(f"study '{plan.study_name}' exists but minimises; this lab maximises accuracy.")
    if records.lesson_record(study.user_attrs):
        raise ConfigError(
            f"study '{plan.study_name}' holds class-mode records (students' Part I runs or the lessons), not "
            "Optuna's trials; choose another name."
        )
    existing = len(study.get_trials(deepcopy=False))
    if existing and plan.seed is not None:
        # Resuming: a fresh sampler with the plan's seed would redraw the first trials' points (its random
        # start-up phase); offsetting the seed by the trials already there keeps resuming reproducible.
        study.sampler = make_sampler(plan.sampler, plan.seed + existing, plan.space, plan.grid_points)
    records.describe_study(study, plan.description())
    return study


def target_reached(study: optuna.Study) -> bool:
    """Whether the trials finished or running reach the study's shared target (``records.target_trials``), if any.

    Counting the running trials too lets two sessions that start the same study at once share one target
    instead of running it twice over: each stops starting trials once the others' running trials fill it.
    """
    target = records.target_trials(study.user_attrs)
    if target is None:
        return False
    counted = (*records.FINISHED, TrialState.RUNNING)
    return len(study.get_trials(deepcopy=False, states=counted)) >= target


def run_study(
    plan: StudyPlan,
    data: Dataset,
    storage: optuna.storages.BaseStorage | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_trial_end: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
    time_budget: float | None = None,
) -> StudySummary:
    """Run ``plan.trials`` trials on the plan's study (several processes may do this at once).

    A Stop (``should_stop()`` true) fails the running trial and returns with ``interrupted=True``;
    finished trials stay and the study can be continued later. A trial longer than ``time_budget`` seconds
    is FAIL and the study goes on.
    """
    started = time.perf_counter()
    study = open_study(plan, storage)
    reap_stale_trials(study)
    split = split_dataset(data, standardize=plan.standardize)
    finished: list[int] = []

    stopped_between_trials: list[bool] = []

    def count(study_: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        finished.append(trial.number)
        if on_trial_end is not None:
            on_trial_end(study_, trial)
        if should_stop is not None and should_stop():
            stopped_between_trials.append(True)
            study_.stop()  # no new trial; the finished one is kept
        elif plan.shared_target and target_reached(study_):
            study_.stop()  # other workers of the study (another session, a CLI worker) brought it to its target

    interrupted = False
    try:
        run_trials(study, make_objective(plan, split, should_stop, time_budget), plan.trials, [count])
    except StudyInterrupted:
        interrupted = True
    interrupted = interrupted or bool(stopped_between_trials)
    return summarize(study, time.perf_counter() - started, ran=len(finished), interrupted=interrupted)
