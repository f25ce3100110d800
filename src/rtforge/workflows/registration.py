"""A rigid Spatial Registration between two CT series: the job ``rtforge reg`` runs.

The rules every caller needs: the matrix must be rigid
(:func:`rtforge.core.geometry.check_rigid`); both series must be of one patient
and in two Frames of Reference (in one, they are registered already); every image
of both series is referenced.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from rtforge.config import ExportConfig
from rtforge.core.geometry import check_rigid
from rtforge.errors import InvalidInputError
from rtforge.io.registration import (
    FrameRegistration,
    build_registration,
    series_references,
    write_registration,
)

__all__ = ["RegistrationWrite", "register_series"]


@dataclass(frozen=True)
class RegistrationWrite:
    """What :func:`register_series` wrote."""

    path: Path
    sop_instance_uid: str
    fixed_frame_of_reference_uid: str
    moving_frame_of_reference_uid: str
    fixed_images: int
    moving_images: int
    matrix: np.ndarray


def register_series(fixed: str | os.PathLike[str], moving: str | os.PathLike[str],
                    matrix: ArrayLike, out_dir: str | os.PathLike[str], *,
                    matrix_name: str = "matrix", label: str = "REGISTRATION",
                    description: str = "",
                    comment: str = "", config: ExportConfig | None = None
                    ) -> RegistrationWrite:
    """Write a Spatial Registration mapping the moving series' frame onto the fixed one's.

    Parameters
    ----------
    fixed, moving : path-like
        Folders (or files) of the two image series.
    matrix : array_like of shape (4, 4)
        Moving frame to fixed frame, rigid.
    out_dir : path-like
        Root of the output file set (grouped by patient).
    matrix_name : str
        How errors name the matrix (a flag or a file).
    label, description, comment : str
        Content Label, Content Description, and the moving frame's
        Frame of Reference Transformation Comment.
    config : ExportConfig, optional

    Returns
    -------
    RegistrationWrite

    Raises
    ------
    InvalidInputError
        If the matrix is not rigid, the series are of two patients, or share
        one Frame of Reference.
    """
    rigid = check_rigid(np.asarray(matrix, dtype=np.float64), matrix_name)
    fixed_ds, fixed_images = series_references(fixed)
    moving_ds, moving_images = series_references(moving)
    if str(fixed_ds.get("PatientID", "")) != str(moving_ds.get("PatientID", "")):
        raise InvalidInputError(f"the moving series is of patient "
                                f"{moving_ds.get('PatientID', '')!r}, the fixed one of "
                                f"{fixed_ds.get('PatientID', '')!r}", path=moving,
                                tag="PatientID")
    if fixed_ds.FrameOfReferenceUID == moving_ds.FrameOfReferenceUID:
        raise InvalidInputError("the fixed and moving series share one Frame of Reference: "
                                "they are registered already", path=moving,
                                tag="FrameOfReferenceUID")
    item = FrameRegistration(str(moving_ds.FrameOfReferenceUID), rigid, moving_images,
                             comment=comment)
    ds = build_registration([item], source=fixed_ds, reference_images=fixed_images,
                            content_label=label, content_description=description,
                            config=config)
    path = write_registration(ds, out_dir)
    return RegistrationWrite(path, str(ds.SOPInstanceUID), str(fixed_ds.FrameOfReferenceUID),
                             str(moving_ds.FrameOfReferenceUID), len(fixed_images),
                             len(moving_images), rigid)
