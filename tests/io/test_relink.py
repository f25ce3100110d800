"""Re-linking after a patient-information change: new identities, references follow, RT Dose
untouched, the same result on every run; Oncentra's literal mode keeps the studies."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
from pydicom import Dataset
from pydicom.uid import MRImageStorage

from rtforge.config import ExportConfig
from rtforge.errors import InvalidInputError
from rtforge.io.references import ReferenceKind, check_references, iter_references
from rtforge.io.registration import FrameRegistration, ImageReference, build_registration
from rtforge.io.relink import PatientChange, relink
from rtforge.io.rtplan import write_rtplan
from rtforge.io.validate import dciodvfy_available, validate_file
from tests.io.test_references import CT_SERIES, FRAME, ROOT, STUDY, make_rt_set

CONFIG = ExportConfig(uid_root="1.2.826.0.1.3680043.8.498.99.", station_name="relink")
CHANGE = PatientChange("NEW-1", patient_name="Roe^Ann", sex="O", birth_date="19610204")


def test_references_follow_and_dose_is_untouched() -> None:
    objects = make_rt_set()
    result = relink(objects, CHANGE, config=CONFIG)
    cts, ss, plan, dose, image = (result.datasets[:2], *result.datasets[2:])
    assert set(result.uid_map) == {str(ds.SOPInstanceUID) for ds in objects if ds is not objects[4]}
    for ds in (*cts, ss, plan, image):
        assert ds.PatientID == "NEW-1" and ds.PatientName == "Roe^Ann"
        assert ds.PatientSex == "O" and ds.PatientBirthDate == "19610204"
        assert ds.SOPInstanceUID.startswith(CONFIG.uid_root)
        assert ds.StudyInstanceUID == result.study_map[STUDY] != STUDY  # a new study
        assert ds.FrameOfReferenceUID == FRAME  # the same physical frame
    new_ct = {str(ct.SOPInstanceUID) for ct in cts}
    ss_refs = {r.uid for r in iter_references(ss) if r.kind is ReferenceKind.INSTANCE}
    assert ss_refs == new_ct
    assert plan.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID == ss.SOPInstanceUID
    assert image.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID == plan.SOPInstanceUID
    assert dose is objects[4] and dose.PatientID == "MRN-123"  # RT Dose: not re-linked
    (untouched,) = result.untouched_doses
    assert untouched.sop_instance_uid == ROOT + "40"
    assert {r.uid for r in untouched.dangling} == {ROOT + "20", ROOT + "30"}
    dangling = check_references(result.datasets).dangling
    assert {r.source for r in dangling} == {ROOT + "40"}
    # 3 CT references, the structure set, the plan; the CT series and the study of the
    # structure set's RT Referenced Study/Series Sequences
    assert len(result.relinked) == 7
    assert objects[0].PatientID == "MRN-123"  # inputs unchanged


def test_unchanged_objects_keep_their_uids() -> None:
    objects = make_rt_set()
    same = PatientChange("MRN-123")
    result = relink(objects, same, config=CONFIG)
    assert result.uid_map == {} and all(a is b for a, b in zip(result.datasets, objects,
                                                               strict=True))


def test_bad_input() -> None:
    for kwargs in ({"sex": "X"}, {"birth_date": "1961-02-04"}, {"birth_date": "19610230"},
                   {"patient_name": "a\\b"}):
        with pytest.raises(InvalidInputError):
            PatientChange("ID", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="patient_id"):
        PatientChange(" ")
    objects = make_rt_set()
    with pytest.raises(InvalidInputError, match="share"):
        relink([objects[0], objects[0]], CHANGE)


def relinkable_set() -> list[Dataset]:
    """:func:`make_rt_set`, an MR image of another study and frame, and a Spatial Registration
    of the MR frame onto the CT images."""
    objects = make_rt_set()
    cts = [ds for ds in objects if ds.Modality == "CT"]
    mr = copy.deepcopy(cts[0])
    mr.Modality, mr.SOPClassUID, mr.SOPInstanceUID = "MR", MRImageStorage, ROOT + "60"
    mr.StudyInstanceUID, mr.SeriesInstanceUID, mr.FrameOfReferenceUID = (
        ROOT + "11", ROOT + "12", ROOT + "13")
    images = tuple(ImageReference(str(ct.SOPClassUID), str(ct.SOPInstanceUID), CT_SERIES, STUDY)
                   for ct in cts)
    mr_image = ImageReference(MRImageStorage, ROOT + "60", ROOT + "12", ROOT + "11")
    reg = build_registration([FrameRegistration(ROOT + "13", np.eye(4), (mr_image,))],
                             source=cts[0], reference_images=images, series_uid=ROOT + "8",
                             config=CONFIG)
    return [*objects, mr, reg]


def test_new_identities_and_every_reference_resolves() -> None:
    objects = relinkable_set()
    result = relink(objects, CHANGE, config=CONFIG)
    moved = [ds for ds in result.datasets if ds.Modality != "RTDOSE"]
    assert len(moved) == 7 and all(ds.PatientID == "NEW-1" for ds in moved)
    old_series = {str(ds.SeriesInstanceUID) for ds in objects if ds.Modality != "RTDOSE"}
    assert set(result.series_map) == old_series and set(result.study_map) == {STUDY, ROOT + "11"}
    for old, ds in zip(objects, result.datasets, strict=True):
        if ds.Modality != "RTDOSE":
            for uid in (ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID):
                assert uid.startswith(CONFIG.uid_root) and len(uid) <= 64
            assert ds.FrameOfReferenceUID == old.FrameOfReferenceUID  # the same frames
    assert len({str(ds.StudyInstanceUID) for ds in moved}) == 2  # each old study, a new one
    assert len({str(ds.SeriesInstanceUID) for ds in moved}) == len(old_series)
    report = check_references(moved)  # the integrity check of rtforge validate
    assert report.ok, report.dangling
    reg = moved[-1]
    old = {str(ds.SOPInstanceUID) for ds in objects} | old_series | set(result.study_map)
    assert not {r.uid for r in iter_references(reg)} & old  # the REG follows its images
    assert {r.kind for r in report.references} == set(ReferenceKind)


def test_relinking_twice_gives_identical_uids() -> None:
    objects = relinkable_set()
    first, second = (relink(objects, CHANGE, config=CONFIG) for _ in range(2))
    uids = lambda r: [(str(ds.SOPInstanceUID), str(ds.SeriesInstanceUID),  # noqa: E731
                       str(ds.StudyInstanceUID)) for ds in r.datasets]
    assert uids(first) == uids(second)
    other = relink(objects, PatientChange("NEW-2"), config=CONFIG)
    assert not set(other.uid_map.values()) & set(first.uid_map.values())
    assert other.study_map[STUDY] != first.study_map[STUDY]  # another patient, another study


def test_keep_study_uids_is_oncentras_literal_behaviour() -> None:
    objects = make_rt_set()
    result = relink(objects, CHANGE, config=CONFIG, keep_study_uids=True)
    for old, new in zip(objects, result.datasets, strict=True):
        assert new.StudyInstanceUID == old.StudyInstanceUID
        assert new.SeriesInstanceUID == old.SeriesInstanceUID
    assert result.series_map == {} and result.study_map == {}
    assert result.shared_studies == (STUDY,)  # the caller warns: two patients, one study
    assert check_references([ds for ds in result.datasets if ds.Modality != "RTDOSE"]).ok
    default = relink(objects, CHANGE, config=CONFIG)
    assert default.shared_studies == ()
    assert not set(default.uid_map.values()) & set(result.uid_map.values())


@pytest.mark.interop
@pytest.mark.skipif(not dciodvfy_available(), reason="dciodvfy (dicom3tools) not installed")
def test_relinked_plan_passes_dciodvfy(tmp_path: Path) -> None:
    plan = relink(make_rt_set(), CHANGE, config=CONFIG).datasets[3]
    assert plan.Modality == "RTPLAN"
    checked = validate_file(write_rtplan(plan, tmp_path))
    assert checked.dciodvfy_ran and checked.errors == [], checked.errors


def _carried_over(before: Dataset, after: Dataset, uid_map: dict[str, str],
                  changed: set[str], where: str = "") -> None:
    """Every element of ``before`` is in ``after``, equal but for a changed patient attribute
    or a UID the relink maps (nothing dropped, nothing else altered)."""
    for elem in before:
        name = f"{where}{elem.keyword or elem.tag}"
        assert elem.tag in after, f"{name} dropped"
        other = after[elem.tag]
        if elem.keyword in changed:
            continue
        if elem.VR == "SQ":
            assert len(other.value) == len(elem.value), name
            for n, (a, b) in enumerate(zip(elem.value, other.value, strict=True)):
                _carried_over(a, b, uid_map, changed, f"{name}[{n}] > ")
        elif elem.VR == "UI":
            values = list(elem.value) if elem.VM > 1 else [elem.value]
            mapped = [uid_map.get(str(v), str(v)) for v in values]
            assert [str(v) for v in (other.value if other.VM > 1 else [other.value])] == mapped, \
                name
        else:
            assert other.value == elem.value, name


def test_relink_carries_over_everything_it_does_not_change() -> None:
    objects = relinkable_set()
    for ds in objects:  # attributes relink has no business with
        ds.InstitutionName, ds.StudyDescription, ds.OperatorsName = "Clinic", "Thorax", "Op^One"
    result = relink(objects, CHANGE, config=CONFIG)
    uid_map = {**result.uid_map, **result.series_map, **result.study_map}
    changed = {"PatientID", "PatientName", "PatientSex", "PatientBirthDate",
               "SpecificCharacterSet"}
    for before, after in zip(objects, result.datasets, strict=True):
        if before.Modality == "RTDOSE":  # never re-linked: copied unchanged, and reported
            assert after == before
            continue
        _carried_over(before, after, uid_map, changed)
        assert set(after.keys()) - set(before.keys()) <= {
            0x00100010, 0x00100020, 0x00100030, 0x00100040, 0x00080005}  # only the patient's
