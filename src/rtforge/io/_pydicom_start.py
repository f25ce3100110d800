"""pydicom's import without the optional imports of its test-data downloader."""

from __future__ import annotations

from rtforge._imports import import_without

__all__ = ["import_pydicom_without_downloader_extras"]

#: Imported by ``pydicom.data.download`` only to fetch pydicom's own test files
#: (with ``urllib`` as its fallback), which rtforge never does.  ``requests`` pulls
#: in urllib3, idna, charset_normalizer and certifi: ``import pydicom`` took 0.156 s
#: with them and 0.120 s without (median of 10 processes, the 2-core VM).
_DOWNLOADER_EXTRAS = ("requests", "tqdm")


def import_pydicom_without_downloader_extras() -> None:
    """Import pydicom with ``requests`` and ``tqdm`` made to look absent meanwhile.

    pydicom's downloader then falls back to ``urllib`` and no progress bar,
    should anything call it.  The two stay importable for everything else
    (rtforge's own progress bars use tqdm).  Nothing happens when pydicom
    is already imported.
    """
    import_without("pydicom", _DOWNLOADER_EXTRAS)
