"""RT Plan splitting, one plan per fraction group (iPlan Notes 8-5 and 8-8), and writing a plan."""

from __future__ import annotations

import copy
import os
from pathlib import Path

from pydicom import Dataset
from pydicom.datadict import dictionary_VR
from pydicom.uid import ExplicitVRLittleEndian, RTPlanStorage

from rtforge.config import ExportConfig
from rtforge.io.charset import conformed, output_character_set
from rtforge.io.fileset import instance_path, write_dataset_file
from rtforge.io.modules import (
    MAX_VALUE_LENGTH,
)
from rtforge.io.rtplan._common import _REFERENCED_SOP_ITEM, _item
from rtforge.io.rtplan.parse import parse_rtplan
from rtforge.io.uids import new_uid

__all__ = ["split_rtplan", "write_rtplan"]


_LABEL_LENGTH = MAX_VALUE_LENGTH[dictionary_VR("RTPlanLabel")]  # SH in PS3.6: 16


def split_rtplan(ds: Dataset, *, config: ExportConfig | None = None) -> list[Dataset]:
    """One RT Plan per fraction group (iPlan Notes 8-5 and 8-8).

    Each plan keeps one fraction group and the beams (or brachytherapy
    application setups) it delivers, gets a new
    SOP Instance UID and ``" (n/N)"`` appended to its label (the label cut to
    fit 16 characters), and references its
    siblings in Referenced RT Plan Sequence with RT Plan Relationship
    ``PARTIAL``.  Everything else (patient, study, series, prescription,
    setups) is kept.

    Parameters
    ----------
    ds : pydicom.Dataset
        An RT Plan; not modified.
    config : ExportConfig, optional
        UID root of the new SOP Instance UIDs, and the character set the
        plans are re-encoded in (:mod:`rtforge.io.charset`).

    Returns
    -------
    list of pydicom.Dataset
        One per fraction group, in the plan's order; a plan with one
        fraction group comes back as an unchanged copy.

    Raises
    ------
    InvalidInputError
        As :func:`parse_rtplan` (a group referencing a missing beam included),
        or if a value does not fit the output character set.
    """
    config = config or ExportConfig()
    plan = parse_rtplan(ds)
    ds = conformed(ds, output_character_set(config))
    if len(plan.fraction_groups) <= 1:
        return [copy.deepcopy(ds)]
    uids = [str(new_uid(config.uid_root)) for _ in plan.fraction_groups]
    total = len(uids)
    out = []
    for n, (group, item) in enumerate(zip(plan.fraction_groups, ds.FractionGroupSequence,
                                          strict=True)):
        part = copy.deepcopy(ds)
        part.FractionGroupSequence = [copy.deepcopy(item)]
        if "BeamSequence" in part:
            keep = set(group.beam_numbers)
            part.BeamSequence = [b for b in part.BeamSequence if int(b.BeamNumber) in keep]
        if "ApplicationSetupSequence" in part:
            keep = {r.setup_number for r in group.referenced_brachy_setups}
            part.ApplicationSetupSequence = [a for a in part.ApplicationSetupSequence
                                             if int(a.ApplicationSetupNumber) in keep]
        part.SOPInstanceUID = uids[n]
        suffix = f" ({n + 1}/{total})"
        part.RTPlanLabel = str(ds.get("RTPlanLabel", "") or "")[: _LABEL_LENGTH - len(suffix)] \
            + suffix
        part.ReferencedRTPlanSequence = [_item(_REFERENCED_SOP_ITEM, {
            "ReferencedSOPClassUID": RTPlanStorage, "ReferencedSOPInstanceUID": uid,
            "RTPlanRelationship": "PARTIAL"}) for m, uid in enumerate(uids) if m != n]
        out.append(part)
    return out


def write_rtplan(ds: Dataset, out_dir: str | os.PathLike,
                 transfer_syntax: str = ExplicitVRLittleEndian, *, flat: bool = False,
                 fsync: bool = True) -> Path:
    """Write an RT Plan as a Part 10 file, atomically.

    Parameters
    ----------
    ds : pydicom.Dataset
        From :func:`build_rtplan` or :func:`split_rtplan`; not modified.
    out_dir : str or path-like
        Root of the file set (the layout of
        :func:`~rtforge.io.fileset.instance_path`), or the folder itself when ``flat``.
    transfer_syntax : str, optional
    flat : bool, optional
        Write ``<out_dir>/<SOPInstanceUID>.dcm``.
    fsync : bool, optional

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ConformanceError
        If SOP Class or Instance UID is missing.
    """
    path = Path(out_dir) / f"{ds.SOPInstanceUID}.dcm" if flat else instance_path(out_dir, ds)
    return write_dataset_file(ds, path, transfer_syntax, fsync=fsync)
