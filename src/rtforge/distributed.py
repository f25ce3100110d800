"""Dask distributed executor of the batch reconversion (extra ``rtforge[distributed]``).

:func:`rtforge.batch.run_batch` with ``scheduler=`` calls :func:`run_on_dask`,
which runs :func:`rtforge.batch.reconvert_task` (the same per-series step as
the local process pool) as one Dask task per series.  Discovery, the
manifest and the skip of finished series stay in the client, so the output,
the manifest and resumability are those of the local batch.

A worker lost mid-series
------------------------
The scheduler re-runs the task of a lost worker on another worker (up to
Dask's ``distributed.scheduler.allowed-failures``).  The task writes into a
hidden partial folder, which the new attempt replaces, and renames it only
when complete, so a series is redone, never half-written; a series that
fails every attempt is reported as failed, stays out of the manifest and is
redone by the next run.

Progress
--------
Workers publish slices written as events on a per-run topic
(:meth:`distributed.Worker.log_event`); the client counts them and finished
tasks as they arrive.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from rtforge.batch import reconvert_task
from rtforge.errors import InvalidInputError, RtforgeError
from rtforge.io.series import SeriesInfo
from rtforge.reconvert import ReconvertOptions, output_series_uid

__all__ = ["parse_scheduler", "run_on_dask"]

log = logging.getLogger(__name__)

_ADDRESS = re.compile(r"^(tcp|tls)://[^\s:/]+:\d{1,5}$")
_LOCAL = re.compile(r"^local:(\d+)$")


def parse_scheduler(text: str) -> str | int:
    """Read a ``--scheduler`` value.

    Parameters
    ----------
    text : str
        ``tcp://HOST:PORT`` (or ``tls://HOST:PORT``) of a running Dask
        scheduler, or ``local:N`` for a local cluster of N worker processes.

    Returns
    -------
    str or int
        The scheduler address, or the number of local workers.

    Raises
    ------
    InvalidInputError
        If ``text`` is neither form, or N is not positive.
    """
    local = _LOCAL.match(text)
    if local:
        n = int(local.group(1))
        if n < 1:
            raise InvalidInputError(f"--scheduler local:N needs N >= 1, got {text!r}")
        return n
    if _ADDRESS.match(text):
        return text
    raise InvalidInputError(
        f"--scheduler must be tcp://HOST:PORT or local:N, got {text!r}")


def _dask_task(paths: list[str], out_root: str, options: ReconvertOptions, topic: str) -> dict:
    """Worker body: :func:`reconvert_task` publishing slices written on ``topic``."""
    from distributed import get_worker

    worker = get_worker()
    return reconvert_task(paths, out_root, options,
                          on_slices=lambda n: worker.log_event(topic, n))


def run_on_dask(scheduler: str, todo: list[SeriesInfo], out_root: Path,
                options: ReconvertOptions,
                on_slices: Callable[[int], None]) -> Iterator[tuple[SeriesInfo, dict]]:
    """Run one :func:`rtforge.batch.reconvert_task` per series on a Dask cluster.

    Parameters
    ----------
    scheduler : str
        ``tcp://HOST:PORT`` or ``local:N`` (see :func:`parse_scheduler`); a
        local cluster listens on 127.0.0.1 only, gives each worker
        ``cpu_count // N`` Numba threads and is closed at the end.
    todo : list of SeriesInfo
        The series to reconvert; their paths and ``out_root`` must be valid
        on every worker.
    out_root : Path
    options : ReconvertOptions
    on_slices : callable
        Called in this thread as ``on_slices(n)`` with slices written.

    Yields
    ------
    tuple of (SeriesInfo, dict)
        Each series and :func:`rtforge.batch.reconvert_task`'s outcome, in
        the order they finish; a series whose workers all died is
        ``{"ok": False, "error": ...}``.

    Raises
    ------
    InvalidInputError
        If ``scheduler`` is malformed.
    RtforgeError
        If Dask is not installed or the scheduler cannot be reached.
    """
    target = parse_scheduler(scheduler)
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as exc:
        raise RtforgeError("--scheduler needs Dask: pip install 'rtforge[distributed]'") from exc
    if not todo:
        return
    cluster = None
    try:
        if isinstance(target, int):
            # Numba threads shared out as by the local process pool: no oversubscription.
            threads = max(1, (os.cpu_count() or 1) // target)
            cluster = LocalCluster(n_workers=target, threads_per_worker=1, processes=True,
                                   host="127.0.0.1", dashboard_address=None,
                                   env={"NUMBA_NUM_THREADS": str(threads)})
            client = Client(cluster)
        else:
            client = Client(target, timeout=30)
    except OSError as exc:
        if cluster is not None:
            cluster.close()
        raise RtforgeError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
    events: queue.SimpleQueue[int] = queue.SimpleQueue()
    topic = f"rtforge-batch-{uuid.uuid4().hex}"

    def drain() -> None:
        n = 0
        while True:
            try:
                n += events.get_nowait()
            except queue.Empty:
                break
        on_slices(n)

    try:
        client.subscribe_topic(topic, lambda event: events.put(int(event[1])))
        futures = {}
        for info in todo:
            # The key names the output series: a cluster shared by two runs of the
            # same batch computes each series once.
            key = f"rtforge-reconvert-{output_series_uid(info.series_uid, options)}"
            fut = client.submit(_dask_task, [str(p) for p in info.paths], str(out_root),
                                options, topic, key=key, pure=False)
            futures[fut] = info
        done = as_completed(futures)
        while not done.is_empty():
            if not done.has_ready():
                drain()
                time.sleep(0.1)
                continue
            for fut in done.next_batch(block=False):
                try:
                    outcome = fut.result()
                except Exception as exc:  # noqa: BLE001 - KilledWorker and the like
                    outcome = {"ok": False, "error": f"worker failed: {type(exc).__name__}: {exc}"}
                drain()
                yield futures[fut], outcome
        drain()
    finally:
        client.unsubscribe_topic(topic)
        client.close()
        if cluster is not None:
            cluster.close()
