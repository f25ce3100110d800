"""Is a received data set well formed?  A walk over its element headers (PS3.5 7.1 and 7.5).

pydicom reads leniently: a value cut short, stray bytes at the end or a
broken sequence delimiter pass unnoticed (and a full ``dcmread`` costs ten
times more).  The Storage SCP answers "cannot understand" to what this walk
rejects: every element, item and fragment must fit its container exactly and
every undefined length must end with its delimiter.  Values are not read.
"""

from __future__ import annotations

import struct

__all__ = ["check_data_set"]

_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
#: Explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 table 7.1-1).
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN",
                       b"UR", b"UT", b"UV"})
_FORMATS = {True: (struct.Struct("<HHL"), struct.Struct("<HH2sH"), struct.Struct("<L")),
            False: (struct.Struct(">HHL"), struct.Struct(">HH2sH"), struct.Struct(">L"))}


class _Walker:
    def __init__(self, data: memoryview, little: bool) -> None:
        self.data = data
        self.tag_length, self.explicit_header, self.u32 = _FORMATS[little]

    def header(self, pos: int, end: int) -> tuple[int, int]:
        """(tag, 4-byte length) of an item or delimiter, or of an implicit VR element."""
        if end - pos < 8:
            raise ValueError(f"{end - pos} stray bytes at offset {pos}")
        group, element, length = self.tag_length.unpack_from(self.data, pos)
        return group << 16 | element, length

    def elements(self, pos: int, end: int, implicit: bool, in_open_item: bool) -> int:
        """Walk elements from ``pos``; the offset after them (and after the item's delimiter)."""
        while pos < end:
            tag, length = self.header(pos, end)
            if tag >> 16 == 0xFFFE:
                if tag == _ITEM_END and in_open_item and length == 0:
                    return pos + 8
                raise ValueError(f"unexpected ({tag >> 16:04X},{tag & 0xFFFF:04X}) at offset {pos}")
            vr = b""
            if implicit:
                pos += 8
            else:
                _, _, vr, short = self.explicit_header.unpack_from(self.data, pos)
                if not (65 <= vr[0] <= 90 and 65 <= vr[1] <= 90):
                    raise ValueError(f"invalid VR {vr!r} at offset {pos}")
                if vr in _LONG_VRS:
                    if end - pos < 12:
                        raise ValueError(f"element header cut short at offset {pos}")
                    length = self.u32.unpack_from(self.data, pos + 8)[0]
                    pos += 12
                else:
                    length = short
                    pos += 8
            if length == _UNDEFINED:
                if implicit or vr in (b"SQ", b"UN"):  # UN of undefined length: implicit VR items
                    pos = self.sequence(pos, end, implicit or vr == b"UN")
                elif vr in (b"OB", b"OW") and tag == _PIXEL_DATA:
                    pos = self.fragments(pos, end)
                else:
                    raise ValueError(f"undefined length for VR {vr.decode()} at offset {pos}")
                continue
            if pos + length > end:
                raise ValueError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) of {length} bytes runs past "
                                 f"the end")
            if vr == b"SQ":
                self.items(pos, pos + length, implicit)
            pos += length
        if in_open_item:
            raise ValueError("item without its delimitation item")
        return pos

    def item(self, pos: int, end: int, implicit: bool) -> int:
        tag, length = self.header(pos, end)
        if tag != _ITEM:
            raise ValueError(f"expected an item at offset {pos}")
        if length == _UNDEFINED:
            return self.elements(pos + 8, end, implicit, in_open_item=True)
        stop = pos + 8 + length
        if stop > end or self.elements(pos + 8, stop, implicit, in_open_item=False) != stop:
            raise ValueError(f"item of {length} bytes at offset {pos} does not fit")
        return stop

    def items(self, pos: int, end: int, implicit: bool) -> None:
        """The items of a sequence of defined length, filling it exactly."""
        while pos < end:
            pos = self.item(pos, end, implicit)
        if pos != end:
            raise ValueError(f"sequence items overrun at offset {pos}")

    def sequence(self, pos: int, end: int, implicit: bool) -> int:
        """The items of a sequence of undefined length; the offset after its delimiter."""
        while True:
            tag, length = self.header(pos, end)
            if tag == _SEQUENCE_END:
                if length:
                    raise ValueError(f"sequence delimiter of length {length} at offset {pos}")
                return pos + 8
            pos = self.item(pos, end, implicit)

    def fragments(self, pos: int, end: int) -> int:
        """Encapsulated Pixel Data: items of defined length up to the delimiter (PS3.5 A.4)."""
        while True:
            tag, length = self.header(pos, end)
            if tag == _SEQUENCE_END and length == 0:
                return pos + 8
            if tag != _ITEM or length == _UNDEFINED or pos + 8 + length > end:
                raise ValueError(f"invalid Pixel Data fragment at offset {pos}")
            pos += 8 + length


def check_data_set(data: memoryview, implicit: bool, little: bool) -> None:
    """Check that ``data`` is a well-formed data set in the given encoding.

    Parameters
    ----------
    data : memoryview
        The encoded data set (no File Meta Information).
    implicit, little : bool
        Implicit VR and little endian, from the transfer syntax.

    Raises
    ------
    ValueError
        Naming the offset and the problem: a length running past its
        container, stray bytes at the end, an invalid VR, a missing or
        misplaced delimiter.
    RecursionError
        For absurdly deep nesting.
    """
    _Walker(data, little).elements(0, len(data), implicit, in_open_item=False)
