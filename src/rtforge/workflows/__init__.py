"""The jobs that compose io, core and net: the layer the command line calls.

- :mod:`~rtforge.workflows.reconvert`: one CT series read, resliced to axial
  and written (iPlan Note 8-2), and the per-series task every executor runs.
- :mod:`~rtforge.workflows.batch`: every series under a folder or an archive,
  in local worker processes (forked from :mod:`~rtforge.workflows._forkserver`,
  preloaded by :mod:`~rtforge.workflows._worker_preload`): the resumable
  archive batch.
- :mod:`~rtforge.workflows.reslice`: every series under a folder, all or nothing.
- :mod:`~rtforge.workflows.distributed`: the batch's executor on Dask.
- :mod:`~rtforge.workflows.demo`: the phantom patient and the whole pipeline on it.
- :mod:`~rtforge.workflows.service`: the DRR/DVH service object (a study cache
  bounded in bytes); :mod:`~rtforge.workflows.asgi` is its HTTP face.
- :mod:`~rtforge.workflows.dose`: DVHs of a structure set on a dose, and doses
  summed or requantised, from files (``rtforge dvh``, ``rtforge dose``).
- :mod:`~rtforge.workflows.drr`: DRRs of a CT series folder (``rtforge drr``).
- :mod:`~rtforge.workflows.registration`: a rigid registration between two
  series (``rtforge reg``).

Workflows may import :mod:`rtforge.core`, :mod:`rtforge.io` and
:mod:`rtforge.net`; nothing below imports them, and only :mod:`rtforge.cli`
imports from here.  Public names are imported on first use
(:mod:`rtforge._lazy`), so importing one workflow loads no other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rtforge._lazy import lazy_exports

if TYPE_CHECKING:  # type checkers and IDEs see the names directly
    from rtforge.workflows.batch import BatchResult, run_batch  # noqa: F401
    from rtforge.workflows.demo import DemoResult, run_demo  # noqa: F401
    from rtforge.workflows.dose import dvh_of_files, sum_dose_files  # noqa: F401
    from rtforge.workflows.drr import drr_of_series  # noqa: F401
    from rtforge.workflows.reconvert import ReconvertOptions, SeriesReport, reconvert_series  # noqa: F401
    from rtforge.workflows.registration import register_series  # noqa: F401
    from rtforge.workflows.reslice import ResliceResult, reslice_folder  # noqa: F401
    from rtforge.workflows.service import DataRoots, StudyCache  # noqa: F401

#: Where each public name lives.
_EXPORTS = {
    "ReconvertOptions": "reconvert",
    "SeriesReport": "reconvert",
    "reconvert_series": "reconvert",
    "BatchResult": "batch",
    "run_batch": "batch",
    "ResliceResult": "reslice",
    "reslice_folder": "reslice",
    "DemoResult": "demo",
    "run_demo": "demo",
    "DataRoots": "service",
    "StudyCache": "service",
    "dvh_of_files": "dose",
    "sum_dose_files": "dose",
    "drr_of_series": "drr",
    "register_series": "registration",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
