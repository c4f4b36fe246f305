"""Resuming training: the state of a running ``fit`` (epoch, history, base learning rate, every random
generator, the callbacks' own state) as JSON for a checkpoint's metadata, and restoring it into a
:class:`~numpycnn.training.loop.Trainer` from a ``TrainingCheckpoint`` file. It sits between the callbacks (whose
``History`` and keys it stores) and the training loop (docs/design.md, "Layering").
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from numpycnn.core.checks import fail
from numpycnn.errors import ModelFileError
from numpycnn.files.model_file import load_checkpoint
from numpycnn.training.callbacks import History, callback_keys

if TYPE_CHECKING:
    from numpycnn.training.loop import Trainer

_STATE_FORMAT, _STATE_VERSION = "numpycnn.training_state", 1
#: The bit generators a checkpoint may name; a file can never make us build anything else.
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")


def generator_state(rng: np.random.Generator) -> str:
    """The bit generator's state as a JSON string (so its 128-bit integers survive any JSON reader)."""
    return json.dumps(rng.bit_generator.state)


def generator_from_state(text: str) -> np.random.Generator:
    """A new ``Generator`` in the state :func:`generator_state` recorded; builds known bit generators only."""
    try:
        state = json.loads(text)
        name = state["bit_generator"]
    except (TypeError, ValueError, KeyError):
        raise ModelFileError(f"checkpoint: a random-generator state is malformed: {text!r:.80}") from None
    if name not in _BIT_GENERATORS:
        raise ModelFileError(f"checkpoint: unknown bit generator {name!r}; expected one of "
                             f"{_BIT_GENERATORS}.")
    bit_generator = getattr(np.random, name)()
    try:
        bit_generator.state = state
    except (TypeError, ValueError, KeyError) as err:
        raise ModelFileError(f"checkpoint: cannot restore the {name} state: {err}") from None
    return np.random.Generator(bit_generator)


def training_state(trainer: Trainer) -> dict[str, Any]:
    """The JSON-serialisable state of a running ``fit``, stored in a checkpoint's metadata."""
    layers = trainer.model.layers
    return {
        "format": _STATE_FORMAT,
        "version": _STATE_VERSION,
        "epoch": trainer.epoch,
        "epochs": trainer.epochs,
        "base_lr": trainer.base_lr,
        "stop_training": bool(trainer.stop_training),
        "history": trainer.history.to_dict(),
        "rng": {"shuffle": generator_state(trainer.rng), "augment": generator_state(trainer.augment_rng)},
        "layer_rng": {str(i): generator_state(layer.rng) for i, layer in enumerate(layers)
                      if isinstance(getattr(layer, "rng", None), np.random.Generator)},
        "callbacks": {key: cb.state_dict()
                      for key, cb in zip(callback_keys(trainer.callbacks), trainer.callbacks, strict=True)},
    }


def restore_training_state(trainer: Trainer, path: str | os.PathLike) -> tuple[int, dict[str, Any]]:
    """Load a ``TrainingCheckpoint`` into ``trainer``; return the epoch to start from and callback states."""
    if not Path(path).is_file():
        fail("fit", "resume_from", "an existing checkpoint file", str(path), error=FileNotFoundError,
             hint="Train with callbacks=[TrainingCheckpoint(path)] to write one.")
    state = load_checkpoint(path, trainer.model, trainer.optimizer)
    if not isinstance(state, dict) or (state.get("format"), state.get("version")) != (_STATE_FORMAT,
                                                                                      _STATE_VERSION):
        raise ModelFileError(f"checkpoint {str(path)!r}: not a numpycnn training state of version "
                             f"{_STATE_VERSION}.")
    try:
        trainer.rng = generator_from_state(state["rng"]["shuffle"])
        trainer.augment_rng = generator_from_state(state["rng"]["augment"])
        for index, text in state["layer_rng"].items():
            layer = trainer.model.layers[int(index)]
            if not hasattr(layer, "rng"):
                raise ModelFileError(f"checkpoint: layer {index} ({layer.name}) has no random generator.")
            layer.rng = generator_from_state(text)
        trainer.history = History.from_dict(state["history"])
        trainer.base_lr = float(state["base_lr"])
        start = trainer.epochs if state["stop_training"] else int(state["epoch"]) + 1
    except (KeyError, IndexError, TypeError, ValueError) as err:
        if isinstance(err, ModelFileError):
            raise
        raise ModelFileError(f"checkpoint {str(path)!r}: malformed training state ({err!r}).") from None
    return start, state.get("callbacks", {})
