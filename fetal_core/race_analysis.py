"""The strategy race's answer, computed from stored trials only (never retrains).

Best-so-far validation accuracy against trials and against epochs spent (median and inter-quartile band
over seeds per strategy), the final best of every run, where each strategy sampled, and a plain-language
summary computed from those numbers. A trial counts when it finished (COMPLETE or PRUNED); its cost is
the epochs it reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from . import records
from .race import STRATEGY_NAMES, RacePlan, RaceRun, stored_trials


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


TPE_STARTUP = 10  # optuna.samplers.TPESampler's n_startup_trials: its first trials are random search's draws


def _quartiles(values) -> tuple[float, float, float]:
    values = np.asarray(values, dtype=float)
    if values.size == 0 or np.all(np.isnan(values)):
        return (math.nan,) * 3
    q1, median, q3 = np.nanpercentile(values, [25, 50, 75])
    return float(median), float(q1), float(q3)


def _run_curve(trials: list[FrozenTrial]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per finished trial (in order): best-so-far value (NaN before the first COMPLETE), epochs spent
    by then, and the trial's own value (NaN if pruned)."""
    spent = np.cumsum([len(t.intermediate_values) for t in trials], dtype=float)
    values = [t.value if t.state == TrialState.COMPLETE and t.value is not None else math.nan for t in trials]
    return np.array(records.best_so_far(trials), dtype=float), spent, np.array(values, dtype=float)


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
        finished = sorted(
            records.in_states(stored_trials(storage, run.study_name(plan.name)), records.FINISHED),
            key=lambda t: t.number,
        )
        curves[run] = _run_curve(finished)
        for t, value in zip(finished, curves[run][2]):
            samples.append(
                dict(
                    label=run.label,
                    seed=run.seed,
                    trial=t.number,
                    learning_rate=t.params.get("learning_rate"),
                    batch_size=t.params.get("batch_size"),
                    state=t.state.name,
                    value=value,
                    epochs=len(t.intermediate_values),
                )
            )
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
            dict(
                label=run.label,
                strategy=run.strategy,
                pruning=run.pruned,
                seed=run.seed,
                study=run.study_name(plan.name),
                best=finals[run],
                trials=int(best.size),
                complete=int(np.sum(~np.isnan(values))),
                pruned=int(np.sum(np.isnan(values))),
                epochs=int(spent[-1]) if spent.size else 0,
                epochs_to_target=math.nan if target is None else _first_reach(best, spent, target),
                trials_to_target=math.nan if target is None else _first_reach(best, positions, target),
            )
        )
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
    text = summary_text(table, plan, target)
    if table and target is not None:
        text += startup_text(by_trial_df, plan)
    return RaceAnalysis(plan, target, by_trial_df, by_epoch_df, runs, pd.DataFrame(samples), table, text)


def _gain_after_startup(by_trial: pd.DataFrame, label: str) -> float | None:
    """How far a label's median best-so-far rose after the first ``TPE_STARTUP`` trials (None: no trial after)."""
    curve = by_trial[by_trial.label == label].set_index("trials")["median"]
    if TPE_STARTUP not in curve.index or curve.index.max() <= TPE_STARTUP:
        return None
    return float(curve.iloc[-1] - curve.loc[TPE_STARTUP])


def startup_text(by_trial: pd.DataFrame, plan: RacePlan) -> list[str]:
    """Why TPE and random search look alike early: TPE's random start-up, and what the trials after it show."""
    if "tpe" not in plan.strategies:
        return []
    line = (
        f"TPE's first {TPE_STARTUP} trials are its random start-up: with the same seed they draw exactly the "
        f"settings random search draws, so the two are the same search up to trial {TPE_STARTUP}."
    )
    if plan.trials <= TPE_STARTUP:
        return [
            line + f" With {plan.trials} trials a run, TPE never gets past its start-up: this race cannot tell TPE "
            f"from random search (give each run {3 * TPE_STARTUP} trials or more)."
        ]
    after = plan.trials - TPE_STARTUP
    line += f" Only the {after} trial{'s' if after > 1 else ''} after it (right of the dotted line) show TPE's model"
    gains = []
    for strategy in ("tpe", "random"):
        for pruned in plan.pruning:
            label = STRATEGY_NAMES[strategy] + (" + pruning" if pruned else "")
            gain = _gain_after_startup(by_trial, label) if strategy in plan.strategies else None
            if gain is not None:
                gains.append(f"{label} {gain:+.2f}")
    if gains:
        line += f": there the median best moved by {', '.join(gains)} points"
    line += "." if after >= 2 * TPE_STARTUP else f"; {after} trials are few to separate them."
    return [line]


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
            line = (
                f"{first['label']} and {second['label']} tied: both median curves reached {target:.1f}% after "
                f"{_epochs(first['epochs_to_target'])}"
            )
            both = {first["label"].split(" + ")[0], second["label"].split(" + ")[0]}
            if both == {STRATEGY_NAMES["tpe"], STRATEGY_NAMES["random"]} and first["trials_to_target"] <= TPE_STARTUP:
                line += (
                    f" ({first['trials_to_target']:.0f} trials), within TPE's random start-up of {TPE_STARTUP} "
                    "trials, where TPE draws the same settings as random search with the same seed."
                )
            else:
                line += ": the same epochs to the target on their median runs."
            lines.append(line)
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
