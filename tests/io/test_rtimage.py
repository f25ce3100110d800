"""RT Image of a DRR: marker geometry from the image's own attributes, content, round
trip, dciodvfy, PNG previews and bad input."""

from __future__ import annotations

import itertools
import zlib
from datetime import datetime

import numpy as np
import pydicom
import pytest
from pydicom import Dataset
from pydicom.uid import RTImageStorage, RTPlanStorage
from scipy.spatial.transform import Rotation

from rtforge.config import ExportConfig
from rtforge.core.beam import BeamGeometry
from rtforge.core.drr import Attenuation, compute_drr, quantize
from rtforge.core.geometry import Grid, Volume
from rtforge.errors import InvalidInputError
from rtforge.io.rtimage import (
    RTImageLabels,
    build_rt_image,
    patient_orientation,
    rt_image_geometry,
    write_png,
    write_rt_image,
)
from rtforge.io.rtplan import read_rtplan
from rtforge.io.validate import dciodvfy_available, validate_file
from tests.datafiles import pydicom_file, shared_file

CONFIG = ExportConfig(uid_root="1.2.826.0.1.3680043.8.498.55.", station_name="drr-test")
WHEN = datetime(2024, 6, 1, 9, 30, 0)
FRAME = "1.2.826.0.1.3680043.8.498.55.7"


def ct_header(frame: str = FRAME) -> Dataset:
    ds = Dataset()
    ds.PatientName = "Marker^Phantom"
    ds.PatientID = "DRR-1"
    ds.PatientBirthDate = "19800101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.55.1"
    ds.StudyDate = "20240601"
    ds.StudyTime = "090000"
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.FrameOfReferenceUID = frame
    ds.PositionReferenceIndicator = ""
    ds.WindowCenter = "40"  # a CT window must not leak into the DRR
    ds.WindowWidth = "400"
    return ds


# ------------------------------------------------------------------ markers
#: Marker centres (LPS mm); every pair differs by >= 20 mm along each axis, so no
#: axis-aligned beam projects two onto one another.
MARKERS = np.array([[40.0, -10.0, 25.0], [-30.0, 20.0, -45.0], [10.0, 45.0, 50.0],
                    [-50.0, -35.0, -10.0]])
SPACING = 2.5


@pytest.fixture(scope="module")
def marker_volume() -> Volume:
    """Air with one dense voxel (3000 HU) centred on each marker."""
    n = 49  # -60 .. 60 mm
    grid = Grid((n, n, n), origin=(-60.0, -60.0, -60.0), spacing=(SPACING,) * 3)
    arr = np.full((n, n, n), -1000, dtype=np.int16)
    for i, j, k in np.rint(grid.patient_to_index(MARKERS)).astype(int):
        arr[k, j, i] = 3000
    np.testing.assert_allclose(grid.index_to_patient(np.rint(grid.patient_to_index(MARKERS))),
                               MARKERS)
    return Volume(arr, grid)


#: Where the patient's left (L), head (H) and anterior (A) point in the IEC table
#: top system, for each Patient Position: the definitions of PS3.3 C.7.3.1.1.2.
PATIENT_AXES = {
    "HFS": {"L": (1, 0, 0), "H": (0, 1, 0), "A": (0, 0, 1)},
    "HFP": {"L": (-1, 0, 0), "H": (0, 1, 0), "A": (0, 0, -1)},
    "FFS": {"L": (-1, 0, 0), "H": (0, -1, 0), "A": (0, 0, 1)},
}


def project_with_attributes(ds: Dataset, point: np.ndarray) -> np.ndarray:
    """(row, column) of a patient point, from the RT Image's attributes only.

    An independent construction: scipy rotations for the IEC chain, the
    patient's axes from the words of the position's definition, and the
    receptor as a plane intersected by the ray.
    """
    axes = PATIENT_AXES[str(ds.PatientPosition)]
    # Columns: where patient +x (left), +y (posterior), +z (head) point in the table top.
    table_from_patient = np.column_stack([axes["L"], -np.array(axes["A"]), axes["H"]])
    couch = Rotation.from_euler("z", float(ds.PatientSupportAngle), degrees=True)
    gantry = Rotation.from_euler("y", float(ds.GantryAngle), degrees=True)
    iso = np.array([float(v) for v in ds.IsocenterPosition])
    p = couch.apply(table_from_patient @ (point - iso))  # IEC fixed, mm from the isocentre
    sad, sid = float(ds.RadiationMachineSAD), float(ds.RTImageSID)
    z_axis = gantry.apply([0.0, 0.0, 1.0])
    source = sad * z_axis
    receptor_origin = gantry.apply([float(v) for v in ds.XRayImageReceptorTranslation])
    assert np.isclose(np.linalg.norm(receptor_origin - source), sid)
    t = ((receptor_origin - source) @ z_axis) / ((p - source) @ z_axis)
    hit = source + t * (p - source) - receptor_origin
    x, y = hit @ gantry.apply([1.0, 0, 0]), hit @ gantry.apply([0, 1.0, 0])
    x0, y0 = (float(v) for v in ds.RTImagePosition)
    d_row, d_col = (float(v) for v in ds.ImagePlanePixelSpacing)
    return np.array([(y0 - y) / d_row, (x - x0) / d_col])


