"""Listing a folder of pictures: :func:`scan` finds the class folders and their files (names, sizes and times
only, nothing opened) and :func:`inspect` reads each picture's header (format, mode and size, no pixels); files
that cannot be used are collected with their reason, and :func:`summary` names them in one line.

Nothing in the folder is executed or followed blindly: only the formats in
:data:`numpycnn.datasets.images.FORMATS` are opened, hidden files are ignored, and sub-folders inside a class folder
are not entered, so a symbolic-link loop cannot trap the scan.

Examples
--------
>>> found = inspect(scan("pets"))                        # doctest: +SKIP
>>> found.class_names, len(found.pictures)               # doctest: +SKIP
(['cat', 'dog'], 1500)
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from numpycnn.datasets.images import FORMATS, MAX_PIXELS
from numpycnn.errors import DataError


@dataclass
class Picture:
    """One file in a class folder: ``name`` relative to the root, its label, part (0 train, 1 test) and stat."""

    path: Path
    name: str
    label: int
    part: int
    size_bytes: int
    mtime_ns: int
    mode: str = ""
    width: int = 0
    height: int = 0


@dataclass
class Scan:
    """What :func:`scan` found: class names, the files of every class, and the files skipped, with why."""

    root: Path
    class_names: list[str]
    pictures: list[Picture]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    has_test: bool = False


def display(name: str) -> str:
    """A file or folder name printable on any terminal (undecodable bytes shown as U+FFFD)."""
    return os.fsencode(name).decode("utf-8", "replace")


def scan(root: str | os.PathLike[str]) -> Scan:
    """List the class folders and their files, without opening any.

    Raises
    ------
    DataError
        If ``root`` is not a folder, has fewer than two non-empty class folders, or no files at all.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{str(root)!r} is not a folder.")
    skipped: list[tuple[str, str]] = []
    top = _entries(root, "", skipped)
    if "train" in top and top["train"][1]:
        parts = {"train": root / "train"}
        if "test" in top and top["test"][1]:
            parts["test"] = root / "test"
        for name, (_, is_dir) in top.items():
            if name not in parts:
                skipped.append((display(name) + ("/" if is_dir else ""), "beside train/ and test/"))
    else:
        parts = {"": root}
    classes: dict[str, list[Picture]] = {}
    for part_index, (part, folder) in enumerate(parts.items()):
        prefix = f"{part}/" if part else ""
        for name, (path, is_dir) in _entries(folder, prefix, skipped).items():
            if not is_dir:
                skipped.append((prefix + display(name), "not inside a class folder"))
                continue
            if part_index == 1 and name not in classes:
                skipped.append((prefix + display(name) + "/", "class not in train/"))
                continue
            files = _class_files(path, f"{prefix}{name}/", part_index, skipped)
            classes.setdefault(name, []).extend(files)
    empty = [name for name, files in classes.items() if not any(p.part == 0 for p in files)]
    for name in empty:
        skipped.append((display(name) + "/", "empty class folder (no files)"))
        del classes[name]
    names = sorted(classes)
    pictures = [Picture(p.path, p.name, names.index(cls), p.part, p.size_bytes, p.mtime_ns)
                for cls in names for p in classes[cls]]
    check_classes(root, names, skipped)
    return Scan(root, [display(n) for n in names], pictures, skipped, has_test="test" in parts)


def check_classes(root: Path, names: list[str], skipped: list[tuple[str, str]]) -> None:
    """Raise :class:`~numpycnn.errors.DataError` unless at least two classes are left, naming what was skipped."""
    if len(names) >= 2:
        return
    why = f" Skipped: {summary(skipped)}" if skipped else ""
    if not names:
        raise DataError(f"{root}: no pictures found. Put them in one sub-folder per class (PATH/cat/1.jpg, "
                        f"PATH/dog/2.png), or in train/ and test/ folders laid out that way.{why}")
    raise DataError(f"{root}: one class only ({display(names[0])!r}); a classifier needs at least two class "
                    f"folders.{why}")


