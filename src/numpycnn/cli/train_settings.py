"""The settings of a ``numpycnn train`` run: the options and their defaults, every check on them, and what a
``--resume`` may change.

:data:`TRAIN_DEFAULTS` is the original experiment. :func:`train_config` turns the command line into a checked
run configuration and an output folder; :func:`resume_config` reads an interrupted run's ``config.json`` back and
checks that its checkpoint is its own (:func:`_identity`) and that no option differs from the run's except those
in ``_RESUMABLE_CHANGES``. Nothing here touches a file but ``config.json`` and the checkpoint it reads, so a
refused option writes nothing (:mod:`numpycnn.cli.train` applies the order).
"""

from __future__ import annotations

import argparse
import json
import math
import numbers
from pathlib import Path
from typing import Any

MODELS = ("seed", "lenet5", "deep", "deep-plain", "deep-dropout")  # numpycnn.model.zoo.MODELS (tested to agree)
DATASETS = ("mnist", "fashion-mnist", "cifar10")
OPTIMIZERS = ("sgd", "momentum", "adam", "adamw", "rmsprop")
SCHEDULES = ("none", "step", "cosine")
NORMALIZATIONS = ("auto", "none", "standard")

#: The original experiment; ``train`` with no options runs exactly this.
TRAIN_DEFAULTS: dict[str, Any] = {
    "model": "seed", "dataset": "mnist", "epochs": 10, "batch_size": 64, "lr": 0.1, "optimizer": "sgd",
    "schedule": "none", "augment": False, "val_split": 0.0, "patience": None, "seed": 0, "limit": None,
    "normalize": "auto", "label_smoothing": 0.0, "device": "cpu", "image_size": None, "channels": None,
}
#: What ``--device`` may name: NumPy on this machine's CPU, or CuPy on an NVIDIA GPU (:mod:`numpycnn.core.backend`).
DEVICES = ("cpu", "cuda")
#: Options that may differ between an interrupted run and its ``--resume``: the device too, since the same run
#: continues on another machine (a GPU run resumed on a CPU, and back); left out of the checkpoint's identity.
_RESUMABLE_CHANGES = ("epochs", "device")
#: Settings added after the first release: a ``config.json`` or checkpoint without them means the default, so an
#: older run still resumes. A checkpoint records them only when they differ from the default (:func:`_identity`).
_ADDED_LATER = ("label_smoothing", "device", "image_size", "channels")


def check_config(config: dict[str, Any], source: str) -> None:
    """Check every setting of a run; ``source`` is ``"train"`` (the command line) or a ``config.json`` path.

    Raises
    ------
    ValueError, TypeError
        ``"{source}: `--lr` must be a finite number > 0. Got -1.0."`` and the like.
    """
    def bad(key: str, expectation: str, hint: str = "", error: type = ValueError) -> None:
        name = "--" + key.replace("_", "-") if source == "train" else key
        message = f"{source}: `{name}` must be {expectation}. Got {config[key]!r}."
        if source != "train":
            message += " Was the file edited by hand? Fix the value, or start a new run with --overwrite."
        raise error(f"{message} {hint}".rstrip())

    choices = {"model": MODELS, "dataset": DATASETS, "optimizer": OPTIMIZERS, "schedule": SCHEDULES,
               "normalize": NORMALIZATIONS, "device": DEVICES}
    if _own_dataset(config):  # a folder of pictures, an .npz file or a folder of .npy files
        del choices["dataset"]
        _check_own_options(config, bad)
    elif config["image_size"] is not None or config["channels"] is not None:
        raise ValueError(f"{source}: --image-size and --channels apply to your own pictures (--dataset PATH); "
                         f"{config['dataset']} pictures keep their shape.")
    for key, allowed in choices.items():
        if config[key] not in allowed:
            bad(key, f"one of {list(allowed)}", "or the path of a folder of pictures, an .npz file or a folder "
                "of .npy files" if key == "dataset" else "")
    for key, low in (("epochs", 1), ("batch_size", 1), ("seed", 0), ("limit", 1), ("patience", 0)):
        value = config[key]
        if value is None and key in ("limit", "patience"):
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value < 2**63:
            bad(key, f"an integer >= {low}", error=TypeError if not isinstance(value, numbers.Integral) else
                ValueError)
    lr, split = config["lr"], config["val_split"]
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not (math.isfinite(lr) and lr > 0):
        bad("lr", "a finite number > 0", "Typical values: 0.1 for sgd, 0.001 for adam.")
    if isinstance(split, bool) or not isinstance(split, numbers.Real) or not 0 <= split < 1:
        bad("val_split", "a fraction in [0, 1)", "For example --val-split 0.1 holds out 10%.")
    if not isinstance(config["augment"], (bool, str)):
        bad("augment", "true, false or a recipe such as 'shift=2,flip'")
    if isinstance(config["augment"], str):
        from numpycnn.training.augment import parse_recipe

        try:
            parse_recipe(config["augment"])
        except ValueError as err:  # a bad part's value is named; a bad recipe needs only the expectation
            bad("augment", "true, false or a recipe of comma-separated parts shift=N, rotate=DEG and flip "
                "(e.g. 'shift=2,flip')", "" if "`recipe`" in str(err) else str(err))
    smoothing = config["label_smoothing"]
    if isinstance(smoothing, bool) or not isinstance(smoothing, numbers.Real) or not 0 <= smoothing < 1:
        bad("label_smoothing", "a fraction in [0, 1)", "Typical value: 0.1.")
    if config["patience"] is not None and not split:
        raise ValueError(f"{source}: --patience needs a validation set to watch: add --val-split, e.g. "
                         "--val-split 0.1.")


