"""Arrays and geometry: no pydicom anywhere below this package."""

from rtforge.core.geometry import Grid, SliceStack, Volume, bounding_grid
from rtforge.core.reslice import Interpolation, default_output_grid, is_exact_reindex, reslice

__all__ = [
    "Grid",
    "SliceStack",
    "Volume",
    "bounding_grid",
    "Interpolation",
    "default_output_grid",
    "is_exact_reindex",
    "reslice",
]
