"""Catalog, File and Restore, with Orthanc as the archive on 127.0.0.1."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from rtforge.config import Node
from rtforge.errors import InvalidInputError, NetworkError
from rtforge.net import echo
from rtforge.net.archive import file_case, restore_case
from rtforge.net.catalog import Catalog, InstanceState
from tests.datafiles import pydicom_file
from tests.net.archive_peers import RESTORE_AET, Archive
from tests.net.peers import COMPRESSED_FILES, LOCALHOST, SMALL_FILES, free_port, without_padding

PATIENT = "RTF-PHANTOM-001"


def _file(catalog: Catalog, archive: Archive, **kwargs: object):
    """File to Orthanc, with the temporary SCP where Orthanc moves and reports."""
    return file_case(catalog, PATIENT, archive.node, scp_ae_title=RESTORE_AET,
                     scp_port=archive.restore_port, scp_host=LOCALHOST, **kwargs)


def _restore(catalog: Catalog, archive: Archive, **kwargs: object):
    return restore_case(catalog, PATIENT, scp_ae_title=RESTORE_AET,
                        scp_port=archive.restore_port, scp_host=LOCALHOST, **kwargs)


# -- catalog ------------------------------------------------------------------------------

def test_import_indexes_every_file_and_reimport_updates(tmp_path: Path,
                                                        store: tuple[Catalog, dict]) -> None:
    catalog, files = store
    (cases,) = catalog.cases()
    assert (cases.patient_id, cases.studies, cases.series, cases.instances) == \
        (PATIENT, 1, 2, len(files))
    assert cases.states == {"local": len(files)}
    assert cases.size == sum(len(b) for b in files.values())
    (tmp_path / "store" / "notes.txt").write_text("not DICOM")
    again = catalog.import_paths([tmp_path / "store"])
    assert (again.added, again.updated) == (0, len(files))
    assert [p.name for p in again.skipped] == ["notes.txt"]
    paths = {r.path for r in catalog.instances(PATIENT)}
    assert paths == {p.resolve() for p in files}


def test_catalog_rejects_a_file_that_is_not_one(tmp_path: Path) -> None:
    bad = tmp_path / "catalog.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(InvalidInputError, match="not an rtforge catalog"):
        Catalog(bad)


def test_recover_settles_interrupted_deletions(store: tuple[Catalog, dict]) -> None:
    catalog, _ = store
    records = catalog.instances(PATIENT)
    catalog.mark_deleting([r.sop_instance_uid for r in records], "ORTHANC@127.0.0.1:4242")
    records[0].path.unlink()
    assert catalog.recover() == {"filed": 1, "local": len(records) - 1}
    states = {r.sop_instance_uid: r.state for r in catalog.instances(PATIENT)}
    assert states.pop(records[0].sop_instance_uid) is InstanceState.FILED
    assert set(states.values()) == {InstanceState.LOCAL}


# -- filing to a folder ---------------------------------------------------------------------

def test_file_to_folder_and_restore(tmp_path: Path, store: tuple[Catalog, dict]) -> None:
    catalog, files = store
    report = file_case(catalog, PATIENT, tmp_path / "media")
    assert report.ok and report.deleted == len(files) == report.verified
    assert not any(p.exists() for p in files)
    assert {r.state for r in catalog.instances(PATIENT)} == {InstanceState.FILED}
    restored = restore_case(catalog, PATIENT, scp_ae_title=RESTORE_AET, scp_port=free_port())
    assert restored.ok and restored.restored == len(files)
    assert all(p.read_bytes() == data for p, data in files.items())


def test_file_refuses_a_patient_with_nothing_local(store: tuple[Catalog, dict]) -> None:
    catalog, _ = store
    with pytest.raises(InvalidInputError, match="no local instances"):
        file_case(catalog, "NOBODY", Path("/nonexistent"))


# -- filing to Orthanc ----------------------------------------------------------------------

@pytest.mark.interop
def test_file_verify_delete_restore_byte_identical(store: tuple[Catalog, dict],
                                                   archive: Archive) -> None:
    catalog, files = store
    report = _file(catalog, archive)
    assert report.ok, report.failure
    assert report.sent == report.verified == report.deleted == len(files)
    assert not any(p.exists() for p in files)
    records = catalog.instances(PATIENT)
    assert {r.state for r in records} == {InstanceState.FILED}
    assert {r.archive for r in records} == {str(archive.node)}
    assert all(r.filed_at for r in records)

    restored = _restore(catalog, archive)
    assert restored.ok, restored.failure
    assert restored.restored == restored.expected == len(files)
    assert all(p.read_bytes() == data for p, data in files.items())
    records = catalog.instances(PATIENT)
    assert {r.state for r in records} == {InstanceState.LOCAL}
    assert all(r.restored_at for r in records)
    assert not any((catalog.path.parent / ".restore").rglob("*.dcm"))
    with pytest.raises(NetworkError):  # the temporary SCP is closed
        echo(Node(RESTORE_AET, LOCALHOST, archive.restore_port, timeout=2.0))


@pytest.mark.interop
def test_archive_stopped_mid_filing_deletes_nothing_and_rerun_completes(
        store: tuple[Catalog, dict], archive: Archive) -> None:
    catalog, files = store

    def stop_after_two(sent: int, total: int) -> None:
        if sent == 2:
            archive.kill()

    report = _file(catalog, archive, progress=stop_after_two)
    assert not report.ok and report.deleted == 0
    assert report.missing and "failed" in report.failure
    assert all(p.exists() for p in files)
    assert {r.state for r in catalog.instances(PATIENT)} == {InstanceState.LOCAL}

    archive.start()
    again = _file(catalog, archive)
    assert again.ok and again.deleted == len(files)
    assert again.already >= 2 and again.already + again.sent == len(files)  # resumed
    assert not any(p.exists() for p in files)


@pytest.mark.interop
def test_instance_missing_at_verification_deletes_nothing(
        store: tuple[Catalog, dict], archive: Archive) -> None:
    catalog, files = store
    victim = catalog.instances(PATIENT)[0].sop_instance_uid

    def drop_one(sent: int, total: int) -> None:
        if sent == total:
            archive.delete_instance(victim)

    report = _file(catalog, archive, progress=drop_one)
    assert not report.ok
    assert report.missing == [victim]
    assert report.verified == len(files) - 1 and report.deleted == 0
    assert all(p.exists() for p in files)
    assert {r.state for r in catalog.instances(PATIENT)} == {InstanceState.LOCAL}


@pytest.mark.interop
def test_archive_stopped_during_restore_is_reported_and_later_completes(
        tmp_path: Path, store: tuple[Catalog, dict], archive: Archive) -> None:
    catalog, files = store
    assert _file(catalog, archive).ok

    def kill_after_first(received: int, expected: int) -> None:
        if received == 1:
            archive.kill()

    aside = tmp_path / "aside"
    report = _restore(catalog, archive, progress=kill_after_first, aside_dir=aside,
                      node=Node("ORTHANC", LOCALHOST, archive.port, timeout=5.0))
    assert not report.ok and report.restored == 0
    assert report.missing and report.received < len(files)
    assert report.aside == aside and any(aside.rglob("*.dcm"))
    assert {r.state for r in catalog.instances(PATIENT)} == {InstanceState.FILED}
    assert not any(p.exists() for p in files)

    archive.start()
    done = _restore(catalog, archive)
    assert done.ok, done.failure
    assert all(p.read_bytes() == data for p, data in files.items())


def _file_and_crash_before_commit(catalog_path: Path, node: Node, scp_port: int) -> None:
    """In a child process: file, and die (no clean-up at all) right after the deletions."""
    def crash(self: Catalog, uids: list[str]) -> None:
        os._exit(9)

    Catalog.mark_filed = crash  # type: ignore[method-assign]
    with Catalog(catalog_path) as catalog:
        file_case(catalog, PATIENT, node, scp_ae_title=RESTORE_AET, scp_port=scp_port,
                  scp_host=LOCALHOST)


@pytest.mark.interop
def test_crash_between_deletion_and_commit_loses_nothing(
        store: tuple[Catalog, dict], archive: Archive) -> None:
    catalog, files = store
    child = multiprocessing.get_context("fork").Process(
        target=_file_and_crash_before_commit, args=(catalog.path, archive.node, archive.restore_port))
    child.start()
    child.join(60)
    assert child.exitcode == 9
    assert not any(p.exists() for p in files)  # deleted, but the commit never happened
    with Catalog(catalog.path) as reopened:
        assert {r.state for r in reopened.instances(PATIENT)} == {InstanceState.DELETING}
        assert reopened.recover() == {"filed": len(files), "local": 0}
        assert {r.archive for r in reopened.instances(PATIENT)} == {str(archive.node)}
        restored = _restore(reopened, archive)
    assert restored.ok, restored.failure
    assert all(p.read_bytes() == data for p, data in files.items())


@pytest.mark.interop
def test_compressed_and_implicit_files_come_back_byte_identical(tmp_path: Path,
                                                                archive: Archive) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in (*SMALL_FILES, *COMPRESSED_FILES):
        ds = without_padding(dcmread(pydicom_file(name)))
        ds.PatientID = "MIXED"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(folder / name, enforce_file_format=True)
    files = {p: p.read_bytes() for p in folder.iterdir()}
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        assert catalog.import_paths([folder]).added == len(files)
        syntaxes = {r.transfer_syntax for r in catalog.instances("MIXED")}
        assert len(syntaxes) >= 4  # implicit, explicit, JPEG baseline, JPEG lossless, RLE
        assert file_case(catalog, "MIXED", archive.node, scp_ae_title=RESTORE_AET,
                         scp_port=archive.restore_port, scp_host=LOCALHOST).ok
        assert not any(p.exists() for p in files)
        report = restore_case(catalog, "MIXED", scp_ae_title=RESTORE_AET,
                              scp_port=archive.restore_port, scp_host=LOCALHOST)
    assert report.ok, report.failure
    assert all(p.read_bytes() == data for p, data in files.items())
