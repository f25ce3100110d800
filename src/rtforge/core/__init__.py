"""Arrays and geometry: no pydicom anywhere below this package.

The names below are imported on first use (PEP 562), so that importing
one kernel module does not compile or load every other one.

Public names are imported on first use (:mod:`rtforge._lazy`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rtforge._lazy import lazy_exports

if TYPE_CHECKING:  # type checkers and IDEs see the names directly
    from rtforge.core.beam import BeamGeometry, PatientPosition  # noqa: F401
    from rtforge.core.contours import (  # noqa: F401
        Contour,
        ContourGeometricType,
        ReductionMethod,
        RTROIInterpretedType,
        Structure,
        hausdorff_distance,
        polygon_area,
        reduce_contours,
    )
    from rtforge.core.dosegrid import dequantize_dose, quantize_dose, resample_dose, sum_doses  # noqa: F401
    from rtforge.core.drr import Attenuation, compute_drr, prepare_volume, quantize  # noqa: F401
    from rtforge.core.dvh import DVH, EndCap, compute_dvh, compute_dvhs  # noqa: F401
    from rtforge.core.geometry import (  # noqa: F401
        Grid,
        SliceStack,
        Volume,
        axis_aligned_view,
        bounding_grid,
    )
    from rtforge.core.masks import contours_to_mask, mask_to_contours  # noqa: F401
    from rtforge.core.reslice import Interpolation, default_output_grid, is_exact_reindex, reslice  # noqa: F401

#: Where each public name lives.
_EXPORTS = {
    "Grid": "geometry",
    "SliceStack": "geometry",
    "Volume": "geometry",
    "bounding_grid": "geometry",
    "axis_aligned_view": "geometry",
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
