"""``rtforge dvh`` and ``rtforge dose info | sum | requantize``: RT Dose and DVHs."""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

from rtforge.cli._common import (
    add_output_flags,
    check_output_files,
    emit_json,
    output_file,
    progress_bar,
)
from rtforge.config import load_config
from rtforge.core.contours import Structure
from rtforge.core.dosegrid import GridChoice, sum_doses
from rtforge.core.dvh import (
    DEFAULT_BIN_WIDTH_GY,
    DVH,
    TABLE_FINE_ROWS,
    TABLE_GROWTH,
    TABLE_MAX_ROWS,
    EndCap,
    compute_dvhs,
    contour_spacing,
    table_edges,
)
from rtforge.core.pictures import DOSE_AXIS_D1_FACTOR, plot_dvhs
from rtforge.errors import InvalidInputError
from rtforge.io.rtdose import (
    DoseSummationType,
    PlanReference,
    RTDose,
    build_dose_grid,
    build_dvh_dose,
    read_rtdose,
    write_rtdose,
)
from rtforge.io.rtstruct import StructureSet, read_rtstruct
from rtforge.io.series import read_series

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


def _grid_dose(path: Path) -> RTDose:
    dose = read_rtdose(path)
    if dose.volume is None:
        raise InvalidInputError(f"{path} holds no dose grid (no Pixel Data)", path=path)
    return dose


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


def _write_csv(path: Path, dvhs: list[DVH], differential: bool, every_bin: bool) -> int:
    """Write the curves at every bin edge or at :func:`table_edges`; the number of rows.

    Numbers are written as ``repr`` writes them: the shortest text that reads
    back to the same float.  A differential row holds the volume between its
    dose and the next row's.
    """
    kept = np.arange(dvhs[0].edges.shape[0]) if every_bin else table_edges(dvhs)
    if differential:
        kept = kept[:-1]
        columns = [np.add.reduceat(d.differential, kept) if kept.size else kept for d in dvhs]
    else:
        columns = [d.cumulative[kept] for d in dvhs]
    doses = dvhs[0].edges[kept]
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["dose_gy"] + [f"{d.name} ({'cm3 per bin' if differential else 'cm3'})"
                                    for d in dvhs])
        for row in range(kept.shape[0]):
            out.writerow([repr(float(doses[row]))] + [repr(float(c[row])) for c in columns])
    return int(kept.shape[0])


def _plot(args: argparse.Namespace, dvhs: list[DVH], chosen: list[Structure], dose: RTDose,
          ss: StructureSet) -> None:
    """``--plot``: titled with the dose's Series Description and the Structure Set Label
    (or their file names)."""
    dose_name = str(dose.dataset.get("SeriesDescription") or "") or args.dose.name
    ss_name = ss.label or str(ss.dataset.get("SeriesDescription") or "") or args.struct.name
    plot_dvhs(args.plot, dvhs, [s.colour for s in chosen], dose_name=dose_name,
              structure_set_name=ss_name, dose_limit_gy=args.plot_max)


def _slab(args: argparse.Namespace, ss: StructureSet) -> tuple[float, str]:
    """The slab thickness (mm) and where it came from: --slab-mm, --images or the
    structure set's contour planes."""
    if args.slab_mm is not None:
        if not (math.isfinite(args.slab_mm) and args.slab_mm > 0):
            raise InvalidInputError(f"--slab-mm must be a positive number of mm, got "
                                    f"{args.slab_mm:g}")
        return float(args.slab_mm), "--slab-mm"
    if args.images is not None:
        return _image_spacing(args.images, ss), f"slice spacing of {args.images}"
    spacing = contour_spacing(ss.structures)
    if spacing is None:
        raise InvalidInputError(f"{args.struct}: every contour lies on one plane, so the "
                                "structure set gives no slab thickness: give --slab-mm (e.g. the "
                                "CT slice spacing) or --images (the CT series)")
    return spacing, "structure set contour spacing"


def _image_spacing(folder: Path, ss: StructureSet) -> float:
    """Slice spacing (mm) of the image series the structure set references in ``folder``."""
    series = read_series(folder, strict=False)
    referenced = {s.series_uid for f in ss.references for study in f.studies
                  for s in study.series}
    frame = str(series.headers[0].get("FrameOfReferenceUID", ""))
    if series.series_uid not in referenced and frame != ss.frame_of_reference_uid:
        raise InvalidInputError(f"the series in {folder} ({series.series_uid}) is neither "
                                "referenced by the structure set nor in its Frame of Reference",
                                path=folder)
    if series.gaps.size:
        return float(np.median(series.gaps))
    header = series.headers[0]
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = header.get(keyword)
        if value not in (None, "") and float(value) > 0:
            return float(value)
    raise InvalidInputError(f"{folder} holds one slice without Spacing Between Slices or "
                            "Slice Thickness: give --slab-mm", path=folder)


