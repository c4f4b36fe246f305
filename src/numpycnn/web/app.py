"""The JSON API of the drawing page, without HTTP: each route's request (a dict) to its answer (a dict).

:class:`App` holds the served models and the page's training; :func:`decode_image` checks a picture's data URL
at every step before its pixels are decoded. Errors are :class:`RequestError` with the HTTP status to answer
(a 4xx and a message); :mod:`numpycnn.web.server` carries them over HTTP. The routes are listed there.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from numpycnn.errors import DataError
from numpycnn.web import explain, learn, train

#: The page's own files, read once when an :class:`App` starts (requests never reach the file system).
STATIC_DIR = Path(__file__).resolve().parent / "static"
#: Largest picture decoded, in pixels (width x height), checked from the image header before decoding.
MAX_PIXELS = 25_000_000
#: Media types accepted in data URLs, with the Pillow format each must really be.
IMAGE_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}
#: Models trained in the page kept on offer, in memory; the oldest goes when one more is trained.
MAX_TRAINED = 4
_DATA_URL = re.compile(r"data:([a-z]+/[a-z0-9.+-]+);base64,", re.IGNORECASE)


class RequestError(Exception):
    """A request the server refuses: an HTTP status and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class ServedModel:
    """A model on offer: its name in the API, a title for people, where it came from, its test accuracy."""

    name: str
    title: str
    model: Any
    source: str
    accuracy: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "source": self.source, "accuracy": self.accuracy,
                "parameters": self.model.num_parameters()}


# -- requests to answers -------------------------------------------------------------------------------------
def decode_image(data_url: Any) -> Any:
    """A Pillow image from a ``data:image/...;base64,`` URL, checked at every step before the pixels are decoded.

    Raises
    ------
    RequestError
        400 for a missing or malformed URL, base64 or image; 415 for a media type or format other than PNG,
        JPEG or WebP; 413 for more than :data:`MAX_PIXELS` pixels.
    """
    from PIL import Image

    if not isinstance(data_url, str):
        raise RequestError(400, '`image` must be a data URL string such as "data:image/png;base64,...". '
                                f"Got {type(data_url).__name__}.")
    match = _DATA_URL.match(data_url)
    if not match:
        raise RequestError(400, '`image` must be a data URL starting "data:image/png;base64," '
                                f"(or image/jpeg, image/webp). Got {data_url[:40]!r}.")
    media = match.group(1).lower()
    if media not in IMAGE_TYPES:
        raise RequestError(415, f"`image` must be PNG, JPEG or WebP. Got {media!r}.")
    try:
        raw = base64.b64decode(data_url[match.end():], validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, "`image` is not valid base64 after the data URL's comma.") from None
    # Pillow's decoders answer damaged or hostile data with many exception types (OSError, ValueError,
    # SyntaxError, struct.error, IndexError, EOFError, ...): whatever they raise while reading these bytes is a
    # picture this page will not decode, a 400, never a 500. A header that claims more pixels than Pillow's
    # decompression-bomb limit raises DecompressionBombError from `open`, before any pixel is decoded: a 413.
    try:
        image = Image.open(io.BytesIO(raw))  # reads the header only
    except Image.DecompressionBombError as err:
        raise RequestError(413, f"`image` is too large to decode: {_claimed_size(err)}the limit is "
                                f"{MAX_PIXELS:,} pixels.") from None
    except Exception:
        raise RequestError(400, f"`image` is not a readable {IMAGE_TYPES[media]} picture.") from None
    if image.format not in IMAGE_TYPES.values():
        raise RequestError(415, f"`image` must be PNG, JPEG or WebP. Got {image.format}.")
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise RequestError(413, f"`image` has {width}x{height} pixels; the limit is {MAX_PIXELS:,} pixels.")
    if width * height == 0:
        raise RequestError(400, f"`image` has {width}x{height} pixels: it is empty.")
    try:
        if image.format == "JPEG":
            image.draft(image.mode, (1024, 1024))  # decode at a reduced scale: cheap, as `numpycnn predict` does
        image.load()
    except Exception:
        raise RequestError(400, f"`image` cannot be decoded as {image.format}: the data is damaged.") from None
    return image


def _claimed_size(err: Exception) -> str:
    """``"it claims N pixels; "`` from Pillow's decompression-bomb message, or ``""`` if it gives no count."""
    match = re.search(r"\((\d+) pixels\)", str(err))
    return f"it claims {int(match.group(1)):,} pixels; " if match else ""


def _index(payload: dict[str, Any], key: str) -> int:
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(400, f"`{key}` must be an integer. Got {value!r}.")
    return value


