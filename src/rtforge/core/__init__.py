"""Arrays and geometry: no pydicom anywhere below this package."""

from rtforge.core.geometry import Grid, SliceStack, Volume, bounding_grid

__all__ = ["Grid", "SliceStack", "Volume", "bounding_grid"]
