"""``rtforge echo | send | receive | find | move``: DICOM networking."""

from __future__ import annotations

import argparse
import logging
import re
import signal
import ssl
import sys
from pathlib import Path
from typing import Any

from pydicom.multival import MultiValue

from rtforge.cli._common import (
    add_output_flags,
    add_tls_flags,
    emit_json,
    progress_bar,
    with_tls_flags,
)
from rtforge.config import Config, load_config
from rtforge.errors import InvalidInputError, NetworkError
from rtforge.net import (
    DuplicatePolicy,
    Node,
    QueryLevel,
    QueryModel,
    StorageSCP,
    StoredObject,
    echo,
    find,
    move,
    resolve_node,
    return_keys,
    send,
    status_meaning,
)
from rtforge.net.catalog import Catalog, CatalogIndexer
from rtforge.net.receiver import LOCK_NAME, SyncPolicy
from rtforge.net.reconcile import reconcile_store
from rtforge.net.store import UNCOMPRESSED_TRANSFER_SYNTAXES
from rtforge.net.tls import server_context

__all__ = ["register"]

_TS_NAMES = dict(zip(("implicit", "explicit", "big"), UNCOMPRESSED_TRANSFER_SYNTAXES, strict=True))
_DATE_RANGE = re.compile(r"^(\d{8})?(-(\d{8})?)?$")

_ECHO_EXAMPLE = """examples:
  rtforge echo pacs                       (a node named in [network.nodes])
  rtforge echo ORTHANC@10.0.0.5:4242 --aet PLANNING1
  rtforge echo PACS@pacs.example.org:2762 --tls-ca ca.pem --tls-cert me.pem --tls-key me.key
"""
_SEND_EXAMPLE = """examples:
  rtforge send out/RTF-PHANTOM-001 --to pacs
  rtforge send plan.dcm dose.dcm --to STORESCP@127.0.0.1:11112 --ts explicit --json
  rtforge send jpeg_series/ --to pacs --allow-lossy-decompress
status policy (Oncentra table 4-7): a failure (A7xx, A9xx, Cxxx, ...) stops the transfer
(exit 1, the count sent is reported); warnings (B000, B006, B007, ...) are listed at the end.
compressed files go as they are when the peer accepts their syntax; otherwise they are
decompressed (JPEG Lossless, JPEG-LS lossless and RLE exactly; JPEG Baseline/Extended and
near-lossless JPEG-LS only with --allow-lossy-decompress, each listed) and sent uncompressed.
An object that cannot go is listed as not sent, the others go on, and the exit status is 1.
"""
_RECEIVE_EXAMPLE = """examples:
  rtforge receive --aet RTFORGE --port 11112 --out incoming
  rtforge receive --out incoming --allow-aet ORTHANC --allow-aet TPS1 --refuse-compressed
  rtforge receive --out /mnt/ramdisk/incoming --sync none
  rtforge receive --out incoming --acse-timeout 5 --max-pending-per-address 4 --min-rate 4096
files: OUT/<PatientID>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm, written
under a temporary name and renamed; with --sync object (default) each file and its folder are
flushed to disk before success is answered. Ctrl-C or SIGTERM: stop accepting, finish the
stores in flight, exit.
refused (0xA900): an object whose SOP Instance, Study or Series Instance UID is not a valid
UID (digits and dots, at most 64 characters); nothing of it is kept. The Patient ID folder is
the ID with every byte other than letters, digits, - _ . written %XX.
a SOP Instance UID received again: identical content is a duplicate (one copy kept); other
content is kept beside the first as <UID>_2.dcm (and reported), never dropped; with --catalog
it is catalogued as a conflicting copy (one line naming the UID and both files; listed by
'rtforge store ls', never exported, filed, restored or deleted).
one receiver per OUT: a second one exits 1 (lock file OUT/""" + LOCK_NAME + """). With
--catalog, start-up first reconciles the catalog with OUT (after a crash, kill -9 included):
files without rows are indexed, rows whose file is gone are settled.
under attack (admission limits above): a connection over a pending cap is closed at once; one
that has not sent its whole A-ASSOCIATE-RQ within --acse-timeout is closed; an association
whose PDU or data rate is too slow, or whose P-DATA-TF exceeds --max-pdu by more than 64 bytes,
is aborted; each with a log line (-v shows them). One association holds about 33 MiB at most.
"""
_FIND_EXAMPLE = """examples:
  rtforge find pacs --patient-name "DOE^*" --study-date 20240101-20240131
  rtforge find pacs --level series --study-uid 1.2.3 --json
  rtforge find pacs --model patient --level patient --patient-id 12345
  rtforge find pacs --patient-name "Müller*"
A key that is not ASCII is sent with Specific Character Set: ISO_IR 100 where Latin-1 holds
it, else ISO_IR 192 (UTF-8); the peer must support it to match.
"""
_MOVE_EXAMPLE = """examples:
  rtforge move pacs --dest RTFORGE --study-uid 1.2.3
  rtforge move pacs --dest RTFORGE --study-uid 1.2.3 --series-uid 1.2.3.4
  rtforge move pacs --dest RTFORGE --model patient --patient-id 12345   (the whole patient)
  rtforge move PACS@pacs.example.org:2762 --dest RTFORGE --study-uid 1.2.3 \\
      --tls-ca ca.pem --tls-cert rtforge.pem --tls-key rtforge.key

A move that matches nothing (0 sub-operations) says so and exits 1.
move starts no receiver: the destination is whatever the node knows under --dest (for example an
'rtforge receive --tls-cert ... --tls-ca ...' of yours, which the node must reach with TLS).
"""


