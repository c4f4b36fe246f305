"""The ``numpycnn export`` and ``numpycnn import`` commands (ONNX), wired into :mod:`numpycnn.cli`.

Examples
--------
::

    numpycnn export runs/seed-mnist/model.safetensors seed.onnx
    numpycnn export runs/seed-mnist/model.safetensors seed-pixels.onnx --bake-preprocessing
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
    p.set_defaults(func=run_export)
    p = subparsers.add_parser(
        "import", help="read an ONNX graph (a chain of supported layers) into a model file",
        description="Read an ONNX file that is a chain of Conv, MaxPool, AveragePool, GlobalAveragePool, "
                    "Flatten, Gemm, BatchNormalization, Relu, LeakyRelu, Sigmoid, Tanh, Softmax, Dropout "
                    "(as torch.onnx.export writes an nn.Sequential) and save it as a numpycnn model file. "
                    f"The file is parsed, never executed. Needs {C.INSTALL_HINT}.")
    p.add_argument("onnx_path", metavar="IN", type=Path, help="an .onnx file")
    p.add_argument("out", metavar="OUT", type=Path, help="the .safetensors model file to write")
    p.set_defaults(func=run_import)


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
    export_onnx(model, args.out, bake_preprocessing=args.bake_preprocessing)
    name = "pixels (uint8)" if args.bake_preprocessing else "input (float32)"
    print(f"{args.out}: {args.out.stat().st_size:,} bytes, ONNX opset {C.OPSET}, IR version {C.IR_VERSION}; "
          f"input {name} {('N', *model.input_shape)}, output 'output'")
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
