"""Dask worker preload for tests: the worker reconverts one series, then holds the next.

``dask worker --preload tests/workflows/dask_gate.py``: every series after the first
waits, before it starts, until the worker is killed, so that a test kills
the worker at a known point (one series written, the next not begun)
without racing it.  The series runs rtforge's real task otherwise.
"""

from __future__ import annotations

import threading

import rtforge.workflows.distributed


def dask_setup(worker: object) -> None:
    """Wrap the Dask task of ``rtforge batch --scheduler`` in this worker process."""
    real = rtforge.workflows.distributed._dask_task
    started = threading.Lock()

    def gated(*args: object, **kwargs: object) -> dict:
        if not started.acquire(blocking=False):
            threading.Event().wait()  # held until the test kills this worker
        return real(*args, **kwargs)

    rtforge.workflows.distributed._dask_task = gated