def _add_node_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--aet", metavar="AET", help="our calling AE title (default: [network] "
                   "ae_title of the configuration, else RTFORGE)")
    p.add_argument("--timeout", type=float, metavar="S",
                   help="connection/response timeout in seconds (default: the node's, 30)")
    p.add_argument("--max-pdu", type=int, metavar="BYTES",
                   help="largest PDU we accept (default: the node's, 28672)")
    p.add_argument("--config", type=Path, help="configuration file (default $RTFORGE_CONFIG)")
    add_tls_flags(p)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``echo``, ``send``, ``receive``, ``find`` and ``move`` subcommands."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("echo", help="verify a DICOM node answers (C-ECHO)", epilog=_ECHO_EXAMPLE,
                       formatter_class=fmt)
    p.add_argument("node", metavar="NODE", help="node name from the configuration, or AET@HOST:PORT")
    _add_node_flags(p)
    add_output_flags(p)
    p.set_defaults(func=_echo)

    p = sub.add_parser("send", help="send DICOM files to a node (C-STORE)", epilog=_SEND_EXAMPLE,
                       formatter_class=fmt)
    p.add_argument("paths", type=Path, nargs="+", metavar="PATH",
                   help="files or folders (searched recursively)")
    p.add_argument("--to", required=True, metavar="NODE", dest="node",
                   help="node name from the configuration, or AET@HOST:PORT")
    p.add_argument("--ts", default="implicit,explicit,big", metavar="LIST",
                   help="uncompressed transfer syntaxes to propose, in order "
                        "(default implicit,explicit,big); compressed files go as they are "
                        "when the peer accepts their syntax, else decompressed")
    p.add_argument("--allow-lossy-decompress", action="store_true",
                   help="decompress lossy JPEG files the peer does not accept in their own "
                        "syntax (each is listed); without it they are not sent")
    _add_node_flags(p)
    add_output_flags(p)
    p.set_defaults(func=_send)

    p = sub.add_parser("receive", help="run a Storage SCP that writes Part 10 files",
                       epilog=_RECEIVE_EXAMPLE, formatter_class=fmt)
    p.add_argument("--aet", metavar="AET", help="our AE title (default: [network] ae_title)")
    p.add_argument("--port", type=int, help="TCP port (default: [network] port, 11112)")
    p.add_argument("--bind", default="", metavar="ADDR",
                   help="address to listen on (default: every interface)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output root")
    p.add_argument("--max-associations", type=int, default=10, metavar="N",
                   help="simultaneous associations; one more is rejected (default 10)")
    p.add_argument("--max-pdu", type=int, default=16384, metavar="BYTES",
                   help="Maximum Length we announce (default 16384); a P-DATA-TF longer by more "
                        "than 64 bytes aborts the association. Memory does not grow with it: "
                        "PDUs are read in pieces, an association holds about 33 MiB at most")
    p.add_argument("--refuse-compressed", action="store_true",
                   help="refuse JPEG Baseline, JPEG Lossless and RLE")
    p.add_argument("--allow-aet", action="append", metavar="AET", dest="allow_aets",
                   help="accept only this calling AE title (repeatable; default: anyone)")
    p.add_argument("--duplicates", choices=[d.value for d in DuplicatePolicy],
                   default=DuplicatePolicy.KEEP_FIRST.value,
                   help="a SOP Instance UID received again with other content: keep it beside "
                        "the first as <UID>_2.dcm (keep-first, default) or replace the first; "
                        "identical content is a duplicate either way (one copy kept, success "
                        "answered, logged)")
    p.add_argument("--tls-cert", type=Path, metavar="PEM", help="speak TLS with this certificate")
    p.add_argument("--tls-key", type=Path, metavar="PEM", help="private key of --tls-cert")
    p.add_argument("--tls-ca", type=Path, metavar="PEM",
                   help="require client certificates signed by this CA")
    p.add_argument("--catalog", nargs="?", type=Path, const=True, default=None,
                   metavar="FILE",
                   help="index every stored object in the SQLite catalog (default FILE: the "
                        "[archive] catalog), so that 'rtforge store ls' and 'rtforge file' see "
                        "it; at start-up the catalog is first reconciled with OUT")
    durability = p.add_mutually_exclusive_group()
    durability.add_argument("--sync", choices=[s.value for s in SyncPolicy], default=None,
                            help="what a success status promises: 'object' (default) flushes each "
                                 "file and its folder to the disk before answering; 'none' "
                                 "answers once the file is whole under its final name (faster; "
                                 "objects answered just before a power cut can be lost: for a "
                                 "tmpfs, or a disk with a protected write cache)")
    durability.add_argument("--no-fsync", action="store_true",
                            help="the same as --sync none")
    limits = p.add_argument_group(
        "admission limits", "what a connection is granted (defaults: [network] of the "
        "configuration, else the values shown); past a limit a connection is closed or its "
        "association aborted, with a log line, and its slot is free again")
    limits.add_argument("--acse-timeout", type=float, metavar="S",
                        help="seconds from the connection to its whole A-ASSOCIATE-RQ, TLS "
                             "handshake included (default 10)")
    limits.add_argument("--network-timeout", type=float, metavar="S",
                        help="seconds an association may stay silent between messages "
                             "(default 60)")
    limits.add_argument("--pdu-timeout", type=float, metavar="S",
                        help="seconds each PDU has, from its header, to arrive whole (default 30)")
    limits.add_argument("--min-rate", type=int, metavar="BYTES",
                        help="bytes per second a message must bring while it arrives, over "
                             "each --rate-window; 0: no minimum (default 1024)")
    limits.add_argument("--rate-window", type=float, metavar="S",
                        help="seconds over which --min-rate is measured (default 10)")
    limits.add_argument("--max-pending", type=int, metavar="N",
                        help="connections not yet associated, in all; one more is closed at once "
                             "(default 64; counted apart from --max-associations)")
    limits.add_argument("--max-pending-per-address", type=int, metavar="N",
                        help="the same from one IP address (default 8)")
    limits.add_argument("--max-associations-per-address", type=int, metavar="N",
                        help="associations one IP address may hold at once, of the "
                             "--max-associations slots; one more is rejected (default 8)")
    p.add_argument("--config", type=Path, help="configuration file (default $RTFORGE_CONFIG)")
    add_output_flags(p)
    p.set_defaults(func=_receive)

    p = sub.add_parser("find", help="query a node (C-FIND), print the matches",
                       epilog=_FIND_EXAMPLE, formatter_class=fmt)
    p.add_argument("node", metavar="NODE", help="node name from the configuration, or AET@HOST:PORT")
    p.add_argument("--model", choices=[m.value for m in QueryModel], default="study",
                   help="information model: study root (default) or patient root")
    p.add_argument("--level", choices=[lv.value.lower() for lv in QueryLevel], default="study",
                   help="query level (default study)")
    p.add_argument("--patient-id", help="Patient ID")
    p.add_argument("--patient-name", help="Patient's Name (wildcards * and ?)")
    p.add_argument("--birth-date", metavar="DATE[-DATE]", help="Patient's Birth Date")
    p.add_argument("--sex", choices=("M", "F", "O"), help="Patient's Sex")
    p.add_argument("--study-date", metavar="FROM-TO", help="Study Date, YYYYMMDD or a range")
    p.add_argument("--accession", help="Accession Number")
    p.add_argument("--study-uid", help="Study Instance UID")
    p.add_argument("--series-uid", help="Series Instance UID")
    p.add_argument("--modality", help="Modality: at the study level, Modalities in Study; at "
                   "the series level, Modality")
    p.add_argument("-k", "--key", action="append", default=[], metavar="KEYWORD=VALUE",
                   help="any other matching key (repeatable)")
    _add_node_flags(p)
    add_output_flags(p)
    p.set_defaults(func=_find)

    p = sub.add_parser("move", help="have a node send a study, series or image (C-MOVE)",
                       epilog=_MOVE_EXAMPLE, formatter_class=fmt)
    p.add_argument("node", metavar="NODE", help="node name from the configuration, or AET@HOST:PORT")
    p.add_argument("--dest", required=True, metavar="AET", help="destination AE title")
    p.add_argument("--model", choices=[m.value for m in QueryModel], default="study",
                   help="information model (default study)")
    p.add_argument("--patient-id", help="Patient ID (patient root model)")
    p.add_argument("--study-uid", help="Study Instance UID")
    p.add_argument("--series-uid", help="Series Instance UID")
    p.add_argument("--sop-uid", help="SOP Instance UID")
    _add_node_flags(p)
    add_output_flags(p)
    p.set_defaults(func=_move)


