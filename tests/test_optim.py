"""Optimisers: torch.optim parity step for step, persistent state, state_dict round trips, pinned errors."""

from __future__ import annotations

import copy
import json
import tracemalloc

import numpy as np
import pytest

from numpycnn.layers.base import Layer
from numpycnn.model.sequential import Sequential
from numpycnn.optim import SGD, Adam, AdamW, RMSProp

SHAPES = {"weight": (4, 3, 3, 3), "bias": (4,)}


class _Params(Layer):
    """A layer that is only parameters and gradients, so the optimisers are tested on their own."""

    def __init__(self, rng: np.random.Generator, dtype=np.float64, shapes=SHAPES) -> None:
        super().__init__()
        for key, shape in shapes.items():
            self.params[key] = rng.standard_normal(shape).astype(dtype)
            self.grads[key] = np.zeros(shape, dtype)


def _layers(dtype=np.float64, seed: int = 0) -> list[Layer]:
    rng = np.random.default_rng(seed)
    return [_Params(rng, dtype), _Params(rng, dtype, {"weight": (10, 36)})]


def _grads(layers: list[Layer], steps: int, seed: int = 1) -> list[dict[str, np.ndarray]]:
    """Random gradients for every step, keyed by parameter name ("0.weight", ...)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        out.append({f"{i}.{k}": rng.standard_normal(v.shape).astype(v.dtype)
                    for i, layer in enumerate(layers) for k, v in layer.params.items()})
    return out


def _set_grads(layers: list[Layer], grads: dict[str, np.ndarray]) -> None:
    for i, layer in enumerate(layers):
        for k in layer.grads:
            layer.grads[k][...] = grads[f"{i}.{k}"]


def _run(opt, layers, grads) -> None:
    for g in grads:
        _set_grads(layers, g)
        opt.step(layers)


def _flat(layers: list[Layer]) -> dict[str, np.ndarray]:
    return {f"{i}.{k}": v.copy() for i, layer in enumerate(layers) for k, v in layer.params.items()}


CASES = [
    ("sgd", SGD, dict(lr=0.1), "SGD", dict(lr=0.1)),
    ("sgd_momentum", SGD, dict(lr=0.05, momentum=0.9), "SGD", dict(lr=0.05, momentum=0.9)),
    ("sgd_nesterov_wd", SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2),
     "SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2)),
    ("sgd_dampening", SGD, dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=5e-3),
     "SGD", dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=5e-3)),
    ("adam", Adam, dict(lr=1e-2), "Adam", dict(lr=1e-2)),
    ("adam_wd", Adam, dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
     "Adam", dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("adamw", AdamW, dict(lr=1e-2), "AdamW", dict(lr=1e-2)),
    ("adamw_wd", AdamW, dict(lr=1e-2, betas=(0.85, 0.95), weight_decay=0.3),
     "AdamW", dict(lr=1e-2, betas=(0.85, 0.95), weight_decay=0.3)),
    ("rmsprop", RMSProp, dict(lr=1e-2), "RMSprop", dict(lr=1e-2)),
    ("rmsprop_momentum_wd", RMSProp, dict(lr=1e-3, alpha=0.9, momentum=0.9, weight_decay=1e-2, eps=1e-6),
     "RMSprop", dict(lr=1e-3, alpha=0.9, momentum=0.9, weight_decay=1e-2, eps=1e-6)),
]


@pytest.mark.parametrize("dtype, rtol, atol", [(np.float64, 1e-10, 1e-12), (np.float32, 1e-5, 1e-6)])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matches_torch_step_for_step(case, dtype, rtol, atol):
    torch = pytest.importorskip("torch")
    _, cls, kwargs, torch_name, torch_kwargs = case
    layers = _layers(dtype)
    names = list(_flat(layers))
    t_params = {n: torch.tensor(v, requires_grad=True) for n, v in _flat(layers).items()}
    t_opt = getattr(torch.optim, torch_name)(list(t_params.values()), **torch_kwargs)
    opt = cls(**kwargs)
    for g in _grads(layers, steps=20):
        _set_grads(layers, g)
        opt.step(layers)
        for n in names:
            t_params[n].grad = torch.tensor(g[n])
        t_opt.step()
        ours = _flat(layers)
        for n in names:
            assert ours[n].dtype == dtype
            np.testing.assert_allclose(ours[n], t_params[n].detach().numpy(), rtol=rtol, atol=atol, err_msg=n)


def test_momentum_builds_up_across_steps():
    layer = _Params(np.random.default_rng(0))
    w0 = layer.params["weight"].copy()
    layer.grads["weight"][...] = 1.0
    opt = SGD(lr=0.1, momentum=0.9)
    opt.step([layer])
    opt.step([layer])
    opt.step([layer])
    # b = 1, 1.9, 2.71: total displacement 0.1 * (1 + 1.9 + 2.71)
    np.testing.assert_allclose(w0 - layer.params["weight"], 0.561, rtol=1e-12)
    assert opt.steps == {"0.weight": 3, "0.bias": 3}


def test_adam_first_step_is_bias_corrected():
    layer = _Params(np.random.default_rng(0))
    w0 = layer.params["weight"].copy()
    layer.grads["weight"][...] = 3.0
    Adam(lr=0.01).step([layer])
    # m1/(1-b1) = g and sqrt(v1/(1-b2)) = |g|: the first step moves every weight by lr (times 1 - eps/|g| ~ 1)
    np.testing.assert_allclose(w0 - layer.params["weight"], 0.01, rtol=1e-7)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_state_dict_round_trip_continues_identically(case):
    _, cls, kwargs, _, _ = case
    grads = _grads(_layers(), steps=12)
    straight, straight_opt = _layers(), cls(**kwargs)
    _run(straight_opt, straight, grads)

    resumed, first = _layers(), cls(**kwargs)
    _run(first, resumed, grads[:5])
    saved = first.state_dict()
    saved = {"scalars": json.loads(json.dumps(saved["scalars"])), "arrays": copy.deepcopy(saved["arrays"])}
    _run(first, resumed, grads[5:7])  # steps taken after saving must not leak into the saved copy
    resumed = _layers()
    _run(cls(**kwargs), resumed, grads[:5])
    second = cls(lr=0.5) if cls is SGD else cls()  # other hyperparameters: the state dict restores them
    second.load_state_dict(saved)
    assert second.lr == kwargs["lr"]
    for array in saved["arrays"].values():
        array.fill(np.nan)  # the optimiser keeps its own copies
    _run(second, resumed, grads[5:])
    for name, value in _flat(straight).items():
        np.testing.assert_array_equal(_flat(resumed)[name], value, err_msg=name)


def test_state_is_allocated_once_and_updated_in_place():
    layers = _layers()
    opt = Adam()
    grads = _grads(layers, steps=3)
    _run(opt, layers, grads[:1])
    held = {(n, s): a for n, slots in opt.state.items() for s, a in slots.items()}
    names = ("0.weight", "0.bias", "1.weight")
    assert set(held) == {(n, s) for n in names for s in ("exp_avg", "exp_avg_sq")}
    _run(opt, layers, grads[1:])
    for (n, s), a in held.items():
        assert opt.state[n][s] is a


def test_step_allocates_nothing_parameter_sized():
    rng = np.random.default_rng(0)
    layers = [_Params(rng, np.float64, {"weight": (200, 500)})]  # 800 kB
    layers[0].grads["weight"][...] = rng.standard_normal((200, 500))
    for opt in (SGD(0.1), SGD(0.1, momentum=0.9, nesterov=True, weight_decay=1e-3), Adam(weight_decay=1e-3), AdamW(),
                RMSProp(momentum=0.9, weight_decay=1e-3)):
        opt.step(layers)  # first step allocates the state
        tracemalloc.start()
        opt.step(layers)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < 100_000, (opt, peak)


@pytest.mark.parametrize("opt", [SGD(0.1), SGD(0.1, weight_decay=0.1, momentum=0.5), Adam(weight_decay=0.1), AdamW(),
                                 RMSProp(weight_decay=0.1)], ids=repr)
def test_step_leaves_gradients_untouched(opt):
    layers = _layers()
    grads = _grads(layers, steps=2)
    for g in grads:
        _set_grads(layers, g)
        opt.step(layers)
        for i, layer in enumerate(layers):
            for k, v in layer.grads.items():
                np.testing.assert_array_equal(v, g[f"{i}.{k}"])


def test_lr_attribute_changes_the_step_and_sequential_is_accepted():
    layer = _Params(np.random.default_rng(0))
    model = Sequential([layer])
    layer.grads["weight"][...] = 1.0
    opt = SGD(lr=0.1)
    w0 = layer.params["weight"].copy()
    opt.lr = 0.01  # what a schedule does
    opt.step(model)
    np.testing.assert_allclose(w0 - layer.params["weight"], 0.01, rtol=1e-12)
    opt.lr = -1.0
    with pytest.raises(ValueError, match=r"SGD: `lr` must be a real number in \[0.0, inf\). Got -1.0."):
        opt.step(model)


BAD_HYPERPARAMETERS = [
    (SGD, dict(lr=-0.1), ValueError, r"SGD: `lr` must be a real number in \[0.0, inf\). Got -0.1."),
    (SGD, dict(lr="0.1"), TypeError, r"SGD: `lr` must be a real number in \[0.0, inf\). Got '0.1'."),
    (SGD, dict(lr=float("nan")), ValueError, r"SGD: `lr` must be .* Got nan."),
    (SGD, dict(lr=0.1, momentum=1.0), ValueError,
     r"SGD: `momentum` must be a real number in \[0.0, 1.0\). Got 1.0"),
    (SGD, dict(lr=0.1, nesterov=True), ValueError,
     r"SGD: `nesterov` must be False unless momentum > 0 and dampening == 0. .* Set momentum=0.9"),
    (SGD, dict(lr=0.1, momentum=0.9, nesterov=True, dampening=0.1), ValueError,
     r"SGD: `nesterov` must be False"),
    (SGD, dict(lr=0.1, nesterov=1), TypeError, r"SGD: `nesterov` must be True or False. Got 1."),
    (SGD, dict(lr=0.1, weight_decay=-1e-4), ValueError, r"SGD: `weight_decay` must be .* Got -0.0001."),
    (SGD, dict(lr=0.1, dampening=1.5), ValueError, r"SGD: `dampening` must be a real number in \[0.0, 1.0\]"),
    (Adam, dict(betas=(0.9, 1.0)), ValueError,
     r"Adam: `betas\[1\]` must be a real number in \[0.0, 1.0\). Got 1.0"),
    (Adam, dict(betas=0.9), TypeError, r"Adam: `betas` must be a pair of real numbers in \[0, 1\). Got 0.9."),
    (Adam, dict(eps=-1e-8), ValueError, r"Adam: `eps` must be .* Got -1e-08."),
    (AdamW, dict(weight_decay=-0.01), ValueError, r"AdamW: `weight_decay` must be .* Got -0.01."),
    (AdamW, dict(betas=(-0.1, 0.9)), ValueError, r"AdamW: `betas\[0\]` must be"),
    (RMSProp, dict(alpha=1.0), ValueError,
     r"RMSProp: `alpha` must be a real number in \[0.0, 1.0\). Got 1.0."),
    (RMSProp, dict(momentum=True), TypeError, r"RMSProp: `momentum` must be a real number .* Got True."),
]


@pytest.mark.parametrize("cls, kwargs, error, message", BAD_HYPERPARAMETERS)
def test_bad_hyperparameters_raise(cls, kwargs, error, message):
    with pytest.raises(error, match=message):
        cls(**kwargs)


def test_load_state_dict_rejects_foreign_or_incomplete_state():
    layers = _layers()
    opt = Adam()
    _run(opt, layers, _grads(layers, steps=2))
    saved = opt.state_dict()
    message = r'SGD.load_state_dict: `scalars\["type"\]` must be \'SGD\'. Got \'Adam\''
    with pytest.raises(ValueError, match=message):
        SGD(lr=0.1).load_state_dict(saved)
    incomplete = {"scalars": saved["scalars"], "arrays": dict(saved["arrays"])}
    del incomplete["arrays"]["0.bias.exp_avg_sq"]
    fresh = Adam()
    with pytest.raises(ValueError, match=r"parameter '0.bias' lacks slots \['exp_avg_sq'\]"):
        fresh.load_state_dict(incomplete)
    assert fresh.state == {} and fresh.steps == {}  # nothing changed
    bad_hyper = copy.deepcopy(saved)
    bad_hyper["scalars"]["hyperparameters"]["eps"] = -1.0
    with pytest.raises(ValueError, match=r"Adam: `eps` must be"):
        Adam().load_state_dict(bad_hyper)


def test_state_from_another_model_is_refused_at_step():
    layers = _layers()
    opt = SGD(0.1, momentum=0.9)
    _run(opt, layers, _grads(layers, steps=1))
    other = [_Params(np.random.default_rng(0), np.float64, {"weight": (3, 3), "bias": (4,)})]
    with pytest.raises(ValueError, match=r"SGD: state 0.weight.momentum_buffer has shape \(4, 3, 3, 3\)"):
        opt.step(other)
