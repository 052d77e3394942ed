"""The lab's one set of limits: every hyperparameter's allowed range, for the UI, the CLI and the engine.

A value outside its range is refused at the boundary with one line naming the setting, the value and the
range (``check``). The ranges are wide enough for any lesson and narrow enough that one student cannot
occupy a class server for hours (100,000 one-unit layers took 46 s an epoch) or crash a sampler (a seed
of 2**32 is beyond NumPy's legacy generators, which Optuna's samplers use).
"""

from __future__ import annotations

import math
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
