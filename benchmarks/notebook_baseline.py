"""The course notebook's training code, as it writes it, adapted only to run on current libraries.

This is the baseline the benchmarks measure against; it is not used by the app. The adaptations:
``drop(columns=...)`` without ``axis`` (pandas 3), no ``CosineAnnealingLR(verbose=...)`` (torch), and
the globals (EPOCHS, hyperparameters) passed as arguments so one process can time many configs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import OrdinalEncoder
from torch.optim.lr_scheduler import CosineAnnealingLR

CLASSES = 3
RANDOM_SEED = 42


def prepare(path):
    data = pd.read_csv(path)
    encoder = OrdinalEncoder()
    encoder.fit(data[["fetal_health"]])
    data[["fetal_health"]] = encoder.transform(data[["fetal_health"]])
    return data


class FetalHealthData(torch.utils.data.Dataset):
    def __init__(self, data):
        self.labels = data.fetal_health.tolist()
        self.features = data.drop(columns=["fetal_health"]).values.tolist()

    def __getitem__(self, index):
        sample = np.array(self.features[index]), np.array(self.labels[index])
        return sample

    def __len__(self):
        return len(self.labels)


def get_model(data, architecture):
    layers = []
    in_features = len(data.drop(columns=["fetal_health"]).columns)
    for out_features in architecture:
        layers.append(nn.Linear(in_features, out_features))
        layers.append(nn.LeakyReLU())
        in_features = out_features
    layers.append(nn.Dropout())
    layers.append(nn.Linear(in_features, CLASSES))
    return nn.Sequential(*layers)


def get_data(data, batch_size):
    training_data, testing_data = train_test_split(
        data, test_size=0.2, random_state=RANDOM_SEED, stratify=data.fetal_health
    )
    training_data, testing_data = FetalHealthData(training_data), FetalHealthData(testing_data)
    return (
        torch.utils.data.DataLoader(training_data, batch_size=batch_size, shuffle=True),
        torch.utils.data.DataLoader(testing_data, batch_size=batch_size, shuffle=False),
    )


def get_optimizer(model, optimizer, learning_rate, weight_decay):
    if optimizer == "Adam":
        return torch.optim.Adam(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    elif optimizer == "SGD":
        return torch.optim.SGD(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    elif optimizer == "RMSprop":
        return torch.optim.RMSprop(model.parameters(), lr=learning_rate, weight_decay=weight_decay)


def train(model, training_batches, testing_batches, params, epochs, report=None):
    """The notebook's loop; ``report(accuracy, epoch)`` is its ``trial.report`` + ``should_prune``."""
    scheduler = params["scheduler"]
    accuracy = list()
    criterion = nn.CrossEntropyLoss()
    optimizer = get_optimizer(model, params["optimizer"], params["learning_rate"], params["weight_decay"])
    if scheduler:
        scheduler = CosineAnnealingLR(optimizer, epochs - 1)
    for epoch in range(epochs):
        model.train()
        for samples, labels in training_batches:
            optimizer.zero_grad()
            outputs = model(samples.float())
            loss = criterion(outputs, labels.long())
            loss.backward()
            optimizer.step()
        if scheduler:
            scheduler.step()
        num_samples = 0
        correct_predictions = 0
        model.eval()
        with torch.no_grad():
            for samples, labels in testing_batches:
                output = model(samples.float())
                correct_predictions += (output.argmax(dim=1) == labels).sum().item()
                num_samples += labels.size(0)
        accuracy.append(100.0 * correct_predictions / num_samples)
        if report is not None:
            report(accuracy[-1], epoch)
    return accuracy


def run(data, architecture, params, epochs=50, seed=42, report=None):
    """Seed like the notebook, build model and loaders, train; returns the accuracy history."""
    torch.manual_seed(seed)
    model = get_model(data, architecture)
    training_batches, testing_batches = get_data(data, params["batch_size"])
    return train(model, training_batches, testing_batches, params, epochs, report)


# ---------------------------------------------------------------- Part II: the define-by-run, pruned study


def get_model_for_trial(data, trial):
    """Part II's ``get_model(trial)``: the trial chooses the number of hidden layers, then each width."""
    num_layers = trial.suggest_int("num_layers", 2, 4)
    layers = []
    in_features = len(data.drop(columns=["fetal_health"]).columns)
    for layer in range(num_layers):
        out_features = trial.suggest_int(f"layer_{layer}", 8, 256)
        layers.append(nn.Linear(in_features, out_features))
        layers.append(nn.LeakyReLU())
        in_features = out_features
    layers.append(nn.Dropout())
    layers.append(nn.Linear(in_features, CLASSES))
    return nn.Sequential(*layers)


def make_objective(data, epochs=50):
    """Part II's pruned objective. Adaptation: ``suggest_loguniform`` (removed) -> ``suggest_float(log=True)``."""
    import optuna

    def objective(trial):
        params = {
            "batch_size": trial.suggest_int("batch_size", 8, 128),
            "optimizer": trial.suggest_categorical("optimizer", ["SGD", "Adam", "RMSprop"]),
            "learning_rate": trial.suggest_float("learning_rate", 1e-5, 1e-1, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-5, 1e-1, log=True),
            "scheduler": True if trial.suggest_int("scheduler", 0, 1) == 1 else False,
        }
        model = get_model_for_trial(data, trial)
        training_batches, testing_batches = get_data(data, params["batch_size"])

        def report(accuracy, epoch):  # the notebook's trial.report + should_prune after each epoch
            trial.report(accuracy, epoch)
            if trial.should_prune():
                raise optuna.exceptions.TrialPruned()

        history = train(model, training_batches, testing_batches, params, epochs, report)
        return history[-1]

    return objective
