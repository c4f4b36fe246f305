"""Model files and checkpoints: round trips, broken files, fuzzing, safetensors and PyTorch exchange."""

from __future__ import annotations

import json
import os
import pickle
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numpycnn import ModelFileError
from numpycnn.layers import BatchNorm1D, Dense, Dropout, Flatten, ReLU
from numpycnn.model.io import (
    load_checkpoint,
    load_model,
    load_state_dict_file,
    save_checkpoint,
    save_model,
    save_state_dict_file,
)
from numpycnn.model.sequential import Sequential
from numpycnn.optim import SGD, Adam


def _mlp(dtype=np.float32, seed: int = 0) -> Sequential:
    model = Sequential([Flatten(), Dense(12, 8), BatchNorm1D(8), ReLU(), Dropout(0.25), Dense(8, 3)],
                       input_shape=(3, 2, 2)).initialize(seed)
    model.astype(dtype)
    rng = np.random.default_rng(seed + 1)
    for value in model.state_dict().values():  # non-trivial running statistics too
        if value.dtype.kind == "f":
            value[...] = rng.uniform(0.5, 1.5, value.shape)
    model.layers[2].buffers["num_batches_tracked"][...] = 7
    model.class_names = ["cat", "dog", "emu"]
    model.normalization = {"mean": [0.5, 0.4, 0.3], "std": [0.25, 0.2, 0.15]}
    return model


def _cnn(seed: int = 0) -> Sequential:
    """The kind of network PyTorch exchange is about: conv, batch norm, ReLU, pooling, flatten, dense."""
    from numpycnn.layers import BatchNorm2D, Conv2D, MaxPool2D

    model = Sequential([Conv2D(3, 4, 3, padding=1), BatchNorm2D(4), ReLU(), MaxPool2D(2), Flatten(),
                        Dense(4 * 3 * 4, 5)], input_shape=(3, 6, 8)).initialize(seed)
    rng = np.random.default_rng(seed + 1)
    bn = model.layers[1]
    bn.buffers["running_mean"][...] = rng.standard_normal(4)
    bn.buffers["running_var"][...] = rng.uniform(0.5, 2.0, 4)
    bn.params["weight"][...] = rng.uniform(0.5, 2.0, 4)
    bn.params["bias"][...] = rng.standard_normal(4)
    return model


def _torch_cnn(torch):
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 3 * 4, 5))


