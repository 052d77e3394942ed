"""The one training loop, used by the pages, the CLI, the studies, the tests and the benchmarks.

Speed comes from two things. The data stays whole: each epoch draws one permutation, gathers the
shuffled training set once and slices batches from it (no per-sample Dataset, no DataLoader, no
collate), and validation is one pass over all validation rows. And the step is cheap: the network's
forward/backward (``model.MLP``) and the optimisers below work on one flat float32 vector with NumPy,
reproducing ``torch.optim.SGD/Adam/RMSprop`` and ``CosineAnnealingLR`` exactly (tested against them).

Threads: each training uses ``FETAL_HPO_TORCH_THREADS`` BLAS/torch threads (default 1). The matrices
are tiny (at most 128 x 256), so splitting them across threads costs more in synchronisation than it
saves, and one thread per training lets two trainings (two students, two study workers) use both cores.
"""

from __future__ import annotations

import functools
import math
import numbers
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from . import limits
from .config import settings
from .data import CLASS_NAMES, Split
from .limits import ConfigError
from .model import MLP
from .text import clip

OPTIMIZERS = ("SGD", "Adam", "RMSprop")


def _whole_number(name: str, value: object) -> int:
    """``value`` as an int (whole floats such as 100.0 from a table are fine), else a ConfigError."""
    if isinstance(value, numbers.Integral) or (isinstance(value, numbers.Real) and float(value).is_integer()):
        return int(value)
    raise ConfigError(f"{name}: {clip(repr(value), 40)} is not a whole number.")


def _real_number(name: str, value: object) -> float:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    raise ConfigError(f"{name}: {clip(repr(value), 40)} is not a number.")


@dataclass(frozen=True)
class TrainConfig:
    """Every hyperparameter of one training run. Defaults are the notebook's deliberately bad ones."""

    hidden_layers: tuple[int, ...] = (15, 10)
    batch_size: int = 100
    optimizer: str = "Adam"
    learning_rate: float = 1.0
    weight_decay: float = 1.0
    scheduler: bool = True
    epochs: int = 50
    seed: int = 42
    standardize: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.hidden_layers, str | bytes) or not hasattr(self.hidden_layers, "__iter__"):
            raise ConfigError(f"hidden_layers: {self.hidden_layers!r} is not a list of layer widths.")
        widths = tuple(_whole_number(f"hidden_layers: layer {i}", u) for i, u in enumerate(self.hidden_layers))
        object.__setattr__(self, "hidden_layers", widths)
        for name in ("batch_size", "epochs", "seed"):
            object.__setattr__(self, name, _whole_number(name, getattr(self, name)))
        for name in ("learning_rate", "weight_decay"):
            object.__setattr__(self, name, _real_number(name, getattr(self, name)))
        if not self.hidden_layers:
            raise ConfigError("hidden_layers: give at least one hidden layer width.")
        limits.check("hidden_layers: number of layers", len(self.hidden_layers), limits.LAYERS)
        for i, units in enumerate(self.hidden_layers):
            limits.check(f"hidden_layers: layer {i} units", units, limits.UNITS)
        limits.check("batch_size", self.batch_size, limits.BATCH_SIZE)
        limits.check_network(self.hidden_layers, self.batch_size)
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer: {clip(repr(self.optimizer), 40)} is not one of {', '.join(OPTIMIZERS)}.")
        limits.check("learning_rate", self.learning_rate, limits.LEARNING_RATE)
        limits.check("weight_decay", self.weight_decay, limits.WEIGHT_DECAY)
        limits.check("epochs", self.epochs, limits.EPOCHS)
        limits.check("seed", self.seed, limits.SEED)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden_layers"] = list(self.hidden_layers)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


