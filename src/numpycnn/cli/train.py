"""``numpycnn train``: check the options, take the run folder, load the data, train, write the run's files.

The rules for run folders (a finished or interrupted run is never replaced without ``--overwrite``, one process
per folder, a checkpoint is only resumed by its own run) are in :mod:`numpycnn.cli.runs`; this module applies them
in order, so that a refused command writes nothing:

1. every option is checked (:func:`numpycnn.cli.train_settings.check_config`), before any file is touched;
2. the folder is locked, then checked: a new run needs a folder without a run (or ``--overwrite``), a resumed
   one needs its ``config.json`` and a checkpoint that carries the same settings;
3. the data is loaded and the model built;
4. only then are leftovers removed (temporary files, and with ``--overwrite`` the old run, checkpoint first)
   and ``config.json`` written.

Ctrl-C and SIGTERM stop training with a message saying which epoch is saved (or that none is) and the
command that goes on; a full disk or a missing permission names the file and says what is intact.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from numpycnn.cli import runs, train_distributed
from numpycnn.cli.runs import Terminated, terminate_as_interrupt
from numpycnn.cli.train_settings import (
    TRAIN_DEFAULTS,
    _identity,
    _options,
    _own_dataset,
    resume_config,
    train_config,
)
from numpycnn.core import backend


# -- train ---------------------------------------------------------------------------------------------------
def run_train(args: argparse.Namespace) -> int:
    """``numpycnn train``: check everything, take the run folder, load the data, train, write the files.

    Nothing is written before every option is valid, the folder is free (see :mod:`numpycnn.cli.runs`), the data
    is loaded and the model is built. Then ``config.json``, ``checkpoint.safetensors`` after every epoch, and
    at the end ``model.safetensors``, ``history.json``, ``metrics.json`` and the plots. Ctrl-C or SIGTERM
    leaves the last complete checkpoint in place and prints the command that resumes it. With ``--distributed``
    under ``mpiexec`` process 0 runs this and the others follow it (:mod:`numpycnn.cli.train_distributed`).
    """
    if train_distributed.wanted(args):
        return train_distributed.run(args, _run_train, _follow)
    return _run_train(args, None)


def _run_train(args: argparse.Namespace, dist: Any) -> int:
    config, out = train_config(args)
    if args.device is not None:  # before the folder is taken: no GPU, nothing written
        if args.distributed and args.device != "cpu":
            raise ValueError(f"train: `--device` must be cpu with --distributed (MPI sums host arrays). Got "
                             f"{args.device!r}. Train on one GPU without --distributed, or on CPUs with it.")
        backend.get_device(args.device)
    say = (lambda *a: None) if args.quiet else print
    if args.out is None and not args.resume and not args.overwrite and runs.holds_run(out):
        fresh = runs.fresh_folder(out)
        say(f"{out} holds an earlier run; writing this one to {fresh} (use --out DIR, or --overwrite to "
            f"replace {out}).")
        out = fresh
    created = not out.exists()
    lock = runs.RunLock(out)
    lock.acquire()
    with terminate_as_interrupt():
        try:
            if args.resume:
                config = resume_config(args, out)
            else:
                runs.check_new_run(out, args.overwrite)
            return _train_in(config, out, args, say, dist)
        finally:
            lock.release()
            if created:
                with contextlib.suppress(OSError):
                    out.rmdir()  # only if the run was refused before writing anything


def _train_in(config: dict[str, Any], out: Path, args: argparse.Namespace, say: Any, dist: Any = None) -> int:
    """The run itself, in the locked folder ``out``; ``dist`` is a distributed run's process 0."""
    train, test = (_load_split(config, split, args) for split in ("train", "test"))
    _check_split_sizes(config, len(train[1]))
    model = _build(config, train[0], _own_data(config, args)).to(config["device"])  # checks a resumed device
    optimizer = _optimizer(config)
    checkpoint = out / "checkpoint.safetensors"
    callbacks = _callbacks(config, checkpoint)
    runs.remove_temporaries(out)
    if not args.resume:
        removed = runs.remove_run(out) if args.overwrite else []
        if removed:
            say(f"--overwrite: removed the earlier run's {', '.join(removed)} from {out}")
        _write(out / "config.json", config)
    batch = f"batch {config['batch_size']}"
    if dist is not None:
        train_distributed.send_settings(dist, config, out)
        batch += f" = {train_distributed.describe(dist, config['batch_size'])}"
    for note in getattr(_own_data(config, args), "notes", []):
        say(note)
    say(f"Training {config['model']} on {len(train[1]):,} {config['dataset']} images for {config['epochs']} "
        f"epochs ({config['optimizer']}, lr {config['lr']:g}, {batch}) -> {out}")
    try:
        history = _fit(model, train, config, optimizer, callbacks, checkpoint if args.resume else None, dist,
                       verbose=0 if args.quiet else 1)
    except KeyboardInterrupt as stop:
        if dist is None:
            print(f"\n{_interrupted(stop)}. {_what_is_saved(config, out)}", file=sys.stderr)
        else:  # the lock is released on the way out, then the job ends (the others may wait in a collective)
            print(f"\n{_interrupted(stop)}. {_mpi_what_is_saved(dist, out / 'checkpoint.safetensors')}",
                  file=sys.stderr)
            raise
        return 143 if isinstance(stop, Terminated) else 130
    except OSError as err:
        raise _write_error(err, config, out) from None
    scores = model.evaluate(test[0], test[1])
    metrics = run_metrics(config, history, scores, model, len(train[1]), len(test[1]))
    metrics["processes"] = 1 if dist is None else dist.size
    metrics["gradient_health"] = gradient_findings(history)
    try:
        model.save(out / "model.safetensors")
        write_json(out / "history.json", history.to_dict())
        write_json(out / "metrics.json", metrics)
        if not args.no_plots:
            write_plots(model, history, test, out)
    except OSError as err:
        raise _write_error(err, config, out) from None
    say(f"Test accuracy: {100 * scores['accuracy']:.2f}% (loss {scores['loss']:.4f}, "
        f"{len(test[1]):,} images, {metrics['train_seconds']:.1f}s training, "
        f"{metrics['images_per_second']:,.0f} images/s). Files in {out}")
    for finding in metrics["gradient_health"]:
        say(f"Gradient health: {finding}")
    return 0


