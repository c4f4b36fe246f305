"""The ``numpycnn exercise`` command: ``list``, ``start NAME [DIR]`` and ``check NAME [FILE]``.

The CLI wires it in with :func:`add_exercise_parser` and dispatches to :func:`run_exercise`; the exercises, the
stubs and the checker live in :mod:`numpycnn.exercises`, imported only when the command runs. Exit status: 0 for
OK (and for ``list`` and ``start``), 1 for WRONG, 2 for a usage error (an unknown name, a missing file, a stub that
would overwrite a file), as every command reports errors.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_exercise_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``exercise`` and its sub-commands on ``subparsers``; return the ``exercise`` parser.

    The parser's defaults hold ``func=run_exercise``, so a CLI can call ``args.func(args)``.
    """
    parser = subparsers.add_parser(
        "exercise", help="write a layer's math yourself and have it checked",
        description="Exercises: write a forward or backward pass (or fix a layer with a planted bug) in a file, "
                    "then check it: OK, or WRONG with the classic mistake it looks like, the wrong elements and "
                    "where to look. See docs/exercises.md.")
    commands = parser.add_subparsers(dest="exercise_command", metavar="{list,start,check}", required=True)
    commands.add_parser("list", help="every exercise, its file and what it asks")
    p = commands.add_parser("start", help="write the stub file of an exercise (never overwrites a file)")
    p.add_argument("name", metavar="NAME", help="an exercise, as `numpycnn exercise list` shows")
    p.add_argument("directory", metavar="DIR", nargs="?", type=Path, default=Path("."),
                   help="folder to write the stub into (default: the current folder)")
    p = commands.add_parser("check", help="check your file: exit 0 if OK, 1 if WRONG")
    p.add_argument("name", metavar="NAME", help="an exercise, as `numpycnn exercise list` shows")
    p.add_argument("file", metavar="FILE", nargs="?", type=Path, default=None,
                   help="your file (default: the stub's name in the current folder)")
    parser.set_defaults(func=run_exercise)
    return parser


def run_exercise(args: argparse.Namespace) -> int:
    """Run the ``exercise`` sub-command in ``args``; return the exit code (0 OK, 1 WRONG)."""
    from numpycnn import exercises

    if args.exercise_command == "list":
        for name, exercise in exercises.EXERCISES.items():
            print(f"{name:24} {exercise.filename:28} {exercise.title}")
        return 0
    if args.exercise_command == "start":
        path = exercises.start(args.name, args.directory)
        print(f"wrote {path}; when it is written: numpycnn exercise check {args.name} {path}")
        return 0
    result = exercises.check(args.name, args.file)
    print(result.message)
    return 0 if result.ok else 1
