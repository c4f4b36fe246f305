"""The device code paths on the NumPy-backed stand-in device (tests/fake_device.py), which rejects every
host/device mix that CuPy rejects: ``fit``, ``evaluate``, ``predict``, model files, checkpoints and optimiser
state on a device give what they give on the CPU. tests/test_gpu.py runs the same on "cuda" where there is one.
"""

import subprocess
import sys

import fake_device
import numpy as np
import pytest

from numpycnn.core import backend
from numpycnn.errors import DeviceError
from numpycnn.layers import Conv2D, Dense, Flatten, ReLU
from numpycnn.layers.losses import CrossEntropyLoss, MSELoss
from numpycnn.model.io import load_checkpoint, load_model, save_checkpoint
from numpycnn.model.sequential import Sequential
from numpycnn.model.zoo import deep_cnn, seed_cnn
from numpycnn.optim import SGD, Adam

DEVICE = fake_device.register()


def data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 1, 28, 28), dtype=np.uint8), rng.integers(0, 10, n)


def on_device(array):
    return backend.to_device(array, DEVICE)


# -- the stand-in itself: it must catch what CuPy catches, or the checks below prove nothing ---------------------
def test_implicit_conversion_to_numpy_raises():
    a = on_device(np.ones((2, 3), np.float32))
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        np.asarray(a)
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.zeros((2, 3), np.float32)[...] = a


@pytest.mark.parametrize("mix", [lambda a: a + np.ones(3), lambda a: np.ones(3) * a,
                                 lambda a: np.maximum(a, np.ones(3)), lambda a: a.__setitem__(0, np.ones(3)),
                                 lambda a: backend.get_array_module(a).asarray(np.ones(3)),
                                 lambda a: backend.get_array_module(a).matmul(a, np.ones((3, 1)))])
def test_mixing_host_and_device_arrays_raises(mix):
    a = on_device(np.ones((2, 3), np.float32))
    with pytest.raises(TypeError, match="mixed with device arrays"):
        mix(a)


def test_scalars_mix_and_results_stay_on_the_device():
    a = on_device(np.arange(6, dtype=np.float32).reshape(2, 3))
    xp = backend.get_array_module(a)
    assert xp is not np and backend.device_of(a) == DEVICE
    b = xp.maximum(a * 2 - 1, np.float32(0))
    assert backend.device_of(b) == DEVICE and backend.device_of(b.sum()) == DEVICE
    assert float(b.sum()) == 25.0  # 0 + 1 + 3 + 5 + 7 + 9
    np.testing.assert_array_equal(backend.to_host(b.T), np.maximum(np.arange(6) * 2 - 1, 0).reshape(2, 3).T)


# -- the backend ---------------------------------------------------------------------------------------------
def test_numpy_arrays_stay_numpy_and_move_nowhere():
    x = np.ones(3, np.float32)
    assert backend.get_array_module(x) is np and backend.get_array_module(1.0, x) is np
    assert backend.device_of(x) == "cpu"
    assert backend.to_device(x, "cpu") is x and backend.to_host(x) is x and backend.like(x, x) is x


def test_round_trip_through_the_device():
    x = np.arange(5, dtype=np.float32)
    d = on_device(x)
    assert backend.to_device(d, DEVICE) is d
    back = backend.to_host(d)
    assert type(back) is np.ndarray and back is not x
    np.testing.assert_array_equal(back, x)
    assert backend.device_of(backend.like(x, d)) == DEVICE


def test_unknown_device_is_named():
    with pytest.raises(ValueError, match=r"device: `device` must be one of \[.*'cpu'.*\]. Got 'tpu'"):
        backend.get_device("tpu")
    with pytest.raises(ValueError, match="device: `device` must be one of"):
        seed_cnn().to("tpu")


