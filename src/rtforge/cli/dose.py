"""``rtforge dvh`` and ``rtforge dose info | sum | requantize``: RT Dose and DVHs."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from rtforge.cli._common import (
    add_output_flags,
    check_output_files,
    emit_json,
    output_file,
    progress_bar,
)
from rtforge.config import load_config
from rtforge.core.dosegrid import GridChoice
from rtforge.core.dvh import (
    DEFAULT_BIN_WIDTH_GY,
    DVH,
    TABLE_FINE_ROWS,
    TABLE_GROWTH,
    TABLE_MAX_ROWS,
    EndCap,
)
from rtforge.core.pictures import DOSE_AXIS_D1_FACTOR
from rtforge.errors import InvalidInputError
from rtforge.io.rtdose import (
    read_rtdose,
)
from rtforge.workflows.dose import (
    dvh_of_files,
    requantize_dose_file,
    sum_dose_files,
    write_dvh_csv,
    write_dvh_dose,
    write_dvh_plot,
)

__all__ = ["register"]

_DVH_EXAMPLE = f"""Each ROI's planar contours are integrated over the dose grid with
sub-voxel sampling (holes by the even-odd rule, each contour a slab of one
contour spacing); volume outside the dose grid is reported, never dosed.
The slab thickness is the structure set's contour spacing (the median gap
between the distinct planes of all its ROIs), or --slab-mm, or the slice
spacing of the image series given with --images; the first and last
planes of an ROI get half a slab (--end-cap half, the convention of the
volumes planning systems store), a full slab (full) or none (none).  The
output says which slab and end cap were used.

--csv writes full-precision numbers (each the shortest text that reads back
to the same float).  With --bin-width every bin of that width is a row;
without it (bins of {DEFAULT_BIN_WIDTH_GY} Gy) every bin is a row up to {TABLE_MAX_ROWS:,} rows, and
a longer table (brachytherapy: doses near a source run far above the
prescription) has uniform rows up to the highest D1 of the ROIs (at most
about {TABLE_FINE_ROWS:,}, every m-th bin) and above it rows whose dose grows by
{TABLE_GROWTH}x, to the maximum.  --plot (.png, .pdf or .svg) draws each ROI
in its Display Color (light colours, e.g. white, with a dark outline), the
legend right of the axes, the dose axis to the maximum dose or, when that
is beyond {DOSE_AXIS_D1_FACTOR}x the highest D1, to there.  Every output path is checked
before any work.

examples:
  rtforge dvh --dose rtdose.dcm --struct rtss.dcm
  rtforge dvh --dose rtdose.dcm --struct rtss.dcm --end-cap full --slab-mm 3
  rtforge dvh --dose rtdose.dcm --struct rtss.dcm --roi PTV --roi Rectum \\
      --out dvh.dcm --csv dvh.csv --plot dvh.png
"""
_DOSE_EXAMPLE = """examples:
  rtforge dose info rtdose.dcm
  rtforge dose sum beam1.dcm beam2.dcm -o plan.dcm --grid finest
  rtforge dose requantize rtdose.dcm -o rtdose16.dcm --bits 16
