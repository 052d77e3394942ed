"""fetal_core.training: the one training loop is deterministic, stoppable, validated, and the notebook's maths."""

from __future__ import annotations

import dataclasses
import math
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, confusion_matrix
from torch import nn

from fetal_core.data import CLASS_NAMES, split_dataset
from fetal_core.model import DROPOUT, MLP
from fetal_core.training import ConfigError, TrainConfig, dropout_mask, train

GOOD = dict(optimizer="Adam", learning_rate=1e-3, weight_decay=1e-4, standardize=True)


@pytest.fixture(scope="module")
def raw_split(dataset):
    return split_dataset(dataset)


@pytest.fixture(scope="module")
def scaled_split(dataset):
    return split_dataset(dataset, standardize=True)


def curve(result) -> list[tuple]:
    """The history without the wall-clock column."""
    return [(m.epoch, m.train_loss, m.val_loss, m.val_accuracy, m.balanced_accuracy) for m in result.history]


def test_same_config_and_seed_give_an_identical_history(scaled_split):
    config = TrainConfig(**GOOD, epochs=6, batch_size=32, seed=7)
    first, second = train(config, scaled_split), train(config, scaled_split)
    assert len(first.history) == 6
    assert curve(first) == curve(second)
    np.testing.assert_array_equal(first.model.params, second.model.params)
    assert first.confusion_matrix == second.confusion_matrix


def test_a_different_seed_gives_a_different_history(scaled_split):
    config = TrainConfig(**GOOD, epochs=4, seed=1)
    other = dataclasses.replace(config, seed=2)
    assert [m.train_loss for m in train(config, scaled_split).history] != [
        m.train_loss for m in train(other, scaled_split).history
    ]


def test_two_trainings_in_two_threads_match_each_run_alone(scaled_split):
    configs = [TrainConfig(**GOOD, epochs=8, batch_size=16, seed=3), TrainConfig(**GOOD, epochs=8, seed=4)]
    alone = [curve(train(c, scaled_split)) for c in configs]
    both_started = threading.Barrier(2, timeout=30)

    def run(config):
        def meet_the_other_thread(metrics):
            if metrics.epoch == 1:
                both_started.wait()  # the two runs really overlap

        return curve(train(config, scaled_split, meet_the_other_thread))

    with ThreadPoolExecutor(max_workers=2) as pool:
        together = list(pool.map(run, configs))
    assert together == alone
    assert alone[0] != alone[1]


def test_on_epoch_returning_true_stops_early_and_keeps_the_history(scaled_split):
    seen = []

    def stop_after_three(metrics):
        seen.append(metrics.epoch)
        return metrics.epoch == 3

    full = train(TrainConfig(**GOOD, epochs=10), scaled_split)
    stopped = train(TrainConfig(**GOOD, epochs=10), scaled_split, stop_after_three)
    assert seen == [1, 2, 3]
    assert stopped.stopped_early and not full.stopped_early
    assert [m.epoch for m in stopped.history] == [1, 2, 3]
    assert curve(stopped) == curve(full)[:3]
    assert stopped.final_val_accuracy == stopped.history[-1].val_accuracy
    predicted = stopped.model.logits(scaled_split.x_val).argmax(axis=1)
    assert stopped.confusion_matrix == confusion_matrix(scaled_split.y_val, predicted, labels=[0, 1, 2]).tolist()


def test_stopping_on_the_last_epoch_is_not_early(scaled_split):
    result = train(TrainConfig(**GOOD, epochs=2), scaled_split, lambda m: True if m.epoch == 2 else None)
    assert len(result.history) == 2 and not result.stopped_early


def test_an_exception_in_on_epoch_propagates(scaled_split):
    class Pruned(Exception):
        pass

    def prune(metrics):
        raise Pruned(metrics.epoch)

    with pytest.raises(Pruned, match="1"):
        train(TrainConfig(**GOOD, epochs=5), scaled_split, prune)


def test_epoch_metrics_are_sensible(scaled_split):
    history = train(TrainConfig(**GOOD, epochs=5), scaled_split).history
    assert [m.epoch for m in history] == [1, 2, 3, 4, 5]
    seconds = [m.seconds for m in history]
    assert seconds == sorted(seconds) and seconds[0] > 0
    for m in history:
        assert 0 <= m.balanced_accuracy <= 100 and 0 <= m.val_accuracy <= 100
        assert math.isfinite(m.train_loss) and math.isfinite(m.val_loss)
    assert history[-1].train_loss < history[0].train_loss  # by 0.1 or more for each of seeds 0-9, on any kernel


