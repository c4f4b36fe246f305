"""The plots: each writes a valid PNG atomically, draws what it is given, and rejects inconsistent input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from numpycnn import plots


def _png(path) -> Image.Image:
    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG"
        return image.copy()


def _no_temporaries(folder) -> None:
    leftovers = [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_history_with_and_without_validation(tmp_path):
    history = {"loss": [1.0, 0.5, 0.3], "accuracy": [0.6, 0.8, 0.9], "val_loss": [0.9, 0.6, 0.5],
               "val_accuracy": [0.65, 0.78, 0.85]}
    image = _png(plots.plot_history(history, tmp_path / "curves.png"))
    assert image.width > 400 and image.height > 200
    plots.plot_history({"loss": [1.0], "accuracy": [0.5], "val_loss": [], "val_accuracy": []},
                       tmp_path / "one.png")
    _png(tmp_path / "one.png")
    _no_temporaries(tmp_path)


def test_history_without_loss_is_refused(tmp_path):
    with pytest.raises(ValueError, match="non-empty 'loss'"):
        plots.plot_history({"accuracy": [0.5]}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_confusion_matrix_counts():
    true = np.array([0, 0, 1, 2, 2, 2])
    predicted = np.array([0, 1, 1, 2, 0, 2])
    expected = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    np.testing.assert_array_equal(plots.confusion_matrix(true, predicted, 3), expected)
    with pytest.raises(ValueError, match="same shape"):
        plots.confusion_matrix(true, predicted[:-1], 3)


def test_confusion_matrix_plot(tmp_path):
    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 100, size=(10, 10))
    names = [str(i) for i in range(10)]
    _png(plots.plot_confusion_matrix(matrix, names, tmp_path / "cm.png"))
    with pytest.raises(ValueError, match=r"shape \(3, 3\)"):
        plots.plot_confusion_matrix(matrix, ["a", "b", "c"], tmp_path / "bad.png")


@pytest.mark.parametrize("shape", [(8, 1, 3, 3), (6, 3, 5, 5), (1, 1, 3, 3)])
def test_filters(tmp_path, shape):
    weight = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    _png(plots.plot_filters(weight, tmp_path / "filters.png"))


def test_filters_need_4d_weight(tmp_path):
    with pytest.raises(ValueError, match="out, in, kh, kw"):
        plots.plot_filters(np.zeros((10, 20)), tmp_path / "f.png")


def test_misclassified_grid_and_empty_grid(tmp_path):
    images = np.random.default_rng(2).integers(0, 256, size=(7, 1, 28, 28), dtype=np.uint8)
    names = [str(i) for i in range(10)]
    _png(plots.plot_misclassified(images, [1] * 7, [2] * 7, names, tmp_path / "wrong.png"))
    _png(plots.plot_misclassified(images[:0], [], [], names, tmp_path / "none.png"))
    colour = np.random.default_rng(3).integers(0, 256, size=(3, 3, 32, 32), dtype=np.uint8)
    _png(plots.plot_misclassified(colour, [0, 1, 2], [2, 0, 1], names, tmp_path / "rgb.png"))


def test_feature_maps_of_each_conv_block(tmp_path):
    from numpycnn.model.zoo import build_model

    model = build_model("lenet5", seed=0)
    image = np.random.default_rng(4).random((1, 28, 28)).astype(np.float32)
    maps = plots.feature_maps(model, image)
    # LeNet-5: conv-act-pool twice, so two blocks, each ending at its pooling layer.
    assert [m.shape for _, m in maps] == [(6, 14, 14), (16, 5, 5)]
    assert [name for name, _ in maps] == ["block 1 (layers 0-2)", "block 2 (layers 3-5)"]
    _png(plots.plot_feature_maps(image, maps, tmp_path / "maps.png"))
    with pytest.raises(ValueError, match="at least one"):
        plots.plot_feature_maps(image, [], tmp_path / "none.png")


def test_feature_maps_match_the_forward_pass():
    from numpycnn.model.zoo import build_model

    model = build_model("seed", seed=0)
    image = np.random.default_rng(5).random((1, 28, 28)).astype(np.float32)
    (name, block), = plots.feature_maps(model, image)
    expected = image[None]
    for layer in model.layers[:3]:  # Conv2D, ReLU, MaxPool2D
        expected = layer.forward(expected, training=False)
    np.testing.assert_array_equal(block, expected[0])


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "plot.png"
    target.write_bytes(b"old")

    class Broken:
        def savefig(self, handle, **kwargs):
            handle.write(b"half a pic")
            raise RuntimeError("disk full")

        def clear(self):
            pass

    with pytest.raises(RuntimeError, match="disk full"):
        plots.save_figure(Broken(), target)
    assert target.read_bytes() == b"old"
    _no_temporaries(tmp_path)


def test_plots_do_not_switch_the_backend_or_leave_figures(tmp_path):
    import matplotlib

    backend = matplotlib.get_backend()
    plots.plot_history({"loss": [1.0, 0.5], "accuracy": [0.5, 0.7]}, tmp_path / "a.png")
    assert matplotlib.get_backend() == backend
    import sys

    if "matplotlib.pyplot" in sys.modules:  # our figures never register with pyplot
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []


def _captured_figures(monkeypatch) -> list:
    """The figures the plots draw, captured before they are saved and cleared."""
    figures = []
    original = plots.save_figure

    def capture(fig, path):
        texts = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]
        figures.append({"texts": texts, "axes": len(fig.axes),
                        "clims": [ax.images[0].get_clim() for ax in fig.axes if ax.images],
                        "ticks": [list(ax.get_xticks()) for ax in fig.axes]})
        return original(fig, path)

    monkeypatch.setattr(plots, "save_figure", capture)
    return figures


def test_filters_of_a_big_layer_are_an_out_by_in_grid_of_bounded_size_on_one_zero_centred_scale(
        tmp_path, monkeypatch):
    figures = _captured_figures(monkeypatch)
    weight = np.random.default_rng(1).standard_normal((32, 20, 3, 3)).astype(np.float32)
    image = _png(plots.plot_filters(weight, tmp_path / "filters.png"))
    assert max(image.size) < 1600
    texts = figures[0]["texts"]
    assert any("32 out x 20 in, 256 of 640 kernels shown" in t for t in texts)
    assert "out 15" in texts and "in 15" in texts and "out 16" not in texts
    clims = figures[0]["clims"]
    assert len(clims) == 256 and len(set(clims)) == 1  # one scale for every tile
    low, high = clims[0]
    assert low == -high == -np.abs(weight[:16, :16]).max()  # centred on zero
    assert figures[0]["axes"] == 257  # the tiles and one colour bar


def test_curves_have_integer_epoch_ticks(tmp_path, monkeypatch):
    figures = _captured_figures(monkeypatch)
    plots.plot_history({"loss": [1.0, 0.5], "accuracy": [0.5, 0.7]}, tmp_path / "c.png")
    ticks = [t for ax in figures[0]["ticks"] for t in ax]
    assert ticks and all(float(t).is_integer() for t in ticks)


def test_any_layer_output_before_or_after_its_activation(tmp_path, monkeypatch):
    from numpycnn import models

    model = models.deep_cnn(seed=0)
    image = np.random.default_rng(2).random((1, 28, 28), dtype=np.float32)
    before_relu = plots.layer_output(model, image, 0)  # Conv2D
    after = plots.layer_output(model, image, 2)  # Conv2D, BatchNorm2D, ReLU
    assert before_relu.shape == after.shape == (32, 28, 28)
    assert before_relu.min() < 0 and after.min() == 0
    np.testing.assert_allclose(model.forward(image[None])[0], plots.layer_output(model, image, -1), rtol=1e-5)
    figures = _captured_figures(monkeypatch)
    _png(plots.plot_layer_outputs(model, image, [0, 2, -1], tmp_path / "layers.png"))
    texts = figures[0]["texts"]
    assert "layer 0 (Conv2D): 16 of 32 channels shown" in texts and "15" in texts
    with pytest.raises(ValueError, match=r"layer_output: `index` must be a layer index in \[-"):
        plots.layer_output(model, image, 99)