"""
#: D values in the metrics table, percent of the volume.
D_PERCENTS = (98, 95, 50, 2)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``dvh`` command and the ``dose`` subcommand group."""
    d = sub.add_parser("dvh", help="dose-volume histograms of RT Structure Set ROIs",
                       epilog=_DVH_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("--dose", type=Path, required=True, metavar="RTDOSE", help="RT Dose file")
    d.add_argument("--struct", type=Path, required=True, metavar="RTSTRUCT",
                   help="RT Structure Set file")
    d.add_argument("--roi", action="append", metavar="NAME",
                   help="ROI name (repeat; default every ROI with closed contours)")
    d.add_argument("--out", type=output_file("--out", (".dcm", "")), metavar="FILE.dcm",
                   help="write a DVH-only RT Dose")
    d.add_argument("--differential", action="store_true",
                   help="differential DVH in --out and --csv (default cumulative)")
    d.add_argument("--csv", type=output_file("--csv", (".csv",)), metavar="FILE.csv",
                   help="write the curves as CSV (rows: see below)")
    d.add_argument("--plot", type=output_file("--plot", (".png", ".pdf", ".svg")),
                   metavar="FILE.png", help="plot the cumulative DVHs (.png, .pdf or .svg)")
    d.add_argument("--plot-max", type=float, metavar="GY",
                   help="with --plot: the dose axis's upper end (default: see below)")
    d.add_argument("--bin-width", type=float, metavar="GY",
                   help=f"dose bin width, and every bin a CSV row (default {DEFAULT_BIN_WIDTH_GY} "
                        "Gy, CSV rows as below)")
    d.add_argument("--end-cap", choices=[c.value for c in EndCap], default=EndCap.HALF.value,
                   help="slab of each ROI's first and last planes: half (default, as planning "
                        "systems compute volumes), full or none")
    slab = d.add_mutually_exclusive_group()
    slab.add_argument("--slab-mm", type=float, metavar="MM",
                      help="slab thickness (default the structure set's contour spacing; "
                           "needed, or --images, when every ROI lies on one plane)")
    slab.add_argument("--images", type=Path, metavar="DIR",
                      help="the image series the structure set references: its slice spacing "
                           "is the slab thickness")
    d.add_argument("--config", type=Path, help="configuration file (default $RTFORGE_CONFIG)")
    add_output_flags(d)
    d.set_defaults(func=_dvh)

    p = sub.add_parser("dose", help="inspect, sum or requantize RT Dose grids",
                       epilog=_DOSE_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    group.required = True
    i = group.add_parser("info", help="grid, scaling, type and references of an RT Dose",
                         epilog="example:\n  rtforge dose info rtdose.dcm\n  rtforge dose info "
                                "--json rtdose.dcm | jq .max_gy",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    i.add_argument("src", type=Path, metavar="RTDOSE")
    add_output_flags(i)
    i.set_defaults(func=_info)
    s = group.add_parser("sum", help="sum dose grids (BEAM to PLAN, plans to MULTI_PLAN)",
                         epilog="examples:\n  rtforge dose sum beam1.dcm beam2.dcm -o plan.dcm\n"
                                "  rtforge dose sum a.dcm b.dcm -o sum.dcm --grid finest "
                                "--weights 1,0.5\n\nDoses on different grids are resampled "
                                "(trilinear) onto the output grid.",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("src", type=Path, nargs="+", metavar="RTDOSE")
    s.add_argument("-o", "--out", type=Path, required=True, metavar="OUT.dcm")
    s.add_argument("--grid", choices=[c.value for c in GridChoice], default=GridChoice.FIRST.value,
                   help="output grid: the first dose's (A, default) or the finest covering all")
    s.add_argument("--weights", type=lambda t: [float(v) for v in t.split(",")],
                   metavar="W1,W2,...", help="one factor per dose (e.g. fraction-count ratios)")
    s.add_argument("--bits", type=int, choices=(16, 32), default=32)
    s.add_argument("--config", type=Path, help="configuration file (default $RTFORGE_CONFIG)")
    add_output_flags(s)
    s.set_defaults(func=_sum)
    r = group.add_parser("requantize", help="rewrite an RT Dose with 16- or 32-bit pixels",
                         epilog="example:\n  rtforge dose requantize rtdose.dcm -o rtdose16.dcm "
                                "--bits 16\n\nThe Dose Grid Scaling is chosen to keep the most "
                                "precision; the report gives the largest change in Gy.",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("src", type=Path, metavar="IN")
    r.add_argument("-o", "--out", type=Path, required=True, metavar="OUT")
    r.add_argument("--bits", type=int, choices=(16, 32), required=True)
    r.add_argument("--config", type=Path, help="configuration file (default $RTFORGE_CONFIG)")
    add_output_flags(r)
    r.set_defaults(func=_requantize)


# ------------------------------------------------------------------ dvh
def _metrics(dvh: DVH) -> dict[str, Any]:
    row: dict[str, Any] = {"roi_number": dvh.roi_number, "roi_name": dvh.name,
                           "volume_cm3": dvh.volume_cm3,
                           "volume_outside_cm3": dvh.volume_outside_cm3,
                           "min_gy": dvh.min_gy, "mean_gy": dvh.mean_gy, "max_gy": dvh.max_gy}
    for percent in D_PERCENTS:
        row[f"D{percent}_gy"] = dvh.dose_at_volume(percent) if dvh.volume_cm3 > 0 else None
    return row


def _table(rows: list[dict[str, Any]]) -> str:
    heads = ["ROI", "volume cm3", "outside cm3", "min Gy", "mean Gy", "max Gy"] + \
        [f"D{p} Gy" for p in D_PERCENTS]
    keys = ["volume_cm3", "volume_outside_cm3", "min_gy", "mean_gy", "max_gy"] + \
        [f"D{p}_gy" for p in D_PERCENTS]
    lines = ["  ".join(f"{h:>11}" if n else f"{h:<16}" for n, h in enumerate(heads))]
    for row in rows:
        cells = [f"{row['roi_name'][:16]:<16}"]
        cells += ["{:>11}".format("-" if row[k] is None else f"{row[k]:.3f}") for k in keys]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def _dvh(args: argparse.Namespace) -> int:
    check_output_files({"--out": args.out, "--csv": args.csv, "--plot": args.plot})
    if args.plot_max is not None and not (math.isfinite(args.plot_max) and args.plot_max > 0):
        raise InvalidInputError(f"--plot-max must be a positive number of Gy, got "
                                f"{args.plot_max:g}")
    bar = progress_bar(args, None, "DVH", "ROI")
    try:
        run = dvh_of_files(args.dose, args.struct, rois=args.roi, slab_mm=args.slab_mm,
                           images=args.images, end_cap=args.end_cap,
                           bin_width_gy=DEFAULT_BIN_WIDTH_GY if args.bin_width is None
                           else args.bin_width,
                           progress=lambda done, total: bar.set(done, total))
    finally:
        bar.close()
    rows = [_metrics(d) for d in run.dvhs]
    report: dict[str, Any] = {"dose": str(args.dose), "struct": str(args.struct),
                              "end_cap": run.end_cap.value, "slab_mm": run.slab_mm,
                              "slab_source": run.slab_source, "rois": rows}
    if args.out:
        written = write_dvh_dose(run, args.out, differential=args.differential,
                                 config=load_config(args.config).export)
        report["out"] = str(written.path)
        report["dvh_data_max_error_cm3"] = written.max_error
    if args.csv:
        report["csv_rows"] = write_dvh_csv(args.csv, run.dvhs, differential=args.differential,
                                           every_bin=args.bin_width is not None)
        report["csv"] = str(args.csv)
    if args.plot:
        write_dvh_plot(args.plot, run, dose_name=args.dose.name,
                       structure_set_name=args.struct.name, dose_limit_gy=args.plot_max)
        report["plot"] = str(args.plot)
    if args.json:
        emit_json(report)
    else:
        print(_table(rows))
        print(f"slabs of {run.slab_mm:g} mm ({run.slab_source}), {run.end_cap.value} end caps")
        if "out" in report:
            print(f"wrote {report['out']} (DVH Data error at most "
                  f"{report['dvh_data_max_error_cm3']:.2g} cm3)")
    return 0


# ------------------------------------------------------------------ dose
def _info(args: argparse.Namespace) -> int:
    dose = read_rtdose(args.src)
    info: dict[str, Any] = {
        "file": str(args.src), "dose_units": dose.dose_units, "dose_type": dose.dose_type,
        "summation_type": dose.summation_type,
        "plans": [{"sop_instance_uid": p.sop_instance_uid,
                   "fraction_group": p.fraction_group_number,
                   "beams": list(p.beam_numbers)} for p in dose.plans],
        "bits": dose.bits, "dose_grid_scaling": dose.scaling,
        "dvhs": len(dose.dvhs), "point_doses": len(dose.point_doses),
    }
    offsets = [float(v) + 0.0 for v in dose.dataset.get("GridFrameOffsetVector") or []]
    if dose.volume is not None:
        grid = dose.volume.grid
        info.update({"shape_kji": list(grid.shape), "origin_mm": grid.origin.tolist(),
                     "spacing_ijk_mm": grid.spacing.tolist(),
                     "frame_direction": [round(float(v), 6) + 0.0 for v in grid.direction[:, 2]],
                     "grid_frame_offsets_mm": [offsets[0], offsets[-1]] if offsets else None,
                     "max_gy": float(dose.volume.array.max())})
    if args.json:
        emit_json(info)
        return 0
    print(f"RT Dose {args.src}: {dose.dose_type} dose in {dose.dose_units}, summation "
          f"{dose.summation_type}")
    for plan in info["plans"]:
        group = plan["fraction_group"]
        print(f"  plan {plan['sop_instance_uid']}"
              + (f" (fraction group {group}" + (f", beams {', '.join(map(str, plan['beams']))}"
                                                if plan["beams"] else "") + ")"
                 if group is not None else ""))
    if dose.volume is not None:
        nk, nj, ni = info["shape_kji"]
        si, sj, sk = info["spacing_ijk_mm"]
        axis = _axis_name(info["frame_direction"])
        step = (offsets[1] - offsets[0]) if len(offsets) > 1 else 0.0
        print(f"  grid {ni} x {nj} x {nk} (columns x rows x frames), pixel {si:g} x {sj:g} mm, "
              f"frames {sk:g} mm apart along {axis}"
              + (f" (Grid Frame Offset Vector {offsets[0]:g} to {offsets[-1]:g} mm, step "
                 f"{step:g})" if offsets else ""))
        print("  origin " + ", ".join(f"{v:.2f}" for v in info["origin_mm"]) + " mm (LPS)")
        scaling = "-" if dose.scaling is None else f"{dose.scaling:.6g}"
        print(f"  pixels {dose.bits or '-'}-bit, Dose Grid Scaling {scaling}, maximum "
              f"{info['max_gy']:.4g} {dose.dose_units}")
    else:
        print("  no dose grid (no Pixel Data)")
    print(f"  {len(dose.dvhs)} DVHs, {len(dose.point_doses)} point doses")
    return 0


def _axis_name(direction: list[float]) -> str:
    """``+z`` for a patient axis (LPS), else the unit vector."""
    for n, name in enumerate("xyz"):
        if abs(abs(direction[n]) - 1.0) < 1e-6:
            return f"{'+' if direction[n] > 0 else '-'}{name}"
    return "(" + ", ".join(f"{v:.4g}" for v in direction) + ")"


def _sum(args: argparse.Namespace) -> int:
    result = sum_dose_files(args.src, args.out, weights=args.weights, grid=args.grid,
                            bits=args.bits, config=load_config(args.config).export)
    report = {"out": str(result.path), "summation_type": result.summation_type.value,
              "shape_kji": list(result.shape_kji), "max_gy": result.max_gy,
              "quantization_error_gy": result.max_error}
    if args.json:
        emit_json(report)
    else:
        print(f"wrote {result.path}: {result.summation_type.value} dose, max "
              f"{result.max_gy:.4f} Gy, quantisation error at most {result.max_error:.3g} Gy")
    return 0


def _requantize(args: argparse.Namespace) -> int:
    written, scaling, max_gy = requantize_dose_file(args.src, args.out, bits=args.bits,
                                                    config=load_config(args.config).export)
    report = {"out": str(written.path), "bits": args.bits, "dose_grid_scaling": scaling,
              "quantization_error_gy": written.max_error, "max_gy": max_gy}
    if args.json:
        emit_json(report)
    else:
        print(f"wrote {written.path}: {args.bits}-bit, Dose Grid Scaling {scaling}, "
              f"quantisation error at most {written.max_error:.3g} Gy")
    return 0
