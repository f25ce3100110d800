"""``rtforge demo``: the whole pipeline on the built-in phantom patient."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from rtforge.cli._common import add_output_flags, emit_json, progress_bar
from rtforge.cli.dose import _metrics, _table
from rtforge.cli.reslice import format_report
from rtforge.config import load_config
from rtforge.core._kernel_cache import kernels_cached
from rtforge.errors import InvalidInputError
from rtforge.workflows.demo import PHANTOM_BEAMS, PHANTOM_DOSE_GY, run_demo

__all__ = ["register"]

_EXAMPLE = """example:
  rtforge demo ./rtforge-demo
"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``demo`` and ``warmup`` subcommands."""
    p = sub.add_parser("demo", help="generate the phantom patient and run the pipeline on it",
                       epilog=_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, metavar="OUT", help="output folder")
    p.add_argument("--size", type=int, default=256, help="rows and columns per slice (256)")
    p.add_argument("--slices", type=int, default=64, help="slices per acquisition (64)")
    p.add_argument("--config", type=Path, help="configuration file (default $RTFORGE_CONFIG)")
    add_output_flags(p)
    p.set_defaults(func=_demo)
    w = sub.add_parser("warmup", help="compile the Numba kernels once, ahead of first use",
                       epilog="example:\n  pip install . && rtforge warmup\n\nRuns the demo "
                              "pipeline on a tiny phantom in a temporary folder, so that every "
                              "kernel\nit uses is compiled into Numba's cache (about a minute "
                              "once); later\ncommands start at once.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_output_flags(w)
    w.set_defaults(func=_warmup)


def _warmup(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rtforge-warmup-") as folder:
        run_demo(Path(folder) / "demo", size=32, nslices=4)
    seconds = time.perf_counter() - t0
    if args.json:
        emit_json({"seconds": seconds, "cached": kernels_cached()})
    elif not args.quiet:
        print(f"kernels compiled and cached ({seconds:.1f} s)")
    return 0


def _demo(args: argparse.Namespace) -> int:
    if args.size < 16 or args.slices < 2:
        raise InvalidInputError("--size must be at least 16 and --slices at least 2")
    config = load_config(args.config)
    bar = progress_bar(args, None, "demo", "slice")

    def progress(step: str, done: int, total: int) -> None:
        bar.describe(step)
        bar.set(done, total)

    try:
        result = run_demo(args.out, size=args.size, nslices=args.slices, config=config.export,
                          progress=progress)
    finally:
        bar.close()
    if args.json:
        emit_json({"sources": [{"name": s.name, "folder": str(s.folder),
                                "series_uid": s.series_uid} for s in result.sources],
                   "reslice": [r.to_dict() for r in result.reports],
                   "structure_set": str(result.structure_set),
                   "plan": str(result.plan),
                   "structure_volumes_cm3": result.structure_volumes,
                   "drr": None if result.drrs is None else result.drrs.to_dict(),
                   "dose": str(result.dose), "box_dose_gy": PHANTOM_DOSE_GY,
                   "dvh_plot": str(result.dvh_plot),
                   "dvhs": [_metrics(d) for d in result.dvhs]})
        return 0
    print(f"phantom patient written under {Path(args.out) / 'source'}:")
    for src in result.sources:
        print(f"  {src.name:8s} {src.stack.nslices} slices -> {src.folder}")
    print(f"reconverted to axial under {Path(args.out) / 'resliced'}:")
    for rep in result.reports:
        print(format_report(rep))
    volumes = ", ".join(f"{name} {'-' if v is None else f'{v:.1f}'} cm3"
                        for name, v in result.structure_volumes.items())
    print(f"structures ({volumes}) on the resliced {result.sources[0].name} series:")
    print(f"  {result.structure_set}")
    print(f"phantom plan ({len(PHANTOM_BEAMS)} static beams with MLC): {result.plan}")
    if result.drrs is not None:
        print(f"DRRs of the phantom plan's beams ({result.drrs.method.value}, "
              f"{result.drrs.seconds:.2f} s), RT Images and previews:")
        for image in result.drrs.images:
            print(f"  {image.label:16s} {image.path.name}  {image.png}")
    print(f"synthetic plan dose (a {PHANTOM_DOSE_GY:g} Gy box around the PTV): {result.dose}")
    print(f"DVHs (plot {result.dvh_plot}):")
    print(_table([_metrics(d) for d in result.dvhs]))
    return 0
