"""DICOM translation: series readers, IOD builders and parsers, file sets, UIDs.

Public names are imported on first use (:mod:`rtforge._lazy`).
"""

from __future__ import annotations

from rtforge._lazy import lazy_exports

#: Where each public name lives.
_EXPORTS = {
    "CTSeriesWriter": "ct",
    "CTWriteReport": "ct",
    "PixelStorage": "ct",
    "write_ct_series": "ct",
    "parse_transfer_syntax": "fileset",
    "series_dir": "fileset",
    "write_dataset_file": "fileset",
    "format_ds": "modules",
    "deidentify": "deid",
    "load_trial": "deid",
    "export_media": "media",
    "scan_media": "media",
    "check_references": "references",
    "build_registration": "registration",
    "read_registration": "registration",
    "relink": "relink",
    "build_dose_grid": "rtdose",
    "build_dvh_dose": "rtdose",
    "build_point_dose": "rtdose",
    "read_rtdose": "rtdose",
    "build_rt_image": "rtimage",
    "write_drrs": "rtimage",
    "build_brachy_rtplan": "rtplan",
    "build_rtplan": "rtplan",
    "read_rtplan": "rtplan",
    "split_rtplan": "rtplan",
    "build_rtstruct": "rtstruct",
    "read_rtstruct": "rtstruct",
    "write_rtstruct": "rtstruct",
    "DiscoveryResult": "series",
    "ImageSeries": "series",
    "SeriesInfo": "series",
    "discover_series": "series",
    "read_series": "series",
    "derived_uid": "uids",
    "new_uid": "uids",
    "ValidationResult": "validate",
    "dciodvfy_available": "validate",
    "validate_file": "validate",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

# A name that is also its submodule's name must be bound now: importing the
# submodule later would set the package attribute to the module instead.
from rtforge.io.relink import relink  # noqa: E402, F401
