"""Sequential's execution plan: fused steps give exactly the unfused results, and the plan is data you can print."""

from __future__ import annotations

import numpy as np
import pytest

from numpycnn.layers import BatchNorm1D, BatchNorm2D, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU, Sigmoid
from numpycnn.model.plan import BatchNormReLU, LayerStep, ReLUMaxPool2D
from numpycnn.model.sequential import Sequential, iter_parameters


def layer_by_layer_pass(model: Sequential, x: np.ndarray, dy: np.ndarray, training: bool = True
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Forward and backward layer by layer, each through its own forward and backward (the definition)."""
    for layer in model.layers:
        x = layer.forward(x, training=training)
    out, grad = x, dy
    for layer in reversed(model.layers):
        grad = layer.backward(grad)
    return out, grad


def mixed_model() -> Sequential:
    layers = [Conv2D(2, 4, 3, padding=1), BatchNorm2D(4), ReLU(), Conv2D(4, 4, 1), ReLU(), MaxPool2D(2),
              MaxPool2D(3, 2), Flatten(), Dense(8, 6), BatchNorm1D(6), ReLU(), Dense(6, 3)]
    model = Sequential(layers, input_shape=(2, 9, 10)).initialize(0)
    for layer in layers:  # non-default running statistics and affine parameters
        if isinstance(layer, (BatchNorm1D, BatchNorm2D)):
            rng = np.random.default_rng(layer.num_features)
            layer.params["weight"][...] = rng.uniform(-1.5, 1.5, layer.num_features)  # negative scales too
            layer.params["bias"][...] = rng.normal(size=layer.num_features)
            layer.buffers["running_mean"][...] = rng.normal(size=layer.num_features)
            layer.buffers["running_var"][...] = rng.uniform(0.5, 2, layer.num_features)
    return model.astype(np.float64)


def test_plan_of_a_mixed_model():
    model = mixed_model()
    plan = model.plan()
    assert [(type(s), s.span) for s in plan.steps] == [
        (LayerStep, "0"), (BatchNormReLU, "1-2"), (LayerStep, "3"), (ReLUMaxPool2D, "4-5"), (LayerStep, "6"),
        (LayerStep, "7"), (LayerStep, "8"), (BatchNormReLU, "9-10"), (LayerStep, "11")]
    assert "1-2: batchnorm_relu(" not in str(plan) and "1-2: batchnorm_relu: BatchNorm2D" in str(plan)
    assert "Fused steps: layers 1-2 as batchnorm_relu, layers 4-5 as relu_maxpool2d, layers 9-10 as batchnorm_relu" \
        in model.summary()


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("ties", [False, True])
def test_fused_plan_gives_the_layer_by_layer_outputs_gradients_and_statistics(training, ties):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 2, 9, 10))
    if ties:
        x = np.round(x)  # equal values and all-negative windows
    dy = rng.normal(size=(5, 3))
    reference, fused = mixed_model(), mixed_model()
    ref_out, ref_dx = layer_by_layer_pass(reference, x, dy, training)
    out = fused.forward(x, training=training)
    dx = fused.backward(dy)
    np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-10, atol=1e-12)
    ref_grads = {k: g for k, _, g in iter_parameters(reference)}
    for key, _, grad in iter_parameters(fused):
        np.testing.assert_allclose(grad, ref_grads[key], rtol=1e-10, atol=1e-12, err_msg=key)
    ref_state = reference.state_dict()
    for key, value in fused.state_dict().items():  # running statistics and batch counters
        np.testing.assert_allclose(value, ref_state[key], rtol=1e-12, atol=1e-15, err_msg=key)


def test_unfused_model_runs_every_layer_on_its_own():
    model = Sequential([Conv2D(1, 2, 3), ReLU(), MaxPool2D(2), Flatten(), Dense(8, 2)], fuse=False)
    assert all(isinstance(step, LayerStep) for step in model.plan().steps)
    assert "Fused steps" not in model.summary((1, 6, 6))
    model.fuse = True
    assert [step.span for step in model.plan().steps] == ["0", "1-2", "3", "4"]


def test_plan_follows_edits_of_the_layer_list():
    model = Sequential([Conv2D(1, 2, 3), ReLU(), MaxPool2D(2), Flatten(), Dense(8, 2)], input_shape=(1, 6, 6))
    assert [step.span for step in model.plan().steps] == ["0", "1-2", "3", "4"]
    assert model.plan() is model.plan()  # computed once, not every batch
    model.layers[1] = Sigmoid()
    assert [step.span for step in model.plan().steps] == ["0", "1", "2", "3", "4"]
    model.layers.insert(2, ReLU())
    assert [step.span for step in model.plan().steps] == ["0", "1", "2-3", "4", "5"]


def test_fusion_matches_exact_classes_only():
    """A subclass (or a user's class that shares a name) may change the math: it always runs on its own."""

    class MyReLU(ReLU):
        def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
            return super().forward(x, training) * 2

    class ReLU_(ReLU):  # noqa: N801
        pass

    model = Sequential([BatchNorm2D(2), MyReLU(), MaxPool2D(2), ReLU_(), MaxPool2D(2)])
    assert all(isinstance(step, LayerStep) for step in model.plan().steps)


def test_layers_inside_a_fused_step_keep_no_cache():
    model = Sequential([BatchNorm2D(2), ReLU(), Dropout(0.5)]).initialize(0)
    model.forward(np.ones((2, 2, 3, 3), np.float32) * np.arange(3, dtype=np.float32))
    bn, relu, _ = model.layers
    assert bn.cache is None and relu.cache is None
    with pytest.raises(RuntimeError, match="backward\\(\\) called before forward\\(\\)"):
        relu.backward(np.ones((2, 2, 3, 3), np.float32))
    assert model.backward(np.ones((2, 2, 3, 3), np.float32)).shape == (2, 2, 3, 3)


def test_a_leading_fused_pair_returns_the_input_gradient():
    model = Sequential([ReLU(), MaxPool2D(2), Flatten(), Dense(4, 2)], input_shape=(1, 4, 4)).initialize(0)
    assert model.plan().steps[0].op == "relu_maxpool2d"
    x = np.random.default_rng(0).normal(size=(3, 1, 4, 4)).astype(np.float32)
    model.forward(x)
    dx = model.backward(np.ones((3, 2), np.float32), input_grad=False)
    assert dx is not None and dx.shape == x.shape  # a fused step cannot skip its input gradient
