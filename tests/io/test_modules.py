"""Shared modules: the DS formatter, module tables, the builder and the private block."""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np
import pytest
from pydicom import Dataset
from pydicom.datadict import dictionary_VR, keyword_dict, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag
from pydicom.valuerep import format_number_as_ds

from rtforge.config import ExportConfig
from rtforge.errors import ConformanceError, InvalidInputError
from rtforge.io.ct import CT_IMAGE_IOD
from rtforge.io.modules import (
    FRAME_OF_REFERENCE,
    GENERAL_EQUIPMENT,
    GENERAL_SERIES,
    GENERAL_STUDY,
    PATIENT,
    PATIENT_STUDY,
    RT_SERIES,
    SOP_COMMON,
    build_dataset,
    carried_values,
    equipment_values,
    format_ds,
)
from rtforge.io.private import PRIVATE_GROUP, add_export_block, export_platform_name

CONFIG = ExportConfig(station_name="test-station", platform_name="PLATFORM-7")


# ------------------------------------------------------------------ format_ds
@pytest.mark.parametrize(("value", "text"), [
    (-1024.0, "-1024"), (1, "1"), (0.0, "0"), (-0.0, "0"), (0.1, "0.1"), (2.5, "2.5"),
    (1e-5, "1e-5"), (1e16, "1e16"), (-1.5e-7, "-1.5e-7"), (100000.0, "100000"),
    (-249.51171875, "-249.51171875"), (1 / 3, "0.33333333333333"),
    (np.float32(0.5), "0.5"), (np.int64(7), "7"),
])
def test_format_ds_known_values(value: float, text: str) -> None:
    assert format_ds(value) == text


def test_format_ds_is_exact_when_repr_fits_and_never_longer_than_16() -> None:
    rng = np.random.default_rng(20240501)
    mantissas = rng.uniform(-10, 10, size=4000)
    exponents = rng.integers(-320, 300, size=4000)
    values = np.concatenate([mantissas * 10.0 ** exponents.astype(np.float64),
                             np.round(mantissas * 1000, 3), rng.uniform(-600, 600, 2000)])
    for v in values[np.isfinite(values) & (values != 0)]:
        text = format_ds(v)
        assert len(text) <= 16, (v, text)
        assert set(text) <= set("0123456789+-.e"), text
        if len(repr(float(v)).replace("e+", "e")) <= 14:
            assert float(text) == v, (v, text)
        # At least as close as pydicom's own DS formatter (a reference from outside).
        reference = format_number_as_ds(float(v))
        assert abs(float(text) - v) <= abs(float(reference) - v), (v, text, reference)
        assert abs(float(text) - v) <= abs(v) * 1e-8, (v, text)  # >= 9 significant digits


def _format_ds_exhaustive(v: float) -> str:
    """Every exponent and fixed-point form, the closest that fits (then the shortest)."""
    from rtforge.core._decimal import compact_decimal

    text = compact_decimal(repr(v))
    if len(text) <= 16:
        return text
    candidates = [compact_decimal(f"{v:.{p}e}") for p in range(16)]
    candidates += [compact_decimal(f"{v:.{d}f}") for d in range(17)]
    fitting = [c for c in candidates if len(c) <= 16 and float(c) != 0.0]
    return min(fitting, key=lambda c: (abs(float(c) - v), len(c)))


def test_format_ds_equals_the_exhaustive_search() -> None:
    # format_ds tries only the longest form of each kind that fits; the exhaustive
    # search over all 33 forms must agree on every magnitude.
    rng = np.random.default_rng(7)
    exponents = rng.integers(-300, 300, size=20000).astype(np.float64)
    values = np.concatenate([rng.uniform(-10, 10, 20000) * 10.0 ** exponents,
                             rng.uniform(-600, 600, 20000), rng.uniform(-1, 1, 5000) * 1e-4,
                             np.round(rng.uniform(-600, 600, 5000), 2) + 1e-13])
    for v in values[np.isfinite(values) & (values != 0)]:
        assert format_ds(v) == _format_ds_exhaustive(float(v)), v


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_format_ds_rejects_non_finite(value: float) -> None:
    with pytest.raises(ConformanceError, match="Decimal String"):
        format_ds(value)


