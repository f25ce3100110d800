"""Numba's start-up without what rtforge's kernels never need: the BLAS probe, and
the optional imports of its configuration file reader and error colouring."""

from __future__ import annotations

import os

from rtforge._imports import import_without

__all__ = ["import_numba", "import_numba_np_without_blas_probe"]

#: The file in the working folder Numba reads settings from, with PyYAML.
_NUMBA_CONFIG_FILE = ".numba_config.yaml"


def import_numba() -> None:
    """Import Numba with ``colorama`` (and ``yaml``, when no ``.numba_config.yaml`` is
    in the working folder) made to look absent meanwhile.

    Numba imports colorama only to colour its compiler's error messages and PyYAML
    only to read that file; both stay importable for everything else.  Measured:
    ``import numba`` 0.165 s with them, 0.148 s without (median of 8, the 2-core
    VM).  Nothing happens when Numba is already imported.
    """
    extras = ["colorama"] + ([] if os.path.isfile(_NUMBA_CONFIG_FILE) else ["yaml"])
    import_without("numba", extras)


def import_numba_np_without_blas_probe() -> None:
    """Import ``numba.np.arraymath`` with its BLAS probe made to fail.

    Loading any kernel imports that module, which probes for BLAS by importing
    ``scipy.linalg``: about 0.1 s of a process' start.  No rtforge kernel uses
    BLAS; the probe's only effect is whether ``np.convolve``/``np.correlate``
    in jitted code call BLAS or loop.  BLAS itself stays usable: ``np.dot`` and
    ``np.linalg`` import ``scipy.linalg`` when they are compiled.  Nothing
    happens when the module or ``scipy.linalg`` is already imported.
    """
    import_without("numba.np.arraymath", ["scipy.linalg"])
