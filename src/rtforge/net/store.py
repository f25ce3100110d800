"""Storage SOP Classes as SCU: C-STORE of DICOM files (iPlan 4.2.1.3.1, Oncentra 4.2.1.3.2).

Negotiation (iPlan tables 4-3 and 4-4, Oncentra table 4-6): one
presentation context per SOP Class present in the send set, proposing
Implicit VR Little Endian, Explicit VR Little Endian and Explicit VR Big
Endian in that order, plus one context per compressed (or otherwise
non-native) transfer syntax present, proposing only that syntax, so that
the uncompressed context is there for the SOP Class whatever the peer says
of the compressed one (as ``dcmsend`` proposes).  At most 128 contexts fit one
association; bigger send sets are split, SOP Class by SOP Class.

A file goes as it is on disk (its data set bytes, no decoding) when the peer
accepted its own transfer syntax; an uncompressed file is re-encoded only
when the peer accepted another uncompressed syntax, and then really converted
(Explicit VR Big Endian swaps every OW/OF/OL/OD/OV value and Pixel Data by
Bits Allocated, which pydicom does not do by itself).

Decompression (as dcmtk's ``dcmsend``): a compressed file whose syntax the
peer accepted in no context is decompressed and sent in an accepted
uncompressed syntax, SOP Instance UID unchanged.  Lossless syntaxes
(:data:`LOSSLESS_DECOMPRESSED`) are decoded exactly, colour space as stored;
lossy ones (:data:`LOSSY_DECOMPRESSED`) only with ``allow_lossy_decompress``
(converted to RGB as ``dcmdjpeg`` does, Lossy Image Compression set to
``01``), each listed in the report.  An object that cannot go (no context
for its SOP Class, a lossy one without consent, a syntax rtforge cannot
decode) is refused: listed in the report with the reason, and the transfer
goes on with the next object.

Status policy (Oncentra table 4-7): success goes on; a warning (B000,
B006, B007, 0001, 0107, 0116 or any Bxxx) goes on and is listed in the
report; any failure stops the transfer, and the report says how many objects
were sent and which remain.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset, read_preamble
from pydicom.filewriter import correct_ambiguous_vr, write_dataset
from pydicom.tag import BaseTag
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    MediaStorageDirectoryStorage,
    RLELossless,
)

from rtforge.config import Node, check_ae_title
from rtforge.errors import InvalidInputError, NetworkError
from rtforge.net._association import RequestedAssociation
from rtforge.net._dimse import C_STORE_RQ, Command
from rtforge.net._upper_layer import ProposedContext
from rtforge.net.status import StatusCategory, status_category, status_meaning

__all__ = [
    "UNCOMPRESSED_TRANSFER_SYNTAXES",
    "LOSSLESS_DECOMPRESSED",
    "LOSSY_DECOMPRESSED",
    "DecompressionError",
    "decompress_file",
    "StoreIssue",
    "StoreReport",
    "send",
    "find_dicom_files",
    "encode_for_transfer_syntax",
]

logger = logging.getLogger(__name__)

#: The uncompressed transfer syntaxes, in the order we propose them (iPlan table 4-3).
UNCOMPRESSED_TRANSFER_SYNTAXES: tuple[UID, ...] = (
    ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian)
#: Compressed syntaxes decoded exactly when the peer accepts none (pylibjpeg-libjpeg, -rle).
LOSSLESS_DECOMPRESSED: frozenset[UID] = frozenset({
    JPEGLossless, JPEGLosslessSV1, JPEGLSLossless, RLELossless})
#: Lossy compressed syntaxes rtforge decodes, only with ``allow_lossy_decompress``.
LOSSY_DECOMPRESSED: frozenset[UID] = frozenset({
    JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLSNearLossless})
#: Lossy Image Compression Method (0028,2114) of each lossy syntax (PS3.3 C.7.6.1.1.5.1).
_LOSSY_METHOD = {JPEGBaseline8Bit: "ISO_10918_1", JPEGExtended12Bit: "ISO_10918_1",
                 JPEGLSNearLossless: "ISO_14495_1"}
_MAX_CONTEXTS = 128
#: Bytes per value of the binary VRs that Explicit VR Big Endian swaps (PS3.5 7.3).
_SWAP_WIDTH = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}
_PIXEL_DATA = BaseTag(0x7FE00010)
_TRAILING_PADDING = BaseTag(0xFFFCFFFC)


@dataclass(frozen=True)
class _Source:
    """A file to send, from its File Meta Information."""

    path: Path
    sop_class_uid: UID
    sop_instance_uid: str
    transfer_syntax: UID
    offset: int  # where the data set starts in the file


@dataclass(frozen=True)
class StoreIssue:
    """A warning or failure of one object.

    Parameters
    ----------
    file : Path
        The file.
    sop_instance_uid : str
        Its SOP Instance UID.
    status : int or None
        The C-STORE response status, ``None`` when there was no response (a
        network failure, or no presentation context for the object).
    reason : str
        The status in words, or what went wrong.
    """

    file: Path
    sop_instance_uid: str
    status: int | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form; the status as ``"0xB000"``."""
        return {"file": str(self.file), "sop_instance_uid": self.sop_instance_uid,
                "status": None if self.status is None else f"0x{self.status:04X}",
                "reason": self.reason}


