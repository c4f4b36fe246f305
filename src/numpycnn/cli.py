"""The ``numpycnn`` command: train, evaluate, predict, summary, profile, data and serve.

Every sub-command is a thin layer over library functions: data from :mod:`numpycnn.datasets`, models from
:mod:`numpycnn.models`, training from :func:`numpycnn.training.fit`, files from :mod:`numpycnn.io`, pictures
from :mod:`numpycnn.plots` and :mod:`numpycnn.images`. Errors the user can fix (a missing or corrupt file,
bad data, a bad option) print one line on stderr and exit with code 2 (1 when training diverges); set
``NUMPYCNN_DEBUG=1`` for the traceback.

Examples
--------
::

    numpycnn train                                  # the original experiment: seed net, MNIST, 10 epochs
    numpycnn train --model deep --optimizer adam --lr 1e-3 --schedule cosine --augment --epochs 15
    numpycnn train --out runs/seed-mnist --resume   # continue an interrupted run
    numpycnn evaluate runs/seed-mnist/model.safetensors
    numpycnn predict runs/seed-mnist/model.safetensors my_digit.png --top 3
    numpycnn serve                                  # the drawing page at http://127.0.0.1:8000/
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from numpycnn.errors import DataError, ModelFileError, TrainingError

MODELS = ("seed", "lenet5", "deep", "deep-plain", "deep-dropout")  # numpycnn.models.MODELS (tested to agree)
DATASETS = ("mnist", "fashion-mnist", "cifar10")
OPTIMIZERS = ("sgd", "momentum", "adam", "adamw", "rmsprop")
SCHEDULES = ("none", "step", "cosine")
NORMALIZATIONS = ("auto", "none", "standard")

#: The original experiment; ``train`` with no options runs exactly this.
TRAIN_DEFAULTS: dict[str, Any] = {
    "model": "seed", "dataset": "mnist", "epochs": 10, "batch_size": 64, "lr": 0.1, "optimizer": "sgd",
    "schedule": "none", "augment": False, "val_split": 0.0, "patience": None, "seed": 0, "limit": None,
    "normalize": "auto",
}
#: Options that may differ between an interrupted run and its ``--resume``.
_RESUMABLE_CHANGES = ("epochs",)


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
    from numpycnn.datasets.commands import add_data_parser

    add_data_parser(sub)
    _add_serve(sub)
    return parser


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
    p.add_argument("--dataset", choices=DATASETS, help=f"data set (default {d['dataset']})")
    p.add_argument("--epochs", type=int, help=f"epochs (default {d['epochs']})")
    p.add_argument("--batch-size", type=int, help=f"images per step (default {d['batch_size']})")
    p.add_argument("--lr", type=float, help=f"learning rate (default {d['lr']})")
    p.add_argument("--optimizer", choices=OPTIMIZERS,
                   help=f"default {d['optimizer']}; 'momentum' is SGD with momentum 0.9")
    p.add_argument("--schedule", choices=SCHEDULES, help="learning-rate schedule (default none)")
    p.add_argument("--augment", action="store_true", default=None, help="random shifts (and flips for CIFAR)")
    p.add_argument("--val-split", type=float, help="fraction of the training set held out (default 0)")
    p.add_argument("--patience", type=int,
                   help="stop when the validation loss has not improved for this many epochs and keep the best "
                        "weights (needs --val-split)")
    p.add_argument("--seed", type=int, help=f"random seed (default {d['seed']})")
    p.add_argument("--normalize", choices=NORMALIZATIONS,
                   help="input scaling: 'none' is x/255 (the original), 'standard' per-channel mean/std; "
                        "'auto' (default) is none for the seed network, standard otherwise")
    p.add_argument("--limit", type=int, help=argparse.SUPPRESS)  # first N images of each split, for tests
    p.add_argument("--out", type=Path, default=None, help="output folder (default runs/MODEL-DATASET)")
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.safetensors")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    _add_data_options(p)
    p.set_defaults(func=run_train)


def _add_evaluate(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="loss and accuracy of a model file on a data set's test split")
    p.add_argument("model_path", metavar="MODEL", type=Path, help="a .safetensors model file")
    p.add_argument("--dataset", choices=DATASETS, default=None,
                   help="default: the model's own, from its class names and input shape")
    p.add_argument("--split", choices=("test", "train"), default="test")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--json", action="store_true", help="print the scores as one JSON object")
    p.add_argument("--limit", type=int, help=argparse.SUPPRESS)
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
    p.set_defaults(func=run_serve)


# -- main ----------------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """Run the program on ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and usage errors
        return int(exit_.code or 0)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print(f"numpycnn {args.command}: interrupted.", file=sys.stderr)
        return 130
    except TrainingError as err:
        return _fail(args.command, err, 1)
    except (DataError, ModelFileError, ValueError, TypeError, OSError) as err:
        return _fail(args.command, err, 2)


