"""``rtforge reslice`` and ``rtforge batch``: CT reconversion to axial orientation."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rtforge.cli._common import Bar, add_output_flags, emit_json, floats, ints, progress_bar
from rtforge.config import Config, DaskConfig, load_config
from rtforge.errors import InvalidInputError

if TYPE_CHECKING:
    from rtforge.workflows.reconvert import ReconvertOptions, SeriesReport

# The reconversion modules (pydicom, Numba) are imported inside the commands: ``batch``
# first starts its worker forkserver, whose own imports then overlap with these.

__all__ = ["register", "format_report"]

_RESLICE_EXAMPLE = """example:
  rtforge reslice scans/patient1 out --spacing 1,1,2 --clamp -1000,3095
"""
_BATCH_EXAMPLE = """example:
  rtforge batch /archive/ct /archive/ct-axial --workers 2
  rtforge batch /archive/ct /archive/ct-axial --scheduler tcp://10.0.0.5:8786
  rtforge batch /archive/ct /archive/ct-axial --scheduler local:4 --dashboard 127.0.0.1:8787
  (re-run the same command after an interruption: finished series are skipped)

On a scheduler, SRC_ROOT and OUT_ROOT are made absolute here and must be the same
paths on every worker (a shared file system).  A run whose scheduler has no live
worker for --worker-timeout seconds stops with one line saying how many series are
done and left; run it again with a worker to finish.  Defaults come from the [dask]
section of the configuration.
"""


def _add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spacing", type=floats(3, "--spacing"), metavar="SX,SY,SZ",
                   help="output spacing in mm (default: input pixel spacing and slice spacing)")
    p.add_argument("--interp", choices=("linear", "nearest"), default="linear",
                   help="interpolation (default linear)")
    p.add_argument("--clamp", type=ints(2, "--clamp"), metavar="LO,HI",
                   help="clamp HU to [LO, HI], e.g. -1000,3095")
    p.add_argument("--ts", choices=("explicit", "implicit", "big"), default="explicit",
                   help="output transfer syntax (default explicit VR little endian)")
    p.add_argument("--no-fsync", action="store_true",
                   help="do not fsync each file before a series is renamed into place (faster; "
                        "still safe against an interrupted run, not against a power loss)")
    p.add_argument("--allow-gaps", action="store_true",
                   help="reslice across a gap between slices wider than [reslice] "
                        "max_gap_factor (default 3) times the median spacing (refused otherwise: "
                        "part of the series is missing)")
    p.add_argument("--config", type=Path,
                   help="configuration file (default $RTFORGE_CONFIG); its [export] "
                        "character_set (ISO_IR 100 by default, or ISO_IR 192) is the output's: "
                        "a source value it cannot hold is an error")
    add_output_flags(p)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``reslice`` and ``batch`` subcommands."""
    p = sub.add_parser("reslice", help="reslice every CT series under SRC to axial orientation",
                       epilog=_RESLICE_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", type=Path, metavar="SRC",
                   help="a folder (every CT series under it) or a file")
    p.add_argument("out", type=Path, metavar="OUT", help="output root")
    p.add_argument("--workers", type=_workers, default="auto", metavar="N|auto",
                   help="worker processes when SRC holds several series (default auto: one "
                        "per CPU, at most one per series, as many as fit in memory)")
    _add_options(p)
    p.set_defaults(func=_reslice)

    b = sub.add_parser("batch", help="reconvert every CT series under an archive, in parallel, "
                       "resumable", epilog=_BATCH_EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("src", type=Path, metavar="SRC_ROOT")
    b.add_argument("out", type=Path, metavar="OUT_ROOT")
    b.add_argument("--workers", type=_workers, default="auto", metavar="N|auto",
                   help="worker processes (default auto: one per CPU, at most one per series, "
                        "as many as fit in memory)")
    b.add_argument("--scheduler", type=_scheduler, metavar="tcp://HOST:PORT|local:N",
                   help="run one Dask task per series on this scheduler, or on a local cluster "
                        "of N workers (needs rtforge[distributed]; paths must be valid on every "
                        "worker); --workers is then ignored")
    b.add_argument("--worker-timeout", type=_seconds("worker_timeout"), metavar="SECONDS",
                   help="with --scheduler: fail when the scheduler has had no live worker for "
                        "this long (default 60, or [dask] worker_timeout); re-run to resume")
    b.add_argument("--connect-timeout", type=_seconds("connect_timeout"), metavar="SECONDS",
                   help="with --scheduler: seconds to reach the scheduler (default 30, or "
                        "[dask] connect_timeout)")
    b.add_argument("--dashboard", type=_dashboard, metavar="HOST:PORT",
                   help="with --scheduler local:N: serve Dask's dashboard there (default: "
                        "none, or [dask] dashboard)")
    _add_options(b)
    b.set_defaults(func=_batch)


def _workers(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be 'auto' or a whole number of at least 1, "
                                         f"got {text!r}")
    return n


def _scheduler(text: str) -> str:
    from rtforge.workflows.distributed import parse_scheduler

    try:
        parse_scheduler(text)
    except InvalidInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return text


def _seconds(name: str) -> Callable[[str], float]:
    """argparse type: a number of seconds valid as the ``DaskConfig`` field ``name``."""

    def parse(text: str) -> float:
        try:
            return getattr(DaskConfig(**{name: float(text)}), name)
        except (ValueError, InvalidInputError):
            raise argparse.ArgumentTypeError(f"must be more than 0 and at most 86400 seconds, got "
                                             f"{text!r}") from None

    return parse


def _dashboard(text: str) -> str:
    try:
        return DaskConfig(dashboard=text).dashboard
    except InvalidInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _options(args: argparse.Namespace, config: Config | None = None) -> ReconvertOptions:
    from rtforge.workflows.reconvert import ReconvertOptions

    config = config or load_config(args.config)
    return ReconvertOptions(spacing=args.spacing, interpolation=args.interp, clamp=args.clamp,
                            transfer_syntax=args.ts, config=config.export,
                            durable=not args.no_fsync,
                            max_gap_factor=config.reslice.max_gap_factor,
                            allow_gaps=args.allow_gaps)


def format_report(rep: SeriesReport) -> str:
    """A series report as a few human-readable lines."""
    sh = rep.input_shape
    lines = [
        f"series {rep.source_series_uid}",
        f"  input   {sh[2]}x{sh[1]} x {sh[0]} slices, pixel {rep.input_pixel_spacing[0]:.3g}x"
        f"{rep.input_pixel_spacing[1]:.3g} mm, slice spacing {rep.input_slice_spacing:.3g} mm, "
        f"orientation {'/'.join(f'{v:.4g}' for v in rep.input_orientation)}",
        f"  tilt    {rep.tilt_degrees:.2f} deg (nominal "
        f"{'n/a' if rep.nominal_tilt is None else f'{rep.nominal_tilt:.2f} deg'})"
        f"{'; UNEVEN spacing ' + f'{rep.gap_min:.3g}..{rep.gap_max:.3g} mm' if rep.uneven_spacing else ''}",
        f"  output  {rep.output_shape[2]}x{rep.output_shape[1]} x {rep.output_shape[0]} slices, "
        f"spacing {'/'.join(f'{v:.4g}' for v in rep.output_spacing)} mm, origin "
        f"{'/'.join(f'{v:.2f}' for v in rep.output_origin)}",
        f"  clamped {rep.clamped_low + rep.clamped_high} voxels; padding {rep.padding_voxels} voxels",
        f"  {'already complete, skipped' if rep.skipped else 'wrote'} {rep.files_written} files "
        f"to {rep.output_dir} ({rep.seconds:.2f} s)",
    ]
    lines += [f"  warning: {w}" for w in rep.warnings]
    return "\n".join(lines)


def _files_in_several_folders(root: Path, most_entries: int = 10000) -> bool:
    """Whether files lie in two folders or more under ``root`` (hidden ones skipped).

    The guess that decides whether ``reslice`` starts its worker server before
    discovery: one series usually lies in one folder, and a server started for
    nothing still costs a single-series reslice about 0.03 s (its process and
    multiprocessing's resource tracker start).  Several series in one folder
    are still resliced in parallel, their server started after discovery.
    Beyond ``most_entries`` entries the answer is yes without looking further.
    """
    seen = 0
    holding = 0
    pending = [root]
    while pending:
        folder = pending.pop()
        has_file = False
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    seen += 1
                    if seen > most_entries:
                        return True
                    if entry.name.startswith("."):
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(Path(entry.path))
                    elif not has_file and entry.is_file():
                        has_file = True
        except OSError:
            continue  # discovery names what it cannot read
        holding += has_file
        if holding > 1:
            return True
    return False


def _server_ahead(ahead: bool) -> Callable[[int], None]:
    """Start the workers' server now when ``ahead``, so that its imports overlap ours
    and the discovery; the callback returned, told how many series there are to do,
    stops it when at most one is (its imports would take CPU from the kernels)."""
    from rtforge.workflows._forkserver import start_forkserver, stop_forkserver

    if ahead:
        start_forkserver()

    def told(count: int) -> None:
        if ahead and count <= 1:
            stop_forkserver()

    return told


def _reslice(args: argparse.Namespace) -> int:
    # Files in several folders are likely several series (see _files_in_several_folders).
    discovered = _server_ahead(args.workers != 1 and (os.cpu_count() or 1) > 1
                               and args.src.is_dir() and _files_in_several_folders(args.src))
    from rtforge.workflows.reslice import reslice_folder

    bars: dict[str, Bar] = {}

    def bar(name: str, total: int | None, desc: str) -> Bar:
        if name not in bars:
            bars[name] = progress_bar(args, total, desc, name)
        return bars[name]

    def series_slices(index: int, count: int, done: int, total: int) -> None:
        this = bar("slice", None, f"series {index}/{count}")
        this.describe(f"series {index}/{count}")
        this.set(done, total)

    try:
        result = reslice_folder(
            args.src, args.out, _options(args), workers=args.workers,
            on_series=lambda done, total: bar("series", total, "series").set(done, total),
            on_slices=lambda n: bar("slice", 0, "slices").update(n),
            on_series_slices=series_slices,
            on_discovered=discovered)
    finally:
        for each in bars.values():
            each.close()
    if args.json:
        emit_json(result.to_dict())
    else:
        ignored = result.ignored_files
        print("\n".join(format_report(r) for r in result.reports))
        if ignored:
            print(f"ignored {len(ignored)} non-DICOM file(s): "
                  + ", ".join(p.name for p in ignored[:5]) + (" ..." if len(ignored) > 5 else ""))
    return 0


def _dask(args: argparse.Namespace, config: Config) -> tuple[DaskConfig, int]:
    """The [dask] settings with the flags over them, and the level of Dask's log records shown."""
    from rtforge.workflows.distributed import QUIET

    flags = {name: getattr(args, name) for name in ("worker_timeout", "connect_timeout",
                                                       "dashboard")
             if getattr(args, name) is not None}
    level = (QUIET if args.quiet or args.json else
             logging.INFO if args.verbose else logging.WARNING)
    return dataclasses.replace(config.dask, **flags), level


def _batch(args: argparse.Namespace) -> int:
    if args.dashboard and not (args.scheduler or "").startswith("local:"):
        sys.stderr.write("rtforge batch: error: --dashboard needs --scheduler local:N "
                         "(see 'rtforge batch --help')\n")
        return 2
    todo = _server_ahead(args.scheduler is None and (os.cpu_count() or 1) > 1
                         and args.workers != 1)
    from rtforge.workflows.batch import run_batch

    config = load_config(args.config)
    options = _options(args, config)
    dask, dask_log_level = _dask(args, config)
    series_bar = progress_bar(args, None, "series", "series")
    slice_bar = progress_bar(args, 0, "slices", "slice")
    try:
        result = run_batch(args.src, args.out, options, workers=args.workers,
                           scheduler=args.scheduler, dask=dask, dask_log_level=dask_log_level,
                           on_series=lambda done, total: series_bar.set(done, total),
                           on_slices=slice_bar.update,
                           on_todo=todo)
    finally:
        slice_bar.close()
        series_bar.close()
    if args.json:
        emit_json(result.to_dict())
    else:
        print(f"{len(result.done)} series reconverted, {len(result.skipped)} already complete, "
              f"{len(result.failed)} failed; {len(result.ignored_files)} files ignored")
        for rep in result.done:
            print(f"  {rep['source_series_uid']} -> {rep['output_dir']} "
                  f"({rep['files_written']} files, {rep['seconds']:.2f} s)")
        for fail in result.failed:
            print(f"  FAILED {fail['source_series_uid']}: {fail['error']}")
    if result.failed:
        sys.stderr.write(f"rtforge batch: {len(result.failed)} series failed: "
                         + ", ".join(f["source_series_uid"] for f in result.failed) + "\n")
        return 1
    return 0