@dataclass(frozen=True)
class EpochMetrics:
    """What one epoch reports. ``epoch`` counts from 1; accuracies are in percent."""

    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    balanced_accuracy: float
    seconds: float  # elapsed since the run started

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    config: TrainConfig
    history: list[EpochMetrics]
    null_accuracy: float
    seconds: float
    stopped_early: bool
    confusion_matrix: list[list[int]]  # rows: true class, columns: predicted class
    per_class_recall: dict[str, float] = field(default_factory=dict)  # percent
    model: MLP | None = field(default=None, repr=False)  # the trained network; .to_torch() for PyTorch
    stopped_by_budget: float | None = None  # the time budget (s) that ended the run, if one did

    @property
    def final_val_accuracy(self) -> float:
        return self.history[-1].val_accuracy if self.history else float("nan")

    @property
    def best_val_accuracy(self) -> float:
        return max((m.val_accuracy for m in self.history), default=float("nan"))

    @property
    def final_balanced_accuracy(self) -> float:
        return self.history[-1].balanced_accuracy if self.history else float("nan")

    def to_dict(self) -> dict:
        return {
            "config": self.config.to_dict(),
            "history": [m.to_dict() for m in self.history],
            "final_val_accuracy": self.final_val_accuracy,
            "best_val_accuracy": self.best_val_accuracy,
            "balanced_accuracy": self.final_balanced_accuracy,
            "null_accuracy": self.null_accuracy,
            "confusion_matrix": self.confusion_matrix,
            "per_class_recall": self.per_class_recall,
            "stopped_early": self.stopped_early,
            "stopped_by_budget": self.stopped_by_budget,
            "seconds": self.seconds,
        }


EpochCallback = Callable[[EpochMetrics], "bool | None"]


def use_configured_threads() -> None:
    """Apply the configured thread count to BLAS (and torch, if loaded); see the module docstring."""
    _apply_threads(settings().torch_threads)


@functools.cache
def _apply_threads(wanted: int) -> None:  # once per process and value: threadpoolctl's scan costs ~2 ms
    import sys

    from threadpoolctl import threadpool_limits

    threadpool_limits(wanted)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(wanted)


class Optimizer:
    """``torch.optim`` SGD / Adam / RMSprop (their defaults, L2 ``weight_decay``) on one flat vector."""

    def __init__(self, name: str, size: int, weight_decay: float) -> None:
        if name not in OPTIMIZERS:
            raise ConfigError(f"optimizer: '{name}' is not one of {', '.join(OPTIMIZERS)}.")
        self.name, self.weight_decay, self.steps = name, np.float32(weight_decay), 0
        self.first = np.zeros(size, dtype=np.float32)  # Adam's exp_avg
        self.second = np.zeros(size, dtype=np.float32)  # Adam's exp_avg_sq, RMSprop's square_avg
        self.scratch = np.empty(size, dtype=np.float32)

    def step(self, params: np.ndarray, grads: np.ndarray, lr: float) -> None:
        """Update ``params`` in place from ``grads`` (which it may overwrite) at learning rate ``lr``.

        Every operation writes into a preallocated buffer: for a wide network the vectors are ~0.5 MB,
        and a fresh temporary per operation (a page-faulting allocation each) tripled the step time.
        """
        self.steps += 1
        tmp = self.scratch
        if self.weight_decay:
            np.multiply(params, self.weight_decay, out=tmp)
            grads += tmp
        if self.name == "SGD":
            np.multiply(grads, np.float32(lr), out=tmp)
            params -= tmp
            return
        if self.name == "Adam":
            beta1, beta2, eps = 0.9, 0.999, 1e-8
            np.subtract(grads, self.first, out=tmp)  # exp_avg.lerp_(grad, 1 - beta1)
            tmp *= np.float32(1 - beta1)
            self.first += tmp
            decay, fresh, numerator = np.float32(beta2), np.float32(1 - beta2), self.first
            step_size = np.float32(lr / (1 - beta1**self.steps))
            correction = np.float32(math.sqrt(1 - beta2**self.steps))
        else:  # RMSprop
            alpha, eps = 0.99, 1e-8
            decay, fresh, numerator = np.float32(alpha), np.float32(1 - alpha), grads
            step_size, correction = np.float32(lr), None
        np.multiply(grads, grads, out=tmp)  # second = decay * second + (1 - decay) * grad**2
        tmp *= fresh
        self.second *= decay
        self.second += tmp
        np.sqrt(self.second, out=tmp)  # denominator
        if correction is not None:
            tmp /= correction
        tmp += np.float32(eps)
        np.divide(numerator, tmp, out=tmp)
        tmp *= step_size
        params -= tmp


def cosine_lr(base_lr: float, epoch_index: int, epochs: int) -> float:
    """``CosineAnnealingLR(T_max=epochs-1)`` stepped once per epoch: the lr for 0-based ``epoch_index``."""
    t_max = max(1, epochs - 1)
    return base_lr * (1 + math.cos(math.pi * min(epoch_index, t_max) / t_max)) / 2


