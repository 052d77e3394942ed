"""Findings for the Results page: plain sentences about one study, computed from its numbers (no Streamlit).

Best value and when it was reached, epochs saved by pruning, the learning rates of the top trials, the
most important parameter, how many trials ran at once, and the reading of one contour pair.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from . import records
from .manual import format_rate
from .review import best_so_far, duration_seconds, edf, epochs_run


def max_epochs(trials: list[FrozenTrial], study_attrs: dict | None = None) -> int:
    """The planned epochs per trial: the study's ``epochs`` attr, else the longest trial seen."""
    planned = records.study_description(study_attrs).epochs
    if planned is not None:
        return planned
    return max((epochs_run(t) for t in trials), default=0)


def epochs_saved(trials: list[FrozenTrial], study_attrs: dict | None = None) -> tuple[int, int]:
    """(epochs saved by pruning, epochs actually trained): saved = sum over pruned of (max - run)."""
    most = max_epochs(trials, study_attrs)
    saved = sum(max(most - epochs_run(t), 0) for t in trials if t.state == TrialState.PRUNED)
    trained = sum(epochs_run(t) for t in records.in_states(trials, records.ENDED))
    return saved, trained


def top_trials(trials: list[FrozenTrial], fraction: float = 0.1, maximize: bool = True) -> list[FrozenTrial]:
    """The best ``fraction`` of completed trials (at least one)."""
    done = sorted(records.completed(trials), key=lambda t: t.value, reverse=maximize)
    return done[: max(1, math.ceil(len(done) * fraction))] if done else []


RATES = ("learning_rate", "weight_decay")  # shown in short scientific form (``manual.format_rate``)
SWITCHES = ("scheduler", "standardize")  # stored as 0/1 (or a bool), shown as on/off


def format_value(value: Any, name: str = "") -> str:
    """A value as a student would write it: on/off for a switch (``name`` in ``SWITCHES``, or a bool), a rate
    (``name`` in ``RATES``) in short scientific form, other numbers to 3 significant digits (scientific when tiny
    or huge); "none" for a value that is not a finite number (``records.number``)."""
    if isinstance(value, bool) or (name in SWITCHES and value in (0, 1)):
        return "on" if value else "off"
    if isinstance(value, float) and records.number(value) is None:
        return "none"
    if name in RATES and isinstance(value, int | float):
        return format_rate(float(value))
    if isinstance(value, float):
        return f"{value:.2g}" if abs(value) < 0.01 or abs(value) >= 1e4 else f"{value:.3g}"
    return str(value)


STABLE_TRIALS = 30  # fewer finished trials than this: importances move from one trial to the next
ESTIMATORS = {"ped-anova": "PED-ANOVA", "fanova": "fANOVA"}


