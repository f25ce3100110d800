"""What every command shares: argument types, progress bars, output."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rtforge.errors import InvalidInputError

__all__ = ["floats", "ints", "output_file", "check_output_files", "add_output_flags", "emit_json",
           "progress_bar", "Bar"]


def _numbers(kind: type, noun: str, count: int, name: str) -> Callable[[str], tuple]:
    """argparse type: ``count`` comma-separated values of ``kind``."""

    def parse(text: str) -> tuple:
        message = f"{name} must be {count} comma-separated {noun}, got {text!r}"
        try:
            values = tuple(kind(v) for v in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(message) from None
        if len(values) != count:
            raise argparse.ArgumentTypeError(message)
        return values

    return parse


def floats(count: int, name: str) -> Callable[[str], tuple[float, ...]]:
    """argparse type: ``count`` comma-separated numbers."""
    return _numbers(float, "numbers", count, name)


def ints(count: int, name: str) -> Callable[[str], tuple[int, ...]]:
    """argparse type: ``count`` comma-separated integers."""
    return _numbers(int, "integers", count, name)


def output_file(flag: str, suffixes: tuple[str, ...]) -> Callable[[str], Path]:
    """argparse type: a file to write whose suffix (case-insensitive) is one of
    ``suffixes`` (``""`` allows none); any other is a usage error (exit 2)."""

    def parse(text: str) -> Path:
        path = Path(text)
        if path.suffix.lower() not in suffixes:
            allowed = ", ".join(s or "no suffix" for s in suffixes)
            raise argparse.ArgumentTypeError(f"{flag} {text!r}: the file name must end in "
                                             f"{allowed}")
        return path

    return parse


def check_output_files(outputs: dict[str, Path | None]) -> None:
    """Check, before any work, that each output file can be written.

    Parameters
    ----------
    outputs : dict of str to Path or None
        Flag to path (None: the flag was not given).

    Raises
    ------
    InvalidInputError
        If a path is a folder, or its folder does not exist or is not writable.
    """
    for flag, path in outputs.items():
        if path is None:
            continue
        folder = path.parent
        if path.is_dir():
            raise InvalidInputError(f"{flag} {path} is a folder, not a file")
        if not folder.is_dir():
            raise InvalidInputError(f"{flag} {path}: folder {folder} does not exist")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise InvalidInputError(f"{flag} {path}: folder {folder} is not writable")


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    """``--json`` and ``-q/--quiet``."""
    parser.add_argument("--json", action="store_true", help="print a JSON report on stdout")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def emit_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout."""
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


class Bar:
    """A tqdm bar on stderr, or nothing when quiet or stderr is not a terminal."""

    def __init__(self, total: int | None, desc: str, unit: str, enabled: bool) -> None:
        self._bar = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False,
                             dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def set(self, done: int, total: int | None = None) -> None:
        if self._bar is not None:
            if total is not None:
                self._bar.total = total
            self._bar.n = done
            self._bar.refresh()

    def grow(self, n: int) -> None:
        if self._bar is not None:
            self._bar.total = (self._bar.total or 0) + n
            self._bar.refresh()

    def describe(self, text: str) -> None:
        if self._bar is not None:
            self._bar.set_description(text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def progress_bar(args: argparse.Namespace, total: int | None, desc: str, unit: str) -> Bar:
    """A bar unless ``--quiet``/``--json`` was given or stderr is not a terminal."""
    enabled = not (getattr(args, "quiet", False) or getattr(args, "json", False)) \
        and sys.stderr.isatty()
    return Bar(total, desc, unit, enabled)
