"""DVHs of an RT Structure Set on an RT Dose, and dose grids summed or requantised, from files.

The rules every caller needs live here, not in the command line:

- a dose and a structure set must share their Frame of Reference;
- the ROIs are those named (each must exist) or every ROI with closed
  planar contours;
- the slab thickness is ``slab_mm``, or the slice spacing of the image series
  the structure set references (``images``), or the structure set's contour
  spacing (:func:`rtforge.core.dvh.contour_spacing`); a set whose contours all
  lie on one plane needs one of the first two;
- a sum of doses of one plan is a PLAN dose, of several a MULTI_PLAN dose;
- a requantised dose keeps its Dose Summation Type (one rtforge writes).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtforge.config import ExportConfig
from rtforge.core.contours import EndCap, Structure
from rtforge.core.dosegrid import GridChoice, sum_doses
from rtforge.core.dvh import DEFAULT_BIN_WIDTH_GY, DVH, compute_dvhs, contour_spacing, table_edges
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

__all__ = ["DoseSum", "DoseWrite", "DvhRun", "dvh_of_files", "grid_dose", "requantize_dose_file",
           "sum_dose_files", "write_dvh_csv", "write_dvh_dose", "write_dvh_plot"]

PathLike = str | os.PathLike[str]


def grid_dose(path: PathLike) -> RTDose:
    """An RT Dose file that holds a dose grid.

    Raises
    ------
    InvalidInputError
        If the file cannot be read as an RT Dose or holds no Pixel Data.
    """
    dose = read_rtdose(path)
    if dose.volume is None:
        raise InvalidInputError(f"{path} holds no dose grid (no Pixel Data)", path=path)
    return dose


@dataclass(frozen=True)
class DvhRun:
    """DVHs computed from an RT Dose file and an RT Structure Set file.

    Parameters
    ----------
    dvhs : list of DVH
        One per chosen ROI, in the order chosen.
    structures : list of Structure
        The chosen ROIs.
    dose : RTDose
    structure_set : StructureSet
    slab_mm : float
        The slab thickness used.
    slab_source : str
        Where it came from: ``--slab-mm``, the images' slice spacing, or the
        structure set's contour spacing.
    end_cap : EndCap
    """

    dvhs: list[DVH]
    structures: list[Structure]
    dose: RTDose
    structure_set: StructureSet
    slab_mm: float
    slab_source: str
    end_cap: EndCap


def _slab(slab_mm: float | None, images: PathLike | None, ss: StructureSet,
          struct_path: PathLike) -> tuple[float, str]:
    if slab_mm is not None:
        if not (math.isfinite(slab_mm) and slab_mm > 0):
            raise InvalidInputError(f"--slab-mm must be a positive number of mm, got "
                                    f"{slab_mm:g}")
        return float(slab_mm), "--slab-mm"
    if images is not None:
        return _image_spacing(Path(images), ss), f"slice spacing of {images}"
    spacing = contour_spacing(ss.structures)
    if spacing is None:
        raise InvalidInputError(f"{struct_path}: every contour lies on one plane, so the "
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


def dvh_of_files(dose_path: PathLike, struct_path: PathLike, *,
                 rois: Sequence[str] | None = None, slab_mm: float | None = None,
                 images: PathLike | None = None, end_cap: EndCap | str = EndCap.HALF,
                 bin_width_gy: float = DEFAULT_BIN_WIDTH_GY,
                 progress: Callable[[int, int], None] | None = None) -> DvhRun:
    """DVHs of the ROIs of an RT Structure Set file on an RT Dose file (module rules).

    Parameters
    ----------
    dose_path, struct_path : path-like
    rois : sequence of str, optional
        ROI names; default every ROI with closed planar contours.
    slab_mm : float, optional
        Slab thickness; otherwise ``images``' slice spacing or the set's contour spacing.
    images : path-like, optional
        The image series the structure set references.
    end_cap : EndCap or str
    bin_width_gy : float
    progress : callable, optional
        ``progress(done, total)`` in ROIs.

    Returns
    -------
    DvhRun

    Raises
    ------
    InvalidInputError
        For a file that cannot be read, Frames of Reference that differ, an ROI
        name the set lacks, no ROI with closed contours, or no slab thickness.
    """
    dose = grid_dose(dose_path)
    ss = read_rtstruct(struct_path)
    if dose.frame_of_reference_uid and ss.frame_of_reference_uid \
            and dose.frame_of_reference_uid != ss.frame_of_reference_uid:
        raise InvalidInputError(f"the dose's Frame of Reference {dose.frame_of_reference_uid} "
                                f"differs from the structure set's {ss.frame_of_reference_uid}")
    if rois:
        by_name = {s.name: s for s in ss.structures}
        missing = [n for n in rois if n not in by_name]
        if missing:
            raise InvalidInputError(f"ROI(s) {', '.join(missing)} not in {struct_path} "
                                    f"(it has {', '.join(sorted(by_name))})")
        chosen = [by_name[n] for n in rois]
    else:
        chosen = [s for s in ss.structures if any(c.is_closed for c in s.contours)]
    if not chosen:
        raise InvalidInputError(f"{struct_path} has no ROI with closed planar contours")
    slab, source = _slab(slab_mm, images, ss, struct_path)
    cap = EndCap(end_cap)
    dvhs = compute_dvhs(dose.volume, chosen, bin_width_gy=bin_width_gy,  # type: ignore[arg-type]
                        end_cap=cap, contour_spacing_mm=slab, progress=progress)
    return DvhRun(dvhs, chosen, dose, ss, slab, source, cap)


@dataclass(frozen=True)
class DoseWrite:
    """An RT Dose written: where, its Dose Summation Type, and the quantisation error."""

    path: Path
    summation_type: DoseSummationType
    max_error: float


def write_dvh_dose(run: DvhRun, out: PathLike, *, differential: bool = False,
                   config: ExportConfig | None = None) -> DoseWrite:
    """A DVH-only RT Dose of ``run``'s DVHs, referencing its structure set and plans.

    Its Dose Summation Type is the dose's (PLAN when that is not one rtforge
    writes); ``max_error`` is the DVH Data error in cm3.
    """
    try:
        summation = DoseSummationType(run.dose.summation_type)
    except ValueError:
        summation = DoseSummationType.PLAN
    build = build_dvh_dose(run.dvhs, structure_set=run.structure_set.dataset,
                           summation_type=summation,
                           frame_of_reference_uid=run.dose.frame_of_reference_uid
                           or run.structure_set.frame_of_reference_uid,
                           plans=run.dose.plans, differential=differential, config=config)
    return DoseWrite(write_rtdose(build.dataset, out), summation, build.max_error)


def write_dvh_csv(path: PathLike, dvhs: Sequence[DVH], *, differential: bool = False,
                  every_bin: bool = False) -> int:
    """Write the curves at every bin edge or at :func:`~rtforge.core.dvh.table_edges`.

    Numbers are written as ``repr`` writes them: the shortest text that reads
    back to the same float.  A differential row holds the volume between its
    dose and the next row's.

    Returns
    -------
    int
        The number of rows.
    """
    kept = np.arange(dvhs[0].edges.shape[0]) if every_bin else table_edges(list(dvhs))
    if differential:
        kept = kept[:-1]
        columns = [np.add.reduceat(d.differential, kept) if kept.size else kept for d in dvhs]
    else:
        columns = [d.cumulative[kept] for d in dvhs]
    doses = dvhs[0].edges[kept]
    with Path(path).open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["dose_gy"] + [f"{d.name} ({'cm3 per bin' if differential else 'cm3'})"
                                    for d in dvhs])
        for row in range(kept.shape[0]):
            out.writerow([repr(float(doses[row]))] + [repr(float(c[row])) for c in columns])
    return int(kept.shape[0])


def write_dvh_plot(path: PathLike, run: DvhRun, *, dose_name: str, structure_set_name: str,
                   dose_limit_gy: float | None = None) -> None:
    """Plot ``run``'s cumulative DVHs in each ROI's Display Color, titled with the names.

    ``dose_name`` and ``structure_set_name`` are used when the dose has no
    Series Description and the set no label.
    """
    from rtforge.core.pictures import plot_dvhs

    dose_title = str(run.dose.dataset.get("SeriesDescription") or "") or dose_name
    ss = run.structure_set
    ss_title = ss.label or str(ss.dataset.get("SeriesDescription") or "") or structure_set_name
    plot_dvhs(path, run.dvhs, [s.colour for s in run.structures], dose_name=dose_title,
              structure_set_name=ss_title, dose_limit_gy=dose_limit_gy)


def _sum_references(doses: Sequence[RTDose]) -> tuple[DoseSummationType, list[PlanReference]]:
    plans: dict[str, PlanReference] = {}
    for d in doses:
        for p in d.plans:
            plans.setdefault(p.sop_instance_uid, PlanReference(p.sop_instance_uid,
                                                               sop_class_uid=p.sop_class_uid))
    kind = DoseSummationType.PLAN if len(plans) == 1 else DoseSummationType.MULTI_PLAN
    return kind, list(plans.values())


@dataclass(frozen=True)
class DoseSum:
    """What :func:`sum_dose_files` wrote."""

    path: Path
    summation_type: DoseSummationType
    shape_kji: tuple[int, int, int]
    max_gy: float
    max_error: float


def sum_dose_files(sources: Sequence[PathLike], out: PathLike, *,
                   weights: Sequence[float] | None = None,
                   grid: GridChoice | str = GridChoice.FIRST, bits: int = 32,
                   config: ExportConfig | None = None) -> DoseSum:
    """Sum RT Dose files (resampled where their grids differ) into one RT Dose.

    The sum of the doses of one plan is a PLAN dose, of several plans a
    MULTI_PLAN dose, referencing every plan once.

    Raises
    ------
    InvalidInputError
        For a file without a dose grid, or a weight count that differs.
    """
    doses = [grid_dose(p) for p in sources]
    if weights is not None and len(weights) != len(doses):
        raise InvalidInputError(f"{len(weights)} weights for {len(doses)} doses")
    total = sum_doses([d.volume for d in doses if d.volume is not None], weights, grid=grid)
    kind, plans = _sum_references(doses)
    build = build_dose_grid(total, summation_type=kind, plans=plans, bits=bits,
                            reference=doses[0].dataset, config=config)
    path = write_rtdose(build.dataset, out)
    return DoseSum(path, kind, tuple(total.grid.shape), float(total.array.max()),  # type: ignore[arg-type]
                   build.max_error)


def requantize_dose_file(source: PathLike, out: PathLike, *, bits: int,
                         config: ExportConfig | None = None) -> tuple[DoseWrite, str, float]:
    """Rewrite an RT Dose with 16- or 32-bit pixels and the Dose Grid Scaling that keeps
    the most precision; (what was written, the Dose Grid Scaling text, the maximum in Gy).

    Raises
    ------
    InvalidInputError
        For a file without a dose grid or a Dose Summation Type rtforge does not write.
    """
    dose = grid_dose(source)
    try:
        kind = DoseSummationType(dose.summation_type)
    except ValueError:
        raise InvalidInputError(f"{source}: Dose Summation Type {dose.summation_type!r} is "
                                "not one rtforge writes", path=source) from None
    build = build_dose_grid(dose.volume, summation_type=kind, plans=dose.plans,  # type: ignore[arg-type]
                            dose_type=dose.dose_type, bits=bits, reference=dose.dataset,
                            config=config)
    path = write_rtdose(build.dataset, out)
    return (DoseWrite(path, kind, build.max_error), str(build.dataset.DoseGridScaling),
            float(np.max(dose.volume.array)))  # type: ignore[union-attr]
