"""Relink then import both patients: the catalog never merges them (issue 14, items 1 and 2).

Played failure: on a relink that keeps the Study Instance UID, the catalog (which keyed
studies by Study Instance UID alone) showed one case, and ``media export`` of the first
patient wrote the second patient's files.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread

from rtforge.cli import main
from rtforge.io.references import check_references, read_folder
from tests.cli.test_archive_cli import _json, config  # noqa: F401  (config: a fixture)
from tests.io.test_references import ROOT, STUDY, write_set
from tests.io.test_relink import relinkable_set
from tests.net.peers import free_port

PATIENT = "MRN-123"
pytestmark = pytest.mark.usefixtures("config")  # an empty configuration: the user's never leaks in


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """CT, structure set, plan, dose, RT Image, an MR of another study and a REG."""
    folder = tmp_path / "src"
    write_set(folder, relinkable_set())
    return folder


def _patients(folder: Path) -> list[str]:
    return [str(dcmread(p, stop_before_pixels=True).PatientID) for p in folder.rglob("*")
            if p.is_file() and p.name != "DICOMDIR"]


def test_relinked_patients_are_two_cases_each_exporting_its_own(
        source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = ["--store", str(tmp_path / "store")]
    assert main(["relink", str(source), str(tmp_path / "p2"), "--patient-id", "NEW-2", "-q"]) == 0
    for folder in (source, tmp_path / "p2"):
        assert main(["media", "import", str(folder), *store, "-q"]) == 0
    assert capsys.readouterr().err == ""  # nothing quarantined
    cases = _json(capsys, ["store", "ls", *store, "--json"])
    # the RT Dose is never re-linked: its copy in p2 is the original patient's object
    assert [(c["patient_id"], c["instances"], c["states"]) for c in cases] == \
        [(PATIENT, 8, {"local": 8}), ("NEW-2", 7, {"local": 7})]
    for patient, count in ((PATIENT, 8), ("NEW-2", 7)):
        out = tmp_path / f"export-{patient}"
        assert main(["media", "export", patient, str(out), *store, "-q"]) == 0
        assert _patients(out) == [patient] * count
    exported = [ds for _, ds in read_folder(tmp_path / "export-NEW-2")]
    report = check_references(exported)  # every reference resolves in the relinked set
    assert report.ok, report.dangling
    assert STUDY not in {str(ds.StudyInstanceUID) for ds in exported}


def test_same_study_of_another_patient_is_quarantined_and_listed(
        source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store_dir = tmp_path / "store"
    store = ["--store", str(store_dir)]
    assert main(["relink", str(source), str(tmp_path / "p3"), "--patient-id", "NEW-3",
                 "--keep-study-uids", "-q"]) == 0
    assert "now exists under two patients (MRN-123 and NEW-3)" in capsys.readouterr().err
    assert main(["media", "import", str(source), *store, "-q"]) == 0
    assert main(["media", "import", str(tmp_path / "p3"), *store]) == 0
    captured = capsys.readouterr()
    assert "(0 new, 7 quarantined)" in captured.out  # the untouched RT Dose is MRN-123's
    lines = captured.err.splitlines()
    # one line per patient and study, naming both patients
    assert sorted(lines) == sorted(
        f"rtforge media: warning: quarantined {n} object(s) of patient 'NEW-3': study {study} "
        f"belongs to patient 'MRN-123' in the catalog; kept aside, not merged (never exported, "
        "filed or restored)" for n, study in ((6, STUDY), (1, ROOT + "11")))
    cases = _json(capsys, ["store", "ls", *store, "--json"])
    assert [(c["patient_id"], c["states"]) for c in cases] == \
        [(PATIENT, {"local": 8}), ("NEW-3", {"quarantined": 7})]
    assert main(["store", "ls", *store]) == 0
    listing = capsys.readouterr().out
    assert "7 quarantined" in listing and f"study {STUDY} belongs to patient 'MRN-123'" in listing

    assert main(["media", "export", PATIENT, str(tmp_path / "cd"), *store, "-q"]) == 0
    assert _patients(tmp_path / "cd") == [PATIENT] * 8
    assert main(["media", "export", "NEW-3", str(tmp_path / "cd3"), *store]) == 1
    assert "has only quarantined objects" in capsys.readouterr().err
    assert not (tmp_path / "cd3").exists()

    quarantined = sorted((store_dir / "NEW-3").rglob("*.dcm"))
    assert len(quarantined) == 7
    report = _json(capsys, ["file", PATIENT, "--to-folder", str(tmp_path / "usb"), *store,
                            "--json"])
    assert report["ok"] and report["deleted"] == 8
    assert _patients(tmp_path / "usb") == [PATIENT] * 8
    assert all(p.is_file() for p in quarantined)  # another patient's files: never filed
    report = _json(capsys, ["restore", PATIENT, *store, "--port", str(free_port()), "--json"])
    assert report["ok"] and report["restored"] == 8


def test_store_ls_patient_groups_by_study_and_series(
        source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = ["--store", str(tmp_path / "store")]
    assert main(["store", "import", str(source), *store, "-q"]) == 0
    assert main(["store", "ls", *store, "--patient", PATIENT]) == 0
    out = capsys.readouterr().out
    assert f"study {STUDY}  20240102  Pelvis RT: 2 CT, 1 REG, 1 RTDOSE, 1 RTIMAGE, 1 RTPLAN, " \
        "1 RTSTRUCT" in out
    assert "1 MR" in out and out.count("    series ") == 7
    uids = [str(ds.SOPInstanceUID) for _, ds in read_folder(source)]
    assert not any(uid in out for uid in uids)  # no instance in the short form
    assert main(["store", "ls", *store, "--patient", PATIENT, "--instances"]) == 0
    out = capsys.readouterr().out
    assert all(uid in out for uid in uids)
    (case,) = _json(capsys, ["store", "ls", *store, "--patient", PATIENT, "--json"])
    assert len(case["instances_detail"]) == 8 and len(case["series_detail"]) == 7
