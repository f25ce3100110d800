"""``rtforge print``: Basic Grayscale/Color Print Management SCU (Oncentra 4.2.1.3.3)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rtforge.cli._common import (
    add_output_flags,
    add_tls_flags,
    emit_json,
    floats,
    progress_bar,
    with_tls_flags,
)
from rtforge.config import load_config
from rtforge.net import resolve_node
from rtforge.net.printing import FILM_SIZES, print_images

__all__ = ["register"]

_EXAMPLE = """examples:
  rtforge print ct/*.dcm --to printer --format 'STANDARD\\2,2' --window 40,400
  rtforge print drr.dcm --to PRINTSCP@10.0.0.9:10400 --film-size 8INX10IN --color
any status other than success, a timeout or an abort: the association is aborted (A-ABORT),
the job failed, and the step and reason are printed (Oncentra tables 4-9 and 4-10).
"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``print`` subcommand."""
    p = sub.add_parser("print", help="print images on a DICOM printer", epilog=_EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", type=Path, nargs="+", metavar="IMAGE",
                   help="single-frame grayscale DICOM images (CT, RT Image, ...), in order")
    p.add_argument("--to", required=True, metavar="PRINTER_NODE", dest="node",
                   help="printer node from the configuration, or AET@HOST:PORT")
    p.add_argument("--format", default="STANDARD\\1,1", metavar="STANDARD\\C,R",
                   help="Image Display Format: columns, rows per film (default STANDARD\\1,1)")
    p.add_argument("--film-size", default="14INX17IN", choices=FILM_SIZES, metavar="SIZE",
                   help="Film Size ID (default 14INX17IN)")
    p.add_argument("--color", action="store_true",
                   help="Basic Color Print Management (default grayscale)")
    p.add_argument("--bits", type=int, choices=(8, 12), default=8,
                   help="bits per printed pixel (12: grayscale only; default 8)")
    p.add_argument("--window", type=floats(2, "--window"), metavar="CENTER,WIDTH",
                   help="window in modality units, e.g. 40,400 HU (default: the file's, else "
                        "the pixel range)")
    p.add_argument("--copies", type=int, default=1, help="Number of Copies (default 1)")
    p.add_argument("--medium", default="BLUE FILM",
                   help="Medium Type: PAPER, CLEAR FILM, BLUE FILM, ... (default BLUE FILM)")
    p.add_argument("--orientation", choices=("PORTRAIT", "LANDSCAPE"), default="PORTRAIT",
                   help="Film Orientation (default PORTRAIT)")
    p.add_argument("--aet", metavar="AET", help="our calling AE title (default: [network] "
                   "ae_title)")
    p.add_argument("--timeout", type=float, metavar="S",
                   help="seconds for each step (default: the node's, 30)")
    p.add_argument("--config", type=Path, help="configuration file (default $RTFORGE_CONFIG)")
    add_tls_flags(p)
    add_output_flags(p)
    p.set_defaults(func=_print)


def _print(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    node = with_tls_flags(resolve_node(args.node, config.network, timeout=args.timeout), args)
    center, width = args.window if args.window is not None else (None, None)
    bar = progress_bar(args, len(args.images), "print", "img")
    try:
        report = print_images(args.images, node, display_format=args.format,
                              film_size=args.film_size, color=args.color, bits=args.bits,
                              center=center, width=width, copies=args.copies,
                              medium=args.medium, orientation=args.orientation,
                              ae_title=args.aet or config.network.ae_title,
                              progress=lambda done, total: bar.set(done, total))
    finally:
        bar.close()
    if args.json:
        emit_json(report.as_dict())
    elif not args.quiet:
        mode = "colour" if report.color else "grayscale"
        print(f"printed {report.images} image(s) on {report.films} film(s) at {node} ({mode}; "
              f"printer {report.printer_status or 'status not given'})")
        for warning in report.warnings:
            print(f"warning: {warning}")
    return 0
