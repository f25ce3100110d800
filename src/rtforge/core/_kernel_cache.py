"""Whether Numba has compiled rtforge's kernels into its on-disk cache yet.

The first run of a kernel compiles it (about a minute for all of them); later
processes load it from Numba's cache.  The command line says so once, before
that first compile, instead of showing a progress bar stuck at 0 %.  This module
answers without importing Numba (the batch's parent never loads it): it looks
where Numba's cache locators put index files (``<module>.<function>-<line>.py<ver>.nbi``):
``__pycache__`` beside the source, ``NUMBA_CACHE_DIR``, or the user-wide cache
folder used when the package folder is not writable.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["KERNEL_MODULES", "cache_folder", "kernels_cached"]

#: The modules holding rtforge's cached ``@njit`` kernels.
KERNEL_MODULES = ("_reslice_kernels", "_drr_kernels", "_dvh_kernels", "_dosegrid_kernels",
                  "_contours_kernels")


def cache_folder(source: Path) -> Path:
    """The folder Numba caches ``source``'s kernels in: its first locator that applies.

    ``NUMBA_CACHE_DIR`` when set; else ``__pycache__`` beside the source when it can be
    written; else the user-wide cache folder (numba.core.caching's locators, in order).
    """
    folder = source.resolve().parent
    # numba.core.caching._CacheLocator.get_suitable_cache_subpath
    subpath = f"{folder.name}_{hashlib.sha1(str(folder).encode()).hexdigest()}"
    custom = os.environ.get("NUMBA_CACHE_DIR")
    if custom:
        return Path(custom) / subpath
    in_tree = folder / "__pycache__"
    if os.access(in_tree if in_tree.is_dir() else folder, os.W_OK):
        return in_tree
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "numba" / subpath


def kernels_cached() -> bool:
    """True when every kernel module has compiled kernels in Numba's cache.

    Returns
    -------
    bool
        False before the first compile (or after the cache was removed).
    """
    here = Path(__file__).resolve().parent
    for name in KERNEL_MODULES:
        folder = cache_folder(here / f"{name}.py")
        if not folder.is_dir() or not any(folder.glob(f"{name}.*.nbi")):
            return False
    return True
