"""The ``numpycnn export`` and ``numpycnn import`` commands (ONNX), wired into :mod:`numpycnn.cli`.

Examples
--------
::

    numpycnn export runs/seed-mnist/model.safetensors seed.onnx
    numpycnn export runs/seed-mnist/model.safetensors seed-pixels.onnx --bake-preprocessing
    numpycnn export hand-built.safetensors hand-built.onnx --input-shape 1,28,28
    numpycnn import seed.onnx seed.safetensors
"""

from __future__ import annotations

import argparse
from pathlib import Path

from numpycnn.cli.common import load_model_file, report_error
from numpycnn.errors import ModelFileError
from numpycnn.interchange import _onnx as C


def add_interchange_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Register ``export`` and ``import`` on ``subparsers`` (each with ``func`` set for ``args.func(args)``)."""
    p = subparsers.add_parser(
        "export", help="write a model file as an ONNX graph (for onnxruntime, browsers, phones)",
        description=f"Write a model's inference forward pass as ONNX (opset {C.OPSET}, IR version "
                    f"{C.IR_VERSION}). Input 'input': float32 (N, C, H, W) scaled as in training; class "
                    f"names and preprocessing go into the metadata. Needs {C.INSTALL_HINT}.")
    p.add_argument("model_path", metavar="MODEL", type=Path, help="a .safetensors model file")
    p.add_argument("out", metavar="OUT", type=Path, help="the .onnx file to write")
    p.add_argument("--bake-preprocessing", action="store_true",
                   help="take raw uint8 pixels (input 'pixels') and scale and normalise them in the graph")
    p.add_argument("--input-shape", metavar="C,H,W", type=_input_shape, default=None,
                   help="the per-sample input shape, for a model file that records none (e.g. 1,28,28); "
                        "must agree with the one the file records, if any")
    p.set_defaults(func=run_export)
    p = subparsers.add_parser(
        "import", help="read an ONNX graph (a chain of supported layers) into a model file",
        description=f"Read an ONNX file (opsets {C.MIN_IMPORT_OPSET} to {C.MAX_IMPORT_OPSET}) that is a chain of "
                    "Conv, MaxPool, AveragePool, GlobalAveragePool, Flatten, Gemm, MatMul, Add (a bias), "
                    "Reshape (a flatten), Pad (a Conv's padding), BatchNormalization, Relu, Clip (a ReLU), "
                    "LeakyRelu, Sigmoid, Tanh, Softmax, Dropout (as torch.onnx.export writes an nn.Sequential, "
                    "or the Model Zoo's MNIST) and save it as a numpycnn model file. The file is parsed, never "
                    f"executed; docs/onnx.md lists what imports. Needs {C.INSTALL_HINT}.")
    p.add_argument("onnx_path", metavar="IN", type=Path, help="an .onnx file")
    p.add_argument("out", metavar="OUT", type=Path, help="the .safetensors model file to write")
    p.set_defaults(func=run_import)


def _input_shape(text: str) -> tuple[int, ...]:
    """``"1,28,28"`` -> ``(1, 28, 28)``: one to three positive sizes separated by commas."""
    try:
        shape = tuple(int(part) for part in text.replace(" ", "").split(","))
    except ValueError:
        shape = ()
    if not 1 <= len(shape) <= 3 or min(shape) < 1 or max(shape) > C.MAX_INPUT_DIM:
        raise argparse.ArgumentTypeError(f"must be C,H,W (or FEATURES): positive sizes separated by commas, "
                                         f"e.g. 1,28,28. Got {text!r:.60}")
    return shape


def _missing_onnx(command: str) -> int:
    """0 when ``onnx`` imports, else print the install hint as the command's one error line and return 2."""
    try:
        C.require("onnx")
    except ModuleNotFoundError as err:
        return report_error(command, err, 2)
    return 0


def run_export(args: argparse.Namespace) -> int:
    """``numpycnn export MODEL OUT``: nothing is written unless the whole export succeeds."""
    from numpycnn.interchange.onnx_export import export_onnx

    if _missing_onnx("export"):
        return 2
    model = load_model_file(args.model_path)
    shape = args.input_shape or model.input_shape
    if args.input_shape and model.input_shape and tuple(model.input_shape) != args.input_shape:
        raise ValueError(f"export: --input-shape {','.join(map(str, args.input_shape))} disagrees with the input "
                         f"shape {tuple(model.input_shape)} recorded in {args.model_path}. Leave the option out.")
    if not shape:
        raise ValueError(f"export: {args.model_path} records no input shape. Give it with --input-shape C,H,W, "
                         "e.g. --input-shape 1,28,28 for MNIST.")
    export_onnx(model, args.out, bake_preprocessing=args.bake_preprocessing, input_shape=shape)
    name = "pixels (uint8)" if args.bake_preprocessing else "input (float32)"
    print(f"{args.out}: {args.out.stat().st_size:,} bytes, ONNX opset {C.OPSET}, IR version {C.IR_VERSION}; "
          f"input {name} {('N', *shape)}, output 'output'")
    return 0


def run_import(args: argparse.Namespace) -> int:
    """``numpycnn import IN OUT``: check and convert the graph, then save it as a model file."""
    from numpycnn.interchange.onnx_import import load_onnx

    if _missing_onnx("import"):
        return 2
    if not args.onnx_path.is_file():
        raise ModelFileError(f"ONNX file {str(args.onnx_path)!r} does not exist.")
    model = load_onnx(args.onnx_path)
    model.save(args.out)
    print(f"{args.out}: {len(model.layers)} layers, {model.num_parameters():,} parameters, input "
          f"{('N', *model.input_shape)}")
    return 0