def centroid_near(image: np.ndarray, where: np.ndarray, radius: int = 6) -> tuple[np.ndarray,
                                                                                     float]:
    r0, c0 = np.rint(where).astype(int)
    rows = slice(max(r0 - radius, 0), r0 + radius + 1)
    cols = slice(max(c0 - radius, 0), c0 + radius + 1)
    patch = image[rows, cols].astype(np.float64)
    rr, cc = np.mgrid[rows, cols]
    mass = patch.sum()
    return np.array([(rr * patch).sum(), (cc * patch).sum()]) / max(mass, 1e-30), float(mass)


CASES = list(itertools.product((0, 90, 180, 270), (0, 90), (0, 90), ("HFS", "HFP", "FFS")))


@pytest.mark.parametrize(("gantry", "collimator", "couch", "position"), CASES)
def test_markers_land_where_the_rt_image_says(marker_volume: Volume, gantry: float,
                                              collimator: float, couch: float,
                                              position: str) -> None:
    geo = BeamGeometry(gantry, (5.0, -5.0, 10.0), collimator_angle=collimator, couch_angle=couch,
                       rows=200, columns=220, pixel_spacing=(1.0, 1.0), image_offset=(3.0, -4.0),
                       patient_position=position)
    integrals = compute_drr(marker_volume, geo, attenuation=Attenuation(mu_water=0.02))[0]
    ds = build_rt_image(quantize(integrals), geo, ct=ct_header(), config=CONFIG, timestamp=WHEN)
    predicted = np.array([project_with_attributes(ds, m) for m in MARKERS])
    # Each marker casts one blob of 4 * 2.5 * 0.02 mm... of integral per voxel area.
    masses = []
    for where in predicted:
        assert np.all(where > 6) and np.all(where < (200 - 7, 220 - 7))
        found, mass = centroid_near(integrals, where)
        masses.append(mass)
        assert np.max(np.abs(found - where)) <= 0.5, (where, found)
    # Every blob was found (none empty) and nothing else is in the image.
    assert min(masses) > 0.2 * max(masses)
    assert sum(masses) == pytest.approx(float(integrals.sum()), rel=1e-6)
    # The attributes written are the geometry used.
    assert rt_image_geometry(ds) == geo


def test_orientation_words_on_the_image(marker_volume: Volume) -> None:
    """HFS, gantry 0: the marker on the patient's left (+x) is right of the one on
    the right, the one nearer the head is higher (C.8.8.2: seen from the source)."""
    geo = BeamGeometry(0, (0, 0, 0), rows=200, columns=200, pixel_spacing=(1, 1))
    ds = build_rt_image(quantize(np.zeros((200, 200))), geo, ct=ct_header(), config=CONFIG)
    left, right = project_with_attributes(ds, MARKERS[0]), project_with_attributes(ds, MARKERS[1])
    assert left[1] > right[1] and left[0] < right[0]  # x 40 > -30 and z 25 > -45
    assert list(ds.PatientOrientation) == ["L", "F"]
    assert patient_orientation(BeamGeometry(90, (0, 0, 0))) == ["P", "F"]
    assert patient_orientation(BeamGeometry(0, (0, 0, 0), patient_position="FFS")) == ["R", "H"]


# ---------------------------------------------------------------- content
@pytest.fixture(scope="module")
def plan_image() -> Dataset:
    plan = read_rtplan(shared_file("dicompyler-example/rtplan.dcm"))
    geo = plan.beam_geometry(2, rows=40, columns=50, pixel_spacing=(4.0, 4.0))
    integrals = np.linspace(0, 3, 2000, dtype=np.float32).reshape(40, 50)
    return build_rt_image(quantize(integrals), geo, ct=ct_header(plan.frame_of_reference_uid),
                          plan=plan, beam_number=2, derivation="DRR, Siddon", series_number=5,
                          instance_number=2, config=CONFIG, timestamp=WHEN)


