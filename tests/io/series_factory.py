"""Synthetic image series for tests, written with pydicom (test-only helper).

Every function is deterministic (seeded) and small by default.  A test picks
the geometry, the HU values it expects back, and how the files are encoded;
the factory computes the stored values and writes the files.

Typical use::

    series = write_ct_series(tmp_path / "ct", nslices=5, tilt_degrees=15.0,
                             transfer_syntax="rle")
    image = read_series(series.folder)
    assert np.array_equal(image.array, series.hu_sorted())

Building blocks, for anything the convenience function does not cover:

- :func:`phantom_values` — seeded HU values of a given shape;
- :func:`gantry_tilt_frame`, :func:`oblique_frame` — orientations;
- :func:`slice_positions` — Image Position (Patient) of each slice, even or
  uneven, along any stacking direction;
- :func:`make_slices` — pydicom data sets (stored values, rescale, padding,
  bits, signedness);
- :func:`write_dataset`, :func:`write_series` — files in any of
  :data:`TRANSFER_SYNTAXES`, with or without the Part 10 header;
- :func:`encode_jpeg_lossless`, :func:`encode_jpeg_baseline` — JPEG
  encoders (a minimal lossless encoder written here from ITU-T T.81 Annex H,
  and Pillow for baseline) so compressed input is checked against
  independently known values.

Coordinates follow rtforge: arrays ``[k, j, i]`` (slice, row, column),
patient ``(x, y, z)`` in mm (LPS), pixel spacing as ``(si, sj)`` (column
spacing, row spacing; DICOM writes Pixel Spacing the other way round).
"""

from __future__ import annotations

import copy
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    MRImageStorage,
    PositronEmissionTomographyImageStorage,
    RLELossless,
    generate_uid,
)
from pydicom.valuerep import DSfloat

__all__ = [
    "TRANSFER_SYNTAXES",
    "SyntheticSeries",
    "phantom_values",
    "gantry_tilt_frame",
    "oblique_frame",
    "slice_positions",
    "make_slices",
    "write_dataset",
    "write_series",
    "write_ct_series",
    "encode_jpeg_lossless",
    "encode_jpeg_baseline",
    "stored_values",
]

TRANSFER_SYNTAXES: dict[str, UID] = {
    "implicit": ImplicitVRLittleEndian,
    "explicit": ExplicitVRLittleEndian,
    "big": ExplicitVRBigEndian,
    "deflated": DeflatedExplicitVRLittleEndian,
    "rle": RLELossless,
    "jpeg-lossless": JPEGLossless,  # process 14, predictor chosen by write_dataset
    "jpeg-lossless-sv1": JPEGLosslessSV1,
    "jpeg-baseline": JPEGBaseline8Bit,  # 8-bit unsigned only (Pillow)
}
"""Short names accepted wherever a transfer syntax is asked for (a UID works too)."""

_SOP_CLASS = {"CT": CTImageStorage, "MR": MRImageStorage,
              "PT": PositronEmissionTomographyImageStorage}


def _ts(value: str | UID) -> UID:
    key = str(value)
    return TRANSFER_SYNTAXES[key] if key in TRANSFER_SYNTAXES else UID(key)


def _ds(value: float) -> DSfloat:
    return DSfloat(float(value), auto_format=True)


# ----------------------------------------------------------------- values
def phantom_values(shape: tuple[int, int, int], *, seed: int = 0, low: int = -1000,
                   high: int = 2000) -> np.ndarray:
    """Seeded HU values: a smooth body-like ramp plus noise, within ``[low, high]``.

    Parameters
    ----------
    shape : (nk, nj, ni)
    seed : int
    low, high : int
        Inclusive range of the values.

    Returns
    -------
    ndarray of shape ``shape``, dtype int16
        Every slice differs (so a mis-sorted slice is detected).
    """
    rng = np.random.default_rng(seed)
    nk, nj, ni = shape
    k, j, i = np.meshgrid(np.arange(nk), np.arange(nj), np.arange(ni), indexing="ij")
    base = low + (high - low) * (0.15 + 0.5 * ((i + 2 * j) % 17) / 17 + 0.2 * k / max(nk, 1))
    noise = rng.integers(-40, 41, size=shape)
    return np.clip(np.rint(base) + noise, low, high).astype(np.int16)


