"""CT Image writer: content, round trips, transfer syntaxes, fast path, dciodvfy."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from pydicom import Dataset, dcmread
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import dcmwrite
from pydicom.uid import CTImageStorage, ExplicitVRBigEndian

import rtforge
from rtforge.config import ExportConfig
from rtforge.core.geometry import SliceStack
from rtforge.errors import ConformanceError, GeometryError, InvalidInputError
from rtforge.io.ct import CTSeriesWriter, PixelStorage, write_ct_series
from rtforge.io.fileset import parse_transfer_syntax, patient_folder_name, write_dataset_file
from rtforge.io.private import export_platform_name
from rtforge.io.validate import dciodvfy_available, validate_file

ROWS, COLUMNS = 16, 20
CONFIG = ExportConfig(uid_root="1.2.826.0.1.3680043.8.498.77.", station_name="ct-test",
                      platform_name="PLATFORM-CT")
WHEN = datetime(2024, 5, 17, 13, 45, 9)
SOURCE_UID = "1.2.826.0.1.3680043.8.498.99"
TRANSFER_SYNTAXES = ["explicit", "implicit", "big"]


def axial_stack(nslices: int = 5) -> SliceStack:
    """Axis-aligned output stack, slices 2.5 mm apart, awkward in-plane numbers."""
    positions = [[-249.51171875, -120.123456789, -10.0 + 2.5 * k] for k in range(nslices)]
    return SliceStack(positions=positions, row_direction=(1, 0, 0), column_direction=(0, 1, 0),
                      pixel_spacing=(0.9765625, 1.25), rows=ROWS, columns=COLUMNS)


def oblique_tilted_stack() -> SliceStack:
    """Oblique (12 degrees about z, 11.5 about x), 15 degree tilt, uneven spacing."""
    a, b = math.radians(12.0), 0.2
    row = np.array([math.cos(a), math.sin(a), 0.0])
    col = np.array([-math.sin(a) * math.cos(b), math.cos(a) * math.cos(b), math.sin(b)])
    normal = np.cross(row, col)
    shift = math.tan(math.radians(15.0))
    positions = [np.array([-10.1, -20.2, 30.3]) + d * normal + d * shift * col
                 for d in (0.0, 2.0, 4.5, 7.0, 9.5)]
    return SliceStack(positions=positions, row_direction=row, column_direction=col,
                      pixel_spacing=(0.7, 0.9), rows=ROWS, columns=COLUMNS)


def source_dataset() -> Dataset:
    """A source slice as a scanner would write it (what the derived series inherits)."""
    ds = Dataset()
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "PAT/042"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.PatientSize = "1.68"
    ds.PatientWeight = "61.5"
    ds.StudyInstanceUID = f"{SOURCE_UID}.1"
    ds.StudyDate = "20240501"
    ds.StudyTime = "081500"
    ds.ReferringPhysicianName = "Who^Doctor"
    ds.StudyID = "S42"
    ds.AccessionNumber = "ACC42"
    ds.StudyDescription = "Thorax planning"
    ds.SeriesInstanceUID = f"{SOURCE_UID}.2"
    ds.SeriesNumber = 4
    ds.SeriesDescription = "Thorax 3mm"
    ds.Modality = "CT"
    ds.BodyPartExamined = "CHEST"
    ds.Manufacturer = "Vendor"
    ds.PatientPosition = "HFS"
    ds.FrameOfReferenceUID = f"{SOURCE_UID}.3"
    ds.PositionReferenceIndicator = "XY"
    ds.KVP = "120"
    ds.AcquisitionNumber = 3
    ds.GantryDetectorTilt = "15"
    ds.WindowCenter = ["40", "-600"]
    ds.WindowWidth = ["400", "1500"]
    return ds


def references(nslices: int) -> list[list[tuple[str, str]]]:
    """Two source images per output slice, none for the last one."""
    refs = [[(CTImageStorage, f"{SOURCE_UID}.10.{k}"), (CTImageStorage, f"{SOURCE_UID}.10.{k + 1}")]
            for k in range(nslices)]
    refs[-1] = []
    return refs


def hu_volume(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1024, 3072, size=shape, dtype=np.int16)


def write_derived(tmp_path: Path, **kwargs: object):
    stack = axial_stack()
    hu = hu_volume(stack.shape)
    options = {"source": source_dataset(), "source_references": references(stack.nslices),
               "config": CONFIG, "timestamp": WHEN, "fsync": False}
    options.update(kwargs)
    return stack, hu, write_ct_series(hu, stack, tmp_path, **options)


def write_original(tmp_path: Path, **kwargs: object):
    stack = oblique_tilted_stack()
    hu = hu_volume(stack.shape, seed=1)
    options = {"derived": False, "pixel_storage": "signed", "config": CONFIG, "timestamp": WHEN,
               "fsync": False, "overrides": {
                   "PatientName": "Phantom^Tilted", "PatientID": "PHANTOM1",
                   "StudyDate": "20240517", "StudyTime": "134509", "StudyID": "1",
                   "PatientPosition": "HFS", "SeriesNumber": 2, "KVP": 120}}
    options.update(kwargs)
    return stack, hu, write_ct_series(hu, stack, tmp_path, **options)


def read_hu(path: Path) -> np.ndarray:
    ds = dcmread(path)
    return ds.pixel_array.astype(np.int64) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)


# ------------------------------------------------------------ derived content
def test_derived_series_content_and_round_trip(tmp_path: Path) -> None:
    stack, hu, report = write_derived(tmp_path)
    source = source_dataset()
    assert report.series_dir == (tmp_path / patient_folder_name("PAT/042")
                                 / source.StudyInstanceUID / report.series_uid)
    assert report.series_uid.startswith(CONFIG.uid_root)
    assert len(report.paths) == len(report.sop_instance_uids) == stack.nslices
    assert (report.clamped_low, report.clamped_high) == (0, 0)
    refs = references(stack.nslices)
    for k, path in enumerate(report.paths):
        assert path.name == f"{report.sop_instance_uids[k]}.dcm"
        ds = dcmread(path)
        assert np.array_equal(read_hu(path), hu[k])
        # SOP Common, equipment, private block.
        assert ds.SOPClassUID == CTImageStorage == ds.file_meta.MediaStorageSOPClassUID
        assert ds.SOPInstanceUID == report.sop_instance_uids[k]
        assert ds.SpecificCharacterSet == "ISO_IR 100"
        assert (ds.InstanceCreationDate, ds.InstanceCreationTime) == ("20240517", "134509")
        assert (ds.ContentDate, ds.ContentTime) == ("20240517", "134509")
        assert (ds.Manufacturer, ds.ManufacturerModelName) == ("rtforge", "rtforge")
        assert ds.SoftwareVersions == rtforge.__version__
        assert ds.StationName == "ct-test"
        assert export_platform_name(ds, CONFIG.private_creator) == "PLATFORM-CT"
        # Patient, study, Frame of Reference carried over; a new series.
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                        "PatientSize", "PatientWeight", "StudyInstanceUID", "StudyDate",
                        "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
                        "StudyDescription", "FrameOfReferenceUID", "PositionReferenceIndicator",
                        "PatientPosition", "KVP", "AcquisitionNumber", "SeriesNumber",
                        "WindowCenter", "WindowWidth"):
            assert ds[keyword].value == source[keyword].value, keyword
        assert ds.SeriesInstanceUID == report.series_uid != source.SeriesInstanceUID
        assert ds.SeriesDescription == "Thorax 3mm resliced"
        assert ds.Modality == "CT"
        # Laterality is Type 2C (paired body parts only): absent for the chest.
        assert "Laterality" not in source and "Laterality" not in ds
        assert "GantryDetectorTilt" not in ds
        # General Image, derivation.
        assert ds.InstanceNumber == k + 1
        assert list(ds.ImageType) == ["DERIVED", "SECONDARY", "AXIAL"]
        assert ds.DerivationDescription == "Resliced to axial orientation by rtforge"
        code = ds.DerivationCodeSequence[0]
        assert (code.CodeValue, code.CodingSchemeDesignator) == ("113072", "DCM")
        items = ds.get("SourceImageSequence", [])
        assert [(i.ReferencedSOPClassUID, i.ReferencedSOPInstanceUID) for i in items] == refs[k]
        for item in items:
            assert item.PurposeOfReferenceCodeSequence[0].CodeValue == "121322"
        # Image Plane.
        assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
        assert np.allclose([float(v) for v in ds.ImagePositionPatient], stack.positions[k],
                           rtol=0, atol=1e-9)
        assert [float(v) for v in ds.PixelSpacing] == [1.25, 0.9765625]  # row\column
        assert float(ds.SliceThickness) == 2.5
        assert float(ds.SliceLocation) == pytest.approx(stack.positions[k][2], abs=1e-9)
        # Image Pixel, CT Image.
        assert (ds.Rows, ds.Columns) == (ROWS, COLUMNS)
        assert (ds.SamplesPerPixel, ds.PhotometricInterpretation) == (1, "MONOCHROME2")
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (
            16, 16, 15, 0)
        assert (float(ds.RescaleIntercept), float(ds.RescaleSlope), ds.RescaleType) == (
            -1024, 1, "HU")


def test_type2_ct_attributes_empty_without_source_values(tmp_path: Path) -> None:
    source = source_dataset()
    for keyword in ("KVP", "AcquisitionNumber", "WindowWidth", "PatientPosition"):
        delattr(source, keyword)
    _, _, report = write_derived(tmp_path, source=source)
    ds = dcmread(report.paths[0])
    for keyword in ("KVP", "AcquisitionNumber", "PatientPosition"):
        assert keyword in ds and ds[keyword].is_empty, keyword
    # Window Center without Window Width is not carried (PS3.3 C.11.2: both or none).
    assert "WindowCenter" not in ds and "WindowWidth" not in ds


def test_every_ds_at_most_16_characters(tmp_path: Path) -> None:
    for _, _, report in (write_derived(tmp_path / "d"), write_original(tmp_path / "o")):
        for path in report.paths:
            ds = dcmread(path)
            for elem in ds.iterall():
                if elem.VR == "DS" and not elem.is_empty:
                    values = elem.value if elem.VM > 1 else [elem.value]
                    assert all(len(v.original_string) <= 16 for v in values), elem
            assert validate_file(path, dciodvfy=False).errors == []


def test_clamping_is_counted(tmp_path: Path) -> None:
    stack = axial_stack(2)
    hu = np.zeros(stack.shape, dtype=np.int32)
    hu[0, 0, :3] = [-3000, -1025, -1024]
    hu[1, 1, :2] = [64511, 70000]
    report = write_ct_series(hu, stack, tmp_path, source=source_dataset(), fsync=False)
    assert (report.clamped_low, report.clamped_high) == (2, 1)
    assert list(read_hu(report.paths[0])[0, :3]) == [-1024, -1024, -1024]
    assert list(read_hu(report.paths[1])[1, :2]) == [64511, 64511]
    # int16 input, the usual case: only the low side can clamp.
    low = np.full(stack.shape, -2000, dtype=np.int16)
    low[0, 0, 0] = 32767
    report = write_ct_series(low, stack, tmp_path / "b", source=source_dataset(), fsync=False)
    assert (report.clamped_low, report.clamped_high) == (low.size - 1, 0)
    assert read_hu(report.paths[0])[0, 0] == 32767
    # Signed storage clamps to int16.
    wide = np.zeros(stack.shape, dtype=np.int64)
    wide[0, 0, 0], wide[1, 0, 0] = -40000, 40000
    report = write_ct_series(wide, stack, tmp_path / "c", source=source_dataset(),
                             pixel_storage=PixelStorage.SIGNED, fsync=False)
    assert (report.clamped_low, report.clamped_high) == (1, 1)
    assert (read_hu(report.paths[0])[0, 0], read_hu(report.paths[1])[0, 0]) == (-32768, 32767)


def test_signed_storage(tmp_path: Path) -> None:
    stack, hu, report = write_derived(tmp_path, pixel_storage="signed")
    for k, path in enumerate(report.paths):
        ds = dcmread(path)
        assert (ds.PixelRepresentation, float(ds.RescaleIntercept)) == (1, 0)
        assert np.array_equal(read_hu(path), hu[k])


@pytest.mark.parametrize("name", TRANSFER_SYNTAXES)
def test_transfer_syntaxes_round_trip(tmp_path: Path, name: str) -> None:
    stack, hu, report = write_derived(tmp_path, transfer_syntax=name)
    for k, path in enumerate(report.paths):
        ds = dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == parse_transfer_syntax(name)
        assert np.array_equal(read_hu(path), hu[k])
        order = ">" if ds.file_meta.TransferSyntaxUID == ExplicitVRBigEndian else "<"
        stored = np.frombuffer(ds.PixelData, dtype=f"{order}u2").reshape(ROWS, COLUMNS)
        assert np.array_equal(stored.astype(np.int64) - 1024, hu[k])
        assert np.allclose([float(v) for v in ds.ImagePositionPatient], stack.positions[k])
        assert ds.SeriesDescription == "Thorax 3mm resliced"


# -------------------------------------------------------------- fast path
@pytest.mark.parametrize("name", TRANSFER_SYNTAXES)
@pytest.mark.parametrize("kind", ["derived", "original"])
def test_fast_path_is_byte_identical_to_dcmwrite(tmp_path: Path, name: str, kind: str) -> None:
    stack = axial_stack() if kind == "derived" else oblique_tilted_stack()
    hu = hu_volume(stack.shape, seed=2)
    hu[0, 0, 0] = -3000  # a clamped voxel
    if kind == "derived":
        options = {"source": source_dataset(), "source_references": references(stack.nslices)}
    else:
        options = {"derived": False, "pixel_storage": "signed",
                   "overrides": {"PatientName": "Müller^Jörg"}}
    writer = CTSeriesWriter(stack, tmp_path / "fast", transfer_syntax=name, config=CONFIG,
                            fsync=False, **options)
    given = hu.copy()
    writer.write(0, hu)
    report = writer.close()
    assert np.array_equal(hu, given)  # the caller's array is never byte-swapped or clamped
    for k, path in enumerate(report.paths):
        ds = writer.instance_dataset(k, hu[k])
        reference = write_dataset_file(ds, tmp_path / "ref" / path.name, name, fsync=False)
        assert path.read_bytes() == reference.read_bytes(), (k, name)
        if name != "big":  # plain dcmwrite needs no byte swap here
            buffer = DicomBytesIO()
            dcmwrite(buffer, ds, enforce_file_format=True)
            assert path.read_bytes() == buffer.getvalue()


# --------------------------------------------------------- original series
def test_original_oblique_tilted_uneven_series(tmp_path: Path) -> None:
    stack, hu, report = write_original(tmp_path)
    readback = []
    for k, path in enumerate(report.paths):
        ds = dcmread(path)
        assert np.array_equal(read_hu(path), hu[k])
        assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
        assert (ds.PixelRepresentation, float(ds.RescaleIntercept)) == (1, 0)
        assert float(ds.GantryDetectorTilt) == pytest.approx(15.0, abs=1e-9)
        assert "SourceImageSequence" not in ds and "DerivationCodeSequence" not in ds
        assert "DerivationDescription" not in ds
        assert (str(ds.PatientName), ds.PatientID, ds.PatientPosition) == (
            "Phantom^Tilted", "PHANTOM1", "HFS")
        assert ds.StudyInstanceUID.startswith(CONFIG.uid_root)
        assert ds.FrameOfReferenceUID.startswith(CONFIG.uid_root)
        orientation = np.array([float(v) for v in ds.ImageOrientationPatient])
        assert np.allclose(orientation, [*stack.row_direction, *stack.column_direction],
                           rtol=0, atol=1e-13)
        readback.append([float(v) for v in ds.ImagePositionPatient])
        assert float(ds.SliceLocation) == pytest.approx(stack.offsets[k], abs=1e-9)
        assert float(ds.SliceThickness) == pytest.approx(2.5)
        assert [float(v) for v in ds.PixelSpacing] == [0.9, 0.7]
    back = SliceStack(positions=readback, row_direction=orientation[:3],
                      column_direction=orientation[3:], pixel_spacing=(0.7, 0.9), rows=ROWS,
                      columns=COLUMNS)
    assert np.allclose(back.positions, stack.positions, rtol=0, atol=1e-9)
    assert back.tilt_degrees() == pytest.approx(stack.tilt_degrees(), abs=1e-9)
    assert back.is_uneven()


def test_original_unsigned_and_no_tilt(tmp_path: Path) -> None:
    stack = axial_stack(3)
    hu = hu_volume(stack.shape)
    report = write_ct_series(hu, stack, tmp_path, derived=False, fsync=False)
    ds = dcmread(report.paths[0])
    assert "GantryDetectorTilt" not in ds and "SeriesDescription" not in ds
    assert ds["PatientName"].is_empty and ds["PatientID"].is_empty
    assert report.series_dir.parts[-3] == "_no_patient_id"
    assert np.array_equal(read_hu(report.paths[2]), hu[2])


# ------------------------------------------------------------------- API
def test_derived_series_must_be_axis_aligned(tmp_path: Path) -> None:
    with pytest.raises(GeometryError, match="1\\\\0\\\\0"):
        CTSeriesWriter(oblique_tilted_stack(), tmp_path)


def test_bad_arguments(tmp_path: Path) -> None:
    stack = axial_stack(3)
    with pytest.raises(InvalidInputError, match="entries"):
        CTSeriesWriter(stack, tmp_path, source_references=references(2))
    with pytest.raises(InvalidInputError, match="derived"):
        CTSeriesWriter(stack, tmp_path, derived=False, source_references=references(3))
    with pytest.raises(InvalidInputError, match="not a UID"):
        CTSeriesWriter(stack, tmp_path, source_references=[[("1.2", "1..2")]] * 3)
    with pytest.raises(InvalidInputError, match="ImagePositionPatient"):
        CTSeriesWriter(stack, tmp_path, overrides={"ImagePositionPatient": [0, 0, 0]})
    with pytest.raises(InvalidInputError, match="RescaleIntercept"):
        CTSeriesWriter(stack, tmp_path, overrides={"RescaleIntercept": 0})
    with pytest.raises(InvalidInputError, match="DoseGridScaling"):
        CTSeriesWriter(stack, tmp_path, overrides={"DoseGridScaling": 1.0})
    with pytest.raises(InvalidInputError, match="transfer syntax"):
        CTSeriesWriter(stack, tmp_path, transfer_syntax="jpeg")
    with pytest.raises(InvalidInputError, match="pixel_storage"):
        CTSeriesWriter(stack, tmp_path, pixel_storage="float")
    writer = CTSeriesWriter(stack, tmp_path / "w", fsync=False)
    good = hu_volume(stack.shape)
    with pytest.raises(InvalidInputError, match="integer"):
        writer.write(0, good.astype(np.float32))
    with pytest.raises(InvalidInputError, match="3 dimensions"):
        writer.write(0, good[0])
    with pytest.raises(InvalidInputError, match="stack's"):
        writer.write(0, good[:, :, :-1])
    with pytest.raises(InvalidInputError, match="outside"):
        writer.write(2, good)
    writer.write(0, good[:1])
    with pytest.raises(InvalidInputError, match="already written"):
        writer.write(0, good[:2])
    with pytest.raises(ConformanceError, match="incomplete"):
        writer.close()
    writer.write(1, good[1:])
    report = writer.close()
    assert writer.close() is report
    with pytest.raises(ConformanceError, match="closed"):
        writer.write(0, good[:1])
    with pytest.raises(InvalidInputError, match="shape"):
        write_ct_series(good[:2], stack, tmp_path / "x")


def test_streaming_any_order_and_rerun_reproduces_files(tmp_path: Path) -> None:
    stack = axial_stack(6)
    hu = hu_volume(stack.shape)
    options = {"source": source_dataset(), "series_uid": f"{CONFIG.uid_root}123",
               "config": CONFIG, "timestamp": WHEN, "fsync": False}
    with CTSeriesWriter(stack, tmp_path, **options) as writer:
        for k0 in (4, 0, 2):
            writer.write(k0, hu[k0:k0 + 2])
    first = writer.close()
    contents = [p.read_bytes() for p in first.paths]
    again = write_ct_series(hu, stack, tmp_path, **options)
    assert again.sop_instance_uids == first.sop_instance_uids
    assert [p.read_bytes() for p in again.paths] == contents
    assert sorted(first.series_dir.iterdir()) == sorted(first.paths)  # no temporary files


def test_flat_layout_and_overrides(tmp_path: Path) -> None:
    overrides = {"PatientName": "山田^太郎", "SeriesNumber": 1004, "SeriesDescription": None,
                 "WindowCenter": None, "WindowWidth": None}
    # Issue 14 item 5: outside Latin-1 only when the configuration selects ISO_IR 192.
    with pytest.raises(InvalidInputError, match="PatientName.*山田"):
        write_derived(tmp_path / "latin1", flat=True, overrides=overrides)
    assert not (tmp_path / "latin1").exists() or not any((tmp_path / "latin1").iterdir())
    utf8 = ExportConfig(uid_root=CONFIG.uid_root, station_name="ct-test",
                        character_set="ISO_IR 192")
    _, _, report = write_derived(tmp_path, flat=True, overrides=overrides, config=utf8)
    assert report.series_dir == tmp_path
    ds = dcmread(report.paths[0])
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    assert str(ds.PatientName) == "山田^太郎"
    assert ds.SeriesNumber == 1004
    assert "SeriesDescription" not in ds and "WindowCenter" not in ds


# --------------------------------------------------------------- dciodvfy
# The only dciodvfy warnings allowed on our CT output, each for a stated reason:
ALLOWED_DCIODVFY_WARNINGS = {
    # Laterality (0020,0060) is Type 2C (paired body parts). A series written without a
    # source (write_original) has no Body Part Examined, so whether the part is paired is
    # unknown and Laterality is written empty, which dciodvfy notes means "unknown".
    "dciodvfy: Warning - is only permitted to be empty when actually unknown; should be absent "
    "(not empty) if an unpaired body part, and have a value if a paired body part - "
    "attribute <Laterality>",
    # Our private Export Platform Name (iPlan table 8-15 mirrored): dciodvfy has
    # no dictionary for our private creator, so it notes the explicit VR it read.
    # (Implicit VR files do not raise it.)
    "dciodvfy: (0x0009,0x1001)  ?  - Warning - Unrecognized tag - assuming explicit value "
    "representation OK",
}

needs_dciodvfy = pytest.mark.skipif(not dciodvfy_available(),
                                    reason="dciodvfy (Debian package dicom3tools) not installed")


def assert_dciodvfy_clean(paths: tuple[Path, ...]) -> None:
    for path in paths:
        result = validate_file(path)
        assert result.dciodvfy_ran and result.iod == "CTImage", result
        assert result.errors == [], (path, result.errors)
        unexpected = set(result.warnings) - ALLOWED_DCIODVFY_WARNINGS
        assert not unexpected, (path, unexpected)


@pytest.mark.interop
@needs_dciodvfy
@pytest.mark.parametrize("name", TRANSFER_SYNTAXES)
def test_dciodvfy_derived_series(tmp_path: Path, name: str) -> None:
    _, _, report = write_derived(tmp_path, transfer_syntax=name)
    assert_dciodvfy_clean(report.paths)


@pytest.mark.interop
@needs_dciodvfy
@pytest.mark.parametrize("storage", ["signed", "unsigned"])
def test_dciodvfy_original_oblique_tilted_series(tmp_path: Path, storage: str) -> None:
    _, _, report = write_original(tmp_path, pixel_storage=storage)
    assert_dciodvfy_clean(report.paths)


def test_laterality_follows_body_part_examined(tmp_path: Path) -> None:
    """Type 2C: carried when known, absent for an unpaired part, empty (unknown) otherwise."""
    cases = {("BREAST", "L"): "L", ("BREAST", None): "", (None, None): "", ("CHEST", None): None}
    for n, ((body_part, laterality), expected) in enumerate(cases.items()):
        source = source_dataset()
        del source.BodyPartExamined
        if body_part:
            source.BodyPartExamined = body_part
        if laterality:
            source.Laterality = laterality
        _, _, report = write_derived(tmp_path / str(n), source=source)
        ds = dcmread(report.paths[0])
        assert (ds["Laterality"].value or "" if "Laterality" in ds else None) == expected, body_part


def test_invalid_source_values_are_dropped_and_reported(tmp_path: Path) -> None:
    source = source_dataset()
    source.PatientAge = "0Y"  # AS is nnnD/W/M/Y (PS3.5 table 6.2-1); some scanners write this
    source.StudyDate = "2024-05-01"
    _, _, report = write_derived(tmp_path, source=source)
    ds = dcmread(report.paths[0])
    assert "PatientAge" not in ds
    assert ds.StudyDate == ""  # Type 2: written empty, not copied wrong
    assert any("PatientAge '0Y' is not a valid AS" in line for line in report.dropped_values)
    assert any("StudyDate" in line for line in report.dropped_values)
