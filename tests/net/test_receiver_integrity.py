"""An answered success is a stored object: names that cannot collide, UIDs checked, content compared.

Played against our Storage SCP with C-STOREs crafted byte for byte (our
association code and raw command sets) and with pynetdicom as the sender.
Every test checks the account: files on disk == objects answered success.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE

from rtforge.config import Node
from rtforge.errors import InvalidInputError
from rtforge.net import StorageSCP, StoredObject, send
from rtforge.net._association import RequestedAssociation
from rtforge.net._dimse import C_STORE_RQ, Command, encode_command
from rtforge.net._upper_layer import ProposedContext, encode_message
from rtforge.net.receiver import LOCK_NAME
from tests.datafiles import pydicom_file
from tests.net.peers import (
    DCMTK_ENV,
    LOCALHOST,
    STORESCU,
    dataset_bytes,
    encode_data_set,
    needs,
    received_files,
    scp_node,
    store_raw,
)

#: 70 characters, equal in their first 64: cut to 64 they would share a name.
LONG_A = "1.2.826.0.1.3680043.8.498." + "1" * 38 + "111111"
LONG_B = "1.2.826.0.1.3680043.8.498." + "1" * 38 + "222222"


def _ct(sop_instance_uid: str | None = None, **values: str) -> Dataset:
    ds = dcmread(pydicom_file("CT_small.dcm"))
    ds.SOPInstanceUID = sop_instance_uid or generate_uid()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def _account(server: StorageSCP, statuses: list[int]) -> None:
    """Every object answered success is a file on disk, and no file was not answered success."""
    successes = sum(1 for status in statuses if status == 0x0000)
    assert len(received_files(server.out_dir)) == successes == server.stored
    assert not any((server.out_dir / ".incoming").iterdir())


@pytest.fixture
def answered(tmp_path: Path):
    """Our SCP, recording what :attr:`StorageSCP.on_stored` reports."""
    seen: list[StoredObject] = []
    with StorageSCP(tmp_path / "rx", port=0, host=LOCALHOST, on_stored=seen.append) as server:
        yield server, seen


def test_uids_that_shared_a_file_name_are_refused(answered) -> None:
    """``+`` and ``/`` (both once ``_``), and 70-character UIDs equal in 64: 0xA900, none kept."""
    server, seen = answered
    node = scp_node(server)
    statuses = []
    for uid in ("1.2.3.4.5+6", "1.2.3.4.5/6", LONG_A, LONG_B):
        response = store_raw(node, CTImageStorage, uid, encode_data_set(_ct(uid)))
        statuses.append(response.status)
        assert response.status == 0xA900, uid
        assert (response.error_comment or "").startswith("Affected SOP Instance UID is ")
    assert [obj.status for obj in seen] == statuses and all(obj.path is None for obj in seen)
    _account(server, statuses)


def test_pynetdicom_sending_invalid_uids_gets_failures(answered) -> None:
    """A real peer (pynetdicom) sends ``+``, ``/`` and non-ASCII SOP Instance UIDs."""
    server, _ = answered
    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
    assoc = ae.associate(LOCALHOST, server.port, ae_title=server.ae_title)
    assert assoc.is_established
    statuses = []
    try:
        for uid in ("1.2.3.4.5+6", "1.2.3.4.5/6", "1.2.3.4.5.\u00fc", generate_uid()):
            status = assoc.send_c_store(_ct(uid))
            statuses.append(int(status.Status))
    finally:
        assoc.release()
    assert statuses == [0xA900, 0xA900, 0xA900, 0x0000]
    _account(server, statuses)


@pytest.mark.parametrize(("keyword", "value"), [
    ("StudyInstanceUID", "1.2.3+4"), ("StudyInstanceUID", "1.2.\u00e9"),
    ("SeriesInstanceUID", "1.2.3/4"), ("SeriesInstanceUID", "1.02.3"),
    ("SeriesInstanceUID", "1..2"), ("StudyInstanceUID", "1.2."), ("StudyInstanceUID", LONG_A),
])
def test_invalid_folder_uids_are_refused_and_the_association_goes_on(
        answered, keyword: str, value: str) -> None:
    server, _ = answered
    ds = _ct(**{keyword: value, "SpecificCharacterSet": "ISO_IR 100"})
    good = _ct()
    statuses = []
    with RequestedAssociation(scp_node(server), "SCRIPTED", [
            ProposedContext(CTImageStorage, (ExplicitVRLittleEndian,))]) as assoc:
        context_id = next(iter(assoc.accepted))
        for item in (ds, good):
            command = Command(C_STORE_RQ, message_id=assoc.next_message_id(),
                              affected_sop_class_uid=CTImageStorage,
                              affected_sop_instance_uid=item.SOPInstanceUID, priority=0)
            statuses.append(assoc.request(context_id, command, encode_data_set(item)).status)
    assert statuses == [0xA900, 0x0000]
    _account(server, statuses)


def _raw_store_command(sop_class_uid: bytes, sop_instance_uid: bytes, message_id: int) -> bytes:
    """A C-STORE-RQ command set with its Affected SOP Class and Instance UIDs as raw bytes."""
    placeholders = ("1" * len(sop_class_uid), "9" * len(sop_instance_uid))
    command = encode_command(Command(C_STORE_RQ, message_id=message_id,
                                     affected_sop_class_uid=placeholders[0],
                                     affected_sop_instance_uid=placeholders[1], priority=0,
                                     has_data_set=True))
    for placeholder, raw in zip(placeholders, (sop_class_uid, sop_instance_uid), strict=True):
        pad = b"\x00" if len(raw) % 2 else b""
        assert command.count(placeholder.encode("ascii") + pad) == 1
        command = command.replace(placeholder.encode("ascii") + pad, raw + pad)
    return command


def test_non_ascii_affected_sop_instance_uid_fails_without_a_traceback(
        answered, caplog: pytest.LogCaptureFixture) -> None:
    """UTF-8 and Latin-1 bytes in (0000,1000): 0xA900, no traceback, the association goes on."""
    server, _ = answered
    good = _ct()
    statuses = []
    with caplog.at_level(logging.DEBUG, logger="rtforge"):
        with RequestedAssociation(scp_node(server), "RAWBYTES", [
                ProposedContext(CTImageStorage, (ExplicitVRLittleEndian,))]) as assoc:
            context_id = next(iter(assoc.accepted))
            ct_class = CTImageStorage.encode("ascii")
            for sop_class, uid in ((ct_class, "1.2.3.4.\u00fc".encode()),
                                   (ct_class, "1.2.3.4.\u00fc".encode("latin-1")),
                                   (ct_class[:-1] + b"\xb2", b"1.2.3.4.5")):
                command = _raw_store_command(sop_class, uid, assoc.next_message_id())
                data = encode_data_set(_ct(uid.decode("latin-1")))
                for pdu in encode_message(context_id, command, data, assoc.peer_max_pdu):
                    assoc._stream.send(pdu)
                response = assoc._reader.read_message(lambda *_: None)[1]
                statuses.append(response.status)
                assert "outside ASCII" in (response.error_comment or "")
            command = Command(C_STORE_RQ, message_id=assoc.next_message_id(),
                              affected_sop_class_uid=CTImageStorage,
                              affected_sop_instance_uid=good.SOPInstanceUID, priority=0)
            statuses.append(assoc.request(context_id, command, encode_data_set(good)).status)
    assert statuses == [0xA900, 0xA900, 0xA900, 0x0000]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    _account(server, statuses)


def test_same_uid_other_content_is_kept_beside_never_dropped(answered) -> None:
    """Same SOP Instance UID, other content (even another patient): both kept, both reported."""
    server, seen = answered
    node = scp_node(server)
    uid = generate_uid()
    first = _ct(uid)
    edited = _ct(uid, PatientName="EDITED^NAME")
    other_patient = _ct(uid, PatientID="OTHER-PATIENT")
    sent = [first, edited, first, edited, other_patient]
    statuses = [store_raw(node, CTImageStorage, uid, encode_data_set(ds)).status for ds in sent]
    assert statuses == [0] * 5
    files = received_files(server.out_dir)
    assert sorted(dataset_bytes(f) for f in files) == sorted(
        encode_data_set(ds) for ds in (first, edited, other_patient))
    assert [(obj.duplicate, obj.conflict) for obj in seen] == [
        (False, False), (False, True), (True, False), (True, False), (False, True)]
    assert seen[1].path == seen[0].path.with_name(f"{uid}_2.dcm")
    assert seen[2].path == seen[0].path and seen[3].path == seen[1].path
    assert server.duplicate_count == 2 and server.conflicts == 2
    _account(server, [status for status, obj in zip(statuses, seen, strict=True)
                      if not obj.duplicate])


def test_storescu_same_uid_pair_and_normal_objects_all_accounted_for(
        answered, tmp_path: Path, small_files: list[Path]) -> None:
    """dcmtk storescu sends normal objects, a same-UID pair of other content and a resend."""
    needs(STORESCU)
    server, seen = answered
    uid = generate_uid()
    pair = []
    for index, name in enumerate(("FIRST^VERSION", "SECOND^VERSION")):
        ds = _ct(uid, PatientName=name)
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        path = tmp_path / f"pair{index}.dcm"
        ds.save_as(path, enforce_file_format=True)
        pair.append(path)
    sent = [*small_files, *pair, pair[0]]
    result = subprocess.run(
        [STORESCU, "-v", "-aet", "DCMTK", "-aec", server.ae_title, LOCALHOST, str(server.port),
         *map(str, sent)], env=DCMTK_ENV, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    log = result.stdout + result.stderr
    assert len(re.findall(r"Received Store Response \(Success\)", log)) == len(sent)
    assert [obj.status for obj in seen] == [0] * len(sent)
    assert [obj.conflict for obj in seen[-3:]] == [False, True, False] and seen[-1].duplicate
    files = received_files(server.out_dir)
    assert len(files) == len(sent) - 1 == server.stored  # one resend kept once
    names = [str(dcmread(p).PatientName) for p in files if p.name.startswith(uid)]
    assert sorted(names) == ["FIRST^VERSION", "SECOND^VERSION"]
    _account(server, [0] * server.stored)


def test_identical_copy_on_disk_from_an_earlier_run_is_a_duplicate(tmp_path: Path) -> None:
    ds = _ct()
    data = encode_data_set(ds)
    for _ in range(2):
        with StorageSCP(tmp_path / "rx", port=0, host=LOCALHOST) as server:
            assert store_raw(scp_node(server), CTImageStorage, ds.SOPInstanceUID,
                             data).status == 0
    assert server.duplicate_count == 1 and server.stored == 0
    assert [dataset_bytes(f) for f in received_files(tmp_path / "rx")] == [data]


def _patient_id_bytes(raw: bytes) -> Dataset:
    """A CT whose Patient ID is ``raw`` (Latin-1 bytes, as received)."""
    return _ct(PatientID=raw.decode("latin-1"), SpecificCharacterSet="ISO_IR 100")


def test_patient_folders_are_injective_and_inside_out(answered) -> None:
    """IDs that one safe form would merge get folders of their own, all under OUT."""
    server, seen = answered
    ids = [b"A/B", b"A_B", b"A B", b"A%2FB", b"", b".", b"..", b"../x", b"%NO_PATIENT_ID",
           b"NO_PATIENT_ID", "M\u00fcller".encode("latin-1"), "M\u00f6ller".encode("latin-1"),
           b"X" * 64, b"X" * 63 + b"/", b"\xe9" * 64, b"\xe9" * 63 + b"\xe8"]
    for raw in ids:
        ds = _patient_id_bytes(raw)
        assert store_raw(scp_node(server), CTImageStorage, ds.SOPInstanceUID,
                         encode_data_set(ds)).status == 0, raw
    folders = [obj.path.parents[2] for obj in seen]
    assert len(set(folders)) == len(ids)
    for folder in folders:
        assert folder.parent == server.out_dir and not folder.name.startswith(".")
        assert len(folder.name) < 255 and folder.name.isascii()
    _account(server, [0] * len(ids))


def test_a_second_receiver_on_the_same_folder_refuses_and_the_first_goes_on(
        tmp_path: Path, small_files: list[Path]) -> None:
    out = tmp_path / "rx"
    with StorageSCP(out, port=0, host=LOCALHOST) as first:
        with pytest.raises(InvalidInputError, match="another receiver"):
            StorageSCP(out, port=0, host=LOCALHOST).start()
        assert send(small_files, scp_node(first)).ok
    assert len(received_files(out)) == len(small_files)
    with StorageSCP(out, port=0, host=LOCALHOST) as again:  # unlocked when the first stopped
        assert send(small_files[:1], scp_node(again)).ok


def test_a_stale_lock_file_does_not_block(tmp_path: Path) -> None:
    """The lock of a dead process: the file is there, nobody holds it."""
    out = tmp_path / "rx"
    out.mkdir()
    (out / LOCK_NAME).write_text("999999\n")
    (out / ".incoming").mkdir()
    (out / ".incoming" / "left-by-a-crash.part").write_bytes(b"partial")
    with StorageSCP(out, port=0, host=LOCALHOST) as server:
        assert not any((out / ".incoming").iterdir())
        node = Node(server.ae_title, LOCALHOST, server.port, timeout=10.0)
        ds = _ct()
        assert store_raw(node, CTImageStorage, ds.SOPInstanceUID,
                         encode_data_set(ds)).status == 0
        assert (out / LOCK_NAME).read_text() == f"{os.getpid()}\n"


def test_raw_command_helper_builds_what_encode_command_builds() -> None:
    """The crafted command set differs from a normal one only in the UIDs' bytes."""
    raw = _raw_store_command(CTImageStorage.encode("ascii"), b"1.2.3.4.5", 7)
    normal = encode_command(Command(C_STORE_RQ, message_id=7,
                                    affected_sop_class_uid=CTImageStorage,
                                    affected_sop_instance_uid="1.2.3.4.5", priority=0,
                                    has_data_set=True))
    assert raw == normal
    assert struct.unpack_from("<I", raw, 8)[0] == len(raw) - 12
