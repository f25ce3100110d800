"""The ``rtforge`` command.

Thin glue over the Python API: parse, call, print.  Exit status 0 on
success, 1 on failure (one line on stderr, never a traceback), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib
import logging
import os
import re
import select
import sys
import threading
import warnings
from collections.abc import Sequence
from typing import NoReturn

from rtforge import __version__
from rtforge.errors import RtforgeError

__all__ = ["main", "build_parser", "run"]

#: The modules of :mod:`rtforge.cli` that register subcommands, in ``--help`` order.
_MODULES = ("reslice", "demo", "validate", "net", "drr", "contours", "archive", "media", "plan",
            "registration", "printing", "dose", "serve")

#: Which module registers each command.  A run imports only that module, so
#: ``rtforge reslice`` does not pay for importing the networking stack, and so on
#: (``tests/cli/test_main.py`` checks this table against the registrations).
_COMMAND_MODULE = {
    "reslice": "reslice", "batch": "reslice", "demo": "demo", "warmup": "demo",
    "validate": "validate",
    "echo": "net", "send": "net", "receive": "net", "find": "net", "move": "net",
    "drr": "drr", "contours": "contours", "store": "archive", "file": "archive",
    "restore": "archive", "media": "media", "plan": "plan", "deid": "plan", "relink": "plan",
    "print": "printing", "dvh": "dose", "dose": "dose", "serve": "serve", "reg": "registration",
}


#: Each command's one-line help, as its module registers it: ``rtforge --help`` and
#: ``--version`` list commands from this table without importing any command module
#: (``tests/cli/test_main.py`` checks it against the registrations).
_COMMAND_HELP = {
    "reslice": "reslice every CT series under SRC to axial orientation",
    "batch": "reconvert every CT series under an archive, in parallel, resumable",
    "demo": "generate the phantom patient and run the pipeline on it",
    "warmup": "compile the Numba kernels once, ahead of first use",
    "validate": "check DICOM files (our checks, and dciodvfy if installed)",
    "echo": "verify a DICOM node answers (C-ECHO)",
    "send": "send DICOM files to a node (C-STORE)",
    "receive": "run a Storage SCP that writes Part 10 files",
    "find": "query a node (C-FIND), print the matches",
    "move": "have a node send a study, series or image (C-MOVE)",
    "drr": "DRRs of a CT as RT Images (plan beams or typed angles)",
    "contours": "reduce or summarise the contours of an RT Structure Set",
    "store": "the local store's catalog: import files, list cases",
    "file": "file a patient to an archive, verify, delete locally",
    "restore": "restore a filed patient from its archive",
    "media": "import from or export to media (DICOMDIR or not)",
    "plan": "RT Plan: show, split per fraction group",
    "deid": "clinical-trial de-identification of a set of objects",
    "relink": "change patient information and re-link references",
    "reg": "write a rigid registration between two series (REG)",
    "print": "print images on a DICOM printer",
    "dvh": "dose-volume histograms of RT Structure Set ROIs",
    "dose": "inspect, sum or requantize RT Dose grids",
    "serve": "answer DRR and DVH requests over HTTP",
}

_DESCRIPTION = """\
rtforge: a radiotherapy DICOM compute core. It reslices CT series to axial
orientation, writes and reads RT Structure Sets, Plans, Doses and Images, computes
DRRs and DVHs with Numba kernels, and moves DICOM objects over the network
(echo, send, receive, find, move, file/restore to an archive, print).