def test_rt_image_content_with_a_plan(plan_image: Dataset) -> None:
    ds = plan_image
    assert ds.SOPClassUID == RTImageStorage and ds.Modality == "RTIMAGE"
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY", "DRR"]
    assert ds.ConversionType == "WSD" and ds.RTImagePlane == "NORMAL"
    assert "ReportedValuesOrigin" not in ds  # Type 2C, SIMULATOR/PORTAL only
    assert (ds.RTImageLabel, ds.RTImageName, ds.RTImageDescription) == ("4 AP", "B1:4 AP", "B1")
    assert [float(v) for v in ds.XRayImageReceptorTranslation] == [0, 0, -500]
    assert float(ds.XRayImageReceptorAngle) == 0
    assert [float(v) for v in ds.ImagePlanePixelSpacing] == [4.0, 4.0]
    assert [float(v) for v in ds.RTImagePosition] == [-98.0, 78.0]
    assert (float(ds.RadiationMachineSAD), float(ds.RTImageSID)) == (1000, 1500)
    assert ds.RadiationMachineName == "txmachine" and ds.PrimaryDosimeterUnit == "MU"
    assert float(ds.RadiationMachineSSD) == 944.0  # beam 2, first control point
    ref = ds.ReferencedRTPlanSequence[0]
    assert ref.ReferencedSOPClassUID == RTPlanStorage
    assert ref.ReferencedSOPInstanceUID == "1.2.246.352.71.5.320687012.24189.20090603083342"
    assert (ds.ReferencedBeamNumber, ds.ReferencedFractionGroupNumber) == (2, 1)
    devices = ds.ExposureSequence[0].BeamLimitingDeviceSequence
    assert [d.RTBeamLimitingDeviceType for d in devices] == ["ASYMX", "ASYMY", "MLCX"]
    assert len(devices[2].LeafPositionBoundaries) == 61 and len(devices[2].LeafJawPositions) == 120
    assert [float(v) for v in devices[1].LeafJawPositions] == [-43.0, 40.0]
    assert ds.ExposureSequence[0].NumberOfBlocks == 0
    assert float(ds.GantryAngle) == 0 and ds.PatientPosition == "HFS"
    assert float(ds.TableTopLateralPosition) == 0 and "TableTopVerticalPosition" not in ds
    assert [float(v) for v in ds.IsocenterPosition] == pytest.approx(
        [72.5304715048, -304.3445582552, -9.3092401018882])
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 16, 15, 0)
    assert ds.PhotometricInterpretation == "MONOCHROME2"
    assert (ds.PixelIntensityRelationship, ds.PixelIntensityRelationshipSign) == ("LOG", -1)
    assert ds.RescaleType == "US" and float(ds.RescaleIntercept) == 0
    assert float(ds.RescaleSlope) == pytest.approx(3 / 65535, rel=1e-6)
    assert 0 < float(ds.WindowCenter) < 3 and float(ds.WindowWidth) > 2.9  # not the CT's
    assert ds.VOILUTFunction == "LINEAR_EXACT"
    assert ds.DerivationDescription == "DRR, Siddon"
    assert (ds.SeriesNumber, ds.InstanceNumber) == (5, 2)
    assert ds.FrameOfReferenceUID == "2.16.840.1.113662.2.12.0.3057.1241703565.36"
    assert ds.PatientID == "DRR-1" and ds.StudyInstanceUID.endswith(".55.1")
    assert "PrivateCreator" not in str(ds) and (0x3273, 0x0010) not in ds


def test_pixels_round_trip(tmp_path) -> None:  # noqa: ANN001
    geo = BeamGeometry(30, (1, 2, 3), rows=6, columns=7, pixel_spacing=(2, 3))
    image = quantize(np.arange(42, dtype=np.float32).reshape(6, 7) / 10)
    path = write_rt_image(build_rt_image(image, geo, ct=ct_header(), config=CONFIG), tmp_path)
    assert path.parent.name and path.name.endswith(".dcm")
    back = pydicom.dcmread(path)
    np.testing.assert_array_equal(back.pixel_array, image.pixels)
    np.testing.assert_allclose(back.pixel_array * float(back.RescaleSlope),
                               image.rescaled(), rtol=1e-12)
    assert rt_image_geometry(back) == geo
    assert (back.RTImageLabel, back.RTImageName) == ("G30 C0 T0", "gantry 30 collimator 0 couch 0")
    assert back.RTImageDescription == "isocenter 1.0, 2.0, 3.0 mm"
    assert "ReferencedRTPlanSequence" not in back and "ExposureSequence" not in back


