"""Shared IOD modules, kept as data, and the one helper that builds them.

Each :class:`Module` lists the attributes rtforge writes, with the PS3.3
section and the iPlan RT Dose 4.1 conformance-statement table beside it.  An
IOD builder (``io/ct.py``, later the RT objects) lists its modules, collects
the values (carried over from a source data set with :func:`carried_values`,
generated, then the caller's overrides) and calls :func:`build_dataset`,
which applies the attribute types:

- Type ``"1"``: must have a value, else :class:`~rtforge.errors.ConformanceError`;
- Type ``"2"``: always present, empty when the value is unknown;
- Type ``"3"``: present only when there is a value.

Conditional types (1C, 2C) are resolved for the IODs rtforge writes and
written as one of those three; the condition is in the attribute's note.
Where the iPlan table and PS3.3 disagree the standard wins and the note says so.

Every DS value goes through :func:`format_ds` (at most 16 characters, PS3.5
6.2: pydicom writes longer strings without a warning and dciodvfy rejects them).
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np
from pydicom import Dataset
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.multival import MultiValue

import rtforge
from rtforge.config import ExportConfig
from rtforge.core._decimal import compact_decimal
from rtforge.errors import ConformanceError, InvalidInputError
from rtforge.io.charset import check_source, check_values, output_character_set
from rtforge.io.private import add_export_block

__all__ = [
    "ModuleAttribute",
    "Module",
    "PATIENT",
    "GENERAL_STUDY",
    "PATIENT_STUDY",
    "GENERAL_SERIES",
    "UNPAIRED_BODY_PARTS",
    "RT_SERIES",
    "FRAME_OF_REFERENCE",
    "GENERAL_EQUIPMENT",
    "SOP_COMMON",
    "MANUFACTURER",
    "MAX_VALUE_LENGTH",
    "format_ds",
    "format_da",
    "format_tm",
    "carried_values",
    "equipment_values",
    "build_dataset",
]

logger = logging.getLogger(__name__)

#: Manufacturer (0008,0070) and Manufacturer's Model Name (0008,1090) of what rtforge creates.
MANUFACTURER = "rtforge"

AttributeType = Literal["1", "2", "3"]


@dataclass(frozen=True)
class ModuleAttribute:
    """One attribute of a module as rtforge writes it.

    Parameters
    ----------
    keyword : str
        DICOM keyword.
    type : {"1", "2", "3"}
        Attribute type as written (conditional types resolved; see ``note``).
    carry : bool
        Copied from the source data set when the source has a value.
    note : str
        Where our usage differs from PS3.3 or the iPlan table, and why.
    """

    keyword: str
    type: AttributeType
    carry: bool = False
    note: str = ""


@dataclass(frozen=True)
class Module:
    """A module (PS3.3 name) and the attributes rtforge writes in it.

    Parameters
    ----------
    name : str
        PS3.3 module name.
    section : str
        PS3.3 section, e.g. ``"C.7.1.1"``.
    iplan_table : str
        Table of the iPlan RT Dose 4.1 conformance statement, e.g. ``"8-6"``.
    attributes : tuple of ModuleAttribute
    """

    name: str
    section: str
    iplan_table: str
    attributes: tuple[ModuleAttribute, ...]

    @property
    def keywords(self) -> tuple[str, ...]:
        """The attributes' keywords, in table order."""
        return tuple(a.keyword for a in self.attributes)


_A = ModuleAttribute

PATIENT = Module("Patient", "C.7.1.1", "8-6", (
    _A("PatientName", "2", carry=True),
    _A("PatientID", "2", carry=True),
    _A("IssuerOfPatientID", "3", carry=True),
    _A("PatientBirthDate", "2", carry=True),
    _A("PatientSex", "2", carry=True),
    _A("PatientIdentityRemoved", "3", carry=True,
       note="not in the iPlan table; carried so that de-identified input stays marked"),
    _A("DeidentificationMethod", "3", carry=True,
       note="PS3.3 Type 1C (Patient Identity Removed is YES): carried with it"),
))

GENERAL_STUDY = Module("General Study", "C.7.2.1", "8-8", (
    _A("StudyDate", "2", carry=True, note="iPlan: ANAP; PS3.3 Type 2 wins"),
    _A("StudyTime", "2", carry=True, note="not in the iPlan table; PS3.3 Type 2"),
    _A("AccessionNumber", "2", carry=True, note="iPlan: EMPTY; carried over when known"),
    _A("ReferringPhysicianName", "2", carry=True, note="iPlan: EMPTY; carried over when known"),
    _A("StudyDescription", "3", carry=True),
    _A("StudyInstanceUID", "1", carry=True),
    _A("StudyID", "2", carry=True),
))

