"""The one place tests find data files written by other software (``tests/data``)."""

from __future__ import annotations

from pathlib import Path

from pydicom.data import get_testdata_file

#: Third-party files copied into the repository, each folder with its upstream licence
#: (``tests/data/README.md`` says where each came from).
TEST_DATA = Path(__file__).resolve().parent / "data"


def shared_file(relative: str) -> Path:
    """Path of a third-party file under ``tests/data`` (read-only: copy it before writing)."""
    path = TEST_DATA / relative
    if not path.exists():
        raise FileNotFoundError(f"test data missing: {path}")
    return path


def pydicom_file(name: str) -> Path:
    """Path of one of pydicom's bundled test files (e.g. ``rtstruct.dcm``)."""
    found = get_testdata_file(name)
    if found is None:
        raise FileNotFoundError(f"pydicom test file missing: {name}")
    return Path(found)
