"""The notebook's MLP: Linear -> LeakyReLU per hidden layer, Dropout(0.5), Linear to 3 classes.

Two faces of one network:

- ``MLP`` keeps every weight and bias in one flat float32 vector and computes the forward and
  backward pass by hand with NumPy. For a network this small, PyTorch's per-operation overhead
  (autograd graph, dispatcher, optimiser kernels) costs more than the arithmetic: ``benchmarks/engine.py``
  measures ours against PyTorch on preloaded tensors with a fused optimiser, and against the notebook,
  in one run (the README has the numbers; the gap is widest for the notebook's small networks and
  closes for wide ones, where the matrix products dominate). Its gradients equal PyTorch autograd's on
  the same weights and masks (``tests/test_model.py`` checks this).
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
        self._workspaces: dict[int, _Workspace] = {}

    @property
    def hidden_layers(self) -> list[int]:
        return self.widths[1:-1]

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Evaluation forward pass (dropout off), held transposed like the training step."""
        a = x.T
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            z = w @ a
            z += b[:, None]
            a = np.maximum(z, np.multiply(z, LEAKY_SLOPE, dtype=np.float32), out=z)
        z = self.weights[-1] @ a
        z += self.biases[-1][:, None]
        return np.ascontiguousarray(z.T)

    def loss_and_gradients(self, x: np.ndarray, y: np.ndarray, keep_mask: np.ndarray) -> float:
        """Training step maths: forward with dropout, mean cross-entropy, gradients into ``self.grads``.

        ``keep_mask`` is the dropout mask (1 keeps a unit, 0 drops it) for the last hidden layer.

        Two choices make this fast for small batches. Activations are held transposed (units x rows), so
        every product is one BLAS handles well at a few rows: ``a @ W.T`` with 10 rows took 3x longer than
        ``W @ a.T``. And every intermediate lives in a workspace reused by all steps of one batch size:
        a fresh temporary per operation costs a page-faulting allocation, which took longer than the
        arithmetic for wide layers.
        """
        rows = len(y)
        space = self._workspaces.get(rows)
        if space is None:
            space = self._workspaces[rows] = _Workspace(self.widths, rows)
        activations, slopes = [x.T], space.slopes
        for layer, (w, b) in enumerate(zip(self.weights[:-1], self.biases[:-1])):
            z, slope = space.outputs[layer], slopes[layer]
            np.matmul(w, activations[-1], out=z)
            z += b[:, None]
            # LeakyReLU's derivative, 1 where z > 0 else the slope, as arithmetic (np.where is 3x slower).
            np.greater(z, 0, out=space.positive[layer])
            np.copyto(slope, space.positive[layer])
            slope *= np.float32(1.0 - LEAKY_SLOPE)
            slope += np.float32(LEAKY_SLOPE)
            z *= slope  # now the activation
            activations.append(z)
        scale = np.multiply(keep_mask.T, np.float32(1.0 / (1.0 - DROPOUT)), out=space.scale)
        dropped = np.multiply(activations[-1], scale, out=space.dropped)
        logits = space.outputs[-1]
        np.matmul(self.weights[-1], dropped, out=logits)
        logits += self.biases[-1][:, None]

        index = y, space.columns
        logits -= logits.max(axis=0)  # shifted: exp cannot overflow
        grad = np.exp(logits, out=space.probabilities)
        total = grad.sum(axis=0)
        loss = float((np.log(total).sum() - logits[index].sum()) / rows)

        grad /= total  # softmax
        grad[index] -= 1.0
        grad /= rows
        np.matmul(grad, dropped.T, out=self.weight_grads[-1])
        grad.sum(axis=1, out=self.bias_grads[-1])
        grad = np.matmul(self.weights[-1].T, grad, out=space.upstream[-1])
        grad *= scale
        for layer in range(len(slopes) - 1, -1, -1):
            grad *= slopes[layer]
            np.matmul(grad, activations[layer].T, out=self.weight_grads[layer])
            grad.sum(axis=1, out=self.bias_grads[layer])
            if layer:
                grad = np.matmul(self.weights[layer].T, grad, out=space.upstream[layer - 1])
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


class _Workspace:
    """Preallocated arrays for training steps on batches of ``rows`` rows, held as units x rows."""

    def __init__(self, widths: list[int], rows: int) -> None:
        hidden = widths[1:-1]
        self.columns = np.arange(rows)
        self.outputs = [np.empty((width, rows), dtype=np.float32) for width in widths[1:]]  # z, then activation
        self.positive = [np.empty((width, rows), dtype=bool) for width in hidden]
        self.slopes = [np.empty((width, rows), dtype=np.float32) for width in hidden]
        self.upstream = [np.empty((width, rows), dtype=np.float32) for width in hidden]  # gradient w.r.t. output
        self.scale = np.empty((hidden[-1], rows), dtype=np.float32)
        self.dropped = np.empty((hidden[-1], rows), dtype=np.float32)
        self.probabilities = np.empty((widths[-1], rows), dtype=np.float32)
