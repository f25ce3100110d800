"""Conflicting copies: a SOP Instance UID stored again with other content is catalogued aside.

Played failure: the receiver kept a second, different object of a SOP Instance UID beside the
first (``<UID>_2.dcm``) and the catalog never recorded it: ``rtforge store ls`` did not show it,
so the person who must decide which copy is right never saw it, and nothing accounted for it.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread

from rtforge.cli import main
from rtforge.errors import InvalidInputError
from rtforge.net.archive import file_case, restore_case
from rtforge.net.catalog import Catalog, InstanceState, file_sha256, split_part10
from rtforge.net.reconcile import reconcile_store
from tests.datafiles import pydicom_file
from tests.net.archive_peers import Archive, archive_config
from tests.net.peers import DCMTK_ENV, LOCALHOST, STORESCU, needs, start_receiver, stop_process


def _ct(description: str = "") -> Dataset:
    ds = dcmread(pydicom_file("CT_small.dcm"))
    if description:
        ds.SeriesDescription = description
    return ds


def _write(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path.resolve()


def test_a_copy_of_other_content_is_quarantined_as_a_conflicting_copy(tmp_path: Path) -> None:
    first = _write(_ct(), tmp_path / "a" / "ct.dcm")
    edited = _ct("EDITED")
    second = _write(edited, tmp_path / "b" / "ct.dcm")
    uid = edited.SOPInstanceUID
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        catalog.import_paths([first])
        report = catalog.import_paths([second])
        assert report.added == report.updated == 0
        (aside,) = report.quarantined
        assert aside.reason == "conflicting copy"
        assert (aside.path, aside.copy_of) == (second, first)
        assert (aside.sha256, aside.copy_of_sha256) == (file_sha256(second), file_sha256(first))
        (line,) = report.quarantine_lines()
        assert uid in line and str(first) in line and str(second) in line
        (row,) = catalog.instances(edited.PatientID)
        assert row.path == first and row.sha256 == file_sha256(first)
        (case,) = catalog.cases()
        assert case.states == {"local": 1, "quarantined": 1} and case.quarantine == ()
        assert [r.path for r in case.conflicts] == [second]
        assert case.as_dict()["conflicting_copies"][0]["copy_of"] == str(first)
        assert len(catalog.import_paths([first, second]).quarantined) == 1  # once, again
        assert len(catalog.quarantined()) == 1


def test_an_identical_copy_elsewhere_is_no_conflict(tmp_path: Path) -> None:
    first = _write(_ct(), tmp_path / "a" / "ct.dcm")
    moved = _write(_ct(), tmp_path / "b" / "ct.dcm")
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        catalog.import_paths([first])
        assert catalog.import_paths([moved]).updated == 1  # as before: the row follows it
        assert catalog.quarantined() == []


def test_a_conflicting_copy_of_a_filed_instance_is_kept_aside(tmp_path: Path) -> None:
    """The archive holds the catalogued copy: a local one of other content never replaces it."""
    first = _write(_ct(), tmp_path / "a" / "ct.dcm")
    edited = _ct("EDITED")
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        catalog.import_paths([first])
        catalog.mark_deleting([edited.SOPInstanceUID], "ARCHIVE@host:104")
        first.unlink()
        catalog.mark_filed([edited.SOPInstanceUID])
        second = _write(edited, tmp_path / "a" / "ct_2.dcm")
        (aside,) = catalog.import_paths([second]).quarantined
        assert aside.reason == "conflicting copy" and aside.copy_of == first
        (row,) = catalog.instances(edited.PatientID)
        assert row.state is InstanceState.FILED and row.path == first


def test_a_local_row_whose_file_is_gone_takes_the_other_copy(tmp_path: Path) -> None:
    """A row with no file anywhere holds nothing: the only copy there is gets the row."""
    first = _write(_ct(), tmp_path / "a" / "ct.dcm")
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        catalog.import_paths([first])
        first.unlink()
        second = _write(_ct("EDITED"), tmp_path / "b" / "ct.dcm")
        assert catalog.import_paths([second]).updated == 1
        assert [r.path for r in catalog.instances(_ct().PatientID)] == [second]
        assert catalog.quarantined() == []


_SCHEMA_2_QUARANTINE = """
CREATE TABLE quarantine (
    path TEXT PRIMARY KEY, sop_instance_uid TEXT NOT NULL, sop_class_uid TEXT NOT NULL,
    patient_id TEXT NOT NULL, patient_name TEXT NOT NULL DEFAULT '', study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL, modality TEXT NOT NULL DEFAULT '',
    owner_patient_id TEXT NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL,
    found_at TEXT NOT NULL
);
"""


def test_a_schema_2_catalog_is_migrated(tmp_path: Path) -> None:
    """Schema 2's quarantine rows were all of another patient's study; they say so now."""
    own = _write(_ct(), tmp_path / "a" / "ct.dcm")
    path = tmp_path / "catalog.sqlite"
    with Catalog(path) as catalog:
        catalog.import_paths([own])
    db = sqlite3.connect(path)
    with db:  # the quarantine table as schema 2 made it, with one row
        db.execute("DROP TABLE quarantine")
        db.executescript(_SCHEMA_2_QUARANTINE)
        db.execute("INSERT INTO quarantine VALUES ('/x/intruder.dcm', '1.2.3', '1.2.840.10008."
                   "5.1.4.1.1.2', 'OTHER', '', '1.2.4', '1.2.5', 'CT', 'OWNER', 10, 'ab', "
                   "'2026-01-01T00:00:00+00:00')")
        db.execute("PRAGMA user_version = 2")
    db.close()
    with Catalog(path) as catalog:
        (row,) = catalog.quarantined()
        assert row.reason == "another patient" and row.copy_of is None
        assert row.owner_patient_id == "OWNER" and row.path == Path("/x/intruder.dcm")
        second = _write(_ct("EDITED"), tmp_path / "b" / "ct.dcm")
        (aside,) = catalog.import_paths([second]).quarantined  # the new column works
        assert aside.reason == "conflicting copy"
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 3
    assert sorted(db.execute("SELECT reason FROM quarantine")) == [
        ("another patient",), ("conflicting copy",)]
    db.close()
    with Catalog(path) as catalog:  # opened again: nothing to migrate, nothing changes
        assert len(catalog.quarantined()) == 2


def test_a_schema_2_migration_cut_short_is_completed(tmp_path: Path) -> None:
    """A crash after the first column was added (version still 2): the next opening ends it."""
    path = tmp_path / "catalog.sqlite"
    Catalog(path).close()
    db = sqlite3.connect(path)
    with db:
        db.execute("DROP TABLE quarantine")
        db.executescript(_SCHEMA_2_QUARANTINE)
        db.execute("ALTER TABLE quarantine ADD COLUMN reason TEXT NOT NULL DEFAULT "
                   "'another patient'")
        db.execute("PRAGMA user_version = 2")
    db.close()
    Catalog(path).close()
    db = sqlite3.connect(path)
    columns = [row[1] for row in db.execute("PRAGMA table_info(quarantine)")]
    assert columns[-3:] == ["reason", "copy_of", "copy_of_sha256"]
    assert db.execute("PRAGMA user_version").fetchone()[0] == 3
    db.close()


def _storescu(node_port: int, ae_title: str, path: Path) -> None:
    subprocess.run([STORESCU, "-aet", "DCMTK", "-aec", ae_title, LOCALHOST, str(node_port),
                    str(path)], env=DCMTK_ENV, check=True, capture_output=True, timeout=60)


def _configure(tmp_path: Path, archive: Archive, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The configuration (``RTFORGE_CONFIG``) of a test with storescu and ``archive``: the
    catalog's path."""
    needs(STORESCU)
    catalog_path = tmp_path / "catalog.sqlite"
    monkeypatch.setenv("RTFORGE_CONFIG", str(archive_config(archive, tmp_path / "config.toml",
                                                            catalog=catalog_path)))
    return catalog_path


