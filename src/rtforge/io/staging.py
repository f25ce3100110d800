"""All-or-nothing output folders: write into a staging folder, move into place at the end.

:func:`staged_output` is how ``deid`` and ``relink`` write: every file of a
run goes into a hidden staging folder on the output's file system (inside
``OUT`` when it exists, else beside it), and only when every file is written
are they renamed into ``OUT``.  On any failure (an error, a full disk,
Ctrl-C) the staging folder, and every folder the run created, is removed:
``OUT`` holds nothing of the run.

Order of operations
-------------------
1. create the missing parents of ``OUT`` (remembered) and the staging folder;
2. the caller writes everything into the staging folder;
3. commit: a new ``OUT`` is the staging folder renamed; into an existing
   ``OUT`` each file is renamed to its place (folders created as needed,
   remembered), then the empty staging folder is removed;
4. on failure in 2 or 3: the files renamed in 3 and the folders created in
   1 and 3 are removed, then the staging folder.

:func:`write_objects` writes a set of objects that way, with any file that
belongs to them (the de-identification's UID map) landing with them or not
at all.

A process killed outright (``kill -9``, power loss) cannot clean up: its
staging folder (named after its process ID) is removed by the next run on the
same ``OUT`` once that process is gone.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from rtforge.errors import InvalidInputError
from rtforge.io.fileset import (
    TRANSFER_SYNTAXES,
    atomic_write,
    fsync_directory,
    instance_path,
    write_dataset_file,
)

__all__ = ["staged_output", "write_objects"]

_PREFIX = ".rtforge-partial-"


def _remove_stale(folder: Path, prefix: str) -> None:
    """Remove staging folders in ``folder`` left by processes that no longer run."""
    for stale in folder.glob(f"{prefix}*"):
        pid = stale.name[len(prefix):].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(stale, ignore_errors=True)
        except OSError:  # it runs, under another user
            continue


def _missing_parents(folder: Path) -> list[Path]:
    """``folder``'s ancestors that do not exist, deepest first."""
    missing = []
    parent = folder.parent
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    return missing


def _commit(stage: Path, out: Path, placed: list[Path]) -> None:
    """Move the files of ``stage`` into ``out``, listing in ``placed`` every path it makes."""
    if not out.exists():
        os.rename(stage, out)
        placed.append(out)
        return
    for folder, dirs, files in os.walk(stage):
        dirs.sort()
        target_dir = out / Path(folder).relative_to(stage)
        if not target_dir.exists():
            target_dir.mkdir()
            placed.append(target_dir)
        for name in sorted(files):
            os.replace(Path(folder) / name, target_dir / name)
            placed.append(target_dir / name)
    shutil.rmtree(stage)


def _undo(placed: list[Path]) -> None:
    for path in reversed(placed):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


@contextmanager
def staged_output(out_dir: str | os.PathLike) -> Iterator[Path]:
    """A staging folder whose content lands in ``out_dir`` only if the block succeeds.

    Parameters
    ----------
    out_dir : str or path-like
        The output folder (new, or existing: files already there with the
        names the run writes are replaced at the commit).

    Yields
    ------
    pathlib.Path
        The staging folder: write there as if it were ``out_dir``.

    Raises
    ------
    InvalidInputError
        If ``out_dir`` exists and is not a folder.
    OSError
        If the staging folder cannot be made (read-only, full disk); nothing
        is left behind.

    Notes
    -----
    See the module docstring for the order of operations.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InvalidInputError("exists and is not a folder", path=out)
    missing = _missing_parents(out)
    placed: list[Path] = []
    stage: Path | None = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        home, prefix = (out, _PREFIX) if out.is_dir() else (out.parent, f".{out.name}{_PREFIX}")
        _remove_stale(home, prefix)
        stage = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=home))
        yield stage
        _commit(stage, out, placed)
        fsync_directory(out.parent)
    except BaseException:
        _undo(placed)
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
        for folder in missing:
            try:
                folder.rmdir()
            except OSError:
                break
        raise


def _transfer_syntax(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    return str(meta.get("TransferSyntaxUID", ExplicitVRLittleEndian)) if meta is not None \
        else ExplicitVRLittleEndian


def write_objects(datasets: Sequence[Dataset], out_dir: str | os.PathLike, *,
                  beside: Mapping[str | os.PathLike, bytes] | None = None) -> list[Path]:
    """Write every object under ``out_dir`` (:func:`staged_output`), all or nothing.

    Each object goes to its place in the layout
    (:func:`~rtforge.io.fileset.instance_path`), in its own transfer syntax.

    Parameters
    ----------
    datasets : sequence of pydicom.Dataset
        Objects in an uncompressed transfer syntax (Explicit VR Little
        Endian when they have no File Meta Information).
    out_dir : str or path-like
    beside : mapping of path to bytes, optional
        Files that belong to the objects (e.g. a UID map), written
        atomically once every object is staged and removed again if the
        objects do not land: they land together or not at all.

    Returns
    -------
    list of Path
        Where the objects are, in the order given.

    Raises
    ------
    InvalidInputError
        If an object is in a compressed transfer syntax (before anything is
        written).
    OSError, RtforgeError
        If writing fails: nothing of this call is left in ``out_dir``, and no
        file of ``beside``.
    """
    for ds in datasets:  # refuse before anything is written
        ts = _transfer_syntax(ds)
        if ts not in TRANSFER_SYNTAXES.values():
            raise InvalidInputError(f"object {ds.SOPInstanceUID} is in transfer syntax {ts}; "
                                    "only uncompressed objects can be rewritten")
    out_dir = Path(out_dir)
    written: list[Path] = []
    try:
        with staged_output(out_dir) as stage:
            paths = [write_dataset_file(ds, instance_path(stage, ds), _transfer_syntax(ds))
                     for ds in datasets]
            for path, data in (beside or {}).items():
                written.append(atomic_write(path, [data]))
    except BaseException:
        for path in written:  # the objects did not land: neither do the files beside them
            path.unlink(missing_ok=True)
        raise
    return [out_dir / p.relative_to(stage) for p in paths]