def _interrupted(stop: BaseException) -> str:
    return "Terminated (SIGTERM)" if isinstance(stop, Terminated) else "Interrupted"


def _saved_epoch(checkpoint: Path) -> int | None:
    """The number of complete epochs the checkpoint holds, ``None`` without a readable checkpoint."""
    from numpycnn.model.io import read_checkpoint_state

    try:
        return int(read_checkpoint_state(checkpoint)["epoch"]) + 1
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _what_is_saved(config: dict[str, Any], out: Path) -> str:
    """What survives in ``out`` and the command that goes on from there."""
    checkpoint = out / "checkpoint.safetensors"
    saved = _saved_epoch(checkpoint)
    if saved is None:
        return (f"No epoch was complete, so nothing was saved. Start again with:\n"
                f"  numpycnn train {' '.join(_options(config))} --out {out} --overwrite")
    return (f"Epoch {saved} of {config['epochs']} is saved in {checkpoint}; continue with:\n"
            f"  numpycnn train --out {out} --resume")


def _write_error(err: OSError, config: dict[str, Any], out: Path) -> OSError:
    """``err`` (disk full, no permission) as one line naming the file and saying what is intact."""
    saved = _saved_epoch(out / "checkpoint.safetensors")
    reason = err.strerror or str(err)
    where = f"cannot write {err.filename}" if err.filename else "cannot write into " + str(out)
    if saved is None:
        intact = "no epoch had been saved yet"
    else:
        intact = (f"the checkpoint of epoch {saved} ({out / 'checkpoint.safetensors'}) is intact; make room and "
                  f"continue with numpycnn train --out {out} --resume")
    return OSError(err.errno, f"{where}: {reason}; {intact}")


def _write(path: Path, data: Any) -> None:
    try:
        write_json(path, data)
    except OSError as err:
        raise OSError(err.errno, f"cannot write {path}: {err.strerror or err}; nothing else was written") from None


def _check_split_sizes(config: dict[str, Any], n: int) -> None:
    n_val = int(n * config["val_split"])
    if config["val_split"] and not 0 < n_val < n:
        raise ValueError(f"train: `--val-split` must leave at least one image on each side of {n} training "
                         f"images. Got {config['val_split']} ({n_val} held out).")


def _load_split(config: dict[str, Any], split: str, args: argparse.Namespace) -> tuple[Any, Any]:
    """``(images, labels)`` of a split, cut to ``--limit`` images."""
    from numpycnn import datasets

    own = _own_data(config, args)
    if own is not None:
        images, labels = (own.x_train, own.y_train) if split == "train" else (own.x_test, own.y_test)
    else:
        images, labels = datasets.load(config["dataset"], split, args.data_dir, args.download)
    if config["limit"]:
        images, labels = images[: config["limit"]], labels[: config["limit"]]
    return images, labels


def _own_data(config: dict[str, Any], args: argparse.Namespace) -> Any:
    """The :class:`~numpycnn.datasets.own.ImageSet` of ``--dataset PATH`` (loaded once per command), else None."""
    if not _own_dataset(config):
        return None
    if getattr(args, "own_data", None) is None:
        from numpycnn.datasets.sources import load_path

        args.own_data = load_path(config["dataset"], config["image_size"], config["channels"], seed=config["seed"],
                                  progress=None if not getattr(args, "quiet", False) else False)
    return args.own_data