@dataclass
class StoreReport:
    """What :func:`send` did.

    Parameters
    ----------
    node : Node
        The destination.
    total : int
        DICOM files in the send set.
    sent : int
        Objects the peer stored (success or warning status).
    warnings : list of StoreIssue
        Objects stored with a warning status, in order.
    failed : StoreIssue or None
        The failure that stopped the transfer.
    refused : list of StoreIssue
        Objects not sent, the transfer going on: no accepted context for
        their SOP Class, a lossy syntax without consent to decompress it, or
        one rtforge cannot decode.
    remaining : list of Path
        Files not sent because of it.
    skipped : list of Path
        Files under the paths that are not DICOM Part 10 files (or are DICOMDIRs).
    transcoded : int
        Objects re-encoded because the peer accepted another uncompressed
        transfer syntax than the file's.
    decompressed : list of Path
        Files sent decompressed because the peer accepted none of their
        compressed syntax (lossy ones included).
    lossy_decompressed : list of Path
        Of those, the files of a lossy syntax (``allow_lossy_decompress``).
    associations : int
        Associations used.
    bytes_sent : int
        Data set bytes sent.
    seconds : float
        Wall time, in seconds.
    """

    node: Node
    total: int
    sent: int = 0
    warnings: list[StoreIssue] = field(default_factory=list)
    failed: StoreIssue | None = None
    refused: list[StoreIssue] = field(default_factory=list)
    remaining: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    transcoded: int = 0
    decompressed: list[Path] = field(default_factory=list)
    lossy_decompressed: list[Path] = field(default_factory=list)
    associations: int = 0
    bytes_sent: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether every object was stored (warnings allowed)."""
        return self.failed is None and not self.refused

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"node": str(self.node), "total": self.total, "sent": self.sent,
                "warnings": [w.as_dict() for w in self.warnings],
                "failed": None if self.failed is None else self.failed.as_dict(),
                "refused": [r.as_dict() for r in self.refused],
                "remaining": [str(p) for p in self.remaining],
                "skipped": [str(p) for p in self.skipped], "transcoded": self.transcoded,
                "decompressed": [str(p) for p in self.decompressed],
                "lossy_decompressed": [str(p) for p in self.lossy_decompressed],
                "associations": self.associations, "bytes_sent": self.bytes_sent,
                "seconds": round(self.seconds, 3)}


def _not_group_0002(tag: BaseTag, vr: str | None, length: int) -> bool:
    return bool(tag.group != 2)


def _after_sop_instance_uid(tag: BaseTag, vr: str | None, length: int) -> bool:
    return bool(tag > 0x00080018)


def _read_source(path: Path) -> _Source | None:
    """What to send of a Part 10 file, or ``None`` if it is not one.

    The SOP Class and Instance UIDs are the data set's (as dcmtk's storescu
    takes them); the File Meta Information's are used only when the data set
    cannot be read without inflating it.
    """
    try:
        with open(path, "rb") as fp:
            read_preamble(fp, False)
            meta = read_dataset(fp, is_implicit_VR=False, is_little_endian=True,
                                stop_when=_not_group_0002)
            offset = fp.tell()
            ts = UID(meta.TransferSyntaxUID)
            sop_class = meta.MediaStorageSOPClassUID
            sop_instance = meta.MediaStorageSOPInstanceUID
            if ts.is_transfer_syntax and not ts.is_deflated:
                head = read_dataset(fp, ts.is_implicit_VR, ts.is_little_endian,
                                    stop_when=_after_sop_instance_uid)
                sop_class = head.get("SOPClassUID", sop_class)
                sop_instance = head.get("SOPInstanceUID", sop_instance)
        return _Source(path, UID(sop_class), str(sop_instance), ts, offset)
    except (InvalidDicomError, AttributeError, ValueError, EOFError, KeyError) as exc:
        logger.debug("%s: not a DICOM Part 10 file: %s", path, exc)
        return None


def find_dicom_files(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[Path], list[Path]]:
    """Every file under ``paths``, sorted per argument: (candidates, missing paths).

    Parameters
    ----------
    paths : iterable of path-like
        Files and folders (searched recursively).

    Returns
    -------
    list of Path, list of Path
        The files found, and the paths that do not exist.
    """
    files: list[Path] = []
    missing: list[Path] = []
    for item in map(Path, paths):
        if item.is_dir():
            files.extend(sorted(p for p in item.rglob("*") if p.is_file()))
        elif item.is_file():
            files.append(item)
        else:
            missing.append(item)
    return files, missing


def _plan(sources: Sequence[_Source], uncompressed: Sequence[str]
          ) -> list[tuple[list[ProposedContext], list[_Source]]]:
    """Split the send set into associations of at most 128 contexts each."""
    by_class: dict[UID, list[_Source]] = {}
    for source in sources:
        by_class.setdefault(source.sop_class_uid, []).append(source)
    batches: list[tuple[list[ProposedContext], list[_Source]]] = []
    contexts: list[ProposedContext] = []
    members: list[_Source] = []
    for sop_class, group in by_class.items():
        own = [ProposedContext(sop_class, tuple(uncompressed))]
        for ts in dict.fromkeys(s.transfer_syntax for s in group):
            if ts not in UNCOMPRESSED_TRANSFER_SYNTAXES:
                own.append(ProposedContext(sop_class, (ts,)))
        if contexts and len(contexts) + len(own) > _MAX_CONTEXTS:
            batches.append((contexts, members))
            contexts, members = [], []
        contexts.extend(own)
        members.extend(group)
    if contexts:
        batches.append((contexts, members))
    return batches


def _swap_binary_values(ds: Dataset) -> None:
    """Byte-swap, in place, every value whose byte order the encoding does not fix for pydicom."""
    bits = ds.get("BitsAllocated")
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                _swap_binary_values(item)
            continue
        width = _SWAP_WIDTH.get(elem.VR)
        if elem.tag == _PIXEL_DATA and elem.VR == "OW" and bits in (32, 64):
            width = bits // 8  # dcmtk swaps 32- and 64-bit pixels whole, OW or not
        if width is None or not elem.value:
            continue
        raw = bytes(elem.value)
        if len(raw) % width:
            raise InvalidInputError(f"{elem.keyword or elem.tag} has {len(raw)} bytes, not a "
                                    f"multiple of {width}: cannot change its byte order")
        elem.value = np.frombuffer(raw, dtype=f"<u{width}").byteswap().tobytes()


def encode_for_transfer_syntax(ds: Dataset, transfer_syntax: str) -> bytes:
    """Encode ``ds`` in an uncompressed transfer syntax, byte order included.

    Parameters
    ----------
    ds : Dataset
        A data set read from a file in an uncompressed transfer syntax
        (its ``original_encoding`` says which); changed in place.
    transfer_syntax : str
        Implicit VR Little Endian, Explicit VR Little Endian or Explicit VR
        Big Endian.

    Returns
    -------
    bytes
        The encoded data set.

    Raises
    ------
    InvalidInputError
        If a binary value cannot be byte-swapped (odd length).

    Notes
    -----
    pydicom converts numeric VRs (US, SS, UL, FL, ...) between byte orders
    but writes OW, OF, OL, OD and OV values, Pixel Data included, as they
    are; going to or from big endian, those are swapped here: by their VR's
    width (OW: 16-bit words, also for 8-bit pixels), 32- and 64-bit Pixel
    Data by Bits Allocated (PS3.5 8.2), as dcmtk and pydicom's big-endian test
    files do.
    """
    target = UID(transfer_syntax)
    source_little = ds.original_encoding[1]
    if source_little is None:
        source_little = True
    if source_little != target.is_little_endian:
        ds = correct_ambiguous_vr(ds, target.is_little_endian)
        _swap_binary_values(ds)
    fp = DicomBytesIO()
    fp.is_implicit_VR = target.is_implicit_VR
    fp.is_little_endian = target.is_little_endian
    write_dataset(fp, ds)
    return fp.getvalue()


class DecompressionError(InvalidInputError):
    """A compressed file's pixels cannot be decoded (:func:`send` refuses it and goes on)."""


