"""The process that forks the batch's workers, startable before anything heavy is imported.

``rtforge batch`` starts it first thing, so that its imports and kernel loading
(:mod:`rtforge.workflows._worker_preload`, about 0.9 s of CPU) run while the command
itself imports and scans the archive.  Kept free of heavy imports for that
reason.
"""

from __future__ import annotations

import multiprocessing as mp
from multiprocessing import forkserver
from multiprocessing.context import BaseContext

__all__ = ["start_forkserver"]


def start_forkserver() -> BaseContext:
    """Start (once per process) the forkserver the batch's worker pool forks from.

    forkserver: workers fork from a server that imported rtforge and loaded the
    kernels once (cheaper than spawn, and unlike fork it never inherits this
    process' threads).  Returns at once; the server imports in the background.

    Returns
    -------
    multiprocessing.context.BaseContext
        The forkserver context to build the pool with.
    """
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["rtforge.workflows._worker_preload"])
    forkserver.ensure_running()
    return ctx
