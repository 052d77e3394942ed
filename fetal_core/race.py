"""The strategy race: grid vs random vs Bayesian search, with and without pruning, repeated over seeds.

Every (strategy, pruning, seed) run is an ordinary Optuna study named
``race:<race>:<strategy>:<pruned|full>:seed<k>`` whose user attrs hold the race's settings, so a race
is found, resumed and analysed from the storage alone. The runs' trials go to the compute pool
(``fetal_core.pool``), all runs advancing together; the analysis reads only stored trials, never trains.

Accounting: a trial counts when it finished (COMPLETE or PRUNED); its cost is the epochs it reported.
A trial failed by a Stop is not the strategy's doing and is left out of the analysis (resume re-runs it,
except on grid, whose sampler treats a failed grid point as visited).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from . import records, review
from .data import Dataset
from .lesson import RESERVED_RULE, is_reserved_name
from .search import SAMPLERS, SearchSpace, StudyPlan, open_study
from .storage import reap_stale_trials
from .training import ConfigError

RACE_PREFIX = "race:"
STRATEGY_NAMES = {"tpe": "TPE", "random": "random", "grid": "grid", "gp": "GP", "cmaes": "CMA-ES"}
# The lesson-sized space: two hidden layers, Adam, cosine schedule; batch size, learning rate, weight
# decay and the two widths are searched.
REDUCED_SPACE = SearchSpace(depth=2, optimizers=("Adam",), scheduler=True)


class RaceError(ConfigError):
    """A race setting or state that cannot be used (bad name, clashing settings, race busy elsewhere)."""


def check_race_name(name: str) -> str:
    """A race name as used in study names: 1-60 printable characters, no ':'."""
    name = (name or "").strip()
    if not name:
        raise RaceError("race name: give the race a name.")
    if len(name) > 60 or not name.isprintable() or ":" in name:
        raise RaceError(f"race name: '{name}' must be 1-60 printable characters without ':'.")
    if is_reserved_name(name):  # its studies' names could not be, but one rule for every name typed reads simpler
        raise RaceError(f"race name: '{name}' is reserved ({RESERVED_RULE}); choose another.")
    return name


@dataclass(frozen=True)
class RaceRun:
    """One (strategy, pruning, seed) run of a race: one Optuna study (its ``records.race_run``)."""

    strategy: str
    pruned: bool
    seed: int

    @property
    def record(self) -> records.RaceRunRecord:
        """What the run's study stores about it."""
        return records.RaceRunRecord(self.strategy, self.pruned, self.seed)

    @property
    def label(self) -> str:
        """What the plots call it, e.g. 'TPE + pruning'."""
        return STRATEGY_NAMES[self.strategy] + (" + pruning" if self.pruned else "")

    def study_name(self, race: str) -> str:
        return f"{RACE_PREFIX}{race}:{self.strategy}:{'pruned' if self.pruned else 'full'}:seed{self.seed}"