def _x(shape=(5, 3, 2, 2), dtype=np.float32, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _split(raw: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def _join(header: dict, data: bytes) -> bytes:
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


# -- round trips ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_gives_identical_model(tmp_path, dtype):
    model = _mlp(dtype)
    path = tmp_path / "model.safetensors"
    save_model(model, path)
    loaded = load_model(path)
    assert loaded.get_config() == model.get_config()
    assert loaded.class_names == model.class_names and loaded.normalization == model.normalization
    assert loaded.dtype == dtype
    for name, value in model.state_dict().items():
        got = loaded.state_dict()[name]
        assert got.dtype == value.dtype and got.shape == value.shape
        assert got.tobytes() == value.tobytes(), name
    x = _x(dtype=dtype)
    np.testing.assert_array_equal(loaded.forward(x, training=False), model.forward(x, training=False))
    assert os.listdir(tmp_path) == ["model.safetensors"]


def test_file_layout_is_safetensors(tmp_path):
    path = tmp_path / "m.safetensors"
    save_model(_mlp(), path)
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0 and raw[8:9] == b"{"
    header, data = _split(raw)
    meta = header.pop("__metadata__")
    assert meta["format"] == "numpycnn" and meta["format_version"] == "1" and meta["kind"] == "model"
    assert json.loads(meta["architecture"])["layers"][1] == {"type": "Dense", "config": {
        "in_features": 12, "out_features": 8, "bias": True}}
    assert json.loads(meta["class_names"]) == ["cat", "dog", "emu"]
    spans = sorted(tuple(e["data_offsets"]) for e in header.values())
    assert spans[0][0] == 0 and spans[-1][1] == len(data)
    assert all(a[1] == b[0] for a, b in zip(spans[:-1], spans[1:], strict=True))
    assert header["2.num_batches_tracked"] == {"dtype": "I64", "shape": [], "data_offsets": [0, 8]}
    assert header["1.weight"]["dtype"] == "F32" and header["1.weight"]["shape"] == [8, 12]


def test_safetensors_package_reads_our_files_and_we_read_its_files(tmp_path):
    st_numpy = pytest.importorskip("safetensors.numpy")
    from safetensors import safe_open

    model = _mlp()
    path = tmp_path / "ours.safetensors"
    save_model(model, path)
    theirs = st_numpy.load_file(str(path))
    assert set(theirs) == set(model.state_dict())
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(theirs[name], value)
        assert theirs[name].dtype == value.dtype and theirs[name].shape == value.shape
    with safe_open(str(path), framework="np") as f:
        assert f.metadata()["format"] == "numpycnn"

    tensors = {"a": np.arange(6, dtype=np.float16).reshape(2, 3), "b": np.float64(2.5) * np.ones((1, 2, 2)),
               "c": np.array(7, dtype=np.int64), "d": np.array([True, False]),
               "e": np.zeros((0, 3), np.float32), "f": np.arange(5, dtype=np.int32),
               "g": np.arange(3, dtype=np.uint8)}
    written = tmp_path / "theirs.safetensors"
    st_numpy.save_file(tensors, str(written), metadata={"k": "v"})
    loaded = load_state_dict_file(written)
    assert set(loaded) == set(tensors)
    for name, value in tensors.items():
        assert loaded[name].dtype == value.dtype and loaded[name].shape == value.shape, name
        np.testing.assert_array_equal(loaded[name], value)
        assert loaded[name].flags.writeable and loaded[name].flags.aligned
    save_state_dict_file(tmp_path / "again.safetensors", loaded, {"k": "v"})
    again = st_numpy.load_file(str(tmp_path / "again.safetensors"))
    for name, value in tensors.items():
        np.testing.assert_array_equal(again[name], value)


def test_low_level_reader_validates_too(tmp_path):
    path = tmp_path / "flags.safetensors"
    path.write_bytes(_join({"m": {"dtype": "BOOL", "shape": [3], "data_offsets": [0, 3]}}, b"\x00\x01\x02"))
    with pytest.raises(ModelFileError, match=r"flags.safetensors: tensor 'm' is BOOL but holds bytes other"):
        load_state_dict_file(path)
    path.write_bytes(_join({"m": {"dtype": "BOOL", "shape": [3], "data_offsets": [0, 3]}}, b"\x00\x01\x01"))
    np.testing.assert_array_equal(load_state_dict_file(path)["m"], [False, True, True])
    path.write_bytes(b"\x80\x03}q\x00.")  # a pickle
    with pytest.raises(ModelFileError, match=r"file too small"):
        load_state_dict_file(path)


def test_plain_safetensors_file_is_not_a_model(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_state_dict_file(path, {"0.weight": np.zeros((2, 2), np.float32)})
    with pytest.raises(ModelFileError, match=r"plain.safetensors: not a numpycnn file .*load_state_dict_f"):
        load_model(path)


def test_save_refuses_non_finite_weights_and_bad_metadata(tmp_path):
    model = _mlp()
    model.layers[1].params["weight"][0, 0] = np.nan
    with pytest.raises(ValueError, match=r"save_model: tensor '1.weight' holds NaN or infinite values"):
        save_model(model, tmp_path / "m.safetensors")
    with pytest.raises(TypeError, match=r"`metadata` must map str to str"):
        save_state_dict_file(tmp_path / "x.safetensors", {"a": np.zeros(1)}, {"k": 1})
    with pytest.raises(TypeError, match=r"tensor 'a' must have one of the dtypes"):
        save_state_dict_file(tmp_path / "x.safetensors", {"a": np.zeros(1, np.complex64)})
    assert os.listdir(tmp_path) == []


# -- broken files --------------------------------------------------------------------------------------------
def _edit_header(edit):
    def mutate(raw: bytes) -> bytes:
        header, data = _split(raw)
        edit(header)
        return _join(header, data)
    return mutate


def _edit_meta(key, value):
    def edit(header):
        if value is None:
            del header["__metadata__"][key]
        else:
            header["__metadata__"][key] = value
    return _edit_header(edit)


def _edit_arch(edit):
    def meta_edit(header):
        arch = json.loads(header["__metadata__"]["architecture"])
        edit(arch)
        header["__metadata__"]["architecture"] = json.dumps(arch)
    return _edit_header(meta_edit)


def _set(entry_name, key, value):
    return _edit_header(lambda h: h[entry_name].__setitem__(key, value))


def _shift_all_by_8(h):  # an 8-byte hole at the start of the data section
    for name, entry in h.items():
        if name != "__metadata__":
            entry["data_offsets"] = [entry["data_offsets"][0] + 8, entry["data_offsets"][1] + 8]


def _swap_offsets(h):  # two tensors of equal size exchange places: still valid, values swapped
    a, b = h["1.bias"], h["2.bias"]
    a["data_offsets"], b["data_offsets"] = b["data_offsets"], a["data_offsets"]


BROKEN = [
    ("empty", lambda raw: b"", r"file too small .*0 bytes"),
    ("five_bytes", lambda raw: raw[:5], r"file too small .*5 bytes"),
    ("header_only_length", lambda raw: raw[:8], r"header length \d+ points past the end of the file \(8 b"),
    ("truncated", lambda raw: raw[:-10], r"reach past the data section|trailing bytes|belong to no tensor"),
    ("header_length_past_end", lambda raw: struct.pack("<Q", len(raw)) + raw[8:], r"points past the end"),
    ("header_length_absurd", lambda raw: struct.pack("<Q", 1 << 40) + raw[8:], r"length \d+ is absurd"),
    ("pickle_renamed", lambda raw: pickle.dumps({"0.weight": np.zeros(3)}), r"header length|not valid"),
    ("random_bytes", lambda raw: np.random.default_rng(0).bytes(1000), r"header length|not valid"),
    ("invalid_utf8", lambda raw: _join({}, b"")[:8] + b"\xff\xfe  {}  ", r"header is not valid UTF-8"),
    ("invalid_json", lambda raw: _join({}, b"")[:8] + b"{'a': 1}", r"header is not valid JSON"),
    ("header_not_object", lambda raw: _join([], b""), r"header must be a JSON object. Got list"),
    ("duplicate_keys", lambda raw: struct.pack("<Q", 16) + b'{"a":{},"a":{}}\x20', r"duplicate key 'a'"),
    ("nan_constant", lambda raw: struct.pack("<Q", 8) + b'{"a":NaN', r"not valid JSON"),
    ("trailing_bytes", lambda raw: raw + b"\0" * 4, r"4 trailing bytes that belong to no tensor"),
    ("overlap", _set("1.bias", "data_offsets", [0, 32]), r"overlap"),
    ("hole", lambda raw: _edit_header(_shift_all_by_8)(raw + b"\0" * 8),
     r"bytes 0..8 of the data section belong to no tensor"),
    ("out_of_range", _set("5.bias", "data_offsets", [10**6, 10**6 + 12]), r"reach past the data section"),
    ("negative_offset", _set("5.bias", "data_offsets", [-12, 0]), r"data_offsets must be \[begin, end\]"),
    ("size_mismatch", _set("1.weight", "shape", [8, 13]), r"shape \[8, 13\] of F32 needs 416 bytes but"),
    ("unknown_dtype", _set("1.weight", "dtype", "C64"), r"unsupported dtype 'C64'"),
    ("bfloat16", _set("1.weight", "dtype", "BF16"), r"unsupported dtype 'BF16'"),
    ("negative_shape", _set("1.bias", "shape", [-8]), r"shape must be a list of at most 16 non-negative"),
    ("float_shape", _set("1.bias", "shape", [8.0]), r"shape must be a list"),
    ("extra_entry_key", _set("1.bias", "code", "x"), r"exactly the keys dtype, shape, data_offsets"),
    ("metadata_not_strings", _edit_header(lambda h: h["__metadata__"].__setitem__("x", 1)),
     r"__metadata__ must be an object of strings"),
    ("no_format", _edit_meta("format", None), r"not a numpycnn file \(metadata format is None"),
    ("wrong_format", _edit_meta("format", "keras"), r"not a numpycnn file"),
    ("wrong_version", _edit_meta("format_version", "2"), r"unsupported format_version '2'; this numpycnn"),
    ("wrong_kind", _edit_meta("kind", "zip"), r"kind 'zip' is not one of"),
    ("architecture_not_json", _edit_meta("architecture", "[{"), r"metadata 'architecture' is not valid JSON"),
    ("architecture_missing", _edit_meta("architecture", None), r"metadata has no 'architecture' entry"),
    ("architecture_not_object", _edit_meta("architecture", "[]"), r"architecture must be an object"),
    ("no_layers", _edit_arch(lambda a: a.__setitem__("layers", [])), r"layers must be a list of 1 to 1000"),
    ("unknown_layer", _edit_arch(lambda a: a["layers"][3].__setitem__("type", "Lambda")),
     r"architecture layer 3 has an unknown layer type 'Lambda'. If it is a custom layer, import the module "
     r"that defines it .* known types are \["),
    ("private_layer", _edit_arch(lambda a: a["layers"][3].__setitem__("type", "_BatchNorm")),
     r"unknown layer type '_BatchNorm'"),
    ("class_key", _edit_arch(lambda a: a["layers"][3]["config"].__setitem__("__class__", "os.system")),
     r"argument name '__class__' is not allowed"),
    ("code_string", _edit_arch(lambda a: a["layers"][1]["config"].__setitem__(
        "in_features", "__import__('os').system('echo pwned')")),
     r"architecture layer 1 \(Dense\) has invalid arguments: Dense: `in_features` must be an integer"),
    ("unknown_argument", _edit_arch(lambda a: a["layers"][4]["config"].__setitem__("q", 0.5)),
     r"architecture layer 4 \(Dropout\) has invalid arguments: Dropout: `q` must be one of its arguments"),
    ("bad_argument_value", _edit_arch(lambda a: a["layers"][4]["config"].__setitem__("p", 1.5)),
     r"architecture layer 4 \(Dropout\) has invalid arguments: Dropout: `p` must be"),
    ("nested_object_argument", _edit_arch(lambda a: a["layers"][4]["config"].__setitem__("p", {"a": 1})),
     r"argument p=\{'a': 1\} must be a number"),
    ("rng_argument", _edit_arch(lambda a: a["layers"][4]["config"].__setitem__("rng", 3)),
     r"argument name 'rng' is not allowed"),
    ("huge_dense", _edit_arch(lambda a: a["layers"][5]["config"].update(in_features=10**6,
                                                                        out_features=10**6)),
     r"argument in_features=1000000 is larger than its tensors allow"),
    ("implied_shape", _edit_arch(lambda a: a["layers"][5]["config"].update(in_features=9)),
     r"tensor '5.weight' has shape \(3, 8\); Dense\(in_features=9, out_features=3, bias=True\) needs shape "
     r"\(3, 9\)"),
    ("inconsistent_architecture", _edit_arch(lambda a: a.__setitem__("input_shape", [3, 2, 3])),
     r"the architecture is inconsistent: .*layer 1 \(Dense\)"),
    ("input_shape_bad", _edit_arch(lambda a: a.__setitem__("input_shape", "3x2x2")),
     r"input_shape must be null"),
    ("missing_tensors", _edit_arch(lambda a: a["layers"].append({"type": "Dense", "config": {
        "in_features": 3, "out_features": 2, "bias": True}})),
     r"tensor '6.weight' is missing; Dense\(in_features=3, out_features=2, bias=True\) needs shape \(2, 3\)"),
    ("class_names_bad", _edit_meta("class_names", '{"a": 1}'), r"class_names must be null or a list of str"),
    ("normalization_bad", _edit_meta("normalization", '{"mean": [0.5], "std": [0]}'),
     r"`normalization` std must be > 0 for every channel"),
    ("int_size_mismatch", _set("2.num_batches_tracked", "dtype", "U8"), r"shape \[\] of U8 needs 1 bytes"),
]


@pytest.mark.parametrize("mutate, message", [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_broken_file_raises_model_file_error(tmp_path, mutate, message):
    good = tmp_path / "good.safetensors"
    save_model(_mlp(), good)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(mutate(good.read_bytes()))
    with pytest.raises(ModelFileError, match=r"bad.safetensors: "):
        load_model(bad)
    with pytest.raises(ModelFileError, match=message):
        load_model(bad)


def test_swapped_offsets_still_load_with_swapped_values(tmp_path):
    """The broken-file table's edits are real edits: a harmless one loads, with its effect visible."""
    good = tmp_path / "good.safetensors"
    model = _mlp()
    save_model(model, good)
    edited = tmp_path / "edited.safetensors"
    edited.write_bytes(_edit_header(_swap_offsets)(good.read_bytes()))
    loaded = load_model(edited)
    np.testing.assert_array_equal(loaded.layers[1].params["bias"], model.layers[2].params["bias"])


@pytest.mark.parametrize("case", ["wrong_shape", "wrong_dtype_kind", "non_finite", "unexpected", "missing"])
def test_tensors_that_do_not_fit_the_architecture(tmp_path, case):
    model = _mlp()
    tensors = dict(model.state_dict())
    meta = {"format": "numpycnn", "format_version": "1", "kind": "model",
            "architecture": json.dumps(model.get_config()), "class_names": "null", "normalization": "null"}
    if case == "wrong_shape":
        tensors["5.weight"] = np.zeros((3, 9), np.float32)
        message = r"tensor '5.weight' has shape \(3, 9\); Dense\(.*\) needs shape \(3, 8\)"
    elif case == "wrong_dtype_kind":
        tensors["1.bias"] = np.zeros(8, np.int32)
        message = r"tensor '1.bias' must be a float tensor. Got int32"
    elif case == "non_finite":
        tensors["5.bias"] = np.array([0.0, np.inf, 0.0], np.float32)
        message = r"tensor '5.bias' holds NaN or infinite values"
    elif case == "unexpected":
        tensors["3.weight"] = np.ones(3, np.float32)
        message = r"tensors do not match the architecture: missing \[\], unexpected \['3.weight'\]"
    else:
        del tensors["2.num_batches_tracked"]
        message = r"do not match the architecture: missing \['2.num_batches_tracked'\], unexpected \[\]"
    path = tmp_path / "m.safetensors"
    save_state_dict_file(path, tensors, meta)
    with pytest.raises(ModelFileError, match=message):
        load_model(path)


@pytest.fixture(scope="module")
def valid_file(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("fuzz") / "m.safetensors"
    save_model(Sequential([Flatten(), Dense(4, 3), BatchNorm1D(3), ReLU(), Dense(3, 2)]).initialize(0), path)
    return path.read_bytes()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_files_only_raise_model_file_error(tmp_path, valid_file, data):
    raw = bytearray(valid_file)
    (n,) = struct.unpack("<Q", raw[:8])
    # mostly the header (where the parsing is), sometimes anywhere
    for _ in range(data.draw(st.integers(1, 4))):
        end = data.draw(st.sampled_from([8 + n, len(raw)]))
        pos = data.draw(st.integers(0, end - 1))
        raw[pos] = data.draw(st.sampled_from([*b'0123456789[]{}",:- .eE', data.draw(st.integers(0, 255))]))
    if data.draw(st.booleans()):
        raw = raw[:data.draw(st.integers(0, len(raw)))]
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(bytes(raw))
    try:
        model = load_model(path)
    except ModelFileError:
        return
    assert isinstance(model, Sequential)


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
                     | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                 max_size=4), max_leaves=10)


def _locations(node, path=()):
    """Every place in a JSON document, as a key path."""
    yield path
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        yield from _locations(child, (*path, key))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_structurally_fuzzed_headers_only_raise_model_file_error(tmp_path, valid_file, data):
    """Replace one value anywhere in the header, or in the architecture JSON inside it, by random JSON."""
    header, body = _split(valid_file)
    arch = json.loads(header["__metadata__"]["architecture"])
    target = data.draw(st.sampled_from(["header", "architecture"]))
    doc = header if target == "header" else arch
    where = data.draw(st.sampled_from([p for p in _locations(doc) if p]))
    parent = doc
    for key in where[:-1]:
        parent = parent[key]
    parent[where[-1]] = data.draw(_JSON)
    if target == "architecture":
        header["__metadata__"]["architecture"] = json.dumps(arch)
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(_join(header, body))
    try:
        load_model(path)
    except ModelFileError:
        pass


# -- atomic writes -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()], ids=["oserror", "interrupt"])
def test_interrupted_save_leaves_old_file_and_no_temporary(tmp_path, monkeypatch, failure):
    path = tmp_path / "model.safetensors"
    save_model(_mlp(seed=0), path)
    before = path.read_bytes()
    written = []

    def failing_fsync(fd):  # called after every byte was written, before the rename
        written.append(os.fstat(fd).st_size)
        raise failure

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(type(failure)):
        save_model(_mlp(seed=1), path)
    monkeypatch.undo()
    assert written and written[0] == len(before)  # the failure really came mid-save, with a full temp file
    assert os.listdir(tmp_path) == ["model.safetensors"]
    assert path.read_bytes() == before


def test_failure_while_writing_tensors_leaves_no_file(tmp_path, monkeypatch):
    real_open = open

    class DiskFills:  # the disk fills up after 100 bytes
        def __init__(self, f):
            self.f, self.written = f, 0

        def write(self, data):
            self.written += len(memoryview(data).cast("B"))
            if self.written > 100:
                raise OSError(28, "No space left on device")
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    import numpycnn.core.files

    monkeypatch.setattr(numpycnn.core.files, "open", lambda name, mode: DiskFills(real_open(name, mode)), raising=False)
    with pytest.raises(OSError, match="No space left"):
        save_model(_mlp(), tmp_path / "m.safetensors")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


# -- checkpoints ---------------------------------------------------------------------------------------------
def _train_steps(model: Sequential, opt, rng: np.random.Generator, steps: int) -> None:
    for _ in range(steps):
        for layer in model.layers:
            for key in layer.grads:
                layer.grads[key][...] = rng.standard_normal(layer.grads[key].shape)
        opt.step(model)


@pytest.mark.parametrize("make_opt", [lambda: Adam(lr=1e-2, weight_decay=1e-3),
                                      lambda: SGD(0.1, momentum=0.9, nesterov=True)], ids=["adam", "sgd"])
def test_checkpoint_round_trip_restores_everything(tmp_path, make_opt):
    model, opt, rng = _mlp(), make_opt(), np.random.default_rng(42)
    _train_steps(model, opt, rng, 3)
    path = tmp_path / "ckpt.safetensors"
    state = {"epoch": 3, "history": {"loss": [2.3, 1.1, float("nan")]}, "rng": rng.bit_generator.state,
             "step": np.int64(99)}
    save_checkpoint(path, model, opt, state)

    model2, opt2 = _mlp(seed=5), make_opt()
    got = load_checkpoint(path, model2, opt2)
    assert got["epoch"] == 3 and got["step"] == 99 and got["history"]["loss"][:2] == [2.3, 1.1]
    assert np.isnan(got["history"]["loss"][2])
    rng2 = np.random.default_rng()
    rng2.bit_generator.state = got["rng"]
    assert rng2.bit_generator.state == rng.bit_generator.state
    assert opt2.steps == opt.steps and opt2.hyperparameters() == opt.hyperparameters()
    for name, slots in opt.state.items():
        for slot, value in slots.items():
            np.testing.assert_array_equal(opt2.state[name][slot], value)
    for name, value in model.state_dict().items():
        assert model2.state_dict()[name].tobytes() == value.tobytes()
    # and training continues identically
    _train_steps(model, opt, rng, 4)
    _train_steps(model2, opt2, rng2, 4)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(model2.state_dict()[name], value)
    assert load_model(path).get_config() == model.get_config()  # a checkpoint also loads as a model


def test_checkpoint_mismatches_raise_and_change_nothing(tmp_path):
    model, opt = _mlp(), Adam()
    _train_steps(model, opt, np.random.default_rng(0), 2)
    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(path, model, opt, {"epoch": 2})

    target, target_opt = _mlp(seed=7), SGD(0.1, momentum=0.9)
    before = {k: v.copy() for k, v in target.state_dict().items()}
    with pytest.raises(ModelFileError, match=r"the optimizer state does not fit: .*'SGD'. Got 'Adam'"):
        load_checkpoint(path, target, target_opt)
    assert target_opt.state == {}
    for name, value in before.items():
        np.testing.assert_array_equal(target.state_dict()[name], value)

    other = Sequential([Flatten(), Dense(12, 3)], input_shape=(3, 2, 2)).initialize(0)
    with pytest.raises(ModelFileError, match=r"written for a different architecture"):
        load_checkpoint(path, other, Adam())
    model_file = tmp_path / "model.safetensors"
    save_model(model, model_file)
    with pytest.raises(ModelFileError, match=r"kind 'model' is not one of \['checkpoint'\]"):
        load_checkpoint(model_file, _mlp(), Adam())
    with pytest.raises(TypeError, match=r"save_checkpoint: `state` must be JSON-serialisable"):
        save_checkpoint(tmp_path / "x.safetensors", model, opt, {"f": object()})

    header, data = _split(path.read_bytes())
    header["optimizer.1.weight.exp_avg"]["shape"] = [12, 8]  # transposed: same size, wrong shape
    path.write_bytes(_join(header, data))
    with pytest.raises(ModelFileError, match=r"optimizer tensor 'optimizer.1.weight.exp_avg' .* matches no"):
        load_checkpoint(path, _mlp(), Adam())


# -- PyTorch exchange ----------------------------------------------------------------------------------------
def test_cnn_round_trip_and_hostile_conv(tmp_path):
    model = _cnn()
    path = tmp_path / "cnn.safetensors"
    save_model(model, path)
    x = _x((2, 3, 6, 8))
    expected = model.forward(x, training=False)
    np.testing.assert_array_equal(load_model(path).forward(x, training=False), expected)
    header, data = _split(path.read_bytes())
    arch = json.loads(header["__metadata__"]["architecture"])
    arch["layers"][0]["config"].update(in_channels=4000, out_channels=4000, kernel_size=[100, 100])
    header["__metadata__"]["architecture"] = json.dumps(arch)
    path.write_bytes(_join(header, data))
    with pytest.raises(ModelFileError, match=r"needs shape \(4000, 4000, 100, 100\)"):  # before allocating
        load_model(path)
    arch["layers"][0]["config"].update(in_channels=3, out_channels=4, kernel_size=[3, 5])
    header["__metadata__"]["architecture"] = json.dumps(arch)
    path.write_bytes(_join(header, data))
    message = r"tensor '0.weight' has shape \(4, 3, 3, 3\); Conv2D\(.*\) needs shape \(4, 3, 3, 5\)"
    with pytest.raises(ModelFileError, match=message):
        load_model(path)


@pytest.mark.parametrize("layer", [
    "conv",
    "dense",
])
def test_layers_without_bias_round_trip(tmp_path, layer):
    from numpycnn.layers import Conv2D

    first = Conv2D(3, 2, 3, bias=False) if layer == "conv" else Dense(4, 2, bias=False)
    model = Sequential([first, Flatten()]).initialize(0)
    path = tmp_path / "m.safetensors"
    save_model(model, path)
    loaded = load_model(path)
    assert list(loaded.state_dict()) == ["0.weight"]
    x = _x((2, 3, 3, 3)) if layer == "conv" else _x((2, 4))
    np.testing.assert_array_equal(loaded.forward(x, training=False), model.forward(x, training=False))


def test_numpycnn_model_loads_into_torch(tmp_path):
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    model = _cnn()
    path = tmp_path / "cnn.safetensors"
    save_model(model, path)
    net = _torch_cnn(torch)
    net.load_state_dict(st_torch.load_file(str(path)), strict=True)
    net.eval()
    x = _x((2, 3, 6, 8))
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.forward(x, training=False), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(load_model(path).forward(x, training=False), expected, rtol=1e-4, atol=1e-5)


def test_torch_weights_load_into_numpycnn(tmp_path):
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    torch.manual_seed(0)
    net = _torch_cnn(torch)
    with torch.no_grad():
        net[1].running_mean.normal_()
        net[1].running_var.uniform_(0.5, 2.0)
        net[1].weight.uniform_(0.5, 2.0)
        net[1].bias.normal_()
    net[1].num_batches_tracked += 5
    net.eval()
    path = tmp_path / "torch.safetensors"
    st_torch.save_file(net.state_dict(), str(path))
    model = _cnn(seed=9)
    model.load_state_dict(load_state_dict_file(path))
    assert int(model.layers[1].buffers["num_batches_tracked"]) == 5
    x = _x((2, 3, 6, 8))
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.forward(x, training=False), expected, rtol=1e-4, atol=1e-5)
