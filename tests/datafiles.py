"""The one place tests find data files from outside the project."""

from __future__ import annotations

from pathlib import Path

from pydicom.data import get_testdata_file

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_file(relative: str) -> Path:
    """Path of a read-only file under ``../shared/data`` (never write to it)."""
    path = SHARED_DATA / relative
    if not path.exists():
        raise FileNotFoundError(f"shared test data missing: {path}")
    return path


def pydicom_file(name: str) -> Path:
    """Path of one of pydicom's bundled test files (e.g. ``rtstruct.dcm``)."""
    found = get_testdata_file(name)
    if found is None:
        raise FileNotFoundError(f"pydicom test file missing: {name}")
    return Path(found)
