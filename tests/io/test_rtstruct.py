"""RT Structure Set: reading real files, round trips, building against CT or a grid,
Contour Data encoding and its two pydicom traps, dciodvfy, bad input."""

from __future__ import annotations

import math
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import ExplicitVRLittleEndian, RTStructureSetStorage

from rtforge.config import ExportConfig
from rtforge.core.contours import (
    Contour,
    ContourGeometricType,
    ReductionStatus,
    RTROIInterpretedType,
    Structure,
    is_simple,
    structure_volume,
)
from rtforge.core.geometry import Grid
from rtforge.errors import ConformanceError, InvalidInputError
from rtforge.io.fileset import write_dataset_file
from rtforge.io.rtstruct import (
    CONTOUR_DATA_MAX_BYTES,
    ContourBudget,
    ImageSeriesReference,
    build_rtstruct,
    check_encodable,
    contour_data_encoding,
    encode_contour_data,
    parse_rtstruct,
    read_rtstruct,
    reduce_for_contour_data,
    write_rtstruct,
)
from rtforge.io.series import reference_image_series
from rtforge.io.validate import dciodvfy_available, validate_file
from rtforge.workflows.demo import TARGET_CENTRE, TARGET_RADIUS, PhantomSeries, phantom_structures
from tests.datafiles import pydicom_file, shared_file

CONFIG = ExportConfig(uid_root="1.2.826.0.1.3680043.8.498.55.", station_name="rtss-test")
FRAME = "1.2.826.0.1.3680043.8.498.55.1"


def circle(r: float, z: float, n: int = 64, centre=(0.0, 0.0)) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([centre[0] + r * np.cos(t), centre[1] + r * np.sin(t), np.full(n, z)], axis=1)


def raw_contour_data(path: Path) -> list[tuple[bytes, bytes]]:
    """(VR bytes, value bytes) of every Contour Data element in an Explicit VR LE file."""
    data = path.read_bytes()
    out = []
    start = 0
    tag = struct.pack("<HH", 0x3006, 0x0050)
    while (at := data.find(tag, start)) >= 0:
        vr = data[at + 4:at + 6]
        length = struct.unpack("<H", data[at + 6:at + 8])[0] if vr != b"UN" \
            else struct.unpack("<I", data[at + 8:at + 12])[0]
        head = 8 if vr != b"UN" else 12
        out.append((vr, data[at + head:at + head + length]))
        start = at + head + length
    return out


# ------------------------------------------------------------------ reading
def test_reads_the_dicompyler_structure_set() -> None:
    ss = read_rtstruct(shared_file("dicompyler-example/rtss.dcm"))
    assert len(ss.structures) == 10
    assert sum(len(s.contours) for s in ss.structures) == 441
    assert max(c.n_points for s in ss.structures for c in s.contours) == 794
    body = ss.structure(1)
    assert (body.name, body.interpreted_type, body.colour) == (
        "BODY", RTROIInterpretedType.EXTERNAL, (154, 155, 100))
    assert all(c.geometric_type is ContourGeometricType.CLOSED_PLANAR and len(c.image_uids) == 1
               for c in body.contours)
    assert len(ss.references[0].studies[0].series[0].images) == 98
    assert ss.label == "CT_1" and ss.approval_status == "APPROVED"
    raw = dcmread(shared_file("dicompyler-example/rtss.dcm")).ROIContourSequence[0] \
        .ContourSequence[0].get_item(0x30060050)
    assert ss.contour_data_bytes[0][0] == raw.length > 0


def test_reads_pydicoms_structure_set_without_preamble() -> None:
    ss = read_rtstruct(pydicom_file("rtstruct.dcm"))
    assert [s.name for s in ss.structures] == ["patient", "Isocenter 1", "Isocenter 2"]
    iso = ss.structure(2)
    assert iso.interpreted_type is RTROIInterpretedType.ISOCENTER
    assert iso.contours[0].geometric_type is ContourGeometricType.POINT
    assert ss.structure(1).physical_properties == (("REL_ELEC_DENSITY", 1.0),)
    assert ss.structure(1).volume_cm3 == 49200.0


