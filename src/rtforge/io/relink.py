"""Patient-information changes with UID re-linking (Oncentra Brachy 8.1.1.1.2, 8.1.1.2.6-8).

Changing Patient ID, Patient's Name, Sex or Birth Date of an object makes it a
new object: :func:`relink` gives every changed object new UIDs and makes the
objects that reference it follow: a structure set references the new image
UIDs, a plan the new structure set, an RT Image the new plan, a Spatial
Registration the new series and images.  An object whose only change is such a
reference is changed too, so the change ripples along the chain.

New identities (default): every changed object gets a new SOP Instance, Series
Instance and Study Instance UID, so that the new patient's objects form their
own studies and series: a study never exists under two patients (a PACS or the
local catalog would otherwise show, and a study-level C-MOVE return, both
patients' objects).  Frame of Reference UIDs stay: the objects still lie in the
same physical frame.  Each new UID is :func:`~rtforge.io.uids.derived_uid` of
the organisation root, the new patient information and the old UID: the same
change of the same objects gives the same UIDs on every run, and every object
of one old study (or series) lands in the same new one.

``keep_study_uids=True`` is Oncentra's literal behaviour: new SOP Instance UIDs
only.  The studies then exist under two patients; :class:`RelinkResult` lists
them in ``shared_studies`` so that the caller can warn.

RT Dose objects are never re-linked (the vendor's safety rule, Oncentra
8.1.1.2.9: a dose must not silently become the dose of another plan or
patient): they are returned untouched, and :class:`RelinkResult` lists them
with the references that no longer resolve.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import RTDoseStorage

from rtforge.config import ExportConfig
from rtforge.errors import InvalidInputError
from rtforge.io.charset import conformed, output_character_set
from rtforge.io.references import Reference, ReferenceKind, check_references, iter_references
from rtforge.io.uids import derived_uid

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
    series_map, study_map : dict of str to str
        Old to new Series and Study Instance UIDs (empty with ``keep_study_uids``).
    shared_studies : tuple of str
        With ``keep_study_uids``: the Study Instance UIDs now carried by objects
        of the new patient and, elsewhere, of the old one.
    """

    datasets: tuple[Dataset, ...]
    uid_map: dict[str, str]
    relinked: tuple[Reference, ...]
    untouched_doses: tuple[UntouchedDose, ...]
    series_map: dict[str, str] = field(default_factory=dict)
    study_map: dict[str, str] = field(default_factory=dict)
    shared_studies: tuple[str, ...] = ()


#: Reference kinds that follow a changed object (its Frame of Reference stays).
_FOLLOWED = (ReferenceKind.INSTANCE, ReferenceKind.SERIES, ReferenceKind.STUDY)
#: The attribute that holds an object's own UID of each followed kind.
_OWN_UID = {ReferenceKind.INSTANCE: "SOPInstanceUID", ReferenceKind.SERIES: "SeriesInstanceUID",
            ReferenceKind.STUDY: "StudyInstanceUID"}


def _is_dose(ds: Dataset) -> bool:
    return str(ds.get("SOPClassUID", "")) == RTDoseStorage


def _differs(ds: Dataset, values: dict[str, str]) -> bool:
    return any(str(ds.get(k, "") or "") != v for k, v in values.items())


def _remap(ds: Dataset, uid_map: dict[str, str]) -> None:
    """Replace the referenced UIDs found in ``uid_map`` (instances, series, studies)."""
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                _remap(item, uid_map)
        elif elem.keyword in ("ReferencedSOPInstanceUID", "SeriesInstanceUID",
                              "StudyInstanceUID") and str(elem.value) in uid_map:
            elem.value = uid_map[str(elem.value)]


def _copy_changed(ds: Dataset, values: dict[str, str], uid_map: dict[str, str]) -> Dataset:
    """A copy of ``ds`` with the new patient values and every mapped UID replaced."""
    new = copy.deepcopy(ds)
    new.file_meta = FileMetaDataset()  # the old one names the old SOP Instance UID
    if "TransferSyntaxUID" in getattr(ds, "file_meta", {}):
        new.file_meta.TransferSyntaxUID = ds.file_meta.TransferSyntaxUID
    for keyword, value in values.items():
        setattr(new, keyword, value)
    _remap(new, uid_map)  # top level: the object's own study and series; items: references
    new.SOPInstanceUID = uid_map[str(ds.SOPInstanceUID)]
    return new


