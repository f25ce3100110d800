"""What the CPU and GPU ray casters share: the method choice, the skip map and its blocks.

Beside :mod:`rtforge.core.drr` (which re-exports :class:`DrrMethod` and
:class:`SkipMap`) so that :mod:`rtforge.core.drr_cuda` needs nothing from it:
``drr`` imports ``drr_cuda`` (for ``device="cuda"``), never the other way.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

import numpy as np

from rtforge.errors import InvalidInputError

__all__ = ["BLOCK", "BLOCK_SHIFT", "DrrMethod", "SkipMap"]

#: Blocks of the occupancy grid used to skip empty space are ``2**BLOCK_SHIFT`` voxels a side.
BLOCK_SHIFT = 3
BLOCK = 1 << BLOCK_SHIFT

_E = TypeVar("_E", bound="_Choice")


class _Choice(str, Enum):
    """An option named by its value, in any case."""

    @classmethod
    def parse(cls: type[_E], value: str | _E, name: str = "value") -> _E:
        """The member named by ``value``; ``name`` is the argument named in the error.

        Raises
        ------
        InvalidInputError
            If ``value`` names no member.
        """
        text = value.value if isinstance(value, Enum) else str(value)
        for member in cls:
            if member.value.lower() == text.lower():
                return member
        names = ", ".join(repr(m.value) for m in cls)
        raise InvalidInputError(f"{name} must be one of {names}, got {value!r}")


class DrrMethod(_Choice):
    """How a ray is integrated."""

    #: Exact radiological path (Siddon / Jacobs).
    SIDDON = "siddon"
    #: Fixed-step trilinear sampling.
    TRILINEAR = "trilinear"


@dataclass(frozen=True)
class SkipMap:
    """Where a method may skip: occupancy blocks and the clipping box.

    Parameters
    ----------
    occupancy : ndarray of shape (nbk * nbj * nbi,), dtype uint8
        1 for a block of :data:`BLOCK` voxels a side that may give a non-zero
        sample, raveled from ``[bk, bj, bi]``.
    box : ndarray of shape (6,), dtype float64
        ``(lo_i, lo_j, lo_k, hi_i, hi_j, hi_k)`` in plane coordinates
        (index + 1/2): the occupied blocks' bounding box.
    empty : bool
        No block is occupied: every DRR is zero.
    """

    occupancy: np.ndarray
    box: np.ndarray
    empty: bool
