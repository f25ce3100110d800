"""``rtforge contours reduce`` and ``rtforge contours stats``: RT Structure Set contours."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import numpy as np

from rtforge.cli._common import add_output_flags, emit_json
from rtforge.config import load_config
from rtforge.core.contours import EndCap, contour_frames, structure_volume
from rtforge.errors import InvalidInputError
from rtforge.io.rtstruct import ContourBudget, ContourReductionRow, read_rtstruct, write_rtstruct
from rtforge.io.rtstruct_rewrite import reduce_rtstruct

__all__ = ["register"]

_EXAMPLE = """examples:
  rtforge contours reduce rtss.dcm out --max-points 500 --png out/check
  rtforge contours reduce rtss.dcm out --tolerance 0.2 --method rdp --json
  rtforge contours stats out/RTSS.dcm --json
"""
_REDUCE_EXAMPLE = """Every contour is also kept within 65534 bytes of Contour Data (the Explicit VR
limit); the reduced ones are written to 0.001 mm, the others copied as they
are.  The new structure set carries over every attribute of the original (ROI
codes and descriptions, Observation Numbers, series, equipment, ...) but for
the reduced contours, a new SOP Instance UID, creation and structure set
dates, the description and a Contributing Equipment item naming rtforge; it
is UNAPPROVED.

example:
  rtforge contours reduce rtss.dcm out --max-points 500 --png out/check
"""
_STATS_EXAMPLE = """example:
  rtforge contours stats rtss.dcm --json
