"""The ``numpycnn data`` command: ``list``, ``download NAME``, ``verify NAME`` and ``info PATH``.

The CLI wires it in with :func:`add_data_parser` and dispatches to :func:`run_data`; no data logic lives here.

Examples
--------
>>> import argparse
>>> parser = argparse.ArgumentParser(prog="numpycnn")
>>> _ = add_data_parser(parser.add_subparsers(dest="command"))
>>> run_data(parser.parse_args(["data", "verify", "mnist"]))  # doctest: +SKIP
0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from numpycnn.datasets import cache
from numpycnn.datasets.info import describe
from numpycnn.datasets.loading import fetch, locate
from numpycnn.datasets.registry import DATASETS, DatasetSpec, get_spec
from numpycnn.errors import DataError


def add_data_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``data`` and its sub-commands on ``subparsers``; return the ``data`` parser.

    The parser's defaults hold ``func=run_data``, so a CLI can call ``args.func(args)``.
    """
    parser = subparsers.add_parser(
        "data", help="show, download and verify the data sets",
        description=(
            "Show, download and verify the data sets (MNIST ships with numpycnn; Fashion-MNIST and CIFAR-10 "
            f"are downloaded to the cache: $NUMPYCNN_DATA if set, else {cache.user_cache_dir()})."
        ),
    )
    commands = parser.add_subparsers(dest="data_command", metavar="{list,download,verify,info}", required=True)
    names = list(DATASETS)
    data_dir_help = "folder searched first and, for download, the one files go to (default: the cache)"

    p = commands.add_parser("list", help="each data set, its files, and where verified copies are")
    p.add_argument("--data-dir", type=Path, default=None, help=data_dir_help)

    p = commands.add_parser("download", help="download a data set's missing or corrupted files")
    p.add_argument("name", choices=names, metavar="NAME", help=f"one of: {', '.join(names)}")
    p.add_argument("--data-dir", type=Path, default=None, help=data_dir_help)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = commands.add_parser("verify", help="check every copy of a data set's files by SHA-256")
    p.add_argument("name", choices=names, metavar="NAME", help=f"one of: {', '.join(names)}")
    p.add_argument("--data-dir", type=Path, default=None, help=data_dir_help)

    p = commands.add_parser("info", help="what --dataset PATH would train on: classes, counts, sizes, skipped files")
    p.add_argument("path", metavar="PATH", type=Path,
                   help="a folder with one sub-folder of pictures per class, an .npz file or a folder of .npy files")
    p.add_argument("--image-size", metavar="N|H,W", help="the size train --image-size would resize to")
    p.add_argument("--channels", type=int, choices=(1, 3), help="the channels train --channels would convert to")

    parser.set_defaults(func=run_data)
    return parser


def run_data(args: argparse.Namespace) -> int:
    """Run the ``data`` sub-command in ``args``; return the exit code (0 success, 1 failure)."""
    data_dir = getattr(args, "data_dir", None)
    try:
        if args.data_command == "list":
            for spec in DATASETS.values():
                _print_status(spec, data_dir, verbose=False)
            return 0
        if args.data_command == "info":
            print("\n".join(describe(args.path, args.image_size, args.channels)))
            return 0
        spec = get_spec(args.name, owner=f"data {args.data_command}")
        if args.data_command == "download":
            progress = False if args.no_progress else None
            for path in fetch(spec.name, data_dir, download=True, progress=progress).values():
                print(f"verified  {path}")
            return 0
        if args.data_command == "verify":
            return 0 if _print_status(spec, data_dir, verbose=True) else 1
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"error: unknown data command {args.data_command!r}", file=sys.stderr)
    return 2


def _print_status(spec: DatasetSpec, data_dir: Path | None, verbose: bool) -> bool:
    """Print each file of ``spec`` and its copies; return True if every file has only verified copies."""
    counts = ", ".join(f"{n} {split}" for split, n in spec.counts.items())
    print(f"{spec.name}: {counts} images of shape {spec.image_shape}, {len(spec.class_names)} classes")
    if verbose and spec.source:
        print(f"  source: {spec.source}")
    all_good = True
    for file_name, copies in locate(spec.name, data_dir).items():
        good = [path for path, problem in copies if problem is None]
        bad = [(path, problem) for path, problem in copies if problem is not None]
        if good:
            print(f"  {file_name}: verified  {good[0]}")
            for path in good[1:] if verbose else []:
                print(f"  {file_name}: verified  {path}")
        else:
            target = cache.target_dir(spec.name, data_dir) / file_name
            print(f"  {file_name}: MISSING   (`numpycnn data download {spec.name}` puts it at {target})")
        for path, problem in bad:
            print(f"  {file_name}: CORRUPT   {path}: {problem}")
        all_good = all_good and bool(good) and not bad
    return all_good
