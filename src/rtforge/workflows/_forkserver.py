"""The process that forks the batch's workers, startable before anything heavy is imported.

``rtforge batch`` starts it first thing, so that its imports and kernel loading
(:mod:`rtforge.workflows._worker_preload`, about 0.9 s of CPU) run while the command
itself imports and scans the archive.  Kept free of heavy imports for that
reason.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing as mp
import os
import signal
from multiprocessing import forkserver
from multiprocessing.context import BaseContext

__all__ = ["start_forkserver", "stop_forkserver"]


def start_forkserver() -> BaseContext:
    """Start (once per process) the forkserver the batch's worker pool forks from.

    forkserver: workers fork from a server that imported rtforge and loaded the
    kernels once (cheaper than spawn, and unlike fork it never inherits this
    process' threads).  Returns at once; the server imports in the background.
    When this process exits, a server still running is stopped.

    Returns
    -------
    multiprocessing.context.BaseContext
        The forkserver context to build the pool with.
    """
    global _stopped_at_exit
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["rtforge.workflows._worker_preload"])
    forkserver.ensure_running()
    if not _stopped_at_exit:
        # A server still importing when the process ends would go on (it sees its parent
        # gone only once its imports are done): about 0.5 s of CPU after the command.
        atexit.register(stop_forkserver)
        _stopped_at_exit = True
    return ctx


_stopped_at_exit = False


def stop_forkserver() -> None:
    """Stop the forkserver of :func:`start_forkserver` now, even while it still imports.

    For a command that started it ahead and then found no use for it (a
    single series): left running, its imports take CPU from the kernels
    (measured: a single-series ``rtforge reslice`` of 512x512x120 took 0.78 s with
    it left running, 0.71 s without it).
    It has forked no worker yet, so nothing is lost; a later
    :func:`start_forkserver` starts a new one.  Nothing happens when none runs.

    Notes
    -----
    multiprocessing has no public call for this: the server's process id and
    its reaping (``ForkServer._stop``, which its own tests use) are private.
    Where they are missing nothing is stopped.
    """
    server = getattr(forkserver, "_forkserver", None)
    pid = getattr(server, "_forkserver_pid", None)
    stop = getattr(server, "_stop", None)
    if pid is None or stop is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    stop()  # reaps it, closes its pipe and forgets its address