def _fail(command: str, err: BaseException, code: int) -> int:
    """Print ``err`` as one line on stderr (the traceback too with ``NUMPYCNN_DEBUG=1``); return ``code``."""
    if os.environ.get("NUMPYCNN_DEBUG"):
        raise err
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, OSError) and err.filename and str(err.filename) not in text:
        text = f"{text}: {err.filename}"
    print(f"numpycnn {command}: error: {text}", file=sys.stderr)
    return code


# -- train ---------------------------------------------------------------------------------------------------
def run_train(args: argparse.Namespace) -> int:
    """``numpycnn train``: load the data, build and train the model, then write its files into ``--out``.

    Writes ``config.json`` first, ``checkpoint.safetensors`` after every epoch, and at the end
    ``model.safetensors``, ``history.json``, ``metrics.json`` and the plots. Ctrl-C leaves the last complete
    checkpoint in place and prints the command that resumes it.
    """
    config, out = train_config(args)
    say = (lambda *a: None) if args.quiet else print
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", config)
    train, test = (_load_split(config, split, args) for split in ("train", "test"))
    model = _build(config, train[0])
    optimizer = _optimizer(config)
    checkpoint = out / "checkpoint.safetensors"
    say(f"Training {config['model']} on {len(train[1]):,} {config['dataset']} images for {config['epochs']} "
        f"epochs ({config['optimizer']}, lr {config['lr']:g}, batch {config['batch_size']}) -> {out}")
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # fit reports a diverging loss
            history = model.fit(
                train[0], train[1], epochs=config["epochs"], batch_size=config["batch_size"],
                optimizer=optimizer, validation_split=config["val_split"],
                callbacks=_callbacks(config, checkpoint), verbose=0 if args.quiet else 1, rng=config["seed"],
                augment=_augment(config), resume_from=checkpoint if args.resume else None)
    except KeyboardInterrupt:
        print(f"\nInterrupted. The last complete epoch is saved in {checkpoint}; continue with:\n"
              f"  numpycnn train --out {out} --resume", file=sys.stderr)
        return 130
    scores = model.evaluate(test[0], test[1])
    model.save(out / "model.safetensors")
    write_json(out / "history.json", history.to_dict())
    metrics = run_metrics(config, history, scores, model, len(train[1]), len(test[1]))
    write_json(out / "metrics.json", metrics)
    if not args.no_plots:
        write_plots(model, history, test, out)
    say(f"Test accuracy: {100 * scores['accuracy']:.2f}% (loss {scores['loss']:.4f}, "
        f"{len(test[1]):,} images, {metrics['train_seconds']:.1f}s training, "
        f"{metrics['images_per_second']:,.0f} images/s). Files in {out}")
    return 0


def train_config(args: argparse.Namespace) -> tuple[dict[str, Any], Path]:
    """The run's settings and output folder: defaults, or the interrupted run's own with ``--resume``.

    Raises
    ------
    ValueError
        If ``--resume`` finds no run in ``--out``, or an option differs from the interrupted run's.
    """
    given = {key: getattr(args, key) for key in TRAIN_DEFAULTS if getattr(args, key) is not None}
    model = given.get("model", TRAIN_DEFAULTS["model"])
    dataset = given.get("dataset", TRAIN_DEFAULTS["dataset"])
    out = args.out if args.out is not None else Path("runs") / f"{model}-{dataset}"
    if not args.resume:
        return {**TRAIN_DEFAULTS, **given}, out
    config_path, checkpoint = out / "config.json", out / "checkpoint.safetensors"
    if not checkpoint.is_file() or not config_path.is_file():
        raise ValueError(f"--resume: no interrupted run in {str(out)!r} (need config.json and "
                         f"checkpoint.safetensors there). Give the run's --out, or train without --resume.")
    try:
        stored = json.loads(config_path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"--resume: cannot read {str(config_path)!r}: {err}") from None
    if not isinstance(stored, dict) or set(stored) != set(TRAIN_DEFAULTS):
        raise ValueError(f"--resume: {str(config_path)!r} is not a numpycnn run configuration.")
    for key, value in given.items():
        if key not in _RESUMABLE_CHANGES and value != stored[key]:
            flag = "--" + key.replace("_", "-")
            raise ValueError(f"--resume: {flag} {value} differs from the interrupted run's {stored[key]!r} "
                             f"({config_path}). Leave it out to continue that run, or train into a new "
                             f"--out.")
    return {**stored, **{k: v for k, v in given.items() if k in _RESUMABLE_CHANGES}}, out


