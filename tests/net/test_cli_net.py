"""``rtforge echo``, ``send`` and ``receive`` as a user runs them: exit codes, one-line errors."""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path

import pytest

from rtforge.cli import main
from rtforge.net import StorageSCP, send
from tests.datafiles import pydicom_file
from tests.net.peers import LOCALHOST, free_port, received_files, start_receiver, stop_process


def _address(server: StorageSCP) -> str:
    return f"{server.ae_title}@{LOCALHOST}:{server.port}"


def test_echo(scp: StorageSCP, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["echo", _address(scp)]) == 0
    assert "C-ECHO success" in capsys.readouterr().out
    assert main(["echo", _address(scp), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "0x0000"


def test_echo_failures_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["echo", f"NOBODY@{LOCALHOST}:{free_port()}", "--timeout", "3"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rtforge echo: NOBODY@") and "cannot connect" in err
    assert err.count("\n") == 1
    assert main(["echo", "unknown-node"]) == 1
    assert "unknown node 'unknown-node'" in capsys.readouterr().err


def test_send_needs_a_destination(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["send", "x.dcm"]) == 2
    assert "--to" in capsys.readouterr().err


def test_send_json_report(scp: StorageSCP, small_files: list[Path],
                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["send", *map(str, small_files), "--to", _address(scp), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sent"] == 4 and report["failed"] is None and report["remaining"] == []
    assert report["warnings"] == [] and report["total"] == 4


def test_send_to_a_configured_node_with_ts_choice(scp: StorageSCP, small_files: list[Path],
                                                  tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "rtforge.toml"
    config.write_text(f"[network]\nae_title = 'PLANNING1'\n\n[network.nodes.rx]\n"
                      f"ae_title = '{scp.ae_title}'\nhost = '{LOCALHOST}'\nport = {scp.port}\n")
    assert main(["send", str(small_files[2]), "--to", "rx", "--config", str(config),
                 "--ts", "explicit"]) == 0
    assert "sent 1 of 1 objects" in capsys.readouterr().out
    stored = received_files(scp.out_dir)[0]
    from pydicom import dcmread

    meta = dcmread(stored).file_meta
    assert meta.SourceApplicationEntityTitle == "PLANNING1"
    assert meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert main(["send", str(small_files[2]), "--to", "rx", "--config", str(config),
                 "--ts", "compressed"]) == 1
    assert "--ts takes" in capsys.readouterr().err


def test_send_failure_reports_the_count(small_files: list[Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with StorageSCP(tmp_path / "rx", port=0, host=LOCALHOST, refuse_compressed=True) as server:
        # a lossy JPEG the peer refuses is not sent without consent; the others go on
        files = small_files[:2] + [pydicom_file("SC_rgb_jpeg_dcmtk.dcm"), small_files[2]]
        assert main(["send", *map(str, files), "--to", _address(server), "--json"]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["sent"] == 3 and report["failed"] is None
    (refused,) = report["refused"]
    assert refused["file"].endswith("SC_rgb_jpeg_dcmtk.dcm") and "lossy" in refused["reason"]
    assert captured.err.count("\n") == 1 and "3 of 4 sent, 1 not sent" in captured.err


def test_send_nothing_to_send(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("not DICOM")
    assert main(["send", str(tmp_path), "--to", f"X@{LOCALHOST}:104"]) == 1
    assert "no DICOM Part 10 files" in capsys.readouterr().err
    assert main(["send", str(tmp_path / "missing"), "--to", f"X@{LOCALHOST}:104"]) == 1


def test_receive_answers_a700_when_the_disk_is_full_and_stops_on_sigterm(
        tmp_path: Path) -> None:
    """A real write failure: the receiver's files may not grow past 16 KiB (RLIMIT_FSIZE)."""
    receiver = start_receiver(tmp_path, file_size_limit=16384)
    try:
        small = pydicom_file("rtplan.dcm")  # 2.7 KB: fits
        big = pydicom_file("CT_small.dcm")  # 39 KB: does not
        report = send([small, big, pydicom_file("rtdose.dcm")], receiver.node)
        assert report.sent == 1
        assert report.failed is not None and report.failed.status == 0xA700
        assert "File too large" in report.failed.reason
        assert len(received_files(receiver.out)) == 1
        assert not any((receiver.out / ".incoming").iterdir())
        assert send([pydicom_file("rtdose.dcm")], receiver.node).ok  # still serving
        receiver.proc.send_signal(signal.SIGTERM)
        out, err = receiver.proc.communicate(timeout=30)
    finally:
        stop_process(receiver.proc)
    assert receiver.proc.returncode == 0, err
    summary = json.loads(out)
    assert summary == {"stored": 2, "duplicates": 0, "conflicts": 0, "failed": 1,
                       "rejected_associations": 0, "out": str(receiver.out)}


def test_receive_on_a_busy_port(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind((LOCALHOST, 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["receive", "--port", str(port), "--bind", LOCALHOST,
                     "--out", str(tmp_path / "rx")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rtforge receive:") and f"cannot listen on port {port}" in err


def test_receive_indexes_what_it_stores_in_the_catalog(tmp_path: Path) -> None:
    """``--catalog``: the folder the SCP writes to is indexed in SQLite as objects arrive."""
    from rtforge.net.catalog import Catalog

    catalog_path = tmp_path / "catalog.sqlite"
    receiver = start_receiver(tmp_path, "--catalog", str(catalog_path))
    try:
        report = send([pydicom_file("CT_small.dcm"), pydicom_file("rtplan.dcm")], receiver.node)
        assert report.ok and report.sent == 2
        receiver.proc.send_signal(signal.SIGTERM)
        receiver.proc.communicate(timeout=30)
    finally:
        stop_process(receiver.proc)
    assert receiver.proc.returncode == 0
    stored = received_files(receiver.out)
    with Catalog(catalog_path) as catalog:
        cases = catalog.cases()
        records = [r for case in cases for r in catalog.instances(case.patient_id)]
    assert sorted(str(r.path) for r in records) == sorted(str(p) for p in stored)
    assert all(r.state.value == "local" for r in records)


def test_receive_catalog_without_a_path_uses_the_configured_one(tmp_path: Path) -> None:
    """``--catalog`` alone: the catalog of the configuration's archive (store/catalog.sqlite)."""
    from rtforge.net.catalog import Catalog

    store = tmp_path / "archive"
    config = tmp_path / "rtforge.toml"
    config.write_text(f'[archive]\nstore = "{store}"\n', encoding="utf-8")
    receiver = start_receiver(tmp_path, "--config", str(config), "--catalog")
    try:
        report = send([pydicom_file("CT_small.dcm")], receiver.node)
        assert report.ok and report.sent == 1
        receiver.proc.send_signal(signal.SIGTERM)
        receiver.proc.communicate(timeout=30)
    finally:
        stop_process(receiver.proc)
    assert receiver.proc.returncode == 0
    with Catalog(store / "catalog.sqlite") as catalog:
        assert [r.path for case in catalog.cases() for r in catalog.instances(case.patient_id)] \
            == received_files(receiver.out)