def decompress_file(path: Path) -> Dataset:
    """A compressed file, its Pixel Data decoded as :func:`send` does (see the module notes).

    Lossless syntaxes keep their colour space; lossy ones are converted to RGB
    where they are colour, and say Lossy Image Compression ``01``.  The SOP
    Instance UID and the File Meta Information (but its Transfer Syntax UID,
    now Explicit VR Little Endian) are kept; Data Set Trailing Padding, which
    carries nothing and which re-encoding peers drop (dcmtk), is left out.

    Raises
    ------
    DecompressionError
        If the pixels cannot be decoded.
    """
    ds = dcmread(path)
    syntax = ds.file_meta.TransferSyntaxUID
    lossy = syntax in LOSSY_DECOMPRESSED
    try:
        ds.decompress(as_rgb=lossy, generate_instance_uid=False)
    except Exception as exc:  # pydicom's decoders raise assorted errors on bad streams
        raise DecompressionError(f"cannot decompress its {syntax.name} pixel data: {exc}",
                                 path=path) from None
    if _TRAILING_PADDING in ds:
        del ds[_TRAILING_PADDING]
    if lossy:
        ds.LossyImageCompression = "01"
        if "LossyImageCompressionMethod" not in ds:
            ds.LossyImageCompressionMethod = _LOSSY_METHOD[syntax]
    return ds


