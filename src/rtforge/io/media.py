"""Media interchange: read folders with or without a DICOMDIR, write Part 10 file sets.

Reading (Oncentra section 5): a DICOMDIR, when there is one, says which
files belong to the file set; the files it does not list are read directly
all the same (an incomplete DICOMDIR is reported, not trusted), and a
DICOMDIR entry whose file is gone is reported.  Without a DICOMDIR every file
is read directly.  Only DICOM Part 10 files are taken, and only whole ones:
each is checked (:mod:`rtforge.io.integrity`: truncated file, short Pixel
Data, non-finite geometry, broken contours) and a damaged one is reported
and left out.  A File ID is matched exactly, else ignoring case
(:func:`resolve_file_id`: a CD mounted with lowercase names); pydicom's own
warnings about the records are kept off the terminal (:func:`load_file_set`),
the scan reports what is missing.

Writing: Part 10 files with generated folder and file names (eight
characters, ISO 9660 level 1: ``P0000001/S0000001/E0000001/I0000001``), and,
when asked, a DICOMDIR written by pydicom's :class:`~pydicom.fileset.FileSet`
(which then chooses the ``PTxxxxxx/STxxxxxx/SExxxxxx/IMxxxxxx`` names).  The
vendors write none; we do.  The files are copied byte for byte; the
DICOMDIR's records (which pydicom copies from each file, in that file's
character set) are put under the configured output character set
(:mod:`rtforge.io.charset`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError
from pydicom.fileset import FileSet
from pydicom.misc import is_dicom
from pydicom.uid import MediaStorageDirectoryStorage

from rtforge.config import DEFAULT_CHARACTER_SET
from rtforge.errors import ConformanceError, InvalidInputError
from rtforge.io.charset import reencode
from rtforge.io.dicomfile import quiet_pydicom, same_content
from rtforge.io.fileset import atomic_write, copy_names, instance_path
from rtforge.io.integrity import read_checked
from rtforge.io.uids import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

__all__ = ["DICOMDIR", "MediaScan", "scan_media", "copy_into", "ExportReport", "export_media",
           "load_file_set", "resolve_file_id"]

logger = logging.getLogger(__name__)

DICOMDIR = "DICOMDIR"
_HEADER_ERRORS = (InvalidDicomError, EOFError, ValueError, KeyError, AttributeError, TypeError,
                  OSError)


@dataclass
class MediaScan:
    """The DICOM files of a folder, and what its DICOMDIR got wrong.

    Parameters
    ----------
    root : Path
        The folder.
    dicomdir : Path or None
        Its DICOMDIR, if it has a readable one.
    files : list of Path
        Every DICOM Part 10 file found (listed by the DICOMDIR or not), sorted.
    missed_by_dicomdir : list of Path
        DICOM files the DICOMDIR does not list (empty without a DICOMDIR).
    dangling : list of Path
        Files the DICOMDIR lists that do not exist.
    skipped : list of Path
        Files that are not DICOM Part 10 files.
    rejected : list of (Path, str)
        DICOM files that are damaged, and the one-line error naming each
        (not in ``files``).
    dicomdir_error : str or None
        Why a DICOMDIR that is there could not be used.
    """

    root: Path
    dicomdir: Path | None = None
    files: list[Path] = field(default_factory=list)
    missed_by_dicomdir: list[Path] = field(default_factory=list)
    dangling: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    rejected: list[tuple[Path, str]] = field(default_factory=list)
    dicomdir_error: str | None = None

    @property
    def complete(self) -> bool:
        """Whether a DICOMDIR was used and listed exactly the files there."""
        return self.dicomdir is not None and not self.missed_by_dicomdir and not self.dangling

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"root": str(self.root),
                "dicomdir": None if self.dicomdir is None else str(self.dicomdir),
                "files": len(self.files),
                "missed_by_dicomdir": [str(p) for p in self.missed_by_dicomdir],
                "dangling": [str(p) for p in self.dangling],
                "skipped": [str(p) for p in self.skipped],
                "rejected": [{"path": str(p), "error": e} for p, e in self.rejected],
                "dicomdir_error": self.dicomdir_error}


def load_file_set(ds: Dataset) -> FileSet:
    """A DICOMDIR data set as a :class:`~pydicom.fileset.FileSet`, pydicom kept quiet.

    pydicom warns, and logs, once per record whose file it cannot find (by
    exact name); the callers report missing files themselves, once.

    Raises
    ------
    Exception
        Whatever pydicom raises on a broken record hierarchy.
    """
    with quiet_pydicom():
        return FileSet(ds)


def resolve_file_id(root: Path, file_id: str | Sequence[str],
                    listings: dict[Path, dict[str, Path]] | None = None) -> Path:
    """The file a Referenced File ID (0004,1500) names under ``root``.

    Parameters
    ----------
    root : Path
        The DICOMDIR's folder.
    file_id : str or sequence of str
        The File ID's components.
    listings : dict, optional
        A cache of folder listings (case-folded name to path), shared across
        calls for one file set.

    Returns
    -------
    Path
        The exact path when it exists; else the path whose components match
        ignoring case (File IDs are upper case, PS3.10 8.5, and some systems
        mount a CD in lower case); else the exact path, which does not exist.
    """
    parts = [file_id] if isinstance(file_id, str) else [str(p) for p in file_id]
    exact = root.joinpath(*parts)
    if exact.exists():
        return exact
    cache = {} if listings is None else listings
    current = root
    for part in parts:
        if (current / part).exists():
            current = current / part
            continue
        if current not in cache:
            try:
                cache[current] = {p.name.casefold(): p for p in current.iterdir()}
            except OSError:
                cache[current] = {}
        found = cache[current].get(part.casefold())
        if found is None:
            return exact
        current = found
    return current


def _listed(dicomdir: Path) -> list[Path]:
    """The files a DICOMDIR's records reference (resolved), whether they exist or not.

    The DICOMDIR is also loaded as a :class:`~pydicom.fileset.FileSet`, which
    raises on a broken record hierarchy (and leaves out missing files, hence
    the records are read here).
    """
    ds = dcmread(dicomdir)
    load_file_set(ds)
    listings: dict[Path, dict[str, Path]] = {}
    return [resolve_file_id(dicomdir.parent, ref, listings).resolve()
            for record in ds.DirectoryRecordSequence
            if (ref := record.get("ReferencedFileID")) is not None]


def _is_part10(path: Path) -> bool:
    """A file with the Part 10 prefix that is not a DICOMDIR (whole or damaged)."""
    try:
        if not is_dicom(path):
            return False
        ds = dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except _HEADER_ERRORS:
        return True  # damaged past its prefix: checked, and reported, by _whole
    return ds.file_meta.get("MediaStorageSOPClassUID") != MediaStorageDirectoryStorage


def _whole(path: Path, scan: MediaScan) -> bool:
    """Whether a DICOM file passes the integrity check; a damaged one goes to ``rejected``."""
    try:
        ds = read_checked(path)
    except InvalidInputError as exc:
        scan.rejected.append((path, str(exc)))
        return False
    if ds is None:
        scan.rejected.append((path, f"{path}: not a DICOM file"))
        return False
    return True


def scan_media(root: str | os.PathLike[str]) -> MediaScan:
    """The DICOM files under ``root``, through its DICOMDIR when it has one.

    Parameters
    ----------
    root : path-like
        A folder (a mounted CD, DVD, USB stick, network share, ...).

    Returns
    -------
    MediaScan

    Raises
    ------
    InvalidInputError
        If ``root`` is not a folder.

    Notes
    -----
    Every DICOM file, listed by the DICOMDIR or not, is read whole and
    checked (:func:`rtforge.io.integrity.read_checked`); a damaged one is
    listed in :attr:`MediaScan.rejected`, not in :attr:`MediaScan.files`.
    """
    root = Path(root)
    if not root.is_dir():
        raise InvalidInputError("not a folder", path=root)
    scan = MediaScan(root=root)
    on_disk = sorted(p.resolve() for p in root.rglob("*") if p.is_file())
    listed: set[Path] = set()
    candidate = root / DICOMDIR
    if candidate.is_file():
        try:
            listed_paths = _listed(candidate)
        except (*_HEADER_ERRORS, NotImplementedError) as exc:
            scan.dicomdir_error = f"{type(exc).__name__}: {exc}"
            logger.warning("%s: unusable DICOMDIR (%s); reading every file", candidate, exc)
        else:
            scan.dicomdir = candidate
            listed = set(listed_paths)
            scan.dangling = sorted(p for p in listed if not p.is_file())
    for path in on_disk:
        if path == candidate.resolve():
            continue
        if path in listed:
            if _whole(path, scan):
                scan.files.append(path)
        elif _is_part10(path):
            if _whole(path, scan):
                scan.files.append(path)
                if scan.dicomdir is not None:
                    scan.missed_by_dicomdir.append(path)
        else:
            scan.skipped.append(path)
    if scan.missed_by_dicomdir or scan.dangling:
        logger.warning("%s: the DICOMDIR misses %d file(s) and lists %d missing one(s)",
                       root, len(scan.missed_by_dicomdir), len(scan.dangling))
    return scan


def copy_into(files: Sequence[Path], store: str | os.PathLike[str]) -> list[Path]:
    """Copy DICOM files into a store's layout, atomically; the new paths.

    Each goes to ``STORE/<PatientID>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``
    (:func:`rtforge.io.fileset.instance_path`), bytes unchanged.  A file
    already there is never overwritten: a copy of the same content
    (:func:`rtforge.io.dicomfile.same_content`) there, or beside it, is
    not written again (its path is returned); other content is kept beside
    it as ``<SOPInstanceUID>_2.dcm`` (``_3`` ...), as the receiver does, and
    the catalog records it as a conflicting copy.

    Raises
    ------
    InvalidInputError
        If a file lacks the UIDs that name its place.
    """
    out = []
    for path in files:
        try:
            ds = dcmread(path, stop_before_pixels=True,
                         specific_tags=["PatientID", "StudyInstanceUID", "SeriesInstanceUID",
                                        "SOPInstanceUID"])
            target = instance_path(store, ds)
        except (*_HEADER_ERRORS, ConformanceError) as exc:
            raise InvalidInputError(f"cannot place it in the store: {exc}", path=path) from None
        data = path.read_bytes()
        target, new = _place(target, data)
        if new:
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(target, [data])
        out.append(target)
    return out


def _place(target: Path, data: bytes) -> tuple[Path, bool]:
    """(path, whether to write it): a copy of ``data`` there or beside it, else a free name."""
    names = copy_names(target)
    candidate = next(names)
    while candidate.exists():
        if same_content(candidate.read_bytes(), data):
            return candidate, False
        candidate = next(names)
    return candidate, True


@dataclass
class ExportReport:
    """What :func:`export_media` wrote.

    Parameters
    ----------
    out_dir : Path
    files : list of Path
        The Part 10 files written.
    dicomdir : Path or None
        The DICOMDIR, when asked for.
    """

    out_dir: Path
    files: list[Path] = field(default_factory=list)
    dicomdir: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"out_dir": str(self.out_dir), "files": [str(p) for p in self.files],
                "dicomdir": None if self.dicomdir is None else str(self.dicomdir)}


class _OurFileSet(FileSet):
    """pydicom's File-set, writing a DICOMDIR with rtforge's Implementation Class UID and
    Version Name (pydicom puts its own in a DICOMDIR it creates)."""

    def _create_dicomdir(self) -> Dataset:
        ds = super()._create_dicomdir()
        ds.file_meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
        ds.file_meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
        return ds


def _generated_names(files: Sequence[Path]) -> list[tuple[Path, Path]]:
    """(source, relative target) with ``P/S/E/I`` + 7-digit names, one folder per level."""
    levels: list[dict[str, int]] = [{}, {}, {}]
    per_folder: dict[Path, int] = {}
    pairs: list[tuple[Path, Path]] = []
    for path in files:
        ds = dcmread(path, stop_before_pixels=True,
                     specific_tags=["PatientID", "StudyInstanceUID", "SeriesInstanceUID"])
        keys = (str(ds.get("PatientID", "")),
                f"{ds.get('PatientID', '')}/{ds.get('StudyInstanceUID', '')}",
                f"{ds.get('StudyInstanceUID', '')}/{ds.get('SeriesInstanceUID', '')}")
        parts = [f"{prefix}{level.setdefault(key, len(level) + 1):07d}"
                 for prefix, level, key in zip("PSE", levels, keys, strict=True)]
        folder = Path(*parts)
        per_folder[folder] = per_folder.get(folder, 0) + 1
        pairs.append((path, folder / f"I{per_folder[folder]:07d}"))
    return pairs


def _check_patient(files: Sequence[Path], patient_id: str) -> None:
    """Every file holds ``patient_id`` (a case's export never carries another patient)."""
    for path in files:
        try:
            found = str(dcmread(path, stop_before_pixels=True,
                                specific_tags=["PatientID"]).get("PatientID", "") or "")
        except _HEADER_ERRORS as exc:
            raise InvalidInputError(f"cannot be read: {exc}", path=path) from None
        if found != patient_id:
            raise InvalidInputError(f"holds Patient ID {found!r}, not {patient_id!r}; nothing "
                                    "exported", path=path)


def _reencode_records(fileset: FileSet, character_set: str) -> None:
    """Put every directory record of ``fileset`` under ``character_set``."""
    seen: set[int] = set()
    for instance in fileset:
        for node in (instance.node, *instance.node.ancestors):
            if id(node) not in seen:
                seen.add(id(node))
                # pydicom has no public handle on a record before the DICOMDIR is written.
                reencode(node._record, character_set)


def export_media(files: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str], *,
                 dicomdir: bool = False, file_set_id: str = "RTFORGE",
                 patient_id: str | None = None,
                 character_set: str = DEFAULT_CHARACTER_SET) -> ExportReport:
    """Write ``files`` as a Part 10 file set under ``out_dir``, with a DICOMDIR if asked.

    Parameters
    ----------
    files : sequence of path-like
        DICOM Part 10 files.
    out_dir : path-like
        A new or empty folder.
    dicomdir : bool
        Write a DICOMDIR (pydicom's FileSet chooses the names then).
    file_set_id : str
        File-set ID (0004,1130) of the DICOMDIR.
    patient_id : str, optional
        Every file must hold this Patient ID (checked before anything is written).
    character_set : str
        Specific Character Set of the DICOMDIR's records
        (``ExportConfig.character_set``).

    Returns
    -------
    ExportReport

    Raises
    ------
    InvalidInputError
        If ``out_dir`` is not empty, there is nothing to write, a file lacks
        what its DICOMDIR record needs, or holds another Patient ID than
        ``patient_id``, or a record value does not fit ``character_set``
        (nothing is written then).
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidInputError("the output folder must be new or empty", path=out)
    sources = [Path(f) for f in files]
    if not sources:
        raise InvalidInputError("nothing to export")
    if patient_id is not None:
        _check_patient(sources, patient_id)
    report = ExportReport(out_dir=out)
    if dicomdir:
        fileset = _OurFileSet()
        fileset.ID = file_set_id
        for path in sources:
            try:
                fileset.add(path)
            except (ValueError, KeyError, AttributeError) as exc:
                raise InvalidInputError(f"cannot be put in a DICOMDIR: {exc}", path=path) from None
        _reencode_records(fileset, character_set)
        out.mkdir(parents=True, exist_ok=True)
        fileset.write(out)
        report.dicomdir = out / DICOMDIR
        report.files = sorted(Path(instance.path)
                              for instance in load_file_set(dcmread(report.dicomdir)))
    else:
        for source, relative in _generated_names(sources):
            target = out / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(target, [source.read_bytes()])
            report.files.append(target)
    logger.info("exported %d file(s) to %s%s", len(report.files), out,
                " with a DICOMDIR" if dicomdir else "")
    return report