PATIENT_STUDY = Module("Patient Study", "C.7.2.2", "8-9", (
    _A("PatientAge", "3", carry=True, note="not in the iPlan table"),
    _A("PatientSize", "3", carry=True, note="Patient's Height in the iPlan table"),
    _A("PatientWeight", "3", carry=True),
))

GENERAL_SERIES = Module("General Series", "C.7.3.1", "8-11", (
    _A("SeriesDate", "3"),
    _A("SeriesTime", "3"),
    _A("Modality", "1"),
    _A("SeriesDescription", "3"),
    _A("BodyPartExamined", "3", carry=True, note="not in the iPlan table"),
    _A("PatientPosition", "2", carry=True,
       note="iPlan: VR DA, ANAP; PS3.3: CS, Type 2C, required for CT and MR Image Storage"),
    _A("SeriesInstanceUID", "1"),
    _A("SeriesNumber", "2", carry=True, note="iPlan: ALWAYS; PS3.3 Type 2"),
    _A("Laterality", "3", carry=True,
       note="PS3.3 Type 2C, required for a paired body part: carried when the source has a "
            "value; otherwise absent for a Body Part Examined in UNPAIRED_BODY_PARTS and "
            "empty (unknown) for any other (build_dataset). Oncentra: 2C, not supported"),
))

#: Body Part Examined defined terms (PS3.16 Annex L) of unpaired parts, for which General
#: Series' Laterality (Type 2C) is absent.  Each was checked against dciodvfy, which asks for
#: Laterality whenever the body part is paired or unknown; for those, an empty Laterality
#: (unknown) is written.
UNPAIRED_BODY_PARTS = frozenset({
    "ABDOMEN", "ABDOMENPELVIS", "AORTA", "BLADDER", "BRAIN", "CERVIX", "CHEST", "CHESTABDOMEN",
    "CHESTABDPELVIS", "CIRCLEOFWILLIS", "COCCYX", "COLON", "CSPINE", "CTSPINE", "DUODENUM",
    "ESOPHAGUS", "FACE", "GALLBLADDER", "HEAD", "HEADNECK", "HEART", "LARYNX", "LIVER",
    "LSPINE", "LSSPINE", "MAXILLA", "MEDIASTINUM", "MOUTH", "NECK", "NOSE", "PANCREAS",
    "PELVIS", "PENIS", "PHARYNX", "PROSTATE", "RECTUM", "SKULL", "SPINE", "SPLEEN", "SSPINE",
    "STERNUM", "STOMACH", "THYROID", "TLSPINE", "TONGUE", "TRACHEA", "TSPINE", "UTERUS",
    "VAGINA", "VULVA", "WHOLEBODY",
})

RT_SERIES = Module("RT Series", "C.8.8.1", "8-12", (
    _A("SeriesDate", "3"),
    _A("SeriesTime", "3"),
    _A("Modality", "1"),
    _A("SeriesDescription", "3"),
    _A("OperatorsName", "2", note="not in the iPlan table; PS3.3 Type 2"),
    _A("SeriesInstanceUID", "1"),
    _A("SeriesNumber", "2", note="iPlan: ALWAYS; PS3.3 Type 2"),
))

FRAME_OF_REFERENCE = Module("Frame of Reference", "C.7.4.1", "8-14", (
    _A("FrameOfReferenceUID", "1", carry=True,
       note="iPlan: generated; kept from the source when the patient system is unchanged"),
    _A("PositionReferenceIndicator", "2", carry=True),
))

GENERAL_EQUIPMENT = Module("General Equipment", "C.7.5.1", "8-15", (
    _A("Manufacturer", "2", note="iPlan: ALWAYS; PS3.3 Type 2"),
    _A("StationName", "3", note="iPlan: ALWAYS, from the configuration"),
    _A("ManufacturerModelName", "3", note="iPlan: ALWAYS"),
    _A("SoftwareVersions", "3", note="iPlan: ALWAYS"),
    # The private block (0009,00xx)/(0009,xx01) of iPlan table 8-15 is added
    # by build_dataset through rtforge.io.private.
))

