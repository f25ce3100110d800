"""CT reconversion of one series: read, reslice to axial, write (iPlan Note 8-2).

This is the per-series function that ``rtforge reslice``, ``rtforge batch``
and the distributed batch all call: one implementation, several executors.

Output of a series is written into a hidden partial folder beside its final
place and renamed when every slice is on disk, so an interrupted run never
leaves a half series under a name that looks complete.  The final folder is
``<out>/<PatientID>/<StudyInstanceUID>/<SeriesInstanceUID>/`` with one
``<SOPInstanceUID>.dcm`` per slice; the output Series Instance UID is derived
from the source series and the options, so a re-run finds what it already did.
"""

from __future__ import annotations

import json
import logging
import queue
import shutil
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rtforge.config import ExportConfig
from rtforge.core.geometry import Grid, SliceStack
from rtforge.errors import InvalidInputError, RtforgeError
from rtforge.io.ct import CTSeriesWriter
from rtforge.io.fileset import fsync_directory, parse_transfer_syntax, series_dir, sync_files
from rtforge.io.series import ImageSeries, read_series
from rtforge.io.uids import derived_uid

__all__ = ["ReconvertOptions", "SeriesReport", "reconvert_series", "source_slice_ranges",
           "output_series_uid", "final_folder", "read_ahead", "reconvert_task", "PARTIAL_PREFIX"]

log = logging.getLogger(__name__)

#: Folders whose name starts with this are unfinished output; a re-run removes them.
PARTIAL_PREFIX = ".partial-"

#: Slab buffers per series: one computed, one queued, one being written.
_SLABS = 3


@dataclass(frozen=True)
class ReconvertOptions:
    """How a series is reconverted.

    Parameters
    ----------
    spacing : tuple of float, optional
        Output ``(sx, sy, sz)`` in mm; by default the input pixel spacing and
        the slice spacing (table increment for tilted series).
    interpolation : {"linear", "nearest"}
    clamp : tuple of int, optional
        HU range to clamp to, e.g. ``(-1000, 3095)`` as Oncentra.
    transfer_syntax : str
        ``explicit`` (default), ``implicit`` or ``big``.
    chunk : int
        Output slices computed per kernel call (the writer encodes one chunk
        while the kernel computes the next).
    config : ExportConfig
        UID root and identity written into the output.
    durable : bool
        Flush the series' files and folder to disk before it is renamed into
        place (default; each file's write-back starts as it is written and
        the fsyncs at the end find it done), so that even a power loss cannot
        leave a renamed series with missing data.  ``False`` leaves write-back to the
        operating system: still atomic against an interrupted process, and
        much faster where the disk is the bottleneck.
    max_gap_factor : float
        Refuse a series with a gap between adjacent slices larger than this
        multiple of its median slice spacing (default 3, ``[reslice]`` in the
        configuration): the missing part would be filled by interpolation.
    allow_gaps : bool
        Reslice across such gaps anyway (reported as a warning).
    """

    spacing: tuple[float, float, float] | None = None
    interpolation: str = "linear"
    clamp: tuple[int, int] | None = None
    transfer_syntax: str = "explicit"
    chunk: int = 16
    config: ExportConfig = field(default_factory=ExportConfig)
    durable: bool = True
    max_gap_factor: float = 3.0
    allow_gaps: bool = False

    def __post_init__(self) -> None:
        if self.interpolation not in ("linear", "nearest"):
            raise InvalidInputError(
                f"interpolation must be 'linear' or 'nearest', got {self.interpolation!r}")
        if self.spacing is not None and (len(self.spacing) != 3 or min(self.spacing) <= 0):
            raise InvalidInputError(f"spacing must be three positive numbers, got {self.spacing}")
        if self.clamp is not None and (len(self.clamp) != 2 or self.clamp[0] > self.clamp[1]):
            raise InvalidInputError(f"clamp must be LO,HI with LO <= HI, got {self.clamp}")
        if self.chunk < 1:
            raise InvalidInputError("chunk must be at least 1")
        parse_transfer_syntax(self.transfer_syntax)

    def key(self) -> str:
        """A stable text of the options that change the output pixels or geometry."""
        return json.dumps([self.spacing, self.interpolation, self.clamp, self.transfer_syntax])