# ------------------------------------------------------------------ round trips
@pytest.fixture(scope="module")
def dicompyler() -> tuple:
    ss = read_rtstruct(shared_file("dicompyler-example/rtss.dcm"))
    built = build_rtstruct(ss.structures, references=ss.references, source=ss.dataset,
                           config=CONFIG)
    return ss, built


@pytest.mark.parametrize("ts", ["explicit", "implicit", "big"])
def test_dicompyler_round_trip_is_identical(dicompyler, ts: str, tmp_path: Path) -> None:
    ss, built = dicompyler
    assert not built.reduced
    back = read_rtstruct(write_rtstruct(built.dataset, tmp_path, ts))
    for a, b in zip(ss.structures, back.structures, strict=True):
        assert (a.number, a.name, a.interpreted_type, a.colour, a.generation_algorithm) == (
            b.number, b.name, b.interpreted_type, b.colour, b.generation_algorithm)
        assert len(a.contours) == len(b.contours)
        for ca, cb in zip(a.contours, b.contours, strict=True):
            np.testing.assert_array_equal(ca.points, cb.points)
            assert ca.image_uids == cb.image_uids and ca.geometric_type == cb.geometric_type
    assert back.references == ss.references
    assert back.study_uid == ss.study_uid and back.sop_instance_uid != ss.sop_instance_uid
    assert back.approval_status == "UNAPPROVED"


def test_point_contours_round_trip(tmp_path: Path) -> None:
    ss = read_rtstruct(pydicom_file("rtstruct.dcm"))
    built = build_rtstruct(ss.structures, references=ss.references, source=ss.dataset,
                           config=CONFIG)
    back = read_rtstruct(write_rtstruct(built.dataset, tmp_path))
    for a, b in zip(ss.structures, back.structures, strict=True):
        for ca, cb in zip(a.contours, b.contours, strict=True):
            np.testing.assert_array_equal(ca.points, cb.points)
            assert ca.geometric_type == cb.geometric_type
    assert back.structure(1).physical_properties == (("REL_ELEC_DENSITY", 1.0),)


@pytest.mark.parametrize("ts", ["explicit", "implicit", "big"])
def test_writer_bytes_equal_pydicoms(dicompyler, ts: str, tmp_path: Path) -> None:
    _, built = dicompyler
    ours = write_rtstruct(built.dataset, tmp_path / "ours", ts, flat=True).read_bytes()
    copy = parse_rtstruct(built.dataset)  # decoding leaves the raw data set as it is
    assert copy.structures
    theirs = write_dataset_file(dcmread(tmp_path / "ours" / f"{built.dataset.SOPInstanceUID}.dcm"),
                                tmp_path / "theirs.dcm", ts).read_bytes()
    assert ours == theirs


# ------------------------------------------------------------------ against CT / grid
@pytest.fixture(scope="module")
def phantom_build(phantom_patient: list[PhantomSeries]) -> tuple[ImageSeriesReference, object]:
    images = reference_image_series(phantom_patient[0].folder)
    grid = images.stack.to_grid()
    return images, build_rtstruct(phantom_structures(grid), images=images, grid=grid,
                                  label="PHANTOM", config=CONFIG)


def test_built_against_a_ct_series(phantom_build, tmp_path: Path) -> None:
    images, built = phantom_build
    ds = built.dataset
    assert ds.Modality == "RTSTRUCT" and ds.SOPClassUID == RTStructureSetStorage
    assert ds.StudyInstanceUID == images.study_uid and ds.PatientID == images.header.PatientID
    assert ds.FrameOfReferenceUID == images.frame_of_reference_uid
    ref = ds.ReferencedFrameOfReferenceSequence[0]
    series = ref.RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == images.series_uid
    assert [i.ReferencedSOPInstanceUID for i in series.ContourImageSequence] == \
        [i.sop_instance_uid for i in images.images]
    offsets = images.stack.offsets
    index = {i.sop_instance_uid: k for k, i in enumerate(images.images)}
    checked = 0
    for roi in ds.ROIContourSequence:
        for item in roi.ContourSequence:
            points = np.array(item.ContourData, dtype=float).reshape(-1, 3)
            k = index[item.ContourImageSequence[0].ReferencedSOPInstanceUID]
            assert np.max(np.abs(points @ images.stack.normal - offsets[k])) < 0.01
            checked += 1
    assert checked == sum(len(r.ContourSequence) for r in ds.ROIContourSequence) > 10
    names = [r.ROIName for r in ds.StructureSetROISequence]
    assert names == ["Body", "Lung_L", "Lung_R", "Spine", "PTV"]
    types = [o.RTROIInterpretedType for o in ds.RTROIObservationsSequence]
    assert types == ["EXTERNAL", "ORGAN", "ORGAN", "ORGAN", "PTV"]


