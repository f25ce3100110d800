"""The built-in phantom patient and the demo pipeline behind ``rtforge demo``.

The phantom (:mod:`rtforge.core.phantom`) is "acquired" twice, as a real
scanner would write it: once as an oblique ("localized") series and once
axially with a 15 degree gantry tilt.  Both share one study and one frame
of reference.  The demo then reconverts both to axial orientation.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rtforge.config import ExportConfig
from rtforge.core.geometry import SliceStack
from rtforge.core.phantom import oblique_stack, sample_phantom, tilted_stack
from rtforge.io.ct import write_ct_series
from rtforge.io.uids import new_uid
from rtforge.reconvert import ReconvertOptions, SeriesReport, reconvert_series

__all__ = ["PHANTOM_PATIENT", "PhantomSeries", "DemoResult", "make_phantom_patient", "run_demo"]

#: Patient and study attributes of the phantom patient.
PHANTOM_PATIENT = {
    "PatientName": "RTFORGE^PHANTOM",
    "PatientID": "RTF-PHANTOM-001",
    "PatientBirthDate": "19700101",
    "PatientSex": "O",
    "StudyID": "1",
    "StudyDescription": "rtforge phantom",
    "AccessionNumber": "",
    "ReferringPhysicianName": "",
    "PatientPosition": "HFS",
    "KVP": "120",
    "Manufacturer": "rtforge phantom scanner",
}


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


def run_demo(out_dir: str | Path, *, size: int = 256, nslices: int = 64,
             config: ExportConfig | None = None,
             progress: Callable[[str, int, int], None] | None = None) -> DemoResult:
    """Make the phantom patient under ``out_dir/source`` and reconvert it into
    ``out_dir/resliced``.

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
    """
    out = Path(out_dir)
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
    return result