def _load(source: _Source, transfer_syntax: str | None, decompress: bool) -> bytes:
    """The data set of ``source``: its own bytes, or (decompressed and) re-encoded."""
    if transfer_syntax is None:
        with open(source.path, "rb") as fp:
            fp.seek(source.offset)
            return fp.read()
    ds = decompress_file(source.path) if decompress else dcmread(source.path)
    return encode_for_transfer_syntax(ds, transfer_syntax)


class _Sender:
    """Sends the files of one association, applying the status policy."""

    def __init__(self, assoc: RequestedAssociation, report: StoreReport,
                 progress: Callable[[int, int], None] | None, allow_lossy: bool) -> None:
        self.assoc = assoc
        self.report = report
        self.progress = progress
        self.allow_lossy = allow_lossy

    def _route(self, source: _Source) -> tuple[int, str | None, bool] | str:
        """(context ID, syntax to encode in or None to send as is, whether to
        decompress), or why the object cannot be sent."""
        syntax = source.transfer_syntax
        own = self.assoc.context_id(source.sop_class_uid, syntax)
        if own is not None:
            return own, None, False
        native = next(((cid, ts) for ts in UNCOMPRESSED_TRANSFER_SYNTAXES
                       if (cid := self.assoc.context_id(source.sop_class_uid, ts)) is not None),
                      None)
        where = f"the peer accepted {source.sop_class_uid.name} in no"
        if native is None:
            return f"{where} uncompressed syntax nor in {syntax.name}"
        if syntax in UNCOMPRESSED_TRANSFER_SYNTAXES or syntax in LOSSLESS_DECOMPRESSED:
            return *native, syntax not in UNCOMPRESSED_TRANSFER_SYNTAXES
        if syntax in LOSSY_DECOMPRESSED:
            if self.allow_lossy:
                return *native, True
            return (f"{where} {syntax.name} context, and {syntax.name} is lossy: decompressing "
                    "it needs consent (--allow-lossy-decompress)")
        return f"{where} {syntax.name} context, and rtforge cannot decompress {syntax.name}"

    def send_one(self, source: _Source) -> bool:
        """Store one object; ``False`` when the policy says stop."""
        report = self.report
        chosen = self._route(source)
        if isinstance(chosen, str):
            report.refused.append(StoreIssue(source.path, source.sop_instance_uid, None, chosen))
            logger.warning("%s: not sent: %s", source.path, chosen)
            return True
        context_id, convert_to, decompress = chosen
        try:
            data = _load(source, convert_to, decompress)
        except DecompressionError as exc:
            report.refused.append(StoreIssue(source.path, source.sop_instance_uid, None,
                                             exc.reason))
            logger.warning("%s: not sent: %s", source.path, exc.reason)
            return True
        except (OSError, InvalidDicomError, InvalidInputError, ValueError) as exc:
            report.failed = StoreIssue(source.path, source.sop_instance_uid, None,
                                       f"cannot read or encode the file: {exc}")
            return False
        command = Command(C_STORE_RQ, message_id=self.assoc.next_message_id(),
                          affected_sop_class_uid=source.sop_class_uid,
                          affected_sop_instance_uid=source.sop_instance_uid, priority=0)
        response = self.assoc.request(context_id, command, data)
        status = 0xC000 if response.status is None else response.status
        category = status_category(status)
        reason = status_meaning(status)
        if response.error_comment:
            reason += f": {response.error_comment}"
        if category in (StatusCategory.SUCCESS, StatusCategory.WARNING):
            report.sent += 1
            report.bytes_sent += len(data)
            if decompress:
                report.decompressed.append(source.path)
                if source.transfer_syntax in LOSSY_DECOMPRESSED:
                    report.lossy_decompressed.append(source.path)
            elif convert_to is not None:
                report.transcoded += 1
            if category is StatusCategory.WARNING:
                report.warnings.append(StoreIssue(source.path, source.sop_instance_uid, status,
                                                  reason))
                logger.warning("%s: %s", source.path, reason)
            if self.progress is not None:
                self.progress(report.sent, report.total)
            return True
        report.failed = StoreIssue(source.path, source.sop_instance_uid, status, reason)
        return False