def _dvh(args: argparse.Namespace) -> int:
    check_output_files({"--out": args.out, "--csv": args.csv, "--plot": args.plot})
    if args.plot_max is not None and not (math.isfinite(args.plot_max) and args.plot_max > 0):
        raise InvalidInputError(f"--plot-max must be a positive number of Gy, got "
                                f"{args.plot_max:g}")
    dose = _grid_dose(args.dose)
    ss = read_rtstruct(args.struct)
    if dose.frame_of_reference_uid and ss.frame_of_reference_uid \
            and dose.frame_of_reference_uid != ss.frame_of_reference_uid:
        raise InvalidInputError(f"the dose's Frame of Reference {dose.frame_of_reference_uid} "
                                f"differs from the structure set's {ss.frame_of_reference_uid}")
    if args.roi:
        by_name = {s.name: s for s in ss.structures}
        missing = [n for n in args.roi if n not in by_name]
        if missing:
            raise InvalidInputError(f"ROI(s) {', '.join(missing)} not in {args.struct} "
                                    f"(it has {', '.join(sorted(by_name))})")
        chosen = [by_name[n] for n in args.roi]
    else:
        chosen = [s for s in ss.structures if any(c.is_closed for c in s.contours)]
    if not chosen:
        raise InvalidInputError(f"{args.struct} has no ROI with closed planar contours")
    slab, source = _slab(args, ss)
    bar = progress_bar(args, len(chosen), "DVH", "ROI")
    bin_width = DEFAULT_BIN_WIDTH_GY if args.bin_width is None else args.bin_width
    dvhs = compute_dvhs(dose.volume, chosen, bin_width_gy=bin_width,  # type: ignore[arg-type]
                        end_cap=args.end_cap, contour_spacing_mm=slab,
                        progress=lambda done, total: bar.set(done, total))
    bar.close()
    rows = [_metrics(d) for d in dvhs]
    report: dict[str, Any] = {"dose": str(args.dose), "struct": str(args.struct),
                              "end_cap": args.end_cap, "slab_mm": slab, "slab_source": source,
                              "rois": rows}
    if args.out:
        try:
            summation = DoseSummationType(dose.summation_type)
        except ValueError:
            summation = DoseSummationType.PLAN
        build = build_dvh_dose(dvhs, structure_set=ss.dataset, summation_type=summation,
                               frame_of_reference_uid=dose.frame_of_reference_uid
                               or ss.frame_of_reference_uid,
                               plans=dose.plans, differential=args.differential,
                               config=load_config(args.config).export)
        report["out"] = str(write_rtdose(build.dataset, args.out))
        report["dvh_data_max_error_cm3"] = build.max_error
    if args.csv:
        report["csv_rows"] = _write_csv(args.csv, dvhs, args.differential,
                                        every_bin=args.bin_width is not None)
        report["csv"] = str(args.csv)
    if args.plot:
        _plot(args, dvhs, chosen, dose, ss)
        report["plot"] = str(args.plot)
    if args.json:
        emit_json(report)
    else:
        print(_table(rows))
        print(f"slabs of {slab:g} mm ({source}), {args.end_cap} end caps")
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


def _sum_references(doses: list[RTDose]) -> tuple[DoseSummationType, list[PlanReference]]:
    plans: dict[str, PlanReference] = {}
    for d in doses:
        for p in d.plans:
            plans.setdefault(p.sop_instance_uid, PlanReference(p.sop_instance_uid,
                                                               sop_class_uid=p.sop_class_uid))
    kind = DoseSummationType.PLAN if len(plans) == 1 else DoseSummationType.MULTI_PLAN
    return kind, list(plans.values())


def _sum(args: argparse.Namespace) -> int:
    doses = [_grid_dose(p) for p in args.src]
    if args.weights is not None and len(args.weights) != len(doses):
        raise InvalidInputError(f"{len(args.weights)} weights for {len(doses)} doses")
    total = sum_doses([d.volume for d in doses if d.volume is not None], args.weights,
                      grid=args.grid)
    kind, plans = _sum_references(doses)
    build = build_dose_grid(total, summation_type=kind, plans=plans, bits=args.bits,
                            reference=doses[0].dataset, config=load_config(args.config).export)
    path = write_rtdose(build.dataset, args.out)
    report = {"out": str(path), "summation_type": kind.value, "shape_kji": list(total.grid.shape),
              "max_gy": float(total.array.max()), "quantization_error_gy": build.max_error}
    if args.json:
        emit_json(report)
    else:
        print(f"wrote {path}: {kind.value} dose, max {report['max_gy']:.4f} Gy, "
              f"quantisation error at most {build.max_error:.3g} Gy")
    return 0


def _requantize(args: argparse.Namespace) -> int:
    dose = _grid_dose(args.src)
    try:
        kind = DoseSummationType(dose.summation_type)
    except ValueError:
        raise InvalidInputError(f"{args.src}: Dose Summation Type {dose.summation_type!r} is "
                                "not one rtforge writes", path=args.src) from None
    build = build_dose_grid(dose.volume, summation_type=kind, plans=dose.plans,  # type: ignore[arg-type]
                            dose_type=dose.dose_type, bits=args.bits, reference=dose.dataset,
                            config=load_config(args.config).export)
    path = write_rtdose(build.dataset, args.out)
    report = {"out": str(path), "bits": args.bits, "dose_grid_scaling":
              str(build.dataset.DoseGridScaling), "quantization_error_gy": build.max_error,
              "max_gy": float(np.max(dose.volume.array))}  # type: ignore[union-attr]
    if args.json:
        emit_json(report)
    else:
        print(f"wrote {path}: {args.bits}-bit, Dose Grid Scaling {report['dose_grid_scaling']}, "
              f"quantisation error at most {build.max_error:.3g} Gy")
    return 0
