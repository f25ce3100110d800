"""DIMSE command sets, P-DATA-TF framing and the status table, checked against pydicom/pynetdicom."""

from __future__ import annotations

import struct
from io import BytesIO

import pytest
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pynetdicom.dimse_messages import C_STORE_RQ as PynetdicomStoreRQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu import P_DATA_TF

from rtforge.net import StatusCategory, status_category, status_meaning
from rtforge.net._dimse import C_STORE_RQ, C_STORE_RSP, Command, decode_command, encode_command
from rtforge.net._upper_layer import encode_message

CT = "1.2.840.10008.5.1.4.1.1.2"


def test_command_set_decodes_with_pydicom_as_implicit_vr_le() -> None:
    command = Command(C_STORE_RQ, message_id=7, affected_sop_class_uid=CT,
                      affected_sop_instance_uid="1.2.3.45", priority=0, has_data_set=True,
                      move_originator_aet="MOVER", move_originator_message_id=3)
    ds = read_dataset(DicomBytesIO(encode_command(command)), True, True)
    assert ds.CommandGroupLength == len(encode_command(command)) - 12
    assert ds.CommandField == 0x0001 and ds.MessageID == 7
    assert ds.AffectedSOPClassUID == CT and ds.AffectedSOPInstanceUID == "1.2.3.45"
    assert ds.CommandDataSetType != 0x0101
    assert ds.MoveOriginatorApplicationEntityTitle == "MOVER"
    assert decode_command(encode_command(command)) == command


def test_command_set_is_byte_identical_to_pynetdicoms() -> None:
    primitive = C_STORE()
    primitive.MessageID = 12
    primitive.AffectedSOPClassUID = CT
    primitive.AffectedSOPInstanceUID = "1.2.3.4"
    primitive.Priority = 0
    primitive.DataSet = BytesIO(b"\x00\x00")  # marks a data set as present
    message = PynetdicomStoreRQ()
    message.primitive_to_message(primitive)
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = True
    write_dataset(fp, message.command_set)
    ours = encode_command(Command(C_STORE_RQ, message_id=12, affected_sop_class_uid=CT,
                                  affected_sop_instance_uid="1.2.3.4", priority=0,
                                  has_data_set=True))
    assert ours == fp.getvalue()


def test_response_round_trip_with_error_comment() -> None:
    response = Command(C_STORE_RSP, message_id_being_responded_to=9, affected_sop_class_uid=CT,
                       affected_sop_instance_uid="1.2.3", status=0xA700,
                       error_comment="cannot write")
    assert decode_command(encode_command(response)) == response


@pytest.mark.parametrize("data", [
    b"\x00\x00\x00\x01\x02\x00\x00\x00\x01",  # truncated header
    struct.pack("<HHI", 0, 0x0100, 10) + b"\x01\x00",  # runs past the end
    struct.pack("<HHI", 8, 0x0016, 2) + b"ab",  # outside group 0000
    struct.pack("<HHI", 0, 0x0110, 2) + b"\x01\x00",  # no Command Field
    struct.pack("<HHI", 0, 0x0100, 4) + b"\x01\x00\x00\x00",  # US of 4 bytes
])
def test_malformed_command_sets_are_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode_command(data)


@pytest.mark.parametrize("max_pdu", [0, 4096, 16384, 28672])
def test_message_fragments_fit_the_peers_maximum(max_pdu: int) -> None:
    command = encode_command(Command(C_STORE_RQ, message_id=1, affected_sop_class_uid=CT,
                                     affected_sop_instance_uid="1.2", priority=0,
                                     has_data_set=True))
    data = bytes(range(256)) * 700  # 179200 bytes
    stream = b"".join(encode_message(3, command, data, max_pdu))
    commands, fragments, pos = [], [], 0
    while pos < len(stream):
        pdu = P_DATA_TF()
        length = struct.unpack_from(">L", stream, pos + 2)[0]
        pdu.decode(stream[pos:pos + 6 + length])
        if max_pdu:
            assert length <= max_pdu
        assert len(pdu.presentation_data_value_items) == 1
        item = pdu.presentation_data_value_items[0]
        assert item.presentation_context_id == 3
        control, payload = item.presentation_data_value[0], item.presentation_data_value[1:]
        (commands if control & 1 else fragments).append((control, payload))
        pos += 6 + length
    assert b"".join(p for _, p in commands) == command
    assert [c & 2 for c, _ in commands][-1] == 2 and all(c & 2 == 0 for c, _ in commands[:-1])
    assert b"".join(p for _, p in fragments) == data
    assert fragments[-1][0] == 0x02 and all(c == 0 for c, _ in fragments[:-1])


@pytest.mark.parametrize(("status", "category"), [
    (0x0000, StatusCategory.SUCCESS),
    (0xA700, StatusCategory.FAILURE), (0xA7FF, StatusCategory.FAILURE),
    (0xA900, StatusCategory.FAILURE), (0xA9FF, StatusCategory.FAILURE),
    (0xC000, StatusCategory.FAILURE), (0xCFFF, StatusCategory.FAILURE),
    (0x0122, StatusCategory.FAILURE), (0x0124, StatusCategory.FAILURE),
    (0x0211, StatusCategory.FAILURE), (0x1234, StatusCategory.FAILURE),
    (0xB000, StatusCategory.WARNING), (0xB006, StatusCategory.WARNING),
    (0xB007, StatusCategory.WARNING), (0xB123, StatusCategory.WARNING),
    (0x0001, StatusCategory.WARNING), (0x0107, StatusCategory.WARNING),
    (0x0116, StatusCategory.WARNING),
    (0xFE00, StatusCategory.CANCEL), (0xFF00, StatusCategory.PENDING),
    (0xFF01, StatusCategory.PENDING),
])
def test_status_categories_follow_ps3_7_annex_c(status: int, category: StatusCategory) -> None:
    assert status_category(status) is category


def test_status_meanings_name_oncentra_table_4_7() -> None:
    assert status_meaning(0xA702) == "0xA702 Refused: Out of Resources"
    assert status_meaning(0xA900) == "0xA900 Error: Data Set does not match SOP Class"
    assert status_meaning(0xC123) == "0xC123 Error: Cannot understand"
    assert status_meaning(0xB006) == "0xB006 Warning: Elements Discarded"
