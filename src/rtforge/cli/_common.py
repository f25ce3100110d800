"""What every command shares: argument types, progress bars, output."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from rtforge.config import Node
from rtforge.errors import InvalidInputError

__all__ = ["floats", "ints", "output_file", "check_output_files", "add_output_flags",
           "add_tls_flags", "with_tls_flags", "emit_json",
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


def add_tls_flags(parser: argparse.ArgumentParser) -> None:
    """``--tls``, ``--tls-ca``, ``--tls-cert``, ``--tls-key``, ``--tls-no-verify-hostname``."""
    group = parser.add_argument_group(
        "TLS", "DICOM over TLS 1.2 or later, the peer's certificate verified. Each flag\n"
        "overrides the node's setting of the same name (tls, tls_ca, tls_cert, tls_key,\n"
        "tls_verify_hostname) and any of them turns TLS on.")
    group.add_argument("--tls", action="store_true", default=None,
                       help="speak TLS with the node (default: the node's tls setting)")
    group.add_argument("--tls-ca", metavar="PEM",
                       help="accept only a peer certificate signed by this CA (default: the "
                            "node's tls_ca, else the system's trusted CAs)")
    group.add_argument("--tls-cert", metavar="PEM",
                       help="our client certificate, for peers that require one (mutual TLS)")
    group.add_argument("--tls-key", metavar="PEM", help="private key of --tls-cert")
    group.add_argument("--tls-no-verify-hostname", action="store_false", default=None,
                       dest="tls_verify_hostname",
                       help="accept a peer certificate that does not name the node's host (the "
                            "CA signature is still checked)")


def with_tls_flags(node: Node, args: argparse.Namespace) -> Node:
    """``node`` with the TLS flags of :func:`add_tls_flags` applied (any of them turns TLS on)."""
    given = {name: getattr(args, name) for name in ("tls_ca", "tls_cert", "tls_key",
                                                    "tls_verify_hostname")
             if getattr(args, name) is not None}
    if not given and not args.tls:
        return node
    if "tls_cert" in given and "tls_key" not in given:
        given["tls_key"] = None  # the node's key belongs to the node's certificate
    return replace(node, tls=True, **given)


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
