"""``rtforge validate``: our own checks plus dciodvfy, per file."""

from __future__ import annotations

import argparse
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rtforge.cli._common import add_output_flags, emit_json, progress_bar
from rtforge.config import load_config
from rtforge.errors import InvalidInputError
from rtforge.io.validate import ValidationResult, dciodvfy_available, is_dicom_file, validate_file

__all__ = ["register"]

_EXAMPLE = """examples:
  rtforge validate rtforge-demo
  rtforge validate --quiet out/RTF-PHANTOM-001/*/*/*.dcm
  (exit 1 when any file has an error; with --strict also when a file could not be
   verified by dciodvfy, e.g. 32-bit Pixel Data that Debian's dciodvfy aborts on)

Folders are searched recursively; files in them that are not DICOM (PNG, CSV, text)
are skipped and counted. A DICOMDIR is checked as a Media Storage Directory.
"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``validate`` subcommand."""
    p = sub.add_parser("validate", help="check DICOM files (our checks, and dciodvfy if installed)",
                       description="Check DICOM files: rtforge's own checks, then dciodvfy "
                                   "(dicom3tools) when installed.",
                       epilog=_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", type=Path, nargs="+", metavar="FILES",
                   help="files or folders (searched recursively)")
    p.add_argument("--strict", action="store_true",
                   help="also fail (exit 1) when a file could not be verified by dciodvfy")
    add_output_flags(p)
    p.set_defaults(func=_validate)


def _expand(paths: list[Path]) -> tuple[list[Path], int]:
    """The files to check, and how many non-DICOM files in folders were skipped."""
    out: list[Path] = []
    skipped = 0
    for p in paths:
        if p.is_dir():
            for q in sorted(q for q in p.rglob("*") if q.is_file()):
                if is_dicom_file(q):
                    out.append(q)
                else:
                    skipped += 1
        elif p.is_file():
            out.append(p)
        else:
            raise InvalidInputError("no such file or folder", path=p)
    if not out:
        raise InvalidInputError(f"no DICOM files to validate ({skipped} non-DICOM files)",
                                path=paths[0])
    return out, skipped


def _status(r: ValidationResult) -> str:
    if r.errors:
        return "ERROR"
    if r.not_verified and dciodvfy_available():
        return "not verified"  # without dciodvfy every file is; that is said once
    return "warnings" if r.warnings else "ok"


def _summary(results: list[ValidationResult]) -> list[str]:
    """One line per object kind: files, with errors, with warnings, not verified."""
    lines = []
    kinds = Counter(r.kind or "no SOP Class" for r in results)
    for kind in sorted(kinds):
        group = [r for r in results if (r.kind or "no SOP Class") == kind]
        counts = Counter(_status(r) for r in group)
        parts = [f"{kinds[kind]} file{'s' if kinds[kind] > 1 else ''}"] + [f"{counts[s]} {s}" for s in
                                             ("ERROR", "warnings", "not verified") if counts[s]]
        lines.append(f"  {kind}: " + ", ".join(parts))
    return lines


def _validate(args: argparse.Namespace) -> int:
    files, skipped = _expand(args.files)
    creators = (load_config().export.private_creator,)
    bar = progress_bar(args, len(files), "validate", "file")
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        results = []
        for r in pool.map(lambda f: validate_file(f, private_creators=creators), files):
            results.append(r)
            bar.update()
    bar.close()
    bad = [r for r in results if r.errors]
    unverified = [r for r in results if r.not_verified]
    failed = bool(bad) or (args.strict and bool(unverified))
    if args.json:
        emit_json({"dciodvfy": dciodvfy_available(), "skipped_non_dicom": skipped,
                   "files": [{"path": str(r.path), "kind": r.kind, "errors": r.errors,
                              "warnings": r.warnings, "dciodvfy_ran": r.dciodvfy_ran,
                              "iod": r.iod, "not_verified": r.not_verified}
                             for r in results]})
        return 1 if failed else 0
    if not dciodvfy_available():
        print("note: dciodvfy not installed (Debian package dicom3tools); own checks only")
    for r in results:
        status = _status(r)
        if args.quiet and status == "ok":
            continue
        print(f"{r.path}: {status}")
        for e in r.errors:
            print(f"  error: {e}")
        for w in r.warnings:
            if dciodvfy_available() or not w.startswith("not verified by dciodvfy"):
                print(f"  warning: {w}")
    print(f"{len(results)} files, {len(bad)} with errors, "
          f"{sum(1 for r in results if _status(r) == 'warnings')} with warnings, "
          f"{sum(1 for r in results if _status(r) == 'not verified')} not verified by dciodvfy"
          + (f"; {skipped} non-DICOM files skipped" if skipped else ""))
    for line in _summary(results):
        print(line)
    return 1 if failed else 0
