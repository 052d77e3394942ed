"""The strategy race: grid vs random vs Bayesian search, with and without pruning, repeated over seeds.

Every (strategy, pruning, seed) run is an ordinary Optuna study named
``race:<race>:<strategy>:<pruned|full>:seed<k>`` whose user attrs hold the race's settings, so a race
is found, resumed and analysed from the storage alone. Runs are dealt to ``start_worker`` processes
(both cores); the analysis reads only stored trials, never trains.

Accounting: a trial counts when it finished (COMPLETE or PRUNED); its cost is the epochs it reported.
A trial failed by a Stop is not the strategy's doing and is left out of the analysis (resume re-runs it,
except on grid, whose sampler treats a failed grid point as visited).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

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
    return name


@dataclass(frozen=True)
class RaceRun:
    """One (strategy, pruning, seed) run of a race: one Optuna study."""

    strategy: str
    pruned: bool
    seed: int

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
        """Seed-major order, so all strategies advance together when the runs are dealt to workers."""
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
    return [s for s in storage.get_all_studies() if s.study_name.startswith(prefix) and "race" in s.user_attrs]


def list_races(storage: optuna.storages.BaseStorage) -> list[str]:
    """Names of the races in the storage, sorted."""
    return sorted({s.user_attrs["race"]["name"] for s in _race_studies(storage)})


def load_plan(name: str, storage: optuna.storages.BaseStorage) -> RacePlan | None:
    """The stored settings of race ``name`` (None if there is no such race)."""
    studies = _race_studies(storage, check_race_name(name))
    return RacePlan.from_dict(studies[0].user_attrs["race"]) if studies else None


def _trials(storage: optuna.storages.BaseStorage, study_name: str) -> list[FrozenTrial]:
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return []
    return storage.get_all_trials(study_id, deepcopy=False)


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
        if "race" not in study.user_attrs:
            study.set_user_attr("race", plan.to_dict())
            study.set_user_attr("race_run", asdict(run))
            study.set_user_attr("target_trials", plan.target_trials(run))  # the sidebar's progress line
        reap_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        running = [t.number for t in trials if t.state == TrialState.RUNNING]
        if running:
            raise RaceError(
                f"race '{plan.name}': trial {running[0]} of '{study.study_name}' is still RUNNING "
                "(another session is running this race); wait for it or stop it first."
            )
        used = {TrialState.COMPLETE, TrialState.PRUNED} | ({TrialState.FAIL} if run.strategy == "grid" else set())
        remaining = plan.target_trials(run) - sum(t.state in used for t in trials)
        if remaining > 0:
            todo.append(plan.study_plan(run, storage_url, remaining))
    return todo


def deal(plans: list[StudyPlan], workers: int = 2) -> list[list[StudyPlan]]:
    """Deal the plans (seed-major) to ``workers`` lists, rotating by seed so each worker gets a mix of
    strategies and all seeds progress together."""
    hands: list[list[StudyPlan]] = [[] for _ in range(max(1, workers))]
    by_seed: dict[str, list[StudyPlan]] = {}
    for p in plans:
        by_seed.setdefault(p.study_name.rsplit(":", 1)[1], []).append(p)
    counter = 0
    for rotation, group in enumerate(by_seed.values()):
        shift = rotation % len(group)
        for p in group[shift:] + group[:shift]:
            hands[counter % len(hands)].append(p)
            counter += 1
    return [hand for hand in hands if hand]


def start_race(
    plan: RacePlan,
    storage_url: str,
    data_path: str | os.PathLike,
    storage: optuna.storages.BaseStorage,
    workers: int = 2,
    lease_seconds: float | None = None,
) -> list:
    """Prepare the race and start its worker processes; returns the ``StudyWorker`` handles (empty if
    the race is already complete). The caller renews their leases and stops them."""
    from .workers import LEASE_SECONDS, start_worker

    hands = deal(prepare_race(plan, storage_url, storage), workers)
    return [start_worker(hand, data_path, lease_seconds or LEASE_SECONDS) for hand in hands]


# ---------------------------------------------------------------- progress and analysis (stored trials only)


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
        trials = _trials(storage, run.study_name(plan.name))
        states = [t.state for t in trials]
        done = states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED)
        if run.strategy == "grid":
            done += states.count(TrialState.FAIL)  # a failed grid point is not revisited
        rows.append(
            dict(
                run=run.label, seed=run.seed, finished=min(done, plan.target_trials(run)),
                target=plan.target_trials(run), pruned=states.count(TrialState.PRUNED),
                failed=states.count(TrialState.FAIL), running=states.count(TrialState.RUNNING),
                epochs=sum(len(t.intermediate_values) for t in trials),
            )
        )  # fmt: skip
    return RaceProgress(
        finished_trials=sum(r["finished"] for r in rows),
        target_trials=sum(r["target"] for r in rows),
        running_trials=sum(r["running"] for r in rows),
        epochs_spent=sum(r["epochs"] for r in rows),
        estimated_epochs=plan.estimated_epochs,
        runs=rows,
    )


@dataclass
class RaceAnalysis:
    """The race's answer, computed from stored trials only.

    - ``by_trial`` / ``by_epoch``: best-so-far validation accuracy (%) per label, median and quartiles
      over seeds (columns label, trials|epochs, median, q1, q3);
    - ``runs``: one row per run (final best, trials, epochs spent, epochs/trials to the target);
    - ``samples``: every finished trial's learning rate, batch size, state and value;
    - ``table``: one row per label; ``text``: the plain-language summary.
    """

    plan: RacePlan
    target: float | None
    by_trial: pd.DataFrame
    by_epoch: pd.DataFrame
    runs: pd.DataFrame
    samples: pd.DataFrame
    table: list[dict]
    text: list[str]


def _quartiles(values) -> tuple[float, float, float]:
    values = np.asarray(values, dtype=float)
    if values.size == 0 or np.all(np.isnan(values)):
        return (math.nan,) * 3
    q1, median, q3 = np.nanpercentile(values, [25, 50, 75])
    return float(median), float(q1), float(q3)


def _run_curve(trials: list[FrozenTrial]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per finished trial (in order): best-so-far value (NaN before the first COMPLETE), epochs spent
    by then, and the trial's own value (NaN if pruned)."""
    best, spent, values, running_best, total = [], [], [], -math.inf, 0
    for t in trials:
        total += len(t.intermediate_values)
        value = t.value if t.state == TrialState.COMPLETE and t.value is not None else math.nan
        if not math.isnan(value):
            running_best = max(running_best, value)
        best.append(running_best if running_best > -math.inf else math.nan)
        spent.append(total)
        values.append(value)
    return np.array(best, dtype=float), np.array(spent, dtype=float), np.array(values, dtype=float)


