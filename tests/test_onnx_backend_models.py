"""The ONNX project's own test models, shipped in the installed ``onnx`` package: each imports and matches its
expected outputs (and onnxruntime), or is refused with a :class:`numpycnn.ModelFileError` naming the node and
the operator (or the graph-level reason). Nothing crashes with another exception or gives a wrong answer.

``python tests/test_onnx_backend_models.py`` prints the counts per folder and the refusals grouped by operator
(the figures in docs/onnx.md).
"""

from __future__ import annotations

import collections
import re
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import numpy_helper  # noqa: E402

from numpycnn import ModelFileError  # noqa: E402
from numpycnn.interchange import from_onnx, load_onnx  # noqa: E402

ROOT = Path(onnx.__file__).parent / "backend" / "test" / "data"
FOLDERS = ("pytorch-converted", "pytorch-operator", "light", "node")
#: float32 tolerance against the shipped outputs and onnxruntime (sums of up to ~25 000 products in VGG19).
RTOL, ATOL = 1e-4, 1e-5
#: The cases the issue names: each must import and match (the others may be refused, with a named error).
MUST_IMPORT = {
    "test_Conv2d", "test_Conv2d_no_bias", "test_Conv2d_padding", "test_Conv2d_strided", "test_Conv2d_dilated",
    "test_Conv2d_groups", "test_Conv2d_groups_thnn", "test_Conv2d_depthwise", "test_Conv2d_depthwise_padded",
    "test_Conv2d_depthwise_strided", "test_Conv2d_depthwise_with_multiplier", "test_MaxPool2d", "test_AvgPool2d",
    "test_AvgPool2d_stride", "test_BatchNorm2d_eval", "test_BatchNorm2d_momentum_eval", "test_Linear",
    "test_Linear_no_bias", "test_ReLU", "test_LeakyReLU", "test_LeakyReLU_with_negval", "test_Sigmoid",
    "test_Tanh", "test_Softmax", "test_softmax_lastdim", "test_operator_conv", "test_operator_flatten",
    "light_vgg19",
}


def _cases() -> list[tuple[str, Path]]:
    found = []
    for folder in FOLDERS:
        base = ROOT / folder
        if not base.is_dir():
            continue
        found += [(f"{folder}/{d.name}", d / "model.onnx") for d in sorted(base.iterdir())
                  if (d / "model.onnx").is_file()]
        found += [(f"{folder}/{f.stem}", f) for f in sorted(base.glob("*.onnx"))]
    return found


CASES = _cases()


def _tensor(path: Path) -> np.ndarray:
    proto = onnx.TensorProto()
    proto.ParseFromString(path.read_bytes())
    return numpy_helper.to_array(proto)


def _data_sets(model_path: Path) -> list[tuple[np.ndarray | None, np.ndarray]]:
    """(input, expected output) pairs: the ``test_data_set_*`` folders, or a light model's one output (its
    input was drawn by the ONNX runner; the constant weights of these models make the output not depend on it)."""
    sets = [(_tensor(d / "input_0.pb"), _tensor(d / "output_0.pb"))
            for d in sorted(model_path.parent.glob("test_data_set_*")) if (d / "output_0.pb").is_file()]
    shipped = model_path.with_name(model_path.stem + "_output_0.pb")
    return sets + ([(None, _tensor(shipped))] if shipped.is_file() else [])


