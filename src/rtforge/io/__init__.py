"""DICOM translation: series readers, IOD builders and parsers, file sets, UIDs.

Public names are imported on first use (:mod:`rtforge._lazy`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rtforge._lazy import lazy_exports

if TYPE_CHECKING:  # type checkers and IDEs see the names directly
    from rtforge.io.ct import CTSeriesWriter, CTWriteReport, PixelStorage, write_ct_series  # noqa: F401
    from rtforge.io.deid import deidentify, load_trial  # noqa: F401
    from rtforge.io.fileset import parse_transfer_syntax, series_dir, write_dataset_file  # noqa: F401
    from rtforge.io.integrity import check_dataset, read_checked  # noqa: F401
    from rtforge.io.media import export_media, scan_media  # noqa: F401
    from rtforge.io.modules import format_ds  # noqa: F401
    from rtforge.io.references import check_references  # noqa: F401
    from rtforge.io.registration import build_registration, read_registration  # noqa: F401
    from rtforge.io.relink import relink  # noqa: F401
    from rtforge.io.rtdose import build_dose_grid, build_dvh_dose, build_point_dose, read_rtdose  # noqa: F401
    from rtforge.io.rtimage import build_rt_image, write_drrs  # noqa: F401
    from rtforge.io.rtplan import build_brachy_rtplan, build_rtplan, read_rtplan, split_rtplan  # noqa: F401
    from rtforge.io.rtstruct import build_rtstruct, read_rtstruct, write_rtstruct  # noqa: F401
    from rtforge.io.series import (  # noqa: F401
        DiscoveryResult,
        ImageSeries,
        SeriesInfo,
        discover_series,
        read_series,
    )
    from rtforge.io.uids import derived_uid, new_uid  # noqa: F401
    from rtforge.io.validate import ValidationResult, dciodvfy_available, validate_file  # noqa: F401

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
    "check_dataset": "integrity",
    "read_checked": "integrity",
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
