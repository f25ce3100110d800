"""Basic Grayscale and Basic Color Print Management as SCU (Oncentra 4.2.1.3.3).

Negotiation (Oncentra table 4-8): the Basic Grayscale and Basic Color Print
Management Meta SOP Classes, Basic Film Session, Basic Film Box, Basic
Grayscale and Color Image Box and Printer, each with Implicit VR Little
Endian only.  The print goes through the meta SOP class of the chosen mode.

Sequence: Printer N-GET (Printer Status and Printer Status Info only: some
printers refuse a request for Printer Name), Film Session N-CREATE, then per
film Film Box N-CREATE (the printer creates the image boxes), one Image Box
N-SET per image, Film Box N-ACTION (print); finally Film Session N-DELETE
and release.

Status and exception handling (Oncentra tables 4-9 and 4-10): any status
other than 0x0000 Success, a timeout, or an association aborted by the
printer or the network: the association is aborted (A-ABORT), the job has
failed, and :class:`~rtforge.errors.NetworkError` says which step failed
and why.

Pixels: each image is made a single-frame 8-bit (or 12-bit, grayscale only)
image: modality LUT (Rescale Slope/Intercept) then a linear window (the one
given, else the file's first Window Center/Width, else the pixel range),
MONOCHROME1 inverted; colour image boxes receive the same values in R, G and B
(PS3.3 C.13.5: Planar Configuration 1, colour-by-plane).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import UID, ImplicitVRLittleEndian, generate_uid
from pynetdicom.association import Association

from rtforge.config import Node
from rtforge.errors import InvalidInputError, NetworkError
from rtforge.net._pynetdicom import request_association
from rtforge.net.status import status_meaning

__all__ = ["FILM_SIZES", "PrintReport", "window_image", "print_images"]

logger = logging.getLogger(__name__)

#: Film Size ID defined terms (PS3.3 C.13.8).
FILM_SIZES = ("8INX10IN", "8_5INX11IN", "10INX12IN", "10INX14IN", "11INX14IN", "11INX17IN",
              "14INX14IN", "14INX17IN", "24CMX24CM", "24CMX30CM", "A4", "A3")
_FORMAT_RE = re.compile(r"^STANDARD\\([1-9][0-9]?),([1-9][0-9]?)$")
#: SOP Classes of Oncentra table 4-8 (PS3.4 H).
BasicGrayscalePrintManagementMeta = UID("1.2.840.10008.5.1.1.9")
BasicColorPrintManagementMeta = UID("1.2.840.10008.5.1.1.18")
BasicFilmSession = UID("1.2.840.10008.5.1.1.1")
BasicFilmBox = UID("1.2.840.10008.5.1.1.2")
BasicGrayscaleImageBox = UID("1.2.840.10008.5.1.1.4")
BasicColorImageBox = UID("1.2.840.10008.5.1.1.4.1")
Printer = UID("1.2.840.10008.5.1.1.16")
#: The well-known Printer SOP Instance (PS3.4 H.4.11.1).
PrinterInstance = UID("1.2.840.10008.5.1.1.17")
#: Oncentra table 4-8, all with Implicit VR Little Endian.
_CONTEXTS = (BasicGrayscalePrintManagementMeta, BasicColorPrintManagementMeta, BasicFilmSession,
             BasicFilmBox, BasicGrayscaleImageBox, Printer, BasicColorImageBox)
_PRINTER_STATUS = Tag("PrinterStatus")
_PRINTER_STATUS_INFO = Tag("PrinterStatusInfo")


@dataclass
class PrintReport:
    """A print job that the printer accepted.

    Parameters
    ----------
    node : Node
        The printer.
    color : bool
        Basic Color (else Basic Grayscale) Print Management.
    films : int
        Film boxes printed.
    images : int
        Image boxes set.
    printer_status : str
        Printer Status (2110,0010) as the printer answered it (NORMAL, WARNING, FAILURE).
    printer_status_info : str
        Printer Status Info (2110,0020).
    warnings : list of str
        Noted, e.g. a printer status other than NORMAL.
    """

    node: Node
    color: bool
    films: int = 0
    images: int = 0
    printer_status: str = ""
    printer_status_info: str = ""
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"node": str(self.node), "color": self.color, "films": self.films,
                "images": self.images, "printer_status": self.printer_status,
                "printer_status_info": self.printer_status_info, "warnings": self.warnings}


def _display_format(text: str) -> tuple[str, int]:
    """(Image Display Format, image boxes per film) of ``STANDARD\\C,R``."""
    match = _FORMAT_RE.match(text.strip())
    if match is None:
        raise InvalidInputError(f"image display format {text!r} must be STANDARD\\C,R "
                                "(columns, rows: e.g. STANDARD\\2,2)")
    return text.strip(), int(match[1]) * int(match[2])


def _first(value: Any) -> float:
    """The first value of a possibly multi-valued DS (Window Center/Width)."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        return float(value[0])
    return float(value)