SOP_COMMON = Module("SOP Common", "C.12.1", "8-22", (
    _A("SpecificCharacterSet", "1",
       note="PS3.3 Type 1C (a non-default repertoire); always written, as iPlan does"),
    _A("InstanceCreationDate", "3", note="iPlan: ALWAYS"),
    _A("InstanceCreationTime", "3", note="iPlan: ALWAYS"),
    _A("SOPClassUID", "1", note="iPlan table 8-22 gives VR DS; PS3.6: UI"),
    _A("SOPInstanceUID", "1", note="iPlan table 8-22 gives VR DS; PS3.6: UI"),
))

#: Maximum length (characters) of one value of each string VR, PS3.5 table 6.2-1.
MAX_VALUE_LENGTH: dict[str, int] = {
    "AE": 16, "AS": 4, "CS": 16, "DA": 8, "DS": 16, "DT": 26, "IS": 12, "LO": 64, "SH": 16,
    "ST": 1024, "LT": 10240, "TM": 14, "UI": 64,
}
_BINARY_VRS = frozenset({"US", "SS", "UL", "SL", "UV", "SV", "FL", "FD", "AT",
                         "OB", "OW", "OD", "OF", "OL", "OV", "UN"})
_IS_RANGE = (-(2**31), 2**31 - 1)
#: Value formats of the date and age VRs (PS3.5 table 6.2-1); checked on every value
#: written, so that an invalid source value (a Patient's Age of ``0Y``) is dropped, not
#: copied.
_FORMATS = {
    "AS": re.compile(r"^\d{3}[DWMY]$"),
    "DA": re.compile(r"^\d{4}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])$"),
    "TM": re.compile(r"^([01]\d|2[0-3])([0-5]\d([0-5]\d(\.\d{1,6})?)?)?$"),
}


# --------------------------------------------------------------- value rules
def format_ds(value: float) -> str:
    """The shortest Decimal String of at most 16 characters closest to ``value``.

    The shortest string that reads back as exactly ``value`` (Python's
    ``repr``) when it fits in 16 characters; otherwise, of all fixed-point and
    exponent forms that fit, the one closest to ``value`` (then the shortest).
    Integers are written without a decimal point, zero as ``0``.

    Parameters
    ----------
    value : float
        Any finite number (int, float, numpy scalar, or a DS).

    Returns
    -------
    str
        Characters ``0-9 + - . e`` only, at most 16 (PS3.5 table 6.2-1).

    Raises
    ------
    ConformanceError
        If ``value`` is NaN or infinite (DS cannot express it).

    Examples
    --------
    >>> format_ds(-1024.0), format_ds(0.1), format_ds(1 / 3)
    ('-1024', '0.1', '0.33333333333333')
    """
    v = float(value)
    if not math.isfinite(v):
        raise ConformanceError(f"{value!r} cannot be written as a Decimal String (DS)")
    if v == 0.0:
        return "0"
    text = compact_decimal(repr(v))
    if len(text) <= 16:
        return text
    closest = _closest_ds(v)
    if closest is None:
        raise ConformanceError(f"{value!r} cannot be written as a Decimal String (DS)")
    return closest


@functools.lru_cache(maxsize=4096)
def _closest_ds(v: float) -> str | None:
    """:func:`format_ds` of a value whose shortest repr is too long, or None.

    Cached: a series writes the same image position coordinates on every slice
    (about 0.03 s of writing 158 slices before).
    """
    # Rounding to more digits is never farther from v, so the closest forms are the
    # longest of each kind that fit; their next shorter neighbours are kept too, for values
    # a double cannot tell apart and whose shorter spelling then wins.
    fitting = _longest_forms(v, "e", 15) + _longest_forms(v, "f", 16)
    if not fitting:
        return None
    return min(fitting, key=lambda c: (abs(float(c) - v), len(c)))


def _longest_forms(v: float, kind: str, most: int, keep: int = 3) -> list[str]:
    """``v`` in ``kind`` format (``e`` or ``f``), compacted, with the ``keep`` largest
    numbers of digits that fit in 16 characters and do not read as zero."""
    forms: list[str] = []
    for digits in range(most, -1, -1):
        text = compact_decimal(f"{v:.{digits}{kind}}")
        if len(text) <= 16 and float(text) != 0.0:
            forms.append(text)
            if len(forms) == keep:
                break
    return forms


def format_da(when: datetime) -> str:
    """A Date (DA) value.

    Parameters
    ----------
    when : datetime

    Returns
    -------
    str
        ``YYYYMMDD``.
    """
    return when.strftime("%Y%m%d")


