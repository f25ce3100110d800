"""Imported by the batch's forkserver before it forks any worker.

Loads the reslice kernels from Numba's cache, so that every worker forked
from the server starts with them loaded instead of paying about 0.3 s each.
Loading a parallel kernel starts Numba's thread pool, and GNU OpenMP's pool
does not survive a fork: unless the user chose a threading layer, the server
(and so every worker) uses Numba's own ``workqueue`` layer, which restarts
its threads in a forked child.
"""

import numba

if numba.config.THREADING_LAYER == "default":
    numba.config.THREADING_LAYER = "workqueue"

from rtforge.core.reslice import load_kernels  # noqa: E402
from rtforge.reconvert import reconvert_series  # noqa: E402, F401 - imported for the workers

load_kernels()
