"""The ``numpycnn`` command: train, evaluate, predict, summary, profile, data, export, import and serve.

Every sub-command is a thin layer over library functions: data from :mod:`numpycnn.datasets`, models from
:mod:`numpycnn.model.zoo`, training from :func:`numpycnn.training.loop.fit`, files from
:mod:`numpycnn.model.io`, pictures from :mod:`numpycnn.cli.plots` and :mod:`numpycnn.datasets.images`. Errors the
user can fix (a missing or corrupt file, bad data, a bad option) print one line on stderr and exit with code 2
(1 when training diverges); set ``NUMPYCNN_DEBUG=1`` for the traceback.

Examples
--------
::

    numpycnn train                                  # the original experiment: seed net, MNIST, 10 epochs
    numpycnn train --model deep --optimizer adam --lr 1e-3 --schedule cosine --augment --epochs 15
    numpycnn train --out runs/seed-mnist --resume   # continue an interrupted run
    mpiexec -n 2 numpycnn train --distributed       # 2 processes, one model (pip install "numpycnn[mpi]")
    numpycnn evaluate runs/seed-mnist/model.safetensors
    numpycnn predict runs/seed-mnist/model.safetensors my_digit.png --top 3
    numpycnn export runs/seed-mnist/model.safetensors seed.onnx      # needs pip install "numpycnn[onnx]"
    numpycnn serve                                  # the drawing page at http://127.0.0.1:8000/
    numpycnn exercise start conv-backward           # write a backward pass, then: numpycnn exercise check ...
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from numpycnn.cli.common import load_model_file as _load_model
from numpycnn.cli.common import report_error
from numpycnn.cli.train import run_train
from numpycnn.cli.train_settings import (  # noqa: F401  (re-exported)
    DATASETS,
    DEVICES,
    MODELS,
    NORMALIZATIONS,
    OPTIMIZERS,
    SCHEDULES,
    TRAIN_DEFAULTS,
)
from numpycnn.errors import DataError, DeviceError, ModelFileError, TrainingError


# -- parser --------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``numpycnn`` program, with all sub-commands."""
    parser = argparse.ArgumentParser(
        prog="numpycnn", description="Convolutional neural networks from first principles in NumPy.")
    from numpycnn import __version__

    parser.add_argument("--version", action="version", version=f"numpycnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_train(sub)
    _add_evaluate(sub)
    _add_predict(sub)
    p = sub.add_parser("summary", help="layers, output shapes and parameters of a model file")
    p.add_argument("model_path", metavar="MODEL", type=Path, help="a .safetensors model file")
    p.set_defaults(func=run_summary)
    _add_profile(sub)
    from numpycnn.cli.data_commands import add_data_parser

    add_data_parser(sub)
    from numpycnn.cli.onnx_commands import add_interchange_parsers

    add_interchange_parsers(sub)
    from numpycnn.cli.exercise_commands import add_exercise_parser

    add_exercise_parser(sub)
    _add_serve(sub)
    return parser


def _add_device_option(p: argparse.ArgumentParser, default: str | None = "cpu") -> None:
    p.add_argument("--device", choices=DEVICES, default=default,
                   help='where the model runs: cpu (NumPy) or cuda (CuPy on an NVIDIA GPU, pip install '
                        '"numpycnn[gpu]"); default cpu' + ("" if default else
                                                           ", or the interrupted run's device with --resume"))


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, default=None, help="folder searched first for the data files")
    p.add_argument("--no-download", dest="download", action="store_false",
                   help="never download missing data files")


