"""Tests of rtforge.io.series: discovery, reading, geometry checks, bad input."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pydicom.fileset
import pytest
from pydicom.uid import MPEG2MPML, generate_uid

from rtforge.errors import GeometryError, InvalidInputError
from rtforge.io import series as series_module
from rtforge.io.series import DiscoveryResult, ImageSeries, discover_series, read_series
from tests.datafiles import pydicom_file, shared_file
from tests.io.series_factory import (
    TRANSFER_SYNTAXES,
    encode_jpeg_baseline,
    gantry_tilt_frame,
    make_slices,
    oblique_frame,
    phantom_values,
    slice_positions,
    stored_values,
    write_ct_series,
    write_dataset,
    write_series,
)

LOSSLESS_SYNTAXES = [k for k in TRANSFER_SYNTAXES if k != "jpeg-baseline"]


def _raises_naming(path: Path, func, *args, match: str | None = None, **kwargs):
    """Assert ``func`` raises InvalidInputError whose message names ``path``."""
    with pytest.raises(InvalidInputError, match=match) as info:
        func(*args, **kwargs)
    assert Path(path).name in str(info.value), str(info.value)
    return info.value


def _offsets(image: ImageSeries) -> np.ndarray:
    return image.stack.positions @ image.stack.normal


# ------------------------------------------------------------ transfer syntaxes
@pytest.mark.parametrize("transfer_syntax", LOSSLESS_SYNTAXES)
@pytest.mark.parametrize("pixel_representation", [0, 1])
def test_every_lossless_transfer_syntax_reads_exact_hu(tmp_path, transfer_syntax,
                                                      pixel_representation):
    hu = phantom_values((4, 20, 16), seed=3, low=-1000 if pixel_representation else -1024)
    made = write_ct_series(tmp_path / "ct", hu=hu, transfer_syntax=transfer_syntax,
                           pixel_representation=pixel_representation,
                           rescale_intercept=0 if pixel_representation else -1024)
    image = read_series(made.folder)
    assert image.array.dtype == np.int16
    assert image.array.shape == (4, 20, 16)
    np.testing.assert_array_equal(image.array, made.hu_sorted())
    assert image.padding_voxels == 0 and image.clipped_voxels == 0
    assert image.warnings == []


@pytest.mark.filterwarnings("ignore:The number of bytes of compressed pixel data")
@pytest.mark.parametrize("predictor", [2, 3, 5, 6, 7])
def test_jpeg_lossless_process_14_every_predictor(tmp_path, predictor):
    made = write_ct_series(tmp_path / "ct", nslices=2, transfer_syntax="jpeg-lossless",
                           jpeg_predictor=predictor, pixel_representation=1, bits_stored=12,
                           rescale_intercept=0)
    np.testing.assert_array_equal(read_series(made.folder).array, made.hu_sorted())


@pytest.mark.parametrize("transfer_syntax", ["implicit", "explicit", "big"])
def test_bare_data_sets_without_part10_header(tmp_path, transfer_syntax):
    made = write_ct_series(tmp_path / "ct", transfer_syntax=transfer_syntax, part10=False)
    assert all(p.read_bytes()[128:132] != b"DICM" for p in made.paths)
    np.testing.assert_array_equal(read_series(made.folder).array, made.hu_sorted())


def test_jpeg_baseline_8bit_matches_an_independent_decoder(tmp_path):
    image_module = pytest.importorskip("PIL.Image", reason="Pillow encodes the JPEG input")

    rng = np.random.default_rng(1)
    smooth = np.add.outer(np.arange(20) * 6, np.arange(16) * 5)[None] + rng.integers(0, 3, (3, 1, 1))
    hu = (smooth - 100).astype(np.int16)  # stored 0..~215, intercept -100
    made = write_ct_series(tmp_path / "ct", nslices=3, hu=hu, bits_allocated=8,
                           rescale_intercept=-100, transfer_syntax="jpeg-baseline")
    image = read_series(made.folder)
    for k, idx in enumerate(made.order()):
        jpeg = encode_jpeg_baseline(stored_values(made.datasets[idx]))
        truth = np.asarray(image_module.open(io.BytesIO(jpeg)), dtype=np.int16) - 100
        assert np.max(np.abs(image.array[k].astype(int) - truth)) <= 2
        assert np.mean(np.abs(image.array[k].astype(int) - made.hu_sorted()[k])) < 3


@pytest.mark.parametrize("twin", ["MR_small_RLE.dcm", "MR_small_bigendian.dcm",
                                  "MR_small_implicit.dcm", "MR_small_expb.dcm",
                                  "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"])
def test_pydicom_twins_decode_like_the_uncompressed_file(twin):
    reference = pydicom.dcmread(pydicom_file("MR_small.dcm"))
    ts = pydicom.dcmread(pydicom_file(twin), stop_before_pixels=True).file_meta.TransferSyntaxUID
    if ts.is_compressed and not pydicom.pixels.get_decoder(ts).is_available:
        pytest.skip(f"no decoder for {ts.name}")
    image = read_series(pydicom_file(twin))
    np.testing.assert_array_equal(image.array[0], reference.pixel_array)
    np.testing.assert_array_equal(image.array, read_series(pydicom_file("MR_small.dcm")).array)


def test_real_ct_slice_from_dicompyler():
    path = shared_file("dicompyler-example/ct.0.dcm")
    ds = pydicom.dcmread(path)
    image = read_series(path)
    assert image.array.shape == (1, 512, 512)
    expected = np.rint(ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept))
    np.testing.assert_array_equal(image.array[0], expected)
    np.testing.assert_allclose(image.stack.positions[0], [float(v) for v in
                                                          ds.ImagePositionPatient])
    assert image.stack.pixel_spacing == (float(ds.PixelSpacing[1]), float(ds.PixelSpacing[0]))
    assert image.modality == "CT" and image.nominal_tilt == 0.0 and image.tilt_degrees == 0.0
    assert image.gaps.shape == (0,) and not image.uneven_spacing
    assert "PixelData" not in image.headers[0]
    assert image.headers[0].PatientID == ds.PatientID


def _with_geometry(src: Path, dst: Path) -> Path:
    """Copy a bundled image, adding what a slice series needs (Pixel Data untouched)."""
    ds = pydicom.dcmread(src)
    ds.ImagePositionPatient = [0, 0, 0]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = ds.get("PixelSpacing") or [1, 1]
    ds.SeriesInstanceUID = ds.get("SeriesInstanceUID") or generate_uid()
    ds.Modality = ds.get("Modality") or "OT"
    ds.save_as(dst)
    return dst


def test_jpeg_extended_12bit_from_pydicom(tmp_path):
    src = pydicom_file("JPGExtended.dcm")
    path = _with_geometry(src, tmp_path / "jpgext.dcm")
    image = read_series(path)
    np.testing.assert_array_equal(image.array[0], pydicom.dcmread(src).pixel_array)


def test_rgb_jpeg_from_pydicom_is_rejected(tmp_path):
    path = _with_geometry(pydicom_file("SC_jpeg_no_color_transform.dcm"), tmp_path / "rgb.dcm")
    _raises_naming(path, read_series, path, match="SamplesPerPixel")


def test_uncompressed_pixels_never_go_through_pixel_array(tmp_path, monkeypatch):
    made = write_ct_series(tmp_path / "ct", transfer_syntax="explicit", bits_stored=12,
                           junk_high_bits=True)

    def forbidden(self):
        raise AssertionError("pixel_array used for uncompressed data")

    monkeypatch.setattr(pydicom.Dataset, "pixel_array", property(forbidden))
    np.testing.assert_array_equal(read_series(made.folder).array, made.hu_sorted())


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("transfer_syntax", ["explicit", "big", "implicit"])
def test_8bit_pixels(tmp_path, signed, transfer_syntax):
    hu = phantom_values((3, 20, 16), seed=5, low=-120 if signed else 0, high=120)
    made = write_ct_series(tmp_path / "ct", nslices=3, hu=hu, bits_allocated=8,
                           pixel_representation=int(signed), rescale_intercept=0,
                           transfer_syntax=transfer_syntax)
    np.testing.assert_array_equal(read_series(made.folder).array, made.hu_sorted())


@pytest.mark.parametrize(("signed", "bits_stored", "high_bit"),
                         [(False, 12, None), (True, 12, None), (True, 12, 13), (False, 10, 14)])
def test_bits_stored_masking_and_sign_extension(tmp_path, signed, bits_stored, high_bit):
    hu = phantom_values((3, 20, 16), seed=2, low=-500 if signed else -1024,
                        high=500 if signed else -100)
    made = write_ct_series(tmp_path / "ct", nslices=3, hu=hu, pixel_representation=int(signed),
                           bits_stored=bits_stored, high_bit=high_bit, junk_high_bits=True,
                           rescale_intercept=0 if signed else -1024)
    np.testing.assert_array_equal(read_series(made.folder).array, made.hu_sorted())


def test_monochrome1_is_read_as_stored_values(tmp_path):
    made = write_ct_series(tmp_path / "ct", photometric="MONOCHROME1")
    np.testing.assert_array_equal(read_series(made.folder).array, made.hu_sorted())


# ----------------------------------------------------------------- sorting
@pytest.mark.parametrize("frame", ["axial", "oblique", "reversed", "oblique-reversed", "sagittal"])
def test_shuffled_files_sort_along_the_normal(tmp_path, frame):
    if frame.startswith("oblique"):
        row, col, normal = oblique_frame(20.0, -15.0, 30.0)
    elif frame == "sagittal":
        row, col, normal = np.array([0.0, 1, 0]), np.array([0.0, 0, -1]), np.array([-1.0, 0, 0])
    else:
        row, col, normal = np.array([1.0, 0, 0]), np.array([0.0, 1, 0]), np.array([0.0, 0, 1])
    stack = -normal if frame.endswith("reversed") else normal
    made = write_ct_series(tmp_path / "ct", nslices=6, row_direction=row, column_direction=col,
                           stack_direction=stack, shuffle=True, seed=7)
    image = read_series(made.folder)
    offsets = _offsets(image)
    assert np.all(np.diff(offsets) > 0)
    np.testing.assert_allclose(image.stack.normal, normal, atol=1e-9)
    np.testing.assert_array_equal(image.array, made.hu_sorted())
    expected_paths = [made.paths[i] for i in made.order()]
    assert image.paths == expected_paths
    assert [h.SOPInstanceUID for h in image.headers] == [
        made.datasets[i].SOPInstanceUID for i in made.order()]
    np.testing.assert_allclose(image.stack.positions, made.positions[made.order()], atol=1e-6)
    np.testing.assert_allclose(image.gaps, 2.5, atol=1e-6)
    assert abs(image.tilt_degrees) < 0.01 and not image.uneven_spacing


def test_reading_a_shuffled_file_list(tmp_path):
    made = write_ct_series(tmp_path / "ct", nslices=5, stack_direction=(0, 0, -1))
    files = list(reversed(made.paths))
    image = read_series(files)
    np.testing.assert_array_equal(image.array, made.hu_sorted())
    assert sorted(image.paths) == sorted(made.paths)


# ------------------------------------------------------------------ rescale
def test_per_slice_rescale_rounds_to_nearest(tmp_path):
    nk, nj, ni = 4, 20, 16
    stored = np.random.default_rng(4).integers(0, 4096, (nk, nj, ni))
    slopes = [1.0, 2.0, 0.5, 0.25]
    intercepts = [-1024.0, -1000.0, -1024.5, 3.3]
    # make_slices takes the values a reader returns; give it the exact real values
    real = np.stack([stored[k] * slopes[k] + intercepts[k] for k in range(nk)])
    positions = slice_positions(nk, (0, 0, 1))
    datasets = make_slices(real, positions, rescale_slope=slopes, rescale_intercept=intercepts,
                           bits_stored=12)
    write_series(tmp_path / "ct", datasets)
    image = read_series(tmp_path / "ct")
    expected = np.array([[[round(float(v)) for v in row] for row in sl] for sl in real])
    np.testing.assert_array_equal(image.array, expected)
    assert any("non-integral Rescale" in w for w in image.warnings)


def test_values_outside_int16_are_clipped_and_counted(tmp_path):
    hu = np.zeros((2, 20, 16))
    hu[0, 0, :5] = 40000  # stored 40000 (16-bit unsigned, intercept 0)
    hu[1, 3, 3] = 65535
    made = write_ct_series(tmp_path / "ct", nslices=2, hu=hu, bits_stored=16,
                           rescale_intercept=0)
    image = read_series(made.folder)
    assert image.clipped_voxels == 6
    assert image.array.max() == 32767
    assert any("clipped" in w for w in image.warnings)
    positions = slice_positions(2, (0, 0, 1))
    datasets = make_slices(np.full((2, 20, 16), -3000.0) * 20, positions, rescale_slope=20.0,
                           rescale_intercept=0, pixel_representation=1, bits_stored=16)
    write_series(tmp_path / "neg", datasets)
    image = read_series(tmp_path / "neg")
    assert image.clipped_voxels == 2 * 20 * 16 and image.array.min() == -32768


# ------------------------------------------------------------------ padding
@pytest.mark.parametrize("transfer_syntax", ["explicit", "implicit", "big", "rle"])
@pytest.mark.parametrize("padding_vr", ["SS", "US"])
def test_signed_padding_value_becomes_air(tmp_path, transfer_syntax, padding_vr):
    hu = phantom_values((3, 20, 16), seed=9)
    mask = np.zeros(hu.shape, dtype=bool)
    mask[:, :3, :] = True
    mask[1, 10, 10] = True
    # stored = HU + 24: the padding value is compared before rescale, not after
    made = write_ct_series(tmp_path / "ct", nslices=3, hu=hu, pixel_representation=1,
                           bits_stored=16, rescale_intercept=-24, padding_value=-2000,
                           padding_mask=mask, padding_vr=padding_vr,
                           transfer_syntax=transfer_syntax)
    image = read_series(made.folder, air=-1024)
    expected = np.where(mask, -1024, hu)[made.order()]
    np.testing.assert_array_equal(image.array, expected)
    assert image.padding_voxels == int(mask.sum())


def test_unsigned_padding_is_compared_as_stored_value(tmp_path):
    hu = phantom_values((3, 20, 16), seed=1, low=-1023)  # stored never 0 outside padding
    mask = np.zeros(hu.shape, dtype=bool)
    mask[:, -2:, :] = True
    made = write_ct_series(tmp_path / "ct", nslices=3, hu=hu, padding_value=0, padding_mask=mask)
    image = read_series(made.folder)
    np.testing.assert_array_equal(image.array, np.where(mask, -1000, hu)[made.order()])
    assert image.padding_voxels == int(mask.sum())


def test_padding_as_12bit_pattern_with_junk_high_bits(tmp_path):
    hu = phantom_values((2, 20, 16), seed=6, low=-1000, high=1500)
    mask = np.zeros(hu.shape, dtype=bool)
    mask[:, :, :2] = True
    # -2000 in 12-bit two's complement written as US 0xF830 (the 16-bit pattern)
    made = write_ct_series(tmp_path / "ct", nslices=2, hu=hu, pixel_representation=1,
                           bits_stored=12, rescale_intercept=0, padding_value=-2000,
                           padding_mask=mask, padding_vr="US", junk_high_bits=True)
    image = read_series(made.folder)
    np.testing.assert_array_equal(image.array, np.where(mask, -1000, hu)[made.order()])
    assert image.padding_voxels == int(mask.sum())


def test_padding_range_limit(tmp_path):
    hu = phantom_values((2, 20, 16), seed=8, low=-1000, high=1000)
    hu[0, 0, :4] = [-3000, -2500, -2001, -1999]  # the first three inside [-3024, -2001]
    made = write_ct_series(tmp_path / "ct", nslices=2, hu=hu, pixel_representation=1,
                           bits_stored=16, rescale_intercept=0, padding_value=-2001,
                           padding_range_limit=-3024)
    image = read_series(made.folder)
    expected = hu.copy()
    expected[0, 0, :3] = -1000
    np.testing.assert_array_equal(image.array, expected[made.order()])
    assert image.padding_voxels == 3


# ------------------------------------------------------------ spacing and tilt
def test_uneven_spacing_is_detected_and_reported(tmp_path):
    made = write_ct_series(tmp_path / "ct", nslices=5, gaps=[2.5, 2.5, 5.0, 2.0])
    image = read_series(made.folder)
    assert image.uneven_spacing
    np.testing.assert_allclose(image.gaps, [2.5, 2.5, 5.0, 2.0], atol=1e-6)
    warning = next(w for w in image.warnings if "uneven" in w)
    assert "2.000" in warning and "5.000" in warning
    np.testing.assert_array_equal(image.array, made.hu_sorted())


@pytest.mark.parametrize("tilt", [15.0, -20.0, 5.0])
def test_gantry_tilt_is_derived_from_positions(tmp_path, tilt):
    made = write_ct_series(tmp_path / "ct", nslices=6, tilt_degrees=tilt, spacing=3.0)
    image = read_series(made.folder)
    assert abs(image.tilt_degrees - tilt) < 0.01
    assert image.nominal_tilt == pytest.approx(tilt)
    assert any("gantry tilt" in w for w in image.warnings)
    assert not any("Gantry/Detector Tilt" in w for w in image.warnings)
    row, col, _ = gantry_tilt_frame(tilt)
    np.testing.assert_allclose(image.stack.row_direction, row, atol=1e-9)
    np.testing.assert_allclose(image.stack.column_direction, col, atol=1e-9)
    np.testing.assert_array_equal(image.array, made.hu_sorted())


def test_to_volume(tmp_path):
    made = write_ct_series(tmp_path / "ct", nslices=4, tilt_degrees=15.0, spacing=3.0)
    volume = read_series(made.folder).to_volume()
    assert volume.grid.shape == (4, 20, 16)
    k = np.array([0.0, 0.0, 3.0])
    np.testing.assert_allclose(volume.grid.index_to_patient(k), made.positions[3], atol=1e-6)
    uneven = write_ct_series(tmp_path / "uneven", nslices=4, gaps=[2.0, 2.0, 3.0])
    with pytest.raises(GeometryError):
        read_series(uneven.folder).to_volume()


def test_nominal_tilt_sign_is_not_a_mismatch_but_magnitude_is(tmp_path):
    flipped = write_ct_series(tmp_path / "a", tilt_degrees=15.0, gantry_tilt=-15.0)
    assert not any("Gantry/Detector Tilt" in w for w in read_series(flipped.folder).warnings)
    wrong = write_ct_series(tmp_path / "b", tilt_degrees=15.0, gantry_tilt=10.0)
    image = read_series(wrong.folder)
    assert image.nominal_tilt == 10.0
    assert any("Gantry/Detector Tilt" in w and "10" in w for w in image.warnings)
    untilted = write_ct_series(tmp_path / "c", gantry_tilt=0.0)
    assert read_series(untilted.folder).warnings == []
    claims = write_ct_series(tmp_path / "d", gantry_tilt=12.0)
    assert any("Gantry/Detector Tilt" in w for w in read_series(claims.folder).warnings)


# --------------------------------------------------------------- bad input
def _slices(**kwargs):
    nk = kwargs.pop("nslices", 4)
    positions = kwargs.pop("positions", None)
    if positions is None:
        positions = slice_positions(nk, (0, 0, 1))
    return make_slices(phantom_values((nk, 20, 16)), positions, **kwargs)


def _write_with_bad(tmp_path, mutate, index: int = 2, **kwargs) -> tuple[Path, Path]:
    datasets = _slices(**kwargs)
    mutate(datasets[index])
    paths = write_series(tmp_path / "ct", datasets, shuffle=False)
    return tmp_path / "ct", paths[index]


@pytest.mark.parametrize(("mutate", "match"), [
    (lambda ds: setattr(ds, "ImageOrientationPatient", [1, 0, 0, 0, 0.9998, 0.02]),
     "ImageOrientationPatient"),
    (lambda ds: setattr(ds, "PixelSpacing", [0.8, 0.75]), "PixelSpacing"),
    (lambda ds: delattr(ds, "ImagePositionPatient"), "ImagePositionPatient"),
    (lambda ds: delattr(ds, "ImageOrientationPatient"), "ImageOrientationPatient"),
    (lambda ds: delattr(ds, "PixelSpacing"), "PixelSpacing"),
    (lambda ds: setattr(ds, "ImageOrientationPatient", [1, 0, 0, 1, 0, 0]),
     "ImageOrientationPatient"),
    (lambda ds: ds.add_new("ImagePositionPatient", "LO", ["0", "abc", "0"]),
     "ImagePositionPatient"),
    (lambda ds: delattr(ds, "PixelData"), "Pixel Data"),
    (lambda ds: setattr(ds, "PixelData", ds.PixelData[:-20]), "truncated Pixel Data"),
    (lambda ds: setattr(ds, "SamplesPerPixel", 3), "SamplesPerPixel"),
    (lambda ds: setattr(ds, "PhotometricInterpretation", "PALETTE COLOR"),
     "PhotometricInterpretation"),
    (lambda ds: setattr(ds, "PhotometricInterpretation", "RGB"), "PhotometricInterpretation"),
    (lambda ds: setattr(ds, "NumberOfFrames", 2), "NumberOfFrames"),
    (lambda ds: setattr(ds, "RescaleSlope", 0), "RescaleSlope"),
    (lambda ds: delattr(ds, "Rows"), "Rows"),
])
def test_bad_slice_is_named(tmp_path, mutate, match):
    folder, bad = _write_with_bad(tmp_path, mutate)
    err = _raises_naming(bad, read_series, folder, match=match)
    assert err.path == str(bad)


def test_bits_allocated_32_is_rejected(tmp_path):
    def to_32(ds):
        ds.BitsAllocated = 32
        ds.BitsStored = 32
        ds.HighBit = 31
        ds.PixelData = np.zeros(20 * 16, np.uint32).tobytes()

    folder, bad = _write_with_bad(tmp_path, to_32)
    _raises_naming(bad, read_series, folder, match="BitsAllocated")


def test_mixed_rows_and_columns(tmp_path):
    uid = generate_uid()
    positions = slice_positions(3, (0, 0, 1))
    a = make_slices(phantom_values((2, 20, 16)), positions[:2], series_uid=uid)
    b = make_slices(phantom_values((1, 20, 18)), positions[2:], series_uid=uid)
    paths = write_series(tmp_path / "ct", a + b, shuffle=False)
    _raises_naming(paths[2], read_series, tmp_path / "ct", match="Columns")


def test_duplicate_positions_name_both_files(tmp_path):
    positions = slice_positions(4, (0, 0, 1))
    positions[3] = positions[1]
    datasets = _slices(positions=positions)
    paths = write_series(tmp_path / "ct", datasets, shuffle=False)
    err = _raises_naming(paths[3], read_series, tmp_path / "ct", match="duplicate")
    assert paths[1].name in str(err)


@pytest.mark.parametrize("keep", [200, 600, -100, -1])
def test_truncated_file(tmp_path, keep):
    made = write_ct_series(tmp_path / "ct", shuffle=False)
    bad = made.paths[1]
    data = bad.read_bytes()
    bad.write_bytes(data[:keep])
    _raises_naming(bad, read_series, made.folder, match="truncated")


@pytest.mark.filterwarnings("ignore:End of file reached before delimiter")
@pytest.mark.parametrize("transfer_syntax", ["deflated", "rle", "jpeg-lossless-sv1"])
def test_truncated_compressed_file(tmp_path, transfer_syntax):
    made = write_ct_series(tmp_path / "ct", shuffle=False, transfer_syntax=transfer_syntax)
    bad = made.paths[2]
    bad.write_bytes(bad.read_bytes()[:-60])
    _raises_naming(bad, read_series, made.folder, match="truncated")


def test_transfer_syntax_without_decoder(tmp_path):
    made = write_ct_series(tmp_path / "ct", nslices=2, transfer_syntax="jpeg-lossless-sv1")
    ds = pydicom.dcmread(made.paths[0])
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    ds.save_as(made.paths[0])
    _raises_naming(made.paths[0], read_series, made.folder, match="decoder")


@pytest.mark.parametrize("content", [
    b"just some notes about this patient\n" * 20,
    b"\x89PNG\r\n\x1a\n" + bytes(200),
    b"",
    bytes(range(256)) * 3,
])
def test_non_dicom_file_is_named(tmp_path, content):
    made = write_ct_series(tmp_path / "ct", nslices=2)
    junk = made.folder / "notes.txt"
    junk.write_bytes(content)
    _raises_naming(junk, read_series, made.folder, match="not a DICOM file")
    _raises_naming(junk, read_series, [*made.paths, junk], match="not a DICOM file")
    image = read_series(made.folder, strict=False)
    np.testing.assert_array_equal(image.array, made.hu_sorted())


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    _raises_naming(tmp_path / "empty", read_series, tmp_path / "empty", match="no files")
    _raises_naming(tmp_path / "empty", discover_series, tmp_path / "empty")


def test_missing_path(tmp_path):
    _raises_naming(tmp_path / "nope", read_series, tmp_path / "nope")


def test_two_series_need_a_series_uid(tmp_path):
    a = write_ct_series(tmp_path / "both" / "a", nslices=3, seed=1)
    b = write_ct_series(tmp_path / "both" / "b", nslices=2, seed=2, series_description="second")
    err = _raises_naming(tmp_path / "both", read_series, tmp_path / "both", match="series_uid")
    assert a.series_uid in str(err) and b.series_uid in str(err)
    image = read_series(tmp_path / "both", series_uid=b.series_uid)
    assert image.series_uid == b.series_uid
    np.testing.assert_array_equal(image.array, b.hu_sorted())
    _raises_naming(tmp_path / "both", read_series, tmp_path / "both", series_uid="1.2.3")


def test_folder_with_only_non_images(tmp_path):
    shutil.copy(pydicom_file("rtstruct.dcm"), tmp_path / "rs.dcm")
    _raises_naming(tmp_path, read_series, tmp_path, match="no image series")


# ---------------------------------------------------------------- discovery
@pytest.fixture
def mixed_folder(tmp_path) -> tuple[Path, object, object]:
    root = tmp_path / "archive"
    ct = write_ct_series(root / "patient" / "ct", nslices=3, seed=1, series_description="CT")
    mr = write_ct_series(root / "patient" / "mr", nslices=2, seed=2, modality="MR",
                         transfer_syntax="implicit", part10=False)
    shutil.copy(pydicom_file("rtstruct.dcm"), root / "patient" / "rtstruct.dcm")
    shutil.copy(pydicom_file("rtdose.dcm"), root / "patient" / "rtdose.dcm")
    (root / "patient" / "README.txt").write_text("not dicom\n")
    (root / "patient" / ".hidden").write_text("ignored\n")
    # DICOM, but cut inside its File Meta Information: damaged, not "not DICOM".
    (root / "patient" / "damaged.dcm").write_bytes(ct.paths[0].read_bytes()[:150])
    return root, ct, mr


def test_discover_groups_series_and_skips_the_rest(mixed_folder):
    root, ct, mr = mixed_folder
    found = discover_series(root)
    assert isinstance(found, DiscoveryResult)
    by_uid = {s.series_uid: s for s in found.series}
    assert set(by_uid) == {ct.series_uid, mr.series_uid}
    assert sorted(by_uid[ct.series_uid].paths) == sorted(ct.paths)
    assert by_uid[ct.series_uid].modality == "CT" and by_uid[mr.series_uid].modality == "MR"
    assert by_uid[ct.series_uid].description == "CT"
    assert by_uid[ct.series_uid].patient_id == "RTF-TEST"
    assert by_uid[ct.series_uid].study_uid == str(ct.datasets[0].StudyInstanceUID)
    reasons = {p.name: why for p, why in found.skipped}
    assert "RTSTRUCT" in reasons["rtstruct.dcm"]  # read although it has no preamble
    assert "RT Dose" in reasons["rtdose.dcm"]
    assert "not a DICOM file" in reasons["README.txt"]
    assert "not a DICOM file" not in reasons["damaged.dcm"]
    assert "hidden" in reasons[".hidden"]


@pytest.mark.parametrize("kind", ["threads", "processes"])
def test_discover_with_an_executor_finds_exactly_the_same(mixed_folder, monkeypatch, kind):
    import threading
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    import rtforge.io.series as series_module
    from rtforge.workflows._forkserver import start_forkserver

    root, _, _ = mixed_folder
    expected = discover_series(root)
    with pytest.raises(InvalidInputError) as sequential_error:
        discover_series(root, strict=True)
    # Small chunks, so that this small folder is shared between this thread and workers.
    monkeypatch.setattr(series_module, "_SCAN_CHUNK", 1)
    monkeypatch.setattr(series_module, "_PARALLEL_SCAN_CHUNKS", 2)
    scanned_by: list[str] = []
    real = series_module._scan_files
    worker_done = threading.Event()

    def recording(paths, wanted):
        name = threading.current_thread().name
        if name == threading.main_thread().name:
            worker_done.wait(10)  # so that both sides surely scan something
        scanned_by.append(name)
        result = real(paths, wanted)
        if name != threading.main_thread().name:
            worker_done.set()
        return result

    if kind == "threads":
        monkeypatch.setattr(series_module, "_scan_files", recording)
        executor = ThreadPoolExecutor(2, thread_name_prefix="scanner")
    else:
        executor = ProcessPoolExecutor(2, mp_context=start_forkserver())
    with executor:
        assert discover_series(root, executor=executor) == expected
        with pytest.raises(InvalidInputError) as parallel_error:
            discover_series(root, strict=True, executor=executor)
    assert str(parallel_error.value) == str(sequential_error.value)  # the same first error
    if kind == "threads":
        assert any(name.startswith("scanner") for name in scanned_by)
        assert threading.main_thread().name in scanned_by


def test_discover_strict_skips_what_is_not_dicom_and_raises_on_damage(mixed_folder):
    root, _, _ = mixed_folder
    _raises_naming(root / "patient" / "damaged.dcm", discover_series, root, strict=True)
    (root / "patient" / "damaged.dcm").unlink()
    found = discover_series(root, strict=True)  # a note beside the slices is not a failure
    assert "README.txt" in {p.name for p, _ in found.skipped}


def test_discover_modalities(mixed_folder):
    root, ct, mr = mixed_folder
    found = discover_series(root, modalities={"ct"})
    assert [s.series_uid for s in found.series] == [ct.series_uid]
    assert sum("modality MR" in why for _, why in found.skipped) == 2
    _raises_naming(root, discover_series, root, modalities=["PT"], match="no image series")


def test_discovered_series_read_back(mixed_folder):
    root, ct, _ = mixed_folder
    found = discover_series(root, modalities=["CT"])
    image = read_series(list(found.series[0].paths))
    np.testing.assert_array_equal(image.array, ct.hu_sorted())
    # a folder holding one image series plus RT objects reads the series
    image = read_series(root / "patient" / "ct")
    np.testing.assert_array_equal(image.array, ct.hu_sorted())


@pytest.mark.parametrize("name", ["DICOMDIR", "index.dcm"])
def test_a_dicomdir_is_skipped(tmp_path, name):
    ct = write_ct_series(tmp_path / "ct", nslices=3)
    fileset = pydicom.fileset.FileSet()
    for path in ct.paths:
        fileset.add(path)
    fileset.write(tmp_path / "media")
    if name != "DICOMDIR":
        (tmp_path / "media" / "DICOMDIR").rename(tmp_path / "media" / name)
    found = discover_series(tmp_path / "media")
    assert [s.series_uid for s in found.series] == [ct.series_uid]
    assert [(p.name, "DICOMDIR" in why) for p, why in found.skipped] == [(name, True)]
    np.testing.assert_array_equal(read_series(tmp_path / "media").array, ct.hu_sorted())


def test_discover_does_not_read_pixel_data(tmp_path, monkeypatch):
    made = write_ct_series(tmp_path / "ct", nslices=2)
    calls = []
    original = series_module.read_partial

    def spy(fp, stop_when=None, **kwargs):
        ds = original(fp, stop_when=stop_when, **kwargs)
        calls.append(fp.tell())
        return ds

    monkeypatch.setattr(series_module, "read_partial", spy)
    discover_series(made.folder)
    sizes = [p.stat().st_size for p in sorted(made.paths)]
    assert len(calls) == 2 and all(pos < size - 20 * 16 * 2 for pos, size in zip(
        calls, sizes, strict=True))


def test_single_file_write_dataset_round_trip(tmp_path):
    # the factory's own building blocks compose: one slice, one file
    ds = make_slices(phantom_values((1, 20, 16)), slice_positions(1, (0, 0, 1)))[0]
    path = write_dataset(tmp_path / "one.dcm", ds, transfer_syntax="big")
    image = read_series(path)
    assert image.array.shape == (1, 20, 16) and image.stack.nslices == 1


def test_files_without_part10_meta_are_read_and_said(tmp_path) -> None:
    bare = write_ct_series(tmp_path / "bare", nslices=3, seed=4, part10=False)
    assert bare.paths[0].read_bytes()[128:132] != b"DICM"
    image = read_series(bare.folder)
    assert image.array.shape[0] == 3
    assert "3 of 3 files have no Part 10 file meta" in " ".join(image.warnings)
    part10 = write_ct_series(tmp_path / "part10", nslices=3, seed=4)
    assert not any("Part 10" in w for w in read_series(part10.folder).warnings)
