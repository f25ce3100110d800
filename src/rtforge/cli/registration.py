"""``rtforge reg``: a rigid Spatial Registration between two image series' frames of reference."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

from rtforge.cli._common import add_output_flags, emit_json, floats
from rtforge.config import load_config
from rtforge.errors import InvalidInputError
from rtforge.workflows.registration import register_series

__all__ = ["register"]

_EXAMPLE = """examples:
  rtforge reg --fixed ct/ --moving mr/ --matrix 1,0,0,12.5,0,1,0,-3,0,0,1,40,0,0,0,1 -o out/
  rtforge reg --fixed ct/ --moving cbct/ --matrix-file matrix.txt -o out/ --json

The matrix maps patient coordinates (LPS, mm) of the moving series' frame of reference
into the fixed one's: (x, y, z, 1)_fixed = M (x, y, z, 1)_moving (PS3.3 C.20.2.1.1),
row by row; it must be rigid (a rotation and a translation). --matrix-file holds the 16
numbers separated by spaces, commas or new lines (4 rows of 4, as numpy.savetxt writes).
The registration is in the fixed series' study and frame; it references every image of
both series. Output: OUT_DIR/<PatientID>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOP>.dcm.
"""
_SEPARATORS = re.compile(r"[\s,]+")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``reg`` subcommand."""
    p = sub.add_parser("reg", help="write a rigid registration between two series (REG)",
                       epilog=_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fixed", type=Path, required=True, metavar="DIR_OR_FILE",
                   help="the reference image series (its frame is the registration's)")
    p.add_argument("--moving", type=Path, required=True, metavar="DIR_OR_FILE",
                   help="the registered image series (another frame of reference)")
    matrix = p.add_mutually_exclusive_group(required=True)
    matrix.add_argument("--matrix", type=floats(16, "--matrix"), metavar="M00,...,M33",
                        help="the 4x4 matrix from moving to fixed, 16 numbers row by row")
    matrix.add_argument("--matrix-file", type=Path, metavar="FILE",
                        help="a text file holding the 16 numbers")
    p.add_argument("-o", "--out", type=Path, required=True, metavar="OUT_DIR",
                   help="output root (files grouped by patient)")
    p.add_argument("--label", default="REGISTRATION", metavar="TEXT",
                   help="Content Label (default REGISTRATION)")
    p.add_argument("--description", default="", metavar="TEXT", help="Content Description")
    p.add_argument("--comment", default="", metavar="TEXT",
                   help="Frame of Reference Transformation Comment of the moving frame")
    p.add_argument("--config", type=Path, help="configuration file (default $RTFORGE_CONFIG)")
    add_output_flags(p)
    p.set_defaults(func=_reg)


def _read_matrix(path: Path) -> np.ndarray:
    """The 16 numbers of a matrix file, as a 4x4 array."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read the matrix file: {exc}", path=path) from None
    words = [w for w in _SEPARATORS.split(text) if w]
    try:
        values = [float(w) for w in words]
    except ValueError:
        raise InvalidInputError("the matrix file must hold 16 numbers only", path=path) from None
    if len(values) != 16:
        raise InvalidInputError(f"the matrix file must hold 16 numbers, it holds {len(values)}",
                                path=path)
    return np.array(values).reshape(4, 4)


def _reg(args: argparse.Namespace) -> int:
    matrix = _read_matrix(args.matrix_file) if args.matrix_file is not None \
        else np.array(args.matrix).reshape(4, 4)
    written = register_series(args.fixed, args.moving, matrix, args.out,
                              matrix_name=str(args.matrix_file) if args.matrix_file is not None
                              else "--matrix", label=args.label, description=args.description,
                              comment=args.comment, config=load_config(args.config).export)
    report = {"path": str(written.path), "sop_instance_uid": written.sop_instance_uid,
              "fixed_frame_of_reference_uid": written.fixed_frame_of_reference_uid,
              "moving_frame_of_reference_uid": written.moving_frame_of_reference_uid,
              "fixed_images": written.fixed_images, "moving_images": written.moving_images,
              "matrix": written.matrix.tolist()}
    if args.json:
        emit_json(report)
    elif not args.quiet:
        print(f"wrote {written.path}: {written.moving_images} moving image(s) registered onto "
              f"{written.fixed_images} fixed image(s)")
    return 0
