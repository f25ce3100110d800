"""DICOM translation: series readers, IOD builders and parsers, file sets, UIDs."""

from rtforge.io.ct import CTSeriesWriter, CTWriteReport, PixelStorage, write_ct_series
from rtforge.io.fileset import parse_transfer_syntax, series_dir, write_dataset_file
from rtforge.io.modules import format_ds
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
