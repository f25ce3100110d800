"""Filing proves content before deleting: Storage Commitment, retrieval, lying archives."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, evt

from rtforge.cli import main
from rtforge.config import Node, load_config
from rtforge.errors import InvalidInputError, NetworkError
from rtforge.net.archive import file_case, restore_case
from rtforge.net.catalog import Catalog, InstanceState
from rtforge.net.commitment import STORAGE_COMMITMENT_PUSH_MODEL, request_commitment
from rtforge.net.store import send
from tests.net.archive_peers import RESTORE_AET, Archive, LyingArchive
from tests.net.peers import LOCALHOST, free_port, run_dcmqrscp

PATIENT = "RTF-PHANTOM-001"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def _file(catalog: Catalog, node: Node, port: int, **kwargs: object):
    return file_case(catalog, PATIENT, node, scp_ae_title=RESTORE_AET, scp_port=port,
                     scp_host=LOCALHOST, **kwargs)


def _restore(catalog: Catalog, port: int):
    return restore_case(catalog, PATIENT, scp_ae_title=RESTORE_AET, scp_port=port,
                        scp_host=LOCALHOST)


def _states(catalog: Catalog) -> set[InstanceState]:
    return {r.state for r in catalog.instances(PATIENT)}


# -- archives that lie ------------------------------------------------------------------------

def _identifiers(catalog: Catalog) -> dict[str, Dataset]:
    known = {}
    for record in catalog.instances(PATIENT):
        ident = Dataset()
        ident.StudyInstanceUID = record.study_uid
        ident.SeriesInstanceUID = record.series_uid
        ident.SOPClassUID = record.sop_class_uid
        known[record.sop_instance_uid] = ident
    return known


@pytest.mark.interop
@pytest.mark.parametrize(("lie", "verify"), [("nothing", "auto"), ("corrupt", "auto"),
                                             ("corrupt", "commitment")])
def test_archive_that_lies_gets_nothing_deleted(tmp_path: Path, store: tuple[Catalog, dict],
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch,
                                                lie: str, verify: str) -> None:
    catalog, files = store
    uids = sorted(r.sop_instance_uid for r in catalog.instances(PATIENT))
    restore_port = free_port()
    liar = LyingArchive(_identifiers(catalog), lie, restore_port)
    config = tmp_path / "config.toml"
    config.write_text(f'[network.nodes.liar]\nae_title = "LIAR"\nhost = "{LOCALHOST}"\n'
                      f'port = {liar.port}\ntimeout = 10\nverify = "{verify}"\n\n[archive]\n'
                      f'restore_ae_title = "{RESTORE_AET}"\nrestore_port = {restore_port}\n')
    monkeypatch.setenv("RTFORGE_CONFIG", str(config))
    try:
        code = main(["file", PATIENT, "--to", "liar", "--store", str(catalog.path.parent),
                     "--bind", LOCALHOST])
    finally:
        liar.stop()
    captured = capsys.readouterr()
    assert code == 1
    assert sorted(line.split()[-1] for line in captured.out.splitlines()
                  if line.startswith("missing: ")) == uids  # names every instance
    assert "nothing deleted" in captured.err and len(captured.err.strip().splitlines()) == 1
    assert all(p.read_bytes() == data for p, data in files.items())
    assert _states(catalog) == {InstanceState.LOCAL}
    if lie == "corrupt":
        assert set(liar.stored) == set(uids)  # it was sent everything again, and corrupted it
    assert not any((catalog.path.parent / ".restore").glob("*"))


# -- Storage Commitment with Orthanc -----------------------------------------------------------

@pytest.mark.interop
def test_orthanc_commits_on_a_new_association_and_names_what_it_lacks(
        store: tuple[Catalog, dict], archive: Archive) -> None:
    catalog, files = store
    records = catalog.instances(PATIENT)
    assert send([r.path for r in records[1:]], archive.node).ok
    result = request_commitment(archive.node, [(r.sop_class_uid, r.sop_instance_uid)
                                               for r in records],
                                ae_title=RESTORE_AET, listen_port=archive.restore_port,
                                listen_host=LOCALHOST)
    assert result.committed == {r.sop_instance_uid for r in records[1:]}
    assert result.failed == {records[0].sop_instance_uid: 0x0112}  # no such object instance
    assert not result.same_association  # Orthanc reports on its own association


def test_report_on_the_association_of_the_n_action_is_taken() -> None:
    """PS3.4 J.3.3 allows it; a pynetdicom SCP commits to one UID, fails the other."""
    def on_action(event: evt.Event) -> tuple[int, None]:
        request = event.action_information

        def report() -> None:
            time.sleep(0.2)  # after the N-ACTION-RSP
            info = Dataset()
            info.TransactionUID = request.TransactionUID
            first, second = request.ReferencedSOPSequence
            info.ReferencedSOPSequence = [first]
            second.FailureReason = 0x0112
            info.FailedSOPSequence = [second]
            event.assoc.send_n_event_report(info, 2, STORAGE_COMMITMENT_PUSH_MODEL,
                                            "1.2.840.10008.1.20.1.1")

        threading.Thread(target=report, daemon=True).start()
        return 0x0000, None

    ae = AE(ae_title="COMMITTER")
    ae.add_supported_context(STORAGE_COMMITMENT_PUSH_MODEL)
    port = free_port()
    server = ae.start_server((LOCALHOST, port), block=False,
                             evt_handlers=[(evt.EVT_N_ACTION, on_action)])
    try:
        result = request_commitment(Node("COMMITTER", LOCALHOST, port, timeout=10.0),
                                    [(CT_IMAGE, "1.2.3.1"), (CT_IMAGE, "1.2.3.2")],
                                    ae_title=RESTORE_AET, listen_port=free_port(),
                                    listen_host=LOCALHOST)
    finally:
        server.shutdown()
    assert result.same_association
    assert result.committed == {"1.2.3.1"} and result.failed == {"1.2.3.2": 0x0112}


@pytest.mark.interop
def test_file_with_storage_commitment_deletes_and_restores(store: tuple[Catalog, dict],
                                                           archive: Archive) -> None:
    catalog, files = store
    node = replace(archive.node, verify="commitment")
    report = _file(catalog, node, archive.restore_port)
    assert report.ok, report.failure
    assert report.verified_by == ["commitment"] and report.already == 0
    assert report.sent == report.verified == report.deleted == len(files)
    assert not any(p.exists() for p in files)
    assert _states(catalog) == {InstanceState.FILED}
    assert _restore(catalog, archive.restore_port).ok
    assert all(p.read_bytes() == data for p, data in files.items())


@pytest.mark.interop
def test_commitment_report_that_never_comes_deletes_nothing(store: tuple[Catalog, dict],
                                                            archive: Archive) -> None:
    catalog, files = store
    node = replace(archive.node, verify="commitment", timeout=3.0)
    report = _file(catalog, node, free_port())  # Orthanc reports to a port nobody listens on
    assert not report.ok and report.deleted == 0
    assert "Storage Commitment" in report.failure
    assert sorted(report.missing) == sorted(r.sop_instance_uid for r in
                                            catalog.instances(PATIENT))
    assert all(p.exists() for p in files) and _states(catalog) == {InstanceState.LOCAL}


# -- an archive copy that differs is sent again -------------------------------------------------

@pytest.mark.interop
def test_edited_object_under_a_filed_uid_is_sent_again(store: tuple[Catalog, dict],
                                                       archive: Archive) -> None:
    catalog, files = store
    assert _file(catalog, archive.node, archive.restore_port).ok
    assert _restore(catalog, archive.restore_port).ok
    edited = sorted(files)[0]
    ds = dcmread(edited)
    ds.SeriesDescription = "edited after restore"
    ds.save_as(edited)
    uid = str(ds.SOPInstanceUID)
    catalog.import_paths([edited])
    new_bytes = edited.read_bytes()

    report = _file(catalog, archive.node, archive.restore_port)
    assert report.ok, report.failure
    assert report.differed == [uid] and report.sent == 1
    assert report.verified_by == ["retrieve"]  # a commitment would not prove the new content
    assert report.already == len(files) - 1 and report.deleted == len(files)
    restored = _restore(catalog, archive.restore_port)
    assert restored.ok, restored.failure  # on main: refused, one checksum differs
    assert edited.read_bytes() == new_bytes


@pytest.mark.interop
def test_archive_keeping_its_old_copy_gets_nothing_deleted(tmp_path: Path,
                                                           store: tuple[Catalog, dict]) -> None:
    """Orthanc as configured by default (no overwrite) commits to the UID of its old copy."""
    catalog, files = store
    archive = Archive(tmp_path / "orthanc-keeps", restore_port=free_port(), overwrite=False)
    archive.start()
    try:
        node = replace(archive.node, verify="commitment")
        assert _file(catalog, node, archive.restore_port).ok
        assert _restore(catalog, archive.restore_port).ok
        edited = sorted(files)[0]
        ds = dcmread(edited)
        ds.SeriesDescription = "edited after restore"
        ds.save_as(edited)
        catalog.import_paths([edited])
        new_bytes = edited.read_bytes()
        report = _file(catalog, node, archive.restore_port)
    finally:
        archive.kill()
    assert not report.ok and report.deleted == 0
    assert report.missing == [str(ds.SOPInstanceUID)] == report.differed
    assert edited.read_bytes() == new_bytes
    assert all(p.exists() for p in files) and _states(catalog) == {InstanceState.LOCAL}


# -- retrieve mode -----------------------------------------------------------------------------

@pytest.mark.interop
def test_retrieve_mode_with_orthanc(store: tuple[Catalog, dict], archive: Archive) -> None:
    catalog, files = store
    report = _file(catalog, replace(archive.node, verify="retrieve"), archive.restore_port)
    assert report.ok, report.failure
    assert report.verified_by == ["retrieve"] and report.deleted == len(files)
    assert not any((catalog.path.parent / ".restore").glob("*"))
    assert _restore(catalog, archive.restore_port).ok
    assert all(p.read_bytes() == data for p, data in files.items())


@pytest.mark.interop
def test_retrieve_mode_with_dcmqrscp(tmp_path: Path, store: tuple[Catalog, dict],
                                     caplog: pytest.LogCaptureFixture) -> None:
    catalog, files = store
    port = free_port()
    peer_gen = run_dcmqrscp(tmp_path / "dcmqrscp", Node(RESTORE_AET, LOCALHOST, port))
    peer = next(peer_gen)
    try:
        report = _file(catalog, peer.node, port)  # auto: dcmqrscp has no Storage Commitment
        assert report.ok, report.failure
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # not an error
        assert report.verified_by == ["retrieve"] and report.deleted == len(files)
        assert not any(p.exists() for p in files)
        restored = _restore(catalog, port)
        assert restored.ok, restored.failure
        assert all(p.read_bytes() == data for p, data in files.items())
        with pytest.raises(NetworkError, match="not accepted"):
            request_commitment(peer.node, [], ae_title=RESTORE_AET, listen_port=free_port(),
                               listen_host=LOCALHOST)
    finally:
        peer_gen.close()


@pytest.mark.interop
def test_cli_file_verify_flag_and_json(tmp_path: Path, store: tuple[Catalog, dict],
                                       archive: Archive, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    catalog, files = store
    config = tmp_path / "config.toml"
    config.write_text(f'[network.nodes.archive]\nae_title = "ORTHANC"\nhost = "{LOCALHOST}"\n'
                      f'port = {archive.port}\nverify = "commitment"\n')
    monkeypatch.setenv("RTFORGE_CONFIG", str(config))
    assert main(["file", PATIENT, "--to", "archive", "--verify", "retrieve", "--store",
                 str(catalog.path.parent), "--scp-aet", RESTORE_AET, "--scp-port",
                 str(archive.restore_port), "--bind", LOCALHOST, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["verified_by"] == ["retrieve"] and report["deleted"] == len(files)
    assert main(["file", PATIENT, "--to", "archive", "--verify", "uid"]) == 2


def test_verify_setting_is_checked(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[network.nodes.pacs]\nae_title = "PACS"\nhost = "h"\nport = 104\n'
                      'verify = "uid"\n')
    with pytest.raises(InvalidInputError, match="verify must be one of auto, commitment, "
                       "retrieve"):
        load_config(config)
    assert Node("PACS", "h", 104).verify == "auto"


# -- what restore could not take back is not filed to a node -----------------------------------

def test_an_object_with_an_invalid_uid_is_not_filed_to_a_node(tmp_path: Path) -> None:
    """A local object whose UID has a leading zero (old vendor data): every rtforge receiver,
    restore's included, refuses it; filing it to a node would delete the only copy that can
    come back. Refused before anything is sent or deleted (the node is not even contacted)."""
    from tests.net.archive_peers import phantom_store

    files = phantom_store(tmp_path / "store")
    ds = dcmread(files[0])
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.01"  # component with a leading zero
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(files[0])
    before = {p: p.read_bytes() for p in files}
    with Catalog(tmp_path / "store" / "catalog.sqlite") as catalog:
        catalog.import_paths([tmp_path / "store"])
        nobody = Node("NOBODY", LOCALHOST, free_port(), timeout=2.0)
        with pytest.raises(InvalidInputError, match="restore could not take it back"):
            _file(catalog, nobody, free_port())
        assert _states(catalog) == {InstanceState.LOCAL}
    assert {p: p.read_bytes() for p in files} == before
