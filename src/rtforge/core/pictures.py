"""Pictures for people: annotated DRR previews and DVH plots (matplotlib, Agg, no pyplot).

Conventions are those of :mod:`rtforge.core.beam`: patient coordinates
``(x, y, z)`` in mm (LPS); image arrays ``[row, column]``, an integer index
naming a pixel's centre.

DRR previews (:func:`annotate_drr`)
-----------------------------------
A preview is drawn at an integer zoom (each DRR pixel a ``zoom`` x ``zoom``
block) so that its longer side is at least :data:`PREVIEW_MIN_PIXELS`, and
carries:

- the patient direction letters at the middle of each edge, from the
  detector axes in patient coordinates (:meth:`BeamGeometry.detector_frame`,
  IEC 61217): the right edge is where the column axis points, the bottom
  edge where the row axis points (components under :data:`LETTER_TOLERANCE`
  are left out, so a 10 degree couch rotation still reads ``L``);
- the image label and the gantry, collimator and couch angles (top left);
- a cross at the isocentre's projection (:data:`CROSS_RGB`);
- a scale bar (bottom left) whose length is a round number of mm in the
  isocentre plane (pixel spacing at the receptor times SAD / SID).

DVH plots (:func:`plot_dvhs`)
-----------------------------
Cumulative curves in percent of each ROI's volume, each in its ROI Display
Color; a colour whose relative luminance exceeds :data:`LIGHT_LUMINANCE`
(white, yellow: invisible or faint on white) keeps its colour and gets a dark
outline.  The legend sits outside the axes, to their right, so no curve and
no 100 % line is under it.  The dose axis runs to the largest maximum dose,
unless that is beyond :data:`DOSE_AXIS_D1_FACTOR` times the highest D1 (the
dose the hottest 1 % of an ROI receives): then it stops there, as in
brachytherapy, where the maximum lies at a source and says nothing.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rtforge.core.beam import BeamGeometry, direction_letters
from rtforge.errors import InvalidInputError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from rtforge.core.dvh import DVH

__all__ = [
    "PREVIEW_MIN_PIXELS",
    "LETTER_TOLERANCE",
    "CROSS_RGB",
    "SCALE_BAR_MM",
    "LIGHT_LUMINANCE",
    "DOSE_AXIS_D1_FACTOR",
    "EdgeLetters",
    "DrrPicture",
    "edge_letters",
    "annotate_drr",
    "DvhPlot",
    "relative_luminance",
    "plot_dvhs",
]

#: A preview's longer side is zoomed (by an integer factor) to at least this many pixels.
PREVIEW_MIN_PIXELS = 512
#: Direction letters leave out components under sin(22.5 degrees).
LETTER_TOLERANCE = math.sin(math.radians(22.5))
#: Colour of the isocentre cross (RGB).
CROSS_RGB = (0, 255, 255)
#: Colour of the scale bar (RGB); it has a one-pixel black border.
BAR_RGB = (255, 255, 255)
#: Scale bar lengths (mm at the isocentre) to choose from: the longest that
#: takes at most a quarter of the image width.
SCALE_BAR_MM = (5, 10, 20, 50, 100, 200, 500)
#: ROI colours lighter than this (relative luminance, 0-1) get a dark outline.
LIGHT_LUMINANCE = 0.7
#: The dose axis stops at this multiple of the highest D1 when the maximum is beyond it.
DOSE_AXIS_D1_FACTOR = 1.5

_CROSS_ARM = 10  # pixels each side of the centre, at the preview's zoom
_BAR_HEIGHT = 4  # pixels, border included on neither side
_MARGIN = 8  # pixels from the image edges
_HEADROOM = 0.03  # of the dose axis, right of the maximum dose


# ------------------------------------------------------------------ DRRs
@dataclass(frozen=True)
class EdgeLetters:
    """Patient direction letters at the four edges of an image."""

    left: str
    right: str
    top: str
    bottom: str


def edge_letters(geometry: BeamGeometry, *, tolerance: float = LETTER_TOLERANCE) -> EdgeLetters:
    """The patient directions the edges of a beam's eye view face.

    Parameters
    ----------
    geometry : BeamGeometry
    tolerance : float
        See :func:`rtforge.core.beam.direction_letters`.

    Returns
    -------
    EdgeLetters
        E.g. left ``R``, right ``L``, top ``H``, bottom ``F`` for HFS at gantry 0.
    """
    _, column_step, row_step = geometry.detector_frame()
    return EdgeLetters(left=direction_letters(-column_step, tolerance=tolerance),
                       right=direction_letters(column_step, tolerance=tolerance),
                       top=direction_letters(-row_step, tolerance=tolerance),
                       bottom=direction_letters(row_step, tolerance=tolerance))


@dataclass(frozen=True)
class DrrPicture:
    """An annotated preview (:func:`annotate_drr`) and where its marks are.

    ``isocenter`` is the ``(row, column)`` pixel of the cross's centre (None
    when the isocentre projects outside the image), ``scale_bar`` the bar's
    ``(row, first column, last column)`` of its middle line and ``scale_mm`` its
    length in mm at the isocentre.
    """

    rgb: np.ndarray
    zoom: int
    letters: EdgeLetters
    isocenter: tuple[int, int] | None
    scale_mm: float
    scale_bar: tuple[int, int, int]


def _zoom(rows: int, columns: int) -> int:
    return max(1, math.ceil(PREVIEW_MIN_PIXELS / max(rows, columns)))


def _angle(value: float) -> str:
    return f"{round(value, 1) + 0.0:g}"


def _render_text(rgb: np.ndarray, items: Sequence[tuple[float, float, str, str, str, float]]
                 ) -> np.ndarray:
    """``rgb`` with text drawn on it: ``(x, y, text, ha, va, size)`` in pixels from the
    top left, white with a black outline."""
    from matplotlib import patheffects
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows, columns, _ = rgb.shape
    dpi = 72  # one point is one pixel
    fig = Figure(figsize=(columns / dpi, rows / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    fig.figimage(rgb, xo=0, yo=0, origin="upper", resize=False)
    outline = [patheffects.withStroke(linewidth=3, foreground="black")]
    for x, y, text, ha, va, size in items:
        fig.text(x / columns, 1.0 - y / rows, text, ha=ha, va=va, fontsize=size, color="white",
                 path_effects=outline, family="DejaVu Sans")
    canvas.draw()
    out = np.asarray(canvas.buffer_rgba())[:, :, :3]
    if out.shape[:2] != (rows, columns):  # figure sizes round to whole pixels
        out = np.ascontiguousarray(out[:rows, :columns])
    return out.copy()


def annotate_drr(rgb: np.ndarray, geometry: BeamGeometry, label: str = "") -> DrrPicture:
    """Zoom a DRR preview and draw its orientation, label, angles, isocentre and scale.

    Parameters
    ----------
    rgb : ndarray of shape (rows, columns, 3), dtype uint8
        The preview at the DRR's own size (e.g.
        :func:`rtforge.io.rtimage.preview_rgb`).
    geometry : BeamGeometry
        The geometry the DRR was computed with (its rows and columns).
    label : str
        The image's label (a beam name), drawn above the angles.

    Returns
    -------
    DrrPicture

    Raises
    ------
    InvalidInputError
        If ``rgb`` is not uint8 of shape ``(geometry.rows, geometry.columns, 3)``.
    """
    if rgb.dtype != np.uint8 or rgb.shape != (geometry.rows, geometry.columns, 3):
        raise InvalidInputError(f"rgb must be uint8 of shape ({geometry.rows}, {geometry.columns}, 3), "
                         f"got {rgb.dtype} {rgb.shape}")
    zoom = _zoom(geometry.rows, geometry.columns)
    big = np.repeat(np.repeat(rgb, zoom, axis=0), zoom, axis=1)
    rows, columns, _ = big.shape
    letters = edge_letters(geometry)
    size = max(10.0, min(rows, columns) / 32)
    large = 1.5 * size
    mm_per_pixel = geometry.pixel_spacing[0] * geometry.sad / geometry.sid / zoom
    scale_mm = float(max([m for m in SCALE_BAR_MM if m / mm_per_pixel <= columns / 4]
                         or [SCALE_BAR_MM[0]]))
    bar_pixels = int(round(scale_mm / mm_per_pixel))
    bar_row = rows - _MARGIN - _BAR_HEIGHT // 2
    text = [
        (columns / 2, _MARGIN, letters.top, "center", "top", large),
        (columns / 2, rows - _MARGIN, letters.bottom, "center", "bottom", large),
        (_MARGIN, rows / 2, letters.left, "left", "center", large),
        (columns - _MARGIN, rows / 2, letters.right, "right", "center", large),
        (_MARGIN, _MARGIN, label or "DRR", "left", "top", size),
        (_MARGIN, _MARGIN + 1.4 * size,
         f"gantry {_angle(geometry.gantry_angle)}\N{DEGREE SIGN}  "
         f"coll {_angle(geometry.collimator_angle)}\N{DEGREE SIGN}  "
         f"couch {_angle(geometry.couch_angle)}\N{DEGREE SIGN}", "left", "top", size),
        (_MARGIN, bar_row - _BAR_HEIGHT, f"{scale_mm:g} mm at isocentre", "left", "bottom", size),
    ]
    out = _render_text(big, text)
    first, last = _MARGIN, min(columns - 1, _MARGIN + bar_pixels - 1)
    top = bar_row - _BAR_HEIGHT // 2
    out[top - 1:top + _BAR_HEIGHT + 1, first - 1:last + 2] = 0
    out[top:top + _BAR_HEIGHT, first:last + 1] = BAR_RGB
    iso = _draw_cross(out, geometry, zoom)
    return DrrPicture(rgb=out, zoom=zoom, letters=letters, isocenter=iso, scale_mm=scale_mm,
                      scale_bar=(bar_row, first, last))


def _draw_cross(out: np.ndarray, geometry: BeamGeometry, zoom: int) -> tuple[int, int] | None:
    """Draw the isocentre cross on the zoomed preview; its centre pixel, or None outside."""
    rows, columns, _ = out.shape
    r, c = geometry.project(geometry.isocenter)
    # DRR pixel p covers zoomed pixels p*zoom .. p*zoom + zoom - 1
    centre = (int(round((r + 0.5) * zoom - 0.5)), int(round((c + 0.5) * zoom - 0.5)))
    if not (0 <= centre[0] < rows and 0 <= centre[1] < columns):
        return None
    lo_r, hi_r = max(0, centre[0] - _CROSS_ARM), min(rows, centre[0] + _CROSS_ARM + 1)
    lo_c, hi_c = max(0, centre[1] - _CROSS_ARM), min(columns, centre[1] + _CROSS_ARM + 1)
    out[lo_r:hi_r, centre[1]] = CROSS_RGB
    out[centre[0], lo_c:hi_c] = CROSS_RGB
    return centre


# ------------------------------------------------------------------ DVHs
@dataclass(frozen=True)
class DvhPlot:
    """What :func:`plot_dvhs` drew: one line per plotted DVH (``names[n]`` is ``lines[n]``'s
    ROI), the ROI names drawn with a dark outline, and the dose axis's upper end (Gy)."""

    figure: Figure
    axes: Axes
    lines: tuple[Line2D, ...]
    names: tuple[str, ...]
    outlined: tuple[str, ...]
    dose_limit_gy: float