def test_cuda_without_cupy_names_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` raises ImportError, as without CuPy
    with pytest.raises(DeviceError, match=r'CuPy is not installed. Install CuPy with pip install "numpycnn\[gpu\]" '
                                           r"\(it needs an NVIDIA GPU with CUDA"):
        backend.get_device("cuda")
    model = seed_cnn()
    with pytest.raises(DeviceError, match="numpycnn.gpu"):
        model.to("cuda")
    assert model.device == "cpu"


def test_the_cpu_device_cannot_be_replaced():
    with pytest.raises(ValueError, match="register_device: `name` must be a new device name other than 'cpu'"):
        backend.register_device("cpu", lambda: np, backend.to_host, backend.to_host)


def test_distributed_training_refuses_a_model_off_the_cpu():
    x, y = data(8)
    with pytest.raises(ValueError, match=r"fit: `model.device` must be 'cpu' for distributed training"):
        seed_cnn().to(DEVICE).fit(x, y, epochs=1, optimizer=SGD(0.1), verbose=0, distributed=True)


def test_importing_numpycnn_never_imports_cupy():
    code = "import sys, numpycnn, numpycnn.model.zoo, numpycnn.model.io, numpycnn.cli; print('cupy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


@pytest.mark.parametrize("loss, targets", [
    (CrossEntropyLoss(), np.array([0, 3, 1, 3])),
    (CrossEntropyLoss(label_smoothing=0.1), np.array([2, 0, 1, 3])),
    (CrossEntropyLoss(label_smoothing=0.2), np.eye(4, dtype=np.float32)[[1, 1, 0, 2]] * 0.5 + 0.125),
    (MSELoss(), np.linspace(-1, 1, 16, dtype=np.float32).reshape(4, 4)),
], ids=["labels", "smoothed", "probabilities", "mse"])
def test_losses_on_the_device_equal_numpys(loss, targets):
    logits = np.random.default_rng(0).standard_normal((4, 4)).astype(np.float32)
    value, grad = loss.forward(logits, targets), loss.backward()
    device_value = loss.forward(on_device(logits), on_device(targets))
    device_grad = loss.backward()
    assert type(device_value) is float and device_value == pytest.approx(value, rel=1e-6)
    assert backend.device_of(device_grad) == DEVICE and backend.to_host(device_grad).dtype == grad.dtype
    np.testing.assert_allclose(backend.to_host(device_grad), grad, rtol=1e-6)


# -- the model on a device -----------------------------------------------------------------------------------
def test_to_moves_parameters_gradients_and_buffers_and_back():
    model = deep_cnn(seed=0)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    assert model.to(DEVICE) is model and model.device == DEVICE
    for layer in model.layers:
        for store in (layer.params, layer.grads, layer.buffers):
            assert all(backend.device_of(v) == DEVICE for v in store.values())
    assert model.to("cpu").device == "cpu"
    for name, value in model.state_dict().items():
        assert type(value) is np.ndarray
        np.testing.assert_array_equal(value, before[name])


def test_a_host_batch_for_a_model_on_the_device_is_refused_with_the_fix():
    model = seed_cnn().to(DEVICE)
    with pytest.raises(TypeError, match=r"Sequential.forward: `x` must be an array on the model's device 'standin'. "
                                        r"Got an array on 'cpu'. Move it with numpycnn.core.backend.to_device"):
        model(np.zeros((1, 1, 28, 28), np.float32))
    with pytest.raises(TypeError, match="must be an array on the model's device 'cpu'. Got an array on 'standin'"):
        seed_cnn()(on_device(np.zeros((1, 1, 28, 28), np.float32)))


def test_lazy_layers_are_built_on_the_inputs_device():
    model = Sequential(Conv2D(out_channels=4, kernel_size=3), ReLU(), Flatten(), Dense(out_features=3)).initialize(0)
    model.to(DEVICE)
    y = model.forward(on_device(np.ones((2, 1, 6, 6), np.float32)))
    assert backend.device_of(y) == DEVICE and model.device == DEVICE
    twin = Sequential(Conv2D(out_channels=4, kernel_size=3), ReLU(), Flatten(), Dense(out_features=3)).initialize(0)
    twin.forward(np.ones((2, 1, 6, 6), np.float32))
    for layer, host in zip(model.layers, twin.layers, strict=True):
        for key in layer.params:
            assert backend.device_of(layer.grads[key]) == DEVICE
            np.testing.assert_array_equal(backend.to_host(layer.params[key]), host.params[key])


def test_initialize_draws_on_the_host_so_every_device_gets_the_same_weights():
    model = seed_cnn(seed=1).to(DEVICE).initialize(7)
    expected = seed_cnn(seed=1).initialize(7)
    for name, value in expected.state_dict().items():
        np.testing.assert_array_equal(backend.to_host(model.state_dict()[name]), value)


#: What the device and the CPU guarantee to share. The stand-in runs NumPy, but a device convolution takes the
#: whole batch in one chunk (functional/conv.py DEVICE_CHUNK_BYTES) where the CPU takes a few images at a time, so
#: the two paths sum the same float32 products in another order and their BLAS calls have other shapes, for which
#: OpenBLAS picks other kernels per CPU (AVX2, AVX-512). Bit equality therefore holds only within one path.
#:
#: Softmax probabilities of one forward pass: a logit is a sum of up to K = 3,136 float32 products, whose rounding
#: in two orders differs by about sqrt(K) * 2**-24 ~ 3e-6 of the logit's scale (logits of order 1 here); a
#: probability moves by at most p (1 - p) <= 1/4 of that: below 1e-6. Measured on an AVX2 EPYC: 1.6e-7 with
#: OpenBLAS's Haswell and Zen kernels, 0 with its Sandybridge ones.
PROBABILITY_ATOL = 1e-6
#: Weights after training. One epoch here is three steps of SGD with momentum or Adam through batch norm over
#: batches of 8, which amplifies a rounding difference enormously for weights near zero: in float32 the two paths
#: end up to 2.7e-2 apart (relative), so a float32 tolerance loose enough to pass would hide real bugs. In float64
#: the rounding unit is 2**-53 instead of 2**-24 and the worst relative difference measured is 6e-11 (Haswell, Zen
#: and Sandybridge kernels); 1e-9 leaves a margin of 15 and still fails on any real difference in what the
#: device computes.
FLOAT64_TRAINING_RTOL, FLOAT64_TRAINING_ATOL = 1e-9, 1e-12


@pytest.mark.parametrize("build", [seed_cnn, deep_cnn], ids=["seed", "deep_cnn"])
@pytest.mark.parametrize("make_optimizer", [lambda: Adam(1e-3), lambda: SGD(0.05, momentum=0.9)],
                         ids=["Adam", "SGD"])
def test_fit_on_the_device_equals_fit_on_the_cpu(build, make_optimizer):
    # In float64: training amplifies the order of float32 sums beyond any tolerance that would still catch a bug
    # (see FLOAT64_TRAINING_RTOL); tests/test_gpu.py follows a short float32 training on CUDA against the CPU.
    x, y = data()
    results = {}
    for device in ("cpu", DEVICE):
        model, optimizer = build(seed=0).astype(np.float64).to(device), make_optimizer()
        history = model.fit(x, y, epochs=1, batch_size=8, optimizer=optimizer, verbose=0, rng=3,
                            validation_data=data(8, seed=1))
        assert model.device == device
        assert all(backend.device_of(v) == device for slots in optimizer.state.values() for v in slots.values())
        results[device] = (history.history, {k: backend.to_host(v) for k, v in model.state_dict().items()})
    assert "val_accuracy" in results["cpu"][0]
    for key, values in results["cpu"][0].items():
        if key != "seconds":
            np.testing.assert_allclose(results[DEVICE][0][key], values, rtol=FLOAT64_TRAINING_RTOL, err_msg=key)
    for name, value in results["cpu"][1].items():
        assert value.dtype == np.float64 or "num_batches" in name, name
        np.testing.assert_allclose(results[DEVICE][1][name], value, rtol=FLOAT64_TRAINING_RTOL,
                                   atol=FLOAT64_TRAINING_ATOL, err_msg=name)


def test_evaluate_and_predict_on_the_device_return_host_results():
    x, y = data(20)
    model = deep_cnn(seed=0)
    scores, probs = model.evaluate(x, y), model.predict(x)
    model.to(DEVICE)
    device_probs = model.predict(x, batch_size=7)
    assert type(device_probs) is np.ndarray and device_probs.dtype == np.float32
    np.testing.assert_allclose(device_probs, probs, rtol=0, atol=PROBABILITY_ATOL)
    assert model.evaluate(x, y, batch_size=6) == pytest.approx(scores)
    np.testing.assert_array_equal(model.predict_classes(x), probs.argmax(axis=1))


def test_a_model_saved_on_the_device_loads_on_the_cpu_and_back(tmp_path):
    x, _ = data(6)
    model = deep_cnn(seed=2).to(DEVICE)
    model.save(tmp_path / "m.safetensors")
    on_cpu = load_model(tmp_path / "m.safetensors")
    assert on_cpu.device == "cpu"
    np.testing.assert_allclose(on_cpu.predict(x), model.predict(x), rtol=0, atol=PROBABILITY_ATOL)
    again = load_model(tmp_path / "m.safetensors", device=DEVICE)
    assert again.device == DEVICE
    # The same weights on the same device run the same operations in the same order: bit for bit.
    np.testing.assert_array_equal(again.predict(x), model.predict(x))


def test_optimizer_state_follows_the_model_between_devices_and_checkpoints(tmp_path):
    x, y = data(16)
    straight, opt1 = seed_cnn(seed=0), Adam(1e-3)
    straight.fit(x, y, epochs=2, batch_size=8, optimizer=opt1, verbose=0, rng=0, shuffle=False)
    moved, opt2 = seed_cnn(seed=0), Adam(1e-3)
    moved.fit(x, y, epochs=1, batch_size=8, optimizer=opt2, verbose=0, rng=0, shuffle=False)
    moved.to(DEVICE)  # mid-training: the Adam moments move at the next step
    save_checkpoint(tmp_path / "c.safetensors", moved, opt2, {"epoch": 1})
    assert all(type(v) is np.ndarray for v in opt2.state_dict()["arrays"].values())
    moved.fit(x, y, epochs=2, initial_epoch=1, batch_size=8, optimizer=opt2, verbose=0, rng=0, shuffle=False)
    assert all(backend.device_of(v) == DEVICE for slots in opt2.state.values() for v in slots.values())
    for name, value in straight.state_dict().items():
        np.testing.assert_allclose(backend.to_host(moved.state_dict()[name]), value, rtol=1e-6, atol=1e-7)
    restored, opt3 = seed_cnn(seed=5), Adam(1e-3)
    assert load_checkpoint(tmp_path / "c.safetensors", restored.to(DEVICE), opt3) == {"epoch": 1}
    assert restored.device == DEVICE