Run 'rtforge COMMAND --help' for a command's options and an example.
Exit status: 0 on success, 1 on failure (one line on stderr), 2 on bad usage."""


#: Commands that run Numba kernels: before their first compile, one line says so.
_KERNEL_COMMANDS = frozenset({"reslice", "batch", "demo", "warmup", "drr", "dvh", "dose",
                              "contours", "serve"})


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"rtforge: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(2)


def build_parser(command: str | None = None, *, stubs: bool = False
                 ) -> argparse.ArgumentParser:
    """The argument parser of every subcommand, or only of ``command``'s module.

    Parameters
    ----------
    command : str, optional
        A command name; when it is known only the module that registers it is
        imported (start-up time), otherwise every module is.
    stubs : bool, optional
        With no known ``command``: list every command with its one-line help
        but import no command module (``rtforge --help``, ``--version``).
    """
    parser = _Parser(prog="rtforge", description=_DESCRIPTION,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"rtforge {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more (-v info, -vv debug) on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    if stubs and command not in _COMMAND_MODULE:
        for name, text in _COMMAND_HELP.items():
            sub.add_parser(name, help=text, add_help=False)
        return parser
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


def _full_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """``rtforge dose sum``: the command and its action, as error lines name them."""
    words = ["rtforge"]
    while True:
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)),
                   None)
        name = getattr(args, sub.dest, None) if sub is not None else None
        if name is None:
            return " ".join(words)
        words.append(name)
        parser = sub.choices[name]


def _import_pydicom() -> None:
    """pydicom's import for a command, before the command's module imports it.

    Without the extras of its test-data downloader
    (:mod:`rtforge.io._pydicom_start`) and with the cyclic garbage collector
    paused (:mod:`rtforge._gc`).
    """
    from rtforge import _gc
    from rtforge.io._pydicom_start import import_pydicom_without_downloader_extras

    with _gc.paused():
        import_pydicom_without_downloader_extras()


def _read_leniently() -> None:
    """pydicom reads others' files without its own warnings on the terminal.

    A value that breaks its VR's rules is the command's finding where it matters: the
    readers check every value they use and name the file and attribute, and
    ``rtforge validate`` reports every such value.  pydicom's warning for each (a
    traceback-like line per value) would be the only sign of a problem it did not
    make.  What rtforge writes stays strict (its own checks).  The command's process
    only: the library never changes pydicom's settings.
    """
    from pydicom import config as pydicom_config

    pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
    # and its notes on how it read a file (an explicit-VR file found implicit, ...)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\.|$)")


def _stdout_closed() -> bool:
    """True when standard output is a pipe whose reading end is closed."""
    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poll.poll(0))
    except (OSError, ValueError, AttributeError):  # no real file descriptor (captured)
        return False


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``rtforge`` command; returns the exit status."""
    # All heavy compute here is Numba's; NumPy's BLAS only ever sees 3x3 and 4x4
    # matrices, and its idle threads spin (measured: 0.08 s of CPU in a batch's parent).
    # Takes effect when NumPy is not loaded yet, as in the command; never overrides a
    # setting of the user's.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    argv = _join_negative_values(sys.argv[1:] if argv is None else argv)
    name = _command_of(argv)
    if name is not None:  # not a bare --help or --version, which never load pydicom
        _import_pydicom()
    parser = build_parser(name, stubs=True)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    command = _full_command(parser, args)
    _read_leniently()
    level = {0: logging.ERROR, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pydicom").setLevel(level)  # pydicom sets its own WARNING level
    if args.command in _KERNEL_COMMANDS and not getattr(args, "quiet", False) \
            and sys.stderr.isatty():  # for the person watching, as the progress bars are
        from rtforge.core._kernel_cache import kernels_cached

        if not kernels_cached():
            sys.stderr.write("rtforge: compiling the Numba kernels once (about a minute; later "
                             "runs start at once; 'rtforge warmup' does it ahead)\n")
    try:
        return int(args.func(args) or 0)
    except RtforgeError as exc:
        sys.stderr.write(f"{command}: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"{command}: interrupted\n")
        return 130
    except BrokenPipeError as exc:
        if not _stdout_closed():  # a peer's socket, not our reader: a failure
            sys.stderr.write(f"{command}: {exc}\n")
            return 1
        # The reader of our output (head, less) stopped reading: it has all it wanted.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        sys.stderr.write(f"{command}: {exc}\n")
        return 1


def run() -> NoReturn:
    """The ``rtforge`` program: :func:`main`, then a quick exit with its status.

    After a command that used the kernels, the interpreter's own teardown
    (every module freed, Numba's and LLVM's state) takes about 0.15 s, a tenth of
    a single-series reslice.  Nothing in it matters once the output is flushed
    and the atexit handlers (logging, multiprocessing's and Dask's clean-up) have
    run, so the process ends there.  When a non-daemon thread is still alive
    (its work must finish), the normal exit waits for it instead.
    """
    from rtforge import _gc

    _gc.freeze_after_pauses()  # this process is the program's (see rtforge._gc)
    code = main()
    others = [t for t in threading.enumerate()
              if t is not threading.main_thread() and t.is_alive() and not t.daemon]
    if others:
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more to say
            stream.flush()
    atexit._run_exitfuncs()
    os._exit(code)