@dataclass
class SeriesReport:
    """What reconverting one series did (all lengths in mm, angles in degrees)."""

    source_series_uid: str
    source_files: int
    input_shape: tuple[int, int, int]
    input_pixel_spacing: tuple[float, float]
    input_orientation: list[float]
    input_slice_spacing: float
    tilt_degrees: float
    nominal_tilt: float | None
    uneven_spacing: bool
    gap_min: float
    gap_max: float
    output_series_uid: str
    output_shape: tuple[int, int, int]
    output_origin: list[float]
    output_spacing: list[float]
    clamped_low: int
    clamped_high: int
    padding_voxels: int
    files_written: int
    output_dir: str
    skipped: bool = False
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready dictionary."""
        return asdict(self)


def source_slice_ranges(stack: SliceStack, grid: Grid) -> np.ndarray:
    """Input slices ``[first, last]`` that each output slice of ``grid`` draws from.

    An output slice is a rectangle; its corners' offsets along the input
    normal bound the input slices it crosses, widened to the bracketing pair.

    Returns
    -------
    ndarray of shape (NK, 2), dtype int64
        Row ``k``: ``first, last`` for output slice ``k``.
    """
    nk, nj, ni = grid.shape
    corners = np.zeros((nk, 4, 3))
    corners[:, :, 0] = (0, ni - 1, 0, ni - 1)
    corners[:, :, 1] = (0, 0, nj - 1, nj - 1)
    corners[:, :, 2] = np.arange(nk)[:, None]
    d = grid.index_to_patient(corners) @ stack.normal  # (NK, 4): corners along the normal
    offsets = stack.offsets
    lo = np.searchsorted(offsets, d.min(axis=1), side="right") - 1
    hi = np.searchsorted(offsets, d.max(axis=1), side="left")
    last = stack.nslices - 1
    return np.stack([np.clip(lo, 0, last), np.clip(hi, 0, last)], axis=1)


def output_series_uid(source_series_uid: str, options: ReconvertOptions) -> str:
    """The output Series Instance UID: derived from the source series and the options,
    so that a re-run knows where its earlier output is."""
    return str(derived_uid(options.config.uid_root, "rtforge-reslice", source_series_uid,
                           options.key()))


def final_folder(out_root: Path, patient_id: str, study_uid: str, series_uid: str) -> Path:
    """Where a reconverted series ends up (see :func:`rtforge.io.fileset.series_dir`)."""
    return series_dir(out_root, patient_id, study_uid, series_uid)


def _check_gaps(series: ImageSeries, options: ReconvertOptions) -> str | None:
    """Refuse a gap between slices beyond ``max_gap_factor`` times the median spacing
    (a missing part of the series), or, with ``allow_gaps``, the warning to report."""
    gaps = np.abs(np.asarray(series.gaps, dtype=float))
    if gaps.size < 2:
        return None
    median = float(np.median(gaps))
    widest = int(np.argmax(gaps))
    if median <= 0 or gaps[widest] <= options.max_gap_factor * median:
        return None
    text = (f"a gap of {gaps[widest]:.2f} mm between slices {widest + 1} and {widest + 2} "
            f"(sorted along the normal) is {gaps[widest] / median:.1f} times the median slice "
            f"spacing of {median:.2f} mm (limit {options.max_gap_factor:g}x)")
    if not options.allow_gaps:
        raise InvalidInputError(f"{text}: part of the series is missing and would be filled "
                                "by interpolation; give --allow-gaps to reslice across it",
                                path=series.paths[widest + 1])
    return f"{text}: resliced across it (--allow-gaps), the gap is interpolated"


def reconvert_series(source: str | Path | Sequence[str | Path] | ImageSeries, out_root: str | Path,
                     options: ReconvertOptions | None = None, *,
                     progress: Callable[[int, int], None] | None = None) -> SeriesReport:
    """Reslice one image series to axial orientation and write it as CT Image Storage.

    Parameters
    ----------
    source : path, list of paths or ImageSeries
        The series' files (or a folder holding exactly one series), or an
        already read series.
    out_root : str or Path
        Output root; the series goes to ``<out_root>/<PatientID>/<Study>/<Series>/``.
    options : ReconvertOptions, optional
    progress : callable, optional
        Called as ``progress(done, total)`` in output slices after each chunk.

    Returns
    -------
    SeriesReport
        ``skipped`` is True when the output series already existed complete.

    Raises
    ------
    InvalidInputError, GeometryError
        For input that cannot be read or resliced; nothing is left in ``out_root``.
    """
    t0 = time.perf_counter()
    options = options or ReconvertOptions()
    series = source if isinstance(source, ImageSeries) else read_series(source)
    stack = series.stack
    gap_warning = _check_gaps(series, options)
    from rtforge.core.reslice import default_output_grid  # see _compute_and_write

    grid = default_output_grid(stack, options.spacing)
    header = series.headers[0]
    out_uid = output_series_uid(series.series_uid, options)
    final = final_folder(Path(out_root), str(header.get("PatientID", "") or ""),
                         str(header.StudyInstanceUID), out_uid)
    report = SeriesReport(
        source_series_uid=series.series_uid, source_files=len(series.paths),
        input_shape=tuple(int(n) for n in series.array.shape),
        input_pixel_spacing=stack.pixel_spacing,
        input_orientation=[float(v) for v in (*stack.row_direction, *stack.column_direction)],
        input_slice_spacing=stack.normal_spacing, tilt_degrees=float(series.tilt_degrees),
        nominal_tilt=series.nominal_tilt, uneven_spacing=bool(series.uneven_spacing),
        gap_min=float(np.min(series.gaps)) if len(series.gaps) else 0.0,
        gap_max=float(np.max(series.gaps)) if len(series.gaps) else 0.0,
        output_series_uid=out_uid, output_shape=grid.shape,
        output_origin=[float(v) for v in grid.origin],
        output_spacing=[float(v) for v in grid.spacing], clamped_low=0, clamped_high=0,
        padding_voxels=int(series.padding_voxels), files_written=0, output_dir=str(final),
        warnings=list(series.warnings) + ([gap_warning] if gap_warning else []))
    if final.is_dir():
        report.skipped = True
        report.files_written = sum(1 for _ in final.glob("*.dcm"))
        report.seconds = time.perf_counter() - t0
        return report

    partial = final.parent / f"{PARTIAL_PREFIX}{out_uid}"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    try:
        sources = [(str(h.SOPClassUID), str(h.SOPInstanceUID)) for h in series.headers]
        refs = [sources[first:last + 1] for first, last in source_slice_ranges(stack, grid)]
        method = "trilinear" if options.interpolation == "linear" else "nearest-neighbour"
        writer = CTSeriesWriter(
            grid.to_stack(), partial, source=header, source_references=refs, derived=True,
            transfer_syntax=parse_transfer_syntax(options.transfer_syntax),
            config=options.config, series_uid=out_uid, flat=True, fsync=False,
            writeback=options.durable,
            derivation_description=(
                f"Resliced to axial orientation by rtforge ({method}); "
                f"source tilt {series.tilt_degrees:.2f} deg"))
        wreport = _compute_and_write(series.array, stack, grid, options, writer, progress)
        if options.durable:
            sync_files(partial, wreport.paths)
    except InvalidInputError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if exc.path is not None or not series.paths:
            raise
        # e.g. a source value the output's character set cannot hold: name the series.
        raise InvalidInputError(exc.reason, path=series.paths[0].parent, tag=exc.tag) from None
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    partial.rename(final)
    if options.durable:
        fsync_directory(final.parent)
    report.clamped_low = wreport.clamped_low
    report.clamped_high = wreport.clamped_high
    report.files_written = len(wreport.paths)
    report.warnings.extend(wreport.dropped_values)
    if wreport.clamped_low or wreport.clamped_high:
        report.warnings.append(
            f"{wreport.clamped_low + wreport.clamped_high} voxels outside the storable range "
            f"(-1024..64511 HU) were clamped")
    report.seconds = time.perf_counter() - t0
    return report


def read_ahead(sources: Sequence[Sequence[str | Path]]
               ) -> Iterator[Callable[[], ImageSeries]]:
    """Read series one ahead of their use, on a background thread.

    Reconverting several series in one process, the next series is read
    (file I/O and header parsing) while the kernel and the writer work on the
    current one.  At most two series are in memory: the one handed out and
    the one being read.

    Parameters
    ----------
    sources : sequence of sequences of paths
        Each series' files.

    Yields
    ------
    callable
        One per source, in order: returns that series' :class:`ImageSeries`
        (waiting for its read to finish) or raises what
        :func:`~rtforge.io.series.read_series` raised for it.
    """
    if not sources:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rtforge-read") as pool:
        pending = pool.submit(read_series, list(sources[0]))
        for following in [*sources[1:], None]:
            handle = _Pending(pending)
            if following is not None:  # read it while the caller works on this one
                pending = pool.submit(read_series, list(following))
            yield handle


def reconvert_task(paths: Sequence[str], out_root: str, options: ReconvertOptions,
                   on_slices: Callable[[int], None] | None = None,
                   read: Callable[[], ImageSeries] | None = None) -> dict:
    """Reconvert one series and report the outcome: the step every executor runs.

    The local process pool, the in-process loop and the Dask executor
    (:mod:`rtforge.workflows.distributed`) all run this function, so the atomic output
    of :func:`reconvert_series` (a hidden partial folder
    renamed when complete) holds whichever runs it.

    Parameters
    ----------
    paths : sequence of str
        The series' files.
    out_root : str
        Output root.
    options : ReconvertOptions
    on_slices : callable, optional
        Called as ``on_slices(n)`` with the number of output slices written
        since the last call.
    read : callable, optional
        Returns the series already read (or raises the reading error): see
        :func:`read_ahead`.  By default ``paths`` are read here.

    Returns
    -------
    dict
        ``{"ok": True, "report": SeriesReport.to_dict()}``, or
        ``{"ok": False, "error": str}`` (plus ``"traceback"`` for an
        unexpected error): a failed series never stops the batch.
    """
    last = [0]

    def progress(done: int, total: int) -> None:
        if on_slices is not None and done > last[0]:
            on_slices(done - last[0])
        last[0] = done

    try:
        source = read() if read is not None else [Path(p) for p in paths]
        report = reconvert_series(source, out_root, options, progress=progress)
        return {"ok": True, "report": report.to_dict()}
    except RtforgeError as exc:
        return {"ok": False, "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - one bad series must not stop the batch
        log.debug("series failed", exc_info=True)
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=3)}


class _Pending:
    """A series being read; calling it waits for it and lets go of it (memory)."""

    def __init__(self, future: Future) -> None:
        self._future: Future | None = future

    def __call__(self) -> ImageSeries:
        future, self._future = self._future, None
        if future is None:
            raise RtforgeError("the series was already taken")
        return future.result()


def _compute_and_write(array: np.ndarray, stack: SliceStack, grid: Grid,
                       options: ReconvertOptions, writer: CTSeriesWriter,
                       progress: Callable[[int, int], None] | None):
    """Kernel on this thread, encoding on a writer thread, one chunk apart.

    The chunks cycle through three slab buffers that the writer hands back:
    a fresh slab per chunk would be fresh memory, which the operating system
    zeroes page by page (in a profile of a batch, 5 to 10 % of its CPU time
    went to zeroing pages).
    """
    # Imported here, not above: the batch's parent process discovers and schedules
    # series without loading Numba (0.13 s of its start); its workers have it loaded.
    from rtforge.core.reslice import reslice

    nk = grid.shape[0]
    chunks: queue.Queue = queue.Queue()
    free: queue.Queue = queue.Queue()
    for _ in range(min(_SLABS, -(-nk // options.chunk))):
        free.put(np.empty((min(options.chunk, nk), *grid.shape[1:]), dtype=np.int16))
    failure: list[BaseException] = []

    def write_loop() -> None:
        while True:
            item = chunks.get()
            if item is None:
                return
            k0, slab, buffer = item
            if not failure:
                try:
                    writer.write(k0, slab)
                except BaseException as exc:  # noqa: BLE001 - re-raised on the main thread
                    failure.append(exc)
            free.put(buffer)

    thread = threading.Thread(target=write_loop, name="rtforge-writer", daemon=True)
    thread.start()
    try:
        for k0 in range(0, nk, options.chunk):
            if failure:
                break
            k1 = min(nk, k0 + options.chunk)
            buffer = free.get()
            slab = reslice(array, stack, grid, interpolation=options.interpolation,
                           clamp=options.clamp, k_range=(k0, k1), out=buffer[:k1 - k0])
            chunks.put((k0, slab, buffer))
            if progress is not None:
                progress(k1, nk)
    finally:
        chunks.put(None)
        thread.join()
    if failure:
        exc = failure[0]
        if isinstance(exc, RtforgeError):
            raise exc
        raise RtforgeError(f"writing the output series failed: {exc}") from exc
    return writer.close()