# ------------------------------------------------------------------- tables
ALL_MODULES = (PATIENT, GENERAL_STUDY, PATIENT_STUDY, GENERAL_SERIES, RT_SERIES,
               FRAME_OF_REFERENCE, GENERAL_EQUIPMENT, SOP_COMMON, *CT_IMAGE_IOD)


@pytest.mark.parametrize("module", ALL_MODULES, ids=lambda m: m.name)
def test_module_tables_use_real_keywords_and_types(module) -> None:
    assert module.section.startswith("C.")
    assert module.iplan_table.startswith("8-")
    assert len(set(module.keywords)) == len(module.keywords)
    for attr in module.attributes:
        assert attr.keyword in keyword_dict, attr.keyword
        assert attr.type in ("1", "2", "3")


def test_standard_wins_over_conformance_statement_typos() -> None:
    # iPlan gives Patient Position as DA, Rows as IS, Columns as DA, SOP UIDs as DS.
    assert dictionary_VR("PatientPosition") == "CS"
    assert dictionary_VR("Rows") == dictionary_VR("Columns") == "US"
    assert dictionary_VR("SOPClassUID") == dictionary_VR("SOPInstanceUID") == "UI"
    notes = {a.keyword: a.note for m in ALL_MODULES for a in m.attributes}
    assert "CS" in notes["PatientPosition"] and "UI" in notes["SOPClassUID"]


# ------------------------------------------------------------------ builder
def _series_values(**extra: object) -> dict[str, object]:
    values: dict[str, object] = {
        "PatientName": "Doe^Jane", "PatientID": "P1", "StudyInstanceUID": "1.2.3",
        "Modality": "RTSTRUCT", "SeriesInstanceUID": "1.2.3.4", "SOPClassUID": "1.2.840.1",
        "SOPInstanceUID": "1.2.3.4.5", "FrameOfReferenceUID": "1.2.3.9",
        "PatientWeight": 72.123456789012345678,
    }
    values.update(equipment_values(CONFIG))
    values.update(extra)
    return values


MODULES = (PATIENT, GENERAL_STUDY, PATIENT_STUDY, RT_SERIES, FRAME_OF_REFERENCE,
           GENERAL_EQUIPMENT, SOP_COMMON)


def test_build_dataset_applies_types() -> None:
    ds = build_dataset(MODULES, _series_values(), config=CONFIG)
    # Type 2 unknown: present and empty.
    for keyword in ("PatientBirthDate", "PatientSex", "StudyDate", "StudyID", "OperatorsName",
                    "ReferringPhysicianName", "AccessionNumber", "PositionReferenceIndicator"):
        assert keyword in ds and ds[keyword].is_empty, keyword
    # Type 3 unknown: absent.
    for keyword in ("StudyDescription", "PatientSize", "SeriesDescription"):
        assert keyword not in ds, keyword
    assert ds.SpecificCharacterSet == "ISO_IR 100"
    assert str(ds.PatientWeight) == "72.1234567890124"
    assert ds.Manufacturer == "rtforge" and ds.StationName == "test-station"


def test_build_dataset_adds_private_block() -> None:
    ds = build_dataset(MODULES, _series_values(), config=CONFIG)
    assert ds[PRIVATE_GROUP, 0x0010].value == CONFIG.private_creator
    assert ds[PRIVATE_GROUP, 0x1001].VR == "LO"
    assert export_platform_name(ds, CONFIG.private_creator) == "PLATFORM-7"
    with pytest.raises(InvalidInputError, match="config"):
        build_dataset(MODULES, _series_values())


def test_build_dataset_type1_missing_names_module_and_table() -> None:
    values = _series_values()
    del values["StudyInstanceUID"]
    with pytest.raises(ConformanceError, match=r"StudyInstanceUID.*General Study.*8-8"):
        build_dataset(MODULES, values, config=CONFIG)


