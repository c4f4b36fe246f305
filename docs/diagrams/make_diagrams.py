"""Draw the diagrams of docs/tutorial.md and docs/math.md as SVG files in docs/images/, from numpycnn's own numbers.

Each picture is computed, not drawn by hand: the windows and columns of im2col come from ``sliding_window_view``,
the overlap counts of col2im from the loop reference's backward pass, max pooling's routing from
``reference.maxpool2d_backward``, and the shapes through the original network from the ``seed`` model's layers.
Run it after changing any of them; the output is the same on every run (no dates, a fixed hash salt)::

    python docs/diagrams/make_diagrams.py            # writes docs/images/diagram-*.svg
    python docs/diagrams/make_diagrams.py --out DIR  # somewhere else

Needs matplotlib (``pip install "numpycnn[plots]"`` or any matplotlib).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import FancyArrowPatch, Rectangle  # noqa: E402
from numpycnn.models import build_model  # noqa: E402

from numpycnn import reference  # noqa: E402

IMAGES = Path(__file__).resolve().parents[1] / "images"
COLOURS = ("#e4572e", "#17bebb", "#ffc914", "#76b041")  # one per highlighted window
plt.rcParams.update({"svg.hashsalt": "numpycnn", "svg.fonttype": "none", "font.family": "DejaVu Sans",
                     "font.size": 10})


def _grid(ax: plt.Axes, values: np.ndarray, x0: float, y0: float, fmt: str = "{:g}",
          colours: dict[tuple[int, int], str] | None = None, title: str = "") -> None:
    """Draw ``values`` (2-D) as a table of cells, top-left corner at (x0, y0), rows going down."""
    colours = colours or {}
    rows, cols = values.shape
    for r in range(rows):
        for c in range(cols):
            ax.add_patch(Rectangle((x0 + c, y0 - r - 1), 1, 1, facecolor=colours.get((r, c), "white"),
                                   edgecolor="#333333", linewidth=0.8))
            ax.text(x0 + c + 0.5, y0 - r - 0.5, fmt.format(values[r, c]), ha="center", va="center", fontsize=9)
    if title:
        ax.text(x0 + cols / 2, y0 + 0.35, title, ha="center", va="bottom", fontsize=10)


def _arrow(ax: plt.Axes, start: tuple[float, float], end: tuple[float, float], text: str = "",
           colour: str = "#333333") -> None:
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, color=colour, linewidth=1.2))
    if text:
        ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.25, text, ha="center", va="bottom", fontsize=9)


def _figure(width: float, height: float) -> tuple[plt.Figure, plt.Axes]:
    fig, ax = plt.subplots(figsize=(width * 0.42, height * 0.42))
    ax.set_xlim(0, width)
    ax.set_ylim(-height, 0)
    ax.set_aspect("equal")
    ax.axis("off")
    return fig, ax


def im2col(path: Path) -> None:
    """A 4x4 image, 2x2 windows: each window becomes one column; the convolution is one matrix product."""
    x = np.arange(1, 17, dtype=float).reshape(4, 4)  # (H, W)
    windows = np.lib.stride_tricks.sliding_window_view(x, (2, 2))  # (Ho, Wo, kh, kw) = (3, 3, 2, 2)
    cols = windows.reshape(9, 4).T  # (kh kw, Ho Wo) = (4, 9): column t is window t, row-major
    shown = {0: COLOURS[0], 1: COLOURS[1], 4: COLOURS[2]}  # windows (0, 0), (0, 1), (1, 1)
    fig, ax = _figure(24, 8)
    cell = {}
    for t, colour in shown.items():
        h, v = divmod(t, 3)
        for i in range(2):
            for j in range(2):
                cell.setdefault((h + i, v + j), colour)
    _grid(ax, x, 0.5, -1.5, colours=cell, title="x (H, W) = (4, 4), windows 2x2")
    _grid(ax, cols, 7.5, -1.5, colours={(r, t): c for t, c in shown.items() for r in range(4)},
          title="cols (kh kw, Ho Wo) = (4, 9): one column per window")
    _arrow(ax, (4.8, -3.5), (7.2, -3.5), "im2col")
    ax.text(7.5, -6.6, "y (F, Ho Wo) = W (F, kh kw) @ cols (kh kw, Ho Wo), then reshaped to (F, Ho, Wo)",
            fontsize=10)
    ax.text(0.5, -7.5, "Overlapping windows copy the same pixel into several columns (6 sits in 4 of them).",
            fontsize=9, color="#555555")
    fig.savefig(path, metadata={"Date": None}, bbox_inches="tight")
    plt.close(fig)


def col2im(path: Path) -> None:
    """The columns' gradient is added back onto the image: a pixel covered by k windows receives k terms."""
    x = np.zeros((1, 1, 4, 4))
    dy = np.ones((1, 1, 3, 3))  # every window sends back 1 ...
    w = np.ones((1, 1, 2, 2))  # ... through each of its 4 taps
    counts = reference.conv2d_backward(dy, x, w)[0][0, 0]  # (4, 4): how many windows cover each pixel
    fig, ax = _figure(24, 8)
    dcols = np.array([[f"d{r}{t}" for t in range(9)] for r in range(4)])
    _grid(ax, dcols, 0.5, -1.5, fmt="{}", colours={(r, t): COLOURS[k] for k, t in enumerate((0, 1, 4))
                                                    for r in range(4)},
          title="dcols = W^T dY (kh kw, Ho Wo) = (4, 9)")
    _grid(ax, counts, 14.5, -1.5, colours={(1, 1): COLOURS[3]}, title="dx (4, 4): terms added per pixel")
    _arrow(ax, (9.8, -3.5), (14.2, -3.5), "col2im: +=")
    ax.text(0.5, -6.6, "Each column goes back to its window, and overlapping windows add up: pixel (1, 1) gets one "
            "term from each of the 4 windows over it.", fontsize=9)
    ax.text(0.5, -7.5, "Counts from reference.conv2d_backward with dy = 1 and w = 1.", fontsize=9, color="#555555")
    fig.savefig(path, metadata={"Date": None}, bbox_inches="tight")
    plt.close(fig)


