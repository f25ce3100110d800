"""UIDs under a configurable organisation root."""

from __future__ import annotations

import hashlib
import uuid

from pydicom.uid import UID

from rtforge import __version__
from rtforge.config import DEFAULT_UID_ROOT

__all__ = ["new_uid", "derived_uid", "IMPLEMENTATION_CLASS_UID", "IMPLEMENTATION_VERSION_NAME"]


def _check_root(root: str) -> str:
    if not root.endswith(".") or len(root) > 40:
        raise ValueError(f"UID root {root!r} must end in '.' and be at most 40 characters")
    return root


def new_uid(root: str = DEFAULT_UID_ROOT) -> UID:
    """A new random UID under ``root`` (at most 64 characters).

    The suffix is a random 128-bit number (UUID4) in decimal, cut to fit 64
    characters: about 24 decimal digits (80 bits) remain for a 40-character root.
    """
    root = _check_root(root)
    digits = str(uuid.uuid4().int)
    suffix = digits[: 64 - len(root)].lstrip("0") or "1"
    return UID(root + suffix)


def derived_uid(root: str, *parts: str) -> UID:
    """A UID under ``root`` that depends only on ``parts`` (same parts, same UID).

    Used where a re-run must reproduce the same UID (resumable batch output,
    keyed de-identification): SHA-256 of the parts, as a decimal number.
    """
    root = _check_root(root)
    h = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    digits = str(int.from_bytes(h[:16], "big"))
    suffix = digits[: 64 - len(root)].lstrip("0") or "1"
    return UID(root + suffix)


#: Implementation Class UID (0002,0012) of rtforge, the one UID in the files it writes, the
#: associations it negotiates and its DICOMDIRs: fixed, derived under pydicom's public root.
IMPLEMENTATION_CLASS_UID = derived_uid(DEFAULT_UID_ROOT, "rtforge", "implementation class")
#: Implementation Version Name (0002,0013) beside it: the version, at most 16 characters.
IMPLEMENTATION_VERSION_NAME = f"RTFORGE_{__version__}"[:16]
