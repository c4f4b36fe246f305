"""The pictures of a training run, as PNG files: curves, gradient health, confusion matrix, filters, feature maps,
mistakes.

Each ``plot_*(..., path)`` draws on its own :class:`matplotlib.figure.Figure` rendered by the Agg
backend (never ``pyplot``, so no window opens and no global backend is switched), writes the PNG to a
temporary file in the same folder and renames it over ``path``, so a reader never sees half a picture.
matplotlib is imported only when a plot is drawn. The plots contain no model math: they draw arrays
that the library computed.

Examples
--------
>>> plot_history({"loss": [0.9, 0.5], "accuracy": [0.7, 0.85]}, "curves.png")  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from numpycnn.core import backend
from numpycnn.core.files import atomic_write
from numpycnn.training.health import HEALTHY_RATIO


def _figure(width: float, height: float) -> Any:
    """A new figure attached to an Agg canvas (off screen, independent of pyplot's state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` as a PNG to ``path`` atomically (a temporary file beside it, then ``os.replace``).

    The figure is cleared afterwards: it is not registered with pyplot, so that frees it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_write(path) as handle:
            fig.savefig(handle, format="png", bbox_inches="tight")
    finally:
        fig.clear()
    return path


def _grid(count: int, max_cols: int) -> tuple[int, int]:
    cols = max(1, min(max_cols, count))
    return math.ceil(count / cols), cols


def _show_image(ax: Any, image: np.ndarray, **kwargs: Any) -> None:
    """Draw one ``(C, H, W)`` image: grey for one channel, RGB for three."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[0] == 1:
        ax.imshow(image[0], cmap="gray", **kwargs)
    elif image.ndim == 3 and image.shape[0] == 3:
        ax.imshow(np.moveaxis(image, 0, -1), **kwargs)  # (3, H, W) -> (H, W, 3)
    else:
        ax.imshow(image, cmap="gray", **kwargs)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_history(history: Mapping[str, Sequence[float]], path: str | os.PathLike[str]) -> Path:
    """Loss and accuracy per epoch, training and (when present) validation, side by side.

    Parameters
    ----------
    history : mapping
        ``History.history``: lists ``loss``, ``accuracy`` and optionally ``val_loss``, ``val_accuracy``.
    """
    if not history.get("loss"):
        raise ValueError(
            f"plot_history: `history` must hold a non-empty 'loss' list. Got keys {sorted(history)}."
        )
    from matplotlib.ticker import MaxNLocator

    fig = _figure(10, 4)
    for ax, key, title in zip(fig.subplots(1, 2), ("loss", "accuracy"), ("Loss", "Accuracy"), strict=True):
        for prefix, label, style in (("", "train", "o-"), ("val_", "validation", "s--")):
            values = history.get(prefix + key)
            if values:
                ax.plot(range(1, len(values) + 1), values, style, label=label)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs 1, 2, ... never 1.2
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    return save_figure(fig, path)


def plot_gradient_health(gradients: Mapping[str, Mapping[str, Sequence[float]]],
                         path: str | os.PathLike[str]) -> Path:
    """Gradient health per epoch: each layer's gradient norm, and its update/weight ratio against the healthy band.

    Both on log scales, one line per layer with parameters (:mod:`numpycnn.training.health` defines the figures
    and how to read them): the epoch means as lines with dots, the epoch's largest step as a dotted line of the same
    colour; the ratio panel shades :data:`~numpycnn.training.health.HEALTHY_RATIO`.

    Parameters
    ----------
    gradients : mapping
        ``History.gradients``: per layer key (``"0.Conv2D"``), lists ``grad_norm`` and ``update_ratio``.
    """
    from matplotlib.ticker import MaxNLocator

    if not gradients or not any(fields.get("grad_norm") for fields in gradients.values()):
        raise ValueError("plot_gradient_health: `gradients` holds no epoch. Train with fit(..., "
                         "gradient_health=True) (the default) for at least one epoch.")
    fig = _figure(10, 4)
    norm_ax, ratio_ax = fig.subplots(1, 2)
    for key, fields in gradients.items():
        for ax, name in ((norm_ax, "grad_norm"), (ratio_ax, "update_ratio")):
            line = None
            for suffix, style, extra in (("", "o-", {"label": key}), ("_max", ":", {"alpha": 0.6})):
                values = np.asarray(fields.get(name + suffix, []), float)
                shown = np.where(np.isfinite(values) & (values > 0), values, np.nan)  # log axes show no 0, inf
                if len(values):
                    color = {} if line is None else {"color": line.get_color()}
                    drawn = ax.plot(range(1, len(values) + 1), shown, style, **extra, **color)[0]
                    line = line or drawn
    ratio_ax.axhspan(*HEALTHY_RATIO, color="tab:green", alpha=0.12, label="healthy (1e-4 to 1e-2)")
    ratio_ax.axhline(1e-3, color="tab:green", alpha=0.5, linewidth=1)
    for ax, title in ((norm_ax, "Gradient norm ||dL/dθ|| (mean; dotted: largest)"),
                      (ratio_ax, "Update / weight ||Δθ|| / ||θ|| (mean; dotted: largest)")):
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, which="both")
    norm_ax.legend(fontsize=8)
    ratio_ax.legend(fontsize=8)
    return save_figure(fig, path)


def confusion_matrix(true: Sequence[int], predicted: Sequence[int], num_classes: int) -> np.ndarray:
    """Counts ``matrix[t, p]`` of samples of true class ``t`` predicted as ``p``; ``int64`` (K, K)."""
    true, predicted = np.asarray(true, np.int64), np.asarray(predicted, np.int64)
    if true.shape != predicted.shape:
        raise ValueError(f"confusion_matrix: `true` and `predicted` must have the same shape. "
                         f"Got {true.shape} and {predicted.shape}.")
    counts = np.bincount(true * num_classes + predicted, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)  # (K * K,) -> (K, K)


def plot_confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], path: str | os.PathLike[str],
                          title: str = "Confusion matrix") -> Path:
    """Counts of true class (rows) against predicted class (columns), each cell labelled with its count.

    Parameters
    ----------
    matrix : ndarray, shape (K, K)
        ``matrix[t, p]`` = number of test images of class ``t`` predicted as ``p``.
    class_names : sequence of K str
    """
    matrix = np.asarray(matrix)
    k = len(class_names)
    if matrix.shape != (k, k):
        raise ValueError(f"plot_confusion_matrix: `matrix` must have shape ({k}, {k}). Got {matrix.shape}.")
    fig = _figure(1.0 + 0.6 * k, 0.6 + 0.6 * k)
    ax = fig.subplots()
    im = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    threshold = matrix.max() / 2 if matrix.size else 0
    for t in range(k):
        for p in range(k):
            ax.text(p, t, f"{int(matrix[t, p])}", ha="center", va="center", fontsize=7,
                    color="white" if matrix[t, p] > threshold else "black")
    ax.set_xticks(range(k), [str(c) for c in class_names], rotation=45, ha="right")
    ax.set_yticks(range(k), [str(c) for c in class_names])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return save_figure(fig, path)


def plot_filters(weight: np.ndarray, path: str | os.PathLike[str], title: str = "First-layer filters",
                 max_rows: int = 16, max_cols: int = 16) -> Path:
    """Convolution filters as a grid, one row per output channel and one column per input channel.

    All tiles share one diverging colour scale centred on zero (blue negative, white zero, red positive) with a
    colour bar, so weights compare across tiles. A large layer shows its first ``max_rows`` x ``max_cols``
    kernels and says "N of M shown" in the title; the picture stays a bounded size.

    Parameters
    ----------
    weight : ndarray, shape (out_channels, in_channels, kh, kw)
    max_rows, max_cols : int
        The most output and input channels drawn.
    """
    weight = np.asarray(backend.to_host(weight), dtype=np.float64)  # a host copy of a device array
    if weight.ndim != 4:
        raise ValueError(f"plot_filters: `weight` must have shape (out, in, kh, kw). Got {weight.shape}.")
    out_ch, in_ch = weight.shape[:2]
    rows, cols = min(out_ch, max_rows), min(in_ch, max_cols)
    shown = weight[:rows, :cols]
    limit = float(np.max(np.abs(shown))) or 1.0
    single = in_ch == 1  # one kernel per output channel: wrap them into rows of up to 8, titled by channel
    grid_rows, grid_cols = ((rows + 7) // 8, min(rows, 8)) if single else (rows, cols)
    tile = min(0.9, 9.0 / max(grid_rows, grid_cols, 1))
    fig = _figure(tile * grid_cols + 1.4, tile * grid_rows + 0.9)
    axes = np.asarray(fig.subplots(grid_rows, grid_cols, squeeze=False))
    image = None
    for ax in axes.ravel():
        ax.axis("off")
    for o in range(rows):
        for i in range(cols):
            ax = axes[divmod(o, 8)] if single else axes[o, i]
            ax.axis("on")
            image = ax.imshow(shown[o, i], cmap="RdBu_r", vmin=-limit, vmax=limit)
            ax.set_xticks([])
            ax.set_yticks([])
            if single:
                ax.set_title(f"out {o}", fontsize=7)
                continue
            if i == 0:
                ax.set_ylabel(f"out {o}", fontsize=7)
            if o == rows - 1:
                ax.set_xlabel(f"in {i}", fontsize=7)
    fig.colorbar(image, ax=axes.ravel().tolist(), fraction=0.04, pad=0.02)
    count = f"{rows * cols} of {out_ch * in_ch} kernels shown" if rows * cols < out_ch * in_ch else \
        f"{out_ch * in_ch} kernels"
    fig.suptitle(f"{title} ({out_ch} out x {in_ch} in, {count})", fontsize=9)
    return save_figure(fig, path)


def plot_feature_maps(image: np.ndarray, maps: Sequence[tuple[str, np.ndarray]], path: str | os.PathLike[str],
                      max_channels: int = 16) -> Path:
    """One input image, then a row of channels for each block's output.

    Parameters
    ----------
    image : ndarray, shape (C, H, W)
    maps : sequence of (name, ndarray of shape (channels, h, w))
        The activations of ``image`` after each convolution block, e.g. from :func:`feature_maps`.
    """
    if not maps:
        raise ValueError("plot_feature_maps: `maps` must hold at least one block's output. Got none.")
    cols = min(max_channels, max(m.shape[0] for _, m in maps))
    rows = len(maps) + 1
    fig = _figure(1.1 * max(cols, 2), 1.3 * rows)
    axes = np.asarray(fig.subplots(rows, max(cols, 2), squeeze=False))
    for ax in axes.ravel():
        ax.axis("off")
    _show_image(axes[0, 0], image)
    axes[0, 0].set_title("input", fontsize=8)
    for r, (name, block) in enumerate(maps, start=1):
        shown = min(cols, block.shape[0])
        low, high = float(block[:shown].min()), float(block[:shown].max())
        image = None
        for c in range(shown):
            image = axes[r, c].imshow(block[c], cmap="viridis", vmin=low, vmax=high)
            axes[r, c].text(0.02, 0.98, str(c), transform=axes[r, c].transAxes, fontsize=6, va="top",
                            color="white")
        fig.colorbar(image, ax=axes[r, :].tolist(), fraction=0.02, pad=0.01)
        axes[r, 0].set_title(f"{name}: {shown} of {block.shape[0]} channels shown", fontsize=8, loc="left")
    return save_figure(fig, path)


def feature_maps(model: Any, image: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """The activations of one image after each convolution block of a ``Sequential`` model, in inference mode.

    The model runs its own execution plan (:meth:`~numpycnn.model.sequential.Sequential.plan`, the steps ``fit``
    runs, fused pairs included). A block starts at a step that begins with a ``Conv2D`` and ends before the next
    one or at the first step whose output is not an image (``Flatten``); its output is what the next block sees.
    Blocks are named by the layers they span, like ``"block 1 (layers 0-3)"``.

    Parameters
    ----------
    model : Sequential
    image : ndarray, shape (C, H, W)
        Already normalised as the model expects.

    Returns
    -------
    list of (name, ndarray of shape (channels, h, w)), one per block.
    """
    x = backend.to_device(np.asarray(image)[None], model.device)  # (1, C, H, W) where the model is
    maps: list[tuple[str, np.ndarray]] = []
    first: int | None = None  # the first layer of the open block
    last = 0
    for step in model.plan().steps:
        starts_block = step.layers[0].name == "Conv2D"
        if first is not None and starts_block:
            maps.append((f"block {len(maps) + 1} (layers {first}-{last})", backend.to_host(x[0])))
            first = None
        y = step.forward(x, training=False)
        if starts_block:
            first = step.start
        if first is not None and y.ndim != 4:
            maps.append((f"block {len(maps) + 1} (layers {first}-{last})", backend.to_host(x[0])))
            first = None
        x, last = y, step.stop - 1
    if first is not None:
        maps.append((f"block {len(maps) + 1} (layers {first}-{last})", backend.to_host(x[0])))
    return maps


def layer_output(model: Any, image: np.ndarray, index: int) -> np.ndarray:
    """The output of layer ``index`` of a ``Sequential`` for one image, in inference mode, shape (channels, h, w).

    Each layer runs on its own (no fused steps), so the output of any layer is there to see: a convolution's
    output before its ReLU (``index`` of the Conv2D) or after it (``index`` of the ReLU).

    Parameters
    ----------
    model : Sequential
    image : ndarray, shape (C, H, W)
        Already normalised as the model expects.
    index : int
        The layer, as ``model.summary()`` numbers it (negative counts from the end).
    """
    layers = model.layers
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not -len(layers) <= index < len(layers):
        raise ValueError(f"layer_output: `index` must be a layer index in [{-len(layers)}, {len(layers) - 1}]. "
                         f"Got {index!r}. model.summary() numbers the layers.")
    x = backend.to_device(np.asarray(image)[None], model.device)  # (1, C, H, W) where the model is
    for layer in layers[:index % len(layers) + 1]:
        x = layer.forward(x, training=False)
        layer.cache = None
    return backend.to_host(x[0])


def plot_layer_outputs(model: Any, image: np.ndarray, indices: Sequence[int], path: str | os.PathLike[str],
                       max_channels: int = 16) -> Path:
    """The input image, then one row per layer in ``indices``: its output channels, numbered, with a colour bar
    and "N of M channels shown" (see :func:`layer_output`)."""
    maps = [(f"layer {i} ({model.layers[i].name})", layer_output(model, image, i)) for i in indices]
    maps = [(name, m if m.ndim == 3 else m.reshape(-1, 1, 1)) for name, m in maps]  # (features,) -> (F, 1, 1)
    return plot_feature_maps(image, maps, path, max_channels=max_channels)


def plot_misclassified(images: np.ndarray, true: Sequence[int], predicted: Sequence[int],
                       class_names: Sequence[str], path: str | os.PathLike[str],
                       max_images: int = 36) -> Path:
    """A grid of misclassified images, each titled ``predicted (true)``; says so when there are none.

    Parameters
    ----------
    images : ndarray, shape (N, C, H, W)
        The misclassified images (raw ``uint8`` or floats in [0, 1]).
    true, predicted : sequences of N class indices
    """
    images = np.asarray(images)
    count = min(len(images), max_images)
    rows, cols = _grid(max(count, 1), 6)
    fig = _figure(1.6 * cols, 1.8 * rows + 0.4)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes:
        ax.axis("off")
    if count == 0:
        axes[0].text(0.5, 0.5, "no misclassified images", ha="center", va="center")
    for ax, image, t, p in zip(axes, images[:count], true, predicted, strict=False):
        _show_image(ax, image)
        ax.set_title(f"{class_names[int(p)]} ({class_names[int(t)]})", fontsize=8, color="crimson")
    fig.suptitle(f"Misclassified: predicted (true); {count} of {len(images)} shown")
    return save_figure(fig, path)