def _first_reach(best, xs, target: float) -> float:
    """The first x at which ``best`` reaches ``target`` (inf if never)."""
    best, xs = np.asarray(best, dtype=float), np.asarray(xs, dtype=float)
    hit = np.flatnonzero(np.nan_to_num(best, nan=-math.inf) >= target)
    return float(xs[hit[0]]) if hit.size else math.inf


def _at_epochs(best: np.ndarray, spent: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Best-so-far at each epoch budget in ``grid`` (a finished run holds its final best)."""
    index = np.searchsorted(spent, grid, side="right") - 1
    return np.where(index >= 0, best[np.clip(index, 0, None)] if best.size else math.nan, math.nan)


def analyze_race(plan: RacePlan, storage: optuna.storages.BaseStorage, target: float | None = None) -> RaceAnalysis:
    """Read the race's trials and compute curves, finals, samples and the summary. ``target`` (%) is the
    accuracy for 'who got there first'; by default the highest level every label's median run reached."""
    curves: dict[RaceRun, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    samples = []
    for run in plan.runs():
        finished = [
            t
            for t in _trials(storage, run.study_name(plan.name))
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        ]
        finished.sort(key=lambda t: t.number)
        curves[run] = _run_curve(finished)
        for t, value in zip(finished, curves[run][2]):
            samples.append(
                dict(label=run.label, seed=run.seed, trial=t.number, learning_rate=t.params.get("learning_rate"),
                     batch_size=t.params.get("batch_size"), state=t.state.name, value=value,
                     epochs=len(t.intermediate_values))
            )  # fmt: skip
    labels = list(dict.fromkeys(run.label for run in plan.runs()))
    finals = {run: (float(np.nanmax(c[0])) if np.any(~np.isnan(c[0])) else math.nan) for run, c in curves.items()}
    if target is None:
        medians = [_quartiles([finals[r] for r in curves if r.label == label])[0] for label in labels]
        medians = [m for m in medians if not math.isnan(m)]
        target = math.floor(min(medians) * 10) / 10 if medians else None

    run_rows, by_trial, by_epoch = [], [], []
    for run, (best, spent, values) in curves.items():
        positions = np.arange(1, best.size + 1, dtype=float)
        run_rows.append(
            dict(label=run.label, strategy=run.strategy, pruning=run.pruned, seed=run.seed,
                 study=run.study_name(plan.name), best=finals[run], trials=int(best.size),
                 complete=int(np.sum(~np.isnan(values))), pruned=int(np.sum(np.isnan(values))),
                 epochs=int(spent[-1]) if spent.size else 0,
                 epochs_to_target=math.nan if target is None else _first_reach(best, spent, target),
                 trials_to_target=math.nan if target is None else _first_reach(best, positions, target))
        )  # fmt: skip
    runs = pd.DataFrame(run_rows)
    for label in labels:
        members = [c for r, c in curves.items() if r.label == label and c[0].size]
        if not members:
            continue
        for k in range(1, max(c[0].size for c in members) + 1):
            median, q1, q3 = _quartiles([c[0][k - 1] for c in members if c[0].size >= k])
            by_trial.append(dict(label=label, trials=k, median=median, q1=q1, q3=q3))
        top = int(max(c[1][-1] for c in members))
        grid = np.unique(np.linspace(0, top, min(top, 300) + 1).round())
        at = np.array([_at_epochs(c[0], c[1], grid) for c in members])
        for i, epochs in enumerate(grid):
            median, q1, q3 = _quartiles(at[:, i])
            by_epoch.append(dict(label=label, epochs=int(epochs), median=median, q1=q1, q3=q3))
    by_trial_df = pd.DataFrame(by_trial, columns=["label", "trials", "median", "q1", "q3"])
    by_epoch_df = pd.DataFrame(by_epoch, columns=["label", "epochs", "median", "q1", "q3"])
    table = _table(labels, runs, by_epoch_df, by_trial_df, target)
    return RaceAnalysis(plan, target, by_trial_df, by_epoch_df, runs, pd.DataFrame(samples), table,
                        summary_text(table, plan, target))  # fmt: skip


def _table(labels, runs: pd.DataFrame, by_epoch: pd.DataFrame, by_trial: pd.DataFrame, target) -> list[dict]:
    rows = []
    for label in labels:
        mine = runs[runs.label == label]
        if not len(mine):
            continue
        best, best_q1, best_q3 = _quartiles(mine.best)
        epochs_to = mine.epochs_to_target.to_numpy(dtype=float)
        reached = epochs_to[np.isfinite(epochs_to)]
        # Seeds that never reached the target make the spread unbounded.
        iqr = float(np.subtract(*np.percentile(reached, [75, 25]))) if reached.size == epochs_to.size else math.inf
        by_e, by_t = by_epoch[by_epoch.label == label], by_trial[by_trial.label == label]
        row = dict(label=label, runs=int(len(mine)), median_best=best, best_q1=best_q1, best_q3=best_q3)
        row["median_epochs"] = float(np.median(mine.epochs))
        row["pruned_share"] = float(mine.pruned.sum() / max(1, mine.trials.sum()))
        row["epochs_to_target"] = math.inf if target is None else _first_reach(by_e["median"], by_e.epochs, target)
        row["trials_to_target"] = math.inf if target is None else _first_reach(by_t["median"], by_t.trials, target)
        row["epochs_to_target_iqr"] = iqr
        row["reached"] = int(reached.size)
        rows.append(row)
    return rows


def _epochs(value: float) -> str:
    return "never" if not math.isfinite(value) else f"{value:,.0f} epochs"


def summary_text(table: list[dict], plan: RacePlan, target: float | None) -> list[str]:
    """Plain-language sentences computed from ``table`` (see ``analyze_race``)."""
    if not table or target is None:
        return ["No finished trials yet: the answer appears as the runs finish."]
    lines = []
    seeds = plan.seeds
    ranked = sorted(table, key=lambda r: (r["epochs_to_target"], r["trials_to_target"]))
    first = ranked[0]
    lines.append(f"Target: {target:.1f}% validation accuracy, the highest level every strategy's median run reached.")
    if len(ranked) == 1:
        lines.append(
            f"{first['label']} reached it after {_epochs(first['epochs_to_target'])} (median over {seeds} seeds)."
        )
    else:
        second = ranked[1]
        gap = second["epochs_to_target"] - first["epochs_to_target"]
        if gap == 0:
            lines.append(
                f"{first['label']} and {second['label']} tied: both median curves reached {target:.1f}% after "
                f"{_epochs(first['epochs_to_target'])}."
            )
        else:
            lines.append(
                f"{first['label']} reached {target:.1f}% first: after {_epochs(first['epochs_to_target'])} "
                f"({first['trials_to_target']:.0f} trials) on its median curve; the runner-up, {second['label']}, "
                + (
                    f"needed {_epochs(second['epochs_to_target'])}, {gap:,.0f} more."
                    if math.isfinite(gap)
                    else "never did."
                )
            )
        spread = max(first["epochs_to_target_iqr"], second["epochs_to_target_iqr"])
        if seeds < 2:
            lines.append("With one seed there is no seed-to-seed spread to compare against: repeat with more seeds.")
        elif not math.isfinite(spread):
            lines.append(
                "Some seeds never reached the target, so the seed-to-seed spread is wider than any gap: "
                "the ranking could be luck."
            )
        else:
            verdict = "larger than" if gap > spread else "within"
            meaning = "likely a real difference" if gap > spread else "it could be luck of the seeds"
            lines.append(
                f"That gap is {verdict} the seed-to-seed spread (inter-quartile range of epochs to {target:.1f}% "
                f"over {seeds} seeds: up to {spread:,.0f} epochs), so {meaning}."
            )
    by_best = sorted(table, key=lambda r: -r["median_best"])
    top, bottom = by_best[0], by_best[-1]
    if len(by_best) > 1:
        diff = top["median_best"] - bottom["median_best"]
        spread = max(r["best_q3"] - r["best_q1"] for r in (top, bottom))
        lines.append(
            f"Final best: {top['label']} {top['median_best']:.2f}% (median) vs {bottom['label']} "
            f"{bottom['median_best']:.2f}%, a {diff:.2f}-point difference "
            f"{'larger than' if diff > spread else 'within'} the seed-to-seed spread ({spread:.2f} points)."
        )
    for strategy in plan.strategies:
        name = STRATEGY_NAMES[strategy]
        full = next((r for r in table if r["label"] == name), None)
        pruned = next((r for r in table if r["label"] == name + " + pruning"), None)
        if full and pruned and full["median_epochs"]:
            saved = 100 * (1 - pruned["median_epochs"] / full["median_epochs"])
            lines.append(
                f"Pruning saved {name} {saved:.0f}% of its epochs ({full['median_epochs']:,.0f} -> "
                f"{pruned['median_epochs']:,.0f}, median) and changed its best by "
                f"{pruned['median_best'] - full['median_best']:+.2f} points."
            )
    return lines


def table_rows(analysis: RaceAnalysis) -> list[dict[str, Any]]:
    """The summary table with rounded numbers (CLI and page)."""
    return [
        {
            "strategy": r["label"],
            "runs": r["runs"],
            "median best %": round(r["median_best"], 2),
            "IQR best": f"{r['best_q1']:.2f}-{r['best_q3']:.2f}",
            "median epochs": int(r["median_epochs"]),
            "pruned %": round(100 * r["pruned_share"]),
            "epochs to target": int(r["epochs_to_target"]) if math.isfinite(r["epochs_to_target"]) else None,
            "seeds reaching": f"{r['reached']}/{r['runs']}",
        }
        for r in analysis.table
    ]
