"""Part I's logic without Streamlit: choices for the widgets, the shareable link, run records, the curve
reading, the "what changed" view and the runnable script of a run.

A run record is a plain dict (it lives in the session state under ``pages.keys.MANUAL_RUNS`` and Part II reads it):
``TrainResult.to_dict()`` (config, history, final/best/balanced accuracy, confusion matrix, per-class
recall, stopped_early, null_accuracy, seconds) plus ``number``, ``label`` and ``waited_seconds``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from . import limits
from .text import clip
from .training import OPTIMIZERS, ConfigError, TrainConfig, TrainResult

if TYPE_CHECKING:
    from .lesson import Presets


def _log_grid(low_exponent: int, high_exponent: int) -> tuple[float, ...]:
    """1, 2, 5 per decade from 10**low to 10**high (inclusive), rounded so they print cleanly."""
    values = [float(f"{m}e{e}") for e in range(low_exponent, high_exponent) for m in (1, 2, 5)]
    return (*values, float(f"1e{high_exponent}"))


LEARNING_RATES = _log_grid(-5, 0)  # 1e-5 ... 1 (the notebook's default is 1)
WEIGHT_DECAYS = (0.0, *_log_grid(-5, 0))  # 0, 1e-5 ... 1
MAX_LAYERS = int(limits.LAYERS.high)
MAX_UNITS = int(limits.UNITS.high)
MAX_EPOCHS = int(limits.EPOCHS.high)
MAX_BATCH = int(limits.BATCH_SIZE.high)
QUERY_KEYS = {  # short URL key -> TrainConfig field
    "hl": "hidden_layers", "bs": "batch_size", "opt": "optimizer", "lr": "learning_rate",
    "wd": "weight_decay", "sch": "scheduler", "ep": "epochs", "seed": "seed", "std": "standardize",
}  # fmt: skip
LABELS = {
    "hidden_layers": "hidden layers", "batch_size": "batch size", "optimizer": "optimiser",
    "learning_rate": "learning rate", "weight_decay": "weight decay", "scheduler": "cosine scheduler",
    "epochs": "epochs", "seed": "seed", "standardize": "standardised features",
}  # fmt: skip


def format_rate(value: float) -> str:
    """A learning rate or weight decay as people write it: 0, 1, 0.5, 0.02, 1e-3, 3.47e-4."""
    if value == 0:
        return "0"
    if value >= 0.01:
        return f"{value:g}"
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def rate_choices(grid: Sequence[float], current: float) -> list[float]:
    """The log grid plus ``current`` when it is off the grid (e.g. a value Optuna found)."""
    return sorted({*grid, float(current)})


def parse_hidden_layers(text: str) -> tuple[int, ...]:
    """Read "15, 10" (commas, spaces or dashes) into layer widths; raise ConfigError saying what is wrong."""
    parts = [p for p in re.split(r"[,\s;\-]+", str(text).strip()) if p]
    if not parts:
        raise ConfigError("hidden layers: give at least one width, e.g. '15, 10'.")
    if len(parts) > MAX_LAYERS:
        raise ConfigError(f"hidden layers: {len(parts)} layers given; use 1 to {MAX_LAYERS}.")
    widths = []
    for position, part in enumerate(parts, start=1):
        if not part.isdigit():
            raise ConfigError(f"hidden layers: layer {position} is {clip(repr(part), 40)}, not a whole number.")
        units = int(part)
        if not 1 <= units <= MAX_UNITS:
            raise ConfigError(f"hidden layers: layer {position} has {units} units; use 1 to {MAX_UNITS}.")
        widths.append(units)
    return tuple(widths)


def format_layers(layers: Sequence[int]) -> str:
    return ", ".join(str(int(u)) for u in layers)


def config_to_query(config: TrainConfig) -> dict[str, str]:
    """The config as short URL parameters (``?hl=15-10&bs=100&opt=Adam&lr=1&...``)."""
    return {
        "hl": "-".join(str(u) for u in config.hidden_layers),
        "bs": str(config.batch_size),
        "opt": config.optimizer,
        "lr": repr(float(config.learning_rate)),
        "wd": repr(float(config.weight_decay)),
        "sch": "1" if config.scheduler else "0",
        "ep": str(config.epochs),
        "seed": str(config.seed),
        "std": "1" if config.standardize else "0",
    }


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("use 1 or 0")


def _parse_int(raw: str, low: int, high: int) -> int:
    if not re.fullmatch(r"\d+", raw.strip()):
        raise ValueError("not a whole number")
    value = int(raw)
    if not low <= value <= high:
        raise ValueError(f"use {low} to {high}")
    return value


def _parse_optimizer(raw: str) -> str:
    for name in OPTIMIZERS:
        if name.lower() == raw.strip().lower():
            return name
    raise ValueError(f"use one of {', '.join(OPTIMIZERS)}")


def _parse_rate(raw: str, allow_zero: bool) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("not a number") from None
    if allow_zero and value == 0:
        return 0.0
    if not (math.isfinite(value) and 1e-5 <= value <= 1):
        raise ValueError("use 0 or 1e-5 to 1" if allow_zero else "use 1e-5 to 1")
    return value


def config_from_query(params: Mapping[str, str], base: TrainConfig) -> tuple[TrainConfig, list[str]]:
    """Apply valid URL parameters on top of ``base``; every bad one is ignored with a note (never an error).

    The notes are plain text quoting what the link held: the page escapes them (``fetal_core.text.plain``).
    """
    values = base.to_dict()
    notes = []
    parsers = {
        "hl": parse_hidden_layers,
        "bs": lambda raw: _parse_int(raw, 1, MAX_BATCH),
        "opt": _parse_optimizer,
        "lr": lambda raw: _parse_rate(raw, allow_zero=False),
        "wd": lambda raw: _parse_rate(raw, allow_zero=True),
        "sch": _parse_bool,
        "ep": lambda raw: _parse_int(raw, 1, MAX_EPOCHS),
        "seed": lambda raw: _parse_int(raw, int(limits.SEED.low), int(limits.SEED.high)),
        "std": _parse_bool,
    }
    for key, raw in params.items():
        if key not in parsers:
            continue
        try:
            values[QUERY_KEYS[key]] = parsers[key](str(raw))
        except (ValueError, ConfigError) as err:
            reason = (str(err).split(": ", 1)[-1] if isinstance(err, ConfigError) else str(err)).rstrip(".")
            notes.append(f"Ignored '{key}={clip(raw, 40)}' from the link ({LABELS[QUERY_KEYS[key]]}): {reason}.")
    try:
        return TrainConfig.from_dict(values), notes
    except ConfigError as err:  # each value fits but not together (limits.check_network): keep ``base``'s network
        notes.append(f"Ignored the link's hidden layers and batch size: {err}")
        kept = {name: getattr(base, name) for name in ("hidden_layers", "batch_size")}
        return TrainConfig.from_dict({**values, **kept}), notes


def _lesson_rule(field: str, presets: Presets) -> str:
    """Why the lesson changed ``field``: it is fixed, capped, or has a range."""
    label = LABELS[field]
    if presets.seen(field) != "choose":
        return f"this lesson fixes the {label} at {_show(field, presets.fixed_value(field))}"
    if field == "epochs" and presets.max_epochs is not None:  # epochs start at 1: a change is the cap
        return f"this lesson caps epochs at {presets.max_epochs}"
    if field == "hidden_layers":
        (few, many), (narrow, wide) = presets.range("layers"), presets.range("units")
        return f"this lesson allows {few:g} to {many:g} hidden layers of {narrow:g} to {wide:g} units"
    low, high = presets.range(field)
    shown = format_rate if field in ("learning_rate", "weight_decay") else (lambda v: f"{v:g}")
    return f"this lesson allows a {label} of {shown(low)} to {shown(high)}"


def fit_to_lesson(
    config: TrainConfig, presets: Presets, defaults: TrainConfig | None = None
) -> tuple[TrainConfig, list[str]]:
    """``config`` as this lesson allows it (``Presets.apply``: fixed settings set, numbers moved into the
    lesson's ranges), and one plain line per setting that changed, e.g. "epochs 30 → 20: this lesson caps
    epochs at 20"; a setting still at its value in ``defaults`` (the notebook's, nobody's choice) changes
    without a line. Settings handed over by Part II or Results, a link or an earlier lesson go through here
    before they reach a widget, whose bounds are the lesson's ranges.

    Never raises: when the moved numbers do not fit together (``limits.check_network``), the smallest
    network the lesson allows is used, with a line saying so (and when even that does not fit, the defaults:
    ``Presets.enforce`` then refuses them, which the page reports)."""
    try:
        fitted = presets.apply(config)
    except ConfigError as err:
        (few, _), (narrow, _), (_, largest_batch) = (presets.range(n) for n in ("layers", "units", "batch_size"))
        smallest = {**config.to_dict(), "hidden_layers": [int(narrow)] * int(few), "batch_size": int(largest_batch)}
        reason = str(err).rstrip(".")
        try:
            fitted = presets.apply(TrainConfig.from_dict(smallest))
        except ConfigError:
            return TrainConfig(), [f"These settings do not fit this lesson's ranges together ({reason})."]
        used = "the smallest network and largest batch size it allows are used"
        return fitted, [f"These settings do not fit this lesson's ranges together ({reason}): {used}."]
    before, after = config.to_dict(), fitted.to_dict()
    unchosen = None if defaults is None else defaults.to_dict()
    notes = []
    for field, label in LABELS.items():
        old, new = before[field], after[field]
        default = None if unchosen is None else unchosen[field]
        if field == "hidden_layers":
            old, new, default = list(old), list(new), default and list(default)
        if old != new and (unchosen is None or old != default):
            notes.append(f"{label} {_show(field, old)} → {_show(field, new)}: {_lesson_rule(field, presets)}.")
    return fitted, notes


def make_run_record(result: TrainResult, number: int, waited_seconds: float = 0.0) -> dict:
    """The session's record of one finished or stopped run."""
    record = result.to_dict()
    record.update(number=number, label=f"Run {number}", waited_seconds=round(waited_seconds, 3))
    return record


def best_run(runs: Sequence[dict]) -> dict | None:
    """The best run that trained all its epochs: highest final accuracy, then balanced accuracy."""
    finished = [r for r in runs if not r["stopped_early"] and r["history"]]
    if not finished:
        return None

    def score(value: object) -> float:  # a diverged run (NaN accuracy) ranks below every real one
        number = limits.finite_or_none(value)
        return number if isinstance(number, int | float) else -1.0

    return max(finished, key=lambda r: (score(r["final_val_accuracy"]), score(r["balanced_accuracy"])))


def run_table(runs: Sequence[dict]) -> list[dict]:
    """One row per run for the history table."""
    rows = []
    for run in runs:
        config = run["config"]
        rows.append(
            {
                "run": run["label"],
                "hidden layers": format_layers(config["hidden_layers"]),
                "batch": config["batch_size"],
                "optimiser": config["optimizer"],
                "lr": format_rate(config["learning_rate"]),
                "weight decay": format_rate(config["weight_decay"]),
                "scheduler": "on" if config["scheduler"] else "off",
                "standardised": "on" if config["standardize"] else "off",
                "epochs": f"{len(run['history'])}/{config['epochs']}",
                "final acc %": round(run["final_val_accuracy"], 2),
                "best acc %": round(run["best_val_accuracy"], 2),
                "balanced acc %": round(run["balanced_accuracy"], 2),
                "status": "stopped" if run["stopped_early"] else "finished",
            }
        )
    return rows


def _show(field: str, value) -> str:
    if field in ("learning_rate", "weight_decay"):
        return format_rate(value)
    if field == "hidden_layers":
        return format_layers(value)
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def format_setting(field: str, value) -> str:
    """One setting's value as the history table and the "what changed" view write it."""
    return _show(field, value)


def config_changes(before: dict, after: dict) -> list[dict]:
    """The settings that differ between two runs' configs, in the form's order."""
    changes = []
    for field, label in LABELS.items():
        old, new = before[field], after[field]
        if field == "hidden_layers":
            old, new = list(old), list(new)
        if old != new:
            changes.append({"setting": label, "before": _show(field, old), "after": _show(field, new)})
    return changes


def _back_and_forth(accuracy: Sequence[float]) -> float:
    """Points per epoch the curve moves beyond its net change (0 for a steady rise), after the first 10 %."""
    tail = [a for a in accuracy[max(2, len(accuracy) // 10) :] if math.isfinite(a)]
    if len(tail) < 5:
        return 0.0
    travelled = sum(abs(b - a) for a, b in zip(tail, tail[1:]))
    return (travelled - abs(tail[-1] - tail[0])) / (len(tail) - 1)


def read_curve(run: dict) -> list[str]:
    """Plain-language observations about a run's curve, only where the numbers make them clear."""
    history = run["history"]
    if not history:
        return ["No epoch finished, so there is no curve to read."]
    null = run["null_accuracy"]
    accuracy = [h["val_accuracy"] for h in history]
    losses = [h["train_loss"] for h in history]
    val_losses = [h["val_loss"] for h in history]
    final, best, epochs = accuracy[-1], max(accuracy), len(history)
    notes = []
    if not all(math.isfinite(v) for v in losses):
        notes.append(
            "The training loss overflowed (it became infinite or not a number): the steps are far too big. "
            "Lower the learning rate."
        )
    predicted = [sum(column) for column in zip(*run.get("confusion_matrix") or [])]
    only_one_class = bool(predicted) and sum(1 for p in predicted if p) == 1
    if abs(final - null) <= 1.0 and (only_one_class or best - null <= 1.0):
        notes.append(
            f"Stuck at the null accuracy ({null:.1f}%): the model predicts only 'normal', which any "
            "constant guess achieves. It learned nothing useful yet."
        )
    elif final < null - 1.0:
        notes.append(f"Below the null accuracy ({null:.1f}%): worse than always answering 'normal'.")
    if _back_and_forth(accuracy) >= 1.5:
        notes.append(
            "The accuracy jumps up and down from epoch to epoch: the learning rate may be too high "
            "(or the batches too small)."
        )
    window = max(3, epochs // 5)
    if epochs >= 2 * window and final > null + 1.0:
        recent = sum(accuracy[-window:]) / window
        earlier = sum(accuracy[-2 * window : -window]) / window
        if max(recent, final) - earlier >= 1.0 and best - final <= 1.0:
            notes.append("Still rising at the end: more epochs would probably help.")
    if epochs >= 10 and all(math.isfinite(v) for v in val_losses + losses):
        lowest = min(range(epochs), key=val_losses.__getitem__)
        if lowest <= 0.7 * epochs and val_losses[-1] > 1.15 * val_losses[lowest] and losses[-1] < losses[lowest]:
            notes.append(
                f"The training loss kept falling while the validation loss rose after epoch {lowest + 1}: "
                "the model is overfitting (learning the training rows by heart). Try more weight decay, "
                "fewer epochs or a smaller network."
            )
    recalls = run.get("per_class_recall") or {}
    if final > null + 1.0 and recalls and min(recalls.values()) < 50.0:
        weakest = min(recalls, key=recalls.get)
        notes.append(
            f"The overall accuracy hides a weak class: only {recalls[weakest]:.0f}% of '{weakest}' cases "
            "are found (see the balanced accuracy)."
        )
    if not notes and final > null + 5.0:
        notes.append(f"The model learned well beyond the null accuracy ({final:.1f}% vs {null:.1f}%).")
    return notes


def runnable_script(run: dict) -> str:
    """The course's own PyTorch for ``run``: a standalone script (torch, numpy, pandas, scikit-learn only)
    with the notebook's split, ``nn.Sequential``, ``torch.optim`` and ``CosineAnnealingLR``.

    It takes the CSV path as its first argument (and optionally a seed as its second) and prints
    ``final validation accuracy: XX.XX%``. PyTorch draws other random numbers than the lab's NumPy engine,
    so single runs differ by a few points; averaged over seeds they agree (tested).
    """
    config = TrainConfig.from_dict(run["config"])
    epochs_trained = len(run["history"]) or config.epochs
    stopped = (
        f"\n# The run was stopped after {epochs_trained} of {config.epochs} epochs; so is this script.\n"
        if epochs_trained < config.epochs
        else ""
    )
    return f'''"""{run["label"]} of the Fetal Health HPO Lab (Part I), as the course notebook writes it in PyTorch.

The lab reported a final validation accuracy of {run["final_val_accuracy"]:.2f}% after {epochs_trained} epoch(s).
Run it anywhere with torch, numpy, pandas and scikit-learn installed:

    python {run["label"].lower().replace(" ", "_")}.py path/to/fetal_health.csv [seed]
"""

import sys

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR

# The hyperparameters you chose in Part I.
HIDDEN_LAYERS = {list(config.hidden_layers)!r}
BATCH_SIZE = {config.batch_size}
OPTIMIZER = "{config.optimizer}"  # torch.optim.SGD, Adam or RMSprop
LEARNING_RATE = {config.learning_rate!r}
WEIGHT_DECAY = {config.weight_decay!r}
SCHEDULER = {config.scheduler}  # cosine annealing of the learning rate to 0 over the epochs
EPOCHS = {config.epochs}
STANDARDIZE = {config.standardize}  # scale features by the training rows' mean and std
SEED = int(sys.argv[2]) if len(sys.argv) > 2 else {config.seed}
EPOCHS_TO_TRAIN = {epochs_trained}
{stopped}
torch.manual_seed(SEED)
np.random.seed(SEED)

# The notebook's data: 21 features, label fetal_health 1/2/3 (as 0/1/2), 80/20 stratified split, random_state 42.
data = pd.read_csv(sys.argv[1])
features = data.drop(columns=["fetal_health"]).to_numpy(dtype=np.float32)
labels = data["fetal_health"].to_numpy().astype(np.int64) - 1
x_train, x_val, y_train, y_val = train_test_split(
    features, labels, test_size=0.2, random_state=42, stratify=labels
)
if STANDARDIZE:
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std[std == 0] = 1.0
    x_train, x_val = (x_train - mean) / std, (x_val - mean) / std
x_train, x_val = torch.tensor(x_train, dtype=torch.float32), torch.tensor(x_val, dtype=torch.float32)
y_train, y_val = torch.tensor(y_train), torch.tensor(y_val)
loader = torch.utils.data.DataLoader(
    torch.utils.data.TensorDataset(x_train, y_train), batch_size=BATCH_SIZE, shuffle=True
)

# The notebook's network: Linear -> LeakyReLU per hidden layer, Dropout(0.5), Linear to 3 classes.
layers, width = [], x_train.shape[1]
for units in HIDDEN_LAYERS:
    layers += [nn.Linear(width, units), nn.LeakyReLU()]
    width = units
model = nn.Sequential(*layers, nn.Dropout(0.5), nn.Linear(width, 3))

loss_fn = nn.CrossEntropyLoss()
optimizer = getattr(torch.optim, OPTIMIZER)(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
scheduler = CosineAnnealingLR(optimizer, T_max=max(1, EPOCHS - 1)) if SCHEDULER else None

for epoch in range(1, EPOCHS_TO_TRAIN + 1):
    model.train()
    for x, y in loader:
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
    if scheduler is not None:
        scheduler.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_val).argmax(dim=1) == y_val).float().mean().item() * 100
    print(f"epoch {{epoch:4d}}  training loss {{loss.item():.4f}}  validation accuracy {{accuracy:.2f}}%")

print(f"final validation accuracy: {{accuracy:.2f}}%")
'''
