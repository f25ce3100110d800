"""``reduce_rtstruct``: a copy of a real structure set with only its reduced contours rewritten."""

from __future__ import annotations

from datetime import datetime

import pytest
from pydicom import Dataset, dcmread

from rtforge.errors import InvalidInputError
from rtforge.io.rtstruct import ContourBudget, parse_rtstruct, read_rtstruct
from rtforge.io.rtstruct_rewrite import MODIFYING_EQUIPMENT, reduce_rtstruct
from tests.datafiles import shared_file

ECLIPSE_RS = "slicerrt_eclipse/RS.1.2.246.352.71.4.2088656855.2404649.20110920153449.dcm"


def _contour_bytes(ds: Dataset) -> list[bytes]:
    return [bytes(item.get_item(0x30060050).value) for roi in ds.ROIContourSequence
            for item in roi.get("ContourSequence") or []]


def test_only_the_reduced_contours_change_and_the_input_is_untouched() -> None:
    ds = dcmread(shared_file(ECLIPSE_RS))
    original_uid, original_bytes = str(ds.SOPInstanceUID), _contour_bytes(ds)
    when = datetime(2026, 12, 6, 21, 0, 0)
    built = reduce_rtstruct(ds, ContourBudget(max_points=80), description="reduced",
                            timestamp=when, sop_instance_uid="1.2.3.4")
    assert str(ds.SOPInstanceUID) == original_uid and _contour_bytes(ds) == original_bytes
    out = built.dataset
    assert (out.SOPInstanceUID, out.StructureSetDate, out.StructureSetDescription) == \
        ("1.2.3.4", "20261206", "reduced")
    rows = built.contours
    assert len(rows) == len(original_bytes)  # every contour of the set is closed planar
    written = _contour_bytes(out)
    for row, before, after in zip(rows, original_bytes, written, strict=True):
        changed = row.points_after < row.points_before
        assert (before != after) == changed
        assert (row.written is row.original) == (not changed)
    assert 0 < len(built.reduced) < len(rows)
    purpose = out.ContributingEquipmentSequence[0].PurposeOfReferenceCodeSequence[0]
    assert (purpose.CodeValue, purpose.CodingSchemeDesignator, purpose.CodeMeaning) == \
        MODIFYING_EQUIPMENT
    # read back as a structure set: the same ROIs, numbers and names
    assert [(s.number, s.name) for s in read_rtstruct(shared_file(ECLIPSE_RS)).structures] == \
        [(s.number, s.name) for s in parse_rtstruct(out).structures]


def test_a_structure_set_without_any_frame_of_reference_is_refused() -> None:
    ds = dcmread(shared_file(ECLIPSE_RS))
    del ds.ReferencedFrameOfReferenceSequence
    for item in ds.StructureSetROISequence:
        del item.ReferencedFrameOfReferenceUID
    with pytest.raises(InvalidInputError, match="no Frame of Reference UID"):
        reduce_rtstruct(ds, ContourBudget(max_points=80))