def test_point_contours_reference_the_nearest_slice(phantom_build) -> None:
    images, _ = phantom_build
    stack = images.stack
    k = 5
    near = stack.positions[k] + 0.4 * stack.normal_spacing * stack.normal  # 0.4 slice off
    far = stack.positions[0] - 3 * stack.normal_spacing * stack.normal  # outside the series
    built = build_rtstruct([Structure(1, "Marker", (Contour([near], "POINT"),
                                                    Contour([far], "POINT")),
                                      interpreted_type="MARKER")],
                           images=images, config=CONFIG)
    items = built.dataset.ROIContourSequence[0].ContourSequence
    assert [i.ContourGeometricType for i in items] == ["POINT", "POINT"]
    assert items[0].ContourImageSequence[0].ReferencedSOPInstanceUID == \
        images.images[k].sop_instance_uid
    assert "ContourImageSequence" not in items[1]
    assert "ROIVolume" not in built.dataset.StructureSetROISequence[0]


def test_roi_volume_from_the_contours(phantom_build) -> None:
    images, built = phantom_build
    ds = built.dataset
    for item, roi in zip(ds.StructureSetROISequence, ds.ROIContourSequence, strict=True):
        contours = [np.array(c.ContourData, dtype=float).reshape(-1, 3)
                    for c in roi.ContourSequence]
        expected = structure_volume(contours, images.stack.normal_spacing)
        assert float(item.ROIVolume) == pytest.approx(expected, rel=1e-6)
    # Truth: the voxel centres of the grid inside the sphere, times the voxel volume, the
    # first and last slices it crosses counted half (half end caps: the solid ends at the
    # end planes, as planning systems and `rtforge dvh` count it).
    grid = images.stack.to_grid()
    k, j, i = np.indices(grid.shape)
    xyz = grid.index_to_patient(np.stack([i, j, k], axis=-1))
    inside = np.sum((xyz - np.asarray(TARGET_CENTRE)) ** 2, axis=-1) <= TARGET_RADIUS**2
    per_slice = inside.sum(axis=(1, 2)).astype(float)
    crossed = np.flatnonzero(per_slice)
    per_slice[[crossed[0], crossed[-1]]] /= 2
    voxel = abs(np.linalg.det(grid.affine[:3, :3])) / 1000
    ptv = float(ds.StructureSetROISequence[4].ROIVolume)
    assert ptv == pytest.approx(per_slice.sum() * voxel, rel=0.1)  # contours cut voxel corners


def test_built_against_a_grid_alone(tmp_path: Path) -> None:
    grid = Grid((3, 40, 40), (-20.0, -20.0, 0.0), (1.0, 1.0, 3.0))
    structure = Structure(1, "Cyl", tuple(Contour(circle(10, 3.0 * k)) for k in range(3)),
                          interpreted_type="ORGAN", colour=(1, 2, 3))
    source = Dataset()
    source.PatientName, source.PatientID, source.StudyInstanceUID = "A^B", "P1", FRAME + ".9"
    built = build_rtstruct([structure], frame_of_reference_uid=FRAME, grid=grid, source=source,
                           config=CONFIG)
    ds = built.dataset
    assert ds.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID == FRAME
    assert "RTReferencedStudySequence" not in ds.ReferencedFrameOfReferenceSequence[0]
    assert "ContourImageSequence" not in ds.ROIContourSequence[0].ContourSequence[0]
    area = 0.5 * 64 * 100 * math.sin(2 * math.pi / 64)
    # Three planes 3 mm apart, half end slabs: 6 mm tall (the written points are rounded
    # to 0.001 mm).
    assert float(ds.StructureSetROISequence[0].ROIVolume) == pytest.approx(2 * 3.0 * area / 1000,
                                                                          rel=1e-4)
    back = read_rtstruct(write_rtstruct(ds, tmp_path))
    assert back.frame_of_reference_uid == FRAME and back.structure(1).colour == (1, 2, 3)