def _add_train(sub: Any) -> None:
    d = TRAIN_DEFAULTS
    p = sub.add_parser("train", help="train a model and write it, its metrics and plots to --out",
                       description="Train a model. With no options: the original experiment (seed network, "
                                   "MNIST, 10 epochs, batch 64, lr 0.1, plain SGD, cross-entropy).")
    # Defaults are None so that --resume can tell an option given on the command line from one left out.
    p.add_argument("--model", choices=MODELS, help=f"architecture (default {d['model']})")
    p.add_argument("--dataset", metavar="NAME|PATH",
                   help=f"data set: {', '.join(DATASETS)} (default {d['dataset']}), or your own: a folder with one "
                        "sub-folder of pictures per class (or train/ and test/ folders laid out so), an .npz file "
                        "(x_train, y_train, ...) or a folder of .npy files (memory-mapped)")
    p.add_argument("--image-size", metavar="N|H,W",
                   help="with --dataset PATH: resize every picture to NxN or HxW (default: the size most pictures "
                        "share, else 32)")
    p.add_argument("--channels", type=int, choices=(1, 3),
                   help="with --dataset PATH: 1 (grey) or 3 (colour); default 3 if any picture has colour")
    p.add_argument("--epochs", type=int, help=f"epochs (default {d['epochs']})")
    p.add_argument("--batch-size", type=int,
                   help=f"images per step (default {d['batch_size']}); with --distributed, of all processes together")
    p.add_argument("--lr", type=float, help=f"learning rate (default {d['lr']})")
    p.add_argument("--optimizer", choices=OPTIMIZERS,
                   help=f"default {d['optimizer']}; 'momentum' is SGD with momentum 0.9")
    p.add_argument("--schedule", choices=SCHEDULES, help="learning-rate schedule (default none)")
    p.add_argument("--augment", nargs="?", const=True, default=None, metavar="RECIPE",
                   help="augment the training batches: alone, the data set's preset (MNIST: rotations up to 10 "
                        "degrees and shifts up to 2 pixels; Fashion-MNIST: shifts and flips; CIFAR-10: shifts up "
                        "to 4 and flips); or a recipe of comma-separated parts shift=N, rotate=DEG, flip, e.g. "
                        "--augment flip")
    p.add_argument("--label-smoothing", type=float, metavar="EPS",
                   help="spread EPS of each target over all classes in the cross-entropy (default 0; try 0.1)")
    p.add_argument("--val-split", type=float, help="fraction of the training set held out (default 0)")
    p.add_argument("--patience", type=int,
                   help="stop when the validation loss has not improved for this many epochs and keep the best "
                        "weights (needs --val-split)")
    p.add_argument("--seed", type=int, help=f"random seed (default {d['seed']})")
    p.add_argument("--normalize", choices=NORMALIZATIONS,
                   help="input scaling: 'none' is x/255 (the original), 'standard' per-channel mean/std; "
                        "'auto' (default) is none for the seed network, standard otherwise")
    p.add_argument("--limit", type=int, metavar="N",
                   help="train on the first N training images (and test on the first N test images): a quick run")
    p.add_argument("--out", type=Path, default=None,
                   help="run folder (default runs/MODEL-DATASET, or runs/MODEL-DATASET-2, -3, ... when it holds "
                        "an earlier run)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in --out from its checkpoint.safetensors")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run that --out holds (its files are removed, the checkpoint first)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over MPI: start as 'mpiexec -n K numpycnn train --distributed ...'; "
                        "--batch-size stays the global batch (batch/K images per process), so --lr keeps its "
                        "meaning; only process 0 prints and writes files")
    _add_device_option(p, default=None)
    _add_data_options(p)
    p.set_defaults(func=run_train)


def _add_evaluate(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="loss and accuracy of a model file on a data set's test split")
    p.add_argument("model_path", metavar="MODEL", type=Path, help="a .safetensors model file")
    p.add_argument("--dataset", metavar="NAME|PATH", default=None,
                   help=f"{', '.join(DATASETS)}, or a folder of pictures, .npz file or .npy folder prepared as the "
                        "model's own were; default: the model's own, from its class names and input shape")
    p.add_argument("--split", choices=("test", "train"), default="test")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--json", action="store_true", help="print the scores as one JSON object")
    p.add_argument("--limit", type=int, metavar="N", help="score only the first N images of the split")
    _add_device_option(p)
    _add_data_options(p)
    p.set_defaults(func=run_evaluate)


def _add_predict(sub: Any) -> None:
    p = sub.add_parser("predict", help="classify PNG or JPEG pictures",
                       description="Classify pictures of digits, garments or objects. Each picture is "
                                   "preprocessed like the model's data set (for digits: grey, ink white on "
                                   "black, cropped, fitted into 20x20 and centred in 28x28).")
    p.add_argument("model_path", metavar="MODEL", type=Path, help="a .safetensors model file")
    p.add_argument("images", metavar="IMAGE", nargs="+", type=Path, help="PNG or JPEG files")
    p.add_argument("--top", type=int, default=3, help="classes shown per image (default 3)")
    p.add_argument("--json", action="store_true",
                   help='one JSON object per image and line: {"path", "label", "probabilities"}')
    p.add_argument("--style", choices=("auto", *DATASETS), default="auto",
                   help="preprocessing; auto follows the model's class names and input shape")
    _add_device_option(p)
    p.set_defaults(func=run_predict)