@dataclass(frozen=True)
class RacePlan:
    """Everything that defines a race; stored on each of its studies as the ``race`` user attr."""

    name: str
    strategies: tuple[str, ...] = ("tpe", "random")
    pruning: tuple[bool, ...] = (True,)
    seeds: int = 3
    trials: int = 20
    epochs: int = 20
    reduced: bool = False
    grid_points: int = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", check_race_name(self.name))
        object.__setattr__(self, "strategies", tuple(dict.fromkeys(self.strategies)))
        object.__setattr__(self, "pruning", tuple(dict.fromkeys(bool(p) for p in self.pruning)))
        if not self.strategies:
            raise RaceError("strategies: choose at least one strategy.")
        unknown = [s for s in self.strategies if s not in SAMPLERS]
        if unknown:
            raise RaceError(f"strategies: {', '.join(unknown)} not one of {', '.join(SAMPLERS)}.")
        if not self.pruning:
            raise RaceError("pruning: choose on, off or both.")
        for setting, value, high in (
            ("seeds", self.seeds, 20),
            ("trials", self.trials, 1000),
            ("epochs", self.epochs, 500),
        ):
            if not 1 <= value <= high:
                raise RaceError(f"{setting}: {value} must be between 1 and {high}.")
        if "grid" in self.strategies:
            if not self.reduced:
                raise RaceError("strategies: grid needs the reduced search space (a fixed depth to lay a grid on).")
            if not 2 <= self.grid_points <= 10:
                raise RaceError(f"grid points: {self.grid_points}; use 2 to 10 values per range.")

    @property
    def space(self) -> SearchSpace:
        return REDUCED_SPACE if self.reduced else SearchSpace()

    def runs(self) -> list[RaceRun]:
        """Seed-major order: all strategies advance together on the compute pool."""
        return [RaceRun(s, p, k) for k in range(self.seeds) for s in self.strategies for p in self.pruning]

    def target_trials(self, run: RaceRun) -> int:
        """Trials a run needs: ``trials``, or the whole grid if it is smaller."""
        if run.strategy == "grid":
            return min(self.trials, grid_size(self.space, self.grid_points))
        return self.trials

    @property
    def estimated_epochs(self) -> int:
        """The cost before starting: runs x trials x epochs (pruning can only lower it)."""
        return sum(self.target_trials(run) for run in self.runs()) * self.epochs

    def study_plan(self, run: RaceRun, storage_url: str, trials: int) -> StudyPlan:
        return StudyPlan(
            storage_url=storage_url,
            study_name=run.study_name(self.name),
            trials=trials,
            sampler=run.strategy,
            pruner="median" if run.pruned else "none",
            seed=run.seed,
            epochs=self.epochs,
            space=self.space,
            grid_points=self.grid_points,
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["strategies"], d["pruning"] = list(self.strategies), list(self.pruning)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RacePlan:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def grid_size(space: SearchSpace, points: int) -> int:
    """How many points the grid sampler enumerates."""
    return math.prod(len(values) for values in space.grid(points).values())


# ---------------------------------------------------------------- storage: find, create, resume


def _race_studies(storage: optuna.storages.BaseStorage, name: str | None = None) -> list:
    prefix = RACE_PREFIX if name is None else f"{RACE_PREFIX}{name}:"
    return [
        s for s in storage.get_all_studies() if s.study_name.startswith(prefix) and records.is_race_study(s.user_attrs)
    ]


def list_races(storage: optuna.storages.BaseStorage) -> list[str]:
    """Names of the races in the storage, sorted."""
    return sorted({records.race_plan(s.user_attrs)["name"] for s in _race_studies(storage)})


def load_plan(name: str, storage: optuna.storages.BaseStorage) -> RacePlan | None:
    """The stored settings of race ``name`` (None if there is no such race)."""
    studies = _race_studies(storage, check_race_name(name))
    return RacePlan.from_dict(records.race_plan(studies[0].user_attrs)) if studies else None


def stored_trials(storage: optuna.storages.BaseStorage, study_name: str) -> list[FrozenTrial]:
    """All trials of one run's study (none when the study does not exist yet)."""
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return []
    return review.load_trials(storage, study_id, states=tuple(TrialState))


def prepare_race(plan: RacePlan, storage_url: str, storage: optuna.storages.BaseStorage) -> list[StudyPlan]:
    """Create (or check) the race's studies and return the study plans still to run.

    A finished run is skipped; an interrupted one is topped up to ``target_trials`` (``open_study``
    reseeds its sampler so it does not redraw its first points). Raises ``RaceError`` if the name is
    taken by a race with other settings, or if a run still has a RUNNING trial with a live heartbeat
    (the race is running somewhere else).
    """
    stored = load_plan(plan.name, storage)
    if stored is not None and stored != plan:
        changed = [k for k, v in plan.to_dict().items() if stored.to_dict()[k] != v]
        raise RaceError(
            f"race '{plan.name}' already exists with other settings ({', '.join(changed)}); "
            "open it to resume, or choose another name."
        )
    todo: list[StudyPlan] = []
    for run in plan.runs():
        study = open_study(plan.study_plan(run, storage_url, plan.trials), storage)
        records.mark_race_study(study, plan.to_dict(), run.record, plan.target_trials(run))
        reap_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        running = [t.number for t in trials if t.state == TrialState.RUNNING]
        if running:
            raise RaceError(
                f"race '{plan.name}': trial {running[0]} of '{study.study_name}' is still RUNNING "
                "(another session is running this race); wait for it or stop it first."
            )
        remaining = plan.target_trials(run) - records.count(trials, _used_states(run))
        if remaining > 0:
            todo.append(plan.study_plan(run, storage_url, remaining))
    return todo


def _used_states(run: RaceRun) -> tuple[TrialState, ...]:
    """The trials that use up a run's budget: the finished ones, and on grid the failed ones too (its sampler
    treats a failed grid point as visited and does not revisit it)."""
    return records.ENDED if run.strategy == "grid" else records.FINISHED


def start_race(
    plan: RacePlan,
    storage_url: str,
    data: Dataset,
    storage: optuna.storages.BaseStorage,
    pool,
    lease_seconds: float | None = None,
) -> list:
    """Prepare the race and queue its runs' trials on ``pool`` (a ``fetal_core.pool.Pool``): one job whose
    runs advance together, one trial per run at a time. Returns the job handles (empty if the race is
    already complete); the caller renews their leases and stops them."""
    from .pool import STUDY_LEASE_SECONDS

    todo = prepare_race(plan, storage_url, storage)
    if not todo:
        return []
    return [pool.run_studies(todo, data, lease_seconds or STUDY_LEASE_SECONDS)]


# ---------------------------------------------------------------- progress (stored trials only)


@dataclass
class RaceProgress:
    """How far a race is, from the storage."""

    finished_trials: int
    target_trials: int
    running_trials: int
    epochs_spent: int
    estimated_epochs: int
    runs: list[dict]

    @property
    def fraction(self) -> float:
        return min(1.0, self.finished_trials / self.target_trials) if self.target_trials else 1.0

    @property
    def complete(self) -> bool:
        return self.finished_trials >= self.target_trials


def race_progress(plan: RacePlan, storage: optuna.storages.BaseStorage) -> RaceProgress:
    """Trials finished per run and epochs spent so far (running trials included)."""
    rows = []
    for run in plan.runs():
        trials = stored_trials(storage, run.study_name(plan.name))
        states = [t.state for t in trials]
        done = records.count(trials, _used_states(run))
        rows.append(
            dict(
                run=run.label,
                seed=run.seed,
                finished=min(done, plan.target_trials(run)),
                target=plan.target_trials(run),
                pruned=states.count(TrialState.PRUNED),
                failed=states.count(TrialState.FAIL),
                running=states.count(TrialState.RUNNING),
                epochs=sum(len(t.intermediate_values) for t in trials),
            )
        )
    return RaceProgress(
        finished_trials=sum(r["finished"] for r in rows),
        target_trials=sum(r["target"] for r in rows),
        running_trials=sum(r["running"] for r in rows),
        epochs_spent=sum(r["epochs"] for r in rows),
        estimated_epochs=plan.estimated_epochs,
        runs=rows,
    )