def _quiet_pynetdicom(args: argparse.Namespace) -> None:
    """pynetdicom logs rejections and aborts itself; we report them in one line instead."""
    if getattr(args, "verbose", 0) < 2:
        logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)


def _setup(args: argparse.Namespace) -> tuple[Config, Node, str]:
    config = load_config(args.config)
    node = resolve_node(args.node, config.network, timeout=args.timeout, max_pdu=args.max_pdu)
    return config, with_tls_flags(node, args), args.aet or config.network.ae_title


def _echo(args: argparse.Namespace) -> int:
    _, node, aet = _setup(args)
    result = echo(node, ae_title=aet)
    if args.json:
        emit_json({"node": str(node), "status": "0x0000", "ms": round(result.seconds * 1000, 1)})
    elif not args.quiet:
        print(f"{node}: C-ECHO success ({result.seconds * 1000:.1f} ms)")
    return 0


def _send(args: argparse.Namespace) -> int:
    _, node, aet = _setup(args)
    names = [n.strip().lower() for n in args.ts.split(",") if n.strip()]
    unknown = [n for n in names if n not in _TS_NAMES]
    if unknown or not names:
        raise InvalidInputError(f"--ts takes implicit, explicit and/or big, got {args.ts!r}")
    bar = progress_bar(args, None, "send", "obj")
    try:
        report = send(args.paths, node, ae_title=aet,
                      transfer_syntaxes=[_TS_NAMES[n] for n in names],
                      progress=lambda done, total: bar.set(done, total),
                      allow_lossy_decompress=args.allow_lossy_decompress)
    finally:
        bar.close()
    if args.json:
        emit_json(report.as_dict())
    elif not args.quiet:
        mb = report.bytes_sent / 1e6
        rate = report.sent / report.seconds if report.seconds else 0.0
        print(f"sent {report.sent} of {report.total} objects to {node} ({mb:.1f} MB, "
              f"{report.seconds:.1f} s, {rate:.0f} objects/s, {report.associations} "
              f"association{'s' if report.associations != 1 else ''})")
        if report.decompressed:
            print(f"decompressed {len(report.decompressed)} object(s) the peer accepts only "
                  "uncompressed")
        for path in report.lossy_decompressed:
            print(f"lossy decompressed: {path}")
        for warning in report.warnings:
            print(f"warning: {warning.file}: {warning.reason}")
        for refused in report.refused:
            print(f"not sent: {refused.file}: {refused.reason}")
        if report.skipped:
            print(f"skipped {len(report.skipped)} file(s) that are not DICOM Part 10")
    refused = f", {len(report.refused)} not sent" if report.refused else ""
    if report.failed is not None:
        failed = report.failed
        raise NetworkError(f"{failed.file}: {failed.reason}; {report.sent} of {report.total} "
                           f"sent, {len(report.remaining)} not attempted{refused}",
                           peer=str(node))
    if report.refused:
        first = report.refused[0]
        raise NetworkError(f"{report.sent} of {report.total} sent{refused}; first: "
                           f"{first.file}: {first.reason}", peer=str(node))
    return 0


