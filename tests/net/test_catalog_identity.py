"""The catalog never merges patients: identity (Patient ID, Study Instance UID), quarantine,
the schema 1 migration, the receiver's indexer fed by dcmtk, and Orthanc fed relinked patients.

Played failures: a catalog that keyed studies by Study Instance UID alone recorded another
patient's objects under the first patient's case (one case, one export holding both); a
relink that kept the study put one study under two patients in a PACS.
"""

from __future__ import annotations

import copy
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest
from pydicom import Dataset
from pydicom.uid import generate_uid

from rtforge.config import ExportConfig
from rtforge.io.relink import PatientChange, relink
from rtforge.net import send
from rtforge.net.catalog import Catalog, InstanceState, scan_file
from rtforge.net.query import QueryLevel, find
from tests.io.test_references import ROOT, STUDY, write_set
from tests.io.test_relink import relinkable_set
from tests.net.archive_peers import Archive
from tests.net.peers import (
    DCMTK_ENV,
    LOCALHOST,
    STORESCU,
    needs,
    start_receiver,
    stop_process,
)

PATIENT = "MRN-123"
CONFIG = ExportConfig(uid_root="1.2.826.0.1.3680043.8.498.99.")


def same_study_of(objects: list[Dataset], patient_id: str) -> list[Dataset]:
    """Copies under another Patient ID and new SOP Instance UIDs, in the same studies and series
    (what a relink that keeps the study UIDs, or a mislabelled scan, produces)."""
    out = []
    for ds in objects:
        other = copy.deepcopy(ds)
        other.PatientID, other.SOPInstanceUID = patient_id, generate_uid()
        out.append(other)
    return out


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """The original set, and the same studies under patient OTHER."""
    objects = relinkable_set()
    write_set(tmp_path / "a", objects)
    write_set(tmp_path / "b", same_study_of(objects, "OTHER"))
    return tmp_path / "a", tmp_path / "b"


def test_an_object_of_a_study_held_by_another_patient_is_quarantined(
        tmp_path: Path, folders: tuple[Path, Path]) -> None:
    a, b = folders
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        assert catalog.import_paths([a]).added == 8
        report = catalog.import_paths([b])
        assert report.added == report.updated == 0 and len(report.quarantined) == 8
        assert report.quarantine_lines() == [
            f"quarantined {n} object(s) of patient 'OTHER': study {study} belongs to patient "
            f"'{PATIENT}' in the catalog; kept aside, not merged (never exported, filed or "
            "restored)" for n, study in ((7, STUDY), (1, ROOT + "11"))]
        assert all(a.resolve() in r.path.parents for r in catalog.instances(PATIENT))
        assert catalog.instances("OTHER") == []
        assert catalog.import_paths([b]).quarantined  # a re-import keeps them aside, once
        aside = catalog.quarantined("OTHER")
        assert len(aside) == 8 and {r.state for r in aside} == {InstanceState.QUARANTINED}
        cases = {c.patient_id: c for c in catalog.cases()}
        assert cases[PATIENT].states == {"local": 8} and cases[PATIENT].instances == 8
        assert cases["OTHER"].states == {"quarantined": 8} and cases["OTHER"].studies == 2
        series = catalog.series("OTHER")
        assert sum(s.instances for s in series) == 8
        assert {s.modality for s in series} == {"CT", "MR", "REG", "RTDOSE", "RTIMAGE",
                                                "RTPLAN", "RTSTRUCT"}


def test_a_sop_instance_uid_held_by_another_patient_is_not_taken_over(tmp_path: Path) -> None:
    objects = relinkable_set()
    write_set(tmp_path / "a", objects)
    renamed = copy.deepcopy(objects[0])
    renamed.PatientID = "OTHER"
    renamed.StudyInstanceUID, renamed.SeriesInstanceUID = generate_uid(), generate_uid()
    write_set(tmp_path / "b", [renamed])
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        catalog.import_paths([tmp_path / "a"])
        before = {r.sop_instance_uid: r.path for r in catalog.instances(PATIENT)}
        (aside,) = catalog.import_paths([tmp_path / "b"]).quarantined
        assert aside.owner_patient_id == PATIENT
        assert {r.sop_instance_uid: r.path for r in catalog.instances(PATIENT)} == before