def test_build_dataset_rejects_unknown_keyword_and_bad_values() -> None:
    with pytest.raises(InvalidInputError, match="KVP"):
        build_dataset(MODULES, _series_values(KVP=120), config=CONFIG)
    with pytest.raises(ConformanceError, match="StudyID"):
        build_dataset(MODULES, _series_values(StudyID="X" * 17), config=CONFIG)
    with pytest.raises(ConformanceError, match="UID"):
        build_dataset(MODULES, _series_values(SeriesInstanceUID="1.2.abc"), config=CONFIG)
    with pytest.raises(ConformanceError, match="IS"):
        build_dataset(MODULES, _series_values(SeriesNumber=2**31), config=CONFIG)


def test_build_dataset_omit_skips_keywords() -> None:
    values = _series_values()
    del values["SOPInstanceUID"]
    ds = build_dataset(MODULES, values, config=CONFIG, omit=("SOPInstanceUID",))
    assert "SOPInstanceUID" not in ds


def test_character_set_is_the_configured_one_never_a_silent_fallback() -> None:
    """Issue 14 item 5: ISO_IR 100 by default (iPlan table 8-22); a value outside Latin-1
    is an error naming the attribute and the value, unless ISO_IR 192 is configured."""
    latin = build_dataset(MODULES, _series_values(PatientName="Müller^Jörg"), config=CONFIG)
    assert latin.SpecificCharacterSet == "ISO_IR 100"
    with pytest.raises(InvalidInputError, match="PatientName.*'山田\\^太郎'.*ISO_IR 100"):
        build_dataset(MODULES, _series_values(PatientName="山田^太郎"), config=CONFIG)
    item = Dataset()
    item.CodeMeaning = "Ωmega"
    with pytest.raises(InvalidInputError, match="CodeMeaning.*Ωmega"):
        build_dataset(CT_IMAGE_IOD, {"DerivationCodeSequence": [item]}, config=CONFIG)
    utf8 = ExportConfig(station_name="test-station", character_set="ISO_IR 192")
    ds = build_dataset(MODULES, _series_values(PatientName="山田^太郎"), config=utf8)
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    assert build_dataset(MODULES, _series_values(), config=utf8).SpecificCharacterSet \
        == "ISO_IR 192"
    with pytest.raises(InvalidInputError, match="character_set"):
        ExportConfig(character_set="ISO_IR 101")


def _raw(keyword: str, vr: str, value: bytes) -> RawDataElement:
    """An element as read from a file, before pydicom converts (and validates) it."""
    return RawDataElement(Tag(tag_for_keyword(keyword)), vr, len(value), value, 0, False, True)


def test_carried_values_copy_marked_attributes_and_repair(caplog) -> None:
    source = Dataset()
    source.PatientName = "Doe^John"
    source.PatientID = "P7"
    source.StudyInstanceUID = "1.2.840.99"
    source.Manufacturer = "Vendor"               # not carried: equipment is ours
    source.SeriesInstanceUID = "1.2.840.99.1"    # not carried: a new series
    for keyword, vr, value in (("StudyDescription", "LO", b"D" * 70),  # LO > 64: truncated
                               ("PatientWeight", "DS", b"80.1234567890123456"),  # DS > 16
                               ("PatientSize", "DS", b"tall "),  # not a number: dropped
                               ("PatientAge", "AS", b"045Y")):
        source[tag_for_keyword(keyword)] = _raw(keyword, vr, value)
    with caplog.at_level(logging.WARNING, logger="rtforge.io.modules"), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's own reading warnings
        values = carried_values(source, MODULES)
    assert values["PatientName"] == "Doe^John"
    assert values["PatientAge"] == "045Y"
    assert values["StudyDescription"] == "D" * 64
    weight = str(values["PatientWeight"])
    assert len(weight) == 16 and abs(float(weight) - 80.1234567890123456) < 1e-13
    assert "PatientSize" not in values
    assert "Manufacturer" not in values and "SeriesInstanceUID" not in values
    assert "truncated" in caplog.text and "PatientSize" in caplog.text
    assert carried_values(None, MODULES) == {}


def test_private_block_reuses_existing_creator() -> None:
    ds = Dataset()
    add_export_block(ds, CONFIG)
    add_export_block(ds, CONFIG)
    creators = [e for e in ds if e.tag.group == PRIVATE_GROUP and e.tag.element < 0x100]
    assert len(creators) == 1
    assert export_platform_name(ds, "SOMEONE_ELSE") is None
