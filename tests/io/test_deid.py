"""Clinical-trial de-identification: the Basic Profile tag by tag, UIDs, references, keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import Dataset
from pydicom.tag import Tag

from rtforge.errors import InvalidInputError
from rtforge.io.deid import (
    DEIDENTIFICATION_METHOD,
    TrialInfo,
    deidentify,
    load_trial,
    read_key,
    uid_map_csv,
)
from rtforge.io.references import check_references
from rtforge.io.rtplan import write_rtplan
from rtforge.io.validate import dciodvfy_available, validate_file
from tests.io.test_references import make_rt_set

TRIAL = TrialInfo(sponsor_name="Sponsor", protocol_id="PROT-1", subject_id="SUBJ-007",
                  site_id="S12", time_point_id="baseline")
KEY = "0123456789abcdef" * 4
ROOT = "1.2.826.0.1.3680043.8.498.88."


def profile_tags() -> list[int]:
    """The Basic Profile's tags, from outside rtforge (dicom-anonymizer's PS3.15 2026c list)."""
    fields = pytest.importorskip("dicomanonymizer.dicom_anonymization_databases.dicomfields_2026c")
    return [(t[0] << 16) | t[1] for t in fields.ALL_TAGS if len(t) == 2]


def walk(ds: Dataset) -> list[tuple[int, object]]:
    out = []
    for elem in ds:
        if elem.VR == "SQ":
            out.append((int(elem.tag), len(elem.value)))
            for item in elem.value:
                out.extend(walk(item))
        else:
            out.append((int(elem.tag), elem.value))
    return out


@pytest.fixture(scope="module")
def original() -> list[Dataset]:
    objects = make_rt_set()
    for ds in objects:  # identifying attributes the RT set alone lacks
        ds.OperatorsName, ds.InstitutionAddress, ds.PatientAddress = "Op^One", "1 Road", "2 Lane"
        ds.StationName, ds.AcquisitionDate, ds.ContentDate = "CT01", "20240102", "20240102"
        ds.add_new(0x00111010, "LO", "PRIVATE")
        ds.add_new(0x00111001, "LO", "private creator")
        ds.add_new(0x60003000, "OW", b"\x00\x00")
    return objects


@pytest.fixture(scope="module")
def result(original: list[Dataset]):  # noqa: ANN201
    return deidentify(original, TRIAL, key=KEY, uid_root=ROOT)


def test_profile_attributes_keep_no_identifying_value(original: list[Dataset], result) -> None:  # noqa: ANN001
    tags = set(profile_tags())
    checked = 0
    for before, after in zip(original, result.datasets, strict=True):
        old = {t: v for t, v in walk(before) if t in tags}
        new: dict[int, list[object]] = {}
        for t, v in walk(after):
            new.setdefault(t, []).append(v)
        for tag, value in old.items():
            checked += 1
            if tag in (0x00100010, 0x00100020):  # Patient Name (Family^ form) and ID: the subject
                assert new[tag] == ["SUBJ-007^" if tag == 0x00100010 else "SUBJ-007"]
                continue
            if Tag(tag) == Tag("ClinicalTrialSubjectID") or Tag(tag) == Tag("ClinicalTrialProtocolID") \
                    or Tag(tag) == Tag("ClinicalTrialSponsorName"):
                continue  # written from the trial file
            for v in new.get(tag, []):
                assert v in (None, "", 0) or v != value, (hex(tag), value, v)
    assert checked > 40


def test_private_and_overlay_data_removed(result) -> None:  # noqa: ANN001
    for ds in result.datasets:
        assert not any(elem.tag.is_private for elem in ds)
        assert 0x60003000 not in ds


def test_every_uid_changed_and_references_resolve(original: list[Dataset], result) -> None:  # noqa: ANN001
    keywords = ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "FrameOfReferenceUID")
    old_uids = {str(ds.get(k)) for ds in original for k in keywords if k in ds}
    new_uids = {str(ds.get(k)) for ds in result.datasets for k in keywords if k in ds}
    assert not old_uids & new_uids
    assert all(u.startswith(ROOT) for u in new_uids)
    assert old_uids <= set(result.uid_map)
    report = check_references(result.datasets)
    assert report.ok and len(report.references) == len(check_references(original).references)
    assert all(ref.uid.startswith(ROOT) for ref in report.references)
    plan = result.datasets[3]
    assert plan.SOPClassUID == original[3].SOPClassUID  # well-known UIDs are kept


def test_trial_modules_and_marking(result) -> None:  # noqa: ANN001
    for ds in result.datasets:
        assert ds.ClinicalTrialSponsorName == "Sponsor" and ds.ClinicalTrialSubjectID == "SUBJ-007"
        assert ds.ClinicalTrialSiteID == "S12" and ds.ClinicalTrialTimePointID == "baseline"
        assert ds.ClinicalTrialSiteName is None and "ClinicalTrialTimePointDescription" not in ds
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.DeidentificationMethod == DEIDENTIFICATION_METHOD
        assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"


def test_same_key_same_mapping(original: list[Dataset], result) -> None:  # noqa: ANN001
    again = deidentify(original[::-1], TRIAL, key=KEY, uid_root=ROOT)
    assert again.uid_map == result.uid_map
    other = deidentify(original, TRIAL, key="another key", uid_root=ROOT)
    assert set(other.uid_map.values()).isdisjoint(result.uid_map.values())
    text = uid_map_csv(result.uid_map, [("MRN-123", "SUBJ-007")])
    assert text.splitlines()[:2] == ["original,replacement", "MRN-123,SUBJ-007"]


def test_input_not_modified(original: list[Dataset], result) -> None:  # noqa: ANN001
    assert original[0].PatientName == "Doe^Jane" and result.datasets[0].PatientName == "SUBJ-007^"


def test_trial_file_and_key_file(tmp_path: Path) -> None:
    path = tmp_path / "trial.toml"
    path.write_text('[trial]\nsponsor_name = "S"\nprotocol_id = "P"\nsubject_id = "X1"\n')
    assert load_trial(path) == TrialInfo("S", "P", "X1")
    path.write_text('sponsor_name = "S"\nprotocol_id = "P"\n')
    with pytest.raises(InvalidInputError, match="incomplete"):
        load_trial(path)
    path.write_text('sponsor_name = "S"\nprotocol_id = "P"\nsubject_id = "X"\ncolour = 1\n')
    with pytest.raises(InvalidInputError, match="unknown key"):
        load_trial(path)
    path.write_text("not toml [")
    with pytest.raises(InvalidInputError, match="TOML"):
        load_trial(path)
    with pytest.raises(InvalidInputError, match="subject_id"):
        TrialInfo("S", "P", " ")
    key_file = tmp_path / "key"
    key = read_key(key_file)
    assert read_key(key_file) == key and (key_file.stat().st_mode & 0o777) == 0o600
    with pytest.raises(InvalidInputError, match="not found"):
        read_key(tmp_path / "missing", create=False)
    with pytest.raises(InvalidInputError, match="key"):
        deidentify([], TRIAL, key="")


@pytest.mark.interop
@pytest.mark.skipif(not dciodvfy_available(), reason="dciodvfy (dicom3tools) not installed")
def test_deidentified_plan_passes_dciodvfy(result, tmp_path: Path) -> None:  # noqa: ANN001
    plan = result.datasets[3]
    assert plan.Modality == "RTPLAN"
    checked = validate_file(write_rtplan(plan, tmp_path))
    assert checked.dciodvfy_ran and checked.errors == [], checked.errors