def _build(config: dict[str, Any], train_images: Any, own: Any = None) -> Any:
    """The model, seeded, sized for the data set, with its class names, input normalisation and (for your own
    pictures) how they were prepared."""
    from numpycnn import datasets
    from numpycnn.model.zoo import build_model

    names = list(own.class_names) if own is not None else list(datasets.class_names(config["dataset"]))
    model = build_model(config["model"], seed=config["seed"], input_shape=tuple(train_images.shape[1:]),
                        num_classes=len(names))
    model.class_names = names
    model.preparation = own.preparation if own is not None else None
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
    from numpycnn.optim import schedules
    from numpycnn.training import callbacks

    result: list[Any] = [callbacks.TrainingCheckpoint(checkpoint, run=_identity(config))]
    if config["patience"] is not None:
        result.append(callbacks.EarlyStopping("val_loss", patience=config["patience"], restore_best_weights=True))
    epochs = config["epochs"]
    if config["schedule"] == "step":
        result.append(callbacks.LearningRateScheduler(schedules.StepLR(step_size=max(1, epochs // 3))))
    elif config["schedule"] == "cosine":
        result.append(callbacks.LearningRateScheduler(schedules.CosineLR(t_max=epochs)))
    return result


def _augment(config: dict[str, Any]) -> Any:
    """``--augment``: none, the data set's preset (``augment_for``), or a recipe such as ``shift=2,flip``."""
    if not config["augment"]:
        return None
    from numpycnn.training.augment import augment_for, make_augment, parse_recipe

    if isinstance(config["augment"], str):
        return make_augment(**parse_recipe(config["augment"]))
    if _own_dataset(config):  # your own pictures: small shifts and mirror images
        return make_augment(**parse_recipe("shift=2,flip"))
    return augment_for(config["dataset"])


def _loss(config: dict[str, Any]) -> Any:
    """Cross-entropy, with ``--label-smoothing`` if given."""
    from numpycnn.layers.losses import CrossEntropyLoss

    return CrossEntropyLoss(label_smoothing=config["label_smoothing"])


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically (a temporary file beside it, then a rename)."""
    from numpycnn.core.files import atomic_write

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


def gradient_findings(history: Any) -> list[str]:
    """What :func:`numpycnn.training.health.diagnose` finds in the run's gradient health (empty: healthy)."""
    from numpycnn.training.health import diagnose

    return diagnose(history.gradients)


def write_plots(model: Any, history: Any, test: tuple[Any, Any], out: Path) -> None:
    """The run's pictures: curves, gradient health, confusion matrix, first-layer filters, feature maps, mistakes."""
    from numpycnn import datasets
    from numpycnn.cli import plots

    images, labels = test
    predicted = model.predict_classes(images)
    names = model.class_names
    plots.plot_history(history.history, out / "curves.png")
    if history.gradients:
        plots.plot_gradient_health(history.gradients, out / "gradients.png")
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


def _fit(model: Any, train: tuple[np.ndarray, np.ndarray], config: dict[str, Any], optimizer: Any, callbacks: list,
         resume_from: Path | None, dist: Any, verbose: int) -> Any:
    """``model.fit`` with the run's settings: the one training call of process 0 (or the only process) and of
    every other process of a distributed run. Overflow in a diverging run is reported by ``fit``'s divergence
    check, not by NumPy warnings."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return model.fit(train[0], train[1], epochs=config["epochs"], batch_size=config["batch_size"],
                         optimizer=optimizer, loss=_loss(config), validation_split=config["val_split"],
                         callbacks=callbacks, verbose=verbose, rng=config["seed"], augment=_augment(config),
                         resume_from=resume_from, distributed=dist or False)


# -- the other processes of a distributed run -----------------------------------------------------------
def _follow(args: argparse.Namespace, dist: Any) -> int:
    """A process other than 0: train with process 0's settings; print and write nothing."""
    config, out = json.loads(dist.broadcast_bytes(None))
    checkpoint = Path(out) / "checkpoint.safetensors"  # read by process 0 only
    train = _load_split(config, "train", args)
    _check_split_sizes(config, len(train[1]))
    model = _build(config, train[0], _own_data(config, args))
    try:
        with terminate_as_interrupt():
            _fit(model, train, config, _optimizer(config), _callbacks(config, checkpoint),
                 checkpoint if args.resume else None, dist, verbose=0)
    except KeyboardInterrupt as stop:  # every process got the signal; process 0 may be waiting in a collective
        if dist.rank == 1:
            print(f"\n{_interrupted(stop)}. {_mpi_what_is_saved(dist, checkpoint)}", file=sys.stderr, flush=True)
        time.sleep(1.0)  # process 0 says it too if it can, then the job ends
        dist.abort(143 if isinstance(stop, Terminated) else 130)
    return 0


def _mpi_what_is_saved(dist: Any, checkpoint: Path) -> str:
    """The epoch the checkpoint holds (where this process can read it) and the command that goes on."""
    saved = _saved_epoch(checkpoint)
    if saved is None:
        return f"No complete epoch is saved in {checkpoint}."
    return (f"Epoch {saved} is saved in {checkpoint}; continue with:\n  mpiexec -n {dist.size} numpycnn train "
            f"--distributed --out {checkpoint.parent} --resume")
