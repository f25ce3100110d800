"""Batch reconversion of an archive: every CT series under a root, in parallel.

Each series is one task of
:func:`rtforge.workflows.reconvert.reconvert_task`, run by one of two executors: a
local process pool, or Dask distributed (:mod:`rtforge.workflows.distributed`, one task
per series).  Discovery, the manifest and the skip of finished series are
here, shared by both.  Inside a worker the kernel computes the next chunk of
slices while a writer thread encodes the last one.

Resumability and zero loss
--------------------------
- Every series is written into a hidden partial folder and renamed when
  complete (the rename is the commit); partial folders left by an interrupted
  run are removed when the next run starts.
- The output Series Instance UID is derived from the source series and the
  options, so a run knows, before reading anything, where a series' output
  goes; a series whose final folder exists is complete and is skipped.
- ``<OUT_ROOT>/rtforge-manifest.jsonl`` records one line per finished series
  (source UID, output folder, files, options); it is appended after the
  rename, and a series found complete on disk but missing from it (a crash
  between the two) is recorded on the next run.
- A series that fails is reported and the others go on; a series whose
  worker is lost is redone from the start (its partial folder is replaced).
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import queue
import shutil
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rtforge.errors import InvalidInputError
from rtforge.io.series import DiscoveryResult, SeriesInfo, discover_series
from rtforge.workflows._forkserver import start_forkserver
from rtforge.workflows.reconvert import (
    PARTIAL_PREFIX,
    ReconvertOptions,
    final_folder,
    output_series_uid,
    read_ahead,
    reconvert_task,
)

if TYPE_CHECKING:
    from rtforge.config import DaskConfig

__all__ = ["BatchResult", "run_batch", "discover", "reconvert_many", "check_output_root",
           "auto_workers", "MANIFEST_NAME"]

log = logging.getLogger(__name__)

MANIFEST_NAME = "rtforge-manifest.jsonl"


@dataclass
class BatchResult:
    """What a batch run did."""

    done: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    ignored_files: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no series failed."""
        return not self.failed

    def to_dict(self) -> dict:
        """JSON-ready dictionary."""
        return {"done": self.done, "skipped": self.skipped, "failed": self.failed,
                "ignored_files": self.ignored_files}


class _Progress:
    """Callbacks the CLI renders as bars: series done and slices written."""

    def __init__(self, on_series: Callable[[int, int], None] | None,
                 on_slices: Callable[[int], None] | None, total: int) -> None:
        self.on_series, self.on_slices, self.total, self.count = on_series, on_slices, total, 0

    def series_done(self) -> None:
        self.count += 1
        if self.on_series:
            self.on_series(self.count, self.total)

    def slices(self, n: int) -> None:
        if self.on_slices and n:
            self.on_slices(n)


