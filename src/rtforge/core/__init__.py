"""Arrays and geometry: no pydicom anywhere below this package.

The names below are imported on first use (PEP 562), so that importing
one kernel module does not compile or load every other one.

Public names are imported on first use (:mod:`rtforge._lazy`).
"""

from __future__ import annotations

from rtforge._lazy import lazy_exports

#: Where each public name lives.
_EXPORTS = {
    "Grid": "geometry",
    "SliceStack": "geometry",
    "Volume": "geometry",
    "bounding_grid": "geometry",
    "BeamGeometry": "beam",
    "PatientPosition": "beam",
    "Interpolation": "reslice",
    "default_output_grid": "reslice",
    "is_exact_reindex": "reslice",
    "reslice": "reslice",
    "Contour": "contours",
    "ContourGeometricType": "contours",
    "ReductionMethod": "contours",
    "RTROIInterpretedType": "contours",
    "Structure": "contours",
    "hausdorff_distance": "contours",
    "polygon_area": "contours",
    "reduce_contours": "contours",
    "contours_to_mask": "masks",
    "mask_to_contours": "masks",
    "Attenuation": "drr",
    "compute_drr": "drr",
    "prepare_volume": "drr",
    "quantize": "drr",
    "quantize_dose": "dosegrid",
    "dequantize_dose": "dosegrid",
    "resample_dose": "dosegrid",
    "sum_doses": "dosegrid",
    "DVH": "dvh",
    "EndCap": "dvh",
    "compute_dvh": "dvh",
    "compute_dvhs": "dvh",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

# A name that is also its submodule's name must be bound now: importing the
# submodule later would set the package attribute to the module instead.
from rtforge.core.reslice import reslice  # noqa: E402, F401
