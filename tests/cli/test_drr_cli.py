"""``rtforge drr`` in-process, as a user calls it: typed angles, a plan's beams, previews,
dciodvfy and bad input."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from rtforge.cli import main
from rtforge.io.rtimage import rt_image_geometry
from rtforge.io.validate import dciodvfy_available, validate_file
from rtforge.workflows.demo import PhantomSeries
from tests.datafiles import pydicom_file, shared_file

SMALL = ["--size", "24x32", "--pixel", "9", "-q"]


def _dcm(root: Path) -> list[Path]:
    return sorted(root.rglob("*.dcm"))


@pytest.fixture(scope="module")
def phantom_plan(phantom_patient: list[PhantomSeries], tmp_path_factory) -> Path:  # noqa: ANN001
    """The dicompyler plan moved onto the phantom: its Frame of Reference, an
    isocentre inside the phantom, two control points per beam."""
    ct = pydicom.dcmread(next(phantom_patient[0].folder.glob("*.dcm")), stop_before_pixels=True)
    ds = pydicom.dcmread(shared_file("dicompyler-example/rtplan.dcm"))
    ds = copy.deepcopy(ds)
    ds.FrameOfReferenceUID = ct.FrameOfReferenceUID
    for beam in ds.BeamSequence:
        beam.ControlPointSequence = beam.ControlPointSequence[:2]
        beam.NumberOfControlPoints = 2
        beam.ControlPointSequence[0].IsocenterPosition = [10.0, -5.0, 4.0]
    path = tmp_path_factory.mktemp("plan") / "plan.dcm"
    ds.save_as(path)
    return path


def test_typed_angles(phantom_patient, tmp_path, capsys) -> None:  # noqa: ANN001
    out, png = tmp_path / "out", tmp_path / "png"
    code = main(["drr", str(phantom_patient[0].folder), "--gantry", "0,90",
                 "--isocenter", "-10,20,5", "--couch", "10", "-o", str(out), "--png", str(png),
                 "--json", *SMALL])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert [i["gantry"] for i in report["images"]] == [0, 90]
    files = _dcm(out)
    assert len(files) == 2 and {str(p) for p in files} == {i["path"] for i in report["images"]}
    ds = pydicom.dcmread(report["images"][1]["path"])
    geo = rt_image_geometry(ds)
    assert (geo.gantry_angle, geo.couch_angle, geo.rows, geo.columns) == (90, 10, 24, 32)
    np.testing.assert_allclose(geo.isocenter, [-10, 20, 5])
    assert ds.SeriesInstanceUID == report["series_uid"]
    assert ds.RTImageLabel == "G90 C0 T10" and "ReferencedRTPlanSequence" not in ds
    assert "Siddon" in ds.DerivationDescription
    assert float(ds.RadiationMachineSSD) > 800  # the skin, found on the CT
    assert ds.pixel_array.max() > 60000  # the image's largest integral near 65535
    assert sorted(p.name for p in png.iterdir()) == ["001_G0_C0_T10.png", "002_G90_C0_T10.png"]


def test_plan_beams(phantom_patient, phantom_plan, tmp_path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "out"
    assert main(["drr", str(phantom_patient[1].folder), "--plan", str(phantom_plan),
                 "-o", str(out), "--png", str(tmp_path / "png"), *SMALL]) == 0
    text = capsys.readouterr().out
    assert "4 RT Image(s)" in text and "beam 1 '3 RAO'" in text
    labels = sorted(pydicom.dcmread(p).RTImageLabel for p in _dcm(out))
    assert labels == ["3 RAO", "4 AP", "5 LAO", "6 LPO"]
    assert len(list((tmp_path / "png").glob("*.png"))) == 4


def test_one_beam_trilinear(phantom_patient, phantom_plan, tmp_path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "out"
    assert main(["drr", str(phantom_patient[0].folder), "--plan", str(phantom_plan),
                 "--beam", "3", "--method", "trilinear", "--hu-window", "-500,3000",
                 "--sid", "1300", "-o", str(out), "--json", *SMALL]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["method"] == "trilinear" and len(report["images"]) == 1
    ds = pydicom.dcmread(report["images"][0]["path"])
    assert (ds.ReferencedBeamNumber, float(ds.GantryAngle), float(ds.RTImageSID)) == (3, 56, 1300)
    assert "HU window [-500, 3000]" in ds.DerivationDescription


@pytest.mark.interop
@pytest.mark.skipif(not dciodvfy_available(), reason="dciodvfy (dicom3tools) not installed")
def test_output_validates(phantom_patient, phantom_plan, tmp_path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "out"
    assert main(["drr", str(phantom_patient[0].folder), "--plan", str(phantom_plan), "--beam",
                 "1", "-o", str(out), *SMALL]) == 0
    assert main(["drr", str(phantom_patient[0].folder), "--gantry", "270", "--isocenter",
                 "0,0,0", "-o", str(out), *SMALL]) == 0
    capsys.readouterr()
    for path in _dcm(out):
        result = validate_file(path)
        assert result.dciodvfy_ran and result.ok, result.errors


@pytest.mark.parametrize(("args", "message"), [
    (["--gantry", "0", "--isocenter", "0,0,400"], "cannot belong to this CT"),
    (["--gantry", "0", "--isocenter", "0,0,0", "--sid", "0"], "SID must be a positive"),
    (["--gantry", "0", "--isocenter", "0,0,0", "--sid", "-5"], "SID must be a positive"),
    (["--gantry", "0", "--isocenter", "0,0,0", "--sid", "800"], "less than SAD"),
    (["--gantry", "0", "--isocenter", "0,0,0", "--pixel", "0"], "--pixel must be a positive"),
])
def test_bad_geometry(phantom_patient, tmp_path, capsys, args, message) -> None:  # noqa: ANN001
    code = main(["drr", str(phantom_patient[0].folder), *args, "-o", str(tmp_path / "o"),
                 "-q"])
    err = capsys.readouterr().err
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists() or not _dcm(tmp_path / "o")


def test_bad_plan_input(phantom_patient, phantom_plan, tmp_path, capsys) -> None:  # noqa: ANN001
    ct = str(phantom_patient[0].folder)
    assert main(["drr", ct, "--plan", str(phantom_plan), "--beam", "9", "-o",
                 str(tmp_path / "o")]) == 1
    assert "no beam 9 (beams: 1, 2, 3, 4)" in capsys.readouterr().err
    other = shared_file("dicompyler-example/rtplan.dcm")  # another patient's frame
    assert main(["drr", ct, "--plan", str(other), "--beam", "1", "-o",
                 str(tmp_path / "o")]) == 1
    assert "they are not registered" in capsys.readouterr().err
    far = pydicom_file("rtplan.dcm")  # no Frame of Reference; isocentre at z = -725 mm
    assert main(["drr", ct, "--plan", str(far), "-o", str(tmp_path / "o")]) == 1
    assert "cannot belong to this CT" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_no_ct(tmp_path, capsys) -> None:  # noqa: ANN001
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["drr", str(empty), "--gantry", "0", "--isocenter", "0,0,0", "-o",
                 str(tmp_path / "o")]) == 1
    assert "rtforge drr:" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "message"), [
    (["--gantry", "0"], "--gantry needs --isocenter"),
    (["--plan", "p.dcm", "--couch", "90"], "--couch goes with --gantry"),
    (["--gantry", "0", "--isocenter", "0,0,0", "--beam", "2"], "--beam goes with --plan"),
    (["--gantry", "0", "--plan", "p.dcm"], "not allowed with argument"),
    (["--isocenter", "0,0,0"], "one of the arguments --plan --gantry is required"),
    (["--gantry", "0", "--isocenter", "0,0,0", "--size", "512"], "ROWSxCOLUMNS"),
    (["--gantry", "zero", "--isocenter", "0,0,0"], "--gantry must be angles"),
    (["--gantry", "0", "--isocenter", "0,0"], "3 comma-separated numbers"),
])
def test_usage_errors(tmp_path, capsys, args, message) -> None:  # noqa: ANN001
    assert main(["drr", str(tmp_path), *args, "-o", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err


def test_uneven_series_is_resliced_first(tmp_path, capsys) -> None:  # noqa: ANN001
    """Unevenly spaced slices form no grid: the command reslices them, then casts."""
    from rtforge.core.phantom import sample_phantom, uneven_stack
    from rtforge.io.ct import write_ct_series

    stack = uneven_stack(size=24, spacing=12.0, gaps=(10.0,) * 4 + (20.0,) * 2 + (10.0,) * 4)
    write_ct_series(sample_phantom(stack), stack, tmp_path / "ct", derived=False,
                    overrides={"PatientID": "UNEVEN", "StudyInstanceUID": "1.2.3.4",
                               "FrameOfReferenceUID": "1.2.3.5"})
    assert main(["drr", str(tmp_path / "ct"), "--gantry", "90", "--isocenter", "0,0,0", "-o",
                 str(tmp_path / "o"), "--json", *SMALL]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"][0]["max_integral"] > 1


def test_cuda_without_a_gpu_is_a_clear_error(phantom_patient, tmp_path, capsys) -> None:  # noqa: ANN001
    from rtforge.core import drr_cuda

    if drr_cuda.available():
        pytest.skip("a GPU is present")
    assert main(["drr", str(phantom_patient[0].folder), "--gantry", "0", "--isocenter", "0,0,0",
                 "--device", "cuda", "-o", str(tmp_path / "o"), *SMALL]) == 1
    assert "finds no GPU" in capsys.readouterr().err


def test_default_pixel_spacing_fits_the_body_and_previews_are_annotated(
        phantom_patient, tmp_path, capsys) -> None:  # noqa: ANN001
    from PIL import Image

    out, png = tmp_path / "out", tmp_path / "png"
    assert main(["drr", str(phantom_patient[0].folder), "--gantry", "0,90",
                 "--isocenter", "-70,-10,20", "--size", "32x32", "-o", str(out), "--png",
                 str(png), "--json", "-q"]) == 0
    report = json.loads(capsys.readouterr().out)
    spacings = {tuple(i["pixel_spacing"]) for i in report["images"]}
    assert len(spacings) == 1 and next(iter(spacings))[0] > 5  # not the old 1 mm
    from rtforge.core.pictures import CROSS_RGB

    for image in report["images"]:
        ds = pydicom.dcmread(image["path"])
        integral = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        border = np.concatenate([integral[0], integral[-1], integral[:, 0], integral[:, -1]])
        assert integral.max() > 1.0 and border.max() < 0.05  # the body, all inside
        picture = np.asarray(Image.open(image["png"]).convert("RGB"))
        assert picture.shape == (512, 512, 3)  # 16x zoom
        geometry = rt_image_geometry(ds)
        r, c = (round((v + 0.5) * 16 - 0.5) for v in geometry.project(geometry.isocenter))
        cross = np.all(picture == CROSS_RGB, axis=-1)  # (a centre on a half pixel: +-1)
        assert cross[r - 1:r + 2, c - 8].any() and cross[r - 8, c - 1:c + 2].any()
    # an explicit --pixel is kept
    assert main(["drr", str(phantom_patient[0].folder), "--gantry", "0", "--isocenter", "0,0,0",
                 "-o", str(tmp_path / "o2"), "--json", *SMALL]) == 0
    assert json.loads(capsys.readouterr().out)["images"][0]["pixel_spacing"] == [9, 9]


@pytest.mark.interop
@pytest.mark.skipif(not dciodvfy_available(), reason="dciodvfy (dicom3tools) not installed")
def test_private_isocenter_block_from_flag_and_configuration(phantom_patient, tmp_path,  # noqa: ANN001
                                                             capsys) -> None:  # noqa: ANN001
    """iPlan's group 3273 is off by default, on with --private-isocenter or the configuration."""
    ct = str(phantom_patient[0].folder)
    geometry = ["--gantry", "90", "--isocenter", "-10,20,5"]
    config = tmp_path / "config.toml"
    config.write_text("[export]\nprivate_isocenter_block = true\n")
    for name, extra in (("default", []), ("flag", ["--private-isocenter"]),
                        ("config", ["--config", str(config)])):
        assert main(["drr", ct, *geometry, "-o", str(tmp_path / name), *SMALL, *extra]) == 0
    capsys.readouterr()
    for name in ("default", "flag", "config"):
        (path,) = _dcm(tmp_path / name)
        ds = pydicom.dcmread(path)
        has_block = any(tag.group == 0x3273 for tag in ds.keys())
        assert has_block == (name != "default"), name
        if has_block:
            block = ds.private_block(0x3273, "RTFORGE_Conversion")
            np.testing.assert_allclose([float(v) for v in block[0x00].value], [-10, 20, 5])
            assert block[0x01].value == "HFS"
        result = validate_file(path)
        assert result.dciodvfy_ran and result.ok, result.errors
    config.write_text("[export]\nprivate_isocenter_block = 'yes'\n")
    assert main(["drr", ct, *geometry, "-o", str(tmp_path / "bad"), *SMALL,
                 "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "private_isocenter_block must be true or false" in err and err.count("\n") == 1