def _remove_partials(out_root: Path) -> int:
    removed = 0
    for path in out_root.glob(f"*/*/{PARTIAL_PREFIX}*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


def _read_manifest(path: Path) -> dict[str, dict]:
    done: dict[str, dict] = {}
    if not path.exists():
        return done
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a crash: the disk state decides
            continue
        done[entry["output_series_uid"]] = entry
    return done


def _append_manifest(path: Path, entry: dict) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


# --------------------------------------------------------- local executors
Outcomes = Iterator[tuple[SeriesInfo, dict]]

_QUEUE = None


def _init_worker(progress_queue, numba_threads: int) -> None:
    global _QUEUE
    _QUEUE = progress_queue
    import numba

    numba.set_num_threads(max(1, min(numba_threads, numba.config.NUMBA_NUM_THREADS)))


def _pool_task(paths: list[str], out_root: str, options: ReconvertOptions) -> dict:
    """Process-pool worker body: :func:`reconvert_task` reporting slices on the queue."""
    return reconvert_task(paths, out_root, options,
                          on_slices=_QUEUE.put if _QUEUE is not None else None)


def _run_here(todo: list[SeriesInfo], out_root: Path, options: ReconvertOptions,
              on_slices: Callable[[int], None]) -> Outcomes:
    for info, read in zip(todo, read_ahead([info.paths for info in todo]), strict=True):
        yield info, reconvert_task([str(p) for p in info.paths], str(out_root), options, on_slices,
                                   read)


def _available_memory() -> int | None:
    """Bytes of memory available to new work (MemAvailable on Linux), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):  # not Linux, or an unreadable line
        return None
    return None


#: Resident memory of a worker before it reads a series (Python, NumPy, pydicom, Numba).
WORKER_BASE_BYTES = 200 * 2**20
#: A worker's peak, in input volumes, with headroom (measured: 2.5 for one process that reads
#: ahead, bench/compare_pipeline.py; a pool worker does not read ahead).
WORKER_VOLUMES = 3


def auto_workers(todo: Sequence[SeriesInfo], cpus: int | None = None,
                 available: int | None = None) -> int:
    """Worker processes for ``--workers auto``.

    One per CPU, no more than there are series, and no more than fit in the
    available memory (each worker holding ``WORKER_BASE_BYTES`` plus
    ``WORKER_VOLUMES`` int16 volumes of the largest series).

    Parameters
    ----------
    todo : sequence of SeriesInfo
        The series to reconvert.
    cpus : int, optional
        CPUs to use (default ``os.cpu_count()``).
    available : int, optional
        Bytes of available memory (default: read from the system; no limit
        when unknown).

    Returns
    -------
    int
        At least 1.
    """
    cpus = cpus or os.cpu_count() or 1
    n = max(1, min(cpus, len(todo)))
    available = _available_memory() if available is None else available
    largest = max((info.voxels for info in todo), default=0)
    if available is not None and largest:
        n = min(n, max(1, available // (WORKER_BASE_BYTES + WORKER_VOLUMES * 2 * largest)))
    return int(n)


def _run_in_pool(todo: list[SeriesInfo], out_root: Path, options: ReconvertOptions,
                 on_slices: Callable[[int], None], workers: int,
                 ctx: mp.context.BaseContext) -> Outcomes:
    q = ctx.Queue()
    threads = max(1, (os.cpu_count() or 1) // workers)
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                 initargs=(q, threads)) as pool:
            futures: dict[Future, SeriesInfo] = {
                pool.submit(_pool_task, [str(p) for p in info.paths], str(out_root), options): info
                for info in todo}
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                _drain(q, on_slices)
                for fut in finished:
                    try:
                        outcome = fut.result()
                    except Exception as exc:  # noqa: BLE001 - a worker died
                        outcome = {"ok": False, "error": f"worker failed: {exc}"}
                    yield futures[fut], outcome
            _drain(q, on_slices)
    finally:
        q.close()


def _drain(q, on_slices: Callable[[int], None]) -> None:
    n = 0
    while True:
        try:
            n += q.get_nowait()
        except queue.Empty:
            break
    on_slices(n)


def check_output_root(out_root: Path) -> None:
    """Refuse an output root that is a file (a missing one is created).

    Raises
    ------
    InvalidInputError
        If ``out_root`` exists and is not a folder.
    """
    if out_root.exists() and not out_root.is_dir():
        raise InvalidInputError("is a file; OUT must be a folder (created if missing)",
                                path=out_root)


def discover(source: str | Path, *, modalities: Collection[str] = ("CT",), strict: bool = False,
             processes: int = 1) -> DiscoveryResult:
    """:func:`~rtforge.io.series.discover_series` with worker processes for a large archive.

    With ``processes`` above 1, a collection of 2048 files or more is scanned
    by this process and that many workers (forked from the batch's server)
    together; a smaller one by this process alone, no worker started.

    Parameters
    ----------
    source : str or Path
    modalities : collection of str
    strict : bool
        As in :func:`~rtforge.io.series.discover_series`.
    processes : int
        Worker processes that may help.

    Returns
    -------
    DiscoveryResult
    """
    if processes <= 1:
        return discover_series(source, modalities=set(modalities), strict=strict)
    with _PoolOnDemand(processes) as scanners:
        return discover_series(source, modalities=set(modalities), strict=strict,
                               executor=scanners)


class _PoolOnDemand(Executor):
    """A process pool made at its first task: scanning a small collection makes none.

    Making one costs even when it runs nothing (its queues' semaphores start
    multiprocessing's resource tracker, a process of its own): 0.04 s of a
    single-series reslice's discovery of 120 files, measured.
    """

    def __init__(self, processes: int) -> None:
        self._processes = processes
        self._pool: ProcessPoolExecutor | None = None

    def submit(self, fn, /, *args, **kwargs) -> Future:  # noqa: ANN001, ANN002, ANN003
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self._processes,
                                             mp_context=start_forkserver())
        return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)


def reconvert_many(todo: Sequence[SeriesInfo], out_root: str | Path, options: ReconvertOptions,
                   *, workers: int | str = "auto",
                   on_slices: Callable[[int], None] | None = None) -> Outcomes:
    """Reconvert series, in worker processes when there are several: no manifest, no skipping.

    The executor of :func:`run_batch` and of ``rtforge reslice`` over several
    series.  Each series is :func:`reconvert_task`: written into a hidden
    partial folder, renamed when complete.

    Parameters
    ----------
    todo : sequence of SeriesInfo
        The series, as :func:`rtforge.io.series.discover_series` found them.
    out_root : str or Path
    options : ReconvertOptions
    workers : int or "auto"
        Worker processes; 1 runs here (reading the next series while this one
        is computed); ``"auto"`` picks :func:`auto_workers`.
    on_slices : callable, optional
        Called as ``on_slices(n)`` with the output slices written since the last call.

    Yields
    ------
    tuple of (SeriesInfo, dict)
        Each series with its outcome (see :func:`reconvert_task`), in the
        order they finish.
    """
    todo = list(todo)
    on_slices = on_slices or (lambda n: None)
    n = auto_workers(todo) if workers == "auto" else min(int(workers), len(todo))
    if n <= 1 or (os.cpu_count() or 1) <= 1:
        yield from _run_here(todo, Path(out_root), options, on_slices)
        return
    log.info("%d worker processes", n)
    yield from _run_in_pool(todo, Path(out_root), options, on_slices, n, start_forkserver())


# ----------------------------------------------------------------- the run
def run_batch(src_root: str | Path, out_root: str | Path, options: ReconvertOptions | None = None,
              *, workers: int | str = 1, scheduler: str | None = None,
              dask: DaskConfig | None = None, dask_log_level: int = logging.WARNING,
              modalities: tuple[str, ...] = ("CT",),
              on_series: Callable[[int, int], None] | None = None,
              on_slices: Callable[[int], None] | None = None,
              on_todo: Callable[[int], None] | None = None) -> BatchResult:
    """Reconvert every CT series under ``src_root`` into ``out_root``.

    Parameters
    ----------
    src_root, out_root : str or Path
        With ``scheduler``, both are made absolute (from this process's
        working folder) and must be reachable under those paths from every
        Dask worker (a shared file system).
    options : ReconvertOptions, optional
    workers : int or "auto"
        Worker processes (1 runs in this process); ``"auto"`` picks
        :func:`auto_workers`.  Ignored with ``scheduler``.
    scheduler : str, optional
        Run one Dask task per series instead: ``tcp://HOST:PORT`` of a
        running scheduler or ``local:N`` for a local cluster of N workers
        (see :func:`rtforge.workflows.distributed.run_on_dask`; needs
        ``rtforge[distributed]``).
    dask : DaskConfig, optional
        With ``scheduler``: how long to wait for a worker and for the
        scheduler, and a local cluster's dashboard (default: none).
    dask_log_level : int
        With ``scheduler``: Dask's log records below this level are dropped
        (:data:`rtforge.workflows.distributed.QUIET`: all of them).
    modalities : tuple of str
        Modalities to reconvert.
    on_series, on_slices : callable, optional
        Progress callbacks: ``on_series(done, total)`` after each series and
        ``on_slices(n)`` as slices are written.
    on_todo : callable, optional
        Called as ``on_todo(count)`` with the number of series left to
        reconvert (found and not already complete), before any is (the
        command line stops the worker server it started ahead when there is
        at most one).

    Returns
    -------
    BatchResult

    Raises
    ------
    InvalidInputError
        If ``src_root`` holds no image series, ``out_root`` is a file,
        ``workers`` is not positive or ``scheduler`` is malformed.
    RtforgeError
        If Dask is not installed, the scheduler cannot be reached, or it has
        had no live worker for ``dask.worker_timeout`` seconds during the run
        (re-run to resume: finished series are skipped).
    """
    check_output_root(Path(out_root))
    auto = workers == "auto"
    if not auto and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
        raise InvalidInputError(f"--workers must be 'auto' or at least 1, got {workers!r}")
    if scheduler is not None:
        from rtforge.workflows.distributed import parse_scheduler, run_on_dask

        parse_scheduler(scheduler)  # a malformed address fails before anything is touched
    options = options or ReconvertOptions()
    src_root, out_root = Path(src_root), Path(out_root)
    most = (os.cpu_count() or 1) if auto else int(workers)
    ctx = start_forkserver() if scheduler is None and most > 1 else None
    found = discover(src_root, modalities=modalities, strict=False,
                     processes=most if ctx is not None else 1)
    out_root.mkdir(parents=True, exist_ok=True)
    removed = _remove_partials(out_root)
    if removed:
        log.info("removed %d partial series left by an interrupted run", removed)
    manifest_path = out_root / MANIFEST_NAME
    manifest = _read_manifest(manifest_path)
    result = BatchResult(ignored_files=[{"path": str(p), "reason": r} for p, r in found.skipped])

    todo: list[SeriesInfo] = []
    for info in found.series:
        out_uid = output_series_uid(info.series_uid, options)
        final = final_folder(out_root, info.patient_id, info.study_uid, out_uid)
        if final.is_dir():
            entry = manifest.get(out_uid)
            if entry is None:
                entry = {"source_series_uid": info.series_uid, "output_series_uid": out_uid,
                         "output_dir": str(final),
                         "files": sum(1 for _ in final.glob("*.dcm")), "options": options.key()}
                _append_manifest(manifest_path, entry)
            result.skipped.append(entry)
        else:
            todo.append(info)

    if on_todo is not None:
        on_todo(len(todo))
    progress = _Progress(on_series, on_slices, len(found.series))
    for _ in result.skipped:
        progress.series_done()

    outcomes: Outcomes
    if scheduler is not None:
        outcomes = run_on_dask(scheduler, todo, out_root, options, progress.slices, dask,
                               dask_log_level)
    else:
        outcomes = reconvert_many(todo, out_root, options,
                                  workers=workers if ctx is not None else 1,
                                  on_slices=progress.slices)

    for info, outcome in outcomes:
        if outcome["ok"]:
            rep = outcome["report"]
            entry = {"source_series_uid": info.series_uid,
                     "output_series_uid": rep["output_series_uid"],
                     "output_dir": rep["output_dir"], "files": rep["files_written"],
                     "options": options.key()}
            if not rep["skipped"]:
                _append_manifest(manifest_path, entry)
            result.done.append(rep)
        else:
            result.failed.append({"source_series_uid": info.series_uid,
                                  "files": [str(p) for p in info.paths[:3]],
                                  "error": outcome["error"]})
        progress.series_done()
    return result