def _load_split(config: dict[str, Any], split: str, args: argparse.Namespace) -> tuple[Any, Any]:
    """``(images, labels)`` of a split, cut to ``--limit`` images."""
    from numpycnn import datasets

    images, labels = datasets.load(config["dataset"], split, args.data_dir, args.download)
    if config["limit"]:
        if config["limit"] < 1:
            raise ValueError(f"--limit must be at least 1. Got {config['limit']}.")
        images, labels = images[: config["limit"]], labels[: config["limit"]]
    return images, labels


def _build(config: dict[str, Any], train_images: Any) -> Any:
    """The model, seeded, sized for the data set, with its class names and input normalisation."""
    from numpycnn import datasets
    from numpycnn.models import build_model

    names = list(datasets.class_names(config["dataset"]))
    model = build_model(config["model"], seed=config["seed"], input_shape=tuple(train_images.shape[1:]),
                        num_classes=len(names))
    model.class_names = names
    mode = config["normalize"]
    if mode == "auto":
        mode = "none" if config["model"] == "seed" else "standard"
    if mode == "standard":
        mean, std = datasets.channel_stats(train_images)
        model.normalization = {"mean": [float(m) for m in mean], "std": [float(s) for s in std]}
    else:  # x / 255 as it is, like the original experiment
        model.normalization = {"mean": [0.0] * train_images.shape[1], "std": [1.0] * train_images.shape[1]}
    return model


def _optimizer(config: dict[str, Any]) -> Any:
    from numpycnn import optim

    name, lr = config["optimizer"], config["lr"]
    if name == "sgd":
        return optim.SGD(lr=lr)
    if name == "momentum":
        return optim.SGD(lr=lr, momentum=0.9)
    return {"adam": optim.Adam, "adamw": optim.AdamW, "rmsprop": optim.RMSProp}[name](lr=lr)


