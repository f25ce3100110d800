"""pynetdicom Application Entities that introduce themselves as rtforge (query, print)."""

from __future__ import annotations

from pynetdicom import AE

from rtforge.config import check_ae_title
from rtforge.io.uids import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

__all__ = ["rtforge_ae"]


def rtforge_ae(ae_title: str) -> AE:
    """A pynetdicom AE with our AE title, Implementation Class UID and Version Name.

    Parameters
    ----------
    ae_title : str
        Our (calling) AE title, checked by :func:`~rtforge.config.check_ae_title`.

    Returns
    -------
    pynetdicom.AE
        The same Implementation Class UID as rtforge's files, DICOMDIRs and
        own associations (:data:`rtforge.io.uids.IMPLEMENTATION_CLASS_UID`).
    """
    ae = AE(ae_title=check_ae_title(ae_title))
    ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
    ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
    return ae