def relink(datasets: Iterable[Dataset], change: PatientChange, *,
           config: ExportConfig | None = None, keep_study_uids: bool = False) -> RelinkResult:
    """Change the patient information of a set of objects and re-link their references.

    Parameters
    ----------
    datasets : iterable of pydicom.Dataset
        Not modified.
    change : PatientChange
    config : ExportConfig, optional
        UID root of the new UIDs, and the character set every returned
        object is re-encoded in (:mod:`rtforge.io.charset`).
    keep_study_uids : bool
        Keep the Study and Series Instance UIDs (Oncentra's behaviour: new SOP
        Instance UIDs only); the studies then exist under two patients.

    Returns
    -------
    RelinkResult

    Raises
    ------
    InvalidInputError
        If an object has no SOP Instance UID, or two objects share one, or
        a value (the new name included) does not fit the output character set.

    Notes
    -----
    The new UIDs are derived from the old ones and the new patient (see the
    module docstring): relinking the same objects to the same patient twice
    gives identical results.
    """
    config = config or ExportConfig()
    objects = list(datasets)
    uids = [str(ds.get("SOPInstanceUID", "")) for ds in objects]
    if "" in uids:
        raise InvalidInputError("an object has no SOP Instance UID", tag="SOPInstanceUID")
    if len(set(uids)) != len(uids):
        raise InvalidInputError("two objects share a SOP Instance UID", tag="SOPInstanceUID")
    values = change.values()
    kinds = _FOLLOWED[:1] if keep_study_uids else _FOLLOWED
    refs = {uid: {r.uid for r in iter_references(ds) if r.kind in kinds}
            for uid, ds in zip(uids, objects, strict=True)}
    changed = {uid for uid, ds in zip(uids, objects, strict=True)
               if not _is_dose(ds) and _differs(ds, values)}
    while True:  # an object that references a changed one changes too
        own = {str(ds.get(_OWN_UID[kind], "")) for uid, ds in zip(uids, objects, strict=True)
               if uid in changed for kind in kinds}
        more = {uid for uid, ds in zip(uids, objects, strict=True)
                if uid not in changed and not _is_dose(ds) and refs[uid] & own}
        if not more:
            break
        changed |= more
    mode = "relink-keep-study" if keep_study_uids else "relink"
    patient = "\x1e".join(f"{k}={v}" for k, v in sorted(values.items()))
    maps: dict[ReferenceKind, dict[str, str]] = {kind: {} for kind in kinds}
    for uid, ds in zip(uids, objects, strict=True):
        if uid in changed:
            for kind in kinds:
                old = str(ds.get(_OWN_UID[kind], "") or "")
                if old:
                    maps[kind][old] = str(derived_uid(config.uid_root, mode, patient, old))
    uid_map = maps[ReferenceKind.INSTANCE]
    every = {old: new for kind_map in maps.values() for old, new in kind_map.items()}
    out = [conformed(_copy_changed(ds, values, every) if uid in changed else ds,
                     output_character_set(config))
           for uid, ds in zip(uids, objects, strict=True)]
    new_uids = set(every.values())
    relinked = tuple(r for ds in out if str(ds.SOPInstanceUID) in uid_map.values()
                     for r in iter_references(ds) if r.kind in kinds and r.uid in new_uids)
    report = check_references(out)
    doses = tuple(UntouchedDose(str(ds.SOPInstanceUID),
                                tuple(r for r in report.dangling
                                      if r.source == str(ds.SOPInstanceUID)))
                  for ds in out if _is_dose(ds))
    shared = () if not keep_study_uids else tuple(sorted(
        {str(ds.get("StudyInstanceUID", "")) for uid, ds in zip(uids, objects, strict=True)
         if uid in changed} - {""}))
    return RelinkResult(tuple(out), uid_map, relinked, doses,
                        series_map=maps.get(ReferenceKind.SERIES, {}),
                        study_map=maps.get(ReferenceKind.STUDY, {}), shared_studies=shared)
