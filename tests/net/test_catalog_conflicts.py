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
from rtforge.net.catalog import Catalog, InstanceState, file_sha256
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


@pytest.mark.interop
def test_dcmtk_sends_an_edited_copy_listed_and_never_filed(
        tmp_path: Path, archive: Archive, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """storescu sends an object, then an edited one under the same SOP Instance UID, to
    ``rtforge receive --catalog``; ``store ls`` lists the second with both paths, and filing
    the patient to Orthanc files the first and leaves the second where it is."""
    needs(STORESCU)
    catalog_path = tmp_path / "catalog.sqlite"
    monkeypatch.setenv("RTFORGE_CONFIG", str(archive_config(archive, tmp_path / "config.toml",
                                                            catalog=catalog_path)))
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
