"""Reslice every CT series under a folder (or one file's series), all or nothing.

The job of ``rtforge reslice``: unlike the archive batch
(:func:`rtforge.workflows.batch.run_batch`), which reports a failed series
and goes on, a reslice either writes every series it found or leaves the
output as it was.  When one series fails (or the run is interrupted), every
series this run wrote is removed and the error is raised; series that were
already complete before the run are kept.  Each series is still written
atomically (:func:`rtforge.workflows.reconvert.reconvert_series`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rtforge.errors import RtforgeError
from rtforge.io.series import SeriesInfo
from rtforge.workflows.batch import check_output_root, discover, reconvert_many
from rtforge.workflows.reconvert import (
    ReconvertOptions,
    SeriesReport,
    final_folder,
    output_series_uid,
    read_ahead,
    reconvert_series,
)

__all__ = ["ResliceResult", "reslice_folder"]


@dataclass
class ResliceResult:
    """What :func:`reslice_folder` wrote.

    Attributes
    ----------
    reports : list of SeriesReport
        One per series, in discovery order.
    ignored_files : list of Path
        Files under the source that are not DICOM files.
    """

    reports: list[SeriesReport] = field(default_factory=list)
    ignored_files: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready dictionary (the ``--json`` output of ``rtforge reslice``)."""
        return {"series": [r.to_dict() for r in self.reports],
                "ignored_files": [str(p) for p in self.ignored_files]}


def reslice_folder(source: str | Path, out_root: str | Path,
                   options: ReconvertOptions | None = None, *, workers: int | str = 1,
                   on_series: Callable[[int, int], None] | None = None,
                   on_slices: Callable[[int], None] | None = None,
                   on_series_slices: Callable[[int, int, int, int], None] | None = None,
                   on_discovered: Callable[[int], None] | None = None
                   ) -> ResliceResult:
    """Reslice every CT series under ``source`` into ``out_root``, all or nothing.

    Parameters
    ----------
    source : str or Path
        A folder (every CT series under it; a file that is not DICOM is
        ignored and listed) or one file (its series).
    out_root : str or Path
        Output root, created if missing.
    options : ReconvertOptions, optional
    workers : int or "auto"
        Worker processes when ``source`` holds several series (1: one series
        after another in this process, reading the next one ahead);
        ``"auto"`` picks :func:`rtforge.workflows.batch.auto_workers`.
    on_series, on_slices : callable, optional
        Progress in worker processes: ``on_series(done, total)`` as series
        finish and ``on_slices(n)`` as slices are written.
    on_series_slices : callable, optional
        Progress in this process: ``on_series_slices(index, count, done,
        total)`` as slices of series ``index`` (from 1) of ``count`` are
        written.
    on_discovered : callable, optional
        Called as ``on_discovered(count)`` with the number of series found,
        before any is resliced (the command line stops the worker server it
        started ahead when there is one).

    Returns
    -------
    ResliceResult

    Raises
    ------
    InvalidInputError
        If ``out_root`` is a file, ``source`` holds no CT series or a file
        under it is not readable as one.
    RtforgeError, OSError
        The first series that failed (in discovery order): every series
        this call wrote has then been removed.
    """
    options = options or ReconvertOptions()
    out_root = Path(out_root)
    check_output_root(out_root)
    parallel = workers != 1 and (os.cpu_count() or 1) > 1
    found = discover(source, strict=True,
                     processes=(os.cpu_count() or 1) if parallel and Path(source).is_dir() else 1)
    ignored = [path for path, reason in found.skipped if reason.startswith("not a DICOM file")]
    if on_discovered is not None:
        on_discovered(len(found.series))
    if len(found.series) > 1 and parallel:
        reports = _in_workers(found.series, out_root, options, workers, on_series, on_slices)
    else:
        reports = _here(found.series, out_root, options, on_series_slices)
    return ResliceResult(reports, ignored)


def _here(series: Sequence[SeriesInfo], out_root: Path, options: ReconvertOptions,
          on_series_slices: Callable[[int, int, int, int], None] | None) -> list[SeriesReport]:
    """One series after another in this process, reading the next one ahead."""
    reports: list[SeriesReport] = []
    try:
        for read in read_ahead([info.paths for info in series]):
            index = len(reports) + 1

            def progress(done: int, total: int, index: int = index) -> None:
                if on_series_slices is not None:
                    on_series_slices(index, len(series), done, total)

            reports.append(reconvert_series(read(), out_root, options, progress=progress))
    except (RtforgeError, OSError, KeyboardInterrupt):
        # All or nothing: remove the series this invocation wrote.
        for rep in reports:
            if not rep.skipped:
                shutil.rmtree(rep.output_dir, ignore_errors=True)
        raise
    return reports


def _in_workers(series: Sequence[SeriesInfo], out_root: Path, options: ReconvertOptions,
                workers: int | str, on_series: Callable[[int, int], None] | None,
                on_slices: Callable[[int], None] | None) -> list[SeriesReport]:
    """Several series at once in worker processes (those of the batch), all or nothing.

    Every series runs to its end; if any failed, every series this invocation
    wrote is removed and the first failure (in discovery order) is raised.
    """
    finals = [final_folder(out_root, info.patient_id, info.study_uid,
                           output_series_uid(info.series_uid, options)) for info in series]
    existed = {folder for folder in finals if folder.is_dir()}
    outcomes: dict[str, dict] = {}
    try:
        for info, outcome in reconvert_many(series, out_root, options, workers=workers,
                                            on_slices=on_slices):
            outcomes[info.series_uid] = outcome
            if on_series is not None:
                on_series(len(outcomes), len(series))
        failed = [outcomes[info.series_uid] for info in series if not outcomes[info.series_uid]["ok"]]
        if failed:
            raise RtforgeError(failed[0]["error"])
    except (RtforgeError, OSError, KeyboardInterrupt):
        for folder in finals:  # all or nothing, as one series after another
            if folder not in existed:
                shutil.rmtree(folder, ignore_errors=True)
        raise
    return [SeriesReport(**outcomes[info.series_uid]["report"]) for info in series]
