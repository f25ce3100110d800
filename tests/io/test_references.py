"""Reference integrity check over a small RT set; ``make_rt_set`` is shared with the deid
and relink tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom import Dataset
from pydicom.uid import (
    CTImageStorage,
    RTDoseStorage,
    RTImageStorage,
    RTPlanStorage,
    RTStructureSetStorage,
)

from rtforge.io.fileset import instance_path, write_dataset_file
from rtforge.io.references import ReferenceKind, check_references, iter_references, read_folder
from tests.io.test_rtplan_builder import BEAMS, CONFIG, GROUPS, SETUPS, WHEN, build_rtplan

ROOT = "1.2.826.0.1.3680043.8.498.77."
STUDY, FRAME = ROOT + "1", ROOT + "2"
CT_SERIES, SS_SERIES, DOSE_SERIES, IMAGE_SERIES = ROOT + "3", ROOT + "4", ROOT + "5", ROOT + "6"
DETACHED_STUDY = "1.2.840.10008.3.1.2.3.1"


def _common(ds: Dataset, modality: str, series: str, sop_class: str, uid: str) -> Dataset:
    ds.PatientName, ds.PatientID = "Doe^Jane", "MRN-123"
    ds.PatientBirthDate, ds.PatientSex = "19610203", "F"
    ds.OtherPatientIDs = "OLD-9"
    ds.InstitutionName, ds.ReferringPhysicianName = "General Hospital", "House^Greg"
    ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime = STUDY, "20240102", "101500"
    ds.AccessionNumber, ds.StudyID, ds.StudyDescription = "ACC77", "S1", "Pelvis RT"
    ds.SeriesInstanceUID, ds.Modality, ds.SeriesNumber = series, modality, 1
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, uid
    ds.FrameOfReferenceUID = FRAME
    ds.Manufacturer, ds.DeviceSerialNumber = "Acme", "SN-0042"
    return ds


def _ref(sop_class: str, uid: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = sop_class, uid
    return item


def make_rt_set() -> list[Dataset]:
    """Two CT slices, a structure set on them, a plan on it, a dose and an RT Image of the plan."""
    cts = []
    for n in range(2):
        ct = _common(Dataset(), "CT", CT_SERIES, CTImageStorage, f"{ROOT}10.{n}")
        ct.ImagePositionPatient = [0, 0, 2.5 * n]
        ct.Rows = ct.Columns = 2
        ct.BitsAllocated, ct.BitsStored, ct.HighBit, ct.PixelRepresentation = 16, 16, 15, 1
        ct.SamplesPerPixel, ct.PhotometricInterpretation = 1, "MONOCHROME2"
        ct.PixelData = np.arange(4, dtype="<i2").tobytes()
        cts.append(ct)
    ss = _common(Dataset(), "RTSTRUCT", SS_SERIES, RTStructureSetStorage, ROOT + "20")
    ss.StructureSetLabel, ss.StructureSetDate = "Pelvis", "20240102"
    series = Dataset()
    series.SeriesInstanceUID = CT_SERIES
    series.ContourImageSequence = [_ref(CTImageStorage, ct.SOPInstanceUID) for ct in cts]
    study = _ref(DETACHED_STUDY, STUDY)
    study.RTReferencedSeriesSequence = [series]
    frame = Dataset()
    frame.FrameOfReferenceUID = FRAME
    frame.RTReferencedStudySequence = [study]
    ss.ReferencedFrameOfReferenceSequence = [frame]
    roi = Dataset()
    roi.ROINumber, roi.ROIName, roi.ReferencedFrameOfReferenceUID = 1, "PTV", FRAME
    ss.StructureSetROISequence = [roi]
    contour = Dataset()
    contour.ContourImageSequence = [_ref(CTImageStorage, cts[0].SOPInstanceUID)]
    contour.ContourGeometricType, contour.ContourData = "POINT", [0, 0, 0]
    roi_contour = Dataset()
    roi_contour.ReferencedROINumber, roi_contour.ContourSequence = 1, [contour]
    ss.ROIContourSequence = [roi_contour]
    plan = build_rtplan(BEAMS, GROUPS, SETUPS, label="Pelvis", source=ss, config=CONFIG,
                        structure_set_uid=ss.SOPInstanceUID, timestamp=WHEN,
                        series_uid=ROOT + "7", sop_instance_uid=ROOT + "30")
    plan.PatientName = "Doe^Jane"
    dose = _common(Dataset(), "RTDOSE", DOSE_SERIES, RTDoseStorage, ROOT + "40")
    dose.ReferencedRTPlanSequence = [_ref(RTPlanStorage, plan.SOPInstanceUID)]
    dose.ReferencedStructureSetSequence = [_ref(RTStructureSetStorage, ss.SOPInstanceUID)]
    image = _common(Dataset(), "RTIMAGE", IMAGE_SERIES, RTImageStorage, ROOT + "50")
    image.ReferencedRTPlanSequence = [_ref(RTPlanStorage, plan.SOPInstanceUID)]
    image.ReferencedBeamNumber = 1
    return [*cts, ss, plan, dose, image]


def write_set(folder: Path, datasets: list[Dataset]) -> None:
    for ds in datasets:
        write_dataset_file(ds, instance_path(folder, ds), fsync=False)


def test_every_reference_of_a_complete_set_resolves() -> None:
    report = check_references(make_rt_set())
    assert report.ok and report.object_count == 6
    kinds = {ref.kind for ref in report.references}
    assert kinds == set(ReferenceKind)


def test_study_reference_is_recognised() -> None:
    ss = make_rt_set()[2]
    refs = {ref.path: ref for ref in iter_references(ss)}
    study = refs["ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0]."
                 "ReferencedSOPInstanceUID"]
    assert study.kind is ReferenceKind.STUDY and study.uid == STUDY and study.source == ROOT + "20"


def test_missing_objects_are_listed_as_dangling() -> None:
    objects = make_rt_set()
    report = check_references(objects[1:3] + objects[4:])  # no first CT slice, no plan
    dangling = {(ref.source, ref.uid) for ref in report.dangling}
    assert dangling == {(ROOT + "20", ROOT + "10.0"), (ROOT + "40", ROOT + "30"),
                        (ROOT + "50", ROOT + "30")}
    assert not report.ok


def test_read_folder_skips_other_files(tmp_path: Path) -> None:
    write_set(tmp_path, make_rt_set())
    (tmp_path / "notes.txt").write_text("not DICOM")
    found = read_folder(tmp_path)
    assert len(found) == 6 and check_references(ds for _, ds in found).ok
