"""rtforge: a radiotherapy DICOM compute core.

The geometry types are imported on first use (:mod:`rtforge._lazy`): importing
any part of rtforge then loads no NumPy until that part needs it, which lets
the batch's worker server configure NumPy's threads before it loads.
"""

import logging
from typing import TYPE_CHECKING

from rtforge._lazy import lazy_exports
from rtforge.errors import (
    ConformanceError,
    GeometryError,
    InvalidInputError,
    NetworkError,
    RtforgeError,
)

if TYPE_CHECKING:  # type checkers and IDEs see the names directly
    from rtforge.core.geometry import Grid, SliceStack, Volume, bounding_grid  # noqa: F401

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

__getattr__, __dir__ = lazy_exports(
    __name__, {"Grid": "core.geometry", "SliceStack": "core.geometry", "Volume": "core.geometry",
               "bounding_grid": "core.geometry"}, globals())
