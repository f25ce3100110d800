"""Re-linking after a patient-information change: references follow, RT Dose untouched."""

from __future__ import annotations

import pytest

from rtforge.config import ExportConfig
from rtforge.errors import InvalidInputError
from rtforge.io.references import ReferenceKind, check_references, iter_references
from rtforge.io.relink import PatientChange, relink
from tests.io.test_references import ROOT, make_rt_set

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
        assert ds.StudyInstanceUID == objects[0].StudyInstanceUID  # only the instance is new
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
    assert len(result.relinked) == 5  # 3 CT references, the structure set, the plan
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