def _callbacks(config: dict[str, Any], checkpoint: Path) -> list[Any]:
    """A checkpoint after every epoch, and the learning-rate schedule if one is asked for."""
    from numpycnn import callbacks, schedules

    result: list[Any] = [callbacks.TrainingCheckpoint(checkpoint)]
    if config["patience"] is not None:
        if not config["val_split"]:
            raise ValueError("--patience needs a validation set to watch: add --val-split, e.g. --val-split 0.1.")
        result.append(callbacks.EarlyStopping("val_loss", patience=config["patience"], restore_best_weights=True))
    epochs = config["epochs"]
    if config["schedule"] == "step":
        result.append(callbacks.LearningRateScheduler(schedules.StepLR(step_size=max(1, epochs // 3))))
    elif config["schedule"] == "cosine":
        result.append(callbacks.LearningRateScheduler(schedules.CosineLR(t_max=epochs)))
    return result


def _augment(config: dict[str, Any]) -> Any:
    if not config["augment"]:
        return None
    from numpycnn.augment import augment_for

    return augment_for(config["dataset"])


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically (a temporary file beside it, then a rename)."""
    from numpycnn._files import atomic_write

    with atomic_write(path, "w") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")


def run_metrics(config: dict[str, Any], history: Any, scores: dict[str, float], model: Any,
                n_train: int, n_test: int) -> dict[str, Any]:
    """The figures ``metrics.json`` records: test scores, time, speed, settings and the machine."""
    import platform
    from datetime import datetime, timezone

    from numpycnn import __version__

    seconds = float(sum(history.history.get("seconds", [])))
    epochs = len(history.epoch)
    n_val = int(n_train * config["val_split"])  # fit holds out the last int(N * split) images
    n_train -= n_val
    return {
        "test_accuracy": scores["accuracy"], "test_loss": scores["loss"], "train_seconds": seconds,
        "epochs": epochs, "images_per_second": n_train * epochs / seconds if seconds > 0 else 0.0,
        "train_images": n_train, "validation_images": n_val, "test_images": n_test,
        "parameters": model.num_parameters(),
        **{key: config[key] for key in TRAIN_DEFAULTS if key != "epochs"},
        "epochs_requested": config["epochs"], "class_names": model.class_names,
        "normalization": model.normalization,
        "numpy_version": np.__version__, "numpycnn_version": __version__,
        "python_version": platform.python_version(),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "machine": platform.machine(),
                    "processor": platform.processor(), "cpu_count": os.cpu_count()},
    }


def write_plots(model: Any, history: Any, test: tuple[Any, Any], out: Path) -> None:
    """The run's pictures: curves, confusion matrix, first-layer filters, feature maps, mistakes."""
    from numpycnn import datasets, plots

    images, labels = test
    predicted = model.predict_classes(images)
    names = model.class_names
    plots.plot_history(history.history, out / "curves.png")
    matrix = plots.confusion_matrix(labels, predicted, len(names))
    plots.plot_confusion_matrix(matrix, names, out / "confusion_matrix.png")
    first_conv = next((layer for layer in model.layers if "weight" in layer.params
                       and layer.params["weight"].ndim == 4), None)
    if first_conv is not None:
        plots.plot_filters(first_conv.params["weight"], out / "filters.png")
        sample = datasets.standardize(datasets.to_float(images[:1]), model.normalization["mean"],
                                      model.normalization["std"]).astype(model.dtype)
        plots.plot_feature_maps(images[0], plots.feature_maps(model, sample[0]), out / "feature_maps.png")
    wrong = predicted != labels
    plots.plot_misclassified(images[wrong], labels[wrong], predicted[wrong], names, out / "misclassified.png")


# -- evaluate, predict, summary, profile ---------------------------------------------------------------------
def _load_model(path: Path) -> Any:
    from numpycnn.io import load_model

    if not path.is_file():
        raise ModelFileError(f"model file {str(path)!r} does not exist.")
    return load_model(path)


def _style(model: Any, requested: str | None) -> str:
    from numpycnn.images import style_for

    if requested and requested != "auto":
        return requested
    return style_for(model.input_shape, model.class_names)


def run_evaluate(args: argparse.Namespace) -> int:
    """``numpycnn evaluate MODEL``: loss and accuracy on a data set split."""
    from numpycnn import datasets

    model = _load_model(args.model_path)
    dataset = _style(model, args.dataset)
    images, labels = datasets.load(dataset, args.split, args.data_dir, args.download)
    if args.limit:
        images, labels = images[: args.limit], labels[: args.limit]
    scores = model.evaluate(images, labels, batch_size=args.batch_size)
    result = {"model": str(args.model_path), "dataset": dataset, "split": args.split, "images": len(labels),
              "accuracy": scores["accuracy"], "loss": scores["loss"]}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{dataset} {args.split} ({len(labels):,} images): accuracy {100 * scores['accuracy']:.2f}%, "
              f"loss {scores['loss']:.4f}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    """``numpycnn predict MODEL IMAGE...``: the most probable classes of each picture."""
    from numpycnn.images import load_image

    model = _load_model(args.model_path)
    if args.top < 1:
        raise ValueError(f"predict: `--top` must be at least 1. Got {args.top}.")
    style = _style(model, args.style)
    names = model.class_names or [str(i) for i in range(model.output_shapes(model.input_shape)[-1][0])]
    failures = 0
    for path in args.images:
        try:
            image = load_image(path, style)
        except DataError as err:
            failures += 1
            _fail("predict", err, 2)
            continue
        probabilities = model.predict(image[None])[0]  # (classes,)
        ranked = sorted(range(len(names)), key=lambda k: -float(probabilities[k]))[: args.top]
        if args.json:
            print(json.dumps({"path": str(path), "label": names[ranked[0]],
                              "probabilities": [round(float(p), 6) for p in probabilities]}))
        else:
            tops = ", ".join(f"{names[k]} {100 * float(probabilities[k]):.1f}%" for k in ranked)
            print(f"{path}: {tops}")
    return 2 if failures else 0


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
    return 0


def run_profile(args: argparse.Namespace) -> int:
    """``numpycnn profile [MODEL | --model NAME]``: time per layer for one batch."""
    from numpycnn.profiling import format_profile, profile_model

    if args.model_path is not None and args.model is not None:
        raise ValueError("profile: give a model file or --model, not both.")
    if args.model_path is not None:
        model = _load_model(args.model_path)
    else:
        from numpycnn.models import build_model

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

    return serve(args.host, args.port, args.model_path)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
