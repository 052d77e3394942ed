"""The notebook's MLP: Linear -> LeakyReLU per hidden layer, Dropout(0.5), Linear to 3 classes.

Two faces of one network:

- ``MLP`` keeps every weight and bias in one flat float32 vector and computes the forward and
  backward pass by hand with NumPy. For a network this small, PyTorch's per-operation overhead
  (autograd graph, dispatcher, per-parameter optimiser loops) costs ten times more than the arithmetic,
  so training with it directly is what makes a study ~10x faster than the notebook. Its gradients equal
  PyTorch autograd's on the same weights and masks (``tests/test_model.py`` checks this).
- ``MLP.to_torch()`` gives the same network as a ``torch.nn.Sequential`` with the trained weights, the
  model students know from the notebook, for inference or export.

Weights and dropout masks draw from a ``numpy.random.Generator`` owned by the run, never from a global
RNG, so two trainings in threads of one server stay reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

N_CLASSES = 3
DROPOUT = 0.5
LEAKY_SLOPE = 0.01  # torch.nn.LeakyReLU's default


class MLP:
    """Weights of an MLP (``hidden_layers`` are the widths) as views into one flat vector."""

    def __init__(self, in_features: int, hidden_layers: Sequence[int], rng: np.random.Generator) -> None:
        self.widths = [int(in_features), *(int(u) for u in hidden_layers), N_CLASSES]
        shapes = [(n_out, n_in) for n_in, n_out in zip(self.widths[:-1], self.widths[1:])]
        size = sum(o * i + o for o, i in shapes)
        self.params = np.empty(size, dtype=np.float32)
        self.grads = np.zeros(size, dtype=np.float32)
        self.weights, self.biases, self.weight_grads, self.bias_grads = [], [], [], []
        offset = 0
        for n_out, n_in in shapes:
            for store, grad_store, shape in (
                (self.weights, self.weight_grads, (n_out, n_in)),
                (self.biases, self.bias_grads, (n_out,)),
            ):
                count = int(np.prod(shape))
                store.append(self.params[offset : offset + count].reshape(shape))
                grad_store.append(self.grads[offset : offset + count].reshape(shape))
                offset += count
            # nn.Linear's default init: kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
            bound = 1.0 / np.sqrt(n_in)
            self.weights[-1][...] = rng.uniform(-bound, bound, size=(n_out, n_in))
            self.biases[-1][...] = rng.uniform(-bound, bound, size=n_out)

    @property
    def hidden_layers(self) -> list[int]:
        return self.widths[1:-1]

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Evaluation forward pass (dropout off)."""
        a = x
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            z = a @ w.T + b
            a = np.maximum(z, LEAKY_SLOPE * z)
        return a @ self.weights[-1].T + self.biases[-1]

    def loss_and_gradients(self, x: np.ndarray, y: np.ndarray, keep_mask: np.ndarray) -> float:
        """Training step maths: forward with dropout, mean cross-entropy, gradients into ``self.grads``.

        ``keep_mask`` is the dropout mask (1 keeps a unit, 0 drops it) for the last hidden layer.
        """
        activations, slopes = [x], []
        a = x
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            z = a @ w.T + b
            slope = np.where(z > 0, np.float32(1.0), np.float32(LEAKY_SLOPE))
            a = z * slope
            activations.append(a)
            slopes.append(slope)
        scale = keep_mask * np.float32(1.0 / (1.0 - DROPOUT))
        dropped = a * scale
        logits = dropped @ self.weights[-1].T + self.biases[-1]

        rows = np.arange(len(y))
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        total = exp.sum(axis=1, keepdims=True)
        loss = float(np.mean(np.log(total[:, 0]) - shifted[rows, y]))

        grad = exp / total
        grad[rows, y] -= 1.0
        grad /= len(y)
        np.matmul(grad.T, dropped, out=self.weight_grads[-1])
        grad.sum(axis=0, out=self.bias_grads[-1])
        grad = (grad @ self.weights[-1]) * scale
        for layer in range(len(slopes) - 1, -1, -1):
            grad *= slopes[layer]
            np.matmul(grad.T, activations[layer], out=self.weight_grads[layer])
            grad.sum(axis=0, out=self.bias_grads[layer])
            if layer:
                grad = grad @ self.weights[layer]
        return loss

    def to_torch(self):
        """The same network as the notebook's ``torch.nn.Sequential``, holding these weights."""
        import torch
        from torch import nn

        layers: list[nn.Module] = []
        for n_in, n_out in zip(self.widths[:-2], self.widths[1:-1]):
            layers += [nn.Linear(n_in, n_out), nn.LeakyReLU()]
        layers += [nn.Dropout(DROPOUT), nn.Linear(self.widths[-2], self.widths[-1])]
        linears = [m for m in layers if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for linear, w, b in zip(linears, self.weights, self.biases):
                linear.weight.copy_(torch.from_numpy(w.copy()))
                linear.bias.copy_(torch.from_numpy(b.copy()))
        return nn.Sequential(*layers)