def _add_profile(sub: Any) -> None:
    p = sub.add_parser("profile", help="time per layer, forward and backward, for one batch")
    p.add_argument("model_path", metavar="MODEL", type=Path, nargs="?", default=None,
                   help="a .safetensors model file (or use --model)")
    p.add_argument("--model", choices=MODELS, default=None, help="a fresh architecture (default seed)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5, help="timed runs; the median is shown")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.set_defaults(func=run_profile)


def _add_serve(sub: Any) -> None:
    p = sub.add_parser("serve", help="the drawing page: draw a digit and watch the network think",
                       description="Serve a page that classifies what you draw and shows every layer's "
                                   "activations. Offers the models shipped with numpycnn, and MODEL if given.")
    p.add_argument("model_path", metavar="MODEL", type=Path, nargs="?", default=None,
                   help="a .safetensors model file to offer first (default: the shipped models only)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    _add_device_option(p)
    p.set_defaults(func=run_serve)


# -- main ----------------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """Run the program on ``argv`` (default ``sys.argv[1:]``); return the exit code.

    Every error ends as one line on stderr and exit code 2 (1 when training diverges, 130 on Ctrl-C, 143 on
    SIGTERM during training); ``NUMPYCNN_DEBUG=1`` shows the traceback instead.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and usage errors
        return int(exit_.code or 0)
    stdout, sys.stdout = sys.stdout, PipeSafeStream(sys.stdout)
    try:
        return int(args.func(args))
    except KeyboardInterrupt as stop:
        from numpycnn.cli.train import Terminated

        terminated = isinstance(stop, Terminated)
        print(f"numpycnn {args.command}: {'terminated (SIGTERM)' if terminated else 'interrupted'}.",
              file=sys.stderr)
        return 143 if terminated else 130
    except TrainingError as err:
        return report_error(args.command, err, 1)
    except (DataError, DeviceError, ModelFileError, ValueError, TypeError, OSError) as err:
        return report_error(args.command, err, 2)
    except MemoryError as err:
        return report_error(args.command, MemoryError(_out_of_memory(args, err)), 2)
    except Exception as err:  # a bug: still one line, and the way to the traceback
        return report_error(args.command, RuntimeError(
            f"unexpected {type(err).__name__}: {err}. Run again with NUMPYCNN_DEBUG=1 for the traceback and "
            "please report it."), 2)
    finally:
        sys.stdout = stdout


class PipeSafeStream:
    """``sys.stdout`` that survives its reader going away (``numpycnn train ... | head -1``).

    On the first ``BrokenPipeError`` the stream's file descriptor is pointed at ``os.devnull`` and every later
    write is dropped, so the command carries on (training to the end, writing its files) instead of dying at
    its next line of output.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._detach()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._detach()

    def _detach(self) -> None:
        self.broken = True
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())  # the interpreter's last flush then goes nowhere
            os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _out_of_memory(args: argparse.Namespace, err: MemoryError) -> str:
    """What ran out of memory and what to lower."""
    detail = " ".join(str(err).split())
    batch = getattr(args, "batch_size", None)
    if batch is not None or args.command == "train":
        advice = f"lower --batch-size{f' (now {batch})' if batch is not None else ''}"
        if args.command == "train":
            advice += " or choose a smaller --model"
    else:
        advice = "the model is too large for this machine's memory; try a smaller model or fewer images at once"
    return f"out of memory{f' ({detail})' if detail else ''}: {advice}."


# -- evaluate, predict, summary, profile ---------------------------------------------------------------------
def _style(model: Any, requested: str | None) -> str:
    from numpycnn.datasets.images import style_for

    if requested and requested != "auto":
        return requested
    return style_for(model.input_shape, model.class_names, getattr(model, "preparation", None))


def run_evaluate(args: argparse.Namespace) -> int:
    """``numpycnn evaluate MODEL``: loss and accuracy on a data set split."""
    from numpycnn import datasets
    from numpycnn.datasets.sources import evaluation_data
    from numpycnn.model.io import check_activation_budget

    for option in ("batch_size", "limit"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise ValueError(f"evaluate: `--{option.replace('_', '-')}` must be an integer >= 1. Got {value}.")
    model = _load_model(args.model_path, args.device)
    own = evaluation_data(args.dataset, model, args.split)  # your own pictures, prepared as the model's were
    if own is not None:
        dataset, (images, labels) = args.dataset, own
    else:
        dataset = _style(model, args.dataset)
        images, labels = datasets.load(dataset, args.split, args.data_dir, args.download)
    if args.limit:
        images, labels = images[: args.limit], labels[: args.limit]
    check_activation_budget(model, images.shape[1:], str(args.model_path))
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # NaN outputs are an error below
            scores = model.evaluate(images, labels, batch_size=args.batch_size)
    except ValueError as err:
        raise ValueError(f"{args.model_path}: {err}") from None
    result = {"model": str(args.model_path), "dataset": dataset, "split": args.split, "images": len(labels),
              "accuracy": scores["accuracy"], "loss": scores["loss"]}
    if args.json:
        print(json.dumps(result, allow_nan=False))
    else:
        print(f"{dataset} {args.split} ({len(labels):,} images): accuracy {100 * scores['accuracy']:.2f}%, "
              f"loss {scores['loss']:.4f}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    """``numpycnn predict MODEL IMAGE...``: the most probable classes of each picture.

    A picture that cannot be read or classified is reported on stderr and the others go on; the exit code is
    2 if any failed.
    """
    model = _load_model(args.model_path, args.device)
    if args.top < 1:
        raise ValueError(f"predict: `--top` must be at least 1. Got {args.top}.")
    style = _style(model, args.style)
    failures = 0
    for path in args.images:
        try:
            names, probabilities = _classify(model, path, style, args.model_path)
        except (DataError, ValueError, OSError, MemoryError) as err:
            failures += 1
            report_error("predict", err, 2)
            continue
        ranked = sorted(range(len(names)), key=lambda k: -float(probabilities[k]))[: args.top]
        if args.json:
            print(json.dumps({"path": str(path), "label": names[ranked[0]],
                              "probabilities": [round(float(p), 6) for p in probabilities]}))
        else:
            tops = ", ".join(f"{names[k]} {100 * float(probabilities[k]):.1f}%" for k in ranked)
            print(f"{path}: {tops}")
    return 2 if failures else 0


def _classify(model: Any, path: Path, style: str, model_path: Path) -> tuple[list[str], Any]:
    """``(class names, probabilities)`` of one picture; errors name the picture (and the model)."""
    from numpycnn.datasets.images import load_image
    from numpycnn.model.io import check_activation_budget

    image = load_image(path, style)
    check_activation_budget(model, image.shape, str(model_path))
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # NaN outputs are an error below
            probabilities = model.predict(image[None])[0]  # (classes,)
    except ValueError as err:
        raise ValueError(f"{str(path)!r} with model {str(model_path)!r}: {err}") from None
    names = model.class_names or [str(i) for i in range(len(probabilities))]
    if len(names) != len(probabilities):
        raise ModelFileError(f"{model_path}: the model has {len(probabilities)} outputs but {len(names)} class "
                             "names.")
    return names, probabilities


def run_summary(args: argparse.Namespace) -> int:
    """``numpycnn summary MODEL``: the layer table, class names and input normalisation."""
    model = _load_model(args.model_path)
    print(f"{args.model_path} ({args.model_path.stat().st_size:,} bytes)")
    print(model.summary())
    if model.class_names:
        print(f"Classes: {', '.join(model.class_names)}")
    if model.normalization:
        norm = model.normalization
        print(f"Normalisation (of x/255): mean {norm['mean']}, std {norm['std']}")
    if getattr(model, "preparation", None) is not None:
        print(f"Pictures prepared as: {model.preparation.describe()}, from {model.preparation.source}")
    return 0


def run_profile(args: argparse.Namespace) -> int:
    """``numpycnn profile [MODEL | --model NAME]``: time per layer for one batch."""
    from numpycnn.cli.profiling import format_profile, profile_model

    if args.model_path is not None and args.model is not None:
        raise ValueError("profile: give a model file or --model, not both.")
    if args.model_path is not None:
        model = _load_model(args.model_path)
    else:
        from numpycnn.model.zoo import build_model

        model = build_model(args.model or "seed", seed=0)
    if model.input_shape is None:
        raise ValueError("profile: the model does not record its input shape.")
    rows = profile_model(model, model.input_shape, args.batch_size, args.repeats)
    if args.json:
        print(json.dumps(rows))
    else:
        print(format_profile(rows, args.batch_size))
    return 0


def run_serve(args: argparse.Namespace) -> int:
    """``numpycnn serve [MODEL]``: the drawing page and its JSON API until Ctrl-C."""
    from numpycnn.web.server import serve

    return serve(args.host, args.port, args.model_path, args.device)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