def _tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    if args.tls_cert is None:
        if args.tls_key is not None or args.tls_ca is not None:
            raise InvalidInputError("--tls-key and --tls-ca need --tls-cert")
        return None
    return server_context(args.tls_cert, args.tls_key, args.tls_ca)


def _receive(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    catalog_path = None
    if args.catalog is not None:
        catalog_path = config.archive.catalog_path if args.catalog is True else args.catalog
    bar = progress_bar(args, None, "received", "obj")
    indexer: CatalogIndexer | None = None

    def on_stored(obj: StoredObject) -> None:
        bar.update(1)
        # A copy kept beside another of its SOP Instance UID is indexed as a conflicting copy.
        if indexer is not None and obj.path is not None and not obj.duplicate:
            indexer.add(obj.path)

    scp = StorageSCP(args.out, ae_title=args.aet or config.network.ae_title,
                     port=config.network.port if args.port is None else args.port,
                     host=args.bind, max_associations=args.max_associations,
                     max_pdu=args.max_pdu, refuse_compressed=args.refuse_compressed,
                     allowed_aets=args.allow_aets, duplicates=args.duplicates,
                     ssl_context=_tls(args), limits=config.network.receive.updated(vars(args)),
                     sync=SyncPolicy.NONE if args.no_fsync else args.sync or SyncPolicy.OBJECT,
                     on_stored=on_stored)
    scp.prepare()  # the folder's lock: a second receiver on OUT stops here
    previous: dict[int, Any] = {}
    try:
        if catalog_path is not None:
            with Catalog(catalog_path) as catalog:
                reconciled = reconcile_store(catalog, args.out)
            if reconciled.changed and not (args.quiet or args.json):
                sys.stderr.write(f"rtforge receive: catalog reconciled with {args.out}: "
                                 f"{reconciled.summary()}\n")
            for line in reconciled.quarantined:
                sys.stderr.write(f"rtforge receive: warning: {line}\n")
            indexer = CatalogIndexer(catalog_path, on_quarantine=lambda line: sys.stderr.write(
                f"rtforge receive: warning: {line}\n"))
        scp.listen()
        previous = {sig: signal.signal(sig, lambda _sig, _frame: scp.request_stop())
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        if not (args.quiet or args.json):
            sys.stderr.write(f"rtforge receive: {scp.ae_title} listening on port {scp.port}, "
                             f"writing under {args.out} (--sync {scp.sync.value}); "
                             "Ctrl-C to stop\n")
        scp.serve_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        scp.stop()  # unlocks the folder if serving never began
        bar.close()
        if indexer is not None:
            indexer.close()
    summary = {"stored": scp.stored, "duplicates": scp.duplicate_count,
               "conflicts": scp.conflicts, "failed": scp.failed,
               "rejected_associations": scp.rejected, "out": str(args.out)}
    if args.json:
        emit_json(summary)
    elif not args.quiet:
        beside = f", {scp.conflicts} kept beside another copy of their UID" \
            if scp.conflicts else ""
        print(f"received {scp.stored} objects ({scp.duplicate_count} duplicates{beside}, "
              f"{scp.failed} failed, {scp.rejected} associations rejected) under {args.out}")
    return 0


def _filters(args: argparse.Namespace) -> dict[str, str]:
    filters = {keyword: value for keyword, value in (
        ("PatientID", args.patient_id), ("PatientName", args.patient_name),
        ("PatientBirthDate", args.birth_date), ("PatientSex", args.sex),
        ("StudyDate", args.study_date), ("AccessionNumber", args.accession),
        ("StudyInstanceUID", args.study_uid), ("SeriesInstanceUID", args.series_uid),
        (_modality_keyword(args.level), args.modality)) if value is not None}
    for flag, keyword in (("--birth-date", "PatientBirthDate"), ("--study-date", "StudyDate")):
        value = filters.get(keyword)
        if value is not None and not _DATE_RANGE.match(value):
            raise InvalidInputError(f"{flag} takes YYYYMMDD or a range YYYYMMDD-YYYYMMDD, "
                                    f"got {value!r}")
    for item in args.key:
        keyword, sep, value = item.partition("=")
        if not sep:
            raise InvalidInputError(f"--key takes KEYWORD=VALUE, got {item!r}")
        filters[keyword.strip()] = value
    return filters


def _modality_keyword(level: str) -> str:
    """Modality is a series attribute; a study is matched by Modalities in Study."""
    return "ModalitiesInStudy" if level.upper() == QueryLevel.STUDY.value else "Modality"


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple, MultiValue)):
        return "\\".join(str(v) for v in value)
    return str(value)


