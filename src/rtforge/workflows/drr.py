"""DRRs of a CT series folder as RT Images: the job ``rtforge drr`` runs.

The rules every caller needs: the series must be CT; a series with uneven
slice spacing is resliced onto a regular grid first (:func:`regular_volume`);
without an explicit pixel spacing the detector is fitted so that the body is
inside every image (:func:`rtforge.io.rtimage.fit_to_body`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from rtforge.config import ExportConfig
from rtforge.core.drr import Attenuation, Device, DrrMethod
from rtforge.errors import InvalidInputError
from rtforge.io.rtimage import DrrRequest, DrrRun, fit_to_body, write_drrs
from rtforge.io.rtplan import RTPlan
from rtforge.io.series import read_series
from rtforge.workflows.service import regular_volume

__all__ = ["drr_of_series"]


def drr_of_series(ct: str | os.PathLike[str], requests: Sequence[DrrRequest],
                  out_dir: str | os.PathLike[str], *, plan: RTPlan | None = None,
                  fit_field_of_view: bool = True,
                  method: str | DrrMethod = DrrMethod.SIDDON, device: str | Device = Device.CPU,
                  attenuation: Attenuation | None = None,
                  png_dir: str | os.PathLike[str] | None = None,
                  config: ExportConfig | None = None,
                  progress: Callable[[int, int], None] | None = None) -> DrrRun:
    """Read a CT series and write its DRRs as one RT Image series (and PNG previews).

    Parameters
    ----------
    ct : path-like
        A folder (or file) of one CT series.
    requests : sequence of DrrRequest
    out_dir : path-like
    plan : RTPlan, optional
        Needed when the requests name beams.
    fit_field_of_view : bool
        Choose each request's pixel spacing so that the body fits (the pixel
        spacing was not given); otherwise keep the requests' own.
    method, device, attenuation, png_dir, config, progress
        As :func:`rtforge.io.rtimage.write_drrs`.

    Returns
    -------
    DrrRun

    Raises
    ------
    InvalidInputError
        If the series is not CT, or cannot be read.
    """
    series = read_series(ct)
    if series.modality != "CT":
        raise InvalidInputError(f"the series is {series.modality}, not CT", path=ct)
    volume = regular_volume(series)
    if fit_field_of_view:
        requests = fit_to_body(volume, requests)
    return write_drrs(volume, series.headers[0], requests, out_dir, plan=plan, method=method,
                      device=device, attenuation=attenuation, png_dir=png_dir, config=config,
                      progress=progress)
