"""The one integrity check every reader applies: truncation, short pixels, geometry, contours."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread

from rtforge.errors import InvalidInputError
from rtforge.io.integrity import check_dataset, finite_numbers, read_checked
from rtforge.io.rtstruct import read_rtstruct
from tests.datafiles import pydicom_file
from tests.io.test_references import make_rt_set, write_set


@pytest.fixture
def rt_files(tmp_path: Path) -> dict[str, Path]:
    """The small RT set as files, by modality (the first CT for CT)."""
    write_set(tmp_path / "set", make_rt_set())
    out: dict[str, Path] = {}
    for path in sorted((tmp_path / "set").rglob("*.dcm")):
        out.setdefault(str(dcmread(path, stop_before_pixels=True).Modality), path)
    return out


def test_whole_objects_pass(rt_files: dict[str, Path]) -> None:
    for path in rt_files.values():
        assert read_checked(path) is not None
    for name in ("CT_small.dcm", "rtplan.dcm", "rtdose.dcm", "rtstruct.dcm", "JPEG2000.dcm",
                 "MR_small_RLE.dcm"):
        assert read_checked(pydicom_file(name)) is not None, name


def test_not_dicom_is_told_apart(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not DICOM at all")
    (tmp_path / "preview.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    assert read_checked(tmp_path / "notes.txt") is None
    assert read_checked(tmp_path / "preview.png") is None


@pytest.mark.parametrize("name", ["MR_truncated.dcm", "rtplan_truncated.dcm"])
def test_pydicoms_truncated_files(name: str) -> None:
    with pytest.raises(InvalidInputError, match="truncated") as caught:
        read_checked(pydicom_file(name))
    assert name in str(caught.value)


@pytest.mark.parametrize("cut", [1, 50, 400])
def test_truncated_rt_structure_set(rt_files: dict[str, Path], tmp_path: Path, cut: int) -> None:
    data = rt_files["RTSTRUCT"].read_bytes()
    bad = tmp_path / "cut.dcm"
    bad.write_bytes(data[:-cut])
    with pytest.raises(InvalidInputError, match="truncated"):
        read_checked(bad)


@pytest.mark.parametrize("cut", [8, 100])
def test_truncated_encapsulated_pixel_data(tmp_path: Path, cut: int) -> None:
    data = pydicom_file("JPEG2000.dcm").read_bytes()
    bad = tmp_path / "cut.dcm"
    bad.write_bytes(data[:-cut])
    with pytest.raises(InvalidInputError, match="truncated"):
        read_checked(bad)


def test_short_pixel_data_and_missing_pixel_data(rt_files: dict[str, Path]) -> None:
    ds = dcmread(rt_files["CT"])
    ds.PixelData = ds.PixelData[:6]  # 2 x 2 x 16 bits need 8 bytes
    with pytest.raises(InvalidInputError, match=r"truncated Pixel Data: 6 bytes.* = 8"):
        check_dataset(ds, "ct.dcm")
    del ds.PixelData
    with pytest.raises(InvalidInputError, match="no Pixel Data"):
        check_dataset(ds, "ct.dcm")


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")
@pytest.mark.parametrize(("keyword", "value"), [
    ("ImagePositionPatient", ["nan", "0", "0"]),
    ("ImagePositionPatient", ["0", "0"]),
    ("PixelSpacing", ["inf", "1"]),
])
def test_non_finite_geometry(rt_files: dict[str, Path], keyword: str, value: list[str]) -> None:
    ds = dcmread(rt_files["CT"])
    setattr(ds, keyword, value)
    with pytest.raises(InvalidInputError, match=f"ct.dcm: {keyword}: must be"):
        check_dataset(ds, "ct.dcm")


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")
def test_non_finite_geometry_inside_a_sequence(rt_files: dict[str, Path]) -> None:
    ds = dcmread(rt_files["RTPLAN"])
    ds.BeamSequence[0].ControlPointSequence[0].IsocenterPosition = ["0", "nan", "0"]
    with pytest.raises(InvalidInputError, match=r"BeamSequence\[0\]\.ControlPointSequence\[0\]"
                                                r"\.IsocenterPosition: must be 3 finite"):
        check_dataset(ds, "plan.dcm")


def _closed_contour(rt_files: dict[str, Path]):  # noqa: ANN202
    ds = dcmread(rt_files["RTSTRUCT"])
    contour = ds.ROIContourSequence[0].ContourSequence[0]
    contour.ContourGeometricType = "CLOSED_PLANAR"
    contour.ContourData = [0, 0, 0, 10, 0, 0, 10, 10, 0]
    contour.NumberOfContourPoints = 3
    return ds, contour


def test_contours(rt_files: dict[str, Path], tmp_path: Path) -> None:
    ds, contour = _closed_contour(rt_files)
    check_dataset(ds, "ss.dcm")
    contour.NumberOfContourPoints = 4
    with pytest.raises(InvalidInputError, match="Number of Contour Points says 4, Contour Data "
                                                "holds 3"):
        check_dataset(ds, "ss.dcm")
    # the same rule where dvh reads structures
    ds.save_as(tmp_path / "ss.dcm")
    with pytest.raises(InvalidInputError, match="NumberOfContourPoints"):
        read_rtstruct(tmp_path / "ss.dcm")
    contour.ContourData, contour.NumberOfContourPoints = [0, 0, 0], 1
    with pytest.raises(InvalidInputError, match="CLOSED_PLANAR contour needs at least 3"):
        check_dataset(ds, "ss.dcm")


def test_finite_numbers() -> None:
    assert finite_numbers(["1", "2.5"], 2).tolist() == [1.0, 2.5]
    assert finite_numbers("0\\2\\4".split("\\"), None).dtype == np.float64
    for value, count in ((["x"], 1), (["1"], 2), ([], None), (["nan"], 1)):
        with pytest.raises(ValueError):
            finite_numbers(value, count)
