"""Reproduce the README's results table: each row is one ``numpycnn train`` command run from a fixed seed.

Run ``python -m benchmarks.results`` for every row, or name rows (``python -m benchmarks.results original lenet5``);
``--list`` shows them. Each run writes its model, metrics, history and plots to ``results/NAME/`` and the table is
printed in Markdown (and written to ``results/table.md``). ``--smoke`` runs each named row for one epoch on 1,000
images, as the tests do, to check that the commands work without spending the time.

Every row except the original holds out 10% of the training set for validation (``--val-split 0.1``); the test
set is used only for the final figure of each row.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from numpycnn.cli import main as numpycnn_main

#: Extra options shared by the tuned rows: a validation split, Adam with a cosine schedule, batches of 128.
_TUNED = ("--val-split", "0.1", "--optimizer", "adam", "--lr", "0.001", "--schedule", "cosine", "--batch-size", "128")


@dataclass(frozen=True)
class Row:
    name: str
    what: str
    args: tuple[str, ...]

    @property
    def command(self) -> str:
        return "numpycnn train " + shlex.join(self.args) if self.args else "numpycnn train"


ROWS = (
    Row("original", "the original experiment exactly: seed network, SGD lr 0.1, batch 64, 10 epochs", ()),
    Row("seed-tuned", "the same tiny network, better recipe: Adam, cosine schedule, 20 epochs",
        ("--model", "seed", "--val-split", "0.1", "--optimizer", "adam", "--lr", "0.003", "--schedule", "cosine",
         "--epochs", "20")),
    Row("lenet5", "LeNet-5", ("--model", "lenet5", *_TUNED, "--augment", "--epochs", "10")),
    Row("deep", "deep_cnn: 3 conv blocks, batch norm, dropout, random shifts and rotations",
        ("--model", "deep", *_TUNED, "--augment", "--epochs", "8")),
    Row("deep-long", "deep_cnn as in the deep row, trained for 15 epochs instead of 8 (the faster engine's budget)",
        ("--model", "deep", *_TUNED, "--augment", "--epochs", "15")),
    Row("deep-fashion", "deep_cnn on Fashion-MNIST",
        ("--model", "deep", "--dataset", "fashion-mnist", *_TUNED, "--epochs", "10")),
    Row("deep-fashion-augment", "the same with random shifts and horizontal flips (underfits in 10 epochs)",
        ("--model", "deep", "--dataset", "fashion-mnist", *_TUNED, "--augment", "--epochs", "10")),
    # The ablation: one improvement at a time, each row 3 epochs in batches of 128 with the same validation split.
    Row("ablation-base", "ablation 0: the original network and optimiser (SGD lr 0.1)",
        ("--model", "seed", "--val-split", "0.1", "--batch-size", "128", "--epochs", "3")),
    Row("ablation-optimizer", "ablation 1: + Adam and a cosine schedule",
        ("--model", "seed", *_TUNED, "--epochs", "3")),
    Row("ablation-depth", "ablation 2: + depth (deep_cnn without batch norm or dropout)",
        ("--model", "deep-plain", *_TUNED, "--epochs", "3")),
    Row("ablation-dropout", "ablation 3: + dropout", ("--model", "deep-dropout", *_TUNED, "--epochs", "3")),
    Row("ablation-batchnorm", "ablation 4: + batch norm", ("--model", "deep", *_TUNED, "--epochs", "3")),
    Row("ablation-augment", "ablation 5: + augmentation",
        ("--model", "deep", *_TUNED, "--augment", "--epochs", "3")),
)
ROWS_BY_NAME = {row.name: row for row in ROWS}


def run_row(row: Row, out: Path, smoke: bool) -> dict:
    """Train one row into ``out`` and return its ``metrics.json``."""
    extra = ["--out", str(out), "--quiet", "--overwrite"]  # a rerun replaces the row's earlier run
    if smoke:
        extra += ["--limit", "1000", "--epochs", "1", "--no-plots"]
    code = numpycnn_main(["train", *row.args, *extra])
    if code != 0:
        raise SystemExit(f"row {row.name!r} failed with exit code {code}: {row.command}")
    return json.loads((out / "metrics.json").read_text())


def table(results: dict[str, dict]) -> str:
    """The Markdown table of finished rows, in ``ROWS`` order."""
    lines = [
        "| row | data set | model | optimiser | batch | epochs | test accuracy | training time | command |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in ROWS:
        m = results.get(row.name)
        if m is None:
            continue
        optimiser = f"{m['optimizer']} lr {m['lr']:g}" + ("" if m["schedule"] == "none" else f", {m['schedule']}")
        if m["augment"]:
            optimiser += ", augment"
        seconds = m["train_seconds"]
        duration = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
        lines.append(
            f"| {row.name} | {m['dataset']} | {m['model']} | {optimiser} | {m['batch_size']} | {m['epochs']} | "
            f"**{100 * m['test_accuracy']:.2f}%** | {duration} | `{row.command}` |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="*", metavar="ROW", help="rows to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the rows and their commands")
    parser.add_argument("--out", type=Path, default=Path("results"), help="folder of the runs (default results)")
    parser.add_argument("--smoke", action="store_true", help="1 epoch on 1,000 images per row, to check commands")
    parser.add_argument("--table", action="store_true", help="only print the table of the rows already run")
    args = parser.parse_args(argv)
    if args.list:
        for row in ROWS:
            print(f"{row.name:20} {row.what}\n{'':20} {row.command}")
        return 0
    unknown = [name for name in args.rows if name not in ROWS_BY_NAME]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {list(ROWS_BY_NAME)}")
    for name in [] if args.table else args.rows or list(ROWS_BY_NAME):
        print(f"== {name}: {ROWS_BY_NAME[name].command}", flush=True)
        run_row(ROWS_BY_NAME[name], args.out / name, args.smoke)
    results = {}
    for row in ROWS:  # every finished row in the folder, so rows can be run one at a time
        metrics = args.out / row.name / "metrics.json"
        if metrics.is_file():
            results[row.name] = json.loads(metrics.read_text())
    text = table(results)
    print(text)
    (args.out / "table.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
