"""Clinical-trial de-identification: the Basic Profile tag by tag, UIDs, references, keys."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread
from pydicom.tag import Tag

from rtforge.errors import InvalidInputError
from rtforge.io._deid_profile import BASIC_PROFILE, CLEAN_DESCRIPTORS, MODIFIED_DATES
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
from tests.datafiles import shared_file
from tests.io.test_references import make_rt_set
from tests.io.test_rtplan_builder import build_brachy

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


# ----------------------------------------------------------------- options
ECLIPSE_RS = "slicerrt_eclipse/RS.1.2.246.352.71.4.2088656855.2404649.20110920153449.dcm"


def test_clean_descriptors_option_keeps_roi_names() -> None:
    """Eclipse's structure set: ROI names survive with the option (DVHs stay labelled)."""
    rs = dcmread(shared_file(ECLIPSE_RS))
    names = [str(r.ROIName) for r in rs.StructureSetROISequence]
    assert len(names) == 16 and "PTV" in names
    basic = deidentify([rs], TRIAL, key=KEY, uid_root=ROOT).datasets[0]
    assert {str(r.get("ROIName", "") or "") for r in basic.StructureSetROISequence} == {""}
    kept = deidentify([rs], TRIAL, key=KEY, uid_root=ROOT, keep_descriptors=True).datasets[0]
    assert [str(r.ROIName) for r in kept.StructureSetROISequence] == names
    assert [c.CodeValue for c in kept.DeidentificationMethodCodeSequence] == ["113100", "113105"]
    assert list(kept.DeidentificationMethod)[1] == "Clean Descriptors Option"
    # Identifying attributes outside the option's table are still removed.
    assert "OperatorsName" not in kept or not kept.OperatorsName
    assert kept.PatientName == "SUBJ-007^"


def test_modified_dates_option_shifts_dates_and_keeps_intervals() -> None:
    plan = build_brachy()
    plan.StudyDate, plan.SeriesDate = "20240517", "20240517"
    reference = str(plan.SourceSequence[0].SourceStrengthReferenceDate)
    basic = deidentify([plan], TRIAL, key=KEY, uid_root=ROOT).datasets[0]
    assert basic.SourceSequence[0].SourceStrengthReferenceDate == "19000101"  # decay lost
    out = deidentify([plan], TRIAL, key=KEY, uid_root=ROOT, date_shift_days=-1000).datasets[0]

    def days(a: str, b: str) -> int:
        return (datetime.strptime(a, "%Y%m%d") - datetime.strptime(b, "%Y%m%d")).days

    moved = str(out.SourceSequence[0].SourceStrengthReferenceDate)
    assert days(moved, reference) == -1000
    assert days(str(out.StudyDate), "20240517") == -1000
    # The interval from the source's reference date to the treatment is what it was.
    assert days(str(out.StudyDate), moved) == days("20240517", reference)
    assert out.StudyTime == plan.StudyTime and out.StudyID == "DEIDENTIFIED"
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"
    assert [c.CodeValue for c in out.DeidentificationMethodCodeSequence] == ["113100", "113107"]
    with pytest.raises(InvalidInputError, match="date shift"):
        deidentify([plan], TRIAL, key=KEY, uid_root=ROOT, date_shift_days=10**6)


def test_options_carry_over_everything_the_profile_does_not_touch() -> None:
    rs = dcmread(shared_file(ECLIPSE_RS))
    out = deidentify([rs], TRIAL, key=KEY, uid_root=ROOT, keep_descriptors=True,
                     date_shift_days=7).datasets[0]
    set_by_deid = {"PatientName", "PatientID", "SpecificCharacterSet", "StudyID",
                   "PatientIdentityRemoved", "DeidentificationMethod"}
    for elem in rs:
        tag = int(elem.tag)
        if elem.tag.is_private or elem.keyword in set_by_deid or elem.VR in ("UI", "SQ") \
                or (tag in BASIC_PROFILE and tag not in CLEAN_DESCRIPTORS | MODIFIED_DATES):
            continue
        if tag in MODIFIED_DATES and elem.VR in ("DA", "DT"):
            continue  # shifted, checked above
        assert out[elem.tag].value == elem.value, elem.keyword


def test_a_uid_of_the_set_in_a_class_slot_is_replaced() -> None:
    objects = make_rt_set()
    leaked = str(objects[0].SOPInstanceUID)
    item = Dataset()
    item.ReferencedSOPClassUID = leaked  # a writer's mistake that would leak the original UID
    item.ReferencedSOPInstanceUID = leaked
    objects[1].ReferencedInstanceSequence = [item]
    out = deidentify(objects, TRIAL, key=KEY, uid_root=ROOT)
    written = out.datasets[1].ReferencedInstanceSequence[0]
    assert written.ReferencedSOPClassUID == out.uid_map[leaked] != leaked
    # Real classes, registered or private, stay.
    assert out.datasets[0].SOPClassUID == objects[0].SOPClassUID


@pytest.mark.interop
@pytest.mark.skipif(not dciodvfy_available(), reason="dciodvfy (dicom3tools) not installed")
def test_options_output_passes_dciodvfy(tmp_path: Path) -> None:
    plan = deidentify([build_brachy()], TRIAL, key=KEY, uid_root=ROOT, keep_descriptors=True,
                      date_shift_days=-30).datasets[0]
    checked = validate_file(write_rtplan(plan, tmp_path))
    assert checked.dciodvfy_ran and checked.errors == [], checked.errors
