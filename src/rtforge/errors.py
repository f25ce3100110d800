"""Exception hierarchy of rtforge.

Library code raises these; the CLI catches :class:`RtforgeError` and prints
one line on stderr.
"""

from __future__ import annotations

__all__ = [
    "RtforgeError",
    "InvalidInputError",
    "GeometryError",
    "ConformanceError",
    "NetworkError",
]


class RtforgeError(Exception):
    """Base class of every error rtforge raises on purpose."""


class InvalidInputError(RtforgeError, ValueError):
    """Input that cannot be used: names the file (and tag) and the problem.

    Parameters
    ----------
    message : str
        What is wrong and, where there is one, the remedy.
    path : str or os.PathLike, optional
        The offending file or folder.
    tag : str, optional
        The offending DICOM attribute, as a keyword or ``(gggg,eeee)``.
    """

    def __init__(self, message: str, path: object = None, tag: str | None = None) -> None:
        self.path = None if path is None else str(path)
        self.tag = tag
        self.reason = message
        parts = []
        if self.path is not None:
            parts.append(self.path)
        if tag is not None:
            parts.append(tag)
        prefix = ": ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class GeometryError(RtforgeError, ValueError):
    """Geometry that rtforge does not support or that is inconsistent."""


class ConformanceError(RtforgeError):
    """An object we were about to write would break the DICOM standard."""


class NetworkError(RtforgeError):
    """A DICOM network operation failed; names the peer and the status."""

    def __init__(self, message: str, peer: str | None = None, status: int | None = None) -> None:
        self.peer = peer
        self.status = status
        text = message
        if peer is not None:
            text = f"{peer}: {text}"
        if status is not None:
            text = f"{text} (status 0x{status:04X})"
        super().__init__(text)