def window_image(ds: Dataset, *, bits: int = 8, center: float | None = None,
                 width: float | None = None) -> np.ndarray:
    """The pixels of a single-frame grayscale image, windowed to ``bits`` bits.

    Parameters
    ----------
    ds : Dataset
        A CT, MR, RT Image or other single-frame grayscale image.
    bits : int
        8 or 12.
    center, width : float, optional
        The window (in modality units: HU for CT); by default the file's
        first Window Center/Width, else the pixel range.

    Returns
    -------
    ndarray of shape (Rows, Columns), dtype uint8 (bits 8) or uint16 (bits 12)
        ``0`` is black (MONOCHROME2 presentation).

    Raises
    ------
    InvalidInputError
        If the image is not single-frame grayscale, or the window is not positive.
    """
    if bits not in (8, 12):
        raise InvalidInputError(f"bits must be 8 or 12, got {bits}")
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric not in ("MONOCHROME1", "MONOCHROME2") or int(ds.get("NumberOfFrames", 1)) != 1:
        raise InvalidInputError("only single-frame MONOCHROME1/2 images can be printed, got "
                                f"{photometric or 'no Photometric Interpretation'}",
                                path=getattr(ds, "filename", None))
    values = ds.pixel_array.astype(np.float64) * float(ds.get("RescaleSlope", 1.0)) \
        + float(ds.get("RescaleIntercept", 0.0))
    if center is None or width is None:
        file_center, file_width = ds.get("WindowCenter"), ds.get("WindowWidth")
        if file_center is not None and file_width is not None:
            center = _first(file_center) if center is None else center
            width = _first(file_width) if width is None else width
        else:
            low, high = float(values.min()), float(values.max())
            center = (low + high) / 2 if center is None else center
            width = max(high - low, 1.0) if width is None else width
    if width <= 0:
        raise InvalidInputError(f"window width must be positive, got {width}")
    top = (1 << bits) - 1
    levels = np.rint(np.clip((values - (center - width / 2)) / width, 0.0, 1.0) * top)
    if photometric == "MONOCHROME1":
        levels = top - levels
    return levels.astype(np.uint8 if bits == 8 else np.uint16)


def _image_item(pixels: np.ndarray, bits: int, color: bool) -> Dataset:
    """The Basic Grayscale or Color Image Sequence item of one image box."""
    item = Dataset()
    item.Rows, item.Columns = (int(n) for n in pixels.shape)
    item.PixelAspectRatio = [1, 1]
    item.PixelRepresentation = 0
    if color:
        item.SamplesPerPixel = 3
        item.PhotometricInterpretation = "RGB"
        item.PlanarConfiguration = 1
        item.BitsAllocated = item.BitsStored = 8
        item.HighBit = 7
        item.PixelData = np.ascontiguousarray(np.stack([pixels] * 3)).tobytes()
    else:
        item.SamplesPerPixel = 1
        item.PhotometricInterpretation = "MONOCHROME2"
        item.BitsAllocated = 8 if bits == 8 else 16
        item.BitsStored = bits
        item.HighBit = bits - 1
        item.PixelData = pixels.astype("<u1" if bits == 8 else "<u2").tobytes()
    item["PixelData"].VR = "OB" if item.BitsAllocated == 8 else "OW"
    return item