"""
#: Contours drawn by --png, worst first.
PNG_COUNT = 8


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``contours`` subcommand group."""
    p = sub.add_parser("contours", help="reduce or summarise the contours of an RT Structure Set",
                       epilog=_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    group.required = True

    r = group.add_parser("reduce", help="write a copy with contour points reduced (iPlan Note 8-3)",
                         epilog=_REDUCE_EXAMPLE,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("src", type=Path, metavar="IN_RTSTRUCT", help="RT Structure Set file")
    r.add_argument("out", type=Path, metavar="OUT_DIR", help="output root")
    r.add_argument("--max-points", type=int, metavar="N", help="most points per contour")
    r.add_argument("--tolerance", type=float, metavar="MM",
                   help="drop points while they stay within MM of the reduced contour")
    r.add_argument("--method", choices=("vw", "rdp"), default="vw",
                   help="Visvalingam-Whyatt (default) or Douglas-Peucker")
    r.add_argument("--png", type=Path, metavar="DIR",
                   help=f"draw the {PNG_COUNT} worst reduced contours over their originals")
    r.add_argument("--ts", choices=("explicit", "implicit", "big"), default="explicit",
                   help="output transfer syntax (default explicit VR little endian)")
    r.add_argument("--config", type=Path, help="configuration file (default $RTFORGE_CONFIG)")
    add_output_flags(r)
    r.set_defaults(func=_reduce)

    s = group.add_parser("stats", help="per ROI: contours, points, volume, largest Contour Data",
                         epilog=_STATS_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("src", type=Path, metavar="RTSTRUCT", help="RT Structure Set file")
    add_output_flags(s)
    s.set_defaults(func=_stats)


# ------------------------------------------------------------------ reduce
def _row_dict(row: ContourReductionRow) -> dict[str, object]:
    return {"roi_number": row.roi_number, "roi_name": row.roi_name,
            "contour_number": row.contour_number, "points_before": row.points_before,
            "points_after": row.points_after, "hausdorff_mm": round(row.hausdorff_mm, 4),
            "area_change_percent": round(row.area_change_percent, 4),
            "status": row.status.label}


def _reduce(args: argparse.Namespace) -> int:
    if args.max_points is not None and args.max_points < 3:
        raise InvalidInputError(f"--max-points must be at least 3, got {args.max_points}")
    budget = ContourBudget(max_points=args.max_points, tolerance_mm=args.tolerance,
                           method=args.method)
    config = load_config(args.config)
    source = read_rtstruct(args.src)
    parts = [f"method {budget.method.value}"]
    if budget.max_points is not None:
        parts.append(f"at most {budget.max_points} points")
    if budget.tolerance_mm is not None:
        parts.append(f"tolerance {budget.tolerance_mm:g} mm")
    note = f"contours reduced by rtforge ({', '.join(parts)})"
    description = f"{source.description}; {note}" if source.description else note
    built = reduce_rtstruct(source.dataset, budget, description=description[:1024],
                            config=config.export)
    path = write_rtstruct(built.dataset, args.out, args.ts)
    reduced = built.reduced
    pictures = _draw(reduced, args.png) if args.png is not None else []
    worst = max(reduced, key=lambda r: r.hausdorff_mm, default=None)
    if args.json:
        emit_json({
            "input": str(args.src), "output": str(path),
            "sop_instance_uid": str(built.dataset.SOPInstanceUID),
            "contours": len(built.contours), "reduced": len(reduced),
            "worst_hausdorff_mm": None if worst is None else round(worst.hausdorff_mm, 4),
            "reduced_contours": [_row_dict(r) for r in reduced],
            "png": [str(p) for p in pictures],
            "previous_approval": source.approval_status or None,
        })
        return 0
    if source.approval_status == "APPROVED":
        print("note: the input was APPROVED; the reduced copy is UNAPPROVED until reviewed")
    if reduced:
        print(f"{'ROI':>4}  {'name':<20} {'contour':>7} {'points':>15} {'Hausdorff mm':>12} "
              f"{'area %':>8}  status")
        for r in sorted(reduced, key=lambda r: (r.roi_number, r.contour_number)):
            print(f"{r.roi_number:>4}  {r.roi_name[:20]:<20} {r.contour_number:>7} "
                  f"{r.points_before:>7} -> {r.points_after:<5} {r.hausdorff_mm:>12.3f} "
                  f"{r.area_change_percent:>+8.3f}  {r.status.label}")
    worst_text = (f"; worst Hausdorff {worst.hausdorff_mm:.3f} mm (ROI {worst.roi_number} "
                   f"{worst.roi_name!r} contour {worst.contour_number})" if worst else "")
    print(f"{len(reduced)} of {len(built.contours)} closed contours reduced{worst_text}")
    if reduced:
        print("verify the reduced contours against the originals (iPlan Note 8-3)"
              + (f": drawings in {args.png}" if pictures else ""))
    print(f"written {path}")
    return 0


def _draw(rows: list[ContourReductionRow], folder: Path) -> list[Path]:
    """PNGs of the worst reduced contours: the original under the reduced one."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for row in sorted(rows, key=lambda r: -r.hausdorff_mm)[:PNG_COUNT]:
        points = np.ascontiguousarray(row.original, dtype=np.float64)
        _, frames, _ = contour_frames(points, np.array([0, points.shape[0]], dtype=np.intp))
        u, v = frames[0]
        fig = Figure(figsize=(6, 6), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        styles: tuple[tuple[np.ndarray, dict[str, Any]], ...] = (
            (row.original, {"color": "0.6", "lw": 2.5,
                            "label": f"original ({row.points_before} points)"}),
            (row.written, {"color": "tab:red", "lw": 0.9, "marker": ".", "ms": 3,
                           "label": f"reduced ({row.points_after} points)"}))
        for pts, style in styles:
            ring = np.vstack([pts, pts[:1]])
            ax.plot(ring @ u, ring @ v, **style)
        ax.set_aspect("equal")
        ax.set_xlabel("u (mm)")
        ax.set_ylabel("v (mm)")
        ax.set_title(f"ROI {row.roi_number} {row.roi_name} contour {row.contour_number}\n"
                     f"Hausdorff {row.hausdorff_mm:.3f} mm, area {row.area_change_percent:+.3f} %",
                     fontsize=10)
        ax.legend(loc="best", fontsize=8)
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", row.roi_name) or "roi"
        path = folder / f"roi{row.roi_number}_{name}_contour{row.contour_number}.png"
        fig.savefig(path)
        out.append(path)
    return out


# ------------------------------------------------------------------ stats
def _stats(args: argparse.Namespace) -> int:
    from rtforge.core.dvh import contour_spacing

    structure_set = read_rtstruct(args.src)
    # As the DVH computes volumes: slabs of the set's contour spacing, half end slabs.
    slab = contour_spacing(structure_set.structures)
    rows = []
    for s, lengths in zip(structure_set.structures, structure_set.contour_data_bytes, strict=True):
        closed = [c.points for c in s.contours if c.is_closed]
        rows.append({
            "roi_number": s.number, "roi_name": s.name,
            "interpreted_type": None if s.interpreted_type is None
            else str(getattr(s.interpreted_type, "value", s.interpreted_type)),
            "contours": len(s.contours), "points": s.n_points,
            "volume_cm3": structure_volume(closed, slab, end_cap=EndCap.HALF) if closed else None,
            "roi_volume_cm3": s.volume_cm3,
            "largest_contour_data_bytes": max(lengths, default=0),
        })
    if args.json:
        emit_json({"file": str(args.src), "label": structure_set.label,
                   "sop_instance_uid": structure_set.sop_instance_uid, "slab_mm": slab,
                   "end_cap": EndCap.HALF.value, "rois": rows})
        return 0
    print(f"{args.src}: {structure_set.label!r}, {len(rows)} ROIs; volumes with slabs of "
          f"{'-' if slab is None else f'{slab:g}'} mm (the set's contour spacing), half end "
          "slabs, as dvh and planning systems")
    print(f"{'ROI':>4}  {'name':<20} {'type':<12} {'contours':>8} {'points':>8} {'cm3':>10} "
          f"{'max bytes':>9}")
    for r in rows:
        volume = "-" if r["volume_cm3"] is None else f"{r['volume_cm3']:.3f}"
        print(f"{r['roi_number']:>4}  {str(r['roi_name'])[:20]:<20} "
              f"{str(r['interpreted_type'] or '-')[:12]:<12} {r['contours']:>8} {r['points']:>8} "
              f"{volume:>10} {r['largest_contour_data_bytes']:>9}")
    return 0
