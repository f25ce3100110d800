"""Annotated DRR previews and DVH plots: marks at the pixels geometry puts them, letters from
the beam geometry, ROI colours, legend placement, the dose axis, and a body that fits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgb

from rtforge.core.beam import BeamGeometry
from rtforge.core.drr import compute_drr, prepare_volume
from rtforge.core.dvh import DVH
from rtforge.core.geometry import Volume
from rtforge.core.phantom import axial_stack, sample_phantom
from rtforge.core.pictures import (
    CROSS_RGB,
    annotate_drr,
    edge_letters,
    plot_dvhs,
)
from rtforge.errors import InvalidInputError
from rtforge.io.rtimage import DrrRequest, fit_to_body
from rtforge.workflows.demo import PHANTOM_BEAMS, TARGET_CENTRE


# ------------------------------------------------------------- letters
@pytest.mark.parametrize(("gantry", "couch", "position", "expected"), [
    # supine head first, seen from the front: the patient's left on the image right
    (0, 0, "HFS", ("R", "L", "H", "F")),
    # seen from the patient's left (source there): anterior on the left
    (90, 0, "HFS", ("A", "P", "H", "F")),
    (270, 0, "HFS", ("P", "A", "H", "F")),
    # feet first: left and right swap, and so do head and feet
    (0, 0, "FFS", ("L", "R", "F", "H")),
    # prone, seen from the back: the patient's left on the image left
    (0, 0, "HFP", ("L", "R", "H", "F")),
    # couch turned 90 degrees (counter-clockwise from above): the head toward -Xf (image left)
    (0, 90, "HFS", ("H", "F", "L", "R")),
    # a 10 degree couch still reads as the main directions
    (0, 10, "HFS", ("R", "L", "H", "F")),
])
def test_edge_letters_follow_the_beam(gantry: float, couch: float, position: str,
                                      expected: tuple[str, str, str, str]) -> None:
    letters = edge_letters(BeamGeometry(gantry, (0, 0, 0), couch_angle=couch,
                                        patient_position=position))
    assert (letters.left, letters.right, letters.top, letters.bottom) == expected


def test_oblique_letters_have_both_directions() -> None:
    letters = edge_letters(BeamGeometry(45, (0, 0, 0)))
    assert set(letters.right) == {"L", "P"} and set(letters.left) == {"R", "A"}


# ------------------------------------------------------------- preview
GEOMETRY = BeamGeometry(0, (5, 6, 7), rows=64, columns=80, pixel_spacing=(2, 2),
                        image_offset=(21, -11))  # isocentre at pixel (row 26, column 29)


def _plain() -> np.ndarray:
    gradient = np.linspace(40, 120, GEOMETRY.columns).astype(np.uint8)
    return np.repeat(np.tile(gradient, (GEOMETRY.rows, 1))[:, :, None], 3, axis=2)


def test_preview_marks_the_isocentre_where_it_projects() -> None:
    picture = annotate_drr(_plain(), GEOMETRY, "AP")
    zoom = picture.zoom
    assert zoom == 7 and picture.rgb.shape == (64 * 7, 80 * 7, 3)
    # receptor (0, 0) is 21 mm left of and 11 mm below the image centre: column
    # 39.5 - 21 / 2 = 29, row 31.5 - 11 / 2 = 26; the centre of that pixel's block
    row, col = 26 * zoom + 3, 29 * zoom + 3
    assert picture.isocenter == (row, col)
    rgb = picture.rgb
    for r, c in ((row, col), (row - 10, col), (row + 10, col), (row, col - 10), (row, col + 10)):
        assert tuple(rgb[r, c]) == CROSS_RGB
    assert tuple(rgb[row + 14, col]) != CROSS_RGB and tuple(rgb[row + 3, col + 3]) != CROSS_RGB


def test_preview_scale_bar_is_its_length_at_the_isocentre() -> None:
    picture = annotate_drr(_plain(), GEOMETRY, "AP")
    # one zoomed pixel is 2 mm * SAD / SID / 7 at the isocentre
    mm_per_pixel = 2.0 * 1000.0 / 1500.0 / picture.zoom
    row, first, last = picture.scale_bar
    white = np.all(picture.rgb[row] == 255, axis=-1)
    run = np.flatnonzero(white[first:])
    length = int(np.flatnonzero(np.diff(run) != 1)[0] + 1) if np.any(np.diff(run) != 1) \
        else run.size
    assert run[0] == 0
    assert length == pytest.approx(picture.scale_mm / mm_per_pixel, abs=1)
    assert picture.rgb.shape[1] / 8 <= length <= picture.rgb.shape[1] / 4


def test_preview_writes_text_where_the_letters_and_label_go() -> None:
    plain = np.repeat(np.repeat(_plain(), 7, axis=0), 7, axis=1)
    picture = annotate_drr(_plain(), GEOMETRY, "AP")
    changed = np.any(picture.rgb != plain, axis=-1)
    rows, cols = changed.shape
    regions = {
        "top letter": changed[:40, cols // 2 - 30:cols // 2 + 30],
        "bottom letter": changed[rows - 40:, cols // 2 - 30:cols // 2 + 30],
        "left letter": changed[rows // 2 - 30:rows // 2 + 30, :40],
        "right letter": changed[rows // 2 - 30:rows // 2 + 30, cols - 40:],
        "label and angles": changed[:50, :150],
    }
    for name, region in regions.items():
        assert region.sum() > 20, name
    # away from every mark nothing is drawn
    assert not changed[rows // 4:rows // 4 + 40, cols - 150:cols - 100].any()


def test_preview_rejects_a_wrong_size() -> None:
    with pytest.raises(InvalidInputError, match="uint8 of shape"):
        annotate_drr(np.zeros((10, 10, 3), np.uint8), GEOMETRY)


# ------------------------------------------------------------- field of view
def test_demo_geometry_shows_the_whole_body() -> None:
    """The demo's beams (256 x 256): the pixel spacing chosen leaves no body on the border,
    where the old fixed 2 mm cut the body off."""
    stack = axial_stack(size=96, spacing=358.0 / 96, nslices=24, slice_spacing=6.0)
    volume = Volume(sample_phantom(stack), stack.to_grid())
    geometries = [BeamGeometry(gantry, TARGET_CENTRE, collimator_angle=collimator,
                               couch_angle=couch, rows=256, columns=256, pixel_spacing=(2, 2))
                  for _, gantry, collimator, couch, _ in PHANTOM_BEAMS]
    fitted = [r.geometry for r in fit_to_body(volume, [DrrRequest(g) for g in geometries])]
    prepared = prepare_volume(volume)
    body = 0.05  # a line integral of μ: about 2.5 mm of water
    reach = []
    for before, after, image in zip(geometries, fitted, compute_drr(prepared, fitted),
                                    strict=True):
        assert (after.rows, after.columns, after.image_offset) == (256, 256, (0.0, 0.0))
        assert after.pixel_spacing == fitted[0].pixel_spacing  # one spacing for the series
        border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
        assert image.max() > 10 * body and border.max() < body, before
        rows, cols = np.nonzero(image > body)
        reach.append(max(np.abs(rows - 127.5).max(), np.abs(cols - 127.5).max()) / 127.5)
    # and not much larger than needed: in the widest view the body reaches 85 % of the half-width
    assert max(reach) > 0.85, reach
    old_borders = [np.concatenate([i[0], i[-1], i[:, 0], i[:, -1]]).max()
                   for i in compute_drr(prepared, geometries)]
    assert max(old_borders) > body  # the old 2 mm pixels cut the body


# ------------------------------------------------------------- DVH plots
def _dvh(name: str, doses: np.ndarray, volumes: np.ndarray, width: float = 0.1) -> DVH:
    """A DVH of point volumes at ``doses`` (Gy) on bins of ``width``."""
    top = float(doses.max())
    edges = np.arange(int(top / width) + 2) * width
    differential, _ = np.histogram(doses, bins=edges, weights=volumes)
    return DVH(edges, differential, float(doses.min()), float(np.average(doses, weights=volumes)),
               top, name=name)


@pytest.fixture
def external() -> list[DVH]:
    rng = np.random.default_rng(3)
    return [_dvh(name, rng.uniform(lo, hi, 2000), np.full(2000, 0.01))
            for name, lo, hi in (("PTV", 58, 62), ("Body", 0, 63), ("Cord", 0, 40),
                                 ("Couch", 0, 5))]


def test_dvh_plot_uses_display_colours_outside_legend_and_title(external: list[DVH],
                                                                tmp_path: Path) -> None:
    colours = [(255, 0, 0), (255, 255, 255), (255, 255, 0), None]
    plot = plot_dvhs(tmp_path / "dvh.png", external, colours, dose_name="Plan dose",
                     structure_set_name="PELVIS")
    assert (tmp_path / "dvh.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot.names == ("PTV", "Body", "Cord", "Couch")
    for line, colour in zip(plot.lines, colours[:3], strict=False):
        assert to_rgb(line.get_color()) == pytest.approx(tuple(c / 255 for c in colour))
    # white and yellow are kept but outlined; red is not
    assert plot.outlined == ("Body", "Cord")
    assert plot.lines[1].get_path_effects() and not plot.lines[0].get_path_effects()
    # the legend lies right of the axes: it covers no curve and not the 100 % line
    renderer = plot.figure.canvas.get_renderer()
    legend = plot.axes.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == list(plot.names)
    assert legend.get_window_extent(renderer).x0 >= plot.axes.get_window_extent(renderer).x1
    title = plot.axes.get_title()
    assert "Plan dose" in title and "PELVIS" in title
    # external beam: the axis runs to the maximum dose
    top = max(d.max_gy for d in external)
    assert plot.dose_limit_gy == pytest.approx(top)
    assert top < plot.axes.get_xlim()[1] < 1.05 * top


def test_dvh_plot_dose_axis_stops_near_d1_for_brachytherapy(tmp_path: Path) -> None:
    # 1/r^2 around a source: most of the volume at a few Gy, a sliver near the source at
    # hundreds of times that
    rng = np.random.default_rng(5)
    r = rng.uniform(2.0, 30.0, 20000)
    doses = 600.0 / r ** 2 + 0.5
    dvh = _dvh("CTV", doses, r ** 2 / 1000)  # shells: volume grows with r^2
    plot = plot_dvhs(tmp_path / "brachy.png", [dvh], [(0, 200, 0)])
    limit = plot.axes.get_xlim()[1]
    assert limit == pytest.approx(1.5 * dvh.dose_at_volume(1.0))
    assert limit < dvh.max_gy / 2 and "off scale" in plot.axes.get_xlabel()
    assert plot_dvhs(tmp_path / "b.png", [dvh], [None],
                     dose_limit_gy=40).axes.get_xlim() == (0, 40)
