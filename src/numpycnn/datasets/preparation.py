"""How a model's pictures are prepared: the :class:`Preparation` record a model file keeps, and the one function
that applies it to any picture (:func:`prepare_picture`; a file: :func:`numpycnn.datasets.images.load_picture`),
for training, ``predict``, ``evaluate`` and the page.

A user's own pictures come in every mode and size. Each is turned into ``uint8`` ``(C, H, W)`` by the same steps:

1. transparency is flattened onto white (palette pictures with a transparent colour, ``LA``, ``RGBA``);
2. 16-bit and 32-bit grey pictures are scaled to 8 bits by their full range
   (:math:`v_8 = \\lfloor v_{16} / 256 \\rfloor`); CMYK, YCbCr and the other modes are converted to RGB;
3. the picture becomes grey (ITU-R 601-2 luma, Pillow's ``"L"``) for ``channels=1``, RGB for ``channels=3``;
4. it is resized to ``(H, W)``: ``"stretch"`` resizes the whole picture (Keras' ``image_dataset_from_directory``
   default), ``"crop"`` first cuts the largest central box of the target's aspect ratio. Pillow's bilinear filter
   widens with the scale factor, so a large picture is averaged, not sampled.

The record holds only what these steps need; the class names and the normalisation stay where model files
already keep them (``class_names``, ``normalization``).

Examples
--------
>>> import numpy as np
>>> prep = Preparation(channels=3, size=(32, 32))
>>> prepare_picture(np.zeros((50, 80), np.uint8), prep).shape
(3, 32, 32)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from numpycnn.errors import DataError

#: How a picture may be brought to the model's size.
RESIZE_MODES = ("stretch", "crop")
#: Largest side a prepared picture may have: beyond it a batch of activations no longer fits a CPU's memory.
MAX_SIDE = 1024
#: Version of the record's layout in model files.
VERSION = 1


@dataclass(frozen=True)
class Preparation:
    """How pictures become a model's inputs: ``channels`` (1 or 3), ``size`` ``(H, W)`` and ``resize``.

    Attributes
    ----------
    channels : int
        1 (grey) or 3 (RGB).
    size : tuple of int
        ``(H, W)`` of every prepared picture, each in ``[1, MAX_SIDE]``.
    resize : {"stretch", "crop"}
        ``"stretch"`` resizes the whole picture; ``"crop"`` keeps the central box of the target's aspect ratio.
    source : str
        What the model was trained on (``"folder"``, ``"npz"``, ``"npy"``), for people.
    test_fraction : float
        Fraction of each class held out as the test set when the data has no test part (0 if it had one).
    split_seed : int or None
        The seed that chose the held-out pictures, so ``evaluate --dataset PATH`` scores the same ones.
    """

    channels: int
    size: tuple[int, int]
    resize: str = "stretch"
    source: str = "folder"
    test_fraction: float = 0.0
    split_seed: int | None = None

    def __post_init__(self) -> None:
        problem = _problem(self.channels, self.size, self.resize, self.test_fraction, self.split_seed)
        if problem:
            raise ValueError(f"Preparation: {problem}")
        object.__setattr__(self, "size", (int(self.size[0]), int(self.size[1])))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The per-picture shape a model gets: ``(C, H, W)``."""
        return (self.channels, *self.size)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready record a model file keeps (``"preparation"`` in its metadata)."""
        return {"version": VERSION, "channels": self.channels, "size": list(self.size), "resize": self.resize,
                "source": self.source, "test_fraction": self.test_fraction, "split_seed": self.split_seed}

    @classmethod
    def from_dict(cls, record: Any) -> Preparation:
        """The :class:`Preparation` of a record written by :meth:`to_dict`.

        Raises
        ------
        ValueError
            If the record is not such a dictionary, or a value is out of range; the message says which.
        """
        keys = {"version", "channels", "size", "resize", "source", "test_fraction", "split_seed"}
        if not isinstance(record, dict) or set(record) != keys:
            raise ValueError(f"preparation must be an object with the keys {sorted(keys)}. Got {record!r:.200}.")
        if record["version"] != VERSION:
            raise ValueError(f"preparation version {record['version']!r:.20} is not {VERSION}; this numpycnn "
                             "is older than the file: upgrade numpycnn.")
        size = record["size"]
        if not isinstance(size, list) or len(size) != 2:
            raise ValueError(f"preparation size must be [H, W]. Got {size!r:.100}.")
        if not isinstance(record["source"], str):
            raise ValueError(f"preparation source must be a string. Got {record['source']!r:.100}.")
        problem = _problem(record["channels"], size, record["resize"], record["test_fraction"],
                           record["split_seed"])
        if problem:
            raise ValueError(f"preparation: {problem}")
        return cls(record["channels"], (size[0], size[1]), record["resize"], record["source"],
                   float(record["test_fraction"]), record["split_seed"])

    def describe(self) -> str:
        """One line for people: ``"3 channels, 32x32 (stretch)"``."""
        return f"{self.channels} channel{'s' if self.channels > 1 else ''}, {self.size[0]}x{self.size[1]} " \
               f"({self.resize})"


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _problem(channels: Any, size: Any, resize: Any, test_fraction: Any, split_seed: Any) -> str:
    """What is wrong with the values of a record, ``""`` when nothing is."""
    if not _is_int(channels) or channels not in (1, 3):
        return f"`channels` must be 1 or 3. Got {channels!r}."
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(_is_int(s) and 1 <= s <= MAX_SIDE for s in size)):
        return f"`size` must be (H, W) with each side an integer in [1, {MAX_SIDE}]. Got {size!r:.100}."
    if resize not in RESIZE_MODES:
        return f"`resize` must be one of {list(RESIZE_MODES)}. Got {resize!r:.100}."
    if (isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float))
            or not 0 <= test_fraction < 1):
        return f"`test_fraction` must be a fraction in [0, 1). Got {test_fraction!r:.100}."
    if split_seed is not None and (not _is_int(split_seed) or split_seed < 0):
        return f"`split_seed` must be None or an integer >= 0. Got {split_seed!r:.100}."
    return ""


def parse_size(value: Any, owner: str = "image_size") -> tuple[int, int] | None:
    """``None``, ``N``, ``(H, W)`` or the text ``"N"`` / ``"H,W"`` as ``(H, W)``.

    Raises
    ------
    ValueError
        For anything else, or a side outside ``[1, MAX_SIDE]``.
    """
    if value is None:
        return None
    parts: Any = value
    if isinstance(value, str):
        parts = [p.strip() for p in value.replace("x", ",").split(",")]
        try:
            parts = [int(p) for p in parts]
        except ValueError:
            parts = None
    elif _is_int(value):
        parts = [value]
    if isinstance(parts, (list, tuple)) and len(parts) == 1:
        parts = [parts[0], parts[0]]
    if (not isinstance(parts, (list, tuple)) or len(parts) != 2
            or not all(_is_int(p) and 1 <= p <= MAX_SIDE for p in parts)):
        raise ValueError(f"{owner}: `image_size` must be N or H,W with sides in [1, {MAX_SIDE}] (e.g. 32 or "
                         f"48,64). Got {value!r}.")
    return int(parts[0]), int(parts[1])


def normalise_mode(image: Any) -> Any:
    """The picture as an ``"L"``, ``"RGB"`` (or, for transparency flattened, ``"RGB"``) Pillow image.

    16-bit and 32-bit grey values are brought to 8 bits by their range; transparency goes onto white.

    Raises
    ------
    DataError
        If a 32-bit or floating-point picture holds NaN or infinite values.
    """
    from PIL import Image

    mode = image.mode
    if mode.startswith("I;16"):
        values = np.asarray(image, dtype=np.uint16)  # (H, W)
        return Image.fromarray((values >> 8).astype(np.uint8), mode="L")
    if mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)  # (H, W)
        if not np.isfinite(values).all():
            raise DataError("the picture holds NaN or infinite values.")
        if values.max(initial=0) > 255:
            values = values / 257.0  # a 16-bit range stored as 32-bit integers
        return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8), mode="L")
    if mode == "P" and "transparency" not in image.info:
        return image.convert("RGB")
    if mode in ("P", "PA", "LA", "La", "RGBa", "RGBA"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode in ("L", "RGB"):
        return image
    if mode == "1":
        return image.convert("L")
    return image.convert("RGB")  # CMYK, YCbCr, LAB, HSV


def prepare_picture(image: Any, preparation: Preparation) -> np.ndarray:
    """A Pillow image (or an ``(H, W)``/``(H, W, C)`` ``uint8`` array) prepared as ``preparation`` says.

    Shape
    -----
    Returns ``uint8`` ``(C, H, W)`` with ``(C, H, W) = preparation.input_shape``.

    Raises
    ------
    DataError
        If the picture is empty or holds NaN values.
    """
    from PIL import Image, ImageOps

    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    if min(image.size) < 1:
        raise DataError(f"the picture is empty (size {image.size}).")
    image = normalise_mode(image)
    mode = "L" if preparation.channels == 1 else "RGB"
    if image.mode != mode:
        image = image.convert(mode)
    height, width = preparation.size
    if preparation.resize == "crop":
        image = ImageOps.fit(image, (width, height), Image.Resampling.BILINEAR)
    elif image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.uint8)  # (H, W) or (H, W, 3)
    if pixels.ndim == 2:
        return pixels[None].copy()  # (1, H, W)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))  # (H, W, 3) -> (3, H, W)


__all__ = ["MAX_SIDE", "RESIZE_MODES", "Preparation", "normalise_mode", "parse_size", "prepare_picture"]