def maxpool_routing(path: Path) -> None:
    """Each dy goes to its window's first maximum; the other inputs of the window get 0."""
    x = np.array([[1.0, 3.0, 0.5, 0.2], [3.0, 2.0, 0.1, 0.4], [0.0, 0.0, 5.0, 1.0], [0.0, 0.0, 2.0, 6.0]])
    dy = np.array([[10.0, 20.0], [30.0, 40.0]])
    dx = reference.maxpool2d_backward(dy[None, None], x[None, None], 2)[0, 0]  # (4, 4)
    window = {(r, c): COLOURS[(r // 2) * 2 + c // 2] for r in range(4) for c in range(4)}
    fig, ax = _figure(20, 7)
    _grid(ax, x, 0.5, -1.5, colours=window, title="x (4, 4), windows 2x2")
    _grid(ax, dy, 7.5, -2.5, colours={(r, c): COLOURS[r * 2 + c] for r in range(2) for c in range(2)},
          title="dy (2, 2)")
    _grid(ax, dx, 13.5, -1.5, colours={(r, c): window[(r, c)] for r, c in zip(*np.nonzero(dx), strict=True)},
          title="dx = maxpool backward")
    _arrow(ax, (10.0, -3.5), (13.2, -3.5), "route")
    ax.text(0.5, -6.4, "Ties go to the first maximum in row-major order (the two 3s; the all-zero window), as "
            "in PyTorch.", fontsize=9)
    fig.savefig(path, metadata={"Date": None}, bbox_inches="tight")
    plt.close(fig)


def batchnorm_graph(path: Path) -> None:
    """The graph of batch norm per channel: x feeds the mean, the variance and the output, so dx has 3 terms."""
    fig, ax = _figure(29, 9)
    nodes = {"x": (1.0, -4.5), "mu": (6, -2), "xc": (6, -6.5), "var": (13, -2), "inv": (20, -2), "xhat": (20, -6.5),
             "y": (26.5, -6.5)}
    labels = {"x": "x", "mu": "μ = mean(x)", "xc": "x − μ", "var": "σ² = mean((x − μ)²)",
              "inv": "1 / √(σ² + ε)", "xhat": "x̂ = (x − μ) / √(σ² + ε)", "y": "y = γ x̂ + β"}
    for key, (cx, cy) in nodes.items():
        ax.text(cx, cy, labels[key], ha="center", va="center", fontsize=10,
                bbox={"boxstyle": "round,pad=0.4", "facecolor": "#f3f3f3", "edgecolor": "#333333"})
    for a, b in (("x", "mu"), ("x", "xc"), ("mu", "xc"), ("xc", "var"), ("var", "inv"), ("inv", "xhat"),
                 ("xc", "xhat"), ("xhat", "y")):
        (x0, y0), (x1, y1) = nodes[a], nodes[b]
        _arrow(ax, (x0 + 0.3 * (x1 - x0), y0 + 0.3 * (y1 - y0)), (x0 + 0.7 * (x1 - x0), y0 + 0.7 * (y1 - y0)))
    ax.text(0.5, -8.0, "Backward: dβ = Σ dy,  dγ = Σ dy x̂,  dx = γ / (m √(σ² + ε)) · (m dy − dβ − x̂ dγ)",
            fontsize=10)
    ax.text(0.5, -8.9, "x reaches x̂ three ways (directly, through μ, through σ²): the three terms of dx. "
            "Sums over the m = N H W values of a channel.", fontsize=9, color="#555555")
    fig.savefig(path, metadata={"Date": None}, bbox_inches="tight")
    plt.close(fig)


def network_shapes(path: Path) -> None:
    """The original network, its per-sample shapes as the seed model's layers compute them."""
    model = build_model("seed", seed=0)
    shape = tuple(model.input_shape)
    steps = [("input", shape)]
    for layer in model.layers:
        shape = tuple(layer.output_shape(shape))
        steps.append((repr(layer).split("(")[0], shape))
    fig, ax = _figure(4.6 * len(steps), 5)
    for k, (name, shp) in enumerate(steps):
        x0 = 0.3 + 4.6 * k
        height = 1.2 + 2.2 * min(1.0, np.prod(shp) / 5408)  # box height grows with the number of values
        ax.add_patch(Rectangle((x0, -2.5 - height / 2), 3.4, height, facecolor=COLOURS[k % 4], alpha=0.35,
                               edgecolor="#333333"))
        ax.text(x0 + 1.7, -2.5, f"{name}\n{shp}", ha="center", va="center", fontsize=9)
        if k:
            _arrow(ax, (x0 - 1.15, -2.5), (x0 - 0.05, -2.5))
    ax.text(0.3, -4.8, "The original network (math.md): 1 x 28 x 28 -> 10 scores, 1352 = 8 * 13 * 13 features. "
            "Box heights grow with the values per sample.", fontsize=9)
    fig.savefig(path, metadata={"Date": None}, bbox_inches="tight")
    plt.close(fig)


DIAGRAMS: dict[str, Callable[[Path], None]] = {
    "diagram-im2col.svg": im2col, "diagram-col2im.svg": col2im, "diagram-maxpool-routing.svg": maxpool_routing,
    "diagram-batchnorm-graph.svg": batchnorm_graph, "diagram-network-shapes.svg": network_shapes,
}


def main(argv: list[str] | None = None) -> list[Path]:
    """Write every diagram into ``--out`` (default docs/images); return the paths."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=IMAGES)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in DIAGRAMS.items():
        draw(args.out / name)
        written.append(args.out / name)
    return written


if __name__ == "__main__":
    for path in main():
        print(path)