def send(paths: Iterable[str | os.PathLike[str]], node: Node, *, ae_title: str = "RTFORGE",
         transfer_syntaxes: Sequence[str] = UNCOMPRESSED_TRANSFER_SYNTAXES,
         progress: Callable[[int, int], None] | None = None,
         ssl_context: ssl.SSLContext | None = None,
         allow_lossy_decompress: bool = False) -> StoreReport:
    """Send every DICOM file under ``paths`` to ``node`` with C-STORE.

    Parameters
    ----------
    paths : iterable of path-like
        Files and folders (searched recursively); files that are not DICOM
        Part 10 files, and DICOMDIRs, are skipped and listed in the report.
    node : Node
        The Storage SCP.
    ae_title : str
        Our (calling) AE title.
    transfer_syntaxes : sequence of str
        The uncompressed transfer syntaxes to propose, in order (default
        Implicit VR LE, Explicit VR LE, Explicit VR BE).
    progress : callable, optional
        Called as ``progress(sent, total)`` after each stored object.
    ssl_context : ssl.SSLContext, optional
        Speak TLS with this context instead of the node's TLS settings
        (:func:`rtforge.net.tls.client_context`).
    allow_lossy_decompress : bool
        Decompress objects of a lossy syntax the peer does not accept (see
        the module notes); without it they are refused.  Lossless ones are
        always decompressed when they must be.

    Returns
    -------
    StoreReport
        Network problems, rejections and failure statuses end up in
        ``report.failed`` (with the objects sent so far and those remaining),
        objects that cannot go in ``report.refused``, never as exceptions.

    Raises
    ------
    InvalidInputError
        If a path does not exist, no DICOM file is found, or a transfer
        syntax is not one of the three uncompressed ones.
    """
    start = time.perf_counter()
    ae_title = check_ae_title(ae_title)
    proposed = [UID(ts) for ts in transfer_syntaxes]
    if not proposed or any(ts not in UNCOMPRESSED_TRANSFER_SYNTAXES for ts in proposed):
        raise InvalidInputError("transfer syntaxes to propose must be some of Implicit VR Little "
                                "Endian, Explicit VR Little Endian and Explicit VR Big Endian")
    files, missing = find_dicom_files(paths)
    if missing:
        raise InvalidInputError("no such file or folder", path=missing[0])
    sources: list[_Source] = []
    skipped: list[Path] = []
    for path in files:
        source = _read_source(path)
        if source is None or source.sop_class_uid == MediaStorageDirectoryStorage:
            skipped.append(path)
        else:
            sources.append(source)
    if not sources:
        raise InvalidInputError("no DICOM Part 10 files found under the given paths")
    report = StoreReport(node=node, total=len(sources), skipped=skipped)
    batches = _plan(sources, proposed)
    ordered = [source for _, members in batches for source in members]
    done = 0  # index in `ordered` of the next object to send
    for contexts, members in batches:
        try:
            with RequestedAssociation(node, ae_title, contexts, ssl_context) as assoc:
                report.associations += 1
                sender = _Sender(assoc, report, progress, allow_lossy_decompress)
                for source in members:
                    if not sender.send_one(source):
                        break
                    done += 1
        except NetworkError as exc:
            source = ordered[done]
            reason = str(exc).removeprefix(f"{exc.peer}: ")
            report.failed = StoreIssue(source.path, source.sop_instance_uid, exc.status, reason)
        if report.failed is not None:
            report.remaining = [source.path for source in ordered[done + 1:]]
            break
    report.seconds = time.perf_counter() - start
    logger.info("sent %d of %d objects to %s in %.2f s", report.sent, report.total, node,
                report.seconds)
    return report
