"""RT Dose parser and builders: pydicom's files, round trips, DVH Data limits, dciodvfy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom import Dataset, dcmread
from pydicom.uid import ExplicitVRBigEndian

from rtforge.core.dvh import DVH
from rtforge.core.geometry import Grid, Volume
from rtforge.errors import ConformanceError, GeometryError
from rtforge.io.rtdose import (
    DVH_DATA_MAX_BYTES,
    DoseSummationType,
    PlanReference,
    PointDose,
    build_dose_grid,
    build_dvh_dose,
    build_point_dose,
    encode_dvh_data,
    read_rtdose,
    write_rtdose,
)
from rtforge.io.uids import new_uid
from rtforge.io.validate import dciodvfy_available, validate_file
from tests.datafiles import pydicom_file

pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR UI")

PLAN = PlanReference(str(new_uid()), 1, (1, 2))


def _reference() -> Dataset:
    ds = Dataset()
    ds.PatientName = "Dose^Test"
    ds.PatientID = "DOSE01"
    ds.StudyInstanceUID = str(new_uid())
    ds.FrameOfReferenceUID = str(new_uid())
    return ds


def _dose() -> Volume:
    grid = Grid((4, 5, 6), origin=(-10.0, -20.0, 30.0), spacing=(2.0, 2.5, 3.0))
    k, j, i = np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij")
    return Volume(0.5 + 1.7 * i + 0.3 * j + 2.1 * k + 0.01 * i * j, grid)


def test_pydicom_files_read_to_the_same_values() -> None:
    base = read_rtdose(pydicom_file("rtdose.dcm"))
    assert base.volume is not None and base.volume.array.shape == (15, 10, 10)
    assert base.summation_type == "BEAM" and base.bits == 32
    assert base.plans[0].fraction_group_number == 1 and base.plans[0].beam_numbers == (1,)
    np.testing.assert_allclose(base.volume.grid.spacing, (10.0, 10.0, 5.0))
    ds = dcmread(pydicom_file("rtdose.dcm"))
    expected = ds.pixel_array * float(ds.DoseGridScaling)
    np.testing.assert_array_equal(base.volume.array, expected)
    for name in ("rtdose_expb.dcm", "rtdose_rle.dcm"):
        other = read_rtdose(pydicom_file(name))
        np.testing.assert_array_equal(other.volume.array, base.volume.array)
        assert other.volume.grid == base.volume.grid
    one = read_rtdose(pydicom_file("rtdose_1frame.dcm"))
    np.testing.assert_array_equal(one.volume.array[0], base.volume.array[0])


def test_grid_frame_offset_vector_variants() -> None:
    ds = dcmread(pydicom_file("rtdose.dcm"))
    z0 = float(ds.ImagePositionPatient[2])
    ds.GridFrameOffsetVector = [z0 + 5.0 * k for k in range(15)]  # variant b, absolute
    absolute = read_rtdose(ds)
    assert absolute.volume.grid == read_rtdose(pydicom_file("rtdose.dcm")).volume.grid
    ds.GridFrameOffsetVector = [-5.0 * k for k in range(15)]  # decreasing along the normal
    down = read_rtdose(ds)
    np.testing.assert_allclose(down.volume.grid.direction[:, 2], (0, 0, -1))
    assert down.volume.grid.index_to_patient([0, 0, 14])[2] == pytest.approx(z0 - 70.0)
    ds.GridFrameOffsetVector = [0.0, 5.0, 11.0] + [5.0 * k for k in range(3, 15)]
    with pytest.raises(GeometryError, match="evenly"):
        read_rtdose(ds)


@pytest.mark.parametrize("bits", [16, 32])
@pytest.mark.parametrize("big_endian", [False, True])
def test_grid_dose_round_trip(tmp_path: Path, bits: int, big_endian: bool) -> None:
    volume = _dose()
    build = build_dose_grid(volume, summation_type="BEAM", plans=[PLAN], bits=bits,
                            reference=_reference())
    ds = build.dataset
    assert ds.FrameIncrementPointer == 0x3004000C
    assert [float(v) for v in ds.GridFrameOffsetVector] == [0.0, 3.0, 6.0, 9.0]
    assert ds.BitsAllocated == bits and ds.NumberOfFrames == 4
    scaling = float(ds.DoseGridScaling)
    assert len(str(ds.DoseGridScaling)) <= 16
    assert build.max_error <= scaling / 2 * (1 + 1e-9)
    path = write_rtdose(ds, tmp_path / "dose.dcm",
                        transfer_syntax=ExplicitVRBigEndian if big_endian else
                        "1.2.840.10008.1.2.1")
    back = read_rtdose(path)
    assert back.volume.grid == volume.grid
    assert np.abs(back.volume.array - volume.array).max() == pytest.approx(build.max_error)
    assert back.plans == (PLAN,) and back.summation_type == "BEAM"
    assert back.dose_type == "PHYSICAL" and back.bits == bits


def test_grid_dose_needs_plan_references() -> None:
    with pytest.raises(ConformanceError, match="Referenced RT Plan"):
        build_dose_grid(_dose(), summation_type="PLAN", reference=_reference())
    with pytest.raises(ConformanceError, match="beam"):
        build_dose_grid(_dose(), summation_type="BEAM", plans=[PlanReference("1.2.3", 1)],
                        reference=_reference())
    multi = build_dose_grid(_dose(), summation_type=DoseSummationType.MULTI_PLAN,
                            plans=[PlanReference("1.2.3"), PlanReference("1.2.4")],
                            reference=_reference()).dataset
    assert len(multi.ReferencedRTPlanSequence) == 2


def _big_dvh(roi: int) -> DVH:
    # 0.01 Gy bins up to 70 Gy, every bin occupied: 7000 pairs, far over 64 KiB as is.
    rng = np.random.default_rng(roi)
    volumes = rng.random(7000) * 0.3 + 0.01
    return DVH(np.arange(7001) * 0.01, volumes, 0.0, 35.0, 70.0, roi_number=roi)


@pytest.mark.parametrize("differential", [False, True])
def test_dvh_dose_round_trip_and_limit(tmp_path: Path, differential: bool) -> None:
    small = DVH.from_bins([1.0, 1.0, 1.0], [0.5, 2.0, 1.5], cumulative=False, roi_number=1,
                          min_gy=0.2, mean_gy=1.6, max_gy=2.9)
    big = _big_dvh(2)
    texts, error = encode_dvh_data(big, differential=differential)
    assert len("\\".join(texts)) <= DVH_DATA_MAX_BYTES
    assert all(len(t) <= 16 for t in texts)
    assert error < 0.01 * big.volume_cm3
    build = build_dvh_dose([small, big], structure_set="1.2.3.4", plans=[PLAN],
                           differential=differential, reference=_reference())
    assert build.max_error == pytest.approx(error)
    path = write_rtdose(build.dataset, tmp_path / "dvh.dcm")
    raw = dcmread(path)
    assert "PixelData" not in raw
    assert raw.DVHSequence[1]["DVHData"].VR == "DS"
    back = read_rtdose(path)
    assert back.volume is None and back.structure_set_uid == "1.2.3.4"
    assert back.plans == (PlanReference(PLAN.sop_instance_uid),)  # PLAN: no group
    first, second = back.dvhs
    assert first.roi_number == 1 and first.min_gy == 0.2 and first.mean_gy == 1.6
    np.testing.assert_allclose(first.cumulative, small.cumulative, rtol=1e-6)
    read = np.interp(big.edges, second.edges, second.cumulative)
    tolerance = error + 1e-9 if differential else error + 0.31  # steps: one bin of volume
    assert np.abs(read - big.cumulative).max() <= tolerance
    assert second.volume_cm3 == pytest.approx(big.volume_cm3, rel=1e-6)


def test_point_dose_round_trip(tmp_path: Path) -> None:
    points = [PointDose(1, 2.345, "Ref", (1.0, 2.0, 3.0)), PointDose(2, 0.5, "", (0, 0, 0))]
    build = build_point_dose(points, plans=[PLAN], reference=_reference())
    path = write_rtdose(build.dataset, tmp_path / "points.dcm")
    back = read_rtdose(path)
    assert [(p.roi_number, p.dose_gy, p.position) for p in back.point_doses] == [
        (1, 2.345, (1.0, 2.0, 3.0)), (2, 0.5, (0.0, 0.0, 0.0))]
    assert back.point_doses[0].name == "Ref"


@pytest.mark.interop
@pytest.mark.skipif(not dciodvfy_available(), reason="dciodvfy not installed")
def test_dciodvfy_accepts_every_builder(tmp_path: Path) -> None:
    # The Debian dciodvfy aborts on 32-bit Pixel Data (valid DICOM): the grid dose
    # is checked here in 16 bits; the 32-bit encoding of the same builder is
    # checked by test_grid_dose_round_trip.
    reference = _reference()
    built = {
        "grid16": build_dose_grid(_dose(), summation_type="PLAN", plans=[PLAN], bits=16,
                                  reference=reference),
        "dvh": build_dvh_dose([_big_dvh(3)], structure_set="1.2.3.4", plans=[PLAN],
                              reference=reference),
        "points": build_point_dose([PointDose(1, 2.0, "P", (1.0, 2.0, 3.0))], plans=[PLAN],
                                   reference=reference),
    }
    for name, build in built.items():
        result = validate_file(write_rtdose(build.dataset, tmp_path / f"{name}.dcm"))
        assert result.dciodvfy_ran, name
        assert result.errors == [], (name, result.errors)