def test_private_isocenter_block_and_labels() -> None:
    geo = BeamGeometry(0, (1.5, -2, 3), rows=4, columns=4, patient_position="FFP")
    plan = read_rtplan(pydicom_file("rtplan.dcm"))
    labels = RTImageLabels(label="{beam_number}", name="{beam_name}", description="{plan_name}")
    ds = build_rt_image(quantize(np.zeros((4, 4))), geo, ct=ct_header(), plan=plan,
                        beam_number=1, labels=labels, private_isocenter_block=True,
                        config=CONFIG)
    assert (ds.RTImageLabel, ds.RTImageName, ds.RTImageDescription) == ("1", "Field 1", "Plan1")
    block = ds.private_block(0x3273, CONFIG.private_creator)
    assert ds[0x32730010].value == CONFIG.private_creator
    assert [float(v) for v in block[0x00].value] == [1.5, -2, 3]
    assert ds[0x32731001].value == "FFP"
    long_name = RTImageLabels(label="{beam_name} and a very long suffix")
    assert len(build_rt_image(quantize(np.zeros((4, 4))), geo, ct=ct_header(), plan=plan,
                              beam_number=1, labels=long_name).RTImageLabel) == 16
    # A CT without a Frame of Reference: the RT Image has none either (a User module).
    assert "FrameOfReferenceUID" not in build_rt_image(quantize(np.zeros((4, 4))), geo,
                                                       ct=ct_header(""))


@pytest.mark.interop
@pytest.mark.skipif(not dciodvfy_available(), reason="dciodvfy (dicom3tools) not installed")
@pytest.mark.parametrize("kind", ["plan", "operator", "private"])
def test_dciodvfy_has_no_errors(tmp_path, plan_image: Dataset, kind: str) -> None:  # noqa: ANN001
    if kind == "plan":
        ds = plan_image
    else:
        geo = BeamGeometry(45, (0, 0, 0), couch_angle=10, rows=8, columns=9)
        ds = build_rt_image(quantize(np.ones((8, 9)), "LIN", invert=True), geo, ct=ct_header(),
                            private_isocenter_block=kind == "private", config=CONFIG)
    result = validate_file(write_rt_image(ds, tmp_path))
    assert result.dciodvfy_ran and result.iod == "RTImage"
    assert result.ok, result.errors
    # The only warnings: dciodvfy does not know private tags (our 0009 export
    # block, and 3273 when asked for).
    assert all("Unrecognized tag" in w for w in result.warnings), result.warnings


# ---------------------------------------------------------------- previews
def test_png_preview(tmp_path) -> None:  # noqa: ANN001
    geo = BeamGeometry(0, (0, 0, 0), rows=30, columns=40, pixel_spacing=(1, 1))
    image = quantize(np.tile(np.linspace(0, 2, 40), (30, 1)))
    square = geo.beam_limiting_device_to_pixel(
        np.array([[-5, -5], [5, -5], [5, 5], [-5, 5], [-5, -5]]))
    path = write_png(tmp_path / "drr.png", image, [square])
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (40, 30)
    start = data.index(b"IDAT") + 4
    length = int.from_bytes(data[start - 8:start - 4], "big")
    raw = np.frombuffer(zlib.decompress(data[start:start + length]), np.uint8)
    rgb = raw.reshape(30, 1 + 40 * 3)[:, 1:].reshape(30, 40, 3)
    assert tuple(rgb[round(square[0, 0]), 17]) == (255, 220, 0)  # on the outline
    assert rgb[15, 0, 0] < rgb[15, 39, 0]  # brighter where the integral is larger


# ---------------------------------------------------------------- bad input
def test_bad_input() -> None:
    geo = BeamGeometry(0, (0, 0, 0), rows=4, columns=4)
    plan = read_rtplan(shared_file("dicompyler-example/rtplan.dcm"))
    with pytest.raises(InvalidInputError, match="geometry 4x4"):
        build_rt_image(quantize(np.zeros((4, 5))), geo, ct=ct_header())
    with pytest.raises(InvalidInputError, match="without the beam number"):
        build_rt_image(quantize(np.zeros((4, 4))), geo, ct=ct_header(), plan=plan)
    with pytest.raises(InvalidInputError, match="not registered"):
        build_rt_image(quantize(np.zeros((4, 4))), geo, ct=ct_header(), plan=plan, beam_number=1)
    with pytest.raises(InvalidInputError, match="no beam 9"):
        build_rt_image(quantize(np.zeros((4, 4))), geo, ct=ct_header(plan.frame_of_reference_uid),
                       plan=plan, beam_number=9)
    with pytest.raises(InvalidInputError, match="template"):
        build_rt_image(quantize(np.zeros((4, 4))), geo, ct=ct_header(),
                       labels=RTImageLabels(label="{beam_colour}"))
    no_study = ct_header()
    del no_study.StudyInstanceUID
    with pytest.raises(InvalidInputError, match="Study Instance UID"):
        build_rt_image(quantize(np.zeros((4, 4))), geo, ct=no_study)
