"""Whole ready-made models, fused steps included, against the same network in PyTorch: a training step's output,
every parameter gradient, the input gradient and batch norm's running statistics, in float64 and float32."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from numpycnn.layers.losses import CrossEntropyLoss
from numpycnn.model.sequential import iter_parameters
from numpycnn.model.zoo import build_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/torch_models.py builds the twin


def _deep_without_dropout(**kwargs):
    from numpycnn.model.zoo import deep_cnn

    return deep_cnn(dropout=0.0, **kwargs)


BUILDERS = {
    "seed": lambda: build_model("seed", seed=0),
    "lenet5": lambda: build_model("lenet5", seed=0),
    "deep-plain": lambda: build_model("deep-plain", seed=0),
    "deep (no dropout)": lambda: _deep_without_dropout(seed=0),
}


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-9), (np.float32, 2e-4)])
@pytest.mark.parametrize("name", BUILDERS)
def test_training_step_matches_pytorch(name, dtype, tol):
    torch = pytest.importorskip("torch")
    from benchmarks.torch_models import to_torch

    model = BUILDERS[name]().astype(dtype)
    assert model.fuse and (name == "seed" or model.plan().fused_steps)  # the fused steps are what is compared
    net = to_torch(model).to(torch.float64 if dtype == np.float64 else torch.float32).train()
    rng = np.random.default_rng(0)
    x = rng.random((7, 1, 28, 28)).astype(dtype)
    y = rng.integers(0, 10, 7)
    loss = CrossEntropyLoss()
    out = model.forward(x, training=True)
    loss.forward(out, y)
    dx = model.backward(loss.backward())
    xt = torch.tensor(x, requires_grad=True)
    out_t = net(xt)
    torch.nn.functional.cross_entropy(out_t, torch.tensor(y)).backward()

    def close(ours, theirs, what):
        theirs = theirs.detach().numpy()
        assert np.abs(ours - theirs).max() <= tol * max(np.abs(theirs).max(), 1e-3), what

    close(out, out_t, "output")
    close(dx, xt.grad, "input gradient")
    torch_params = dict(net.named_parameters())
    for key, _, grad in iter_parameters(model):
        close(grad, torch_params[key].grad, key)
    torch_state = net.state_dict()
    for key, value in model.state_dict().items():
        if "running" in key:
            close(value, torch_state[key], key)
