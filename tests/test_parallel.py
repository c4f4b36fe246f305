"""The worker pool (numpycnn.core.parallel) and every operation it splits: 1 and N workers give the same bits.

docs/speed.md states that results are bit-identical for any number of workers, because the slices depend only
on the shapes and cross-slice sums are added in slice order. These tests hold exactly that (array_equal), for
odd batches, a batch of one and batches smaller than the number of workers, with the slicing rule lowered so
that the small test arrays are split; and they hold the split results to the loop definitions (float64).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from numpycnn.core import parallel
from numpycnn.functional import conv, fused, pool, reference
from numpycnn.model.zoo import build_model
from numpycnn.optim.optimizers import SGD, Adam, AdamW, RMSProp

WORKER_COUNTS = (2, 3, 4)


@pytest.fixture(autouse=True)
def _restore_threads():
    yield
    parallel.set_num_threads(None)


@pytest.fixture
def split_small(monkeypatch):
    """Split even tiny arrays into up to 8 slices, whatever the machine: one element of work is enough."""
    monkeypatch.setattr(parallel, "MIN_SLICE_WORK", 1)
    monkeypatch.setattr(parallel, "MAX_SLICES", 8)


def _with_workers(n, function):
    parallel.set_num_threads(n)
    try:
        return function()
    finally:
        parallel.set_num_threads(None)


def _assert_same_bits(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b, strict=True):
        if u is None or v is None:
            assert u is None and v is None
        else:
            assert u.dtype == v.dtype and u.shape == v.shape
            np.testing.assert_array_equal(u, v)


# -- the rule and the setting ---------------------------------------------------------------------------------

@pytest.mark.parametrize("n, work, expected", [
    (128, 1 << 20, 8), (128, 1, 1), (1, 1 << 30, 1), (3, 1 << 20, 3), (10, parallel.MIN_SLICE_WORK // 2, 5),
    (9, parallel.MIN_SLICE_WORK // 3 - 1, 2)])
def test_slices_cover_the_range_in_order(n, work, expected):
    parts = parallel.slices(n, work, max_slices=8)
    assert len(parts) == expected
    assert [i for s in parts for i in range(s.start, s.stop)] == list(range(n))
    sizes = [s.stop - s.start for s in parts]
    assert max(sizes) - min(sizes) <= 1


def test_at_most_one_slice_per_usable_core():
    assert parallel.MAX_SLICES == max(2, min(16, parallel.available_cores()))
    assert len(parallel.slices(1000, 1 << 30)) == parallel.MAX_SLICES


def test_slices_do_not_depend_on_the_number_of_workers():
    cuts = {n: _with_workers(n, lambda: parallel.slices(77, 1 << 14)) for n in (1, 2, 5)}
    assert cuts[1] == cuts[2] == cuts[5]


def test_set_and_get_num_threads(monkeypatch):
    monkeypatch.delenv(parallel.ENV_VARIABLE, raising=False)
    parallel.set_num_threads(3)
    assert parallel.get_num_threads() == 3
    parallel.set_num_threads(None)
    assert parallel.get_num_threads() == parallel.default_num_threads() >= 1
    monkeypatch.setenv(parallel.ENV_VARIABLE, "5")
    assert parallel.get_num_threads() == 5
    import numpycnn
    assert numpycnn.set_num_threads is parallel.set_num_threads
    assert numpycnn.get_num_threads() == 5


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_set_num_threads_rejects_a_bad_count(bad):
    with pytest.raises(ValueError, match="set_num_threads: `n` must be a positive integer"):
        parallel.set_num_threads(bad)


@pytest.mark.parametrize("bad", ["0", "two", "-3"])
def test_a_bad_environment_variable_is_named(monkeypatch, bad):
    monkeypatch.setenv(parallel.ENV_VARIABLE, bad)
    with pytest.raises(ValueError, match="NUMPYCNN_THREADS"):
        parallel.get_num_threads()


def test_mpi_processes_share_the_cores(monkeypatch):
    monkeypatch.delenv(parallel.ENV_VARIABLE, raising=False)
    monkeypatch.setattr(parallel, "available_cores", lambda: 8)
    monkeypatch.setattr(parallel, "processes_on_this_machine", lambda: 3)
    assert parallel.default_num_threads() == 2
    monkeypatch.setattr(parallel, "processes_on_this_machine", lambda: 16)
    assert parallel.default_num_threads() == 1


# -- the pool -------------------------------------------------------------------------------------------------

def _python(code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != parallel.ENV_VARIABLE}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)


def test_import_starts_no_thread_and_imports_no_optional_dependency():
    result = _python(
        "import sys, threading, numpycnn, numpycnn.core.parallel as p, numpycnn.functional.conv\n"
        "import numpycnn.functional.fused, numpycnn.optim.optimizers, numpycnn.model.plan\n"
        "assert 'threadpoolctl' not in sys.modules, 'threadpoolctl imported'\n"
        "assert not p.pool_started() and threading.active_count() == 1\n"
        "import numpy as np\n"
        "p.set_num_threads(2)\n"
        "p.run([lambda: 1])\n"
        "assert not p.pool_started(), 'one task started the pool'\n"
        "assert p.run([lambda: 1, lambda: 2]) == [1, 2] and p.pool_started()\n")
    assert result.returncode == 0, result.stderr


def test_the_engine_runs_without_threadpoolctl():
    result = _python(
        "import sys\n"
        "sys.modules['threadpoolctl'] = None  # `import threadpoolctl` raises ImportError\n"
        "import numpy as np, numpycnn\n"
        "from numpycnn.core import parallel\n"
        "from numpycnn.functional.conv import conv2d_forward, conv2d_backward\n"
        "rng = np.random.default_rng(0)\n"
        "x, w = rng.normal(size=(64, 8, 12, 12)), rng.normal(size=(8, 8, 3, 3))\n"
        "runs = []\n"
        "for n in (1, 2):\n"
        "    numpycnn.set_num_threads(n)\n"
        "    y, cache = conv2d_forward(x, w, None, 1, 1)\n"
        "    runs.append((y, *conv2d_backward(np.ones_like(y), cache)[:2]))\n"
        "assert all(np.array_equal(a, b) for a, b in zip(*runs))\n"
        "assert 'BLAS threads unchanged' in parallel.describe(), parallel.describe()\n")
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_the_pool_survives_a_fork():
    parallel.set_num_threads(2)
    assert parallel.run([lambda: 1, lambda: 2]) == [1, 2]
    assert parallel.pool_started()
    pid = os.fork()
    if pid == 0:  # the child: a new pool, the same results, no hang (the alarm ends a hung child)
        code = 1
        try:
            import signal
            signal.alarm(60)
            started_before = parallel.pool_started()
            ok = parallel.run([lambda k=k: k * k for k in range(6)]) == [0, 1, 4, 9, 16, 25]
            code = 0 if ok and not started_before and parallel.pool_started() else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert parallel.run([lambda: 3, lambda: 4]) == [3, 4]  # the parent's pool still works


def test_a_failing_slice_raises_its_own_exception_and_the_pool_recovers():
    parallel.set_num_threads(3)
    first, second = KeyError("slice 1"), ZeroDivisionError("slice 3")
    done = []

    def task(k):
        if k == 1:
            raise first
        if k == 3:
            raise second
        done.append(k)
        return k

    with pytest.raises(KeyError) as caught:
        parallel.run([lambda k=k: task(k) for k in range(6)])
    assert caught.value is first  # the original object, the first failure in slice order
    assert parallel.run([lambda k=k: k for k in range(5)]) == list(range(5))


def test_a_region_inside_a_region_runs_serially():
    parallel.set_num_threads(2)
    names = parallel.run([lambda: parallel.run([threading.current_thread] * 3) for _ in range(4)])
    for inner in names:
        assert len(set(inner)) == 1  # each nested region ran in one thread, its caller's


def test_blas_threads_are_restored_after_a_region():
    pytest.importorskip("threadpoolctl")
    libs = parallel._blas_controllers()
    if not libs:
        pytest.skip("no BLAS library found by threadpoolctl")
    before = [lib.num_threads for lib in libs]
    inside = []
    parallel.set_num_threads(2)
    parallel.run([lambda: inside.append([lib.num_threads for lib in libs])] * 2)
    assert all(counts == [1] * len(libs) for counts in inside)
    assert [lib.num_threads for lib in libs] == before


# -- the operations: 1 and N workers bit-identical ------------------------------------------------------------

CONV_CASES = [  # (N, C, H, W, F, k, stride, padding, dilation, groups); split when K = C/groups k^2 >= SMALL_K
    (7, 8, 9, 8, 4, 3, 1, 1, 1, 1),
    (1, 8, 6, 6, 3, 3, 1, 0, 1, 1),
    (2, 8, 7, 7, 6, 3, 2, 1, 1, 1),
    (5, 16, 6, 6, 8, 3, 1, 1, 1, 1),  # channel-major, widened grid
    (3, 16, 9, 9, 4, 3, 1, 2, 2, 2),  # the general path: dilated, grouped
    (7, 3, 9, 8, 4, 3, 1, 1, 1, 1),  # small products (K = 27): one slice, by the rule
    (4, 6, 8, 8, 6, 3, 2, 1, 1, 6),  # depthwise (K = 9): one slice, by the rule
]


def _conv_run(case, dtype, bias=True):
    N, C, H, W, F, k, s, p, d, groups = case
    rng = np.random.default_rng(sum(case))
    x = rng.normal(size=(N, C, H, W)).astype(dtype)
    w = rng.normal(size=(F, C // groups, k, k)).astype(dtype)
    b = rng.normal(size=F).astype(dtype) if bias else None
    ws = conv.Workspace()
    y, cache = conv.conv2d_forward(x, w, b, s, p, d, groups, workspace=ws)
    dy = rng.normal(size=y.shape).astype(dtype)
    dx, dw, db = conv.conv2d_backward(dy, cache)
    y2, cache2 = conv.conv2d_forward(x, w, b, s, p, d, groups, workspace=ws)  # the workspace reused
    dx2, dw2, db2 = conv.conv2d_backward(dy, cache2, need_dx=False)
    _assert_same_bits((y, dw, db), (y2, dw2, db2))
    assert dx2 is None
    return y, dx, dw, db, cache


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_convolution_is_bit_identical_for_any_number_of_workers(case, dtype, split_small):
    one = _with_workers(1, lambda: _conv_run(case, dtype))
    N, C, _, _, _, k, *_, groups = case
    split = N > 1 and conv.splits_batch(np, (0, C // groups, k, k))  # a batch of one cannot be split
    assert (one[4].parts is not None) == split
    for n in WORKER_COUNTS:
        _assert_same_bits(one[:4], _with_workers(n, lambda: _conv_run(case, dtype))[:4])


@pytest.mark.parametrize("case", CONV_CASES)
def test_split_convolution_matches_the_loop_definition(case, split_small):
    N, C, H, W, F, k, s, p, d, groups = case
    y, dx, dw, db, cache = _with_workers(2, lambda: _conv_run(case, np.float64))
    rng = np.random.default_rng(sum(case))
    x, w, b = rng.normal(size=(N, C, H, W)), rng.normal(size=(F, C // groups, k, k)), rng.normal(size=F)
    dy = rng.normal(size=y.shape)
    y_ref = reference.conv2d_forward(x, w, b, s, p, d, groups)
    dx_ref, dw_ref, db_ref = reference.conv2d_backward(dy, x, w, s, p, d, groups)
    for ours, ref in ((y, y_ref), (dx, dx_ref), (dw, dw_ref), (db, db_ref)):
        np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape", [(7, 5, 6, 6), (1, 3, 4, 4), (2, 9, 5, 5), (5, 4)])
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_relu_is_bit_identical_for_any_number_of_workers(shape, training, split_small):
    rng = np.random.default_rng(len(shape))
    x = rng.normal(size=shape).astype(np.float32)
    C = shape[1]
    gamma, beta = rng.normal(size=C).astype(np.float32), rng.normal(size=C).astype(np.float32)
    mean, var = rng.normal(size=C).astype(np.float32), rng.uniform(0.5, 2, size=C).astype(np.float32)
    dy = rng.normal(size=shape).astype(np.float32)

    def run():
        if training:
            y, cache = fused.batchnorm_relu_forward(x, gamma, beta)
            return (y, *fused.batchnorm_relu_backward(dy, cache), cache[4], cache[5])
        y, cache = fused.batchnorm_relu_inference_forward(x, gamma, beta, mean, var)
        return (y, *fused.batchnorm_relu_inference_backward(dy, cache))

    one = _with_workers(1, run)
    for n in WORKER_COUNTS:
        _assert_same_bits(one, _with_workers(n, run))


@pytest.mark.parametrize("shape, k, s", [((7, 3, 8, 8), 2, 2), ((1, 2, 5, 5), 2, 2), ((3, 2, 7, 9), 3, 2),
                                         ((2, 4, 6, 6), 3, 3)])
def test_max_pooling_is_bit_identical_for_any_number_of_workers(shape, k, s, split_small):
    x = np.round(np.random.default_rng(0).normal(size=shape), 1).astype(np.float32)  # ties too

    def run():
        y, cache = pool.maxpool2d_forward(x, k, s)
        return y, pool.maxpool2d_backward(np.ones_like(y), cache)

    one = _with_workers(1, run)
    assert parallel.slices(shape[0], 1)[-1].stop == shape[0]
    for n in WORKER_COUNTS:
        _assert_same_bits(one, _with_workers(n, run))
    np.testing.assert_array_equal(one[0], reference.maxpool2d_forward(x, k, s))
    np.testing.assert_array_equal(one[1], reference.maxpool2d_backward(np.ones_like(one[0]), x, k, s))


@pytest.mark.parametrize("make", [lambda: Adam(1e-2, weight_decay=0.1), lambda: AdamW(1e-2),
                                  lambda: SGD(0.1, momentum=0.9, nesterov=True), lambda: RMSProp(1e-2, momentum=0.5)])
def test_optimiser_updates_are_bit_identical_for_any_number_of_workers(make, monkeypatch):
    from numpycnn.optim import optimizers
    monkeypatch.setattr(optimizers, "UPDATE_SLICE", 7)  # split every parameter, odd slice edges

    def run():
        model = build_model("lenet5", seed=3)
        opt = make()
        rng = np.random.default_rng(0)
        for _ in range(3):
            for layer in model.layers:
                for g in layer.grads.values():
                    g[...] = rng.normal(size=g.shape)
            opt.step(model)
        return [p.copy() for p in model.parameters()]

    one = _with_workers(1, run)
    for n in (2, 3):
        _assert_same_bits(one, _with_workers(n, run))


@pytest.mark.parametrize("batch_size", [1, 3, 17])
def test_training_and_inference_of_a_whole_model_are_bit_identical(batch_size, split_small):
    from numpycnn.training.loop import fit

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(2 * batch_size + 1, 1, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, size=len(x))

    def run():
        model = build_model("deep", seed=1)
        fit(model, x, y, epochs=1, batch_size=batch_size, optimizer=Adam(1e-3), verbose=0, rng=5)
        return [*(p.copy() for p in model.parameters()), model.predict(x[:5])]

    one = _with_workers(1, run)
    _assert_same_bits(one, _with_workers(3, run))


def test_plan_and_profile_show_the_split(split_small):
    from numpycnn.cli.profiling import format_profile, profile_model
    from numpycnn.functional.conv_parallel import conv_slices

    k = len(conv_slices((64, 32, 28, 28), (32, 32, 3, 3), 28, 28))  # the second convolution's slices
    assert k > 1  # (the first, 1 -> 32 channels, has small products and is not split: conv.splits_batch)
    model = build_model("deep", seed=0)
    parallel.set_num_threads(2)
    model.forward(np.zeros((64, 1, 28, 28), np.float32), training=True)
    text = str(model.plan())
    assert "Parallel: 2 worker(s)" in text
    split = "parallel: batch slices when its products are large (weight gradient summed in slice order)"
    assert f"3: Conv2D(in_channels=32, out_channels=32, kernel_size=3, stride=1, padding=1, bias=False)  " \
           f"[{split}; last forward {k} slice(s) on 2 worker(s)]" in text
    assert "0: Conv2D(in_channels=1, out_channels=32, kernel_size=3, stride=1, padding=1, bias=False)  " \
           f"[{split}; last forward not split]" in text
    rows = profile_model(model, (1, 28, 28), batch_size=64, repeats=1)
    assert rows[2]["forward_split"] == [k, 2] and rows[2]["backward_split"] == [k, 2]
    assert f"{k}x2 / {k}x2" in format_profile(rows, 64)
    parallel.set_num_threads(1)
    rows = profile_model(model, (1, 28, 28), batch_size=64, repeats=1)
    assert rows[2]["forward_split"] == [k, 1]  # the same slices, run by the caller alone


def test_the_pool_shuts_down_at_exit_and_starts_again_on_demand():
    result = _python(
        "import numpycnn.core.parallel as p\n"
        "p.set_num_threads(2)\n"
        "assert p.run([lambda: 1, lambda: 2]) == [1, 2] and p.pool_started()\n"
        "print('ran')\n")  # the interpreter then exits: the workers must not keep it alive
    assert result.returncode == 0 and result.stdout.strip() == "ran", result.stderr
    parallel.set_num_threads(2)
    parallel.run([lambda: 0, lambda: 1])
    parallel._POOL.shutdown()  # what atexit runs
    assert not parallel.pool_started()
    assert parallel.run([lambda: 5, lambda: 6]) == [5, 6] and parallel.pool_started()


def test_device_arrays_are_never_split(split_small):
    """On a device (the NumPy-backed stand-in for CuPy) every operation runs as one slice, on one worker."""
    import fake_device

    from numpycnn.core import backend

    device = fake_device.register()
    parallel.set_num_threads(2)
    model = build_model("deep", seed=0).to(device)
    x = np.random.default_rng(0).random((6, 1, 28, 28), dtype=np.float32)
    parallel.take_usage()
    model.backward(model.forward(backend.to_device(x, device), training=True) * 1.0)
    forward = [step.usage for step in model.plan().steps if step.usage[0]]  # the plan took the forward's usage
    assert forward and all(usage[1:] == (1, 1) for usage in forward)
    assert parallel.take_usage()[1:] == (1, 1)  # the backward passes and nothing more
    model.to("cpu").forward(x, training=True)  # the same model on the host is split
    from numpycnn.functional.conv_parallel import conv_slices

    assert model.plan().steps[2].usage[1:] == (len(conv_slices((6, 32, 28, 28), (32, 32, 3, 3), 28, 28)), 2)


def test_regions_of_different_sizes_share_one_pool():
    parallel.set_num_threads(4)
    parallel.run([lambda: 0] * 8)
    executor = parallel._POOL.executor
    parallel.run([lambda: 0] * 2)  # two workers of the four
    assert parallel.run([lambda k=k: k for k in range(8)]) == list(range(8))
    assert parallel._POOL.executor is executor


def test_max_slices_one_turns_the_split_off(monkeypatch):
    """``MAX_SLICES = 1`` runs every operation as one call (one slice), with the same bits for any number
    of workers, and agrees with the split run to float32's rounding."""
    x = np.random.default_rng(7).random((8, 1, 28, 28), dtype=np.float32)

    def run(workers):
        parallel.set_num_threads(workers)
        model = build_model("deep", seed=0)
        parallel.take_usage()
        out = model.forward(x, training=True)
        model.backward(np.ones_like(out))
        slices = max([step.usage[1] for step in model.plan().steps] + [parallel.take_usage()[1]])
        return out, model.layers[3].grads["weight"].copy(), slices  # the most slices one operation ran

    split_out, split_grad, split_slices = run(2)
    assert split_slices > 1
    monkeypatch.setattr(parallel, "MAX_SLICES", 1)
    one = run(1)
    two = run(2)
    assert one[2] <= 1 and two[2] <= 1
    _assert_same_bits(one[:2], two[:2])
    np.testing.assert_allclose(two[0], split_out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(two[1], split_grad, rtol=1e-4, atol=1e-4 * np.abs(split_grad).max())
