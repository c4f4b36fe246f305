"""Reproduce the results table of docs/results.md: each row is one ``numpycnn train`` command run from fixed seeds.

Run ``python -m benchmarks.results`` for every row, or name rows (``python -m benchmarks.results original lenet5``);
``--list`` shows them. Each run writes its model, metrics, history and plots to ``results/NAME/`` (seed 0) or
``results/NAME-seedS/`` and the table is printed in Markdown (and written to ``results/table.md``). The headline
rows are run from two seeds (``--seed S`` runs only one of them) and the table gives their mean and each seed's
figure, so a reader can see what is noise. ``--smoke`` runs each named row for one epoch on 1,000 images, as the
tests do, to check that the commands work without spending the time.

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
    seeds: tuple[int, ...] = (0,)

    @property
    def command(self) -> str:
        """The command of seed 0 (the ``--seed`` default)."""
        return "numpycnn train " + shlex.join(self.args) if self.args else "numpycnn train"

    def seed_args(self, seed: int) -> tuple[str, ...]:
        return self.args if seed == 0 else (*self.args, "--seed", str(seed))

    def folder(self, seed: int) -> str:
        """``NAME`` for seed 0, ``NAME-seedS`` for the others."""
        return self.name if seed == 0 else f"{self.name}-seed{seed}"


#: The seeds of the headline rows.
TWO_SEEDS = (0, 1)


ROWS = (
    Row("original", "the original experiment exactly: seed network, SGD lr 0.1, batch 64, 10 epochs", (),
        TWO_SEEDS),
    Row("seed-tuned", "the same tiny network, better recipe: Adam, cosine schedule, 20 epochs",
        ("--model", "seed", "--val-split", "0.1", "--optimizer", "adam", "--lr", "0.003", "--schedule", "cosine",
         "--epochs", "20"), TWO_SEEDS),
    Row("seed-smoothing", "the tiny network's recipe (seed-tuned) with label smoothing 0.1",
        ("--model", "seed", "--val-split", "0.1", "--optimizer", "adam", "--lr", "0.003", "--schedule", "cosine",
         "--label-smoothing", "0.1", "--epochs", "20"), TWO_SEEDS),
    Row("lenet5", "LeNet-5", ("--model", "lenet5", *_TUNED, "--augment", "--epochs", "10")),
    Row("deep", "deep_cnn: 3 conv blocks, batch norm, dropout, random shifts and rotations",
        ("--model", "deep", *_TUNED, "--augment", "--epochs", "8")),
    Row("deep-long", "deep_cnn as in the deep row, trained for 15 epochs instead of 8 (the faster engine's budget)",
        ("--model", "deep", *_TUNED, "--augment", "--epochs", "15"), TWO_SEEDS),
    Row("deep-fashion", "deep_cnn on Fashion-MNIST",
        ("--model", "deep", "--dataset", "fashion-mnist", *_TUNED, "--epochs", "10")),
    Row("deep-fashion-augment", "the same with random shifts and horizontal flips (underfits in 10 epochs)",
        ("--model", "deep", "--dataset", "fashion-mnist", *_TUNED, "--augment", "--epochs", "10")),
    Row("deep-fashion-long", "deep_cnn on Fashion-MNIST, 20 epochs, horizontal flips, label smoothing 0.1",
        ("--model", "deep", "--dataset", "fashion-mnist", *_TUNED, "--augment", "flip", "--label-smoothing", "0.1",
         "--epochs", "20"), TWO_SEEDS),
    Row("deep-fashion-30", "the deep-fashion-long recipe for 30 epochs (its validation accuracy still rose at 20)",
        ("--model", "deep", "--dataset", "fashion-mnist", *_TUNED, "--augment", "flip", "--label-smoothing", "0.1",
         "--epochs", "30"), TWO_SEEDS),
    # The Fashion-MNIST ablation: what each choice of the deep-fashion-long row buys, each row 5 epochs.
    Row("fashion-ablation-base", "Fashion ablation 0: deep_cnn, Adam, cosine schedule, no augmentation",
        ("--model", "deep", "--dataset", "fashion-mnist", *_TUNED, "--epochs", "5")),
    Row("fashion-ablation-flip", "Fashion ablation 1: + horizontal flips",
        ("--model", "deep", "--dataset", "fashion-mnist", *_TUNED, "--augment", "flip", "--epochs", "5")),
    Row("fashion-ablation-smoothing", "Fashion ablation 2: + label smoothing 0.1",
        ("--model", "deep", "--dataset", "fashion-mnist", *_TUNED, "--augment", "flip", "--label-smoothing", "0.1",
         "--epochs", "5")),
    Row("fashion-ablation-crop", "Fashion ablation 1b: random crops (2 pixels of padding) and flips instead",
        ("--model", "deep", "--dataset", "fashion-mnist", *_TUNED, "--augment", "shift=2,flip", "--epochs", "5")),
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


def run_row(row: Row, seed: int, out: Path, smoke: bool) -> dict:
    """Train one row from ``seed`` into ``out`` and return its ``metrics.json``."""
    extra = ["--out", str(out), "--quiet", "--overwrite"]  # a rerun replaces the row's earlier run
    if smoke:
        extra += ["--limit", "1000", "--epochs", "1", "--no-plots"]
    code = numpycnn_main(["train", *row.seed_args(seed), *extra])
    if code != 0:
        raise SystemExit(f"row {row.name!r} (seed {seed}) failed with exit code {code}: {row.command}")
    return json.loads((out / "metrics.json").read_text())


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _accuracy(runs: list[dict]) -> str:
    """``**99.52%**`` for one seed; the mean in bold, then each seed's figure, for several."""
    accuracies = [100 * m["test_accuracy"] for m in runs]
    if len(runs) == 1:
        return f"**{accuracies[0]:.2f}%**"
    each = ", ".join(f"{a:.2f}" for a in accuracies)
    return f"**{sum(accuracies) / len(accuracies):.2f}%** (seeds: {each})"


