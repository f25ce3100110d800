"""rtforge's private block, mirroring iPlan's (tables 8-15, 8-22 and 8-36).

iPlan RT Dose writes the Private Creator ``BrainLAB_Conversion`` in group
0009 and, in its block, Export Platform Name (0009,xx01) LO, the configured
name of the exporting platform.  rtforge writes the same block under its own
creator string (:attr:`ExportConfig.private_creator`, ``RTFORGE_Conversion``
by default) with the configured :attr:`ExportConfig.platform_name`.

The block is reserved the PS3.5 7.8.1 way: the creator goes in the first free
(0009,00xx) slot, xx from 0x10, and the block's elements are (0009,xxee).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom import Dataset

from rtforge.config import ExportConfig

__all__ = ["PrivateAttribute", "PRIVATE_GROUP", "PRIVATE_DICTIONARY", "EXPORT_PLATFORM_NAME",
           "add_export_block", "export_platform_name"]

#: The odd group rtforge's block lives in (iPlan: 0009).
PRIVATE_GROUP = 0x0009


@dataclass(frozen=True)
class PrivateAttribute:
    """One attribute of the private block (data dictionary entry, iPlan table 8-36).

    Parameters
    ----------
    offset : int
        Element offset ``ee`` in the block: the tag is ``(0009,xxee)``.
    name : str
    vr : str
    vm : str
    """

    offset: int
    name: str
    vr: str
    vm: str


#: Export Platform Name (0009,xx01) LO 1.
EXPORT_PLATFORM_NAME = PrivateAttribute(0x01, "Export Platform Name", "LO", "1")

#: The block's data dictionary, iPlan table 8-36.
PRIVATE_DICTIONARY: tuple[PrivateAttribute, ...] = (EXPORT_PLATFORM_NAME,)


def add_export_block(ds: Dataset, config: ExportConfig) -> None:
    """Add the private creator and Export Platform Name to ``ds``.

    Parameters
    ----------
    ds : pydicom.Dataset
        Modified in place; an existing block of the same creator is reused.
    config : ExportConfig
        Gives the creator string and the platform name.
    """
    block = ds.private_block(PRIVATE_GROUP, config.private_creator, create=True)
    block.add_new(EXPORT_PLATFORM_NAME.offset, EXPORT_PLATFORM_NAME.vr, config.platform_name)


def export_platform_name(ds: Dataset, private_creator: str) -> str | None:
    """The Export Platform Name in ``ds`` under ``private_creator``, or None.

    Parameters
    ----------
    ds : pydicom.Dataset
    private_creator : str

    Returns
    -------
    str or None
    """
    try:
        block = ds.private_block(PRIVATE_GROUP, private_creator)
    except KeyError:
        return None
    if EXPORT_PLATFORM_NAME.offset not in block:
        return None
    value = block[EXPORT_PLATFORM_NAME.offset].value
    return None if value is None else str(value)
