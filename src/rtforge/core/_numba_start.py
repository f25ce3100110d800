"""Numba's start-up without the BLAS probe that rtforge's kernels never need."""

from __future__ import annotations

import sys

__all__ = ["import_numba_np_without_blas_probe"]


def import_numba_np_without_blas_probe() -> None:
    """Import ``numba.np.arraymath`` with its BLAS probe made to fail.

    Loading any kernel imports that module, which probes for BLAS by importing
    ``scipy.linalg``: about 0.1 s of a process' start.  No rtforge kernel uses
    BLAS; the probe's only effect is whether ``np.convolve``/``np.correlate``
    in jitted code call BLAS or loop.  BLAS itself stays usable: ``np.dot`` and
    ``np.linalg`` import ``scipy.linalg`` when they are compiled.  Nothing
    happens when the module or ``scipy.linalg`` is already imported.
    """
    if "numba.np.arraymath" in sys.modules:
        return
    probe = "scipy.linalg" not in sys.modules
    if probe:
        sys.modules["scipy.linalg"] = None  # type: ignore[assignment]
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        if probe and sys.modules.get("scipy.linalg", False) is None:
            del sys.modules["scipy.linalg"]