def format_tm(when: datetime) -> str:
    """A Time (TM) value, to the second.

    Parameters
    ----------
    when : datetime

    Returns
    -------
    str
        ``HHMMSS``.
    """
    return when.strftime("%H%M%S")


def _vr(keyword: str) -> str:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise InvalidInputError(f"{keyword!r} is not a DICOM keyword", tag=keyword)
    return dictionary_VR(tag)


def _is_empty(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, str | bytes | list | tuple | MultiValue | np.ndarray):
        return len(value) == 0
    return False


def _values_of(value: object) -> list[object]:
    if isinstance(value, np.ndarray):
        return list(value.ravel().tolist())
    if isinstance(value, list | tuple | MultiValue):
        return list(value)
    return [value]


def _conform(keyword: str, value: object) -> object:
    """``value`` as rtforge writes it for ``keyword``, or None when empty.

    Raises ConformanceError when the value breaks the VR's rules.
    """
    if _is_empty(value):
        return None
    vr = _vr(keyword)
    if vr == "SQ":
        items = list(value)  # type: ignore[call-overload]
        if not all(isinstance(item, Dataset) for item in items):
            raise ConformanceError(f"{keyword} must be a list of Datasets")
        return items
    if vr in _BINARY_VRS or " or " in vr:  # numbers and bytes; ambiguous VRs ("OB or OW")
        return value
    values = _values_of(value)
    try:
        if vr == "DS":
            texts = [format_ds(float(v)) for v in values]  # type: ignore[arg-type]
        elif vr == "IS":
            numbers = [int(v) for v in values]  # type: ignore[call-overload]
            if any(not _IS_RANGE[0] <= n <= _IS_RANGE[1] for n in numbers):
                raise ConformanceError(f"{keyword} {numbers} is outside the IS range")
            texts = [str(n) for n in numbers]
        else:
            texts = [str(v) for v in values]
    except (TypeError, ValueError) as exc:
        raise ConformanceError(f"{keyword} value {value!r} is not a valid {vr}: {exc}") from None
    limit = MAX_VALUE_LENGTH.get(vr)
    if vr == "PN":
        if any(len(group) > 64 for t in texts for group in t.split("=")):
            raise ConformanceError(f"{keyword} {value!r}: a PN component group exceeds 64 "
                                   "characters")
    elif limit is not None and any(len(t) > limit for t in texts):
        raise ConformanceError(f"{keyword} {value!r} exceeds {limit} characters ({vr})")
    if vr == "UI" and not all(t.replace(".", "").isdigit() for t in texts):
        raise ConformanceError(f"{keyword} {value!r} is not a UID")
    pattern = _FORMATS.get(vr)
    if pattern is not None and not all(pattern.match(t) for t in texts):
        raise ConformanceError(f"{keyword} {value!r} is not a valid {vr}")
    return texts[0] if len(texts) == 1 else texts


def _carry(keyword: str, value: object, dropped: list[str] | None) -> object:
    """A source value made writable, or None (with a log line, and a line in
    ``dropped``) when it cannot be."""
    vr = _vr(keyword)
    if vr == "PN":
        value = [str(v) for v in _values_of(value)]
    limit = MAX_VALUE_LENGTH.get(vr)
    if limit is not None and vr not in ("DS", "IS", "UI", "DA", "TM", "DT"):
        texts = [str(v) for v in _values_of(value)]
        if any(len(t) > limit for t in texts):
            logger.warning("source %s %r exceeds %d characters (%s): truncated",
                           keyword, value, limit, vr)
            value = [t[:limit] for t in texts]
    try:
        return _conform(keyword, value)
    except ConformanceError as exc:
        logger.warning("source value dropped: %s", exc)
        if dropped is not None:
            dropped.append(f"source value dropped: {exc}")
        return None


def carried_values(source: Dataset | None, modules: Iterable[Module], *,
                   dropped: list[str] | None = None) -> dict[str, object]:
    """Values of the attributes marked ``carry`` that ``source`` has.

    Source values that break their VR's rules are repaired where that keeps
    the information (overlong text truncated to the VR's maximum, DS
    re-formatted) and dropped otherwise (an invalid date or age); each repair
    is logged as a warning.

    Parameters
    ----------
    source : pydicom.Dataset or None
        The data set the new object derives from.
    modules : iterable of Module
    dropped : list of str, optional
        Receives one line per source value dropped, for the caller's report.

    Returns
    -------
    dict of str to object
        Keyword to value, only for attributes the source has a non-empty value for.

    Raises
    ------
    InvalidInputError
        If the source's Specific Character Set is not one its text can be
        decoded with (:func:`~rtforge.io.charset.check_source`).
    """
    if source is None:
        return {}
    check_source(source)
    out: dict[str, object] = {}
    for module in modules:
        for attr in module.attributes:
            if not attr.carry or attr.keyword in out:
                continue
            try:
                value = source.get(attr.keyword)
            except (TypeError, ValueError) as exc:  # a source value pydicom cannot decode
                logger.warning("source %s dropped: %s", attr.keyword, exc)
                if dropped is not None:
                    dropped.append(f"source value dropped: {attr.keyword}: {exc}")
                continue
            if _is_empty(value):
                continue
            carried = _carry(attr.keyword, value, dropped)
            if carried is not None:
                out[attr.keyword] = carried
    return out


