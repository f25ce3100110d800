"""Patient-information changes with UID re-linking (Oncentra Brachy 8.1.1.1.2, 8.1.1.2.6-8).

Changing Patient ID, Patient's Name, Sex or Birth Date of an object makes it a
new object: :func:`relink` gives every changed object a new SOP Instance UID
and makes the objects that reference it follow: a structure set references
the new image UIDs, a plan the new structure set, an RT Image the new plan.
An object whose only change is such a reference gets a new UID too, so the
change ripples along the chain.

RT Dose objects are never re-linked (the vendor's safety rule: a dose must not
silently become the dose of another plan or patient): they are returned
untouched, and :class:`RelinkResult` lists them with the references that no
longer resolve.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import RTDoseStorage

from rtforge.config import ExportConfig
from rtforge.errors import InvalidInputError
from rtforge.io.references import Reference, ReferenceKind, check_references, iter_references
from rtforge.io.uids import new_uid

__all__ = ["PatientChange", "UntouchedDose", "RelinkResult", "relink"]

_SEXES = ("M", "F", "O")


@dataclass(frozen=True)
class PatientChange:
    """The new patient information (None: unchanged).

    Parameters
    ----------
    patient_id : str
    patient_name : str, optional
        DICOM PN, e.g. ``Doe^Jane``.
    sex : {"M", "F", "O"}, optional
    birth_date : str, optional
        ``YYYYMMDD``.

    Raises
    ------
    InvalidInputError
        If a value is not valid for its attribute.
    """

    patient_id: str
    patient_name: str | None = None
    sex: str | None = None
    birth_date: str | None = None

    def __post_init__(self) -> None:
        if not self.patient_id.strip() or len(self.patient_id) > 64 or "\\" in self.patient_id:
            raise InvalidInputError("patient_id must be 1 to 64 characters without backslash",
                                    tag="PatientID")
        if self.patient_name is not None and (
                "\\" in self.patient_name
                or any(len(g) > 64 for g in self.patient_name.split("="))):
            raise InvalidInputError("patient_name must be a DICOM person name (component groups "
                                    "of at most 64 characters, no backslash)", tag="PatientName")
        if self.sex is not None and self.sex not in _SEXES:
            raise InvalidInputError(f"sex must be one of {', '.join(_SEXES)}, got {self.sex!r}",
                                    tag="PatientSex")
        if self.birth_date is not None:
            try:
                datetime.strptime(self.birth_date, "%Y%m%d")
                ok = len(self.birth_date) == 8
            except ValueError:
                ok = False
            if not ok:
                raise InvalidInputError(f"birth_date must be a date YYYYMMDD, got "
                                        f"{self.birth_date!r}", tag="PatientBirthDate")

    def values(self) -> dict[str, str]:
        """Keyword to new value, for what changes."""
        out = {"PatientID": self.patient_id, "PatientName": self.patient_name,
               "PatientSex": self.sex, "PatientBirthDate": self.birth_date}
        return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True)
class UntouchedDose:
    """An RT Dose left as it was, and its references that no longer resolve."""

    sop_instance_uid: str
    dangling: tuple[Reference, ...]


@dataclass(frozen=True)
class RelinkResult:
    """What :func:`relink` did.

    Parameters
    ----------
    datasets : tuple of pydicom.Dataset
        Every object, in the input order (RT Dose objects untouched).
    uid_map : dict of str to str
        Old to new SOP Instance UID of every changed object.
    relinked : tuple of Reference
        The references that now point to a new UID (``uid`` is the new one).
    untouched_doses : tuple of UntouchedDose
    """

    datasets: tuple[Dataset, ...]
    uid_map: dict[str, str]
    relinked: tuple[Reference, ...]
    untouched_doses: tuple[UntouchedDose, ...]


def _is_dose(ds: Dataset) -> bool:
    return str(ds.get("SOPClassUID", "")) == RTDoseStorage


def _differs(ds: Dataset, values: dict[str, str]) -> bool:
    return any(str(ds.get(k, "") or "") != v for k, v in values.items())


def _remap(ds: Dataset, uid_map: dict[str, str]) -> None:
    """Replace referenced SOP Instance UIDs found in ``uid_map``, inside sequences."""
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                _remap(item, uid_map)
        elif elem.keyword == "ReferencedSOPInstanceUID" and str(elem.value) in uid_map:
            elem.value = uid_map[str(elem.value)]


def relink(datasets: Iterable[Dataset], change: PatientChange, *,
           config: ExportConfig | None = None) -> RelinkResult:
    """Change the patient information of a set of objects and re-link their references.

    Parameters
    ----------
    datasets : iterable of pydicom.Dataset
        Not modified.
    change : PatientChange
    config : ExportConfig, optional
        UID root of the new SOP Instance UIDs.

    Returns
    -------
    RelinkResult

    Raises
    ------
    InvalidInputError
        If an object has no SOP Instance UID, or two objects share one.
    """
    config = config or ExportConfig()
    objects = list(datasets)
    uids = [str(ds.get("SOPInstanceUID", "")) for ds in objects]
    if "" in uids:
        raise InvalidInputError("an object has no SOP Instance UID", tag="SOPInstanceUID")
    if len(set(uids)) != len(uids):
        raise InvalidInputError("two objects share a SOP Instance UID", tag="SOPInstanceUID")
    values = change.values()
    instance_refs = {uid: {r.uid for r in iter_references(ds) if r.kind is ReferenceKind.INSTANCE}
                     for uid, ds in zip(uids, objects, strict=True)}
    changed = {uid for uid, ds in zip(uids, objects, strict=True)
               if not _is_dose(ds) and _differs(ds, values)}
    growing = True
    while growing:  # an object that references a changed one changes too
        more = {uid for uid, ds in zip(uids, objects, strict=True)
                if uid not in changed and not _is_dose(ds) and instance_refs[uid] & changed}
        changed |= more
        growing = bool(more)
    uid_map = {uid: str(new_uid(config.uid_root)) for uid in uids if uid in changed}
    out = []
    for uid, ds in zip(uids, objects, strict=True):
        if uid not in changed:
            out.append(ds)
            continue
        new = copy.deepcopy(ds)
        new.file_meta = FileMetaDataset()  # the old one names the old SOP Instance UID
        if "TransferSyntaxUID" in getattr(ds, "file_meta", {}):
            new.file_meta.TransferSyntaxUID = ds.file_meta.TransferSyntaxUID
        for keyword, value in values.items():
            setattr(new, keyword, value)
        new.SOPInstanceUID = uid_map[uid]
        _remap(new, uid_map)
        out.append(new)
    relinked = tuple(r for ds in out if str(ds.SOPInstanceUID) in uid_map.values()
                     for r in iter_references(ds)
                     if r.kind is ReferenceKind.INSTANCE and r.uid in uid_map.values())
    report = check_references(out)
    doses = tuple(UntouchedDose(str(ds.SOPInstanceUID),
                                tuple(r for r in report.dangling
                                      if r.source == str(ds.SOPInstanceUID)))
                  for ds in out if _is_dose(ds))
    return RelinkResult(tuple(out), uid_map, relinked, doses)
