"""DIMSE status codes: what they mean and what we do about them.

The categories follow PS3.7 Annex C; the C-STORE meanings follow PS3.4
B.2.3 and Oncentra table 4-7, which also fixes the Storage SCU's policy:
failures abort the transfer, warnings are collected and the transfer goes on.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["StatusCategory", "status_category", "status_meaning"]


class StatusCategory(str, Enum):
    """Status Type of a DIMSE response (PS3.7 C)."""

    SUCCESS = "success"
    WARNING = "warning"
    FAILURE = "failure"
    CANCEL = "cancel"
    PENDING = "pending"


_S, _W, _F = StatusCategory.SUCCESS, StatusCategory.WARNING, StatusCategory.FAILURE

#: (first code, last code, category, meaning), searched in order (PS3.4 B.2.3, C.4, PS3.7 C,
#: Oncentra table 4-7).  Codes in no range are failures.
_STATUS_TABLE: tuple[tuple[int, int, StatusCategory, str], ...] = (
    (0x0000, 0x0000, _S, "Success"),
    (0x0001, 0x0001, _W, "Warning: Requested optional Attributes are not supported"),
    (0x0107, 0x0107, _W, "Warning: Attribute List Error"),
    (0x0116, 0x0116, _W, "Warning: Attribute Value Out of Range"),
    (0xB000, 0xB000, _W, "Warning: Coercion of Data Elements (C-STORE) or Sub-operations "
                         "complete with failures (C-MOVE)"),
    (0xB006, 0xB006, _W, "Warning: Elements Discarded"),
    (0xB007, 0xB007, _W, "Warning: Data Set does not match SOP Class"),
    (0xB000, 0xBFFF, _W, "Warning"),
    (0xA700, 0xA7FF, _F, "Refused: Out of Resources"),
    (0xA801, 0xA801, _F, "Refused: Move Destination unknown"),
    (0xA900, 0xA9FF, _F, "Error: Data Set does not match SOP Class"),
    (0xC000, 0xCFFF, _F, "Error: Cannot understand"),
    (0x0110, 0x0110, _F, "Processing failure"),
    (0x0117, 0x0117, _F, "Invalid object instance"),
    (0x0122, 0x0122, _F, "Refused: SOP Class not supported"),
    (0x0124, 0x0124, _F, "Refused: Not authorized"),
    (0x0210, 0x0210, _F, "Duplicate invocation"),
    (0x0211, 0x0211, _F, "Unrecognized operation"),
    (0x0212, 0x0212, _F, "Mistyped argument"),
    (0x0213, 0x0213, _F, "Resource limitation"),
    (0xFE00, 0xFE00, StatusCategory.CANCEL, "Cancel"),
    (0xFF00, 0xFF01, StatusCategory.PENDING, "Pending"),
)


def _lookup(status: int) -> tuple[StatusCategory, str]:
    for first, last, category, meaning in _STATUS_TABLE:
        if first <= status <= last:
            return category, meaning
    return _F, "Failure"


def status_category(status: int) -> StatusCategory:
    """The category of a status code; codes no table lists are failures.

    Parameters
    ----------
    status : int
        The Status (0000,0900) of a response.

    Returns
    -------
    StatusCategory
    """
    return _lookup(status)[0]


def status_meaning(status: int) -> str:
    """``"0xA700 Refused: Out of Resources"``: the code in hex and its meaning."""
    return f"0x{status:04X} {_lookup(status)[1]}"