def equipment_values(config: ExportConfig) -> dict[str, object]:
    """General Equipment values of what rtforge creates (iPlan table 8-15).

    Parameters
    ----------
    config : ExportConfig

    Returns
    -------
    dict of str to object
    """
    return {
        "Manufacturer": MANUFACTURER,
        "ManufacturerModelName": MANUFACTURER,
        "SoftwareVersions": rtforge.__version__,
        "StationName": config.station_name,
    }


# ------------------------------------------------------------------ builder
def build_dataset(modules: Iterable[Module], values: Mapping[str, object], *,
                  config: ExportConfig | None = None, omit: Iterable[str] = ()) -> Dataset:
    """Build a data set from module tables and values.

    Parameters
    ----------
    modules : iterable of Module
        The IOD's modules.  A keyword in several modules is written once and
        must satisfy the strictest type.
    values : mapping of str to object
        Keyword to value; ``None`` or empty means unknown.  Every keyword must
        belong to one of ``modules``.  Values are checked against their VR
        (length, DS and IS syntax, UID characters) and DS values formatted by
        :func:`format_ds`.  Specific Character Set is not among them: it is
        the configured output set (:mod:`rtforge.io.charset`).
    config : ExportConfig, optional
        Needed when ``modules`` holds :data:`GENERAL_EQUIPMENT`: adds our
        private block (creator and Export Platform Name, iPlan table 8-15).
        Its ``character_set`` is written when ``modules`` hold
        :data:`SOP_COMMON` (default ``ISO_IR 100``), and every text value,
        sequence items included, must fit it.
    omit : iterable of str, optional
        Keywords the caller encodes itself (per-instance elements of a series):
        they are neither checked nor written.

    Returns
    -------
    pydicom.Dataset

    Raises
    ------
    ConformanceError
        If a Type 1 attribute has no value or a value breaks its VR's rules.
    InvalidInputError
        If ``values`` holds a keyword none of ``modules`` lists, General
        Equipment is built without ``config``, or (with SOP Common) a text
        value does not fit the output character set.
    """
    modules = tuple(modules)
    skipped = set(omit)
    known = {kw for m in modules for kw in m.keywords}
    unknown = sorted(set(values) - known - skipped)
    if unknown:
        names = ", ".join(m.name for m in modules)
        raise InvalidInputError(f"attribute(s) {', '.join(unknown)} are not in the modules "
                                f"written here ({names})")
    resolved = dict(values)
    if SOP_COMMON in modules:  # a whole object: its text, items included, in the policy's set
        character_set = output_character_set(config)
        check_values(values, character_set)
        resolved["SpecificCharacterSet"] = character_set
    ds = Dataset()
    for module in modules:
        for attr in module.attributes:
            if attr.keyword in skipped:
                continue
            value = _conform(attr.keyword, resolved.get(attr.keyword))
            if value is None:
                if attr.type == "1":
                    raise ConformanceError(
                        f"{attr.keyword} (Type 1, {module.name} module, PS3.3 "
                        f"{module.section}, iPlan table {module.iplan_table}) has no value")
                if attr.type == "2":
                    setattr(ds, attr.keyword, [] if _vr(attr.keyword) == "SQ" else None)
                continue
            setattr(ds, attr.keyword, value)
    if GENERAL_SERIES in modules and "Laterality" not in skipped and "Laterality" not in ds \
            and str(resolved.get("BodyPartExamined") or "").upper() not in UNPAIRED_BODY_PARTS:
        ds.Laterality = None  # Type 2C with a paired or unknown body part: unknown
    if GENERAL_EQUIPMENT in modules:
        if config is None:
            raise InvalidInputError("build_dataset needs config to write General Equipment")
        add_export_block(ds, config)
    return ds