def relative_luminance(rgb: tuple[int, int, int]) -> float:
    """Relative luminance (WCAG 2, sRGB) of an 8-bit colour: 0 black .. 1 white."""
    def linear(v: int) -> float:
        c = v / 255.0
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(v) for v in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _dose_limit(dvhs: Sequence[DVH]) -> tuple[float, bool]:
    """The dose axis's upper end and whether it cuts the curves (see the module notes)."""
    top = max(d.max_gy for d in dvhs)
    d1 = max(d.dose_at_volume(1.0) for d in dvhs)
    if d1 > 0 and top > DOSE_AXIS_D1_FACTOR * d1:
        return DOSE_AXIS_D1_FACTOR * d1, True
    return (top if top > 0 else 1.0), False


def plot_dvhs(path: str | os.PathLike, dvhs: Sequence[DVH],
              colours: Sequence[tuple[int, int, int] | None], *, dose_name: str | None = None,
              structure_set_name: str | None = None,
              dose_limit_gy: float | None = None) -> DvhPlot:
    """Plot cumulative DVHs (percent of each ROI's volume) as an image file.

    Parameters
    ----------
    path : str or path-like
        The file to write; its suffix picks the format (``.png``, ``.pdf``, ``.svg``).
    dvhs : sequence of DVH
        One curve each; a DVH with no volume inside the dose grid is left out.
    colours : sequence of (int, int, int) or None
        One RGB colour (0-255, the ROI Display Color) per DVH, or None for
        matplotlib's next colour.  Light colours keep their colour and get a
        dark outline (:data:`LIGHT_LUMINANCE`).
    dose_name, structure_set_name : str, optional
        Named in the title (e.g. the dose's Series Description and the
        Structure Set Label).
    dose_limit_gy : float, optional
        The dose axis's upper end; by default the largest maximum dose, or
        :data:`DOSE_AXIS_D1_FACTOR` times the highest D1 when the maximum is
        beyond that (the axis label then says so).

    Returns
    -------
    DvhPlot
    """
    from matplotlib import patheffects
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 5.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    drawn = [(d, c) for d, c in zip(dvhs, colours, strict=True) if d.volume_cm3 > 0]
    lines, names, outlined = [], [], []
    for dvh, colour in drawn:
        rgb = None if colour is None else tuple(c / 255 for c in colour)
        (line,) = ax.plot(dvh.edges, 100 * dvh.cumulative / dvh.volume_cm3, color=rgb,
                          label=dvh.name, linewidth=1.8)
        if colour is not None and relative_luminance(colour) > LIGHT_LUMINANCE:
            line.set_path_effects([patheffects.Stroke(linewidth=3.6, foreground="0.2"),
                                   patheffects.Normal()])
            outlined.append(dvh.name)
        lines.append(line)
        names.append(dvh.name)
    cut, fixed = False, dose_limit_gy is not None
    if dose_limit_gy is None:
        dose_limit_gy, cut = _dose_limit([d for d, _ in drawn]) if drawn else (1.0, False)
    label = "dose (Gy)"
    if cut:
        top = max(d.max_gy for d, _ in drawn)
        label += (f"; axis to {DOSE_AXIS_D1_FACTOR:g} x the highest D1 (maximum "
                  f"{top:.4g} Gy off scale)")
    ax.set_xlabel(label)
    ax.set_ylabel("volume (%)")
    # a little room right of an automatic limit, so a fall-off there is not on the frame
    ax.set_xlim(0, dose_limit_gy * (1.0 if cut or fixed else 1.0 + _HEADROOM))
    ax.set_ylim(0, 101)
    ax.grid(True, alpha=0.3)
    title = "  \N{MIDDLE DOT}  ".join(
        f"{kind} {name!r}" for kind, name in (("RT Dose", dose_name),
                                              ("RT Structure Set", structure_set_name)) if name)
    if title:
        ax.set_title(title, fontsize="medium")
    if lines:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                  fontsize="small", frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    return DvhPlot(figure=fig, axes=ax, lines=tuple(lines), names=tuple(names),
                   outlined=tuple(outlined), dose_limit_gy=float(dose_limit_gy))
