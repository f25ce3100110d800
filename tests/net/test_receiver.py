"""Our Storage SCP, in this process: nothing lost, nothing partial, faults answered."""

from __future__ import annotations

import errno
import io
import os
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    RLELossless,
    generate_uid,
)

import rtforge.net._part10 as part10
from rtforge.config import Node, ReceiveLimits
from rtforge.errors import InvalidInputError, NetworkError
from rtforge.net import AssociationRejected, DuplicatePolicy, StorageSCP, StoredObject, echo, send
from rtforge.net._association import RequestedAssociation
from rtforge.net._dimse import C_STORE_RQ, Command, encode_command
from rtforge.net._upper_layer import ProposedContext, encode_message
from rtforge.net.receiver import SyncPolicy
from rtforge.net.store import UNCOMPRESSED_TRANSFER_SYNTAXES
from tests.datafiles import pydicom_file
from tests.net.peers import (
    COMPRESSED_FILES,
    LOCALHOST,
    dataset_bytes,
    encode_data_set,
    fresh_copies,
    received_files,
    scp_node,
    store_raw,
)

COMPRESSED_SYNTAXES = (JPEGBaseline8Bit, JPEGLosslessSV1, RLELossless)


def _stored_path(root: Path, path: Path) -> Path:
    ds = dcmread(path, stop_before_pixels=True)
    return root / ds.PatientID / ds.StudyInstanceUID / ds.SeriesInstanceUID / \
        f"{ds.SOPInstanceUID}.dcm"


def _incoming_empty(root: Path) -> bool:
    return not any((root / ".incoming").iterdir())