@pytest.mark.interop
@pytest.mark.skipif(not dciodvfy_available(), reason="dciodvfy (dicom3tools) not installed")
@pytest.mark.parametrize("ts", ["explicit", "implicit"])
def test_dciodvfy_reports_no_error(dicompyler, phantom_build, ts: str, tmp_path: Path) -> None:
    grid_only = build_rtstruct([Structure(1, "Cyl", (Contour(circle(10, 0.0)),),
                                          interpreted_type="ORGAN")],
                               frame_of_reference_uid=FRAME, config=CONFIG).dataset
    for name, ds in (("dicompyler", dicompyler[1].dataset), ("ct", phantom_build[1].dataset),
                     ("grid", grid_only)):
        result = validate_file(write_rtstruct(ds, tmp_path / name, ts))
        assert result.dciodvfy_ran and result.iod == "RTStructureSet"
        assert result.errors == [], name


# ------------------------------------------------------------------ Contour Data
def test_twenty_thousand_point_contour_is_reduced_to_fit(tmp_path: Path) -> None:
    t = np.linspace(0, 2 * np.pi, 20000, endpoint=False)
    r = 120.123456 + 7 * np.sin(6 * t)
    big = np.stack([r * np.cos(t), r * np.sin(t), np.full_like(t, -33.3333333)], axis=1)
    built = build_rtstruct([Structure(1, "Big", (Contour(big),))], frame_of_reference_uid=FRAME,
                           config=CONFIG)
    row = built.contours[0]
    assert row.points_before == 20000 and row.points_after < 20000
    assert row.status is ReductionStatus.REDUCED and row.hausdorff_mm < 0.01
    path = write_rtstruct(built.dataset, tmp_path)
    (vr, value), = raw_contour_data(path)
    assert vr == b"DS" and len(value) <= CONTOUR_DATA_MAX_BYTES
    texts = value.decode().strip().split("\\")
    assert max(len(x) for x in texts) <= 16 and len(texts) == 3 * row.points_after
    values = np.array(texts, dtype=float).reshape(-1, 3)
    assert np.all(np.abs(values[:, 2] + 33.333) < 1e-12)
    assert is_simple(values)
    assert validate_file(path, dciodvfy=False).errors == []


def test_the_two_pydicom_traps_and_our_guard(tmp_path: Path) -> None:
    t = np.linspace(0, 2 * np.pi, 20000, endpoint=False)
    points = np.stack([100 * np.cos(t), 100 * np.sin(t), np.full_like(t, 1 / 3)], axis=1)
    # 1. pydicom on its own: an over-long DS written silently, a > 64 KiB element as UN.
    ds = Dataset()
    ds.ContourData = points.ravel().tolist()
    ds.SOPClassUID, ds.SOPInstanceUID = RTStructureSetStorage, FRAME + ".7"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dcmwrite(tmp_path / "pydicom.dcm", ds, enforce_file_format=True)
    assert any("UN" in str(w.message) for w in caught)
    (vr, value), = raw_contour_data(tmp_path / "pydicom.dcm")
    assert vr == b"UN" and max(len(x) for x in value.split(b"\\")) > 16
    # 2. our guard refuses both, and our writer writes nothing.
    with pytest.raises(ConformanceError, match="at most 16") as err:
        check_encodable(ds, "explicit")
    assert "VR UN" in str(err.value)
    with pytest.raises(ConformanceError, match="at most 16") as err:
        check_encodable(ds, "implicit")
    assert "VR UN" not in str(err.value)  # implicit VR has a 4-byte length
    out = tmp_path / "out"
    with pytest.raises(ConformanceError):
        write_rtstruct(ds, out, flat=True)
    assert not out.exists()
    # 3. our builder: the same points come out as short DS within one element.
    built = build_rtstruct([Structure(1, "C", (Contour(points),))], frame_of_reference_uid=FRAME,
                           config=CONFIG)
    (vr, value), = raw_contour_data(write_rtstruct(built.dataset, tmp_path / "ours"))
    assert vr == b"DS" and len(value) <= CONTOUR_DATA_MAX_BYTES
    assert max(len(x) for x in value.split(b"\\")) <= 16


