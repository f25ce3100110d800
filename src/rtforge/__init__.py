"""rtforge: a radiotherapy DICOM compute core."""

import logging

from rtforge.core import Grid, SliceStack, Volume, bounding_grid
from rtforge.errors import (
    ConformanceError,
    GeometryError,
    InvalidInputError,
    NetworkError,
    RtforgeError,
)

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "Grid",
    "SliceStack",
    "Volume",
    "bounding_grid",
    "RtforgeError",
    "InvalidInputError",
    "GeometryError",
    "ConformanceError",
    "NetworkError",
    "__version__",
]