class _Job:
    """One association's print job: every request checked by table 4-10."""

    def __init__(self, assoc: Association, node: Node, meta: UID, timeout: float) -> None:
        self.assoc = assoc
        self.node = node
        self.meta = meta
        self.timeout = timeout
        self.message_id = 0

    def check(self, step: str, status: Dataset) -> None:
        """Abort and raise unless ``status`` is 0x0000 (Oncentra tables 4-9 and 4-10)."""
        code = status.get("Status")
        if code == 0x0000:
            return
        if code is None:
            if self.assoc.is_established:
                self.assoc.abort()
            raise NetworkError(f"print job failed at {step}: no response within "
                               f"{self.timeout:g} s, or the association was aborted (A-ABORT)",
                               peer=str(self.node))
        comment = f": {status.ErrorComment}" if "ErrorComment" in status else ""
        self.assoc.abort()
        raise NetworkError(f"print job failed at {step}: {status_meaning(code)}{comment} "
                           "(A-ABORT)", peer=str(self.node), status=int(code))

    def next_id(self) -> int:
        self.message_id += 1
        return self.message_id


def _associate(node: Node, ae_title: str, timeout: float) -> Association:
    return request_association(replace(node, timeout=timeout), ae_title,
                               [(uid, [ImplicitVRLittleEndian]) for uid in _CONTEXTS],
                               failure="print job failed: ")


def _load(paths: Sequence[str | os.PathLike[str]]) -> list[Dataset]:
    out: list[Dataset] = []
    for path in paths:
        try:
            out.append(dcmread(path))
        except (OSError, InvalidDicomError) as exc:
            raise InvalidInputError(f"cannot read the image: {exc}", path=path) from None
    return out


def print_images(paths: Sequence[str | os.PathLike[str]], node: Node, *,
                 display_format: str = "STANDARD\\1,1", film_size: str = "14INX17IN",
                 color: bool = False, bits: int = 8, center: float | None = None,
                 width: float | None = None, copies: int = 1, medium: str = "BLUE FILM",
                 orientation: str = "PORTRAIT", ae_title: str = "RTFORGE",
                 timeout: float | None = None,
                 progress: Callable[[int, int], None] | None = None) -> PrintReport:
    """Print images on a DICOM printer, as many films as the display format needs.

    Parameters
    ----------
    paths : sequence of path-like
        Single-frame grayscale images (CT, RT Image, ...), in print order.
    node : Node
        The Print SCP.
    display_format : str
        Image Display Format ``STANDARD\\C,R`` (columns, rows).
    film_size : str
        Film Size ID (:data:`FILM_SIZES`).
    color : bool
        Basic Color Print Management (default Basic Grayscale).
    bits : int
        8 or 12 bits per pixel (12 for grayscale only).
    center, width : float, optional
        Window, in modality units (default: each file's, else its range).
    copies : int
        Number of Copies (1 to 99).
    medium : str
        Medium Type (PAPER, CLEAR FILM, BLUE FILM, ...).
    orientation : str
        Film Orientation: PORTRAIT or LANDSCAPE.
    ae_title : str
        Our (calling) AE title.
    timeout : float, optional
        Seconds for each step (default the node's timeout).
    progress : callable, optional
        Called as ``progress(images_set, total)``.

    Returns
    -------
    PrintReport

    Raises
    ------
    InvalidInputError
        For a bad parameter or an image that cannot be printed.
    NetworkError
        If the job failed (the association was aborted): names the step and
        the status or reason.
    """
    display_format, per_film = _display_format(display_format)
    if film_size not in FILM_SIZES:
        raise InvalidInputError(f"film size {film_size!r} is not one of {', '.join(FILM_SIZES)}")
    if color and bits != 8:
        raise InvalidInputError("colour image boxes take 8-bit pixels only")
    if orientation not in ("PORTRAIT", "LANDSCAPE"):
        raise InvalidInputError(f"film orientation must be PORTRAIT or LANDSCAPE, got "
                                f"{orientation!r}")
    if not 1 <= copies <= 99:
        raise InvalidInputError(f"copies must be 1 to 99, got {copies}")
    if not paths:
        raise InvalidInputError("no images to print")
    images = [window_image(ds, bits=bits, center=center, width=width) for ds in _load(paths)]
    timeout = node.timeout if timeout is None else timeout
    meta = BasicColorPrintManagementMeta if color else BasicGrayscalePrintManagementMeta
    box_class = BasicColorImageBox if color else BasicGrayscaleImageBox
    report = PrintReport(node=node, color=color)
    assoc = _associate(node, ae_title, timeout)
    try:
        if not any(cx.abstract_syntax == meta for cx in assoc.accepted_contexts):
            assoc.abort()
            raise NetworkError(f"print job failed: the printer did not accept {meta.name} "
                               "(A-ABORT)", peer=str(node))
        job = _Job(assoc, node, meta, timeout)
        status, printer = assoc.send_n_get([_PRINTER_STATUS, _PRINTER_STATUS_INFO], Printer,
                                           PrinterInstance, msg_id=job.next_id(), meta_uid=meta)
        job.check("Printer N-GET", status)
        if printer is not None:
            report.printer_status = str(printer.get("PrinterStatus", ""))
            report.printer_status_info = str(printer.get("PrinterStatusInfo", ""))
        if report.printer_status not in ("", "NORMAL"):
            report.warnings.append(f"printer status {report.printer_status} "
                                   f"({report.printer_status_info})")
        session = Dataset()
        session.NumberOfCopies = copies
        session.PrintPriority = "MED"
        session.MediumType = medium
        session.FilmDestination = "MAGAZINE"
        session_uid = generate_uid()
        status, _ = assoc.send_n_create(session, BasicFilmSession, session_uid,
                                        msg_id=job.next_id(), meta_uid=meta)
        job.check("Film Session N-CREATE", status)
        for start in range(0, len(images), per_film):
            _print_film(job, images[start:start + per_film], session_uid, box_class, report,
                        display_format=display_format, film_size=film_size,
                        orientation=orientation, bits=bits, total=len(images),
                        progress=progress)
        status = assoc.send_n_delete(BasicFilmSession, session_uid, msg_id=job.next_id(),
                                     meta_uid=meta)
        job.check("Film Session N-DELETE", status)
        assoc.release()
    finally:
        if assoc.is_established:
            assoc.abort()
    logger.info("%s: printed %d image(s) on %d film(s)", node, report.images, report.films)
    return report