finite = st.floats(-1e6, 1e6, allow_nan=False)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(finite, finite, finite), min_size=1, max_size=40))
def test_encoded_length_is_what_is_written(points: list) -> None:
    arr = np.array(points, dtype=float)
    quantized, point_bytes = contour_data_encoding(arr)
    texts = encode_contour_data(quantized)
    assert len("\\".join(texts)) == int(point_bytes.sum()) - 1
    assert all(len(x) <= 16 for x in texts)
    np.testing.assert_array_equal(np.array(texts, dtype=float).reshape(-1, 3), quantized)
    assert np.all(np.abs(quantized - arr) <= 0.001)


def test_budget_and_tolerance_reduction() -> None:
    contours = [circle(30, 2.5 * k, n=400) + np.array([0.003, 0, 0]) for k in range(4)]
    written, report = reduce_for_contour_data(contours, max_points=40, method="rdp")
    assert [len(w) for w in written] == [40] * 4
    assert np.all(report.hausdorff_mm < 0.5)
    written, report = reduce_for_contour_data(contours, tolerance_mm=0.05)
    assert np.all(report.hausdorff_mm <= 0.05 + 1e-9) and all(len(w) < 400 for w in written)
    built = build_rtstruct([Structure(1, "Cyl", tuple(Contour(c) for c in contours))],
                           frame_of_reference_uid=FRAME, budget=ContourBudget(max_points=50),
                           config=CONFIG)
    assert [r.points_after for r in built.reduced] == [50] * 4
    assert [int(i.NumberOfContourPoints) for i in
            built.dataset.ROIContourSequence[0].ContourSequence] == [50] * 4


def test_rounding_that_would_make_a_contour_touch_itself(caplog: pytest.LogCaptureFixture) -> None:
    # A slit 0.0006 mm wide: simple as given, closed up once written to 0.001 mm.
    corners = np.array([[0, -5], [10, -5], [10, -0.0003], [5, -0.0003], [5, 0.0003],
                        [10, 0.0003], [10, 5], [0, 5]])
    dense = [a + f * (b - a) for a, b in zip(corners, np.roll(corners, -1, axis=0), strict=True)
             for f in np.linspace(0, 1, 30, endpoint=False)]
    pts = np.column_stack([np.array(dense), np.zeros(len(dense))])
    assert is_simple(pts)
    with caplog.at_level("INFO", logger="rtforge.io.rtstruct"):
        written, report = reduce_for_contour_data([pts], max_points=20)
    assert "reduced again from the rounded coordinates" in caplog.text
    assert len(written[0]) <= 20 and is_simple(written[0])
    assert report[0].hausdorff_mm == pytest.approx(5.0)  # the slit is gone, and reported


