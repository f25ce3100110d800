"""The ``rtforge`` command.

Thin glue over the Python API: parse, call, print.  Exit status 0 on
success, 1 on failure (one line on stderr, never a traceback), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys
from collections.abc import Sequence

from rtforge import __version__
from rtforge.errors import RtforgeError

__all__ = ["main", "build_parser"]

#: The modules of :mod:`rtforge.cli` that register subcommands, in ``--help`` order.
_MODULES = ("reslice", "demo", "validate", "net", "drr", "contours", "archive", "media", "plan",
            "printing", "dose", "serve")

#: Which module registers each command.  A run imports only that module, so
#: ``rtforge reslice`` does not pay for importing the networking stack, and so on
#: (``tests/cli/test_main.py`` checks this table against the registrations).
_COMMAND_MODULE = {
    "reslice": "reslice", "batch": "reslice", "demo": "demo", "validate": "validate",
    "echo": "net", "send": "net", "receive": "net", "find": "net", "move": "net",
    "drr": "drr", "contours": "contours", "store": "archive", "file": "archive",
    "restore": "archive", "media": "media", "plan": "plan", "deid": "plan", "relink": "plan",
    "print": "printing", "dvh": "dose", "dose": "dose", "serve": "serve",
}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"rtforge: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(2)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of every subcommand, or only of ``command``'s module.

    Parameters
    ----------
    command : str, optional
        A command name; when it is known only the module that registers it is
        imported (start-up time), otherwise every module is.
    """
    parser = _Parser(prog="rtforge", description=__doc__.splitlines()[0],
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"rtforge {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more (-v info, -vv debug) on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    names = (_COMMAND_MODULE[command],) if command in _COMMAND_MODULE else _MODULES
    for name in names:
        importlib.import_module(f"rtforge.cli.{name}").register(sub)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv``: its first token that is not an option."""
    return next((token for token in argv if not token.startswith("-")), None)


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
    # All heavy compute here is Numba's; NumPy's BLAS only ever sees 3x3 and 4x4
    # matrices, and its idle threads spin (measured: 0.08 s of CPU in a batch's parent).
    # Takes effect when NumPy is not loaded yet, as in the command; never overrides a
    # setting of the user's.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    argv = _join_negative_values(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_of(argv))
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
