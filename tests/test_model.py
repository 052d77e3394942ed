"""fetal_core.model and the optimiser maths: the NumPy network and its updates equal PyTorch's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fetal_core.model import DROPOUT, MLP, N_CLASSES
from fetal_core.training import OPTIMIZERS, Optimizer, cosine_lr

torch.set_num_threads(1)
DEPTHS = {1: [12], 2: [15, 10], 3: [32, 16, 8], 4: [64, 33, 17, 9]}


def make_batch(rng: np.random.Generator, rows: int = 37, features: int = 21):
    """Inputs on very different scales (like the raw data) and labels of all three classes."""
    x = (rng.normal(size=(rows, features)) * rng.uniform(0.1, 30.0, size=features)).astype(np.float32)
    y = rng.permutation(np.arange(rows) % N_CLASSES).astype(np.int64)
    return x, y


def torch_loss(net: nn.Sequential, x: np.ndarray, y: np.ndarray, keep_mask: np.ndarray) -> torch.Tensor:
    """The notebook's forward pass in training mode, with our dropout mask in place of nn.Dropout."""
    a = torch.from_numpy(x)
    for module in net:
        if isinstance(module, nn.Dropout):
            a = a * torch.from_numpy(keep_mask) * (1.0 / (1.0 - DROPOUT))
        else:
            a = module(a)
    return nn.CrossEntropyLoss()(a, torch.from_numpy(y))


def test_to_torch_is_the_notebooks_architecture():
    model = MLP(21, [15, 10], np.random.default_rng(0))
    kinds = [type(m) for m in model.to_torch()]
    assert kinds == [nn.Linear, nn.LeakyReLU, nn.Linear, nn.LeakyReLU, nn.Dropout, nn.Linear]
    net = model.to_torch()
    assert [(m.in_features, m.out_features) for m in net if isinstance(m, nn.Linear)] == [(21, 15), (15, 10), (10, 3)]
    assert net[4].p == DROPOUT == 0.5
    assert model.hidden_layers == [15, 10]
    assert model.params.size == sum(p.numel() for p in net.parameters())


def test_weights_are_views_into_the_flat_vector_and_initialised_like_nn_linear():
    model = MLP(21, [64, 8], np.random.default_rng(3))
    model.params[:] = 0.0
    assert all((w == 0).all() for w in model.weights) and all((b == 0).all() for b in model.biases)
    fresh = MLP(21, [64, 8], np.random.default_rng(3))
    for w, b in zip(fresh.weights, fresh.biases):
        bound = 1.0 / np.sqrt(w.shape[1])
        assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
        assert np.abs(w).max() > 0.9 * bound  # uniform over the whole range, not a narrower one
    same = MLP(21, [64, 8], np.random.default_rng(3))
    other = MLP(21, [64, 8], np.random.default_rng(4))
    np.testing.assert_array_equal(fresh.params, same.params)
    assert not np.array_equal(fresh.params, other.params)


@pytest.mark.parametrize("depth", sorted(DEPTHS))
def test_loss_and_gradients_equal_torch_autograd(depth):
    rng = np.random.default_rng(depth)
    model = MLP(21, DEPTHS[depth], rng)
    x, y = make_batch(rng)
    keep = (rng.random((len(y), DEPTHS[depth][-1])) >= 0.5).astype(np.float32)
    assert 0 < keep.mean() < 1

    loss = model.loss_and_gradients(x, y, keep)

    net = model.to_torch()
    reference = torch_loss(net, x, y, keep)
    reference.backward()
    assert loss == pytest.approx(reference.item(), rel=1e-5)
    linears = [m for m in net if isinstance(m, nn.Linear)]
    assert len(linears) == len(model.weight_grads) == depth + 1
    for layer, (linear, w_grad, b_grad) in enumerate(zip(linears, model.weight_grads, model.bias_grads)):
        scale = float(linear.weight.grad.abs().max())
        assert scale > 0, f"layer {layer} got no gradient"
        np.testing.assert_allclose(w_grad, linear.weight.grad.numpy(), rtol=1e-4, atol=1e-5 * scale)
        np.testing.assert_allclose(b_grad, linear.bias.grad.numpy(), rtol=1e-4, atol=1e-5 * scale)


def test_gradients_are_overwritten_not_accumulated():
    rng = np.random.default_rng(9)
    model = MLP(21, [15, 10], rng)
    x, y = make_batch(rng)
    keep = np.ones((len(y), 10), dtype=np.float32)
    model.loss_and_gradients(x, y, keep)
    first = model.grads.copy()
    model.loss_and_gradients(x, y, keep)
    np.testing.assert_array_equal(model.grads, first)


@pytest.mark.parametrize("depth", sorted(DEPTHS))
def test_logits_equal_torch_in_eval_mode(depth):
    rng = np.random.default_rng(10 + depth)
    model = MLP(21, DEPTHS[depth], rng)
    x, _ = make_batch(rng, rows=50)
    net = model.to_torch().eval()
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    logits = model.logits(x)
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    np.testing.assert_array_equal(logits.argmax(axis=1), expected.argmax(axis=1))


TORCH_OPTIMIZERS = {"SGD": torch.optim.SGD, "Adam": torch.optim.Adam, "RMSprop": torch.optim.RMSprop}


@pytest.mark.parametrize("weight_decay", [0.0, 1e-2, 1.0])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_equals_torch_optim(name, weight_decay):
    rng = np.random.default_rng(5)
    size, steps = 257, 12
    params = rng.normal(size=size).astype(np.float32)
    initial = params.copy()
    reference = torch.nn.Parameter(torch.from_numpy(params.copy()))
    torch_optimizer = TORCH_OPTIMIZERS[name]([reference], lr=0.01, weight_decay=weight_decay)
    ours = Optimizer(name, size, weight_decay)
    for step in range(steps):
        lr = 0.01 * (1 + np.cos(np.pi * step / steps)) / 2 + 1e-4  # a changing lr, as under the scheduler
        grads = (rng.normal(size=size) * rng.uniform(0.01, 10)).astype(np.float32)
        for group in torch_optimizer.param_groups:
            group["lr"] = lr
        reference.grad = torch.from_numpy(grads.copy())
        torch_optimizer.step()
        ours.step(params, grads.copy(), lr)
        np.testing.assert_allclose(params, reference.detach().numpy(), rtol=1e-5, atol=1e-6, err_msg=f"step {step}")
    assert np.abs(params - initial).max() > 1e-3  # the comparison is not between two unmoved vectors


def test_optimizer_rejects_an_unknown_name():
    with pytest.raises(ValueError, match="optimizer: 'Adagrad'"):
        Optimizer("Adagrad", 3, 0.0)


@pytest.mark.parametrize("epochs", [2, 3, 10, 50])
def test_cosine_lr_equals_cosine_annealing_stepped_per_epoch(epochs):
    base_lr = 0.3
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base_lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs - 1)
    used = []
    for _ in range(epochs):
        used.append(optimizer.param_groups[0]["lr"])  # the lr this epoch trains with
        optimizer.step()
        scheduler.step()
    ours = [cosine_lr(base_lr, epoch, epochs) for epoch in range(epochs)]
    np.testing.assert_allclose(ours, used, rtol=1e-9, atol=1e-12)
    assert ours[0] == base_lr and ours[-1] == pytest.approx(0.0, abs=1e-15)


def test_cosine_lr_with_a_single_epoch_keeps_the_base_rate():
    assert cosine_lr(0.5, 0, 1) == 0.5