def _own_dataset(config: dict[str, Any]) -> bool:
    """Whether ``--dataset`` names a path (your own pictures) rather than a built-in set."""
    from numpycnn.datasets.own import is_path

    return is_path(config["dataset"])


def _check_own_options(config: dict[str, Any], bad: Any) -> None:
    """``--image-size`` (``N`` or ``H,W``) and ``--channels`` (1 or 3) of a run on your own pictures."""
    from numpycnn.datasets.preparation import parse_size

    try:
        parse_size(config["image_size"])
    except ValueError:
        bad("image_size", "N or H,W with sides from 1 to 1024", "For example --image-size 32 or 48,64.")
    if config["channels"] not in (None, 1, 3):
        bad("channels", "1 (grey) or 3 (colour)")


def train_config(args: argparse.Namespace) -> tuple[dict[str, Any], Path]:
    """The run's settings (defaults and the options given, all checked) and its output folder.

    With ``--resume`` the settings are read from the folder later, under its lock (:func:`resume_config`).

    Raises
    ------
    ValueError
        For an option out of range, or ``--resume`` with ``--overwrite``.
    """
    if args.resume and args.overwrite:
        raise ValueError("train: `--resume` and `--overwrite` contradict each other. Use --resume to continue "
                         "the run in --out, --overwrite to replace it.")
    given = _given(args)
    config = {**TRAIN_DEFAULTS, **given}
    check_config(config, "train")
    name = (Path(config["dataset"]).resolve().stem or "own") if _own_dataset(config) else config["dataset"]
    out = args.out if args.out is not None else Path("runs") / f"{config['model']}-{name}"
    return config, out


def _given(args: argparse.Namespace) -> dict[str, Any]:
    return {key: getattr(args, key) for key in TRAIN_DEFAULTS if getattr(args, key) is not None}


def resume_config(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """The interrupted run's settings, checked, after checking that its checkpoint is its own.

    Raises
    ------
    ValueError
        If ``out`` holds no checkpoint, a ``config.json`` that is not valid, a checkpoint of another run, or
        if an option differs from the interrupted run's.
    """
    from numpycnn.model.io import read_checkpoint_state
    config_path, checkpoint = out / "config.json", out / "checkpoint.safetensors"
    if not config_path.is_file():
        raise ValueError(f"--resume: no interrupted run in {str(out)!r} (no config.json there). Give the "
                         f"run's --out, or train without --resume.")
    if not checkpoint.is_file():
        raise ValueError(f"--resume: the run in {str(out)!r} was stopped before its first epoch ended, so there "
                         f"is no checkpoint to continue. Start it again with --overwrite instead of --resume.")
    try:
        stored = json.loads(config_path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"--resume: cannot read {str(config_path)!r}: {err}") from None
    if isinstance(stored, dict):
        stored = {**{key: TRAIN_DEFAULTS[key] for key in _ADDED_LATER}, **stored}
    if not isinstance(stored, dict) or set(stored) != set(TRAIN_DEFAULTS):
        raise ValueError(f"--resume: {str(config_path)!r} is not a numpycnn run configuration (its keys must "
                         f"be {sorted(TRAIN_DEFAULTS)}).")
    check_config(stored, str(config_path))
    identity = read_checkpoint_state(checkpoint).get("run")
    if identity != _identity(stored):
        raise ValueError(f"--resume: {str(checkpoint)!r} belongs to another run than {str(config_path)!r} "
                         f"(its settings differ, or it was not written by numpycnn train); not continuing it. "
                         f"Start again with --overwrite.")
    for key, value in _given(args).items():
        if key not in _RESUMABLE_CHANGES and value != stored[key]:
            flag = "--" + key.replace("_", "-")
            raise ValueError(f"--resume: {flag} {value} differs from the interrupted run's {stored[key]!r} "
                             f"({config_path}). Leave it out to continue that run, or train into a new "
                             f"--out.")
    config = {**stored, **{k: v for k, v in _given(args).items() if k in _RESUMABLE_CHANGES}}
    check_config(config, "train")
    return config


def _identity(config: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint records of its run: every setting but those ``--resume`` may change.

    Settings in ``_ADDED_LATER`` are left out at their default, so the checkpoint of a run started by an older
    numpycnn (which did not have them) still matches.
    """
    return {key: value for key, value in config.items() if key not in _RESUMABLE_CHANGES
            and not (key in _ADDED_LATER and value == TRAIN_DEFAULTS[key])}


def _options(config: dict[str, Any]) -> list[str]:
    """The command-line options that give ``config`` (those that differ from the defaults)."""
    words = []
    for key, value in config.items():
        if value == TRAIN_DEFAULTS[key]:
            continue
        flag = "--" + key.replace("_", "-")
        words += [flag] if value is True else [flag, str(value)]
    return words
