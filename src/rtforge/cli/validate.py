"""``rtforge validate``: our own checks plus dciodvfy, per file."""

from __future__ import annotations

import argparse
from pathlib import Path

from rtforge.cli._common import add_output_flags, emit_json
from rtforge.errors import InvalidInputError
from rtforge.io.validate import dciodvfy_available, validate_file

__all__ = ["register"]

_EXAMPLE = """example:
  rtforge validate out/RTF-PHANTOM-001/*/*/*.dcm
  (exit 1 when any file has an error)
"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``validate`` subcommand."""
    p = sub.add_parser("validate", help="check DICOM files (our checks, and dciodvfy if installed)",
                       epilog=_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", type=Path, nargs="+", metavar="FILES",
                   help="files or folders (searched recursively)")
    add_output_flags(p)
    p.set_defaults(func=_validate)


def _expand(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.is_file()))
        elif p.is_file():
            out.append(p)
        else:
            raise InvalidInputError("no such file or folder", path=p)
    if not out:
        raise InvalidInputError("no files to validate", path=paths[0])
    return out


def _validate(args: argparse.Namespace) -> int:
    files = _expand(args.files)
    results = [validate_file(f) for f in files]
    bad = [r for r in results if r.errors]
    if args.json:
        emit_json({"dciodvfy": dciodvfy_available(),
                   "files": [{"path": str(r.path), "errors": r.errors, "warnings": r.warnings,
                              "dciodvfy_ran": r.dciodvfy_ran} for r in results]})
    else:
        if not dciodvfy_available():
            print("note: dciodvfy not installed (Debian package dicom3tools); own checks only")
        for r in results:
            status = "ERROR" if r.errors else ("warnings" if r.warnings else "ok")
            print(f"{r.path}: {status}")
            for e in r.errors:
                print(f"  error: {e}")
            for w in r.warnings:
                print(f"  warning: {w}")
        print(f"{len(results)} files, {len(bad)} with errors")
    return 1 if bad else 0