def _entries(folder: Path, prefix: str, skipped: list[tuple[str, str]]) -> dict[str, tuple[Path, bool]]:
    """``{name: (path, is a folder)}`` of ``folder``, sorted; hidden entries and broken links skipped."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as err:
        skipped.append((prefix or ".", f"cannot be listed ({err.strerror or err})"))
        return {}
    found = {}
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            is_dir = entry.is_dir()
            os.stat(entry.path)  # follows links: a loop or a dangling link fails here
        except OSError as err:
            skipped.append((prefix + display(entry.name), f"broken or looping symbolic link ({err.strerror})"))
            continue
        found[entry.name] = (Path(entry.path), is_dir)
    return found


def _class_files(folder: Path, prefix: str, part: int, skipped: list[tuple[str, str]]) -> list[Picture]:
    files = []
    for name, (path, is_dir) in _entries(folder, prefix, skipped).items():
        if is_dir:
            skipped.append((prefix + display(name) + "/", "a folder inside a class folder (not entered)"))
            continue
        try:
            stat = path.stat()
        except OSError as err:
            skipped.append((prefix + display(name), f"cannot be read ({err.strerror})"))
            continue
        files.append(Picture(path, prefix + display(name), -1, part, stat.st_size, stat.st_mtime_ns))
    return files


def inspect(found: Scan) -> Scan:
    """Read every picture's header (format, mode, size; no pixels); files that are not usable pictures move
    to ``skipped`` with the reason."""
    from PIL import Image, UnidentifiedImageError

    kept = []
    for picture in found.pictures:
        reason = ""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(picture.path, formats=FORMATS) as image:
                    picture.mode, (picture.width, picture.height) = _colour_mode(image), image.size
                    limit = MAX_PIXELS * (64 if image.format == "JPEG" else 1)  # JPEG decodes at 1/8 scale
                    if picture.width * picture.height > limit:
                        reason = f"too large ({picture.width}x{picture.height} pixels)"
                    elif picture.width * picture.height == 0:
                        reason = "empty picture (0 pixels)"
        except UnidentifiedImageError:
            reason = f"not a picture ({', '.join(FORMATS)})"
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            reason = "too large to decode safely (decompression-bomb sized)"
        except Exception as err:  # Pillow's header parsers raise many types on damaged files
            reason = f"damaged header ({type(err).__name__})"
        if reason:
            found.skipped.append((picture.name, reason))
        else:
            kept.append(picture)
    used = sorted({p.label for p in kept if p.part == 0})
    for label, name in enumerate(found.class_names):
        if label not in used:
            found.skipped.append((name + "/", "no usable pictures in this class folder"))
    renumber = {old: new for new, old in enumerate(used)}
    for picture in kept:
        picture.label = renumber.get(picture.label, -1)
    found.pictures = [p for p in kept if p.label >= 0]
    found.class_names = [found.class_names[k] for k in used]
    check_classes(found.root, found.class_names, found.skipped)
    return found


def _colour_mode(image: Any) -> str:
    """The picture's mode, with a palette of grey entries reported as ``"L"``."""
    if image.mode == "P":
        palette = image.getpalette() or []
        rgb = np.asarray(palette[: len(palette) // 3 * 3]).reshape(-1, 3)  # (entries, 3)
        return "L" if rgb.size and (rgb == rgb[:, :1]).all() else "P"
    return image.mode


def summary(skipped: list[tuple[str, str]], limit: int = 20) -> str:
    """One line naming every skipped file and why: ``"2 files: a.txt (not a picture), b/ (empty ...)"``."""
    shown = ", ".join(f"{name} ({reason})" for name, reason in skipped[:limit])
    more = f", and {len(skipped) - limit} more" if len(skipped) > limit else ""
    return f"{len(skipped)} file{'s' if len(skipped) != 1 else ''}: {shown}{more}."


__all__ = ["Picture", "Scan", "check_classes", "display", "inspect", "scan", "summary"]