def test_the_notebooks_manual_defaults_end_near_null_accuracy(raw_split):
    """Within 1.02 points of the null accuracy for each of seeds 0-9 and 42, with 1 and 2 threads and the
    Haswell, SandyBridge and SkylakeX OpenBLAS kernels (which of those runs predict one class only varies)."""
    config = TrainConfig()
    assert (config.hidden_layers, config.batch_size, config.optimizer) == ((15, 10), 100, "Adam")
    assert (config.learning_rate, config.weight_decay, config.scheduler, config.epochs) == (1.0, 1.0, True, 50)
    result = train(config, raw_split)
    assert len(result.history) == 50
    assert result.null_accuracy == pytest.approx(77.8457, abs=1e-3)
    assert abs(result.final_val_accuracy - result.null_accuracy) <= 2.0
    assert result.final_balanced_accuracy < 40.0  # a constant guess scores 33.3 %


def test_a_good_config_beats_85_percent(scaled_split):
    """At the notebook's batch size one seed in ten ends near 81.7 % (so can torch's own loop, for some seeds);
    the claim is about the config, so average five seeds. Checked for seeds 0-9, 1 and 2 threads, the Haswell,
    SandyBridge and SkylakeX kernels: every seed > 81.5 %, the mean of any five consecutive seeds > 85.9 %."""
    finals = [train(TrainConfig(**GOOD, epochs=50, seed=seed), scaled_split).final_val_accuracy for seed in range(5)]
    assert np.mean(finals) > 85.0, finals
    assert min(finals) > 80.0, finals


def test_final_metrics_have_a_confusion_matrix_and_per_class_recall(scaled_split):
    result = train(TrainConfig(**GOOD, epochs=20, batch_size=32), scaled_split)
    matrix = np.array(result.confusion_matrix)
    assert matrix.shape == (3, 3)
    assert matrix.sum() == len(scaled_split.y_val) == 426
    assert matrix.sum(axis=1).tolist() == np.bincount(scaled_split.y_val).tolist()
    predicted = result.model.logits(scaled_split.x_val).argmax(axis=1)
    assert result.confusion_matrix == confusion_matrix(scaled_split.y_val, predicted).tolist()
    assert list(result.per_class_recall) == list(CLASS_NAMES)
    recalls = 100 * matrix.diagonal() / matrix.sum(axis=1)
    assert list(result.per_class_recall.values()) == pytest.approx(recalls.tolist())
    assert result.history[-1].balanced_accuracy == pytest.approx(recalls.mean())
    assert result.final_val_accuracy == pytest.approx(100 * matrix.trace() / matrix.sum())
    assert result.per_class_recall["pathological"] > 0  # more than the majority class (>= 45 %, seeds 0-9, any kernel)
    as_dict = result.to_dict()
    assert as_dict["confusion_matrix"] == result.confusion_matrix
    assert as_dict["per_class_recall"] == result.per_class_recall


def test_a_diverging_run_reports_instead_of_raising(raw_split):
    config = TrainConfig(optimizer="SGD", learning_rate=1.0, weight_decay=0.0, scheduler=False, epochs=5)
    result = train(config, raw_split)
    assert len(result.history) == 5
    assert np.array(result.confusion_matrix).sum() == 426


