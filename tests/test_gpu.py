"""The CUDA backend (CuPy) against NumPy: every layer's forward and backward to 1e-5, and a short training.

Marked ``gpu``; every test skips, with the reason, where CuPy is not installed or cannot allocate on a GPU.
Run them on a GPU machine with ``pytest -m gpu -rs`` (or ``python -m benchmarks.gpu_check``, which runs them
and then measures the speed). CI has no GPU: tests/test_device_standin.py runs the same code paths there.
"""

import numpy as np
import pytest
from test_layer_contract import DEVICE_CASES, check_on_device

from numpycnn.core import backend
from numpycnn.errors import DeviceError
from numpycnn.model.io import load_model
from numpycnn.model.zoo import deep_cnn, seed_cnn
from numpycnn.optim import SGD, Adam


def _cuda_reason() -> str | None:
    try:
        backend.get_device("cuda")
    except DeviceError as err:
        return str(err)
    return None


REASON = _cuda_reason()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(REASON is not None, reason=f"no CUDA device: {REASON}")]
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


@pytest.mark.parametrize("case", sorted(DEVICE_CASES))
@pytest.mark.parametrize("training", [True, False])
def test_every_layer_on_cuda_equals_numpy(case, training):
    check_on_device(case, "cuda", training, **TOLERANCE)


def data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 1, 28, 28), dtype=np.uint8), rng.integers(0, 10, n)


@pytest.mark.parametrize("build", [seed_cnn, deep_cnn], ids=["seed", "deep_cnn"])
@pytest.mark.parametrize("make_optimizer", [lambda: Adam(1e-3), lambda: SGD(0.05, momentum=0.9)],
                         ids=["Adam", "SGD"])
def test_a_short_training_on_cuda_follows_the_cpu(build, make_optimizer):
    x, y = data()
    weights, histories = {}, {}
    for device in ("cpu", "cuda"):
        model, optimizer = build(seed=0).to(device), make_optimizer()
        histories[device] = model.fit(x, y, epochs=2, batch_size=16, optimizer=optimizer, verbose=0, rng=1).history
        assert model.device == device
        weights[device] = {k: backend.to_host(v) for k, v in model.state_dict().items()}
    np.testing.assert_allclose(histories["cuda"]["loss"], histories["cpu"]["loss"], rtol=1e-4)
    for name, value in weights["cpu"].items():
        np.testing.assert_allclose(weights["cuda"][name], value, rtol=1e-3, atol=1e-4, err_msg=name)


def test_predict_evaluate_and_files_on_cuda(tmp_path):
    x, y = data(40)
    model = deep_cnn(seed=3)
    probs, scores = model.predict(x), model.evaluate(x, y)
    model.to("cuda")
    assert type(model.predict(x)) is np.ndarray
    np.testing.assert_allclose(model.predict(x), probs, **TOLERANCE)
    assert model.evaluate(x, y)["accuracy"] == scores["accuracy"]
    model.save(tmp_path / "m.safetensors")
    np.testing.assert_allclose(load_model(tmp_path / "m.safetensors").predict(x), probs, **TOLERANCE)
    assert load_model(tmp_path / "m.safetensors", device="cuda").device == "cuda"