def _find(args: argparse.Namespace) -> int:
    _, node, aet = _setup(args)
    _quiet_pynetdicom(args)
    level = QueryLevel(args.level.upper())
    columns = [k for k in return_keys(args.model, level) if k != "QueryRetrieveLevel"]
    matches = find(node, level, model=args.model, filters=_filters(args), ae_title=aet)
    rows = [{k: _text(ds.get(k)) for k in columns} for ds in matches]
    if args.json:
        emit_json(rows)
        return 0
    if args.quiet:
        return 0
    widths = {k: min(max([len(k)] + [len(r[k]) for r in rows]), 64) for k in columns}
    print("  ".join(k.ljust(widths[k]) for k in columns).rstrip())
    for row in rows:
        print("  ".join(row[k][:64].ljust(widths[k]) for k in columns).rstrip())
    print(f"{len(rows)} match{'es' if len(rows) != 1 else ''}")
    return 0


def _move(args: argparse.Namespace) -> int:
    _, node, aet = _setup(args)
    _quiet_pynetdicom(args)
    if not (args.study_uid or args.series_uid or args.sop_uid
            or (args.patient_id and args.model == QueryModel.PATIENT_ROOT.value)):
        sys.stderr.write("rtforge: error: give --study-uid, --series-uid or --sop-uid, or "
                         "--model patient --patient-id (see 'rtforge move --help')\n")
        return 2
    result = move(node, args.dest, study_uid=args.study_uid, series_uid=args.series_uid,
                  sop_uid=args.sop_uid, patient_id=args.patient_id, model=args.model,
                  ae_title=aet)
    if args.json:
        emit_json({"status": f"0x{result.status:04X}", "completed": result.completed,
                   "failed": result.failed, "warning": result.warning,
                   "failed_sop_instance_uids": result.failed_sop_instance_uids})
    elif not args.quiet:
        print(f"moved to {args.dest}: {result.completed} completed, {result.failed} failed, "
              f"{result.warning} warning ({status_meaning(result.status)})")
    if result.failed:
        raise NetworkError(f"{result.failed} of the move's sub-operations failed", peer=str(node),
                           status=result.status)
    if result.completed + result.warning == 0:
        raise NetworkError("the move matched nothing: no object was sent (check the UIDs, "
                           "the level and the model)", peer=str(node), status=result.status)
    return 0
