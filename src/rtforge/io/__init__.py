"""DICOM translation: series readers, IOD builders and parsers, file sets, UIDs."""

from rtforge.io.ct import CTSeriesWriter, CTWriteReport, PixelStorage, write_ct_series
from rtforge.io.deid import deidentify, load_trial
from rtforge.io.fileset import parse_transfer_syntax, series_dir, write_dataset_file
from rtforge.io.media import export_media, scan_media
from rtforge.io.modules import format_ds
from rtforge.io.references import check_references
from rtforge.io.registration import build_registration, read_registration
from rtforge.io.relink import relink
from rtforge.io.rtdose import build_dose_grid, build_dvh_dose, build_point_dose, read_rtdose
from rtforge.io.rtimage import build_rt_image, write_drrs
from rtforge.io.rtplan import build_brachy_rtplan, build_rtplan, read_rtplan, split_rtplan
from rtforge.io.rtstruct import build_rtstruct, read_rtstruct, write_rtstruct
from rtforge.io.series import (
    DiscoveryResult,
    ImageSeries,
    SeriesInfo,
    discover_series,
    read_series,
)
from rtforge.io.uids import derived_uid, new_uid
from rtforge.io.validate import ValidationResult, dciodvfy_available, validate_file

__all__ = [
    "CTSeriesWriter",
    "CTWriteReport",
    "PixelStorage",
    "write_ct_series",
    "parse_transfer_syntax",
    "series_dir",
    "write_dataset_file",
    "format_ds",
    "deidentify",
    "load_trial",
    "export_media",
    "scan_media",
    "check_references",
    "build_registration",
    "read_registration",
    "relink",
    "build_dose_grid",
    "build_dvh_dose",
    "build_point_dose",
    "read_rtdose",
    "build_rt_image",
    "write_drrs",
    "build_brachy_rtplan",
    "build_rtplan",
    "read_rtplan",
    "split_rtplan",
    "build_rtstruct",
    "read_rtstruct",
    "write_rtstruct",
    "DiscoveryResult",
    "ImageSeries",
    "SeriesInfo",
    "discover_series",
    "read_series",
    "derived_uid",
    "new_uid",
    "ValidationResult",
    "dciodvfy_available",
    "validate_file",
]