def _onnxruntime(model_path: Path, x: np.ndarray) -> np.ndarray | None:
    """onnxruntime's output, or None where it does not run the file (it has no kernels for some opset-6
    operators: BatchNormalization-6, Gemm-6, Add-6, ...)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3  # no warnings about the old opset
    try:
        session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - onnxruntime's own refusal (old opset) is not under test here
        return None
    return session.run(None, {session.get_inputs()[0].name: x})[0]


#: What a refusal must name: the node and its operator, the tensor of a branch, the graph or the opset.
NAMED = re.compile(r"node '[^']*' \(\w+\)|tensor '[^']*' (feeds|is used by no node)|graph|"
                   r"opset \d+ is not supported|standard operator set")


def refusal_reason(message: str) -> str:
    """The operator (or graph-level reason) a refusal names, for the counts."""
    node = re.search(r"node '[^']*' \((\w+)\)", message)
    if node:
        return node.group(1)
    for pattern, reason in (("one input and one output", "graph: several inputs or outputs"),
                            ("must be a float32 tensor", "graph: input not float32"),
                            ("has rank", "graph: input rank"), (r"feeds \d+ nodes", "graph: a branch"),
                            ("is used by no node", "graph: the input unused"),
                            ("numpycnn reads opsets", "graph: opset outside the range read"),
                            ("standard operator set", "graph: another operator set"),
                            ("has no shape", "graph: input without a shape")):
        if re.search(pattern, message):
            return reason
    return "other"


def check_case(name: str, model_path: Path) -> str:
    """"imported" after checking every output, or the refusal reason; raises AssertionError on a mismatch."""
    try:
        model = load_onnx(model_path)
    except ModelFileError as err:
        message = str(err)
        assert name.split("/")[-1] not in MUST_IMPORT, message
        assert str(model_path) in message and NAMED.search(message), message
        return refusal_reason(message)
    runs = []
    for x, expected in _data_sets(model_path):
        x = np.random.default_rng(0).normal(size=(1, *model.input_shape)) if x is None else x
        x = x.astype(np.float32)
        got = model.forward(x, keep_cache=False)
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL, err_msg=f"{name}: shipped output")
        runs.append((x, got))
    del model  # VGG19's 574 MB of weights, before onnxruntime loads its own copy
    for x, got in runs:
        reference = _onnxruntime(model_path, x)
        if reference is not None:
            np.testing.assert_allclose(got, reference, rtol=RTOL, atol=ATOL, err_msg=f"{name}: onnxruntime")
    return "imported"


def test_the_installed_onnx_package_ships_the_test_models():
    names = {name.split("/")[-1] for name, _ in CASES}
    assert MUST_IMPORT <= names, sorted(MUST_IMPORT - names)


RESULTS: dict[str, str] = {}  # case -> "imported" or the refusal reason, as the cases run


@pytest.mark.parametrize(("name", "model_path"), CASES, ids=[name for name, _ in CASES])
def test_each_model_imports_and_matches_or_is_refused_by_name(name, model_path):
    RESULTS[name] = check_case(name, model_path)


def count_lines(results: dict[str, str]) -> list[str]:
    """One line per folder: ``"light: 9 models, 1 import and match, 8 refused"``."""
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for name, result in results.items():
        counts[name.split("/")[0]][result == "imported"] += 1
    return [f"{folder}: {sum(c.values())} models, {c[True]} import and match, {c[False]} refused"
            for folder, c in counts.items()]


def test_the_counts_in_docs_onnx_md_are_the_ones_measured():
    """Runs last: the figures docs/onnx.md quotes are those of this session's run of every case."""
    docs = (Path(__file__).parents[1] / "docs" / "onnx.md").read_text(encoding="utf-8")
    version = re.search(r"with onnx\s+(\S+)\s+and onnxruntime", docs)
    if len(RESULTS) != len(CASES):
        pytest.skip("the counts need every case of this file run in this session (run the whole file)")
    if version is None or version.group(1) != onnx.__version__:
        pytest.skip(f"docs/onnx.md quotes the test models of another onnx release than {onnx.__version__}")
    quoted = re.findall(r"^\S+: \d+ models, \d+ import and match, \d+ refused$", docs, re.MULTILINE)
    assert quoted == count_lines(RESULTS)


def generated_node_cases() -> list:
    """The ONNX operator tests (``onnx.backend.test.case.node``), built in memory with their inputs and outputs:
    this ``onnx`` wheel ships no ``data/node`` folder, so they are generated as the ONNX project does."""
    import warnings

    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the generators' own overflow warnings (Cast to float8, log(0), ...)
        return collect_testcases(None)


def check_node_case(case) -> str:
    """"imported" after matching every data set, or the refusal reason (a named ModelFileError)."""
    try:
        model = from_onnx(case.model)
    except ModelFileError as err:
        assert NAMED.search(str(err)), str(err)
        return refusal_reason(str(err))
    for inputs, outputs in case.data_sets:
        got = model.forward(np.asarray(inputs[0], np.float32), keep_cache=False)
        np.testing.assert_allclose(got, outputs[0], rtol=RTOL, atol=ATOL, err_msg=case.name)
    return "imported"


def test_the_generated_node_cases_import_and_match_or_are_refused_by_name():
    """One test over the ~1,900 operator cases (generating them takes most of its time)."""
    if (ROOT / "node").is_dir():
        pytest.skip("the node/ folder is installed: its cases run in the parametrised test above")
    results = {f"node (generated)/{case.name}": check_node_case(case) for case in generated_node_cases()}
    assert {name for name, result in results.items() if result == "imported"} >= {
        "node (generated)/test_relu", "node (generated)/test_maxpool_2d_default", "node (generated)/test_tanh",
        "node (generated)/test_averagepool_2d_default", "node (generated)/test_softmax_axis_1"}
    docs = (Path(__file__).parents[1] / "docs" / "onnx.md").read_text(encoding="utf-8")
    version = re.search(r"with onnx\s+(\S+)\s+and onnxruntime", docs)
    if version is not None and version.group(1) == onnx.__version__:
        assert count_lines(results)[0] in docs


def main() -> None:
    results = {name: check_case(name, path) for name, path in CASES}
    if not (ROOT / "node").is_dir():
        results |= {f"node (generated)/{case.name}": check_node_case(case) for case in generated_node_cases()}
    reasons: dict[str, list[str]] = collections.defaultdict(list)
    for name, result in results.items():
        if result != "imported":
            reasons[result].append(name.split("/")[-1])
    print(f"onnx {onnx.__version__}, onnxruntime {ort.__version__}, tolerance rtol={RTOL} atol={ATOL}")
    print("\n".join(count_lines(results)))
    print("refused, by the operator (or reason) named:")
    for reason, names in sorted(reasons.items(), key=lambda item: (-len(item[1]), item[0])):
        print(f"  {reason}: {len(names)} ({', '.join(names)})")


if __name__ == "__main__":
    sys.exit(main())
