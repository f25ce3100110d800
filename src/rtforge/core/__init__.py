"""Arrays and geometry: no pydicom anywhere below this package."""

from rtforge.core.beam import BeamGeometry, PatientPosition
from rtforge.core.contours import (
    Contour,
    ContourGeometricType,
    ReductionMethod,
    RTROIInterpretedType,
    Structure,
    hausdorff_distance,
    polygon_area,
    reduce_contours,
)
from rtforge.core.dosegrid import dequantize_dose, quantize_dose, resample_dose, sum_doses
from rtforge.core.drr import Attenuation, compute_drr, prepare_volume, quantize
from rtforge.core.dvh import DVH, EndCap, compute_dvh, compute_dvhs
from rtforge.core.geometry import Grid, SliceStack, Volume, bounding_grid
from rtforge.core.masks import contours_to_mask, mask_to_contours
from rtforge.core.reslice import Interpolation, default_output_grid, is_exact_reindex, reslice

__all__ = [
    "Grid",
    "SliceStack",
    "Volume",
    "bounding_grid",
    "BeamGeometry",
    "PatientPosition",
    "Interpolation",
    "default_output_grid",
    "is_exact_reindex",
    "reslice",
    "Contour",
    "ContourGeometricType",
    "ReductionMethod",
    "RTROIInterpretedType",
    "Structure",
    "hausdorff_distance",
    "polygon_area",
    "reduce_contours",
    "contours_to_mask",
    "mask_to_contours",
    "Attenuation",
    "compute_drr",
    "prepare_volume",
    "quantize",
    "quantize_dose",
    "dequantize_dose",
    "resample_dose",
    "sum_doses",
    "DVH",
    "EndCap",
    "compute_dvh",
    "compute_dvhs",
]
