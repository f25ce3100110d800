"""DIMSE command sets of the Verification and Storage services (PS3.7 9.3 and E.1).

A command set is a small group 0000 data set, always Implicit VR Little Endian
(PS3.7 6.3.1).  Only the elements of C-ECHO and C-STORE are known here; find
and move go through pynetdicom (:mod:`rtforge.net.query`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "C_STORE_RQ",
    "C_STORE_RSP",
    "C_ECHO_RQ",
    "C_ECHO_RSP",
    "NO_DATA_SET",
    "Command",
    "encode_command",
    "decode_command",
]

#: Command Field values (PS3.7 E.1-1).
C_STORE_RQ = 0x0001
C_STORE_RSP = 0x8001
C_ECHO_RQ = 0x0030
C_ECHO_RSP = 0x8030
#: Command Data Set Type meaning "no data set" (PS3.7 E.1-1); any other value means one follows.
NO_DATA_SET = 0x0101
_DATA_SET_PRESENT = 0x0001


@dataclass
class Command:
    """The elements of a C-ECHO or C-STORE request or response.

    Parameters
    ----------
    command_field : int
        (0000,0100): what the message is (``C_STORE_RQ`` ...).
    message_id : int, optional
        (0000,0110), in requests.
    message_id_being_responded_to : int, optional
        (0000,0120), in responses.
    affected_sop_class_uid : str, optional
        (0000,0002).
    affected_sop_instance_uid : str, optional
        (0000,1000).
    priority : int, optional
        (0000,0700): 0 medium, 1 high, 2 low.
    status : int, optional
        (0000,0900), in responses.
    error_comment : str, optional
        (0000,0902), in failure responses.
    move_originator_aet : str, optional
        (0000,1030), when the store is a C-MOVE sub-operation.
    move_originator_message_id : int, optional
        (0000,1031).
    has_data_set : bool
        Whether a data set follows (Command Data Set Type, (0000,0800)).
    """

    command_field: int
    message_id: int | None = None
    message_id_being_responded_to: int | None = None
    affected_sop_class_uid: str | None = None
    affected_sop_instance_uid: str | None = None
    priority: int | None = None
    status: int | None = None
    error_comment: str | None = None
    move_originator_aet: str | None = None
    move_originator_message_id: int | None = None
    has_data_set: bool = False


#: The command elements we read and write: tag -> (Command field, VR), in tag order (PS3.7 E.1-1).
_ELEMENTS: dict[int, tuple[str, str]] = {
    0x00000002: ("affected_sop_class_uid", "UI"),
    0x00000100: ("command_field", "US"),
    0x00000110: ("message_id", "US"),
    0x00000120: ("message_id_being_responded_to", "US"),
    0x00000700: ("priority", "US"),
    0x00000800: ("has_data_set", "US"),
    0x00000900: ("status", "US"),
    0x00000902: ("error_comment", "LO"),
    0x00001000: ("affected_sop_instance_uid", "UI"),
    0x00001030: ("move_originator_aet", "AE"),
    0x00001031: ("move_originator_message_id", "US"),
}


def _encode_value(vr: str, value: object) -> bytes:
    if vr == "US":
        return struct.pack("<H", value)
    text = str(value).encode("ascii")
    if len(text) % 2:
        text += b"\x00" if vr == "UI" else b" "
    return text


def encode_command(command: Command) -> bytes:
    """Encode a command set, Implicit VR Little Endian, with its group length.

    Parameters
    ----------
    command : Command

    Returns
    -------
    bytes
    """
    body = bytearray()
    for tag, (name, vr) in _ELEMENTS.items():
        value = getattr(command, name)
        if name == "has_data_set":
            value = _DATA_SET_PRESENT if value else NO_DATA_SET
        if value is None:
            continue
        encoded = _encode_value(vr, value)
        body += struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(encoded)) + encoded
    return struct.pack("<HHII", 0, 0, 4, len(body)) + bytes(body)


def decode_command(data: bytes | bytearray | memoryview) -> Command:
    """Decode a command set; elements outside :data:`_ELEMENTS` are skipped.

    Parameters
    ----------
    data : bytes-like
        The whole command set (Implicit VR Little Endian).

    Returns
    -------
    Command

    Raises
    ------
    ValueError
        If the encoding is truncated, an element is outside group 0000, or
        Command Field is missing.
    """
    view = memoryview(data)
    values: dict[str, object] = {}
    pos, end = 0, len(view)
    while pos < end:
        if end - pos < 8:
            raise ValueError("command set truncated inside an element header")
        group, element, length = struct.unpack_from("<HHI", view, pos)
        pos += 8
        if group != 0:
            raise ValueError(f"element ({group:04X},{element:04X}) outside group 0000 in a command set")
        if length > end - pos:
            raise ValueError(f"element (0000,{element:04X}) runs past the end of the command set")
        raw = view[pos:pos + length]
        pos += length
        known = _ELEMENTS.get(element)
        if known is None:
            continue
        name, vr = known
        if vr == "US":
            if length != 2:
                raise ValueError(f"element (0000,{element:04X}) must be 2 bytes, got {length}")
            values[name] = struct.unpack("<H", raw)[0]
        else:
            values[name] = bytes(raw).decode("ascii", "replace").rstrip("\x00 ").lstrip(" ")
    if "command_field" not in values:
        raise ValueError("command set without Command Field (0000,0100)")
    data_set_type = values.pop("has_data_set", NO_DATA_SET)
    return Command(**values, has_data_set=data_set_type != NO_DATA_SET)  # type: ignore[arg-type]