def _confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _recalls(confusion: np.ndarray) -> np.ndarray:
    return 100.0 * confusion.diagonal() / np.maximum(confusion.sum(axis=1), 1)


def _cross_entropy(logits: np.ndarray, y: np.ndarray) -> float:
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_total = np.log(np.exp(shifted).sum(axis=1))
    return float(np.mean(log_total - shifted[np.arange(len(y)), y]))


def dropout_mask(rng: np.random.Generator, rows: int, units: int) -> np.ndarray:
    """A fair 0/1 keep mask (uint8) for one epoch: the top bit of random bytes, 3x cheaper than floats."""
    return np.frombuffer(rng.bytes(rows * units), dtype=np.uint8).reshape(rows, units) >> 7


def train(
    config: TrainConfig, split: Split, on_epoch: EpochCallback | None = None, time_budget: float | None = None
) -> TrainResult:
    """Train ``config`` on ``split``; call ``on_epoch`` after every epoch.

    ``on_epoch`` returns True to stop the run early (what was trained so far is kept); it may also raise
    (a study raises ``optuna.TrialPruned``), which propagates. Same config and seed, same history.

    ``time_budget`` (seconds): the clock is read before every batch, so even a long epoch ends at the budget;
    the run then stops early with ``stopped_by_budget`` set and keeps its finished epochs (an epoch cut short
    reports nothing).
    """
    if config.standardize != split.standardized:
        raise ConfigError("standardize: the split was prepared with a different standardize setting.")
    use_configured_threads()
    started = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    model = MLP(split.n_features, config.hidden_layers, rng)
    optimizer = Optimizer(config.optimizer, model.params.size, config.weight_decay)
    x_train, y_train, x_val, y_val = split.x_train, split.y_train, split.x_val, split.y_val
    n_train, batch_size, n_classes = len(y_train), config.batch_size, len(CLASS_NAMES)

    history: list[EpochMetrics] = []
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    stopped_early, stopped_by_budget = False, None
    deadline = math.inf if time_budget is None else started + time_budget
    # A diverging run (lr 1, no decay) overflows to inf/NaN; that is a result to show, not an error.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        for epoch in range(1, config.epochs + 1):
            lr = cosine_lr(config.learning_rate, epoch - 1, config.epochs) if config.scheduler else config.learning_rate
            order = rng.permutation(n_train)
            xs, ys = x_train[order], y_train[order]
            keep = dropout_mask(rng, n_train, model.widths[-2])
            loss_sum, cut = 0.0, False
            for start in range(0, n_train, batch_size):
                if time.perf_counter() >= deadline:  # ~50 ns a batch: cheap next to the step
                    cut = True
                    break
                stop = start + batch_size
                loss = model.loss_and_gradients(xs[start:stop], ys[start:stop], keep[start:stop])
                optimizer.step(model.params, model.grads, lr)
                loss_sum += loss * (min(stop, n_train) - start)
            if cut:  # an epoch cut short reports nothing
                stopped_early, stopped_by_budget = True, time_budget
                break

            logits = model.logits(x_val)
            predictions = np.argmax(logits, axis=1)
            confusion = _confusion(y_val, predictions, n_classes)
            metrics = EpochMetrics(
                epoch=epoch,
                train_loss=loss_sum / n_train,
                val_loss=_cross_entropy(logits, y_val),
                val_accuracy=100.0 * int(confusion.trace()) / len(y_val),
                balanced_accuracy=float(_recalls(confusion).mean()),
                seconds=time.perf_counter() - started,
            )
            history.append(metrics)
            if on_epoch is not None and on_epoch(metrics) and epoch < config.epochs:
                stopped_early = True
                break
            if time.perf_counter() >= deadline and epoch < config.epochs:
                stopped_early, stopped_by_budget = True, time_budget
                break

    return TrainResult(
        config=config,
        history=history,
        null_accuracy=split.null_accuracy,
        seconds=time.perf_counter() - started,
        stopped_early=stopped_early,
        confusion_matrix=confusion.tolist(),
        per_class_recall={name: float(r) for name, r in zip(CLASS_NAMES, _recalls(confusion))},
        model=model,
        stopped_by_budget=stopped_by_budget,
    )
