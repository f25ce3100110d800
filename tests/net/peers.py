"""Helpers of the network tests: real peers on 127.0.0.1, started and stopped by fixtures.

dcmtk and Orthanc come from Debian packages (scripts/test installs them); a
test that needs one is skipped, with the reason, only when the binary is
missing.  Every peer runs in its own ``tmp_path`` folder on a free port and
is waited for with a bounded C-ECHO loop, never a fixed sleep.  dcmtk runs
with ``TCP_NODELAY=1`` (Debian's build leaves Nagle's algorithm on) and is
called by absolute path (pynetdicom installs scripts of the same names).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset, read_preamble
from pydicom.filewriter import write_dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from rtforge.config import Node
from rtforge.errors import NetworkError
from rtforge.net import StorageSCP, echo
from rtforge.net._association import RequestedAssociation
from rtforge.net._dimse import C_STORE_RQ, Command
from rtforge.net._upper_layer import ProposedContext
from tests.datafiles import pydicom_file

STORESCP = "/usr/bin/storescp"
STORESCU = "/usr/bin/storescu"
ECHOSCU = "/usr/bin/echoscu"
DCMQRSCP = "/usr/bin/dcmqrscp"
ORTHANC = "/usr/sbin/Orthanc"
LOCALHOST = "127.0.0.1"
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}

#: CT and MR (Explicit VR LE), RT Plan and RT Dose (Implicit VR LE).
SMALL_FILES = ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "rtdose.dcm")
#: JPEG Baseline, JPEG Lossless SV1, RLE Lossless (Oncentra table 4-22).
COMPRESSED_FILES = ("SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_jpeg_gdcm.dcm", "MR_small_RLE.dcm")


def needs(binary: str) -> None:
    """Skip the test, saying why, when a peer's binary is not installed."""
    if not Path(binary).exists():
        pytest.skip(f"{binary} not installed (Debian packages dcmtk/orthanc; scripts/test "
                    "installs them)")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


def wait_for_echo(node: Node, proc: subprocess.Popen | None = None, seconds: float = 15.0) -> None:
    """C-ECHO ``node`` until it answers: at most ``seconds``, or until ``proc`` dies."""
    deadline = time.monotonic() + seconds
    quick = replace(node, timeout=2.0)  # its TLS settings kept
    while True:
        try:
            echo(quick)
            return
        except NetworkError as exc:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{node} exited ({proc.returncode}) before answering") from exc
            if time.monotonic() > deadline:
                raise RuntimeError(f"{node} did not answer C-ECHO within {seconds} s") from exc
            time.sleep(0.05)


