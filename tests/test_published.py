"""The published weights of the results table's two-seed rows: committed, readable, and worth their figure.

``results/ROW/model.safetensors`` (and ``ROW-seedS``) of every row run from two seeds (the headline rows and the
label-smoothing row of the tiny network) is committed with the repository, so a reader can check the table
without training: ``numpycnn evaluate results/deep-long/model.safetensors``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import results
from numpycnn import datasets
from numpycnn.model.io import load_model

RESULTS = Path(__file__).resolve().parents[1] / "results"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
TWO_SEED_RUNS = [(row, seed) for row in results.ROWS if len(row.seeds) > 1 for seed in row.seeds]


def test_the_two_seed_rows_are_those_the_gitignore_publishes():
    assert {row.name for row, _ in TWO_SEED_RUNS} == {"original", "seed-tuned", "seed-smoothing", "deep-long",
                                                       "deep-fashion-long", "deep-fashion-30"}
    published = (RESULTS.parent / ".gitignore").read_text()
    for row, seed in TWO_SEED_RUNS:
        assert f"!results/{row.folder(seed)}/model.safetensors\n" in published, row.folder(seed)


@pytest.mark.parametrize(("row", "seed"), TWO_SEED_RUNS, ids=[row.folder(seed) for row, seed in TWO_SEED_RUNS])
def test_published_weights_give_the_tables_accuracy(row, seed):
    folder = RESULTS / row.folder(seed)
    metrics = json.loads((folder / "metrics.json").read_text())
    model = load_model(folder / "model.safetensors")
    if metrics["dataset"] == "fashion-mnist" and not (FASHION_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST not installed in {FASHION_DIR} (apt-get install dataset-fashion-mnist)")
    images, labels = datasets.load(metrics["dataset"], "test", download=False)
    scores = model.evaluate(images, labels)
    assert metrics["seed"] == seed and model.num_parameters() == metrics["parameters"]
    # BLAS may sum in another order on another machine: allow one test image to change its vote.
    assert abs(scores["accuracy"] - metrics["test_accuracy"]) <= 1 / len(labels), (scores, metrics["test_accuracy"])
