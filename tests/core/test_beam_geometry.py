"""BeamGeometry: IEC 61217 placements checked against what a physicist knows about
each setup (source side, which patient side is where on the image), plus the
RT Image conventions of PS3.3 C.8.8.2 and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from rtforge.core.beam import BeamGeometry, PatientPosition, aperture_outline
from rtforge.core.geometry import BeamGeometry as ReExported
from rtforge.errors import GeometryError

ISO = np.array([12.0, -7.0, 30.0])
LEFT, POSTERIOR, HEAD = np.eye(3)  # LPS unit vectors


def geometry(gantry: float = 0, couch: float = 0, position: str = "HFS",
             collimator: float = 0) -> BeamGeometry:
    return BeamGeometry(gantry, ISO, collimator_angle=collimator, couch_angle=couch,
                        rows=101, columns=121, pixel_spacing=(1.0, 1.0),
                        patient_position=position)


def image_direction(geo: BeamGeometry, patient_direction: np.ndarray) -> np.ndarray:
    """(d_row, d_column) of a small step from the isocentre along a patient direction."""
    centre = geo.project(ISO)
    return geo.project(ISO + 10.0 * patient_direction) - centre


def test_reexported_from_geometry() -> None:
    assert ReExported is BeamGeometry


def test_hfs_gantry_0_source_anterior_left_on_the_right_head_on_top() -> None:
    geo = geometry(0)
    np.testing.assert_allclose(geo.source, ISO - 1000 * POSTERIOR, atol=1e-9)
    assert image_direction(geo, LEFT)[1] > 0 and abs(image_direction(geo, LEFT)[0]) < 1e-9
    assert image_direction(geo, HEAD)[0] < 0 and abs(image_direction(geo, HEAD)[1]) < 1e-9
    # The beam axis hits the image centre.
    np.testing.assert_allclose(geo.project(ISO), [50.0, 60.0], atol=1e-9)


@pytest.mark.parametrize(("gantry", "side"), [(0, -POSTERIOR), (90, LEFT), (180, POSTERIOR),
                                              (270, -LEFT)])
def test_hfs_source_side(gantry: float, side: np.ndarray) -> None:
    geo = geometry(gantry)
    np.testing.assert_allclose(geo.source, ISO + 1000 * side, atol=1e-9)
    np.testing.assert_allclose(geo.beam_direction, -side, atol=1e-12)


def test_hfs_gantry_90_head_on_top_posterior_on_the_right() -> None:
    geo = geometry(90)
    assert image_direction(geo, HEAD)[0] < 0
    assert image_direction(geo, POSTERIOR)[1] > 0


@pytest.mark.parametrize(("position", "source_side", "left_column_sign", "head_row_sign"), [
    ("HFS", -POSTERIOR, +1, -1),  # supine: the source over the chest
    ("HFP", POSTERIOR, -1, -1),  # prone: the source over the back, the left on the image left
    ("FFS", -POSTERIOR, -1, +1),  # feet to the gantry: the head at the bottom
    ("FFP", POSTERIOR, +1, +1),
])
def test_positions_at_gantry_0(position: str, source_side: np.ndarray, left_column_sign: int,
                               head_row_sign: int) -> None:
    geo = geometry(0, position=position)
    np.testing.assert_allclose(geo.source, ISO + 1000 * source_side, atol=1e-9)
    assert np.sign(image_direction(geo, LEFT)[1]) == left_column_sign
    assert np.sign(image_direction(geo, HEAD)[0]) == head_row_sign


@pytest.mark.parametrize(("position", "source_side"), [
    ("HFDL", -LEFT),  # lying on the left side: the right side faces up
    ("HFDR", LEFT),
    ("FFDL", -LEFT),
    ("FFDR", LEFT),
])
def test_decubitus_source_side_at_gantry_0(position: str, source_side: np.ndarray) -> None:
    geo = geometry(0, position=position)
    np.testing.assert_allclose(geo.source, ISO + 1000 * source_side, atol=1e-9)
    head_row = image_direction(geo, HEAD)[0]
    assert head_row < 0 if position.startswith("HF") else head_row > 0


def test_couch_90_turns_the_head_to_the_image_left() -> None:
    """Couch 90: the table turned counter-clockwise seen from above, so a supine
    head-first patient's head points to -Xf, the image's left at gantry 0."""
    geo = geometry(0, couch=90)
    assert image_direction(geo, HEAD)[1] < 0 and abs(image_direction(geo, HEAD)[0]) < 1e-9
    assert image_direction(geo, LEFT)[0] < 0  # the left is now toward the gantry: the top
    np.testing.assert_allclose(geo.source, ISO - 1000 * POSTERIOR, atol=1e-9)


def test_eccentric_angle_adds_to_the_couch() -> None:
    a = BeamGeometry(40, ISO, couch_angle=30, table_top_eccentric_angle=15)
    b = BeamGeometry(40, ISO, couch_angle=45)
    np.testing.assert_allclose(a.gantry_to_patient, b.gantry_to_patient, atol=1e-12)


def test_collimator_rotates_the_field_not_the_image() -> None:
    a, b = geometry(30), geometry(30, collimator=90)
    np.testing.assert_allclose(a.pixel_positions(), b.pixel_positions())
    # An X-jaw point (10, 0) mm at the isocentre: on +Xr at collimator 0, on +Yr
    # (toward the top of the image) at collimator 90 (counter-clockwise seen
    # from the source).
    np.testing.assert_allclose(a.beam_limiting_device_to_pixel([10, 0]), [50, 75], atol=1e-9)
    np.testing.assert_allclose(b.beam_limiting_device_to_pixel([10, 0]), [35, 60], atol=1e-9)


def test_rt_image_conventions() -> None:
    geo = BeamGeometry(0, ISO, rows=4, columns=6, pixel_spacing=(0.5, 0.8), sad=1000, sid=1600)
    assert geo.receptor_translation == (0.0, 0.0, -600.0)
    assert geo.rt_image_position == pytest.approx((-1.25, 1.2))  # (-(C-1)/2 dc, +(R-1)/2 dr)
    assert geo.image_plane_pixel_spacing == (0.8, 0.5)  # row\column
    corner, dc, dr = geo.detector_frame()
    # HFS gantry 0: the receptor is 600 mm posterior of the isocentre; column
    # steps along +x (left), row steps toward the feet.
    np.testing.assert_allclose(corner, ISO + [-1.25, 600.0, 1.2], atol=1e-9)
    np.testing.assert_allclose(dc, [0.5, 0, 0], atol=1e-12)
    np.testing.assert_allclose(dr, [0, 0, -0.8], atol=1e-12)
    pos = geo.pixel_positions()
    assert pos.shape == (4, 6, 3)
    np.testing.assert_allclose(pos[3, 5], corner + 5 * dc + 3 * dr)


def test_image_offset_moves_the_image() -> None:
    geo = BeamGeometry(0, ISO, rows=3, columns=3, pixel_spacing=(1, 1), image_offset=(15, -9))
    assert geo.rt_image_position == (14.0, -8.0)
    np.testing.assert_allclose(geo.project(ISO), [1 - 9.0, 1 - 15.0])


def test_fitted_to_field() -> None:
    geo = BeamGeometry(0, ISO, rows=512, columns=512, pixel_spacing=(1.5, 1.5))
    fit = geo.fitted_to_field((-20, 60, -30, 30), margin_mm=10)
    # x: 60 - -20 + 2 * 10 = 100 mm at the isocentre, 150 mm at the receptor: 101
    # columns of 1.5 mm; y: 80 mm, 120 mm: 81 rows.
    assert (fit.rows, fit.columns) == (81, 101)
    assert fit.image_offset == pytest.approx((30.0, 0.0))
    np.testing.assert_allclose(fit.beam_limiting_device_to_pixel([60 + 10, 30 + 10]), [0, 100],
                               atol=1e-9)
    with pytest.raises(GeometryError, match="empty"):
        geo.fitted_to_field((5, 5, 0, 1), 0)


def test_aperture_outline_staircase() -> None:
    boundaries = np.array([-10.0, 0.0, 10.0, 20.0])
    positions = np.array([-5.0, -8.0, 0.0, 5.0, 6.0, 0.0])  # pair 3 closed
    polygons = aperture_outline((-50, 50, -50, 50), 0, boundaries, positions)
    assert len(polygons) == 1
    np.testing.assert_allclose(polygons[0], [[-5, -10], [-5, 0], [-8, 0], [-8, 10], [6, 10],
                                             [6, 0], [5, 0], [5, -10], [-5, -10]])
    # MLCY: the same opening with the axes exchanged; jaws clip it.
    clipped = aperture_outline((-5, 5, -6, 6), 1, boundaries, positions)
    assert np.all(np.abs(clipped[0][:, 1]) <= 6) and np.all(np.abs(clipped[0][:, 0]) <= 5)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"sid": 900}, "less than SAD"),
    ({"sid": 0}, "SID must be a positive"),
    ({"sid": -1500}, "SID must be a positive"),
    ({"sad": 0}, "SAD must be a positive"),
    ({"rows": 0}, "rows"),
    ({"pixel_spacing": (1, 0)}, "pixel_spacing"),
    ({"gantry_angle": float("nan")}, "gantry_angle"),
    ({"isocenter": (0, 0)}, "isocenter"),
    ({"isocenter": (0, float("inf"), 0)}, "isocenter"),
    ({"patient_position": "SITTING"}, "not supported"),
])
def test_bad_geometry(kwargs: dict, message: str) -> None:
    args = {"gantry_angle": 0, "isocenter": (0, 0, 0), **kwargs}
    with pytest.raises(GeometryError, match=message):
        BeamGeometry(**args)


def test_patient_position_parse_and_equality() -> None:
    assert PatientPosition.parse(" hfs ") is PatientPosition.HFS
    assert geometry(10) == geometry(370)
    assert geometry(10) != geometry(11)
    with pytest.raises(GeometryError, match="behind the source"):
        geometry(0).project(ISO - 2000 * POSTERIOR)