def test_config_dict_round_trip_ignores_unknown_keys():
    config = TrainConfig(hidden_layers=[7, 5, 3], batch_size=8, optimizer="RMSprop", learning_rate=2e-5, seed=9)
    assert config.hidden_layers == (7, 5, 3)
    stored = config.to_dict()
    assert stored["hidden_layers"] == [7, 5, 3]
    assert TrainConfig.from_dict({**stored, "notes": "from an older version"}) == config


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"hidden_layers": ()}, "hidden_layers"),
        ({"hidden_layers": (15, 0)}, "hidden_layers"),
        ({"hidden_layers": (15, 5000)}, "hidden_layers"),
        ({"hidden_layers": ("wide",)}, "hidden_layers"),
        ({"hidden_layers": (2.5,)}, "hidden_layers"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"optimizer": "Adagrad"}, "optimizer"),
        ({"optimizer": "adam"}, "optimizer"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"learning_rate": -0.1}, "learning_rate"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"learning_rate": float("inf")}, "learning_rate"),
        ({"learning_rate": "0.1"}, "learning_rate"),
        ({"weight_decay": -1e-4}, "weight_decay"),
        ({"weight_decay": float("nan")}, "weight_decay"),
        ({"epochs": 0}, "epochs"),
        ({"epochs": 10_001}, "epochs"),
        ({"epochs": 2.5}, "epochs"),
        ({"seed": "x"}, "seed"),
    ],
)
def test_config_errors_name_the_field(changes, field):
    with pytest.raises(ConfigError) as caught:
        TrainConfig(**changes)
    assert str(caught.value).startswith(f"{field}: ")


def test_standardize_must_match_the_split(raw_split):
    with pytest.raises(ConfigError, match="^standardize: "):
        train(TrainConfig(standardize=True, epochs=1), raw_split)


# --- the same maths as the notebook's PyTorch loop -------------------------------------------------------


def torch_replay(config: TrainConfig, split) -> list[tuple]:
    """The notebook's loop in PyTorch, replaying our run's draws: the initial weights, then per epoch the
    shuffle and the dropout mask (in that order, from one generator seeded with ``config.seed``)."""
    rng = np.random.default_rng(config.seed)
    mlp = MLP(split.n_features, config.hidden_layers, rng)
    net = mlp.to_torch()
    optimizers = {"SGD": torch.optim.SGD, "Adam": torch.optim.Adam, "RMSprop": torch.optim.RMSprop}
    optimizer = optimizers[config.optimizer](
        net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.epochs - 1) if config.scheduler else None
    criterion = nn.CrossEntropyLoss()
    x_train, y_train = torch.from_numpy(split.x_train), torch.from_numpy(split.y_train)
    x_val, y_val = torch.from_numpy(split.x_val), torch.from_numpy(split.y_val)
    n, width = len(y_train), config.hidden_layers[-1]
    history = []
    for epoch in range(1, config.epochs + 1):
        order = torch.from_numpy(rng.permutation(n))
        keep = torch.from_numpy(dropout_mask(rng, n, width).astype(np.float32))
        net.train()
        loss_sum = 0.0
        for start in range(0, n, config.batch_size):
            rows = order[start : start + config.batch_size]
            optimizer.zero_grad()
            a = x_train[rows]
            for module in net:  # our dropout mask in place of nn.Dropout's own draw
                is_dropout = isinstance(module, nn.Dropout)
                a = a * keep[start : start + config.batch_size] / (1 - DROPOUT) if is_dropout else module(a)
            loss = criterion(a, y_train[rows])
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(rows)
        if scheduler:
            scheduler.step()
        net.eval()
        with torch.no_grad():
            logits = net(x_val)
        predicted = logits.argmax(dim=1).numpy()
        history.append(
            (
                epoch,
                loss_sum / n,
                criterion(logits, y_val).item(),
                100.0 * (predicted == split.y_val).mean(),
                100.0 * balanced_accuracy_score(split.y_val, predicted),
            )
        )
    return history


@pytest.mark.parametrize("optimizer", ["SGD", "Adam", "RMSprop"])
def test_training_equals_the_notebooks_torch_loop_on_the_same_draws(scaled_split, optimizer):
    learning_rate = 0.05 if optimizer == "SGD" else 3e-3
    # 1700 training rows in batches of 64: the last batch is partial.
    settings = {**GOOD, "optimizer": optimizer, "learning_rate": learning_rate, "weight_decay": 1e-3}
    config = TrainConfig(**settings, batch_size=64, epochs=4, seed=11)
    ours, reference = curve(train(config, scaled_split)), torch_replay(config, scaled_split)
    for mine, theirs in zip(ours, reference, strict=True):
        assert mine[0] == theirs[0]
        assert mine[1:3] == pytest.approx(theirs[1:3], rel=1e-4), f"epoch {mine[0]} losses"
        assert mine[3:] == pytest.approx(theirs[3:], abs=0.5), f"epoch {mine[0]} accuracies"
