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


def format_value(value: Any) -> str:
    """A number as a student would write it (3 significant digits, scientific when tiny or huge); "none" for a
    value that is not a finite number (``records.number``)."""
    if isinstance(value, float) and records.number(value) is None:
        return "none"
    if isinstance(value, float):
        return f"{value:.2g}" if abs(value) < 0.01 or abs(value) >= 1e4 else f"{value:.3g}"
    return str(value)


def findings(
    trials: list[FrozenTrial],
    maximize: bool = True,
    study_attrs: dict | None = None,
    param_importances: dict[str, float] | None = None,
    null_accuracy: float | None = None,
) -> dict[str, str]:
    """One plain-language sentence per plot, computed from this study's trials."""
    out: dict[str, str] = {}
    states = Counter(t.state for t in trials)
    n_done = states[TrialState.COMPLETE]
    progress = best_so_far(trials, maximize)
    if n_done == 0:
        out["history"] = (
            f"No trial has completed yet ({states[TrialState.PRUNED]} pruned, {states[TrialState.FAIL]} failed), "
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
    if n_pruned:
        share = 100 * saved / (saved + trained) if saved + trained else 0
        out["intermediate"] = (
            f"{n_pruned} trials were pruned, saving {saved:,} epochs of training ({share:.0f}% of what running "
            f"every trial to {max_epochs(trials, study_attrs)} epochs would have cost)."
        )
    else:
        out["intermediate"] = "No trial was pruned: every trial trained to the end (was a pruner used?)."
    if param_importances:
        out["importance"] = importance_finding(param_importances)
    top = top_trials(trials, 0.1, maximize)
    lrs = [lr for lr in (records.number(t.params.get("learning_rate")) for t in top) if lr is not None]
    if lrs:
        out["slice"] = (
            f"The top {len(top)} trial{'s' if len(top) > 1 else ''} (best 10%) used learning rates "
            f"from {format_value(min(lrs))} to {format_value(max(lrs))}."
        )
    elif top:
        out["slice"] = f"The best trial (#{top[0].number}) used: " + ", ".join(
            f"{k}={format_value(v)}" for k, v in top[0].params.items()
        )
    optimizers = Counter(t.params.get("optimizer") for t in top if "optimizer" in t.params)
    if optimizers:
        name, count = optimizers.most_common(1)[0]
        out["parallel"] = (
            f"{count} of the top {len(top)} trials used {name}; follow their lines to see what else they share."
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


def importance_finding(param_importances: dict[str, float]) -> str:
    """Which parameter matters most and which least (importances largest first, as ``review.importances``)."""
    name, share = next(iter(param_importances.items()))
    least = list(param_importances)[-1]
    return (
        f"'{name}' matters most ({100 * share:.0f}% of the importance); '{least}' matters least "
        f"({100 * param_importances[least]:.0f}%)."
    )


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

    def span(values: list) -> str:
        numbers = [records.number(v) for v in values]
        if None not in numbers:
            return f"{format_value(min(numbers))}..{format_value(max(numbers))}"
        return ", ".join(sorted({str(v) for v in values}))

    return f"The best 10% of trials lie at {x} {span(xs)} and {y} {span(ys)}: look for the dark region there."


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
