"""Reference integrity of a set of objects: what each object references, and what dangles.

An object *provides* its SOP Instance, Series, Study and Frame of Reference
UIDs.  It *references* UIDs inside its sequences (PS3.3 C.12.1.1.x and the RT
modules):

- Referenced SOP Instance UID (0008,1155): an instance, or a study when the
  item's Referenced SOP Class UID is Detached Study Management or Study
  Component Management (RT Referenced Study Sequence of a structure set);
- Series Instance UID (0020,000E) and Study Instance UID (0020,000D) inside a
  sequence item;
- Frame of Reference UID (0020,0052) inside a sequence item, Referenced and
  Related Frame of Reference UIDs anywhere.

:func:`check_references` resolves every reference against the objects of the
set and lists those that do not resolve.  Used by de-identification,
re-linking and ``rtforge validate``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from pydicom import Dataset

from rtforge.errors import InvalidInputError
from rtforge.io.integrity import read_checked

__all__ = [
    "ReferenceKind",
    "Reference",
    "IntegrityReport",
    "STUDY_REFERENCE_CLASSES",
    "iter_references",
    "check_references",
    "read_folder",
]

logger = logging.getLogger(__name__)

#: Referenced SOP Class UIDs whose Referenced SOP Instance UID is a Study Instance UID.
STUDY_REFERENCE_CLASSES = frozenset({
    "1.2.840.10008.3.1.2.3.1",  # Detached Study Management (retired)
    "1.2.840.10008.3.1.2.3.2",  # Study Component Management (retired)
})
_FRAME_KEYWORDS = frozenset({"ReferencedFrameOfReferenceUID", "RelatedFrameOfReferenceUID"})


class ReferenceKind(str, Enum):
    """What a referenced UID identifies."""

    INSTANCE = "instance"
    SERIES = "series"
    STUDY = "study"
    FRAME_OF_REFERENCE = "frame of reference"


@dataclass(frozen=True)
class Reference:
    """One UID an object references.

    Parameters
    ----------
    source : str
        SOP Instance UID of the referencing object.
    path : str
        Where it sits in the object, e.g. ``ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID``.
    kind : ReferenceKind
    uid : str
    """

    source: str
    path: str
    kind: ReferenceKind
    uid: str


@dataclass(frozen=True)
class IntegrityReport:
    """Every reference of a set of objects, and those that do not resolve in it.

    Parameters
    ----------
    references : tuple of Reference
    dangling : tuple of Reference
    object_count : int
    """

    references: tuple[Reference, ...]
    dangling: tuple[Reference, ...]
    object_count: int

    @property
    def ok(self) -> bool:
        """True when every reference resolves."""
        return not self.dangling


def iter_references(ds: Dataset) -> Iterator[Reference]:
    """Every UID reference of one object (see the module docstring).

    Parameters
    ----------
    ds : pydicom.Dataset

    Yields
    ------
    Reference
    """
    source = str(ds.get("SOPInstanceUID", ""))
    yield from _walk(ds, source, "", nested=False)


def _walk(ds: Dataset, source: str, prefix: str, *, nested: bool) -> Iterator[Reference]:
    for elem in ds:
        keyword = elem.keyword
        if elem.VR == "SQ":
            for n, item in enumerate(elem.value):
                yield from _walk(item, source, f"{prefix}{keyword or elem.tag}[{n}].", nested=True)
            continue
        if elem.VR != "UI" or not elem.value:
            continue
        kind = None
        if keyword in _FRAME_KEYWORDS or (nested and keyword == "FrameOfReferenceUID"):
            kind = ReferenceKind.FRAME_OF_REFERENCE
        elif nested and keyword == "SeriesInstanceUID":
            kind = ReferenceKind.SERIES
        elif nested and keyword == "StudyInstanceUID":
            kind = ReferenceKind.STUDY
        elif keyword == "ReferencedSOPInstanceUID":
            study = str(ds.get("ReferencedSOPClassUID", "")) in STUDY_REFERENCE_CLASSES
            kind = ReferenceKind.STUDY if study else ReferenceKind.INSTANCE
        if kind is not None:
            for uid in (elem.value if elem.VM > 1 else [elem.value]):
                yield Reference(source, f"{prefix}{keyword}", kind, str(uid))


def _provided(datasets: Iterable[Dataset]) -> dict[ReferenceKind, set[str]]:
    out: dict[ReferenceKind, set[str]] = {kind: set() for kind in ReferenceKind}
    for ds in datasets:
        for kind, keyword in ((ReferenceKind.INSTANCE, "SOPInstanceUID"),
                              (ReferenceKind.SERIES, "SeriesInstanceUID"),
                              (ReferenceKind.STUDY, "StudyInstanceUID"),
                              (ReferenceKind.FRAME_OF_REFERENCE, "FrameOfReferenceUID")):
            value = ds.get(keyword)
            if value:
                out[kind].add(str(value))
    return out


def check_references(datasets: Iterable[Dataset]) -> IntegrityReport:
    """Resolve every reference of a set of objects within the set.

    Parameters
    ----------
    datasets : iterable of pydicom.Dataset

    Returns
    -------
    IntegrityReport
    """
    datasets = list(datasets)
    provided = _provided(datasets)
    references = tuple(ref for ds in datasets for ref in iter_references(ds))
    dangling = tuple(ref for ref in references if ref.uid not in provided[ref.kind])
    return IntegrityReport(references, dangling, len(datasets))


def read_folder(folder: str | os.PathLike) -> list[tuple[Path, Dataset]]:
    """Every DICOM file under ``folder``, checked (recursively; DICOMDIR and non-DICOM files skipped).

    Parameters
    ----------
    folder : str or path-like

    Returns
    -------
    list of (pathlib.Path, pydicom.Dataset)
        In path order.

    Raises
    ------
    InvalidInputError
        If ``folder`` is not a folder or holds no DICOM object, or a DICOM
        file under it is damaged (:func:`rtforge.io.integrity.check_dataset`).
    """
    root = Path(folder)
    if not root.is_dir():
        raise InvalidInputError("not a folder", path=root)
    out: list[tuple[Path, Dataset]] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.name.upper() == "DICOMDIR":
            continue
        ds = read_checked(path)
        if ds is None:
            logger.info("%s skipped: not DICOM", path)
            continue
        out.append((path, ds))
    if not out:
        raise InvalidInputError("no DICOM objects found", path=root)
    return out
