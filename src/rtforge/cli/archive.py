"""``rtforge store | file | restore``: the local store's catalog, File/Restore to an archive."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from rtforge.cli._common import (
    add_output_flags,
    add_tls_flags,
    emit_json,
    progress_bar,
    with_tls_flags,
)
from rtforge.config import VERIFY_METHODS, Config, Node, load_config
from rtforge.errors import InvalidInputError, RtforgeError
from rtforge.net import resolve_node
from rtforge.net.archive import file_case, restore_case
from rtforge.net.catalog import Catalog, SeriesSummary, conflicting_copies

__all__ = ["register", "add_store_flags", "open_catalog", "report_quarantine"]

_STORE_EXAMPLE = """examples:
  rtforge store import /data/incoming           (index files in place)
  rtforge store ls
  rtforge store ls --patient RTF-PHANTOM-001            (its studies and series)
  rtforge store ls --patient RTF-PHANTOM-001 --instances  (every instance)
the store and its catalog: [archive] store and catalog in the configuration, or --store/--catalog.
A study belongs to one patient: an object whose study (series, SOP Instance UID) the catalog
holds under another Patient ID is quarantined (kept aside, reported, listed by 'store ls', never
exported, filed or restored), never merged. So is a conflicting copy: a file of a catalogued SOP
Instance UID with other content (the receiver's <UID>_2.dcm), listed with both files; it is
never deleted either, and 'file' files the catalogued copy and leaves it local. An object of
other content received after its SOP Instance UID was filed (at the free <UID>.dcm) is a
conflicting copy of the archive's copy: listed naming the archive, the row stays filed.
import checks each file (truncated, short Pixel Data, non-finite geometry, broken contours): a
damaged one is named on stderr and not catalogued (exit status 1); the others are.
"""
_FILE_EXAMPLE = """examples:
  rtforge file RTF-PHANTOM-001 --to pacs
  rtforge file RTF-PHANTOM-001 --to ORTHANC@10.0.0.5:4242 --study 1.2.3
  rtforge file RTF-PHANTOM-001 --to-folder /media/usb/archive
order: C-FIND what the archive already holds and retrieve it (C-MOVE to the temporary SCP
of [archive] restore_ae_title/restore_port): an identical copy is not sent again, another is;
store the rest; prove each instance (the node's verify setting: "commitment" = Storage
Commitment, the report coming to the temporary SCP's AE; "retrieve" = C-MOVE back and compare
the data set SHA-256; "auto" = commitment where the node supports it); then delete the local
files; the catalog keeps the records and the archive's name. Any instance not proven:
nothing is deleted, exit 1, the instances are listed ("missing: UID"); run again.
quarantined objects are never filed; a conflicting copy of the patient (another file of a
filed SOP Instance UID, other content, also one received after filing) stays local and is
named on stderr ("not filed"): it is never sent under the filed instance's UID.
A folder target: each copy is read back and compared. A run killed at any point is
reconciled by the next file or restore.
TLS (--tls... or the node's tls settings): the temporary SCP listens with TLS too, presenting
our certificate (--tls-cert/tls_cert, required) and requiring the archive's client certificate
signed by --tls-ca/tls_ca.
compressed files the archive takes only uncompressed go decompressed (lossless exactly; lossy
JPEG only with --allow-lossy-decompress).
"""
_RESTORE_EXAMPLE = """examples:
  rtforge restore RTF-PHANTOM-001
  rtforge restore RTF-PHANTOM-001 --aet RTFORGE_RST --port 11113
a temporary SCP ([archive] restore_ae_title/restore_port) receives the C-MOVE from the
archive the records name; every instance is checked against the catalog (UID and checksum).
A run killed at any point is reconciled by the next file or restore (rows settled from the
disk, temporary .restore/*.partial folders and .tmp files removed).
restore never writes over a file: a conflicting copy at a filed instance's path (an object of
other content received after filing, see 'store ls') is named and nothing is restored (exit
1) until it is moved away.
TLS: the recorded archive's settings come from the configured node of the same AET@HOST:PORT,
overridden by --tls...; with TLS the temporary SCP listens with TLS as for 'rtforge file'.
"""


def add_store_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", type=Path, metavar="DIR",
                   help="the local store (default: [archive] store of the configuration)")
    p.add_argument("--catalog", type=Path, metavar="FILE",
                   help="the catalog (default: [archive] catalog, else STORE/catalog.sqlite)")
    p.add_argument("--config", type=Path, help="configuration file (default $RTFORGE_CONFIG)")


def open_catalog(args: argparse.Namespace) -> tuple[Config, Catalog]:
    """The configuration and the catalog the flags (or the configuration) name."""
    config = load_config(args.config)
    if args.catalog is not None:
        path = args.catalog
    elif args.store is not None:
        path = args.store / "catalog.sqlite"
    else:
        path = config.archive.catalog_path
    return config, Catalog(path)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``store``, ``file`` and ``restore`` subcommands."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("store", help="the local store's catalog: import files, list cases",
                       epilog=_STORE_EXAMPLE, formatter_class=fmt)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    q = actions.add_parser("import", help="index DICOM files (in place) in the catalog",
                           epilog=_STORE_EXAMPLE, formatter_class=fmt)
    q.add_argument("paths", type=Path, nargs="+", metavar="PATH",
                   help="files or folders (searched recursively)")
    add_store_flags(q)
    add_output_flags(q)
    q.set_defaults(func=_store_import)
    q = actions.add_parser("ls", help="list the cases of the catalog", epilog=_STORE_EXAMPLE,
                           formatter_class=fmt)
    q.add_argument("--patient", metavar="ID",
                   help="only this Patient ID, with its studies and series (counts per modality)")
    q.add_argument("--instances", action="store_true",
                   help="list every instance (the long form), quarantined ones included")
    add_store_flags(q)
    add_output_flags(q)
    q.set_defaults(func=_store_ls)

    p = sub.add_parser("file", help="file a patient to an archive, verify, delete locally",
                       epilog=_FILE_EXAMPLE, formatter_class=fmt)
    p.add_argument("patient_id", metavar="PATIENT_ID")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", metavar="NODE", dest="node",
                        help="archive node from the configuration, or AET@HOST:PORT")
    target.add_argument("--to-folder", type=Path, metavar="DIR", dest="folder",
                        help="file to a folder (Part 10 file set on external storage)")
    p.add_argument("--study", metavar="UID", help="only this Study Instance UID")
    p.add_argument("--aet", metavar="AET", help="our calling AE title (default: [network] "
                   "ae_title)")
    p.add_argument("--timeout", type=float, metavar="S", help="network timeout in seconds")
    p.add_argument("--verify", choices=VERIFY_METHODS,
                   help="how the archive's copies are proven (default: the node's verify "
                   "setting, else auto)")
    p.add_argument("--scp-aet", metavar="AET", help="AE title of the temporary SCP (default: "
                   "[archive] restore_ae_title)")
    p.add_argument("--scp-port", type=int, metavar="PORT",
                   help="its port (default: [archive] restore_port)")
    p.add_argument("--bind", default="", metavar="ADDR",
                   help="address it listens on (default: every interface)")
    p.add_argument("--allow-lossy-decompress", action="store_true",
                   help="send lossy JPEG files decompressed to an archive that does not take "
                        "them as they are (lossless ones always are); the local originals are "
                        "deleted all the same")
    add_store_flags(p)
    add_tls_flags(p)
    add_output_flags(p)
    p.set_defaults(func=_file)

    p = sub.add_parser("restore", help="restore a filed patient from its archive",
                       epilog=_RESTORE_EXAMPLE, formatter_class=fmt)
    p.add_argument("patient_id", metavar="PATIENT_ID")
    p.add_argument("--aet", metavar="AET", help="AE title of the temporary SCP (default: "
                   "[archive] restore_ae_title)")
    p.add_argument("--port", type=int, help="its port (default: [archive] restore_port)")
    p.add_argument("--bind", default="", metavar="ADDR",
                   help="address it listens on (default: every interface)")
    p.add_argument("--calling-aet", metavar="AET",
                   help="our calling AE title for C-FIND/C-MOVE (default: [network] ae_title)")
    p.add_argument("--timeout", type=float, metavar="S",
                   help="network timeout in seconds (default: the recorded node's, 30)")
    add_store_flags(p)
    add_tls_flags(p)
    add_output_flags(p)
    p.set_defaults(func=_restore)


def report_quarantine(args: argparse.Namespace, lines: list[str]) -> None:
    """Write each quarantine report line on stderr (``--json`` carries them instead)."""
    if not args.json:
        for line in lines:
            sys.stderr.write(f"rtforge {args.command}: warning: {line}\n")


def _store_import(args: argparse.Namespace) -> int:
    for path in args.paths:  # before the catalog is opened (and so created)
        if not path.exists():
            raise InvalidInputError("no such file or folder", path=path)
    _, catalog = open_catalog(args)
    with catalog:
        report = catalog.import_paths(args.paths)
    report_quarantine(args, report.quarantine_lines())
    for _, error in report.rejected:
        sys.stderr.write(f"rtforge store import: {error} (not imported)\n")
    if args.json:
        emit_json(report.as_dict())
    elif not args.quiet:
        quarantined = f", {len(report.quarantined)} quarantined" if report.quarantined else ""
        print(f"{report.added} added, {report.updated} updated, {len(report.skipped)} skipped "
              f"(not DICOM Part 10), {len(report.rejected)} rejected (damaged){quarantined} in "
              f"{catalog.path}")
    return 1 if report.rejected else 0


def _print_series(series: list[SeriesSummary]) -> None:
    """A patient's studies (with counts per modality), each with its series."""
    by_study: dict[str, list[SeriesSummary]] = {}
    for item in series:
        by_study.setdefault(item.study_uid, []).append(item)
    for study_uid, members in by_study.items():
        modalities: dict[str, int] = {}
        for item in members:
            modalities[item.modality or "-"] = modalities.get(item.modality or "-", 0) + \
                item.instances
        counts = ", ".join(f"{n} {modality}" for modality, n in sorted(modalities.items()))
        first = members[0]
        print(f"  study {study_uid}  {first.study_date or '-'}  "
              f"{first.study_description or '-'}: {counts}")
        for item in members:
            states = ", ".join(f"{n} {state}" for state, n in sorted(item.states.items()))
            print(f"    series {item.series_uid}  {item.modality or '-':<8} "
                  f"{item.instances:>6} instance{'s' if item.instances != 1 else ''}  {states}"
                  f"  {item.series_description}".rstrip())


def _store_ls(args: argparse.Namespace) -> int:
    _, catalog = open_catalog(args)
    with catalog:
        cases = catalog.cases(args.patient)
        series = catalog.series(args.patient) if args.patient else []
        wanted = [args.patient] if args.patient else [c.patient_id for c in cases]
        instances = [r for pid in wanted for r in catalog.instances(pid)] \
            if args.patient or args.instances else []
        aside = [r for pid in wanted for r in catalog.quarantined(pid)] \
            if args.patient or args.instances else []
    if args.json:
        rows = [c.as_dict() for c in cases]
        if args.patient and rows:
            rows[0]["series_detail"] = [s.as_dict() for s in series]
            rows[0]["instances_detail"] = [r.as_dict() for r in instances]
            rows[0]["quarantined_detail"] = [r.as_dict() for r in aside]
        emit_json(rows)
        return 0
    if args.quiet:
        return 0
    print(f"{'PatientID':<20} {'Name':<20} {'studies':>7} {'series':>6} {'instances':>9} "
          f"{'MB':>8}  state")
    for case in cases:
        states = ", ".join(f"{n} {state}" for state, n in sorted(case.states.items()))
        archives = f" ({', '.join(case.archives)})" if case.archives else ""
        print(f"{case.patient_id[:20]:<20} {case.patient_name[:20]:<20} {case.studies:>7} "
              f"{case.series:>6} {case.instances:>9} {case.size / 1e6:>8.1f}  {states}{archives}")
    if args.instances:
        for record in instances:
            print(f"  {record.sop_instance_uid}  {record.state.value:<8} {record.path}")
        for aside_record in aside:
            filed = f" filed to {aside_record.copy_archive}" if aside_record.copy_archive \
                else ""
            why = f"conflicting copy of {aside_record.copy_of}{filed}" if aside_record.copy_of \
                else f"study of {aside_record.owner_patient_id!r}"
            print(f"  {aside_record.sop_instance_uid}  {aside_record.state.value:<8} "
                  f"{aside_record.path}  ({why})")
    elif args.patient:
        _print_series(series)
    for case in cases:
        for group in case.quarantine:
            print(group.line())
        for conflict in case.conflicts:
            print(conflict.line())
    print(f"{len(cases)} case{'s' if len(cases) != 1 else ''}")
    return 0


def _file(args: argparse.Namespace) -> int:
    config, catalog = open_catalog(args)
    target: Node | Path = args.folder
    if args.folder is None:
        target = with_tls_flags(resolve_node(args.node, config.network, timeout=args.timeout),
                                args)
        if args.verify is not None:
            target = replace(target, verify=args.verify)
    bar = progress_bar(args, None, "file", "obj")
    try:
        with catalog:
            report = file_case(
                catalog, args.patient_id, target, study_uid=args.study,
                ae_title=args.aet or config.network.ae_title,
                scp_ae_title=args.scp_aet or config.archive.restore_ae_title,
                scp_port=config.archive.restore_port if args.scp_port is None else args.scp_port,
                scp_host=args.bind, progress=lambda done, total: bar.set(done, total),
                allow_lossy_decompress=args.allow_lossy_decompress)
            kept = [r for r in conflicting_copies(catalog.quarantined(args.patient_id))
                    if args.study is None or r.study_uid == args.study]
    finally:
        bar.close()
    report_quarantine(args, [f"not filed, kept local: {r.line()}" for r in kept])
    if args.json:
        emit_json({**report.as_dict(), "conflicting_copies": [r.as_dict() for r in kept]})
    elif not args.quiet:
        print(f"{args.patient_id}: {report.sent} of {report.total} stored ({report.already} "
              f"already there), {report.verified} verified, {report.deleted} local files "
              f"deleted ({report.archive})")
        for uid in report.differed:
            print(f"sent again (the archive held other content): {uid}")
        if report.decompressed:
            print(f"decompressed {report.decompressed} object(s) the archive accepts only "
                  "uncompressed")
        for uid in report.missing:
            print(f"missing: {uid}")
    if not report.ok:
        raise RtforgeError(f"{report.failure}; nothing deleted, run again to resume")
    return 0


def _recorded_node(args: argparse.Namespace, config: Config, catalog: Catalog) -> Node | None:
    """The archive a patient's records name, as configured (TLS included), with the flags.

    ``None`` (the records' own address, plain DICOM) unless exactly one node
    archive is recorded.
    """
    archives = {r.archive for r in catalog.instances(args.patient_id)
                if r.archive and "@" in r.archive}
    if len(archives) != 1:
        return None
    archive = archives.pop()
    configured = [n for n in config.network.nodes.values() if str(n) == archive]
    node = configured[0] if configured else resolve_node(archive)
    if args.timeout is not None:
        node = replace(node, timeout=args.timeout)
    return with_tls_flags(node, args)


def _restore(args: argparse.Namespace) -> int:
    config, catalog = open_catalog(args)
    bar = progress_bar(args, None, "restore", "obj")
    try:
        with catalog:
            node = _recorded_node(args, config, catalog)
            report = restore_case(
                catalog, args.patient_id,
                scp_ae_title=args.aet or config.archive.restore_ae_title,
                scp_port=config.archive.restore_port if args.port is None else args.port,
                scp_host=args.bind, node=node,
                ae_title=args.calling_aet or config.network.ae_title,
                progress=lambda done, total: bar.set(done, total))
    finally:
        bar.close()
    if args.json:
        emit_json(report.as_dict())
    elif not args.quiet:
        print(f"{args.patient_id}: {report.restored} of {report.expected} restored "
              f"({report.received} received from {', '.join(report.archives)})")
        for uid in report.missing:
            print(f"missing: {uid}")
    if not report.ok:
        aside = f"; what arrived is kept in {report.aside}" if report.aside else ""
        raise RtforgeError(f"restore incomplete: {report.failure}; records stay filed{aside}")
    return 0
