"""Importing a module with some optional modules made to look absent meanwhile."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable

__all__ = ["import_without"]


def import_without(module: str, absent: Iterable[str]) -> None:
    """Import ``module`` while the modules ``absent`` read as not installed.

    Libraries import some optional modules only for features rtforge never
    uses (pydicom's test-data downloader, Numba's error colours); each such
    ``try: import X`` then takes its ``ImportError`` branch.  Afterwards the
    modules are importable again for everything else.  A module already
    imported is not hidden (it is there), and nothing happens when
    ``module`` is already imported.

    Parameters
    ----------
    module : str
        What to import, e.g. ``"pydicom"``.
    absent : iterable of str
        Top-level or dotted module names to hide during the import.
    """
    if module in sys.modules:
        return
    hidden = [name for name in absent if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment] - "not installed" to importers
    try:
        importlib.import_module(module)
    finally:
        for name in hidden:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]