def table(results: dict[str, list[dict]]) -> str:
    """The Markdown table of finished rows, in ``ROWS`` order; ``results[name]`` holds one metrics per seed run."""
    lines = [
        "| row | data set | model | recipe | batch | epochs | test accuracy | training time | command |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in ROWS:
        runs = results.get(row.name)
        if not runs:
            continue
        m = runs[0]
        recipe = f"{m['optimizer']} lr {m['lr']:g}" + ("" if m["schedule"] == "none" else f", {m['schedule']}")
        if m["augment"]:
            recipe += ", augment" + ("" if m["augment"] is True else f" {m['augment']}")
        if m.get("label_smoothing"):
            recipe += f", label smoothing {m['label_smoothing']:g}"
        duration = " / ".join(_duration(run["train_seconds"]) for run in runs)
        lines.append(
            f"| {row.name} | {m['dataset']} | {m['model']} | {recipe} | {m['batch_size']} | {m['epochs']} | "
            f"{_accuracy(runs)} | {duration} | `{row.command}` |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="*", metavar="ROW", help="rows to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the rows and their commands")
    parser.add_argument("--out", type=Path, default=Path("results"), help="folder of the runs (default results)")
    parser.add_argument("--smoke", action="store_true", help="1 epoch on 1,000 images per row, to check commands")
    parser.add_argument("--table", action="store_true", help="only print the table of the rows already run")
    parser.add_argument("--seed", type=int, help="run only this seed of each named row (default: all its seeds)")
    args = parser.parse_args(argv)
    if args.list:
        for row in ROWS:
            seeds = "" if row.seeds == (0,) else f" (seeds {', '.join(map(str, row.seeds))})"
            print(f"{row.name:20} {row.what}{seeds}\n{'':20} {row.command}")
        return 0
    unknown = [name for name in args.rows if name not in ROWS_BY_NAME]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {list(ROWS_BY_NAME)}")
    for name in [] if args.table else args.rows or list(ROWS_BY_NAME):
        row = ROWS_BY_NAME[name]
        if args.seed is not None and args.seed not in row.seeds:
            parser.error(f"row {name!r} is run from seeds {list(row.seeds)}, not {args.seed}")
        for seed in row.seeds if args.seed is None else (args.seed,):
            print(f"== {row.folder(seed)}: {shlex.join(['numpycnn', 'train', *row.seed_args(seed)])}", flush=True)
            run_row(row, seed, args.out / row.folder(seed), args.smoke)
    results = {}
    for row in ROWS:  # every finished run in the folder, so rows and seeds can be run one at a time
        runs = [args.out / row.folder(seed) / "metrics.json" for seed in row.seeds]
        finished = [json.loads(path.read_text()) for path in runs if path.is_file()]
        if finished:
            results[row.name] = finished
    text = table(results)
    print(text)
    (args.out / "table.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