def stop_process(proc: subprocess.Popen, seconds: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``seconds``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(seconds)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def dataset_bytes(path: Path) -> bytes:
    """The data set of a Part 10 file: everything after its File Meta Information."""
    with open(path, "rb") as fp:
        read_preamble(fp, False)
        read_dataset(fp, False, True, stop_when=lambda tag, vr, length: tag.group != 2)
        return fp.read()


def encode_data_set(ds: Dataset, ts: str = ExplicitVRLittleEndian) -> bytes:
    """The data set bytes of ``ds`` in a little endian transfer syntax, as a C-STORE carries them."""
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = ts == ImplicitVRLittleEndian
    write_dataset(fp, ds)
    return fp.getvalue()


def store_raw(node: Node, sop_class: str, sop_instance: str, data: bytes,
              ts: str = ExplicitVRLittleEndian, calling: str = "SCRIPTED") -> Command:
    """One C-STORE on its own association, with whatever data set bytes we like."""
    with RequestedAssociation(node, calling, [ProposedContext(sop_class, (ts,))]) as assoc:
        command = Command(C_STORE_RQ, message_id=assoc.next_message_id(),
                          affected_sop_class_uid=sop_class, affected_sop_instance_uid=sop_instance,
                          priority=0)
        return assoc.request(next(iter(assoc.accepted)), command, data)


def received_files(root: Path) -> list[Path]:
    """The files a receiver wrote (hidden entries excluded: ``.incoming``, the lock file)."""
    return sorted(p for p in root.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def copy_with_new_uids(source: Path, folder: Path, count: int, *, patient_id: str = "LOAD") -> \
        list[Path]:
    """``count`` copies of ``source`` in one new study and series, each a new SOP Instance UID.

    Data Set Trailing Padding is left out: dcmtk-based peers drop it when they resend.
    """
    folder.mkdir(parents=True, exist_ok=True)
    ds = without_padding(dcmread(source))
    ds.PatientID = patient_id
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    paths = []
    for index in range(count):
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path = folder / f"{index:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def fresh_copies(names: tuple[str, ...], folder: Path) -> list[Path]:
    """Copies of pydicom test files with new SOP Instance UIDs, encoding unchanged.

    Several bundled files share UIDs with their uncompressed twins.
    """
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        ds = dcmread(pydicom_file(name))
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        path = folder / name
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


@dataclass
class Peer:
    """A running peer: its address, its process and its work folder."""

    node: Node
    proc: subprocess.Popen
    work: Path


def scp_node(server: StorageSCP) -> Node:
    """The node of an :class:`StorageSCP` started on loopback."""
    return Node(server.ae_title, LOCALHOST, server.port, timeout=10.0)


def run_storescp(tmp_path: Path, *extra: str, node_settings: Mapping[str, Any] | None = None
                 ) -> Iterator[Peer]:
    """dcmtk's storescp with ``extra`` options; ``node_settings`` (TLS) go to its node."""
    needs(STORESCP)
    work = tmp_path / "storescp"
    (work / "in").mkdir(parents=True)
    port = free_port()
    proc = subprocess.Popen([STORESCP, "-aet", "STORESCP", "-od", str(work / "in"), "+B",
                             *(extra or ("+xa",)), str(port)], env=DCMTK_ENV, cwd=work,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peer = Peer(Node("STORESCP", LOCALHOST, port, timeout=10.0, **(node_settings or {})), proc,
                work)
    try:
        wait_for_echo(peer.node, proc)
        yield peer
    finally:
        stop_process(proc)


@dataclass
class ReceiverProcess:
    """``rtforge receive`` running as a child process."""

    node: Node
    proc: subprocess.Popen
    out: Path


def start_receiver(tmp_path: Path, *extra: str, file_size_limit: int | None = None,
                   name: str = "rx", node_settings: Mapping[str, Any] | None = None
                   ) -> ReceiverProcess:
    """Start ``python -m rtforge receive`` on a free port and wait until it answers C-ECHO.

    Parameters
    ----------
    node_settings : mapping, optional
        Fields of the receiver's node that differ from the defaults (AE title
        RTFORGE_RX, a free port): ``ae_title``, ``port`` and the TLS settings
        to reach it.
    file_size_limit : int, optional
        RLIMIT_FSIZE of the child, in bytes: a write beyond it fails with
        EFBIG, like a full disk (Python ignores SIGXFSZ).
    """
    out = tmp_path / name
    node = Node(**{"ae_title": "RTFORGE_RX", "host": LOCALHOST, "port": free_port(),
                   "timeout": 10.0, **(node_settings or {})})
    preexec = None
    if file_size_limit is not None:
        import resource

        def preexec() -> None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    proc = subprocess.Popen([sys.executable, "-m", "rtforge", "receive", "--aet", node.ae_title,
                             "--port", str(node.port), "--out", str(out), "--bind", LOCALHOST,
                             "--json", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=preexec)
    try:
        wait_for_echo(node, proc, seconds=30)
    except RuntimeError:
        stop_process(proc)
        raise
    return ReceiverProcess(node, proc, out)


def ct_slices(folder: Path, count: int, size: int = 512) -> list[Path]:
    """CT slices of ``size`` x ``size`` int16 (512 KiB each: several write pieces), seeded."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    study, series = generate_uid(), generate_uid()
    paths = []
    for k in range(count):
        ds = Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid()
        ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = "SYNC-TEST", study, series
        ds.Modality, ds.InstanceNumber = "CT", k + 1
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows = ds.Columns = size
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = rng.integers(-1024, 3072, (size, size), dtype=np.int16).tobytes()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"CT{k:02d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def new_dataset(sop_class_uid: str, patient_id: str = "SYNTH") -> Dataset:
    """A minimal data set of ``sop_class_uid`` with fresh UIDs."""
    ds = Dataset()
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = generate_uid()
    ds.PatientID = patient_id
    ds.PatientName = "SYNTH^ONE"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "OT"
    return ds


#: dcmqrscp's configuration (the template of the peers' notes): one archive AE, and the
#: move destination.
DCMQRSCP_CONFIG = """\
NetworkTCPPort  = {port}
MaxPDUSize      = 16384
MaxAssociations = 16

HostTable BEGIN
rtforge_scp     = ({dest_aet}, 127.0.0.1, {dest_port})
HostTable END

VendorTable BEGIN
VendorTable END

AETable BEGIN
{aet}  {work}/dcmqrscp-db  RW  (200, 1024mb)  ANY
AETable END
"""

#: Orthanc's configuration (the template of the peers' notes).
ORTHANC_CONFIG = """\
{{
  "Name": "rtforge-test-archive",
  "StorageDirectory": "{work}/orthanc-db",
  "IndexDirectory": "{work}/orthanc-db",
  "StorageCompression": false,
  "Plugins": [],
  "ConcurrentJobs": 2,
  "SaveJobs": false,
  "HttpServerEnabled": true,
  "HttpPort": {http_port},
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "DicomServerEnabled": true,
  "DicomAet": "{aet}",
  "DicomPort": {port},
  "DicomCheckCalledAet": false,
  "DicomAlwaysAllowEcho": true,
  "DicomAlwaysAllowStore": true,
  "DicomAlwaysAllowFind": true,
  "DicomAlwaysAllowMove": true,
  "DicomCheckModalityHost": false,
  "UnknownSopClassAccepted": true,
  "AcceptedTransferSyntaxes": ["1.2.840.10008.1.*"],
  "DicomScpTimeout": 30,
  "DicomScuTimeout": 30,
  "SynchronousCMove": true,
  "OverwriteInstances": true,
  "LimitFindResults": 0,
  "LimitFindInstances": 0,
  "DicomModalities": {{ "rtforge": ["{dest_aet}", "127.0.0.1", {dest_port}] }}
}}
"""


def run_dcmqrscp(work: Path, dest: Node) -> Iterator[Peer]:
    """dcmqrscp (fork mode, as it must be) archiving under ``work``, moving to ``dest``."""
    needs(DCMQRSCP)
    (work / "dcmqrscp-db").mkdir(parents=True)
    port = free_port()
    config = work / "dcmqrscp.cfg"
    config.write_text(DCMQRSCP_CONFIG.format(port=port, aet="DCMQRSCP", work=work,
                                             dest_aet=dest.ae_title, dest_port=dest.port))
    proc = subprocess.Popen([DCMQRSCP, "-c", str(config)], env=DCMTK_ENV, cwd=work,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peer = Peer(Node("DCMQRSCP", LOCALHOST, port, timeout=20.0), proc, work)
    try:
        wait_for_echo(peer.node, proc)
        yield peer
    finally:
        stop_process(proc)


def run_orthanc(work: Path, dest: Node) -> Iterator[Peer]:
    """Orthanc with an empty database under ``work``, moving to ``dest``."""
    needs(ORTHANC)
    work.mkdir(parents=True, exist_ok=True)
    port, http_port = free_port(), free_port()
    config = work / "orthanc.json"
    config.write_text(ORTHANC_CONFIG.format(port=port, http_port=http_port, aet="ORTHANC",
                                            work=work, dest_aet=dest.ae_title,
                                            dest_port=dest.port))
    proc = subprocess.Popen([ORTHANC, "--no-jobs", str(config)], cwd=work,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peer = Peer(Node("ORTHANC", LOCALHOST, port, timeout=20.0), proc, work)
    try:
        wait_for_echo(peer.node, proc, seconds=30)
        yield peer
    finally:
        stop_process(proc, seconds=20)


#: Data Set Trailing Padding (FFFC,FFFC): dcmtk drops it whenever it re-encodes.
TRAILING_PADDING = 0xFFFCFFFC


def without_padding(ds: Dataset) -> Dataset:
    """``ds`` without Data Set Trailing Padding, which carries no information."""
    if TRAILING_PADDING in ds:
        del ds[TRAILING_PADDING]
    return ds
