"""The built-in phantom patient and the demo pipeline behind ``rtforge demo``.

The phantom (:mod:`rtforge.core.phantom`) is "acquired" twice, as a real
scanner would write it: once as an oblique ("localized") series and once
axially with a 15 degree gantry tilt.  Both share one study and one frame
of reference.  The demo then reconverts both to axial orientation and
contours the phantom's body, lungs, spine and a target on the first
resliced series, written as an RT Structure Set that references it, and
makes DRRs (RT Images, with PNG previews) of the beams of a phantom plan aimed
at the target (:data:`PHANTOM_BEAMS`).  Last, a synthetic plan dose (a box
field with an error-function penumbra around the target, :func:`phantom_dose`)
is written as an RT Dose referencing the plan, with the DVHs of the structures
and their plot.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rtforge.config import ExportConfig
from rtforge.core.beam import PatientPosition
from rtforge.core.contours import Contour, ROIGenerationAlgorithm, RTROIInterpretedType, Structure
from rtforge.core.dvh import DVH, compute_dvhs
from rtforge.core.geometry import Grid, SliceStack, Volume
from rtforge.core.masks import mask_to_contours
from rtforge.core.phantom import (
    HU_AIR,
    HU_LUNG,
    HU_SPINE,
    oblique_stack,
    phantom_hu,
    sample_phantom,
    tilted_stack,
)
from rtforge.core.pictures import plot_dvhs
from rtforge.errors import InvalidInputError
from rtforge.io.ct import write_ct_series
from rtforge.io.rtdose import PlanReference, build_dose_grid, read_rtdose, write_rtdose
from rtforge.io.rtimage import DrrRun, RTImageLabels, fit_to_body, plan_requests, write_drrs
from rtforge.io.rtplan import (
    FractionGroup,
    PatientSetup,
    ReferencedBeam,
    build_rtplan,
    read_rtplan,
    static_beam,
    write_rtplan,
)
from rtforge.io.rtstruct import build_rtstruct, write_rtstruct
from rtforge.io.series import read_series, reference_image_series
from rtforge.io.uids import new_uid
from rtforge.workflows.reconvert import ReconvertOptions, SeriesReport, reconvert_series

__all__ = ["PHANTOM_PATIENT", "TARGET_CENTRE", "TARGET_RADIUS", "PhantomSeries", "DemoResult",
           "make_phantom_patient", "phantom_structures", "run_demo", "PHANTOM_BEAMS",
           "PHANTOM_DOSE_GY", "phantom_dose"]

#: Patient and study attributes of the phantom patient.
PHANTOM_PATIENT = {
    "PatientName": "RTFORGE^PHANTOM",
    "PatientID": "RTF-PHANTOM-001",
    "PatientBirthDate": "19700101",
    "PatientSex": "O",
    "StudyID": "1",
    "StudyDescription": "rtforge phantom",
    "BodyPartExamined": "CHEST",
    "AccessionNumber": "",
    "ReferringPhysicianName": "",
    "PatientPosition": "HFS",
    "KVP": "120",
    "Manufacturer": "rtforge phantom scanner",
}

#: Centre (x, y, z in mm) and radius (mm) of the demo's spherical target, in the right lung.
TARGET_CENTRE = (-70.0, -10.0, 20.0)
TARGET_RADIUS = 20.0

#: Fractions of the phantom plan.
PHANTOM_FRACTIONS = 5

#: The synthetic plan dose (:func:`phantom_dose`): the box dose (Gy, all
#: fractions), the box's margin around the target (its half width is
#: TARGET_RADIUS + the margin) and the
#: penumbra's error-function length (mm), and the dose grid spacing (mm).
PHANTOM_DOSE_GY = 50.0
PHANTOM_DOSE_MARGIN_MM = 7.5
PHANTOM_PENUMBRA_MM = 4.0
PHANTOM_DOSE_SPACING_MM = 2.5

#: The phantom plan's static beams at :data:`TARGET_CENTRE` (HFS, SAD 1000):
#: (name, gantry, collimator, couch, jaws (x1, x2, y1, y2) mm at the isocentre).
PHANTOM_BEAMS = (
    ("AP", 0.0, 0.0, 0.0, (-30.0, 30.0, -30.0, 30.0)),
    ("RLAT", 270.0, 0.0, 0.0, (-30.0, 30.0, -30.0, 30.0)),
    ("RAO", 315.0, 30.0, 0.0, (-25.0, 35.0, -30.0, 30.0)),
    ("AP_T90", 0.0, 0.0, 90.0, (-30.0, 30.0, -30.0, 30.0)),
)


@dataclass(frozen=True)
class PhantomSeries:
    """One acquisition of the phantom written to disk."""

    name: str
    folder: Path
    stack: SliceStack
    series_uid: str
    tilt_degrees: float


@dataclass
class DemoResult:
    """What ``rtforge demo`` made."""

    sources: list[PhantomSeries] = field(default_factory=list)
    reports: list[SeriesReport] = field(default_factory=list)
    #: The RT Structure Set file, and the ROI Volume (cm3) written per ROI name.
    structure_set: Path | None = None
    structure_volumes: dict[str, float | None] = field(default_factory=dict)
    #: The phantom plan (:data:`PHANTOM_BEAMS`) and its DRRs (RT Images referencing it).
    plan: Path | None = None
    drrs: DrrRun | None = None
    #: The synthetic plan dose (RT Dose referencing the plan), the DVHs of the
    #: structures in it (in ROI order) and their plot.
    dose: Path | None = None
    dvhs: list[DVH] = field(default_factory=list)
    dvh_plot: Path | None = None


def make_phantom_patient(out_dir: str | Path, *, size: int = 256, nslices: int = 64,
                         config: ExportConfig | None = None) -> list[PhantomSeries]:
    """Write the phantom patient's two acquisitions as CT series.

    Parameters
    ----------
    out_dir : str or Path
        Series go to ``<out_dir>/<PatientID>/<Study>/<Series>/``.
    size : int
        Rows and columns of each slice (field of view 358 mm).
    nslices : int
        Slices per acquisition (2.5 mm apart).
    config : ExportConfig, optional

    Returns
    -------
    list of PhantomSeries
        The oblique acquisition, then the tilted one.
    """
    config = config or ExportConfig()
    spacing = 358.0 / size
    now = _dt.datetime.now()
    common = dict(PHANTOM_PATIENT)
    common.update({
        "StudyInstanceUID": str(new_uid(config.uid_root)),
        "FrameOfReferenceUID": str(new_uid(config.uid_root)),
        "StudyDate": now.strftime("%Y%m%d"),
        "StudyTime": now.strftime("%H%M%S"),
    })
    acquisitions = [
        ("oblique", oblique_stack(size=size, spacing=spacing, nslices=nslices), 0.0,
         "Phantom oblique 12/7 deg"),
        ("tilted", tilted_stack(size=size, spacing=spacing, nslices=nslices, tilt=15.0), 15.0,
         "Phantom gantry tilt 15 deg"),
    ]
    out: list[PhantomSeries] = []
    for number, (name, stack, tilt, description) in enumerate(acquisitions, start=1):
        attrs = dict(common)
        attrs.update({"SeriesNumber": number, "SeriesDescription": description})
        if tilt:
            attrs["GantryDetectorTilt"] = tilt
        report = write_ct_series(sample_phantom(stack), stack, Path(out_dir), derived=False,
                                 overrides=attrs, config=config)
        out.append(PhantomSeries(name=name, folder=report.paths[0].parent, stack=stack,
                                 series_uid=report.series_uid, tilt_degrees=tilt))
    return out


def phantom_structures(grid: Grid) -> list[Structure]:
    """The phantom's body, lungs, spine and target, contoured on the slices of ``grid``.

    Each structure is the set of voxel centres of ``grid`` inside it (the
    analytic phantom, :func:`rtforge.core.phantom.phantom_hu`, and the sphere
    :data:`TARGET_CENTRE`, :data:`TARGET_RADIUS`), contoured per slice by
    :func:`rtforge.core.masks.mask_to_contours`; markers inside a lung are holes.

    Parameters
    ----------
    grid : Grid

    Returns
    -------
    list of Structure
        ROI 1 Body (EXTERNAL), 2 Lung_L and 3 Lung_R (ORGAN; L is +x, the
        patient's left), 4 Spine (ORGAN), 5 PTV (PTV).
    """
    names = ("body", "lung_l", "lung_r", "spine", "target")
    masks = {name: np.zeros(grid.shape, dtype=np.uint8) for name in names}
    nj, ni = grid.shape[1:]
    jj, ii = np.meshgrid(np.arange(nj), np.arange(ni), indexing="ij")
    centre = np.asarray(TARGET_CENTRE)
    for k in range(grid.shape[0]):
        ijk = np.stack([ii, jj, np.full_like(ii, k)], axis=-1)
        xyz = grid.index_to_patient(ijk)
        hu = phantom_hu(xyz)
        masks["body"][k] = hu != HU_AIR
        masks["lung_l"][k] = (hu == HU_LUNG) & (xyz[..., 0] > 0)
        masks["lung_r"][k] = (hu == HU_LUNG) & (xyz[..., 0] < 0)
        masks["spine"][k] = hu == HU_SPINE
        masks["target"][k] = np.sum((xyz - centre) ** 2, axis=-1) <= TARGET_RADIUS ** 2
    table = (
        (1, "Body", "body", RTROIInterpretedType.EXTERNAL, (0, 160, 0)),
        (2, "Lung_L", "lung_l", RTROIInterpretedType.ORGAN, (0, 128, 255)),
        (3, "Lung_R", "lung_r", RTROIInterpretedType.ORGAN, (170, 0, 200)),
        (4, "Spine", "spine", RTROIInterpretedType.ORGAN, (255, 255, 0)),
        (5, "PTV", "target", RTROIInterpretedType.PTV, (255, 0, 0)),
    )
    return [Structure(number=number, name=name, interpreted_type=kind, colour=colour,
                      generation_algorithm=ROIGenerationAlgorithm.AUTOMATIC,
                      contours=tuple(Contour(p) for p in mask_to_contours(masks[key], grid)))
            for number, name, key, kind, colour in table]


def phantom_dose(grid: Grid) -> Volume:
    """The demo's synthetic plan dose on an axis-aligned grid covering ``grid``.

    A box field of :data:`PHANTOM_DOSE_GY` centred on :data:`TARGET_CENTRE`,
    :data:`PHANTOM_DOSE_MARGIN_MM` wider than the target on every side, with
    a penumbra along each axis, ``(erf((u + h) / p) - erf((u - h) / p)) / 2``
    (``u`` the offset from the centre, ``h`` the box's half width, ``p``
    :data:`PHANTOM_PENUMBRA_MM`).

    Parameters
    ----------
    grid : Grid
        The CT grid: the dose grid (spacing :data:`PHANTOM_DOSE_SPACING_MM`,
        identity direction) spans the bounding box of its voxel centres.

    Returns
    -------
    Volume
        Dose in Gy.
    """
    corners = grid.corners()
    low, high = corners.min(axis=0), corners.max(axis=0)
    step = PHANTOM_DOSE_SPACING_MM
    counts = np.ceil((high - low) / step - 1e-9).astype(int) + 1
    dose_grid = Grid((int(counts[2]), int(counts[1]), int(counts[0])), origin=low,
                     spacing=np.full(3, step))
    half = TARGET_RADIUS + PHANTOM_DOSE_MARGIN_MM
    x, y, z = (low[a] + step * np.arange(counts[a]) - TARGET_CENTRE[a] for a in range(3))

    def profile(u: np.ndarray) -> np.ndarray:
        return np.array([0.5 * (math.erf((v + half) / PHANTOM_PENUMBRA_MM)
                                - math.erf((v - half) / PHANTOM_PENUMBRA_MM)) for v in u])

    relative = profile(z)[:, None, None] * profile(y)[None, :, None] * profile(x)[None, None, :]
    return Volume(PHANTOM_DOSE_GY * relative, dose_grid)


def run_demo(out_dir: str | Path, *, size: int = 256, nslices: int = 64,
             config: ExportConfig | None = None,
             progress: Callable[[str, int, int], None] | None = None) -> DemoResult:
    """Make the phantom patient under ``out_dir/source``, reconvert it into
    ``out_dir/resliced``, contour it there (an RT Structure Set referencing the
    first resliced series), write the phantom plan (:data:`PHANTOM_BEAMS`,
    referencing the structure set), its DRRs (RT Images referencing the
    plan, PNG previews in ``out_dir/drr-png``) and a synthetic plan dose
    (:func:`phantom_dose`, 16-bit, referencing the plan) with the structures'
    DVHs, plotted in ``out_dir/dvh.png``.

    Parameters
    ----------
    out_dir : str or Path
    size, nslices : int
        See :func:`make_phantom_patient`.
    config : ExportConfig, optional
    progress : callable, optional
        ``progress(step, done, total)``.

    Returns
    -------
    DemoResult

    Raises
    ------
    InvalidInputError
        If ``out_dir`` exists and is not an empty folder: every run makes a new
        patient study, and two studies of the phantom side by side (or the
        phantom among someone's files) would only confuse.
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidInputError("is not an empty folder; the demo writes into a new or empty "
                                "folder (each run makes a new study)", path=out)
    config = config or ExportConfig()
    result = DemoResult()
    result.sources = make_phantom_patient(out / "source", size=size, nslices=nslices,
                                          config=config)
    options = ReconvertOptions(config=config)
    for src in result.sources:
        step = f"reslice {src.name}"
        result.reports.append(reconvert_series(
            src.folder, out / "resliced", options,
            progress=None if progress is None else
            (lambda d, t, step=step: progress(step, d, t))))
    if progress is not None:
        progress("structures", 0, 1)
    images = reference_image_series(result.reports[0].output_dir)
    grid = images.stack.to_grid()
    structures = phantom_structures(grid)
    built = build_rtstruct(structures, images=images, grid=grid,
                           label="PHANTOM", name="rtforge phantom structures", config=config)
    result.structure_set = write_rtstruct(built.dataset, out / "resliced")
    result.structure_volumes = {
        str(item.ROIName): built.volumes_cm3.get(int(item.ROINumber))
        for item in built.dataset.StructureSetROISequence}
    if progress is not None:
        progress("structures", 1, 1)
    if progress is not None:
        progress("plan", 0, 1)
    beams = tuple(static_beam(n, name, gantry=gantry, collimator=collimator, couch=couch,
                              jaws=jaws, isocenter=TARGET_CENTRE)
                  for n, (name, gantry, collimator, couch, jaws) in enumerate(PHANTOM_BEAMS,
                                                                                start=1))
    group = FractionGroup(1, PHANTOM_FRACTIONS,
                          tuple(ReferencedBeam(b.number, None, 100.0) for b in beams), 0)
    plan_ds = build_rtplan(beams, (group,), (PatientSetup(1, PatientPosition.HFS, "ISOCENTRIC"),),
                           label="PHANTOM", name="rtforge phantom plan",
                           structure_set_uid=str(built.dataset.SOPInstanceUID),
                           source=built.dataset, config=config)
    result.plan = write_rtplan(plan_ds, out / "resliced")
    if progress is not None:
        progress("plan", 1, 1)
    series = read_series(result.reports[0].output_dir)
    labels = RTImageLabels(label="{beam_name}", name="phantom plan:{beam_name}",
                           description="isocenter {isocenter} mm (the PTV)")
    plan = read_rtplan(result.plan)
    volume = series.to_volume()
    # 256 x 256 pixels, their spacing the smallest that shows the whole body in every beam
    result.drrs = write_drrs(volume, series.headers[0],
                             fit_to_body(volume, plan_requests(plan, rows=256, columns=256)),
                             out / "resliced", plan=plan, png_dir=out / "drr-png",
                             labels=labels, config=config,
                             progress=None if progress is None else
                             (lambda d, t: progress("drr", d, t)))
    if progress is not None:
        progress("dose", 0, 1)
    # 16-bit: the Debian dciodvfy aborts on (valid) 32-bit Pixel Data, and the
    # demo's output is checked with it.
    dose = build_dose_grid(phantom_dose(grid), summation_type="PLAN",
                           plans=[PlanReference(str(plan_ds.SOPInstanceUID))], bits=16,
                           reference=plan_ds, series_description="rtforge phantom dose",
                           config=config)
    result.dose = Path(write_rtdose(dose.dataset, out / "resliced" / "rtdose.dcm"))
    # The DVHs of the dose as written (quantised), as `rtforge dvh` reads it.
    result.dvhs = compute_dvhs(read_rtdose(result.dose).volume,  # type: ignore[arg-type]
                               structures)
    result.dvh_plot = out / "dvh.png"
    plot_dvhs(result.dvh_plot, result.dvhs, [s.colour for s in structures],
              dose_name=str(dose.dataset.SeriesDescription),
              structure_set_name=str(built.dataset.StructureSetLabel))
    if progress is not None:
        progress("dose", 1, 1)
    return result
