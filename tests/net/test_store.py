"""Storage SCU: Oncentra's status policy, negotiation, byte order and failures on the way."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, AllStoragePresentationContexts, evt

from rtforge.config import Node
from rtforge.errors import InvalidInputError
from rtforge.net import StorageSCP, send
from tests.datafiles import pydicom_file
from tests.net.peers import (
    LOCALHOST,
    copy_with_new_uids,
    free_port,
    new_dataset,
    received_files,
    scp_node,
    start_receiver,
    stop_process,
)


@contextmanager
def scripted_scp(answer: Callable[[int, Dataset], int],
                 transfer_syntaxes: tuple[str, ...] = (ExplicitVRLittleEndian,
                                                      ImplicitVRLittleEndian)
                 ) -> Iterator[tuple[Node, list[Dataset]]]:
    """A pynetdicom Storage SCP answering ``answer(index, dataset)`` to each C-STORE."""
    received: list[Dataset] = []

    def on_store(event: evt.Event) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        received.append(ds)
        return answer(len(received) - 1, ds)

    ae = AE(ae_title="SCRIPTED")
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, list(transfer_syntaxes))
    server = ae.start_server((LOCALHOST, 0), block=False,
                             evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        yield Node("SCRIPTED", LOCALHOST, server.socket.getsockname()[1], timeout=10), received
    finally:
        server.shutdown()


@pytest.fixture
def five_cts(tmp_path: Path) -> list[Path]:
    return copy_with_new_uids(pydicom_file("CT_small.dcm"), tmp_path / "cts", 5)


@pytest.mark.parametrize("status", [0xA700, 0xA7FF, 0xA900, 0xC000, 0xCFFF, 0x0122, 0x0211])
def test_failure_status_stops_the_transfer(five_cts: list[Path], status: int) -> None:
    with scripted_scp(lambda i, _: status if i == 2 else 0x0000) as (node, received):
        report = send(five_cts, node)
    assert not report.ok
    assert report.sent == 2 and len(received) == 3
    assert report.failed is not None
    assert report.failed.status == status and report.failed.file == five_cts[2]
    assert report.remaining == five_cts[3:]
    assert report.warnings == []
    assert report.as_dict()["failed"]["status"] == f"0x{status:04X}"


def test_warning_statuses_continue_and_are_listed(five_cts: list[Path]) -> None:
    warnings = {0: 0xB000, 1: 0xB007, 2: 0xB006, 3: 0x0107, 4: 0x0116}
    with scripted_scp(lambda i, _: warnings[i]) as (node, received):
        report = send(five_cts, node)
    assert report.ok and report.sent == 5 and len(received) == 5
    assert [(w.file, w.status) for w in report.warnings] == [
        (path, warnings[i]) for i, path in enumerate(five_cts)]
    assert report.as_dict()["warnings"][1]["status"] == "0xB007"


def test_proposed_contexts(small_files: list[Path], tmp_path: Path) -> None:
    """One context per SOP Class (I, E, B in that order) plus one per compressed syntax."""
    proposals: list[list[tuple[str, list[str]]]] = []

    def on_request(event: evt.Event) -> None:
        proposals.append([(str(cx.abstract_syntax), [str(ts) for ts in cx.transfer_syntax])
                          for cx in event.assoc.requestor.requested_contexts])

    ae = AE(ae_title="WATCHER")
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, ExplicitVRLittleEndian)
    server = ae.start_server((LOCALHOST, 0), block=False,
                             evt_handlers=[(evt.EVT_REQUESTED, on_request),
                                           (evt.EVT_C_STORE, lambda event: 0x0000)])
    try:
        node = Node("WATCHER", LOCALHOST, server.socket.getsockname()[1], timeout=10)
        rle = pydicom_file("MR_small_RLE.dcm")
        report = send(small_files + [rle], node)
    finally:
        server.shutdown()
    assert report.ok and len(report.decompressed) == 1  # RLE refused by the peer: decompressed
    native = [ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian]
    classes = [dcmread(p, stop_before_pixels=True).SOPClassUID for p in small_files]
    expected = [(c, native) for c in classes]
    expected.insert(2, (classes[1], ["1.2.840.10008.1.2.5"]))  # MR's RLE context, after MR's
    assert proposals == [expected]


def test_transfer_syntax_choice_is_honoured(small_files: list[Path]) -> None:
    with scripted_scp(lambda *_: 0) as (node, received):
        report = send(small_files, node, transfer_syntaxes=[ImplicitVRLittleEndian])
    assert report.ok
    assert {ds.file_meta.TransferSyntaxUID for ds in received} == {ImplicitVRLittleEndian}
    with pytest.raises(InvalidInputError):
        send(small_files, node, transfer_syntaxes=["1.2.840.10008.1.2.4.50"])


def test_a_peer_taking_only_big_endian_gets_real_big_endian(small_files: list[Path]) -> None:
    with scripted_scp(lambda *_: 0, (ExplicitVRBigEndian,)) as (node, received):
        report = send(small_files, node)
    assert report.ok and report.transcoded == len(small_files)
    for path, ds in zip(small_files, received, strict=True):
        original = dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRBigEndian
        assert ds == original or "PixelData" in original
        if "PixelData" in original:
            assert np.array_equal(ds.pixel_array, original.pixel_array), path.name
            assert all(ds[e.tag].value == e.value for e in original if e.tag != 0x7FE00010)


def test_more_than_128_sop_classes_are_split_across_associations(tmp_path: Path) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    classes = [str(cx.abstract_syntax) for cx in AllStoragePresentationContexts][:130]
    paths = []
    for index, sop_class in enumerate(classes):
        path = folder / f"{index:03d}.dcm"
        new_dataset(sop_class).save_as(path, implicit_vr=True, little_endian=True,
                                       enforce_file_format=True)
        paths.append(path)
    with StorageSCP(tmp_path / "rx", port=0, host=LOCALHOST) as server:
        report = send(paths, scp_node(server))
    assert report.ok and report.sent == 130 and report.associations == 2
    assert len(received_files(server.out_dir)) == 130


def test_nobody_listening(small_files: list[Path]) -> None:
    report = send(small_files, Node("NOBODY", LOCALHOST, free_port(), timeout=5))
    assert report.failed is not None and "cannot connect" in report.failed.reason
    assert report.sent == 0 and report.remaining == small_files[1:]


def test_rejected_association_is_a_failure(tmp_path: Path, small_files: list[Path]) -> None:
    with StorageSCP(tmp_path / "rx", port=0, host=LOCALHOST, allowed_aets=["SOMEONE"]) as server:
        report = send(small_files, scp_node(server))
    assert report.failed is not None and "rejected" in report.failed.reason


def test_abort_and_silence_are_failures(five_cts: list[Path]) -> None:
    def abort_third(index: int, ds: Dataset) -> int:
        if index == 2:
            raise RuntimeError("scripted failure")  # pynetdicom answers 0xC211
        return 0

    with scripted_scp(abort_third) as (node, _):
        report = send(five_cts, node)
    assert report.sent == 2 and report.failed is not None and report.failed.status == 0xC211

    def stall(index: int, ds: Dataset) -> int:
        time.sleep(3 if index == 1 else 0)
        return 0

    with scripted_scp(stall) as (node, _):
        report = send(five_cts, Node(node.ae_title, node.host, node.port, timeout=1))
    assert report.sent == 1 and report.failed is not None
    assert "no data within 1 s" in report.failed.reason
    assert report.remaining == five_cts[2:]


def test_receiver_killed_mid_transfer(tmp_path: Path) -> None:
    """SIGKILL the SCP while objects flow: the SCU reports it, no final file is partial."""
    sources = copy_with_new_uids(pydicom_file("CT_small.dcm"), tmp_path / "cts", 300)
    receiver = start_receiver(tmp_path)
    outcome: dict = {}
    sender = threading.Thread(target=lambda: outcome.update(report=send(sources, receiver.node)))
    sender.start()
    deadline = time.monotonic() + 30
    while len(received_files(receiver.out)) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    receiver.proc.send_signal(signal.SIGKILL)
    receiver.proc.wait(10)
    sender.join(30)
    report = outcome["report"]
    assert report.failed is not None and report.failed.status is None
    assert 0 < report.sent < len(sources)
    files = received_files(receiver.out)
    assert len(files) >= 20
    assert report.sent <= len(files) <= report.sent + 1  # the last may be renamed, not answered
    original = dcmread(sources[0]).pixel_array
    for path in files:
        assert np.array_equal(dcmread(path).pixel_array, original)
    restarted = start_receiver(tmp_path)  # the same folder: leftovers are deleted
    try:
        assert not any((restarted.out / ".incoming").iterdir())
    finally:
        stop_process(restarted.proc)