@settings(max_examples=8, deadline=None)
@given(st.integers(1300, 4000), st.floats(1.0, 2000.0), st.integers(0, 2**32 - 1))
def test_byte_budget_always_holds(n: int, radius: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    r = radius * (1 + 0.2 * rng.uniform(-1, 1, n))
    pts = np.stack([r * np.cos(angles) - 1234.5678, r * np.sin(angles), np.full(n, -0.123456)],
                   axis=1)
    written, report = reduce_for_contour_data([pts])
    texts = encode_contour_data(written[0])
    assert len("\\".join(texts)) <= CONTOUR_DATA_MAX_BYTES and max(map(len, texts)) <= 16
    if report[0].status in (ReductionStatus.REDUCED, ReductionStatus.REPAIRED):
        assert is_simple(written[0])


# ------------------------------------------------------------------ bad input
def _broken(tmp_path: Path, change) -> Path:
    ds = dcmread(pydicom_file("rtstruct.dcm"), force=True)
    change(ds)
    path = tmp_path / "broken.dcm"
    ds.save_as(path, enforce_file_format=False)
    return path


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")  # the NaN written on purpose
@pytest.mark.parametrize("change, message", [
    (lambda ds: setattr(ds.ROIContourSequence[0], "ReferencedROINumber", 9),
     "ROI Number 9, which the Structure Set ROI Sequence does not define"),
    (lambda ds: setattr(ds.RTROIObservationsSequence[1], "ReferencedROINumber", 7),
     "ROI Number 7"),
    (lambda ds: setattr(ds.ROIContourSequence[0].ContourSequence[0], "ContourData",
                        [0, 0, 0, 1, 1, 1]), "at least 3 point"),
    (lambda ds: setattr(ds.ROIContourSequence[0].ContourSequence[0], "ContourData",
                        ["0", "0", "0", "1", "nan", "1", "2", "2", "0"]), "not finite"),
    (lambda ds: setattr(ds.ROIContourSequence[0].ContourSequence[0], "ContourData",
                        [0, 0, 0, 1]), "multiple of 3"),
    (lambda ds: setattr(ds.StructureSetROISequence[1], "ROINumber", 1), "appears twice"),
    (lambda ds: setattr(ds.ROIContourSequence[0].ContourSequence[0], "ContourGeometricType",
                        "CURVE"), "Contour Geometric Type .CURVE. is not one of"),
])
def test_bad_structure_sets_are_refused(tmp_path: Path, change, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message) as err:
        read_rtstruct(_broken(tmp_path, change))
    assert err.value.path is not None


def test_not_a_structure_set(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="not an RT Structure Set"):
        read_rtstruct(pydicom_file("CT_small.dcm"))
    text = tmp_path / "notes.txt"
    text.write_text("hello, not DICOM at all")
    with pytest.raises(InvalidInputError, match="not a DICOM file"):
        read_rtstruct(text)
    with pytest.raises(InvalidInputError, match="no such file"):
        read_rtstruct(tmp_path / "missing.dcm")


def test_builder_refuses_what_it_cannot_write() -> None:
    s = Structure(1, "A", (Contour(circle(5, 0)),))
    with pytest.raises(InvalidInputError, match="at least one structure"):
        build_rtstruct([], frame_of_reference_uid=FRAME)
    with pytest.raises(InvalidInputError, match="more than one"):
        build_rtstruct([s, s], frame_of_reference_uid=FRAME)
    with pytest.raises(InvalidInputError, match="Frame of Reference"):
        build_rtstruct([s])
    with pytest.raises(InvalidInputError, match="reviewer"):
        build_rtstruct([s], frame_of_reference_uid=FRAME, approval_status="APPROVED")
    with pytest.raises(InvalidInputError, match="code string"):
        build_rtstruct([Structure(1, "A", interpreted_type="not a term")],
                       frame_of_reference_uid=FRAME)
    with pytest.raises(InvalidInputError, match="at least 3"):
        ContourBudget(max_points=2)
    with pytest.raises(InvalidInputError, match="'vw' or 'rdp'"):
        ContourBudget(method="best")
    open_line = np.stack([np.arange(8000.0), np.zeros(8000), np.zeros(8000)], axis=1) * 1.234567
    with pytest.raises(ConformanceError, match="only closed planar contours are reduced"):
        build_rtstruct([Structure(1, "L", (Contour(open_line, "OPEN_PLANAR"),))],
                       frame_of_reference_uid=FRAME)
    approved = build_rtstruct([s], frame_of_reference_uid=FRAME, approval_status="APPROVED",
                              reviewer_name="Doe^J", config=CONFIG).dataset
    assert approved.ApprovalStatus == "APPROVED" and approved.ReviewerName == "Doe^J"
