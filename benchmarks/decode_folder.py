"""Decoding a folder of pictures: ``numpycnn.datasets.load_folder`` against a plain Pillow loop, and its cache.

``python -m benchmarks.decode_folder [--rounds 5] [--work DIR]`` writes two folders of 1,500 pictures each (5
classes of 300) under ``--work`` (a temporary folder by default): 480x360 JPEG photos, decoded to 64x64x3, and
28x28 PNG pictures, decoded to 28x28x3. For each, it alternates in every round:

- a plain loop, ``Image.open(p).convert("RGB").resize(size, BILINEAR)`` for every file in order, then
  ``np.stack``: what users write by hand;
- ``load_folder`` with an empty cache (the first run of ``numpycnn train --dataset PATH``);
- ``load_folder`` again (the second run, from the cache).

It prints the minimum, median and maximum of each over the rounds, so that a noisy machine shows as a spread.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.machine import cpu_name

CLASSES, PER_CLASS = 5, 300


def make_folder(root: Path, kind: str) -> Path:
    """1,500 pictures in 5 class folders: ``photos`` (480x360 JPEG) or ``small`` (28x28 PNG)."""
    folder = root / kind
    if folder.exists():
        return folder
    rng = np.random.default_rng(0)
    for c in range(CLASSES):
        (folder / f"class{c}").mkdir(parents=True)
        for i in range(PER_CLASS):
            if kind == "photos":  # smooth gradients plus noise, as a photo compresses
                yy, xx = np.mgrid[0:360, 0:480]
                image = np.stack([(xx * (c + 1) + i) % 256, (yy * 2 + i) % 256, (xx + yy) % 256], -1)
                image = (image + rng.integers(0, 40, image.shape)).clip(0, 255).astype(np.uint8)
                Image.fromarray(image).save(folder / f"class{c}" / f"{i}.jpg", quality=90)
            else:
                image = rng.integers(0, 256, (28, 28, 3), np.uint8)
                Image.fromarray(image).save(folder / f"class{c}" / f"{i}.png")
    return folder


def plain_loop(folder: Path, size: int) -> np.ndarray:
    """What a user writes by hand: open, convert, resize, stack."""
    out = []
    for path in sorted(folder.rglob("*.*")):
        with Image.open(path) as image:
            out.append(np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)))
    return np.stack(out)


def timed(run: object) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def spread(values: list[float]) -> str:
    return f"{min(values):.3f} / {statistics.median(values):.3f} / {max(values):.3f} s"


def main() -> None:
    """Alternate the plain loop, a first and a second ``load_folder`` for ``--rounds`` rounds; print the spread."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--work", type=Path, default=None, help="where to write the pictures (default: a temp dir)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="numpycnn-decode-"))
    cache = work / "cache"
    os.environ["NUMPYCNN_DATA"] = str(cache)  # load_folder's cache lives under the data folder
    from numpycnn.datasets import load_folder

    print(f"{cpu_name()}, {os.cpu_count()} CPUs; {args.rounds} rounds, min / median / max")
    for kind, size in (("photos", 64), ("small", 28)):
        folder = make_folder(work, kind)
        times: dict[str, list[float]] = {"plain": [], "first": [], "second": []}
        plain = functools.partial(plain_loop, folder, size)
        loaded = functools.partial(load_folder, folder, image_size=size, channels=3, progress=False)
        for _ in range(args.rounds):
            shutil.rmtree(cache, ignore_errors=True)
            times["plain"].append(timed(plain))
            times["first"].append(timed(loaded))
            times["second"].append(timed(loaded))
        ratio = [p / f for p, f in zip(times["plain"], times["first"], strict=True)]
        print(f"{kind} ({CLASSES * PER_CLASS} pictures -> {size}x{size}x3): plain Pillow loop "
              f"{spread(times['plain'])}; load_folder first run {spread(times['first'])} (plain/first "
              f"{min(ratio):.2f}-{max(ratio):.2f}x); second run, from the cache {spread(times['second'])}")


if __name__ == "__main__":
    main()
