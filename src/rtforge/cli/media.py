"""``rtforge media import | export``: Part 10 file sets on removable media (Oncentra section 5)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rtforge.cli._common import add_output_flags, emit_json
from rtforge.cli.archive import add_store_flags, open_catalog, report_quarantine
from rtforge.errors import InvalidInputError
from rtforge.io.media import copy_into, export_media, scan_media
from rtforge.net.catalog import InstanceState, quarantine_lines

__all__ = ["register"]

_EXAMPLE = """examples:
  rtforge media import /media/cdrom
  rtforge media export RTF-PHANTOM-001 /media/usb/case1 --dicomdir
import: the DICOMDIR is used when present; files it misses are read all the same and listed,
and without one every file is read. The files are copied into the store and catalogued; one
of a SOP Instance UID the store holds with other content is kept beside it (<UID>_2.dcm, never
over it) and catalogued as a conflicting copy (see 'rtforge store ls').
Each file is checked first (truncated file, short Pixel Data, non-finite geometry, broken
contours): a damaged one is named on stderr and left out (exit status 1), the others imported.
export: the case's local files with generated folder names, and a DICOMDIR with --dicomdir;
only objects that hold the case's Patient ID (quarantined objects, kept aside because their study
belongs to another patient or as conflicting copies, are left out and reported).
The DICOMDIR's records are in the configured character_set (ISO_IR 100 by default, ISO_IR 192
if set).
"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``media`` subcommand."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("media", help="import from or export to media (DICOMDIR or not)",
                       epilog=_EXAMPLE, formatter_class=fmt)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    q = actions.add_parser("import", help="copy a folder's DICOM files into the store",
                           epilog=_EXAMPLE, formatter_class=fmt)
    q.add_argument("folder", type=Path, metavar="DIR")
    add_store_flags(q)
    add_output_flags(q)
    q.set_defaults(func=_import)
    q = actions.add_parser("export", help="write a case as a Part 10 file set",
                           epilog=_EXAMPLE, formatter_class=fmt)
    q.add_argument("patient_id", metavar="CASE", help="the case's Patient ID")
    q.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="a new or empty folder")
    q.add_argument("--dicomdir", action="store_true", help="write a DICOMDIR too")
    add_store_flags(q)
    add_output_flags(q)
    q.set_defaults(func=_export)


def _import(args: argparse.Namespace) -> int:
    scan = scan_media(args.folder)
    for _, error in scan.rejected:
        sys.stderr.write(f"rtforge media import: {error} (not imported)\n")
    if not scan.files:
        if scan.rejected:
            return 1
        raise InvalidInputError("no DICOM Part 10 files found", path=args.folder)
    config, catalog = open_catalog(args)
    store = args.store if args.store is not None else Path(config.archive.store)
    with catalog:
        copied = copy_into(scan.files, store)
        report = catalog.import_paths(copied)
    report_quarantine(args, report.quarantine_lines())
    if args.json:
        emit_json({**scan.as_dict(), "imported": report.added, "updated": report.updated,
                   "quarantined": report.as_dict()["quarantined"],
                   "conflicting_copies": report.as_dict()["conflicting_copies"],
                   "store": str(store)})
    elif not args.quiet:
        how = "through its DICOMDIR" if scan.dicomdir is not None else "file by file"
        quarantined = f", {len(report.quarantined)} quarantined" if report.quarantined else ""
        print(f"imported {len(copied)} file(s) from {args.folder} {how} into {store} "
              f"({report.added} new{quarantined})")
        for path in scan.missed_by_dicomdir:
            print(f"not in the DICOMDIR: {path}")
        for path in scan.dangling:
            print(f"in the DICOMDIR but missing: {path}")
        if scan.dicomdir_error:
            print(f"DICOMDIR unusable ({scan.dicomdir_error}): read every file instead")
    return 1 if scan.rejected else 0


def _export(args: argparse.Namespace) -> int:
    config, catalog = open_catalog(args)
    with catalog:
        records = catalog.instances(args.patient_id)
        aside = catalog.quarantined(args.patient_id)
    report_quarantine(args, [f"left out: {line}" for line in quarantine_lines(aside)])
    if not records:
        raise InvalidInputError(f"case {args.patient_id!r} is not in the catalog (see "
                                "'rtforge store ls')" if not aside else
                                f"case {args.patient_id!r} has only quarantined objects")
    filed = sum(r.state is not InstanceState.LOCAL for r in records)
    if filed:
        raise InvalidInputError(f"{filed} instance(s) of {args.patient_id!r} are filed; "
                                "restore the case first ('rtforge restore')")
    report = export_media([r.path for r in records], args.out_dir, dicomdir=args.dicomdir,
                          patient_id=args.patient_id,
                          character_set=config.export.character_set)
    if args.json:
        emit_json(report.as_dict())
    elif not args.quiet:
        extra = " and a DICOMDIR" if report.dicomdir is not None else ""
        print(f"wrote {len(report.files)} file(s){extra} under {report.out_dir}")
    return 0
