"""The ``rtforge`` command.

Thin glue over the Python API: parse, call, print.  Exit status 0 on
success, 1 on failure (one line on stderr, never a traceback), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence

from rtforge import __version__
from rtforge.cli import (
    archive,
    contours,
    demo,
    dose,
    drr,
    media,
    net,
    plan,
    printing,
    reslice,
    serve,
    validate,
)
from rtforge.errors import RtforgeError

__all__ = ["main", "build_parser"]

_COMMANDS = (reslice, demo, validate, net, drr, contours, archive, media, plan, printing, dose,
             serve)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"rtforge: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = _Parser(prog="rtforge", description=__doc__.splitlines()[0],
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"rtforge {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more (-v info, -vv debug) on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module in _COMMANDS:
        module.register(sub)
    return parser


_NUMERIC_LIST = re.compile(r"^-[0-9.]")


def _join_negative_values(argv: Sequence[str]) -> list[str]:
    """``--clamp -1000,3095`` -> ``--clamp=-1000,3095``: argparse would read a
    comma-separated list starting with a minus sign as an option."""
    out: list[str] = []
    for token in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] \
                and _NUMERIC_LIST.match(token) and "," in token:
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``rtforge`` command; returns the exit status."""
    parser = build_parser()
    argv = _join_negative_values(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    level = {0: logging.ERROR, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except RtforgeError as exc:
        sys.stderr.write(f"rtforge {args.command}: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"rtforge {args.command}: interrupted\n")
        return 130
    except OSError as exc:
        sys.stderr.write(f"rtforge {args.command}: {exc}\n")
        return 1