@pytest.mark.parametrize("first", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_objects_arrive_as_sent(scp: StorageSCP, small_files: list[Path], tmp_path: Path,
                                first: str) -> None:
    """Our SCP takes the requestor's first syntax; files in it go byte for byte."""
    sources = small_files + fresh_copies(COMPRESSED_FILES, tmp_path / "compressed")
    proposed = [first] + [ts for ts in UNCOMPRESSED_TRANSFER_SYNTAXES if ts != first]
    report = send(sources, scp_node(scp), transfer_syntaxes=proposed)
    assert report.ok and report.sent == len(sources)
    assert len(received_files(scp.out_dir)) == len(sources) == scp.stored
    same = 0
    for source in sources:
        stored = _stored_path(scp.out_dir, source)
        ds, original = dcmread(stored), dcmread(source)
        assert ds == original, source.name
        if original.file_meta.TransferSyntaxUID in (first, *COMPRESSED_SYNTAXES):
            assert dataset_bytes(stored) == dataset_bytes(source), source.name
            assert ds.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
            same += 1
        else:
            assert ds.file_meta.TransferSyntaxUID == first
        assert ds.file_meta.MediaStorageSOPInstanceUID == original.SOPInstanceUID
        assert ds.file_meta.SourceApplicationEntityTitle == "RTFORGE"
    assert report.transcoded == len(sources) - same == 2  # two files of the other syntax
    assert _incoming_empty(scp.out_dir)


def test_echo_is_answered(scp: StorageSCP) -> None:
    assert echo(scp_node(scp)).seconds < 5


def test_compressed_syntaxes_can_be_refused(tmp_path: Path) -> None:
    with StorageSCP(tmp_path / "rx", port=0, host=LOCALHOST, refuse_compressed=True) as server:
        report = send([pydicom_file("MR_small_RLE.dcm")], scp_node(server))
        assert report.ok and len(report.decompressed) == 1  # RLE refused: sent decompressed
        (stored,) = received_files(server.out_dir)
        assert not dcmread(stored).file_meta.TransferSyntaxUID.is_compressed


def test_jpeg_2000_is_not_accepted(scp: StorageSCP) -> None:
    report = send([pydicom_file("MR_small_jp2klossless.dcm")], scp_node(scp))
    assert report.failed is None and not report.ok
    assert "cannot decompress JPEG 2000" in report.refused[0].reason
    assert received_files(scp.out_dir) == []


@pytest.mark.parametrize("policy", list(DuplicatePolicy))
def test_duplicate_sop_instance_uid(tmp_path: Path, policy: DuplicatePolicy) -> None:
    """Identical content: a duplicate, one copy.  Other content: kept beside, or replacing."""
    ds = dcmread(pydicom_file("CT_small.dcm"))
    first = encode_data_set(ds)
    ds.PatientName = "CHANGED^SECOND"
    second = encode_data_set(ds)
    with StorageSCP(tmp_path / "rx", port=0, host=LOCALHOST, duplicates=policy) as server:
        node = scp_node(server)
        for data in (first, first, second, second):
            assert store_raw(node, ds.SOPClassUID, ds.SOPInstanceUID, data).status == 0x0000
        files = received_files(server.out_dir)
        assert server.stored == 2 and server.duplicate_count == 2 and server.conflicts == 1
        if policy is DuplicatePolicy.KEEP_FIRST:
            assert [dataset_bytes(f) for f in files] == [first, second]
            assert [f.name for f in files] == [f"{ds.SOPInstanceUID}.dcm",
                                               f"{ds.SOPInstanceUID}_2.dcm"]
        else:
            assert [dataset_bytes(f) for f in files] == [second]
        assert _incoming_empty(server.out_dir)


def test_calling_ae_allowlist(tmp_path: Path) -> None:
    with StorageSCP(tmp_path / "rx", port=0, host=LOCALHOST, allowed_aets=["FRIEND"]) as server:
        with pytest.raises(AssociationRejected) as info:
            echo(scp_node(server), ae_title="STRANGER")
        assert (info.value.result, info.value.source, info.value.reason) == (1, 1, 3)
        assert "permanent: calling AE title not recognized, by the service user" in str(info.value)
        echo(scp_node(server), ae_title="FRIEND")
        assert server.rejected == 1


def test_ten_associations_of_fifty_objects_and_the_eleventh_rejected(tmp_path: Path) -> None:
    template = dcmread(pydicom_file("CT_small.dcm"))
    batches: list[list[tuple[str, bytes]]] = []
    for _ in range(10):
        batch = []
        for _ in range(50):
            template.SOPInstanceUID = generate_uid()
            batch.append((template.SOPInstanceUID, encode_data_set(template)))
        batches.append(batch)
    context = [ProposedContext(CTImageStorage, (ExplicitVRLittleEndian,))]
    # All from 127.0.0.1: this host may hold every slot here (the default is 8 of them).
    limits = ReceiveLimits(max_associations_per_address=10)
    with StorageSCP(tmp_path / "rx", port=0, host=LOCALHOST, max_associations=10,
                    limits=limits) as server:
        node = scp_node(server)
        associations = [RequestedAssociation(node, f"LOAD{i}", context) for i in range(10)]
        with pytest.raises(AssociationRejected) as info:
            RequestedAssociation(node, "ELEVENTH", context)
        assert (info.value.result, info.value.source, info.value.reason) == (2, 3, 2)
        statuses: list[int] = []
        errors: list[BaseException] = []

        def run(assoc: RequestedAssociation, batch: list[tuple[str, bytes]]) -> None:
            try:
                with assoc:
                    context_id = next(iter(assoc.accepted))
                    for uid, data in batch:
                        command = Command(C_STORE_RQ, message_id=assoc.next_message_id(),
                                          affected_sop_class_uid=CTImageStorage,
                                          affected_sop_instance_uid=uid, priority=0)
                        statuses.append(assoc.request(context_id, command, data).status or 0)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=pair) for pair in zip(associations, batches,
                                                                            strict=True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not errors
        assert statuses == [0] * 500
        echo(node)  # capacity is back once they are released
        files = received_files(server.out_dir)
        assert len(files) == 500 == server.stored
        names = {f.stem for f in files}
        assert names == {uid for batch in batches for uid, _ in batch}
        expected = {uid: data for batch in batches for uid, data in batch}
        for path in files:
            assert dataset_bytes(path) == expected[path.stem]
        assert _incoming_empty(server.out_dir)


def test_unparseable_data_set_answers_cannot_understand(scp: StorageSCP) -> None:
    garbage = b"\x08\x00\x16\x00UI\xff\xff" + os.urandom(300)
    response = store_raw(scp_node(scp), CTImageStorage, generate_uid(), garbage)
    assert 0xC000 <= (response.status or 0) <= 0xCFFF
    assert response.error_comment
    assert received_files(scp.out_dir) == [] and _incoming_empty(scp.out_dir)


def test_mismatched_sop_instance_uid_answers_a900(scp: StorageSCP) -> None:
    ds = dcmread(pydicom_file("CT_small.dcm"))
    response = store_raw(scp_node(scp), CTImageStorage, generate_uid(), encode_data_set(ds))
    assert response.status == 0xA900
    assert received_files(scp.out_dir) == [] and _incoming_empty(scp.out_dir)


def test_failing_write_answers_a700_and_keeps_nothing(scp: StorageSCP,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    real = part10._write_all

    def disk_full(fp, data):  # writes a little, then fails like a full disk
        real(fp, data[:1000])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(part10, "_write_all", disk_full)
    ds = dcmread(pydicom_file("CT_small.dcm"))
    response = store_raw(scp_node(scp), CTImageStorage, ds.SOPInstanceUID, encode_data_set(ds))
    assert response.status == 0xA700
    assert "No space left" in (response.error_comment or "")
    assert received_files(scp.out_dir) == [] and _incoming_empty(scp.out_dir)
    monkeypatch.setattr(part10, "_write_all", real)
    assert store_raw(scp_node(scp), CTImageStorage, ds.SOPInstanceUID, encode_data_set(ds)).status == 0
    assert scp.failed == 1 and scp.stored == 1


def test_random_bytes_and_half_open_connections_do_not_hurt(tmp_path: Path,
                                                            small_files: list[Path]) -> None:
    with StorageSCP(tmp_path / "rx", port=0, host=LOCALHOST, acse_timeout=1.0) as server:
        node = scp_node(server)
        address = (LOCALHOST, server.port)
        silent = socket.create_connection(address)  # connects, says nothing
        half = socket.create_connection(address)
        half.sendall(b"\x01\x00\x00\x00")  # half a PDU header, then nothing
        for junk in (os.urandom(4096), b"\x01\x00\xff\xff\xff\xff" + os.urandom(64),
                     b"\x04\x00\x00\x00\x00\x10" + os.urandom(16), b"GET / HTTP/1.0\r\n\r\n"):
            with socket.create_connection(address) as sock:
                sock.settimeout(5)
                sock.sendall(junk)
                try:
                    while sock.recv(4096):  # the receiver answers (A-ABORT) and closes
                        pass
                except ConnectionResetError:
                    pass
        assert send(small_files, node).ok  # works while the silent ones wait
        for sock in (silent, half):
            sock.settimeout(5)
            start = time.monotonic()
            assert sock.recv(4096) in (b"",) or sock.recv(4096) == b""
            assert time.monotonic() - start < 4  # closed by the 1 s ARTIM timer
            sock.close()
        echo(node)
        assert len(received_files(server.out_dir)) == len(small_files)


def test_abort_in_the_middle_of_a_data_set_leaves_nothing(scp: StorageSCP) -> None:
    ds = dcmread(pydicom_file("CT_small.dcm"))
    data = encode_data_set(ds)
    assoc = RequestedAssociation(scp_node(scp), "QUITTER",
                                 [ProposedContext(CTImageStorage, (ExplicitVRLittleEndian,))])
    command = Command(C_STORE_RQ, message_id=1, affected_sop_class_uid=CTImageStorage,
                      affected_sop_instance_uid=ds.SOPInstanceUID, priority=0,
                      has_data_set=True)
    first = next(encode_message(1, encode_command(command), data, 4096))
    assoc._stream.send(first[:len(first) // 2])
    assoc.abort()
    deadline = time.monotonic() + 5
    while scp.failed == 0 and scp._active and time.monotonic() < deadline:
        time.sleep(0.02)
    assert received_files(scp.out_dir) == [] and _incoming_empty(scp.out_dir)
    echo(scp_node(scp))


def test_stop_finishes_the_store_in_flight(tmp_path: Path) -> None:
    ds = dcmread(pydicom_file("CT_small.dcm"))
    data = encode_data_set(ds)
    server = StorageSCP(tmp_path / "rx", port=0, host=LOCALHOST).start()
    node = scp_node(server)
    assoc = RequestedAssociation(node, "SLOW", [ProposedContext(CTImageStorage,
                                                                (ExplicitVRLittleEndian,))])
    command = Command(C_STORE_RQ, message_id=1, affected_sop_class_uid=CTImageStorage,
                      affected_sop_instance_uid=ds.SOPInstanceUID, priority=0, has_data_set=True)
    stream = b"".join(encode_message(1, encode_command(command), data, assoc.peer_max_pdu))
    assoc._stream.send(stream[:len(stream) // 2])
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    deadline = time.monotonic() + 5
    while not server._stopping and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(NetworkError):  # no new associations while stopping
        echo(Node(node.ae_title, node.host, node.port, timeout=2))
    assoc._stream.send(stream[len(stream) // 2:])
    response, = [assoc._reader.read_message(lambda *_: None)[1]]
    assert response.status == 0x0000
    stopper.join(10)
    assert not stopper.is_alive()
    assert len(received_files(server.out_dir)) == 1
    with pytest.raises(NetworkError):  # and the association was ended after it
        assoc._reader.read_message(lambda *_: None)


def test_objects_larger_than_the_memory_limit_are_streamed_to_disk(
        scp: StorageSCP, small_files: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(part10, "_SPILL_BYTES", 8192)  # CT and MR (39 KB, 10 KB) go in pieces
    assert send(small_files, scp_node(scp), transfer_syntaxes=[ExplicitVRLittleEndian]).ok
    for source in small_files[:2]:
        assert dataset_bytes(_stored_path(scp.out_dir, source)) == dataset_bytes(source)
    assert _incoming_empty(scp.out_dir)


@pytest.mark.parametrize(("options", "durable"), [
    ({}, True), ({"sync": "object"}, True), ({"sync": SyncPolicy.NONE}, False),
    ({"durable": True}, True), ({"durable": False}, False)])
def test_success_is_answered_only_once_the_object_is_on_the_disk(
        tmp_path: Path, small_files: list[Path], monkeypatch: pytest.MonkeyPatch,
        options: dict[str, object], durable: bool) -> None:
    """--sync object (default): file and folder flushed before each answer; none: no flush."""
    import rtforge.net.receiver as receiver

    events: list[object] = []
    monkeypatch.setattr(part10, "_SYNC", lambda fd: events.append("file"))
    monkeypatch.setattr(receiver, "fsync_dir", lambda path: events.append(Path(path)))
    with StorageSCP(tmp_path / "rx", port=0, host=LOCALHOST,
                    on_stored=lambda obj: events.append(obj), **options) as server:  # type: ignore[arg-type]
        assert server.durable == durable
        assert server.sync is (SyncPolicy.OBJECT if durable else SyncPolicy.NONE)
        assert send(small_files, scp_node(server)).ok
        assert len(received_files(server.out_dir)) == len(small_files)
    answered = [event for event in events if isinstance(event, StoredObject)]
    assert len(answered) == len(small_files)
    if not durable:
        assert all(isinstance(event, StoredObject) for event in events)
        return
    since_last: list[object] = []
    for event in events:  # on_stored runs just before the C-STORE-RSP is sent
        if isinstance(event, StoredObject):
            assert event.status == 0 and event.path is not None
            assert "file" in since_last, "success answered before the file was flushed"
            assert event.path.parent in since_last, "success answered before its folder was flushed"
            since_last = []
        else:
            since_last.append(event)


def test_sync_policy_is_checked(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="sync must be one of object, none"):
        StorageSCP(tmp_path / "rx", sync="sometimes")
    with pytest.raises(InvalidInputError, match="contradicts"):
        StorageSCP(tmp_path / "rx", sync="object", durable=False)
    assert StorageSCP(tmp_path / "rx", sync="none", durable=False).sync is SyncPolicy.NONE


@pytest.mark.parametrize("sync", list(SyncPolicy))
def test_objects_are_written_in_pieces_while_they_arrive(
        tmp_path: Path, small_files: list[Path], monkeypatch: pytest.MonkeyPatch,
        sync: SyncPolicy) -> None:
    monkeypatch.setattr(part10, "_WRITE_BYTES", 1000)  # CT_small (39 KB) goes in 40 pieces
    with StorageSCP(tmp_path / "rx", port=0, host=LOCALHOST, sync=sync) as server:
        assert send(small_files, scp_node(server)).ok
        for source in small_files:
            stored = _stored_path(server.out_dir, source)
            assert dcmread(stored) == dcmread(source)
        assert _incoming_empty(server.out_dir)


def test_abort_after_a_piece_was_written_leaves_nothing(scp: StorageSCP,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(part10, "_WRITE_BYTES", 1000)
    written: list[int] = []
    real = part10._write_all
    monkeypatch.setattr(part10, "_write_all", lambda fp, data: (written.append(len(data)),
                                                                real(fp, data)))
    ds = dcmread(pydicom_file("CT_small.dcm"))
    assoc = RequestedAssociation(scp_node(scp), "QUITTER",
                                 [ProposedContext(CTImageStorage, (ExplicitVRLittleEndian,))])
    command = Command(C_STORE_RQ, message_id=1, affected_sop_class_uid=CTImageStorage,
                      affected_sop_instance_uid=ds.SOPInstanceUID, priority=0,
                      has_data_set=True)
    first = next(encode_message(1, encode_command(command), encode_data_set(ds), 4096))
    assoc._stream.send(first[:len(first) // 2])
    deadline = time.monotonic() + 5
    while not written and time.monotonic() < deadline:  # a piece is in the temporary file
        time.sleep(0.01)
    assert written and not _incoming_empty(scp.out_dir)
    assoc.abort()
    deadline = time.monotonic() + 5
    while not _incoming_empty(scp.out_dir) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert received_files(scp.out_dir) == [] and _incoming_empty(scp.out_dir)
    echo(scp_node(scp))


def test_a_folder_removed_while_receiving_is_made_again(scp: StorageSCP) -> None:
    """Known folders are remembered; one deleted behind the receiver's back is recreated."""
    import shutil

    ds = dcmread(pydicom_file("CT_small.dcm"))
    assert store_raw(scp_node(scp), CTImageStorage, ds.SOPInstanceUID, encode_data_set(ds)).status == 0
    shutil.rmtree(scp.out_dir / ds.PatientID)
    ds.SOPInstanceUID = generate_uid()
    assert store_raw(scp_node(scp), CTImageStorage, ds.SOPInstanceUID, encode_data_set(ds)).status == 0
    stored = scp.out_dir / ds.PatientID / ds.StudyInstanceUID / ds.SeriesInstanceUID / \
        f"{ds.SOPInstanceUID}.dcm"
    assert received_files(scp.out_dir) == [stored]
    assert dataset_bytes(stored) == encode_data_set(ds) and _incoming_empty(scp.out_dir)


@pytest.mark.parametrize("ts", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_sequence_of_undefined_length_before_the_series_uid(scp: StorageSCP, ts: str) -> None:
    """The quick header walk gives up on it; pydicom then finds the folder's UIDs."""
    ds = dcmread(pydicom_file("CT_small.dcm"))
    item = Dataset()
    item.ReferencedSOPClassUID = CTImageStorage
    item.ReferencedSOPInstanceUID = generate_uid()
    ds.ReferencedImageSequence = [item]  # (0008,1140), before (0020,000E)
    ds["ReferencedImageSequence"].is_undefined_length = True
    data = encode_data_set(ds, ts)
    assert data.find(b"\xfe\xff\xdd\xe0") > 0  # a sequence delimiter: undefined length
    head = memoryview(data)
    assert part10._head_texts(head, ts == ImplicitVRLittleEndian, True) is None
    response = store_raw(scp_node(scp), CTImageStorage, ds.SOPInstanceUID, data, ts)
    assert response.status == 0x0000
    stored = scp.out_dir / ds.PatientID / ds.StudyInstanceUID / ds.SeriesInstanceUID / \
        f"{ds.SOPInstanceUID}.dcm"
    assert dataset_bytes(stored) == data


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "rtdose.dcm",
                                  "MR_small_bigendian.dcm", "MR_small_implicit.dcm"])
def test_quick_header_walk_reads_what_pydicom_reads(name: str) -> None:
    ds = dcmread(pydicom_file(name))
    ts = ds.file_meta.TransferSyntaxUID
    raw = pydicom_file(name).read_bytes()
    data = memoryview(raw)[len(raw) - len(dataset_bytes(pydicom_file(name))):]
    found = part10._head_texts(data, ts.is_implicit_VR, ts.is_little_endian)
    assert found is not None
    expected = {tag: str(ds[tag].value) for tag in (part10.SOP_CLASS_UID, part10.SOP_INSTANCE_UID,
                                                    part10.PATIENT_ID, part10.STUDY_UID,
                                                    part10.SERIES_UID) if tag in ds}
    assert found == expected


def test_stop_does_not_wait_for_silent_connections(tmp_path: Path) -> None:
    server = StorageSCP(tmp_path / "rx", port=0, host=LOCALHOST, acse_timeout=30).start()
    with socket.create_connection((LOCALHOST, server.port)):
        time.sleep(0.1)  # let the receiver take the connection
        start = time.monotonic()
        server.stop()
        assert time.monotonic() - start < 5


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    if not Path("/usr/bin/openssl").exists():
        pytest.skip("openssl not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def test_tls(tmp_path: Path, tls_files: tuple[Path, Path], small_files: list[Path]) -> None:
    cert, key = tls_files
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(cert))
    with StorageSCP(tmp_path / "rx", port=0, host=LOCALHOST, ssl_context=server_context) as server:
        node = scp_node(server)
        echo(node, ssl_context=client_context)
        report = send(small_files, node, ssl_context=client_context)
        assert report.ok and report.sent == len(small_files)
        with pytest.raises(NetworkError):  # plain DICOM does not get in
            echo(Node(node.ae_title, node.host, node.port, timeout=3))
        for source in small_files:
            assert dcmread(_stored_path(server.out_dir, source)) == dcmread(source)


def test_uncompressed_syntaxes_are_all_accepted(scp: StorageSCP) -> None:
    for ts in UNCOMPRESSED_TRANSFER_SYNTAXES:
        with RequestedAssociation(scp_node(scp), "ONE_TS",
                                  [ProposedContext(CTImageStorage, (ts,))]) as assoc:
            assert list(assoc.accepted.values()) == [ts]
    with RequestedAssociation(scp_node(scp), "FIND",
                              [ProposedContext("1.2.840.10008.5.1.4.1.2.2.1",
                                               (ImplicitVRLittleEndian,)),
                               ProposedContext(CTImageStorage, (ImplicitVRLittleEndian,))]) as a:
        assert list(a.accepted) == [3]  # Q/R FIND refused, CT accepted


def test_file_meta_is_read_by_pydicom(scp: StorageSCP) -> None:
    source = pydicom_file("rtplan.dcm")
    assert send([source], scp_node(scp)).ok
    stored = received_files(scp.out_dir)[0]
    meta = dcmread(io.BytesIO(stored.read_bytes())).file_meta
    assert meta.FileMetaInformationGroupLength == len(
        stored.read_bytes()) - 132 - 12 - len(dataset_bytes(stored))
    assert meta.ImplementationVersionName.startswith("RTFORGE_")
