"""The lab's one set of limits: every hyperparameter's allowed range, for the UI, the CLI and the engine.

A value outside its range is refused at the boundary with one line naming the setting, the value and the
range (``check``). The ranges are wide enough for any lesson and narrow enough that one student cannot
occupy a class server for hours (100,000 one-unit layers took 46 s an epoch) or crash a sampler (a seed
of 2**32 is beyond NumPy's legacy generators, which Optuna's samplers use).

Each range alone still allows 8 layers of 1,024 units at batch size 1: 7.4 M weights updated 1,700 times an
epoch, 58 s an epoch. ``check_network`` caps the two products that set an epoch's time (measured by
``benchmarks/class_fairness.py``): the weights (each training row goes through all of them, forward and back)
and the weights times the optimiser steps of an epoch (each step updates all of them). At the caps one epoch
takes about 1 s on one core of the 2-core machine the benchmark ran on. The server's time budget per
training (``config.time_budget``) bounds the rest (epochs, a larger uploaded data set).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .text import clip


class ConfigError(ValueError):
    """A training or search setting that cannot be used, naming the setting and its value."""


@dataclass(frozen=True)
class Range:
    """An inclusive range of allowed values."""

    low: float
    high: float

    def __str__(self) -> str:
        return f"{_show(self.low)} to {_show(self.high)}"


def _show(value: float) -> str:
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e6):
        return f"{int(value):,}"
    return f"{value:g}"


LAYERS = Range(1, 8)  # hidden layers of a network
UNITS = Range(1, 1024)  # units of one hidden layer
BATCH_SIZE = Range(1, 2048)  # the training part has 1,700 rows: larger batches are the whole set
EPOCHS = Range(1, 10_000)
SEED = Range(0, 2**31 - 1)  # plus a trial number stays below 2**32, NumPy's legacy seed limit
TRIALS = Range(1, 10_000)
LEARNING_RATE = Range(1e-7, 10.0)
WEIGHT_DECAY = Range(0.0, 10.0)

# The network caps, counted on the lab's data set (21 features, 3 classes, 1,700 training rows).
N_FEATURES, N_CLASSES, TRAIN_ROWS = 21, 3, 1_700
MAX_WEIGHTS = 1_200_000  # e.g. 2 layers of 1,024 units, 4 of 512, 8 of 384
MAX_WEIGHT_STEPS = 250_000_000  # weights x optimiser steps per epoch, e.g. 8 layers of 128 units at batch size 1


def network_weights(hidden_layers: Sequence[int], inputs: int = N_FEATURES, outputs: int = N_CLASSES) -> int:
    """Weights and biases of the lab's MLP with these hidden layer widths."""
    widths = [inputs, *hidden_layers, outputs]
    return sum(n_in * n_out + n_out for n_in, n_out in zip(widths[:-1], widths[1:]))


def steps_per_epoch(batch_size: int, rows: int = TRAIN_ROWS) -> int:
    return -(-rows // max(1, batch_size))


def _layers_text(hidden_layers: Sequence[int]) -> str:
    if len(hidden_layers) > 1 and len(set(hidden_layers)) == 1:
        return f"{hidden_layers[0]:,}×{len(hidden_layers)}"
    return ", ".join(f"{u:,}" for u in hidden_layers)


def _millions(value: float) -> str:
    return f"{value / 1e6:.3g} M" if value >= 1e5 else f"{value:,.0f}"


def check_network(hidden_layers: Sequence[int], batch_size: int, setting: str = "hidden layers") -> None:
    """A ``ConfigError`` naming the values when one epoch of this network at this batch size would take more
    than about a second on the class's server (``MAX_WEIGHTS``, ``MAX_WEIGHT_STEPS``)."""
    layers = [int(u) for u in hidden_layers]
    weights = network_weights(layers)
    shown = f"{setting} {_layers_text(layers)}"
    if weights > MAX_WEIGHTS:
        raise ConfigError(
            f"{shown} have {_millions(weights)} weights; the lab allows at most {_millions(MAX_WEIGHTS)} "
            "(one epoch must stay under a few seconds on a shared server): use fewer or narrower layers."
        )
    steps = steps_per_epoch(batch_size)
    if weights * steps > MAX_WEIGHT_STEPS:
        # ceil(rows / most steps) is the smallest batch size whose steps fit the cap
        smallest_batch = steps_per_epoch(MAX_WEIGHT_STEPS // weights)
        raise ConfigError(
            f"{shown} ({_millions(weights)} weights) at batch size {batch_size:,} update "
            f"{_millions(weights * steps)} weights an epoch ({steps:,} steps); the lab allows at most "
            f"{_millions(MAX_WEIGHT_STEPS)}: use a batch size of at least {smallest_batch:,} or a smaller network."
        )


def finite_or_none(value: Any) -> Any:
    """``value`` with every float that is not finite (NaN, +-inf) replaced by None, also inside dicts, lists and
    tuples: JSON and Plotly have no NaN, so a diverged run's losses become null (a gap)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    return value


def check(setting: str, value: object, allowed: Range, whole: bool = False) -> float | int:
    """``value`` as a number within ``allowed``, or a ``ConfigError`` naming the setting, value and range."""
    shown = clip(repr(value) if isinstance(value, str) else str(value), 40)
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            number = float(value)  # numpy scalars, numeric strings
        except (TypeError, ValueError):
            raise ConfigError(f"{setting}: {shown} is not a number.") from None
    else:
        number = value
    if not math.isfinite(number):
        raise ConfigError(f"{setting}: {shown} is not a finite number; use {allowed}.")
    if whole:
        if number != int(number):
            raise ConfigError(f"{setting}: {shown} is not a whole number; use {allowed}.")
        number = int(number)
    if not allowed.low <= number <= allowed.high:
        raise ConfigError(f"{setting}: {shown} is outside the allowed range {allowed}.")
    return number