def findings(
    trials: list[FrozenTrial],
    maximize: bool = True,
    study_attrs: dict | None = None,
    param_importances: dict[str, float] | None = None,
    null_accuracy: float | None = None,
    slice_param: str = "learning_rate",
) -> dict[str, str]:
    """One plain-language sentence per plot, computed from this study's trials; the slice finding is about
    ``slice_param`` (the parameter the slice plot shows)."""
    out: dict[str, str] = {}
    states = Counter(t.state for t in trials)
    n_done = states[TrialState.COMPLETE]
    by_hand = records.lesson_record(study_attrs) == "by hand"  # PRUNED there means a student's Stop, no pruner
    cut = "stopped by the student" if by_hand else "pruned"
    progress = best_so_far(trials, maximize)
    if n_done == 0:
        out["history"] = (
            f"No trial has completed yet ({states[TrialState.PRUNED]} {cut}, {states[TrialState.FAIL]} failed), "
            "so there is no objective value to plot."
        )
    else:
        best = progress["best"].iloc[-1]
        reached = int(progress.loc[progress["value"] == best, "trial"].iloc[0])
        since = int(progress["completed"].iloc[-1] - progress.loc[progress["trial"] == reached, "completed"].iloc[0])
        text = (
            f"Best value {best:.2f} was reached by trial #{reached}; {since} completed trials since have not beaten it."
        )
        if null_accuracy is not None:
            text += f" The null accuracy (always guessing 'normal') is {null_accuracy:.1f}%."
        out["history"] = text
    saved, trained = epochs_saved(trials, study_attrs)
    n_pruned = states[TrialState.PRUNED]
    if by_hand:
        out["intermediate"] = (
            f"{n_pruned} run{' was' if n_pruned == 1 else 's were'} stopped by the student before the last epoch "
            "(runs by hand have no pruner)."
            if n_pruned
            else "Every run trained to its last epoch (runs by hand have no pruner)."
        )
    elif n_pruned:
        share = 100 * saved / (saved + trained) if saved + trained else 0
        out["intermediate"] = (
            f"{n_pruned} trials were pruned, saving {saved:,} epochs of training ({share:.0f}% of what running "
            f"every trial to {max_epochs(trials, study_attrs)} epochs would have cost)."
        )
    else:
        out["intermediate"] = "No trial was pruned: every trial trained to the end (was a pruner used?)."
    if param_importances:
        out["importance"] = importance_finding(param_importances, n_done)
    top = top_trials(trials, 0.1, maximize)
    if top:
        out["slice"] = slice_finding(trials, slice_param, maximize)
    optimizers = Counter(t.params.get("optimizer") for t in top if "optimizer" in t.params)
    if optimizers:
        name, count = optimizers.most_common(1)[0]
        out["parallel"] = (
            f"{count} of the top {len(top)} trials used the optimizer {name}; follow their lines to see what else "
            "they share."
        )
    values = edf(trials)["value"]
    if len(values):
        median = float(np.median(values))
        text = f"Half of the completed trials scored {median:.2f} or less"
        if null_accuracy is not None:
            text += f"; {100 * float(np.mean(values <= null_accuracy)):.0f}% did no better than the null accuracy"
        out["edf"] = text + "."
    durations = [d for d in (duration_seconds(t) for t in trials) if d is not None]
    if durations:
        out["timeline"] = (
            f"{len(durations)} finished trials took {np.mean(durations):.1f} s on average; at most "
            f"{max_parallel(trials)} ran at the same time."
        )
    return out


def slice_finding(trials: list[FrozenTrial], param: str, maximize: bool = True) -> str:
    """Where the best 10% of completed trials lie on ``param`` (the slice plot's parameter)."""
    top = [t for t in top_trials(trials, 0.1, maximize) if param in t.params]
    if not top:
        return f"No completed trial has '{param}'."
    values = [t.params[param] for t in top]
    numbers = [records.number(v) for v in values]
    lead = f"The top {len(top)} trial{'s' if len(top) > 1 else ''} (best 10%) used {param} "
    if None not in numbers and not any(isinstance(v, bool) for v in values):
        low, high = min(numbers), max(numbers)
        return lead + (
            f"= {format_value(low)}." if low == high else f"from {format_value(low)} to {format_value(high)}."
        )
    counts = Counter(str(v) for v in values)
    return lead + ", ".join(f"{v} ({n})" if len(counts) > 1 else v for v, n in counts.most_common()) + "."


def importance_finding(
    param_importances: dict[str, float],
    finished: int | None = None,
    other: dict[str, float] | None = None,
    method: str = "ped-anova",
) -> str:
    """Which parameter matters most and which least (importances largest first, as ``review.importances``);
    on fewer than ``STABLE_TRIALS`` finished trials, a warning that they are unstable, and when ``other`` (the
    other estimator's importances) names another parameter first, both estimators' answers."""
    name, share = next(iter(param_importances.items()))
    least = list(param_importances)[-1]
    text = (
        f"'{name}' matters most ({100 * share:.0f}% of the importance); '{least}' matters least "
        f"({100 * param_importances[least]:.0f}%)."
    )
    if finished is not None and finished < STABLE_TRIALS:
        text += (
            f" Only {finished} finished trial{'s' if finished != 1 else ''}: importances on fewer than "
            f"{STABLE_TRIALS} are unstable and may change with the next trials."
        )
    if other:
        other_name = next(iter(other))
        if other_name != name:
            this, that = ESTIMATORS.get(method, method), next(e for m, e in ESTIMATORS.items() if m != method)
            text += (
                f" The two estimators disagree: {this} names '{name}' most important, {that} names "
                f"'{other_name}' ({100 * other[other_name]:.0f}%)."
            )
    return text


ACCURACY_COLUMNS = ("value", "last_reported", "metrics_balanced_accuracy")