@pytest.mark.interop
def test_dcmtk_sends_an_edited_copy_listed_and_never_filed(
        tmp_path: Path, archive: Archive, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """storescu sends an object, then an edited one under the same SOP Instance UID, to
    ``rtforge receive --catalog``; ``store ls`` lists the second with both paths, and filing
    the patient to Orthanc files the first and leaves the second where it is."""
    catalog_path = _configure(tmp_path, archive, monkeypatch)
    original, edited = _ct("ORIGINAL"), _ct("EDITED COPY")
    uid, patient = original.SOPInstanceUID, original.PatientID
    receiver = start_receiver(tmp_path, "--catalog", str(catalog_path))
    try:
        for n, ds in enumerate((original, edited)):
            _storescu(receiver.node.port, receiver.node.ae_title,
                      _write(ds, tmp_path / "send" / f"{n}.dcm"))
        receiver.proc.send_signal(signal.SIGTERM)
        _, err = receiver.proc.communicate(timeout=30)
    finally:
        stop_process(receiver.proc)
    assert receiver.proc.returncode == 0, err
    first, second = sorted(receiver.out.rglob(f"{uid}*.dcm"))
    assert second.name == f"{uid}_2.dcm"
    reported = [line for line in err.splitlines() if "conflicting copy" in line]
    assert len(reported) == 1 and uid in reported[0] and str(first) in reported[0] \
        and str(second) in reported[0]

    assert main(["store", "ls", "--instances"]) == 0
    out = capsys.readouterr().out
    assert f"{uid}  quarantined {second}" in out
    (line,) = [line for line in out.splitlines() if "conflicting copy" in line and
               not line.startswith(" ")]
    assert str(first) in line and str(second) in line
    assert main(["store", "ls", "--json"]) == 0
    (case,) = json.loads(capsys.readouterr().out)
    assert case["states"] == {"local": 1, "quarantined": 1}
    (copy,) = case["conflicting_copies"]
    assert (copy["path"], copy["copy_of"], copy["reason"]) == (str(second), str(first),
                                                                "conflicting copy")

    kept = second.read_bytes()
    assert main(["file", patient, "--to", "archive", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["sent"] == report["deleted"] == 1
    assert [c["path"] for c in report["conflicting_copies"]] == [str(second)]
    assert not first.exists() and second.read_bytes() == kept  # never filed, never deleted
    (held,) = archive.rest("GET", "/instances")
    tags = archive.rest("GET", f"/instances/{held}/simplified-tags")
    assert tags["SeriesDescription"] == "ORIGINAL"
    with Catalog(catalog_path) as catalog:
        (row,) = catalog.instances(patient)
        assert row.state is InstanceState.FILED and row.path == first
        (aside,) = catalog.quarantined()
        assert (aside.path, aside.copy_of) == (second, first)


# -- an edited copy returning where a filed instance was ------------------------------------
#
# Played failure: once an instance was filed (its local file deleted), an edited object of the
# same SOP Instance UID arriving at the very path the filed row names (the receiver's
# <UID>.dcm, free again) was indexed as the instance, 'local' with its checksums: the catalog
# forgot that the archive holds another version, and the next 'rtforge file' sent the edited
# one under the filed one's UID (overwriting it in the archive, or failing verification).

_ARCHIVE = "ARCHIVE@host:104"


def _filed(catalog: Catalog, path: Path) -> str:
    """Record ``path``'s instance as filed to :data:`_ARCHIVE`, as 'rtforge file' does."""
    (found,) = catalog.import_paths([path]).quarantined or [None]
    assert found is None
    uid = dcmread(path, stop_before_pixels=True).SOPInstanceUID
    catalog.mark_deleting([uid], _ARCHIVE)
    path.unlink()
    catalog.mark_filed([uid])
    return uid


def _assert_kept_aside(catalog: Catalog, path: Path, filed_sha256: str) -> None:
    """``path`` quarantined as a conflicting copy of the filed instance; the row still filed."""
    (aside,) = catalog.quarantined()
    assert aside.reason == "conflicting copy" and aside.path == path == aside.copy_of
    assert aside.copy_archive == _ARCHIVE and aside.sha256 == file_sha256(path)
    assert aside.copy_of_sha256 == filed_sha256
    assert _ARCHIVE in aside.line() and str(path) in aside.line()
    (row,) = catalog.instances(_ct().PatientID)
    assert (row.state, row.path, row.sha256) == (InstanceState.FILED, path, filed_sha256)


def test_an_edited_copy_at_a_filed_instance_path_is_kept_aside(tmp_path: Path) -> None:
    path = _write(_ct(), tmp_path / "a" / "ct.dcm")
    filed_sha256 = file_sha256(path)
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        _filed(catalog, path)
        _write(_ct("EDITED"), path)
        report = catalog.import_paths([path])
        assert report.added == report.updated == 0 and len(report.quarantined) == 1
        (line,) = report.quarantine_lines()
        assert "filed to ARCHIVE@host:104" in line
        _assert_kept_aside(catalog, path, filed_sha256)
        (case,) = catalog.cases()
        assert case.states == {"filed": 1, "quarantined": 1}
        assert case.as_dict()["conflicting_copies"][0]["copy_archive"] == _ARCHIVE


def test_recover_keeps_an_edited_copy_at_a_filed_path_aside_once(tmp_path: Path) -> None:
    """The documented 'filed row whose file is back' rule: only the same content is local."""
    path = _write(_ct(), tmp_path / "a" / "ct.dcm")
    filed_sha256 = file_sha256(path)
    seen: list = []
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        _filed(catalog, path)
        _write(_ct("EDITED"), path)
        assert catalog.recover() == {"filed": 0, "local": 0}
        _assert_kept_aside(catalog, path, filed_sha256)
        found_at = catalog.quarantined()[0].found_at
        assert catalog.recover(on_quarantine=seen.append) == {"filed": 0, "local": 0}
        assert seen == [] and catalog.quarantined()[0].found_at == found_at  # settled


def test_an_interrupted_filing_then_an_edited_copy_settles_filed(tmp_path: Path) -> None:
    """Killed after the unlink, before 'filed'; then the edited copy took the path: the
    archive verified and holds the catalogued copy, so the row is filed, the copy aside."""
    path = _write(_ct(), tmp_path / "a" / "ct.dcm")
    filed_sha256 = file_sha256(path)
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        catalog.import_paths([path])
        catalog.mark_deleting([_ct().SOPInstanceUID], _ARCHIVE)
        _write(_ct("EDITED"), path)
        assert catalog.recover() == {"filed": 1, "local": 0}
        _assert_kept_aside(catalog, path, filed_sha256)


def test_receiver_start_up_reports_an_edited_copy_at_a_filed_path(tmp_path: Path) -> None:
    """Written while no receiver indexed it (or before the indexer ran): the start-up
    reconciliation keeps it aside and reports it, once."""
    root = tmp_path / "rx"
    path = _write(_ct(), root / "p" / "ct.dcm")
    filed_sha256 = file_sha256(path)
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        _filed(catalog, path)
        _write(_ct("EDITED"), path)
        report = reconcile_store(catalog, root)
        assert report.conflicts == [path] and report.indexed == 0
        (line,) = report.quarantined
        assert f"filed to {_ARCHIVE}" in line
        _assert_kept_aside(catalog, path, filed_sha256)
        assert not reconcile_store(catalog, root).changed


def test_the_same_content_at_a_filed_path_is_local_again(tmp_path: Path) -> None:
    """A restore, or the same object sent again: no conflict, the row is local (as before)."""
    path = _write(_ct(), tmp_path / "a" / "ct.dcm")
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        _filed(catalog, path)
        _write(_ct(), path)
        assert catalog.import_paths([path]).updated == 1
        (row,) = catalog.instances(_ct().PatientID)
        assert row.state is InstanceState.LOCAL and row.archive == _ARCHIVE
        assert catalog.quarantined() == []


def test_the_conflicting_copy_of_a_filed_instance_goes_when_the_original_returns(
        tmp_path: Path) -> None:
    """Someone replaced the edited copy by the original by hand: local again, nothing aside."""
    path = _write(_ct(), tmp_path / "a" / "ct.dcm")
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        _filed(catalog, path)
        _write(_ct("EDITED"), path)
        catalog.recover()
        _write(_ct(), path)
        assert catalog.recover() == {"filed": 0, "local": 1}
        (row,) = catalog.instances(_ct().PatientID)
        assert row.state is InstanceState.LOCAL and catalog.quarantined() == []


def test_restore_never_overwrites_a_conflicting_copy(tmp_path: Path) -> None:
    """Restore writes the archive's copy back to the row's path: not over the edited copy."""
    path = _write(_ct(), tmp_path / "a" / "ct.dcm")
    original = path.read_bytes()
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        catalog.import_paths([path])
        assert file_case(catalog, _ct().PatientID, tmp_path / "media").ok
        edited = _write(_ct("EDITED"), path).read_bytes()
        catalog.import_paths([path])
        with pytest.raises(InvalidInputError, match="conflicting copy") as caught:
            restore_case(catalog, _ct().PatientID, scp_ae_title="RTFORGE_RST", scp_port=0)
        assert str(path) in str(caught.value)
        assert path.read_bytes() == edited
        (row,) = catalog.instances(_ct().PatientID)
        assert row.state is InstanceState.FILED
        path.unlink()  # someone decided: the edited copy goes
        assert restore_case(catalog, _ct().PatientID, scp_ae_title="RTFORGE_RST",
                            scp_port=0).ok
        assert path.read_bytes() == original and catalog.quarantined() == []


def _receive(tmp_path: Path, catalog_path: Path, sent: Path) -> str:
    """Start 'rtforge receive --catalog' (folder ``rx``), storescu ``sent`` to it, stop it:
    its stderr (the indexer has recorded everything once it exits)."""
    receiver = start_receiver(tmp_path, "--catalog", str(catalog_path))
    try:
        _storescu(receiver.node.port, receiver.node.ae_title, sent)
        receiver.proc.send_signal(signal.SIGTERM)
        _, err = receiver.proc.communicate(timeout=30)
    finally:
        stop_process(receiver.proc)
    assert receiver.proc.returncode == 0, err
    return err


@pytest.mark.interop
def test_dcmtk_sends_an_edited_copy_of_a_filed_instance_kept_aside(
        tmp_path: Path, archive: Archive, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An instance received and filed to Orthanc; storescu then sends an edited object under
    its SOP Instance UID, which the receiver writes where the filed file was: it is listed as
    a conflicting copy of the filed instance, 'rtforge file' neither sends nor deletes it,
    Orthanc keeps the original; the original sent again is simply local again."""
    catalog_path = _configure(tmp_path, archive, monkeypatch)
    original, edited = _ct("ORIGINAL"), _ct("EDITED COPY")
    uid, patient = original.SOPInstanceUID, original.PatientID
    sent_original = _write(original, tmp_path / "send" / "original.dcm")
    _receive(tmp_path, catalog_path, sent_original)
    (path,) = (tmp_path / "rx").rglob(f"{uid}*.dcm")
    filed_dataset = split_part10(path.read_bytes())[1]
    assert main(["file", patient, "--to", "archive", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["sent"] == report["deleted"] == 1 and not path.exists()

    err = _receive(tmp_path, catalog_path, _write(edited, tmp_path / "send" / "edited.dcm"))
    assert [p.name for p in (tmp_path / "rx").rglob(f"{uid}*.dcm")] == [path.name]
    kept = path.read_bytes()
    (line,) = [line for line in err.splitlines() if "conflicting copy" in line]
    assert uid in line and str(path) in line and f"filed to {archive.node}" in line
    assert main(["store", "ls", "--json"]) == 0
    (case,) = json.loads(capsys.readouterr().out)
    assert case["states"] == {"filed": 1, "quarantined": 1}
    (copy,) = case["conflicting_copies"]
    assert (copy["path"], copy["copy_of"], copy["copy_archive"]) == (str(path), str(path),
                                                                      str(archive.node))
    assert main(["store", "ls"]) == 0
    assert f"filed to {archive.node}" in capsys.readouterr().out

    assert main(["file", patient, "--to", "archive"]) == 1
    assert "conflicting cop" in capsys.readouterr().err
    assert main(["restore", patient]) == 1  # never over the conflicting copy
    (refused,) = capsys.readouterr().err.splitlines()
    assert str(path) in refused and "conflicting copy" in refused
    assert path.read_bytes() == kept  # never sent, never deleted, never overwritten
    (held,) = archive.rest("GET", "/instances")
    assert split_part10(archive.file(held))[1] == filed_dataset  # the original, byte for byte
    with Catalog(catalog_path) as catalog:
        (row,) = catalog.instances(patient)
        assert row.state is InstanceState.FILED and row.path == path

    err = _receive(tmp_path, catalog_path, sent_original)  # the original again: no conflict
    assert "conflicting copy" not in err
    with Catalog(catalog_path) as catalog:
        (row,) = catalog.instances(patient)
        assert row.state is InstanceState.LOCAL and row.path == path.with_name(f"{uid}_2.dcm")
        assert split_part10(row.path.read_bytes())[1] == filed_dataset
        assert [r.path for r in catalog.quarantined()] == [path]
    assert main(["file", patient, "--to", "archive", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["already"], report["sent"], report["deleted"]) == (1, 0, 1)
    assert path.read_bytes() == kept
    (held,) = archive.rest("GET", "/instances")
    assert split_part10(archive.file(held))[1] == filed_dataset