class App:
    """The API's logic, free of HTTP: models by name, and the answer to each request's JSON payload."""

    def __init__(self, models: list[ServedModel], default: str | None = None) -> None:
        if not models:
            raise ValueError("App: `models` must hold at least one model. Got none.")
        self.models = {entry.name: entry for entry in models}
        self.default = default or models[0].name
        if self.default not in self.models:
            raise ValueError(f"App: `default` must be one of {list(self.models)}. Got {default!r}.")
        self.static = {path.name: path.read_bytes() for path in STATIC_DIR.iterdir() if path.is_file()}
        self.trained: list[str] = []  # names of the models trained here, oldest first
        self.models_lock = threading.Lock()  # for writers; readers see one dict or the next (copy on write)
        self.training = train.TrainingJob(publish=self.add_trained)

    def served(self, name: Any) -> ServedModel:
        models = self.models  # one dict throughout: a training may replace it meanwhile (add_trained)
        if name is None:
            return models[self.default]
        if not isinstance(name, str) or name not in models:
            raise RequestError(404, f"`model` must be one of {sorted(models)}. Got {name!r}.")
        return models[name]

    def add_trained(self, model: Any, description: str, accuracy: float) -> tuple[str, str]:
        """Offer a model trained in the page as ``trained-N`` (dropping the oldest beyond :data:`MAX_TRAINED`);
        its name and title. The models' dict is replaced, never changed, so requests that read it need no lock."""
        with self.models_lock:
            number = len(self.trained) + 1
            name = f"trained-{number}"  # never a shipped model's name nor "file"
            entry = ServedModel(name, f"Trained here #{number}: {description}", model,
                                "trained in this page (in memory)", accuracy)
            self.trained.append(name)
            models = {**self.models, name: entry}
            for old in self.trained[:-MAX_TRAINED]:
                models.pop(old, None)
            self.models = models
        return name, entry.title

    def train(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """``/api/train`` (settings checked, then a training started) and ``/api/train/cancel``."""
        try:
            if path == "/api/train/cancel":
                if set(payload) - {"id"}:
                    raise RequestError(400, f"/api/train/cancel takes only `id`. Got {sorted(payload)!r:.80}.")
                run_id = payload.get("id")
                if run_id is not None and (isinstance(run_id, bool) or not isinstance(run_id, int)):
                    raise RequestError(400, f"`id` must be an integer. Got {run_id!r:.40}.")
                return self.training.cancel(run_id)
            try:
                settings = train.check_settings(payload)
            except ValueError as err:
                raise RequestError(400, str(err)) from None
            return self.training.start(settings)
        except (train.Busy, train.NotRunning) as err:
            raise RequestError(409, str(err)) from None

    def close(self) -> None:
        """Cancel a running training and wait for its thread."""
        self.training.close()

    def list_models(self) -> dict[str, Any]:
        return {"default": self.default, "models": [entry.summary() for entry in self.models.values()]}

    def describe(self, name: Any) -> dict[str, Any]:
        entry = self.served(name)
        return {**entry.summary(), **explain.describe(entry.model)}

    def predict(self, payload: dict[str, Any]) -> dict[str, Any]:
        entry = self.served(payload.get("model"))
        image = decode_image(payload.get("image"))
        with entry.lock:
            try:
                return {"model": entry.name, **explain.explain(entry.model, image)}
            except (DataError, ValueError) as err:  # a blank picture; outputs that overflow float32
                raise RequestError(422, str(err)) from None

    def conv_step(self, payload: dict[str, Any]) -> dict[str, Any]:
        entry = self.served(payload.get("model"))
        where = [_index(payload, key) for key in ("layer", "channel", "row", "col")]
        image = decode_image(payload.get("image"))
        with entry.lock:
            try:
                _, x = explain.prepare(entry.model, image)
                outputs = explain.layer_outputs(entry.model, x)
                return {"model": entry.name, **explain.conv_step(entry.model, x, outputs, *where)}
            except DataError as err:
                raise RequestError(422, str(err)) from None
            except ValueError as err:
                raise RequestError(400, str(err)) from None

    def learn(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """``/api/gradients``, ``/api/sgd-step`` and ``/api/weight-gradient``: the arguments checked, then the
        picture decoded, then the answer computed on a copy of the model (taken under the model's lock)."""
        entry = self.served(payload.get("model"))
        try:
            args: dict[str, Any] = {"target": learn.check_target(entry.model, payload.get("target"))}
            if path == "/api/sgd-step":
                args["lr"] = learn.check_lr(payload.get("lr"))
            if path == "/api/weight-gradient":
                args["where"] = tuple(learn.check_index(payload, key) for key in learn.WEIGHT_KEYS)
        except ValueError as err:
            raise RequestError(400, str(err)) from None
        image = decode_image(payload.get("image"))
        with entry.lock:
            model = learn.working_copy(entry.model)
        answer = {"/api/gradients": learn.gradients, "/api/sgd-step": learn.sgd_step,
                  "/api/weight-gradient": learn.weight_gradient}[path]
        try:
            return {"model": entry.name, **answer(model, image, **args)}
        except (DataError, FloatingPointError) as err:  # a blank picture; numbers that overflowed
            raise RequestError(422, str(err)) from None
        except ValueError as err:
            raise RequestError(400, str(err)) from None