def readable_trials(frame: pd.DataFrame) -> pd.DataFrame:
    """``review.trials_frame`` for reading (the CSV keeps the stored numbers): accuracies to 2 decimals, rates in
    short scientific form, switches as on/off, durations to 0.1 s."""
    shown = frame.copy()
    for column in shown.columns:
        name = column.removeprefix("params_")
        if column in ACCURACY_COLUMNS:
            shown[column] = pd.to_numeric(shown[column], errors="coerce").round(2)
        elif column == "duration_s":
            shown[column] = pd.to_numeric(shown[column], errors="coerce").round(1)
        elif name in RATES or name in SWITCHES or shown[column].map(lambda v: isinstance(v, bool)).any():
            shown[column] = [None if v is None or v is pd.NA else format_value(v, name) for v in shown[column]]
    return shown


def max_parallel(trials: list[FrozenTrial]) -> int:
    """The largest number of trials that were running at the same moment (how many workers)."""
    events = []
    for t in trials:
        if t.datetime_start is not None:
            events.append((t.datetime_start, 1))
            if t.datetime_complete is not None:
                events.append((t.datetime_complete, -1))
    running = peak = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):
        running += step
        peak = max(peak, running)
    return peak


def contour_finding(trials: list[FrozenTrial], x: str, y: str, maximize: bool = True) -> str:
    """Where the best trials sit for one parameter pair."""
    top = [t for t in top_trials(trials, 0.1, maximize) if x in t.params and y in t.params]
    if not top:
        return f"No completed trial has both '{x}' and '{y}'."
    xs = [t.params[x] for t in top]
    ys = [t.params[y] for t in top]

    def span(name: str, values: list) -> str:
        numbers = [records.number(v) for v in values]
        if None not in numbers:
            return f"{format_value(min(numbers), name)}..{format_value(max(numbers), name)}"
        return ", ".join(sorted({str(v) for v in values}))

    return f"The best 10% of trials lie at {x} {span(x, xs)} and {y} {span(y, ys)}: look for the dark region there."


# Each plot: (title, how to read it). The finding for the study is computed by fetal_core.insights.findings.
PLOTS: dict[str, tuple[str, str]] = {
    "history": (
        "Optimisation history",
        "Each dot is a completed trial's final validation accuracy, in the order the trials ran; the line is "
        "the best value found so far. A line that keeps rising means the search is still finding better "
        "settings; a long flat line means more trials are unlikely to help much.",
    ),
    "intermediate": (
        "Intermediate values (per-epoch accuracy)",
        "One line per trial: its validation accuracy after each epoch. Blue lines completed; orange dashed lines "
        "were pruned (stopped early because they were worse than the median at the same epoch) and end in a "
        "cross; green lines are still running; red dotted ones failed. Pruned lines end early: that is the "
        "training time pruning saved.",
    ),
    "slice": (
        "Slice plot",
        "One hyperparameter at a time (choose it above the plot): every completed trial's value against the "
        "setting it used; darker dots are later trials. Where the high dots cluster is where the good values of "
        "that setting lie.",
    ),
    "importance": (
        "Hyperparameter importances",
        "How much of the variation among the good trials each hyperparameter explains (PED-ANOVA, Optuna's "
        "default; fANOVA on request). Importance says which knob matters, not which value of it is good.",
    ),
    "parallel": (
        "Parallel coordinates",
        "Each line is one trial crossing every hyperparameter axis; its colour is the objective value. "
        "Follow the best-coloured lines to see which combinations of settings go together.",
    ),
    "contour": (
        "Contour of one parameter pair",
        "The objective value estimated over two hyperparameters at once (dots are the trials). It shows "
        "interactions a slice plot cannot: a good learning rate may depend on the batch size.",
    ),
    "edf": (
        "Empirical distribution (EDF)",
        "For each accuracy on the x-axis, the share of completed trials that scored at most that. A curve "
        "further to the right means more trials scored well; compare studies with it (Compare tab).",
    ),
    "timeline": (
        "Timeline",
        "One bar per trial from start to end, coloured by state. Bars side by side show trials run in "
        "parallel by several workers; short orange bars are pruned trials.",
    ),
}


def compare_finding(curves: dict[str, tuple[pd.DataFrame, pd.DataFrame]]) -> str:
    """Which study found the best value, and how many completed trials each needed to get within 1 point."""
    parts = []
    for name, (best, _) in curves.items():
        if best.empty:
            parts.append(f"'{name}' has no completed trial")
            continue
        top = best["best"].iloc[-1]
        needed = int(best.loc[best["best"] >= top - 1.0, "completed"].iloc[0])
        parts.append(f"'{name}' reached {top:.2f} and was within 1 point of it after {needed} completed trials")
    return "; ".join(parts) + "."
