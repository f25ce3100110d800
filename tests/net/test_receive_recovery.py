"""``rtforge receive`` as a process: one receiver per folder, and kill -9 then restart.

The receiver runs as ``python -m rtforge receive`` and is killed with
SIGKILL while ``rtforge send`` (the Python API) or dcmtk ``storescu`` stream
CT slices to it.  The kill point is chosen by how many files have arrived,
never by the clock.  After a restart, catalog and disk agree, no temporary
file is left, and every object answered success is on disk, whole.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from rtforge.config import Node
from rtforge.net import StoreReport, send
from rtforge.net._association import RequestedAssociation
from rtforge.net._dimse import C_STORE_RQ, Command, encode_command
from rtforge.net._upper_layer import ProposedContext, encode_message
from rtforge.net.catalog import Catalog, InstanceRecord
from tests.net.peers import (
    DCMTK_ENV,
    LOCALHOST,
    STORESCU,
    ReceiverProcess,
    ct_slices,
    dataset_bytes,
    free_port,
    needs,
    received_files,
    start_receiver,
    stop_process,
)

pytestmark = pytest.mark.interop


def _wait_for(condition, what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds} s")
        time.sleep(0.005)


def _send(sources: list[Path], node: Node) -> StoreReport:
    """``rtforge send`` in the files' own syntax: received data sets are the files' bytes."""
    return send(sources, node, transfer_syntaxes=[ExplicitVRLittleEndian])


def _partial_files(out: Path) -> list[Path]:
    return list((out / ".incoming").glob("*.part"))


def _stop(receiver: ReceiverProcess) -> str:
    """SIGTERM, wait, and return stderr (the receiver must exit 0)."""
    receiver.proc.send_signal(signal.SIGTERM)
    try:
        _, err = receiver.proc.communicate(timeout=60)
    finally:
        stop_process(receiver.proc)
    assert receiver.proc.returncode == 0, err
    return err


def test_a_second_receive_on_the_same_out_exits_1_and_the_first_keeps_its_transfer(
        tmp_path: Path) -> None:
    """On main the second one deleted the first one's partial file: its object then failed."""
    source = ct_slices(tmp_path / "series", 1)[0]
    ds = dcmread(source)
    first = start_receiver(tmp_path)
    try:
        with RequestedAssociation(first.node, "HALFWAY", [
                ProposedContext(CTImageStorage, (ExplicitVRLittleEndian,))]) as assoc:
            context_id = next(iter(assoc.accepted))
            command = Command(C_STORE_RQ, message_id=1, affected_sop_class_uid=CTImageStorage,
                              affected_sop_instance_uid=ds.SOPInstanceUID, priority=0,
                              has_data_set=True)
            stream = b"".join(encode_message(context_id, encode_command(command),
                                             dataset_bytes(source), assoc.peer_max_pdu))
            assoc._stream.send(stream[:len(stream) // 2])  # 256 KiB: a piece is written
            _wait_for(lambda: _partial_files(first.out), "a partial file in .incoming")
            second = subprocess.run(
                [sys.executable, "-m", "rtforge", "receive", "--port", str(free_port()),
                 "--bind", LOCALHOST, "--out", str(first.out)],
                capture_output=True, text=True, timeout=30)
            assert second.returncode == 1
            assert second.stderr.count("\n") == 1 and "Traceback" not in second.stderr
            assert second.stderr.startswith("rtforge receive:")
            assert "another receiver" in second.stderr and str(first.out) in second.stderr
            assert _partial_files(first.out)  # not deleted
            assoc._stream.send(stream[len(stream) // 2:])
            response = assoc._reader.read_message(lambda *_: None)[1]
            assert response.status == 0x0000
    finally:
        _stop(first)
    stored, = received_files(first.out)
    assert dataset_bytes(stored) == dataset_bytes(source)


def _records(catalog_path: Path) -> list[InstanceRecord]:
    with Catalog(catalog_path) as catalog:
        return [r for case in catalog.cases() for r in catalog.instances(case.patient_id)]


def _catalog_paths(catalog_path: Path, out: Path) -> list[Path]:
    """The catalog's files under ``out`` (the whole catalog: every row must be one of them)."""
    paths = sorted(record.path for record in _records(catalog_path))
    assert all(path.is_relative_to(out.resolve()) for path in paths)
    return paths


def _check_after_restart(out: Path, catalog_path: Path, sources: list[Path],
                         answered: list[Path]) -> None:
    """Catalog == disk, no temporary file, every answered object on disk and whole."""
    files = received_files(out)
    assert _catalog_paths(catalog_path, out) == [p.resolve() for p in files]
    assert not any((out / ".incoming").iterdir())
    on_disk = {dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in files}
    by_uid = {dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in sources}
    assert set(on_disk) <= set(by_uid)
    for source in answered:
        uid = dcmread(source, stop_before_pixels=True).SOPInstanceUID
        assert uid in on_disk, f"{source.name} was answered success and is not on disk"
    for uid, path in on_disk.items():
        assert dataset_bytes(path) == dataset_bytes(by_uid[uid])


def _kill_when(receiver: ReceiverProcess, arrived: int, done: threading.Event) -> None:
    _wait_for(lambda: len(received_files(receiver.out)) >= arrived or done.is_set(),
              f"{arrived} files received")
    receiver.proc.kill()
    receiver.proc.communicate(timeout=30)


@pytest.mark.parametrize("arrived", [1, 6, 12])
def test_kill_9_of_receive_catalog_while_rtforge_send_streams(tmp_path: Path,
                                                              arrived: int) -> None:
    sources = ct_slices(tmp_path / "series", 20)
    catalog_path = tmp_path / "catalog.sqlite"
    receiver = start_receiver(tmp_path, "--catalog", str(catalog_path))
    reports: list[StoreReport] = []
    done = threading.Event()

    def stream() -> None:
        try:
            reports.append(_send(sources, receiver.node))
        finally:
            done.set()

    sender = threading.Thread(target=stream)
    sender.start()
    try:
        _kill_when(receiver, arrived, done)
    finally:
        stop_process(receiver.proc)
        sender.join(60)
    report, = reports
    assert report.failed is not None, "the kill came after the last object"
    not_answered = {*report.remaining, report.failed.file}
    answered = [p for p in sources if p not in not_answered]
    assert len(answered) == report.sent >= arrived - 1

    restarted = start_receiver(tmp_path, "--catalog", str(catalog_path))
    try:
        _check_after_restart(restarted.out, catalog_path, sources, answered)
        assert _send(sources, restarted.node).ok  # the sender tries again: nothing is lost
    finally:
        _stop(restarted)
    _check_after_restart(restarted.out, catalog_path, sources, sources)
    assert len(received_files(restarted.out)) == len(sources)


def test_kill_9_of_receive_catalog_while_storescu_streams(tmp_path: Path) -> None:
    needs(STORESCU)
    sources = ct_slices(tmp_path / "series", 12)
    catalog_path = tmp_path / "catalog.sqlite"
    receiver = start_receiver(tmp_path, "--catalog", str(catalog_path))
    storescu = subprocess.Popen(
        [STORESCU, "-v", "-aet", "DCMTK", "-aec", receiver.node.ae_title, LOCALHOST,
         str(receiver.node.port), *map(str, sources)],
        env=DCMTK_ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    done = threading.Event()
    try:
        _kill_when(receiver, 6, done)
        log, _ = storescu.communicate(timeout=60)
    finally:
        stop_process(receiver.proc)
        stop_process(storescu)
    # storescu -v logs each request, then its response: the successes are the first ones.
    successes = len(re.findall(r"Received Store Response \(Success\)", log))
    assert 5 <= successes < len(sources), log
    restarted = start_receiver(tmp_path, "--catalog", str(catalog_path))
    _stop(restarted)
    _check_after_restart(restarted.out, catalog_path, sources, sources[:successes])


def test_start_up_indexes_files_without_rows_and_settles_rows_without_files(
        tmp_path: Path) -> None:
    """Deterministic: what a kill between rename and catalog row leaves, and a file gone."""
    sources = ct_slices(tmp_path / "series", 4)
    catalog_path = tmp_path / "catalog.sqlite"
    receiver = start_receiver(tmp_path, "--catalog", str(catalog_path))
    assert _send(sources[:2], receiver.node).ok
    _stop(receiver)
    receiver = start_receiver(tmp_path)  # no catalog: two files without rows
    assert _send(sources[2:], receiver.node).ok
    _stop(receiver)
    gone = received_files(receiver.out)[0]
    gone_uid = dcmread(gone, stop_before_pixels=True).SOPInstanceUID
    gone.unlink()  # a row without its file
    (receiver.out / ".incoming" / "from-a-crash.part").write_bytes(b"\0" * 1000)
    assert len(_catalog_paths(catalog_path, receiver.out)) == 2

    restarted = start_receiver(tmp_path, "--catalog", str(catalog_path), "-q")
    err = _stop(restarted)
    assert err == ""  # -q: nothing on stderr
    files = received_files(restarted.out)
    assert len(files) == 3
    _check_after_restart(restarted.out, catalog_path, sources, [])
    assert gone_uid not in {r.sop_instance_uid for r in _records(catalog_path)}
