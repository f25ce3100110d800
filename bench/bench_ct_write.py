"""Time writing 200 slices of 512x512: rtforge CTSeriesWriter vs plain pydicom."""

import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
from pydicom import Dataset, dcmwrite
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from rtforge.core.geometry import SliceStack
from rtforge.io.ct import CTSeriesWriter

N, R, C = 200, 512, 512
fsync = "--fsync" in sys.argv
rng = np.random.default_rng(0)
vol = rng.integers(-1024, 3000, size=(N, R, C), dtype=np.int16)
stack = SliceStack(
    positions=[[-250.0, -250.0, -100 + 1.25 * k] for k in range(N)],
    row_direction=(1, 0, 0),
    column_direction=(0, 1, 0),
    pixel_spacing=(0.9765625, 0.9765625),
    rows=R,
    columns=C,
)
src = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
refs = [[(CTImageStorage, f"1.2.3.{k}"), (CTImageStorage, f"1.2.3.{k + 1}")] for k in range(N)]
base = Path(tempfile.mkdtemp(dir="/tmp"))


def rtforge_write(out):
    w = CTSeriesWriter(stack, out, source=src, source_references=refs, fsync=fsync)
    for k0 in range(0, N, 20):
        w.write(k0, vol[k0 : k0 + 20])
    return w.close()


def pydicom_write(out):
    """Plain pydicom: build each slice's data set from the source attributes, dcmwrite."""
    out.mkdir(parents=True)
    series = generate_uid()
    for k in range(N):
        ds = Dataset()
        for kw in (
            "PatientName",
            "PatientID",
            "PatientBirthDate",
            "PatientSex",
            "StudyDate",
            "StudyTime",
            "AccessionNumber",
            "ReferringPhysicianName",
            "StudyID",
            "StudyDescription",
            "StudyInstanceUID",
            "FrameOfReferenceUID",
            "PositionReferenceIndicator",
            "KVP",
            "AcquisitionNumber",
            "PatientPosition",
            "SeriesNumber",
            "PatientAge",
            "PatientWeight",
        ):
            if kw in src:
                setattr(ds, kw, src.data_element(kw).value)
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.InstanceCreationDate = ds.ContentDate = ds.SeriesDate = "20250101"
        ds.InstanceCreationTime = ds.ContentTime = ds.SeriesTime = "120000"
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.Modality = "CT"
        ds.Manufacturer = "rtforge"
        ds.ManufacturerModelName = "rtforge"
        ds.SoftwareVersions = "0.1.0"
        ds.StationName = "bench"
        ds.SeriesDescription = "CT resliced"
        ds.DerivationDescription = "Resliced to axial orientation by rtforge"
        items = []
        for c, i in refs[k]:
            it = Dataset()
            it.ReferencedSOPClassUID = c
            it.ReferencedSOPInstanceUID = i
            items.append(it)
        ds.SourceImageSequence = items
        ds.SeriesInstanceUID = series
        ds.InstanceNumber = k + 1
        ds.Laterality = None
        ds.ImagePositionPatient = [str(v) for v in stack.positions[k]]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceLocation = str(stack.positions[k][2])
        ds.SliceThickness = 1.25
        ds.PixelSpacing = [0.9765625, 0.9765625]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = R, C
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.PixelData = (np.maximum(vol[k], -1024).astype(np.int32) + 1024).astype("<u2").tobytes()
        ds["PixelData"].VR = "OW"
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        dcmwrite(out / f"{ds.SOPInstanceUID}.dcm", ds, enforce_file_format=True)


def pydicom_dcmwrite_only(out):
    """Only dcmwrite of data sets built beforehand (the issue's 0.46 s figure)."""
    out.mkdir(parents=True)
    for k, ds in enumerate(PREBUILT):
        dcmwrite(out / f"{k}.dcm", ds, enforce_file_format=True)


def best(fn, name, repeat=5):
    times = []
    for r in range(repeat):
        out = base / f"{name}{r}"
        t = time.perf_counter()
        fn(out)
        times.append(time.perf_counter() - t)
        shutil.rmtree(out)
    return min(times), float(np.median(times))


rtforge_write(base / "warm")
shutil.rmtree(base / "warm")
t_rt = best(rtforge_write, "rt")
t_pd = best(pydicom_write, "pd")
_w = CTSeriesWriter(stack, base / "pre", source=src, source_references=refs, fsync=False)
PREBUILT = [_w.instance_dataset(k, vol[k]) for k in range(N)]
t_dw = best(pydicom_dcmwrite_only, "dw")
print(
    f"200 slices 512x512, fsync={fsync}: rtforge CTSeriesWriter min {t_rt[0]:.3f} s "
    f"(median {t_rt[1]:.3f}); pydicom build+dcmwrite min {t_pd[0]:.3f} s (median {t_pd[1]:.3f}); "
    f"ratio {t_pd[0] / t_rt[0]:.1f}x; dcmwrite alone of prebuilt data sets min {t_dw[0]:.3f} s "
    f"(ratio {t_dw[0] / t_rt[0]:.1f}x)"
)
shutil.rmtree(base)
