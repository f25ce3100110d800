"""Stored pixel values to int16 HU, one slice at a time, without a float volume.

Private helpers of :mod:`rtforge.io.series`.  The functions work on 2-D views
``[j, i]`` (row, column) of one slice and write into a slice of the
preallocated ``int16`` output volume; the only temporaries are per-slice
(an int32 or float64 scratch when the rescale cannot be done in place).

Notes
-----
PS3.3 C.7.6.3.1 (Image Pixel module): a stored value occupies ``Bits Stored``
bits of a ``Bits Allocated`` word, with its most significant bit at ``High
Bit``; the other bits are not part of the value and may hold anything.  Pixel
Representation 1 means two's complement of ``Bits Stored`` bits.  PS3.3
C.7.5.1.1.2: Pixel Padding Value (0028,0120) and Pixel Padding Range Limit
(0028,0121) are in stored-value units, with the signedness of the pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PixelFormat", "SliceCounts", "convert_slice", "normalise_stored", "stored_view"]

_INT16_MIN = -32768
_INT16_MAX = 32767


@dataclass(frozen=True)
class PixelFormat:
    """How a slice's native Pixel Data encodes stored values.

    Parameters
    ----------
    rows, columns : int
        Rows (``nj``) and Columns (``ni``).
    bits_allocated : int
        8 or 16.
    bits_stored : int
        1 to ``bits_allocated``.
    high_bit : int
        ``bits_stored - 1`` to ``bits_allocated - 1``.
    signed : bool
        Pixel Representation 1 (two's complement).
    big_endian : bool
        Byte order of 16-bit words in the Pixel Data value.
    """

    rows: int
    columns: int
    bits_allocated: int
    bits_stored: int
    high_bit: int
    signed: bool
    big_endian: bool = False

    @property
    def nbytes(self) -> int:
        """Bytes of one frame of native Pixel Data: ``rows * columns * bits_allocated / 8``."""
        return self.rows * self.columns * (self.bits_allocated // 8)

    @property
    def needs_masking(self) -> bool:
        """True when the stored value does not fill the allocated word."""
        return self.bits_stored != self.bits_allocated or self.high_bit != self.bits_allocated - 1


@dataclass
class SliceCounts:
    """What :func:`convert_slice` did to one slice."""

    padding: int = 0
    clipped: int = 0


def normalise_stored(value: float | int, bits_stored: int, signed: bool) -> int:
    """A Pixel Padding Value (or Range Limit) as the stored value it stands for.

    Writers encode it as US or SS whatever the pixels' signedness, or as the
    ``Bits Stored`` bit pattern; the low ``bits_stored`` bits of the two's
    complement pattern, read with the pixels' signedness, are the value every
    encoding agrees on.

    Parameters
    ----------
    value : int
        The attribute's value as read.
    bits_stored : int
        Bits Stored (0028,0101) of the pixels.
    signed : bool
        Pixel Representation (0028,0103) is 1.

    Returns
    -------
    int
        In ``[-2**(bits_stored-1), 2**(bits_stored-1))`` when signed, else
        ``[0, 2**bits_stored)``.
    """
    mask = (1 << bits_stored) - 1
    v = int(value) & mask
    if signed and v >= 1 << (bits_stored - 1):
        v -= 1 << bits_stored
    return v


def stored_view(raw: np.ndarray, fmt: PixelFormat) -> np.ndarray:
    """Stored values of one slice of native pixels, extracted in place.

    Parameters
    ----------
    raw : ndarray of shape (rows, columns), dtype uint8 or uint16
        The allocated words in native byte order (already byte-swapped for
        big endian input).  Modified in place when bits outside the stored
        value have to be removed.

    Returns
    -------
    ndarray of shape (rows, columns)
        A view of ``raw``: int8/int16 for signed pixels, uint8/uint16 for
        unsigned ones, holding exactly the stored values (bits outside
        ``Bits Stored`` removed, sign extended from ``High Bit``).
    """
    width = fmt.bits_allocated
    signed_dtype = np.int8 if width == 8 else np.int16
    if fmt.needs_masking:
        left = width - 1 - fmt.high_bit  # drop the bits above the high bit
        right = width - fmt.bits_stored  # then bring the value down to bit 0
        v = raw.view(signed_dtype) if fmt.signed else raw
        if left:
            np.left_shift(v, left, out=v)
        # arithmetic shift for signed words (sign extension from the high
        # bit), logical shift for unsigned ones
        np.right_shift(v, right, out=v)
        return v
    return raw.view(signed_dtype) if fmt.signed else raw


def _padding_mask(stored: np.ndarray, padding: tuple[int, int] | None) -> np.ndarray | None:
    if padding is None:
        return None
    lo, hi = padding
    info = np.iinfo(stored.dtype)
    if hi < info.min or lo > info.max:
        return None  # no stored value can hold it
    if lo == hi:
        mask = stored == lo
    else:
        mask = (stored >= max(lo, info.min)) & (stored <= min(hi, info.max))
    return mask if mask.any() else None


def convert_slice(stored: np.ndarray, out: np.ndarray, *, slope: float, intercept: float,
                  padding: tuple[int, int] | None, air: int) -> SliceCounts:
    """Rescale one slice of stored values into int16 HU.

    Parameters
    ----------
    stored : ndarray of shape (rows, columns), integer dtype
        Stored values (see :func:`stored_view`).  May share memory with
        ``out``.
    out : ndarray of shape (rows, columns), dtype int16
        The slice of the output volume; written in place.
    slope, intercept : float
        Rescale Slope and Rescale Intercept of this slice.
    padding : (int, int) or None
        Inclusive range of stored values that are padding (equal bounds for
        a single Pixel Padding Value), already normalised with
        :func:`normalise_stored`.
    air : int
        The value padding voxels get, in HU.

    Returns
    -------
    SliceCounts
        Padding voxels found and voxels whose rescaled value fell outside
        int16 and were clipped (padding voxels are not counted as clipped).

    Notes
    -----
    ``round(stored * slope + intercept)`` to nearest (ties to even), clipped
    to ``[-32768, 32767]``.  With slope 1 and an integral intercept the
    arithmetic is exact integer arithmetic, in place when no value can
    overflow; otherwise it goes through one per-slice int32 or float64
    scratch array.
    """
    counts = SliceCounts()
    pad = _padding_mask(stored, padding)
    if pad is not None:
        counts.padding = int(np.count_nonzero(pad))
    in_place = (stored.dtype.itemsize == 2 and stored.shape == out.shape
                and stored.__array_interface__["data"][0] == out.__array_interface__["data"][0])
    if slope == 1.0 and float(intercept).is_integer():
        c = int(intercept)
        lo_v = int(stored.min())
        hi_v = int(stored.max())
        if lo_v + c >= _INT16_MIN and hi_v + c <= _INT16_MAX:
            if in_place:
                # uint16 values all below 2**15 read the same as int16.
                view = stored.view(np.int16)
                if c:
                    view += np.int16(c)
            else:
                np.add(stored, c, out=out, casting="unsafe", dtype=np.int32)
        else:
            tmp = stored.astype(np.int32)
            if c:
                tmp += c
            counts.clipped = _clip_count(tmp, pad)
            np.clip(tmp, _INT16_MIN, _INT16_MAX, out=tmp)
            np.copyto(out, tmp, casting="unsafe")
    else:
        tmp = stored.astype(np.float64)
        np.multiply(tmp, slope, out=tmp)
        np.add(tmp, intercept, out=tmp)
        np.rint(tmp, out=tmp)
        counts.clipped = _clip_count(tmp, pad)
        np.clip(tmp, _INT16_MIN, _INT16_MAX, out=tmp)
        np.copyto(out, tmp, casting="unsafe")
    if pad is not None:
        out[pad] = air
    return counts


def _clip_count(values: np.ndarray, pad: np.ndarray | None) -> int:
    outside = (values < _INT16_MIN) | (values > _INT16_MAX)
    if pad is not None:
        outside &= ~pad
    return int(np.count_nonzero(outside))