def _print_film(job: _Job, images: Sequence[np.ndarray], session_uid: str, box_class: UID,
                report: PrintReport, *, display_format: str, film_size: str, orientation: str,
                bits: int, total: int, progress: Callable[[int, int], None] | None) -> None:
    """Film Box N-CREATE, one Image Box N-SET per image, N-ACTION print."""
    assoc = job.assoc
    film = Dataset()
    film.ImageDisplayFormat = display_format
    film.FilmOrientation = orientation
    film.FilmSizeID = film_size
    film.MagnificationType = "REPLICATE"
    reference = Dataset()
    reference.ReferencedSOPClassUID = BasicFilmSession
    reference.ReferencedSOPInstanceUID = session_uid
    film.ReferencedFilmSessionSequence = DicomSequence([reference])
    film_uid = generate_uid()
    status, created = assoc.send_n_create(film, BasicFilmBox, film_uid, msg_id=job.next_id(),
                                          meta_uid=job.meta)
    job.check("Film Box N-CREATE", status)
    boxes = list(created.get("ReferencedImageBoxSequence", [])) if created is not None else []
    if len(boxes) < len(images):
        assoc.abort()
        raise NetworkError(f"print job failed at Film Box N-CREATE: the printer created "
                           f"{len(boxes)} image box(es) for {len(images)} image(s) (A-ABORT)",
                           peer=str(job.node))
    sequence = "BasicColorImageSequence" if box_class == BasicColorImageBox \
        else "BasicGrayscaleImageSequence"
    for position, (pixels, box) in enumerate(zip(images, boxes, strict=False), start=1):
        image_box = Dataset()
        image_box.ImageBoxPosition = position
        setattr(image_box, sequence, DicomSequence([_image_item(pixels, bits,
                                                                box_class == BasicColorImageBox)]))
        status, _ = assoc.send_n_set(image_box, box_class, box.ReferencedSOPInstanceUID,
                                     msg_id=job.next_id(), meta_uid=job.meta)
        job.check(f"Image Box {position} N-SET", status)
        report.images += 1
        if progress is not None:
            progress(report.images, total)
    status, _ = assoc.send_n_action(None, 1, BasicFilmBox, film_uid, msg_id=job.next_id(),
                                    meta_uid=job.meta)
    job.check("Film Box N-ACTION (print)", status)
    report.films += 1
