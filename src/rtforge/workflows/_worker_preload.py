"""Imported by the batch's forkserver before it forks any worker.

Loads the reslice kernels from Numba's cache, so that every worker forked
from the server starts with them loaded instead of paying about 0.3 s each.
Loading a parallel kernel starts Numba's thread pool, and GNU OpenMP's pool
does not survive a fork: unless the user chose a threading layer, the server
(and so every worker) uses Numba's own ``workqueue`` layer, which restarts
its threads in a forked child.  OpenBLAS gets one thread unless the user chose:
the workers' parallelism is theirs, and idle BLAS threads spin.
"""

import gc
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads OpenBLAS
# Imports make few cycles but many survivors that the collector would walk again and
# again (measured: 0.06 s of this server's start); everything made here is frozen below.
gc.disable()

from rtforge.core._numba_start import import_numba  # noqa: E402

import_numba()
import numba  # noqa: E402

if numba.config.THREADING_LAYER == "default":
    numba.config.THREADING_LAYER = "workqueue"

from rtforge.core.reslice import load_kernels  # noqa: E402
from rtforge.workflows.reconvert import reconvert_series  # noqa: E402, F401 - imported for the workers

load_kernels()

# Every worker forks from here: move what exists now (the imports, the kernels) out of the
# collector's reach, so that no worker's full collection walks it (about 0.02 s per series)
# and, by writing to every object's header, copies the pages it shares with this server.
gc.freeze()
gc.enable()
