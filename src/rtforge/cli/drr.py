"""``rtforge drr``: DRRs of a CT as RT Images, from a plan's beams or typed angles."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from dataclasses import replace
from pathlib import Path

from rtforge.cli._common import add_output_flags, emit_json, floats, progress_bar
from rtforge.config import load_config
from rtforge.core.beam import BeamGeometry
from rtforge.core.drr import Attenuation, DrrMethod
from rtforge.errors import GeometryError
from rtforge.io.rtimage import DrrRequest, DrrRun, plan_requests
from rtforge.io.rtplan import RTPlan, read_rtplan
from rtforge.workflows.drr import drr_of_series

__all__ = ["register", "parse_size", "parse_angles"]

logger = logging.getLogger(__name__)

_EXAMPLE = """examples:
  rtforge drr ct/ --plan plan.dcm -o drr/ --png previews/
  rtforge drr ct/ --plan plan.dcm --beam 2 --method trilinear -o drr/
  rtforge drr ct/ --gantry 0,90,180,270 --isocenter -10,20,5 --hu-window -500,3000 -o drr/
  rtforge drr ct/ --plan plan.dcm -o drr/ --private-isocenter   (iPlan's group 3273)

Images are seen from the source (beam's eye view): for a supine head-first
patient at gantry 0 the patient's left is on the right and the head at the top.
PNG previews (--png) are zoomed to at least 512 pixels and show the patient
directions at the edges, the label and angles, the isocentre (a cyan cross),
the field outline and a scale bar in mm at the isocentre plane.
"""


def parse_size(text: str) -> tuple[int, int]:
    """argparse type: ``ROWSxCOLUMNS``."""
    rows, sep, cols = text.lower().partition("x")
    try:
        size = (int(rows), int(cols))
    except ValueError:
        size = (0, 0)
    if not sep or min(size) < 1:
        raise argparse.ArgumentTypeError(f"--size must be ROWSxCOLUMNS, e.g. 512x512, got "
                                         f"{text!r}")
    return size


def parse_angles(text: str) -> tuple[float, ...]:
    """argparse type: one or more comma-separated angles in degrees."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"--gantry must be angles in degrees, e.g. 0 or "
                                         f"0,90,180, got {text!r}")
    return values


def _beams(text: str) -> str | int:
    if text.lower() == "all":
        return "all"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--beam must be a Beam Number or 'all', got "
                                         f"{text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``drr`` subcommand."""
    p = sub.add_parser("drr", help="DRRs of a CT as RT Images (plan beams or typed angles)",
                       epilog=_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ct", type=Path, metavar="CT_DIR", help="folder (or file) of one CT series")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--plan", type=Path, metavar="RTPLAN", help="RT Plan whose beams to use")
    source.add_argument("--gantry", type=parse_angles, metavar="DEG",
                        help="gantry angle(s), comma-separated: one image per angle")
    p.add_argument("--beam", type=_beams, default="all", metavar="NUMBER|all",
                   help="with --plan: the Beam Number, or all beams (default)")
    p.add_argument("--collimator", type=float, metavar="DEG",
                   help="with --gantry: beam limiting device angle (default 0)")
    p.add_argument("--couch", type=float, metavar="DEG",
                   help="with --gantry: patient support angle (default 0)")
    p.add_argument("--isocenter", type=floats(3, "--isocenter"), metavar="X,Y,Z",
                   help="with --gantry: isocentre in patient coordinates (mm)")
    p.add_argument("--sad", type=float, metavar="MM",
                   help="source-axis distance (default 1000; with --plan, the beam's own)")
    p.add_argument("--sid", type=float, default=1500.0, metavar="MM",
                   help="source to receptor distance (default 1500)")
    p.add_argument("--size", type=parse_size, default=(512, 512), metavar="ROWSxCOLUMNS",
                   help="image size (default 512x512)")
    p.add_argument("--pixel", type=float, metavar="MM",
                   help="pixel spacing at the receptor plane (default: the smallest, to 0.01 mm, "
                        "at which every image shows the whole body, voxels of -500 HU and "
                        "up, with 5%% to spare)")
    p.add_argument("--method", choices=[m.value for m in DrrMethod], default="siddon",
                   help="exact radiological path (siddon, default) or trilinear sampling")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where to cast the rays (default cpu)")
    p.add_argument("--hu-window", type=floats(2, "--hu-window"), metavar="LO,HI",
                   help="only voxels with LO <= HU <= HI contribute")
    p.add_argument("-o", "--out", type=Path, required=True, metavar="OUT_DIR",
                   help="output root of the RT Image files")
    p.add_argument("--png", type=Path, metavar="DIR", help="also write PNG previews there")
    p.add_argument("--private-isocenter", action="store_true",
                   help="write iPlan's private group 3273 (Isocenter Position, Patient Position) "
                        "into each RT Image (default: [export] private_isocenter_block)")
    p.add_argument("--config", type=Path, help="configuration file (default $RTFORGE_CONFIG)")
    add_output_flags(p)
    p.set_defaults(func=_drr)


def _usage(args: argparse.Namespace) -> str | None:
    """A usage error for flags that do not go together, or None."""
    if args.plan is not None:
        for flag, value in (("--collimator", args.collimator), ("--couch", args.couch),
                            ("--isocenter", args.isocenter)):
            if value is not None:
                return f"{flag} goes with --gantry, not --plan (the plan gives it)"
    else:
        if args.isocenter is None:
            return "--gantry needs --isocenter X,Y,Z"
        if args.beam != "all":
            return "--beam goes with --plan"
    return None


def _requests(args: argparse.Namespace, rows: int,
              cols: int) -> tuple[list[DrrRequest], RTPlan | None]:
    if args.plan is not None:
        plan = read_rtplan(args.plan)
        beams = None if args.beam == "all" else [args.beam]
        return plan_requests(plan, beams, sid=args.sid, rows=rows, columns=cols,
                             pixel_spacing=args.pixel or 1.0, sad=args.sad), plan
    pixel = args.pixel or 1.0
    geometries = [BeamGeometry(g, args.isocenter, collimator_angle=args.collimator or 0.0,
                               couch_angle=args.couch or 0.0,
                               sad=1000.0 if args.sad is None else args.sad, sid=args.sid,
                               rows=rows, columns=cols, pixel_spacing=(pixel, pixel))
                  for g in args.gantry]
    return [DrrRequest(g) for g in geometries], None


def _deg(angle: float) -> str:
    return f"{round(angle, 3) + 0.0:g}"


def _print(run: DrrRun) -> None:
    for image in run.images:
        g = image.geometry
        what = f"beam {image.beam_number}" if image.beam_number is not None else "image"
        print(f"{what} {image.label!r}: gantry {_deg(g.gantry_angle)}, collimator "
              f"{_deg(g.collimator_angle)}, couch {_deg(g.couch_angle)}, {g.rows}x{g.columns} "
              f"of {g.pixel_spacing[0]:g} mm -> {image.path}")
        if image.png is not None:
            print(f"  preview {image.png}")
    print(f"{len(run.images)} RT Image(s), series {run.series_uid}, {run.method.value} on "
          f"{run.device.value}, {run.seconds:.2f} s")


def _drr(args: argparse.Namespace) -> int:
    message = _usage(args)
    if message is not None:
        sys.stderr.write(f"rtforge drr: error: {message} (see 'rtforge drr --help')\n")
        return 2
    rows, cols = args.size
    if args.pixel is not None and not (math.isfinite(args.pixel) and args.pixel > 0):
        raise GeometryError(f"--pixel must be a positive number of mm, got {args.pixel:g}")
    attenuation = Attenuation(hu_window=args.hu_window)
    requests, plan = _requests(args, rows, cols)
    config = load_config(args.config)
    export = replace(config.export, private_isocenter_block=True) if args.private_isocenter \
        else config.export
    bar = progress_bar(args, len(requests), "DRR", "image")
    try:
        run = drr_of_series(args.ct, requests, args.out, plan=plan,
                            fit_field_of_view=args.pixel is None, method=args.method,
                            device=args.device, attenuation=attenuation, png_dir=args.png,
                            config=export, progress=lambda done, total: bar.set(done, total))
    finally:
        bar.close()
    if args.json:
        emit_json(run.to_dict())
    else:
        _print(run)
    return 0