# --------------------------------------------------------------- geometry
def gantry_tilt_frame(tilt_degrees: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Orientation of an axial acquisition with the gantry tilted about the x axis.

    Returns
    -------
    row_direction, column_direction, stack_direction : ndarray of shape (3,)
        Rows along +x; columns tilted from +y toward +z by ``tilt_degrees``;
        the table moves along +z.  The angle between the stacking direction
        and the slice normal is ``|tilt_degrees|``, and
        :meth:`rtforge.core.geometry.SliceStack.tilt_degrees` returns
        ``+tilt_degrees``.
    """
    t = math.radians(tilt_degrees)
    return (np.array([1.0, 0.0, 0.0]), np.array([0.0, math.cos(t), math.sin(t)]),
            np.array([0.0, 0.0, 1.0]))


def oblique_frame(rx: float, ry: float, rz: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Axial orientation rotated about x, then y, then z (degrees, patient axes).

    Returns
    -------
    row_direction, column_direction, normal : ndarray of shape (3,)
        The first two columns of the rotation matrix, and their cross
        product (the slice normal).
    """
    ax, ay, az = (math.radians(a) for a in (rx, ry, rz))
    rot_x = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    rot_y = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rot_z = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    m = rot_z @ rot_y @ rot_x
    return m[:, 0].copy(), m[:, 1].copy(), m[:, 2].copy()


def slice_positions(nslices: int, direction: Sequence[float] | np.ndarray, *,
                    origin: Sequence[float] = (-10.0, -12.0, 30.0), spacing: float = 2.5,
                    gaps: Sequence[float] | None = None) -> np.ndarray:
    """Image Position (Patient) of each slice, stepping along ``direction``.

    Parameters
    ----------
    nslices : int
    direction : array_like of shape (3,)
        Stacking direction (normalised here): the slice normal for an
        untilted series, the table axis for a gantry-tilted one.  Pass the
        negated normal for a series acquired in decreasing offset.
    origin : array_like of shape (3,)
        Position of the first slice, mm.
    spacing : float
        Distance between neighbouring positions, mm (used when ``gaps`` is None).
    gaps : sequence of float, optional
        ``nslices - 1`` distances between neighbouring positions (uneven spacing).

    Returns
    -------
    ndarray of shape (nslices, 3), dtype float64
    """
    d = np.asarray(direction, dtype=np.float64)
    d = d / np.linalg.norm(d)
    steps = np.full(nslices - 1, float(spacing)) if gaps is None else np.asarray(gaps, float)
    if steps.shape != (nslices - 1,):
        raise ValueError(f"gaps must have {nslices - 1} values, got {steps.shape}")
    distance = np.concatenate([[0.0], np.cumsum(steps)])
    return np.asarray(origin, dtype=np.float64) + distance[:, None] * d[None, :]


# --------------------------------------------------------------- datasets
def _per_slice(value: float | Sequence[float], n: int, name: str) -> list[float]:
    if isinstance(value, (int, float)):
        return [float(value)] * n
    out = [float(v) for v in value]
    if len(out) != n:
        raise ValueError(f"{name} needs {n} values, got {len(out)}")
    return out


def make_slices(hu: np.ndarray, positions: np.ndarray, *,
                row_direction: Sequence[float] = (1.0, 0.0, 0.0),
                column_direction: Sequence[float] = (0.0, 1.0, 0.0),
                pixel_spacing: tuple[float, float] = (0.7, 0.8),
                rescale_slope: float | Sequence[float] = 1.0,
                rescale_intercept: float | Sequence[float] = -1024.0,
                bits_allocated: int = 16, bits_stored: int | None = None,
                high_bit: int | None = None, pixel_representation: int = 0,
                padding_value: int | None = None, padding_range_limit: int | None = None,
                padding_mask: np.ndarray | None = None, padding_vr: str | None = None,
                junk_high_bits: bool = False, photometric: str = "MONOCHROME2",
                modality: str = "CT", series_uid: str | None = None,
                study_uid: str | None = None, frame_of_reference_uid: str | None = None,
                patient_id: str = "RTF-TEST", series_description: str = "synthetic",
                gantry_tilt: float | None = None) -> list[Dataset]:
    """One pydicom data set per slice, in the order of ``positions``.

    Parameters
    ----------
    hu : ndarray of shape (nk, nj, ni)
        The values a reader must return (HU for CT) outside padding voxels.
        Each must be representable: ``(hu - intercept) / slope`` an integer
        within the stored range.
    positions : ndarray of shape (nk, 3)
        Image Position (Patient) per slice.
    row_direction, column_direction : array_like of shape (3,)
        Image Orientation (Patient).
    pixel_spacing : (si, sj)
        Column spacing and row spacing in mm (written to DICOM as ``sj\\si``).
    rescale_slope, rescale_intercept : float or sequence of float
        Per series, or one per slice.
    bits_allocated, bits_stored, high_bit, pixel_representation : int
        Image Pixel module; ``bits_stored`` defaults to 12 for 16-bit
        unsigned, else ``bits_allocated``; ``high_bit`` to ``bits_stored - 1``.
    padding_value, padding_range_limit : int, optional
        Pixel Padding Value / Range Limit in stored-value units.
    padding_mask : ndarray of bool, shape (nk, nj, ni), optional
        Voxels that get the stored ``padding_value`` instead of ``hu``.
    padding_vr : {"US", "SS"}, optional
        VR to write the padding attributes with (default: from the
        signedness); "US" for signed pixels writes the 16-bit pattern, as
        some vendors do.
    junk_high_bits : bool
        Fill the bits outside Bits Stored with a non-zero pattern (a reader
        must mask them off).
    photometric, modality, series_uid, study_uid, frame_of_reference_uid,
    patient_id, series_description : str
        Header values; UIDs are generated when not given.
    gantry_tilt : float, optional
        Gantry/Detector Tilt (0018,1120) to write (nominal; not used for
        geometry).

    Returns
    -------
    list of pydicom.Dataset
        No file meta; Pixel Data holds native little-endian words.

    Raises
    ------
    ValueError
        If a value cannot be represented with the chosen rescale and bits.
    """
    hu = np.asarray(hu)
    nk, nj, ni = hu.shape
    positions = np.asarray(positions, dtype=np.float64)
    if positions.shape != (nk, 3):
        raise ValueError(f"positions must have shape ({nk}, 3), got {positions.shape}")
    signed = pixel_representation == 1
    if bits_stored is None:
        bits_stored = 12 if (bits_allocated == 16 and not signed) else bits_allocated
    if high_bit is None:
        high_bit = bits_stored - 1
    shift = high_bit - bits_stored + 1
    slopes = _per_slice(rescale_slope, nk, "rescale_slope")
    intercepts = _per_slice(rescale_intercept, nk, "rescale_intercept")
    lo = -(1 << (bits_stored - 1)) if signed else 0
    hi = (1 << (bits_stored - 1)) - 1 if signed else (1 << bits_stored) - 1
    word_mask = (1 << bits_allocated) - 1
    field_mask = ((1 << bits_stored) - 1) << shift
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    frame_of_reference_uid = frame_of_reference_uid or generate_uid()
    row = np.asarray(row_direction, dtype=np.float64)
    col = np.asarray(column_direction, dtype=np.float64)
    out = []
    for k in range(nk):
        stored_f = (hu[k].astype(np.float64) - intercepts[k]) / slopes[k]
        stored = np.rint(stored_f).astype(np.int64)
        if not np.allclose(stored, stored_f, atol=1e-9):
            raise ValueError(f"slice {k}: HU values not representable with slope {slopes[k]}")
        if padding_mask is not None:
            if padding_value is None:
                raise ValueError("padding_mask needs padding_value")
            stored[padding_mask[k]] = padding_value
        if stored.min() < lo or stored.max() > hi:
            raise ValueError(f"slice {k}: stored values {stored.min()}..{stored.max()} outside "
                             f"{lo}..{hi} ({bits_stored} bits, signed={signed})")
        words = (stored << shift) & word_mask  # two's complement, sign extended above
        if junk_high_bits:
            junk = 0xA5A5 & word_mask
            words = (words & field_mask) | (junk & ~field_mask & word_mask)
        dtype = np.dtype("<u2") if bits_allocated == 16 else np.dtype("u1")
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SOPClassUID = _SOP_CLASS.get(modality, CTImageStorage)
        ds.SOPInstanceUID = generate_uid()
        ds.StudyDate = "20240101"
        ds.StudyTime = "120000"
        ds.Modality = modality
        ds.Manufacturer = "rtforge tests"
        ds.SeriesDescription = series_description
        ds.PatientName = "Synthetic^Series"
        ds.PatientID = patient_id
        ds.PatientBirthDate = ""
        ds.PatientSex = "O"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = "1"
        ds.SeriesNumber = 1
        ds.InstanceNumber = k + 1
        ds.FrameOfReferenceUID = frame_of_reference_uid
        ds.PositionReferenceIndicator = ""
        ds.ImagePositionPatient = [_ds(v) for v in positions[k]]
        ds.ImageOrientationPatient = [_ds(v) for v in (*row, *col)]
        ds.SliceThickness = _ds(1.0)
        ds.PixelSpacing = [_ds(pixel_spacing[1]), _ds(pixel_spacing[0])]
        if gantry_tilt is not None:
            ds.GantryDetectorTilt = _ds(gantry_tilt)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.Rows = nj
        ds.Columns = ni
        ds.BitsAllocated = bits_allocated
        ds.BitsStored = bits_stored
        ds.HighBit = high_bit
        ds.PixelRepresentation = pixel_representation
        for keyword, value in (("PixelPaddingValue", padding_value),
                               ("PixelPaddingRangeLimit", padding_range_limit)):
            if value is not None:
                vr = padding_vr or ("SS" if signed else "US")
                v = int(value) & 0xFFFF if vr == "US" else int(value)
                ds.add_new(keyword, vr, v)
        ds.RescaleIntercept = _ds(intercepts[k])
        ds.RescaleSlope = _ds(slopes[k])
        if modality == "CT":
            ds.RescaleType = "HU"
        ds.PixelData = words.astype(dtype).tobytes()
        ds["PixelData"].VR = "OW" if bits_allocated == 16 else "OB"
        out.append(ds)
    return out


# ------------------------------------------------------------------ JPEG
def stored_values(ds: Dataset) -> np.ndarray:
    """The stored values of a native little-endian data set from :func:`make_slices`.

    Returns
    -------
    ndarray of shape (rows, columns), dtype int64
        Bits outside Bits Stored removed, sign extended for signed pixels.
    """
    dtype = "<u2" if ds.BitsAllocated == 16 else "u1"
    words = np.frombuffer(ds.PixelData, dtype=dtype).astype(np.int64)
    shift = ds.HighBit - ds.BitsStored + 1
    v = (words >> shift) & ((1 << ds.BitsStored) - 1)
    if ds.PixelRepresentation == 1:
        sign = 1 << (ds.BitsStored - 1)
        v = np.where(v >= sign, v - (1 << ds.BitsStored), v)
    return v.reshape(ds.Rows, ds.Columns)


class _BitWriter:
    def __init__(self) -> None:
        self.out = bytearray()
        self.acc = 0
        self.nbits = 0

    def write(self, value: int, nbits: int) -> None:
        self.acc = (self.acc << nbits) | (value & ((1 << nbits) - 1))
        self.nbits += nbits
        while self.nbits >= 8:
            self.nbits -= 8
            byte = (self.acc >> self.nbits) & 0xFF
            self.out.append(byte)
            if byte == 0xFF:
                self.out.append(0x00)  # byte stuffing (T.81 F.1.2.3)
        self.acc &= (1 << self.nbits) - 1

    def flush(self) -> bytes:
        if self.nbits:
            self.write((1 << (8 - self.nbits)) - 1, 8 - self.nbits)  # pad with 1-bits
        return bytes(self.out)


def encode_jpeg_lossless(values: np.ndarray, precision: int, predictor: int = 1) -> bytes:
    """Encode one grayscale frame as lossless JPEG (ITU-T T.81 process 14).

    A minimal, independent encoder: one Huffman table in which every
    difference category 0..16 has a 5-bit code, no restart intervals, point
    transform 0.

    Parameters
    ----------
    values : ndarray of shape (rows, columns), integer
        Stored values; signed values are encoded as their ``precision``-bit
        two's complement pattern (as DICOM requires).
    precision : int
        Sample precision P, 2..16 (Bits Stored).
    predictor : int
        Selection value 1..7 (1 is the "SV1" transfer syntax).

    Returns
    -------
    bytes
        The JPEG stream, SOI to EOI.
    """
    if not 1 <= predictor <= 7 or not 2 <= precision <= 16:
        raise ValueError("predictor must be 1..7 and precision 2..16")
    x = np.asarray(values, dtype=np.int64) & ((1 << precision) - 1)
    rows, cols = x.shape
    pred = np.empty_like(x)
    pred[0, 0] = 1 << (precision - 1)
    pred[0, 1:] = x[0, :-1]
    pred[1:, 0] = x[:-1, 0]
    ra, rb, rc = x[1:, :-1], x[:-1, 1:], x[:-1, :-1]
    inner = {1: ra, 2: rb, 3: rc, 4: ra + rb - rc, 5: ra + ((rb - rc) >> 1),
             6: rb + ((ra - rc) >> 1), 7: (ra + rb) >> 1}[predictor]
    pred[1:, 1:] = inner
    diff = (x - pred) % 65536
    diff = np.where(diff > 32768, diff - 65536, diff)  # T.81 H.1.2.1: modulo 2**16
    bits = _BitWriter()
    for d in diff.ravel().tolist():
        ssss = 0 if d == 0 else abs(d).bit_length()
        bits.write(ssss, 5)  # the code of category s is s, 5 bits long
        if 0 < ssss < 16:
            bits.write(d if d > 0 else d + (1 << ssss) - 1, ssss)
    scan = bits.flush()

    def segment(marker: int, payload: bytes) -> bytes:
        return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload

    counts = bytes([0, 0, 0, 0, 17] + [0] * 11)
    dht = segment(0xC4, bytes([0x00]) + counts + bytes(range(17)))
    sof3 = segment(0xC3, bytes([precision]) + rows.to_bytes(2, "big") + cols.to_bytes(2, "big")
                   + bytes([1, 1, 0x11, 0]))
    sos = segment(0xDA, bytes([1, 1, 0x00, predictor, 0, 0]))
    return b"\xff\xd8" + sof3 + dht + sos + scan + b"\xff\xd9"


def encode_jpeg_baseline(values: np.ndarray, quality: int = 90) -> bytes:
    """Encode one 8-bit grayscale frame as baseline JPEG with Pillow.

    Parameters
    ----------
    values : ndarray of shape (rows, columns), values 0..255
    quality : int

    Returns
    -------
    bytes
    """
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(values, dtype=np.uint8), mode="L").save(
        buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _encapsulate(ds: Dataset, frame: bytes) -> None:
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True


# ----------------------------------------------------------------- files
def write_dataset(path: str | Path, ds: Dataset, *, transfer_syntax: str | UID = "explicit",
                  part10: bool = True, jpeg_predictor: int = 1) -> Path:
    """Write one data set from :func:`make_slices` to ``path``.

    Parameters
    ----------
    path : str or Path
    ds : pydicom.Dataset
        Native little-endian Pixel Data (not modified: a copy is encoded).
    transfer_syntax : str or UID
        A key of :data:`TRANSFER_SYNTAXES` or a UID.
    part10 : bool
        False writes a bare data set: no preamble, no ``DICM``, no file meta
        (only for the uncompressed syntaxes).
    jpeg_predictor : int
        Predictor for ``"jpeg-lossless"`` (process 14); SV1 always uses 1.

    Returns
    -------
    Path
    """
    ts = _ts(transfer_syntax)
    if ts.is_compressed and ds.HighBit != ds.BitsStored - 1:
        raise ValueError("compressed output needs High Bit = Bits Stored - 1")
    ds = copy.deepcopy(ds)
    if ts == ExplicitVRBigEndian and ds.BitsAllocated == 16:
        ds.PixelData = np.frombuffer(ds.PixelData, "<u2").astype(">u2").tobytes()
    elif ts == RLELossless:
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.compress(RLELossless, generate_instance_uid=False)
    elif ts in (JPEGLossless, JPEGLosslessSV1):
        predictor = 1 if ts == JPEGLosslessSV1 else jpeg_predictor
        _encapsulate(ds, encode_jpeg_lossless(stored_values(ds), ds.BitsStored, predictor))
    elif ts == JPEGBaseline8Bit:
        if ds.BitsAllocated != 8 or ds.PixelRepresentation != 0:
            raise ValueError("JPEG Baseline needs 8-bit unsigned pixels")
        _encapsulate(ds, encode_jpeg_baseline(stored_values(ds)))
    path = Path(path)
    if part10:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ts
        meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
        ds.file_meta = meta
        ds.preamble = b"\x00" * 128
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
    else:
        if ts not in (ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian):
            raise ValueError("a bare data set (part10=False) must be uncompressed")
        pydicom.dcmwrite(path, ds, implicit_vr=ts == ImplicitVRLittleEndian,
                         little_endian=ts != ExplicitVRBigEndian)
    return path


def write_series(folder: str | Path, datasets: Sequence[Dataset], *,
                 transfer_syntax: str | UID = "explicit", part10: bool = True,
                 shuffle: bool = True, seed: int = 0, jpeg_predictor: int = 1) -> list[Path]:
    """Write data sets into ``folder`` (created), one file each.

    Parameters
    ----------
    folder : str or Path
    datasets : sequence of pydicom.Dataset
    transfer_syntax, part10, jpeg_predictor
        See :func:`write_dataset`.
    shuffle : bool
        Name the files in a seeded random order, so that name order is not
        slice order.

    Returns
    -------
    list of Path
        One per data set, in the order of ``datasets``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n = len(datasets)
    names = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    return [write_dataset(folder / f"IMG{int(names[k]):04d}.dcm", ds,
                          transfer_syntax=transfer_syntax, part10=part10,
                          jpeg_predictor=jpeg_predictor)
            for k, ds in enumerate(datasets)]


@dataclass
class SyntheticSeries:
    """A series written by :func:`write_ct_series`.

    Attributes
    ----------
    folder : Path
    paths : list of Path
        One per slice, in construction order (``positions`` order).
    datasets : list of pydicom.Dataset
        The data sets as built (native little-endian Pixel Data).
    hu : ndarray of shape (nk, nj, ni), dtype int16
        Expected values after rescale, construction order (padding voxels
        hold what :func:`make_slices` was given; tests decide what a reader
        must return there).
    positions : ndarray of shape (nk, 3)
    row_direction, column_direction : ndarray of shape (3,)
    pixel_spacing : (si, sj)
    series_uid : str
    """

    folder: Path
    paths: list[Path]
    datasets: list[Dataset]
    hu: np.ndarray
    positions: np.ndarray
    row_direction: np.ndarray
    column_direction: np.ndarray
    pixel_spacing: tuple[float, float]
    series_uid: str

    @property
    def normal(self) -> np.ndarray:
        """Unit slice normal ``row × column``."""
        n = np.cross(self.row_direction, self.column_direction)
        return n / np.linalg.norm(n)

    def order(self) -> np.ndarray:
        """Indices that sort the slices by increasing offset along the normal."""
        return np.argsort(self.positions @ self.normal, kind="stable")

    def hu_sorted(self) -> np.ndarray:
        """:attr:`hu` in increasing offset along the normal (what a reader returns)."""
        return self.hu[self.order()]


def write_ct_series(folder: str | Path, *, nslices: int = 4, rows: int = 20, columns: int = 16,
                    row_direction: Sequence[float] | None = None,
                    column_direction: Sequence[float] | None = None,
                    stack_direction: Sequence[float] | None = None,
                    tilt_degrees: float | None = None, spacing: float = 2.5,
                    gaps: Sequence[float] | None = None,
                    origin: Sequence[float] = (-10.0, -12.0, 30.0),
                    hu: np.ndarray | None = None, seed: int = 0,
                    transfer_syntax: str | UID = "explicit", part10: bool = True,
                    shuffle: bool = True, jpeg_predictor: int = 1,
                    **slice_kwargs: object) -> SyntheticSeries:
    """Build and write a small synthetic series in one call.

    Parameters
    ----------
    folder : str or Path
    nslices, rows, columns : int
    row_direction, column_direction : array_like of shape (3,), optional
        Orientation; default axial (1,0,0) / (0,1,0).  Ignored when
        ``tilt_degrees`` is given.
    stack_direction : array_like of shape (3,), optional
        Stacking direction; default the slice normal.
    tilt_degrees : float, optional
        A gantry-tilted axial series (:func:`gantry_tilt_frame`); also
        written as the nominal Gantry/Detector Tilt unless ``gantry_tilt``
        is passed.
    spacing, gaps, origin
        See :func:`slice_positions`.
    hu : ndarray of shape (nslices, rows, columns), optional
        Values to write; default :func:`phantom_values` with ``seed``.
    transfer_syntax, part10, shuffle, jpeg_predictor
        See :func:`write_series`.
    **slice_kwargs
        Passed to :func:`make_slices` (rescale, bits, padding, UIDs, ...).

    Returns
    -------
    SyntheticSeries
    """
    if tilt_degrees is not None:
        row, col, stack = gantry_tilt_frame(tilt_degrees)
        slice_kwargs.setdefault("gantry_tilt", tilt_degrees)
    else:
        row = np.asarray(row_direction if row_direction is not None else (1.0, 0.0, 0.0), float)
        col = np.asarray(column_direction if column_direction is not None else (0.0, 1.0, 0.0),
                         float)
        stack = np.cross(row, col) if stack_direction is None else np.asarray(stack_direction)
    if hu is None:
        hu = phantom_values((nslices, rows, columns), seed=seed)
    positions = slice_positions(nslices, stack, origin=origin, spacing=spacing, gaps=gaps)
    pixel_spacing = slice_kwargs.pop("pixel_spacing", (0.7, 0.8))
    datasets = make_slices(hu, positions, row_direction=row, column_direction=col,
                           pixel_spacing=pixel_spacing, **slice_kwargs)  # type: ignore[arg-type]
    paths = write_series(folder, datasets, transfer_syntax=transfer_syntax, part10=part10,
                         shuffle=shuffle, seed=seed, jpeg_predictor=jpeg_predictor)
    return SyntheticSeries(folder=Path(folder), paths=paths, datasets=datasets,
                           hu=np.asarray(hu, dtype=np.int16), positions=positions,
                           row_direction=row, column_direction=col,
                           pixel_spacing=tuple(pixel_spacing),  # type: ignore[arg-type]
                           series_uid=str(datasets[0].SeriesInstanceUID))
