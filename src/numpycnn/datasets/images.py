"""Turn the pictures users hand in (PNG, JPEG, canvas exports, photos) into inputs like the data sets' own.

MNIST was made from NIST's bilevel scans: each digit was scaled, anti-aliased, to fit a 20x20 box
keeping its aspect ratio, then placed in a 28x28 field so that its centre of mass sits at the centre
(LeCun et al., 1998). Its digits are white ink (255) on a black background (0). :func:`preprocess`
repeats those steps on any picture:

1. flatten transparency: a canvas export with a transparent background and uniformly coloured strokes uses the
   alpha channel as the ink; other images are composited onto a background that contrasts with their visible
   pixels;
2. convert to grey (ITU-R 601-2 luma, as Pillow's ``"L"`` mode; 16-bit images are scaled by their full range);
3. measure the background from the border pixels and make the ink bright on black (inverting light paper);
4. suppress JPEG noise and paper texture: ink below :data:`NOISE_THRESHOLD` of the brightest ink is cleared;
5. crop to the bounding box of the ink;
6. digits: scale the longer side to 20 px (anti-aliased; strokes thinner than :data:`MIN_STROKE`
   thickened), paste into 28x28 centred by centre of mass; Fashion-MNIST: scale the longer side to
   28 px and centre the bounding box; CIFAR-10: no ink at all, the central square of the RGB picture
   resized to 32x32.

Every function returns ``uint8`` arrays shaped ``(C, H, W)``, like the data sets. Nothing here is model
math: the result then goes through the same normalisation as the training images.

Examples
--------
>>> from PIL import Image, ImageDraw
>>> canvas = Image.new("L", (200, 300), 255)
>>> ImageDraw.Draw(canvas).line([(100, 40), (100, 260)], fill=0, width=18)
>>> x = preprocess(canvas)
>>> x.shape, x.dtype
((1, 28, 28), dtype('uint8'))
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from numpycnn.datasets.preparation import Preparation, prepare_picture
from numpycnn.errors import DataError

#: The image styles :func:`preprocess` knows, by data-set name.
STYLES = ("mnist", "fashion-mnist", "cifar10")
#: Ink fainter than this fraction of the brightest ink is treated as background (JPEG ringing, paper grain).
NOISE_THRESHOLD = 0.25
#: An image whose ink contrast (0..1) never exceeds this is blank.
BLANK_CONTRAST = 0.08
#: Pictures larger than this (longer side, px) are downscaled first, before any other work.
MAX_WORKING_SIZE = 1024
#: Pictures with more pixels than this (after JPEG's reduced-scale decoding) are refused before they are
#: decoded: 16.8 megapixels, a 4096x4096 picture, is far more than a digit needs.
MAX_PIXELS = 4096 * 4096
#: Digits whose strokes would come out thinner than this (px at 20x20) are thickened by one pixel on each
#: side; MNIST's strokes are 2-4 px wide.
MIN_STROKE = 1.6
#: Visible pixels whose luma spans less than this (0..255) count as one uniform colour.
UNIFORM_SPREAD = 40.0

#: The only picture formats ever opened: Pillow's plugins for the others (EPS among them) may run external
#: programs, and nothing in a picture folder may ever be executed.
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF", "PPM")

#: Held while a file's header is opened under a warnings filter (``warnings.catch_warnings`` is not thread-safe).
_OPEN_LOCK = threading.Lock()

_DIGIT_BOX = 20
_FIELD = 28
_CIFAR_SIZE = 32


def open_image(path: str | os.PathLike[str], draft: tuple[int, int] | None = None) -> Any:
    """Open ``path`` with Pillow, upright (EXIF orientation applied), very large pictures downscaled.

    The size is checked against :data:`MAX_PIXELS` from the file's header, before anything is decoded; JPEG
    files are decoded at a reduced scale first (``draft``: at least ``draft`` = ``(W, H)`` pixels when given,
    else at least :data:`MAX_WORKING_SIZE`), so large photos stay cheap. Only the :data:`FORMATS` are opened;
    an animated picture gives its first frame.

    Raises
    ------
    DataError
        If the file is missing, unreadable, not an image Pillow can decode, too large, or a decompression
        bomb; the message names the path.
    """
    import warnings

    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with _OPEN_LOCK, warnings.catch_warnings():  # the warning filters are process-wide: one thread at a time
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path, formats=FORMATS)  # reads the header only
        try:
            if image.format == "JPEG":
                image.draft(image.mode, draft or (MAX_WORKING_SIZE, MAX_WORKING_SIZE))  # a reduced scale
            _check_pixels(path, image.size)
            image.load()
            if image.format != "PNG" or "exif" in image.info:  # PNG rarely has EXIF; reading it costs a lot
                ImageOps.exif_transpose(image, in_place=True)
        except BaseException:
            image.close()
            raise
    except FileNotFoundError:
        raise DataError(f"Image file {str(path)!r} does not exist.") from None
    except IsADirectoryError:
        raise DataError(f"{str(path)!r} is a directory, not an image file.") from None
    except UnidentifiedImageError:
        raise DataError(f"{str(path)!r} is not an image Pillow can read (expected one of "
                        f"{', '.join(FORMATS)}).") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise DataError(f"Image file {str(path)!r} is too large to decode safely: {err}") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError, struct.error) as err:
        raise DataError(f"Image file {str(path)!r} cannot be decoded: {err}") from None
    if max(image.size) > MAX_WORKING_SIZE:
        image.thumbnail((MAX_WORKING_SIZE, MAX_WORKING_SIZE), Image.Resampling.BOX)
    return image


def _check_pixels(path: str | os.PathLike[str], size: tuple[int, int]) -> None:
    width, height = size
    if width * height > MAX_PIXELS:
        raise DataError(
            f"Image file {str(path)!r} is {width}x{height} pixels ({width * height / 1e6:.1f} megapixels), more "
            f"than the {MAX_PIXELS / 1e6:.1f} allowed; a digit needs far fewer. Shrink or crop it first.")


def load_image(path: str | os.PathLike[str], style: Any = "mnist") -> np.ndarray:
    """Read one picture and preprocess it like ``style``'s images; ``uint8`` ``(C, H, W)``.

    ``style`` is a data set's name or a model's :class:`~numpycnn.datasets.preparation.Preparation` (then the
    picture is prepared exactly as that model's training pictures were).

    Raises
    ------
    DataError
        If the file cannot be read or holds no ink; the message names the path.
    """
    if isinstance(style, Preparation):
        return load_picture(path, style)
    image = open_image(path)
    try:
        return preprocess(image, style)
    except DataError as err:
        raise DataError(f"{str(path)!r}: {err}") from None


def load_picture(path: str | os.PathLike[str], preparation: Preparation) -> np.ndarray:
    """Read one picture file through :func:`open_image`'s guard and prepare it as ``preparation`` says
    (:func:`~numpycnn.datasets.preparation.prepare_picture`); ``uint8`` ``(C, H, W)``.

    JPEG files are decoded at the smallest scale that still gives at least the target size.

    Raises
    ------
    DataError
        If the file cannot be read, is too large, or is not a picture; the message names the path.
    """
    height, width = preparation.size
    image = open_image(path, draft=(width, height))
    try:
        return prepare_picture(image, preparation)
    except DataError as err:
        raise DataError(f"{str(path)!r}: {err}") from None
    finally:
        image.close()


def load_images(paths: Iterable[str | os.PathLike[str]], style: Any = "mnist") -> np.ndarray:
    """:func:`load_image` over many files, stacked: ``uint8`` ``(N, C, H, W)``."""
    arrays = [load_image(p, style) for p in paths]
    if not arrays:
        raise ValueError("load_images: `paths` must name at least one image. Got none.")
    return np.stack(arrays)


def style_for(input_shape: Sequence[int] | None, class_names: Sequence[str] | None = None,
              preparation: Any = None) -> Any:
    """The preprocessing of a model: its recorded :class:`~numpycnn.datasets.preparation.Preparation` when it
    has one, else a guess from its per-sample input shape and class names.

    Without a record (models trained on the built-in data sets, files written before the record existed):
    three channels mean CIFAR-10; otherwise Fashion-MNIST when the class names are garments, else digits.
    """
    if preparation is not None:
        return preparation
    if input_shape is not None and len(input_shape) == 3 and int(input_shape[0]) == 3:
        return "cifar10"
    garments = {"t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag"}
    if class_names and garments & {str(c).lower() for c in class_names}:
        return "fashion-mnist"
    return "mnist"


def preprocess(image: Any, style: Any = "mnist") -> np.ndarray:
    """Preprocess a Pillow image (or an ``(H, W)``/``(H, W, C)`` ``uint8`` array) like ``style``'s images.

    Parameters
    ----------
    image : PIL.Image.Image or numpy.ndarray
        Any Pillow mode: ``1``, ``L``, ``LA``, ``P`` (with or without transparency), ``RGB``, ``RGBA``,
        ``I;16``, ``I``, ``CMYK``, ...
    style : {"mnist", "fashion-mnist", "cifar10"} or Preparation
        A data set's style, or a model's recorded preparation (:func:`~numpycnn.datasets.preparation.prepare_picture`).

    Shape
    -----
    Returns ``uint8`` ``(1, 28, 28)`` for ``"mnist"`` and ``"fashion-mnist"``,
    ``(3, 32, 32)`` for ``"cifar10"``.

    Raises
    ------
    DataError
        If the picture is blank (no ink stands out from the background).
    ValueError
        If ``style`` is unknown.
    """
    from PIL import Image

    if isinstance(style, Preparation):
        return prepare_picture(image, style)
    if style not in STYLES:
        raise ValueError(f"preprocess: `style` must be one of {list(STYLES)}. Got {style!r}.")
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    if max(image.size) > MAX_WORKING_SIZE:
        image = image.copy()
        image.thumbnail((MAX_WORKING_SIZE, MAX_WORKING_SIZE), Image.Resampling.BOX)
    if min(image.size) < 1:
        raise DataError(f"The image is empty (size {image.size}).")
    if style == "cifar10":
        return _cifar(image)
    ink = ink_map(image)  # (H, W) float32 in [0, 1], 1 = full ink
    rows, cols = _bounding_box(ink)
    ink = ink[rows, cols]
    if style == "mnist":
        patch = _fit(ink, _DIGIT_BOX)
        if stroke_width(ink) * _DIGIT_BOX / max(ink.shape) < MIN_STROKE:
            patch = _thicken(patch)
        return _place_by_centre_of_mass(patch)[None]
    return _place_by_box(_fit(ink, _FIELD))[None]


def ink_map(image: Any) -> np.ndarray:
    """The ink of a picture, ``(H, W)`` ``float32`` in [0, 1]: 1 where the stroke is, 0 on the background.

    Transparency is flattened, the picture turned grey, the background level read from the border and
    subtracted (inverting light backgrounds), the result scaled so the brightest ink is 1, and ink below
    :data:`NOISE_THRESHOLD` cleared.

    Raises
    ------
    DataError
        If no ink stands out from the background.
    """
    grey = _grey(image)  # (H, W) float32 in [0, 1]
    background = float(np.median(_border(grey)))
    ink = grey - background if background < 0.5 else background - grey
    np.clip(ink, 0.0, None, out=ink)
    peak = float(ink.max())
    if peak < BLANK_CONTRAST:
        raise DataError(
            f"The image looks blank: its strongest ink differs from the background by {peak:.3f} "
            f"(need at least {BLANK_CONTRAST}). Draw darker or thicker strokes."
        )
    ink /= peak
    ink[ink < NOISE_THRESHOLD] = 0.0
    return ink


def _grey(image: Any) -> np.ndarray:
    """Grey levels in [0, 1], ``(H, W)`` ``float32``, with transparency flattened."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if not np.isfinite(values).all():
            raise DataError("The image holds NaN or infinite values; it is not a picture that can be read.")
        full = 65535.0 if mode.startswith("I;16") or values.max() > 255 else 255.0
        return np.clip(values / full, 0.0, 1.0).astype(np.float32)
    if mode == "P":
        image = image.convert("RGBA")
    elif mode in ("PA", "La"):
        image = image.convert("LA")
    elif mode == "RGBa":
        image = image.convert("RGBA")
    if image.mode in ("LA", "RGBA"):
        alpha = np.asarray(image.getchannel("A"), dtype=np.float32) / 255.0  # (H, W)
        luma = np.asarray(image.convert("L"), dtype=np.float32) / 255.0  # (H, W), ignores alpha
        if alpha.min() < 1.0:
            return _flatten_alpha(luma, alpha)
        return luma
    if image.mode != "L":
        image = image.convert("RGB").convert("L")
    return np.asarray(image, dtype=np.float32) / 255.0


def _flatten_alpha(luma: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Flatten a transparent picture to grey, light background and dark ink, or dark background and light ink.

    A canvas export stores strokes in one colour with the shape in alpha (and often black under the
    transparent pixels): then alpha is the ink, returned as white on black. Otherwise the picture is
    composited onto white when its visible pixels are mostly dark and onto black when mostly light.
    """
    visible = alpha > 0.5
    if not visible.any():
        return np.zeros_like(luma)
    seen = luma[visible] * 255.0
    spread = float(np.percentile(seen, 99) - np.percentile(seen, 1))
    if spread < UNIFORM_SPREAD:
        return alpha.astype(np.float32)
    base = 1.0 if float(seen.mean()) < 127.5 else 0.0
    return (alpha * luma + (1.0 - alpha) * base).astype(np.float32)


def _border(grey: np.ndarray) -> np.ndarray:
    """The pixels of a frame about 3% of the size wide (at least one pixel) around the picture, flattened."""
    h, w = grey.shape
    k = max(1, round(0.03 * min(h, w)))
    edges = (grey[:k], grey[h - k:], grey[:, :k], grey[:, w - k:])
    return np.concatenate([edge.ravel() for edge in edges])


def _bounding_box(ink: np.ndarray) -> tuple[slice, slice]:
    """Row and column slices of the smallest box holding all non-zero ink."""
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        raise DataError("The image holds no ink after removing noise.")
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _fit(ink: np.ndarray, box: int) -> np.ndarray:
    """Resize so the longer side is ``box`` px, keeping the aspect ratio; anti-aliased, ink peak back at 1."""
    from PIL import Image

    h, w = ink.shape
    scale = box / max(h, w)
    size = (max(1, min(box, round(w * scale))), max(1, min(box, round(h * scale))))  # Pillow wants (W, H)
    resized = Image.fromarray(ink.astype(np.float32), mode="F").resize(size, Image.Resampling.LANCZOS)
    out = np.clip(np.asarray(resized, dtype=np.float32), 0.0, None)  # Lanczos lobes can dip below 0
    peak = float(out.max())
    if peak <= 0.0:
        raise DataError("The image holds no ink after scaling.")
    return np.minimum(out / peak, 1.0)  # thin strokes fade when shrunk: restore full ink


def stroke_width(ink: np.ndarray) -> float:
    """Mean stroke width in pixels of ``ink > 0.5``: twice the ink area over its boundary, 0 without ink.

    For a strip of width ``w`` and length ``L``, area ``w L`` and boundary ``2 L`` give back ``w``.
    """
    solid = ink > 0.5
    area = int(solid.sum())
    padded = np.pad(solid, 1)  # (H + 2, W + 2)
    interior = (padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1]
                & padded[1:-1, :-2] & padded[1:-1, 2:])
    boundary = area - int(interior.sum())
    return 2.0 * area / boundary if boundary else 0.0


def _thicken(patch: np.ndarray) -> np.ndarray:
    """Grey dilation by the 4-neighbourhood: each pixel becomes the largest of itself and its neighbours."""
    padded = np.pad(patch, 1)  # (H + 2, W + 2)
    out = patch.copy()
    for view in (padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]):
        np.maximum(out, view, out=out)
    return out


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)


def _place_by_centre_of_mass(patch: np.ndarray) -> np.ndarray:
    """Paste ``patch`` into a 28x28 field so its centre of mass lands on (14, 14), kept inside the field."""
    h, w = patch.shape
    mass = float(patch.sum())
    centre_r = float((patch.sum(axis=1) * np.arange(h)).sum()) / mass
    centre_c = float((patch.sum(axis=0) * np.arange(w)).sum()) / mass
    top = int(np.clip(round(_FIELD / 2 - centre_r), 0, _FIELD - h))
    left = int(np.clip(round(_FIELD / 2 - centre_c), 0, _FIELD - w))
    field = np.zeros((_FIELD, _FIELD), np.float32)
    field[top:top + h, left:left + w] = patch
    return _to_uint8(field)


def _place_by_box(patch: np.ndarray) -> np.ndarray:
    """Paste ``patch`` into a 28x28 field centring its bounding box."""
    h, w = patch.shape
    top, left = (_FIELD - h) // 2, (_FIELD - w) // 2
    field = np.zeros((_FIELD, _FIELD), np.float32)
    field[top:top + h, left:left + w] = patch
    return _to_uint8(field)


def _cifar(image: Any) -> np.ndarray:
    """The central square of an RGB picture (transparency on white) resized to ``uint8`` (3, 32, 32)."""
    from PIL import Image

    if image.mode in ("P", "PA", "LA", "La", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image)
    if image.mode.startswith("I") or image.mode == "F":
        image = Image.fromarray(_to_uint8(_grey(image)))
    image = image.convert("RGB")
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    image = image.crop((left, top, left + side, top + side))
    image = image.resize((_CIFAR_SIZE, _CIFAR_SIZE), Image.Resampling.LANCZOS)
    rgb = np.asarray(image, dtype=np.uint8)  # (32, 32, 3)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))  # (3, 32, 32)