def _as_schema_1(path: Path, merged: list[Path]) -> None:
    """Turn a catalog into what schema 1 made of ``merged``: rows under the study's patient."""
    db = sqlite3.connect(path)
    with db:
        db.execute("DROP TABLE quarantine")
        for f in map(scan_file, merged):
            assert f is not None
            db.execute("INSERT OR IGNORE INTO patients VALUES (?, ?)",
                       (f.patient_id, f.patient_name))
            db.execute("INSERT OR IGNORE INTO studies VALUES (?, ?, ?, ?)",
                       (f.study_uid, f.patient_id, f.study_date, f.study_description))
            db.execute("INSERT OR IGNORE INTO series VALUES (?, ?, ?, ?)",
                       (f.series_uid, f.study_uid, f.modality, f.series_description))
            db.execute("INSERT INTO instances (sop_instance_uid, series_uid, sop_class_uid, "
                       "transfer_syntax, path, size, sha256, dataset_sha256, meta, state) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'local')",
                       (f.sop_instance_uid, f.series_uid, f.sop_class_uid, f.transfer_syntax,
                        str(f.path), f.size, f.sha256, f.dataset_sha256, f.meta))
        db.execute("PRAGMA user_version = 1")
    db.close()


def test_a_schema_1_catalog_that_merged_patients_is_migrated(
        tmp_path: Path, folders: tuple[Path, Path]) -> None:
    a, b = folders
    path = tmp_path / "catalog.sqlite"
    with Catalog(path) as catalog:
        catalog.import_paths([a])
    _as_schema_1(path, sorted(b.rglob("*.dcm")))
    with Catalog(path) as catalog:
        assert len(catalog.instances(PATIENT)) == 8  # the merged rows are gone from the case
        assert len(catalog.quarantined("OTHER")) == 8
        assert [c.patient_id for c in catalog.cases()] == [PATIENT, "OTHER"]
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 3


@pytest.mark.interop
def test_the_receivers_indexer_quarantines_and_reports(
        tmp_path: Path, folders: tuple[Path, Path]) -> None:
    """dcmtk's storescu sends both patients to ``rtforge receive --catalog``."""
    needs(STORESCU)
    catalog_path = tmp_path / "catalog.sqlite"
    receiver = start_receiver(tmp_path, "--catalog", str(catalog_path))
    try:
        for folder in folders:  # the first patient first: it owns the studies
            subprocess.run([STORESCU, "-aet", "DCMTK", "-aec", receiver.node.ae_title, LOCALHOST,
                            str(receiver.node.port), *map(str, sorted(folder.rglob("*.dcm")))],
                           env=DCMTK_ENV, check=True, capture_output=True, timeout=60)
        receiver.proc.send_signal(signal.SIGTERM)
        _, err = receiver.proc.communicate(timeout=30)
    finally:
        stop_process(receiver.proc)
    assert receiver.proc.returncode == 0, err
    reported = [line for line in err.splitlines() if "quarantined" in line]
    assert len(reported) == 2 and all("patient 'OTHER'" in line and f"patient '{PATIENT}'"
                                      in line for line in reported)
    with Catalog(catalog_path) as catalog:
        assert {c.patient_id: c.states for c in catalog.cases()} == {
            PATIENT: {"local": 8}, "OTHER": {"quarantined": 8}}


@pytest.mark.interop
def test_a_pacs_sent_two_relinked_patients_shows_two_studies(archive: Archive,
                                                              tmp_path: Path) -> None:
    objects = relinkable_set()
    patients = ("NEW-1", "NEW-2")
    for patient in patients:
        result = relink(objects, PatientChange(patient), config=CONFIG)
        write_set(tmp_path / patient, [ds for ds in result.datasets if ds.Modality != "RTDOSE"])
        report = send(sorted((tmp_path / patient).rglob("*.dcm")), archive.node)
        assert report.ok and report.sent == 7
    studies = find(archive.node, QueryLevel.STUDY, filters={"PatientID": "NEW-*"})
    assert sorted(str(ds.PatientID) for ds in studies) == sorted(patients * 2)  # CT and MR
    for ds in studies:  # a study-level query (or C-MOVE) finds one patient, never both
        (match,) = find(archive.node, QueryLevel.STUDY,
                        filters={"StudyInstanceUID": str(ds.StudyInstanceUID)})
        assert match.PatientID == ds.PatientID
    assert len(archive.rest("GET", "/patients")) == 2
    assert STUDY not in {str(ds.StudyInstanceUID) for ds in studies}
