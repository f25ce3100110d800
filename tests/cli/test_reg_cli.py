"""``rtforge reg``: a rigid registration between two series, read back, dciodvfy, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid
from scipy.spatial.transform import Rotation

from rtforge.cli import main
from rtforge.io.registration import read_registration
from rtforge.io.validate import dciodvfy_available, validate_file
from rtforge.workflows.demo import PhantomSeries


def _rigid() -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = Rotation.from_euler("xyz", (3.0, -7.0, 20.0), degrees=True).as_matrix()
    m[:3, 3] = (12.5, -3.0, 40.0)
    return m


MATRIX = _rigid()


def _moving(source: PhantomSeries, folder: Path, *, other_study: bool) -> Path:
    """A copy of ``source`` in its own Frame of Reference (and study, if asked)."""
    folder.mkdir(parents=True)
    frame, study = generate_uid(), generate_uid()
    for path in sorted(source.folder.glob("*.dcm")):
        ds = dcmread(path)
        ds.FrameOfReferenceUID = frame
        if other_study:
            ds.StudyInstanceUID = study
        ds.save_as(folder / path.name)
    return folder


def _dcm(root: Path) -> list[Path]:
    return sorted(root.rglob("*.dcm"))


@pytest.mark.interop
@pytest.mark.skipif(not dciodvfy_available(), reason="dciodvfy (dicom3tools) not installed")
@pytest.mark.parametrize("other_study", [False, True], ids=["same study", "other study"])
def test_reg_writes_a_valid_registration(phantom_patient: list[PhantomSeries], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str],
                                         other_study: bool) -> None:
    fixed = phantom_patient[0].folder
    moving = _moving(phantom_patient[1], tmp_path / "moving", other_study=other_study)
    text = ",".join(f"{v:.15g}" for v in MATRIX.ravel())
    assert main(["reg", "--fixed", str(fixed), "--moving", str(moving), "--matrix", text,
                 "-o", str(tmp_path / "out"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (path,) = _dcm(tmp_path / "out")
    assert str(path) == report["path"]
    fixed_ds = dcmread(next(fixed.glob("*.dcm")), stop_before_pixels=True)
    moving_ds = dcmread(next(moving.glob("*.dcm")), stop_before_pixels=True)
    # grouped by patient like every writer: OUT/<PatientID>/<Study>/<Series>/<SOP>.dcm
    assert path.relative_to(tmp_path / "out").parts[:2] == (fixed_ds.PatientID,
                                                            fixed_ds.StudyInstanceUID)
    reg = read_registration(path)
    assert reg.frame_of_reference_uid == fixed_ds.FrameOfReferenceUID
    np.testing.assert_allclose(reg.matrix(moving_ds.FrameOfReferenceUID), MATRIX, atol=1e-9)
    first, second = reg.registrations
    assert len(first.images) == len(_dcm(fixed)) and len(second.images) == len(_dcm(moving))
    assert {i.sop_instance_uid for i in second.images} == {
        dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in _dcm(moving)}
    ds = dcmread(path)
    assert ("StudiesContainingOtherReferencedInstancesSequence" in ds) == other_study
    result = validate_file(path)
    assert result.dciodvfy_ran and result.iod == "SpatialRegistration"
    assert result.errors == [], result.errors


def test_reg_matrix_file_and_bad_input(phantom_patient: list[PhantomSeries], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    fixed = str(phantom_patient[0].folder)
    moving = str(_moving(phantom_patient[1], tmp_path / "moving", other_study=False))
    out = tmp_path / "out"
    matrix_file = tmp_path / "m.txt"
    np.savetxt(matrix_file, MATRIX)
    assert main(["reg", "--fixed", fixed, "--moving", moving, "--matrix-file", str(matrix_file),
                 "-o", str(out), "-q"]) == 0
    (path,) = _dcm(out)
    np.testing.assert_allclose(read_registration(path).registrations[1].matrix, MATRIX,
                               atol=1e-9)
    capsys.readouterr()

    scaled = ",".join(str(v) for v in np.diag([1.0, 1.0, 1.1, 1.0]).ravel())
    bad_file = tmp_path / "bad.txt"
    bad_file.write_text("1 0 0 0\n0 1 0 0\n0 0 1\n")
    for args, message in (
            (["--moving", moving, "--matrix", scaled], "--matrix is not rigid"),
            (["--moving", moving, "--matrix-file", str(bad_file)], "holds 11"),
            (["--moving", fixed, "--matrix", "1,0,0,0,0,1,0,0,0,0,1,0,5,0,0,1"], "last row"),
            (["--moving", fixed, "--matrix", ",".join(str(v) for v in np.eye(4).ravel())],
             "share one Frame of Reference")):
        assert main(["reg", "--fixed", fixed, *args, "-o", str(tmp_path / "none")]) == 1, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
        assert not (tmp_path / "none").exists()
    assert main(["reg", "--fixed", fixed, "--moving", moving, "--matrix", "1,0,0",
                 "-o", str(tmp_path / "none")]) == 2  # usage: 16 numbers
    assert "--matrix must be 16 comma-separated numbers" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_reg_help_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reg", "--help"]) == 0
    assert "rtforge reg --fixed ct/ --moving mr/ --matrix" in capsys.readouterr().out
