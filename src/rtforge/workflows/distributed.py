"""Dask distributed executor of the batch reconversion (extra ``rtforge[distributed]``).

:func:`rtforge.workflows.batch.run_batch` with ``scheduler=`` calls :func:`run_on_dask`,
which runs :func:`rtforge.workflows.reconvert.reconvert_task` (the same per-series step as
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

Runs that end
-------------
A run fails, with one error naming the scheduler and the series done and
left, when its scheduler has had no live worker for
:attr:`~rtforge.config.DaskConfig.worker_timeout` seconds (the last worker
killed, or none ever came) or cannot be reached any more; re-running the same
command with a worker finishes the job (finished series are skipped).  A
scheduler that cannot be reached, or that accepts the connection and never
answers, fails within :attr:`~rtforge.config.DaskConfig.connect_timeout`.
A ``tls://`` scheduler is reached with the TLS settings of Dask's own
configuration (``distributed.comm.tls``).

Paths
-----
The series' files and the output root are made absolute (from this
process's working folder) before they are sent: workers run elsewhere, and
must see the same absolute paths (a shared file system).

Local cluster and logging
-------------------------
``local:N`` listens on 127.0.0.1 only and starts no dashboard unless one is
asked for (``dashboard``).  Dask's own log records, here and in the local
workers, are let through from ``log_level`` up (the command passes WARNING,
or nothing at all under ``-q``/``--json``), and put back afterwards.

Progress
--------
Workers publish slices written as events on a per-run topic
(:meth:`distributed.Worker.log_event`); the client counts them and finished
tasks as they arrive.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rtforge.config import DaskConfig
from rtforge.errors import InvalidInputError, RtforgeError
from rtforge.io.series import SeriesInfo
from rtforge.workflows.reconvert import ReconvertOptions, output_series_uid, reconvert_task

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["parse_scheduler", "run_on_dask", "QUIET"]

log = logging.getLogger(__name__)

_ADDRESS = re.compile(r"^(tcp|tls)://[^\s:/]+:\d{1,5}$")
_LOCAL = re.compile(r"^local:(\d+)$")
#: ``log_level`` that lets no Dask log record through.
QUIET = logging.CRITICAL + 1
#: Seconds between two questions to the scheduler about its workers.
_WATCH_INTERVAL = 0.5


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


@contextmanager
def _dask_logging(level: int) -> Iterator[None]:
    """Let Dask's log records through from ``level`` up, and put the levels back after.

    ``distributed`` sets the levels of its loggers when imported (INFO for
    ``distributed``, WARNING for a few of its children): every one of them
    with a level of its own is set to ``level`` here.
    """
    loggers = [logging.getLogger("distributed")] + [
        logger for name, logger in logging.root.manager.loggerDict.items()
        if name.startswith("distributed.") and isinstance(logger, logging.Logger)
        and logger.level != logging.NOTSET]
    saved = [(logger, logger.level) for logger in loggers]
    for logger in loggers:
        logger.setLevel(level)
    try:
        yield
    finally:
        for logger, old in saved:
            logger.setLevel(old)


def _handshake(address: str, timeout: float) -> None:
    """Open one connection to ``address`` and close it, Dask's handshake included, within
    ``timeout`` seconds.

    Dask's ``Client`` times out the TCP connection but not the handshake after
    it: a peer that accepts and never answers would hold it for ever.  Run in
    a thread of its own, whatever event loop the caller's thread has.
    """
    from distributed.comm import connect
    from distributed.security import Security

    # As the Client connects: TLS settings, if any, from Dask's configuration.
    connection_args = Security().get_connection_args("client")
    if address.startswith("tls://") and connection_args.get("ssl_context") is None:
        raise RtforgeError("tls:// needs Dask's TLS settings: distributed.comm.tls.ca-file, "
                           ".client.cert and .client.key in Dask's configuration")

    async def handshake() -> None:
        comm = await asyncio.wait_for(connect(address, timeout=timeout, **connection_args),
                                      timeout)
        await comm.close()

    failure: list[Exception] = []

    def run() -> None:
        try:
            asyncio.run(handshake())
        except Exception as exc:  # noqa: BLE001 - raised again in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="rtforge-dask-handshake", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def _connect(address: str, timeout: float) -> Client:
    """A client of the scheduler at ``address``, or an error within about ``timeout`` seconds."""
    from distributed import Client

    try:
        _handshake(address, timeout)
        return Client(address, timeout=timeout, set_as_default=False)
    except RtforgeError as exc:
        reason = str(exc)
    except OSError as exc:  # refused, unreachable, timed out
        reason = str(exc) or f"no answer within {timeout:g} s"
    except Exception as exc:  # noqa: BLE001 - a peer that is not a Dask scheduler
        reason = f"not a Dask scheduler? ({type(exc).__name__}: {exc})"
    raise RtforgeError(f"cannot reach the Dask scheduler at {address}: {reason}")


@contextmanager
def _client(target: str | int, config: DaskConfig, log_level: int) -> Iterator[Client]:
    """A client of the scheduler ``target`` (an address, or N for a local cluster of N)."""
    if not isinstance(target, int):
        client = _connect(target, config.connect_timeout)
        try:
            yield client
        finally:
            with _dask_logging(QUIET):  # a lost scheduler's cancelled reconnection: a traceback
                client.close(timeout=config.connect_timeout)
        return
    from distributed import Client, LocalCluster

    # Numba threads shared out as by the local process pool: no oversubscription.
    threads = max(1, (os.cpu_count() or 1) // target)
    # Without a dashboard, the scheduler's other HTTP routes take a free loopback port
    # (Dask's default would be 8787).
    http = {} if config.dashboard else {"dashboard_address": "127.0.0.1:0"}
    try:
        cluster = LocalCluster(n_workers=target, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=config.dashboard or None,
                               scheduler_kwargs=http, silence_logs=log_level,
                               env={"NUMBA_NUM_THREADS": str(threads)})
    except Exception as exc:  # noqa: BLE001 - e.g. a dashboard address that cannot be bound
        raise RtforgeError(f"cannot start a local Dask cluster: {type(exc).__name__}: "
                           f"{exc}") from exc
    try:
        with Client(cluster, set_as_default=False) as client:
            yield client
    finally:
        cluster.close()


def _live_workers(client: Client, timeout: float) -> int | None:
    """Workers the scheduler knows now, or None when it cannot be reached."""
    if client.status != "running":
        return None
    try:
        return len(client.nthreads(callback_timeout=timeout))
    except Exception:  # noqa: BLE001 - whatever the lost connection raised
        return None


def run_on_dask(scheduler: str, todo: list[SeriesInfo], out_root: Path,
                options: ReconvertOptions, on_slices: Callable[[int], None],
                config: DaskConfig | None = None,
                log_level: int = logging.WARNING) -> Iterator[tuple[SeriesInfo, dict]]:
    """Run one :func:`rtforge.workflows.reconvert.reconvert_task` per series on a Dask cluster.

    Parameters
    ----------
    scheduler : str
        ``tcp://HOST:PORT`` or ``local:N`` (see :func:`parse_scheduler`); a
        local cluster listens on 127.0.0.1 only, gives each worker
        ``cpu_count // N`` Numba threads and is closed at the end.
    todo : list of SeriesInfo
        The series to reconvert; their paths and ``out_root`` are made
        absolute here and must then be valid on every worker.
    out_root : Path
    options : ReconvertOptions
    on_slices : callable
        Called in this thread as ``on_slices(n)`` with slices written.
    config : DaskConfig, optional
        Worker and connection timeouts, and a local cluster's dashboard.
    log_level : int
        Dask's log records below this level are dropped, here and in a
        local cluster's workers (:data:`QUIET`: all of them).

    Yields
    ------
    tuple of (SeriesInfo, dict)
        Each series and :func:`rtforge.workflows.reconvert.reconvert_task`'s outcome, in
        the order they finish; a series whose workers all died is
        ``{"ok": False, "error": ...}``.

    Raises
    ------
    InvalidInputError
        If ``scheduler`` is malformed.
    RtforgeError
        If Dask is not installed; if the scheduler cannot be reached within
        ``config.connect_timeout``; if it has had no live worker for
        ``config.worker_timeout`` seconds, or has been lost, during the run
        (the message names it and the series done and left).
    """
    target = parse_scheduler(scheduler)
    config = config or DaskConfig()
    try:
        import distributed  # noqa: F401 - only to say what is missing
    except ImportError as exc:
        raise RtforgeError("--scheduler needs Dask: pip install 'rtforge[distributed]'") from exc
    if not todo:
        return
    with _dask_logging(log_level), _client(target, config, log_level) as client:
        yield from _run(client, scheduler, todo, Path(out_root).absolute(), options, on_slices,
                        config)


def _run(client: Client, scheduler: str, todo: list[SeriesInfo], out_root: Path,
         options: ReconvertOptions, on_slices: Callable[[int], None],
         config: DaskConfig) -> Iterator[tuple[SeriesInfo, dict]]:
    from distributed import as_completed

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

    client.subscribe_topic(topic, lambda event: events.put(int(event[1])))
    try:
        futures = {}
        for info in todo:
            # The key names the output series: a cluster shared by two runs of the
            # same batch computes each series once.
            key = f"rtforge-reconvert-{output_series_uid(info.series_uid, options)}"
            fut = client.submit(_dask_task, [str(Path(p).absolute()) for p in info.paths],
                                str(out_root), options, topic, key=key, pure=False)
            futures[fut] = info
        done = as_completed(futures, loop=client.loop)
        finished = 0
        watched = since = time.monotonic()  # since: the last time a worker was seen
        while not done.is_empty():
            if not done.has_ready():
                drain()
                now = time.monotonic()
                if now - watched >= _WATCH_INTERVAL:
                    watched, alive = now, _live_workers(client, config.connect_timeout)
                    if alive:
                        since = now
                    elif now - since >= config.worker_timeout:
                        raise _stalled(scheduler, alive, config, finished, len(todo))
                time.sleep(0.1)
                continue
            for fut in done.next_batch(block=False):
                if fut.cancelled() and client.status != "running":
                    raise _stalled(scheduler, None, config, finished, len(todo))
                try:
                    outcome = fut.result()
                except Exception as exc:  # noqa: BLE001 - KilledWorker and the like
                    outcome = {"ok": False, "error": f"worker failed: {type(exc).__name__}: {exc}"}
                drain()
                finished += bool(outcome["ok"])
                yield futures[fut], outcome
        drain()
    finally:
        if client.status == "running":
            client.unsubscribe_topic(topic)


def _stalled(scheduler: str, alive: int | None, config: DaskConfig, finished: int,
             total: int) -> RtforgeError:
    """The error of a run that cannot go on: no live worker, or the scheduler lost."""
    what = (f"lost the Dask scheduler at {scheduler}" if alive is None else
            f"no live Dask worker at {scheduler} for {config.worker_timeout:g} s")
    return RtforgeError(f"{what}: {finished} series done, {total - finished} left; "
                        "run the same command again to resume")
