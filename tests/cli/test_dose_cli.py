"""``rtforge dvh`` and ``rtforge dose``, in-process."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import Dataset

from rtforge.cli import main
from rtforge.core.contours import Contour, Structure
from rtforge.core.geometry import Grid, Volume
from rtforge.io.rtdose import PlanReference, build_dose_grid, read_rtdose, write_rtdose
from rtforge.io.rtstruct import build_rtstruct, write_rtstruct
from rtforge.io.uids import new_uid
from tests.datafiles import pydicom_file


def _circle(r: float, z: float) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    return np.c_[r * np.cos(t), r * np.sin(t), np.full(64, z)]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("dosecli")
    frame = str(new_uid())
    reference = Dataset()
    reference.PatientName, reference.PatientID = "Cli^Dose", "CLI01"
    reference.StudyInstanceUID, reference.FrameOfReferenceUID = str(new_uid()), frame
    levels = np.arange(-10.0, 10.1, 2.0)
    target = Structure(1, "PTV", tuple(Contour(_circle(8, z)) for z in levels),
                       interpreted_type="PTV", colour=(255, 0, 0))
    ring = Structure(2, "Ring", tuple(Contour(c) for z in levels
                                      for c in (_circle(15, z), _circle(10, z))),
                     colour=(0, 128, 255))
    ss = build_rtstruct([target, ring], frame_of_reference_uid=frame, source=reference).dataset
    struct = write_rtstruct(ss, root, flat=True)
    grid = Grid((21, 21, 21), origin=(-20.0, -20.0, -20.0), spacing=(2.0, 2.0, 2.0))
    k, j, i = np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij")
    dose = Volume(10.0 + 0.2 * (i - 10) + 0.1 * (k - 10), grid)
    plan = PlanReference(str(new_uid()), 1, (1,))
    a = build_dose_grid(dose, summation_type="BEAM", plans=[plan], reference=ss).dataset
    plan_b = PlanReference(plan.sop_instance_uid, 1, (2,))
    b = build_dose_grid(dose, summation_type="BEAM", plans=[plan_b], reference=ss).dataset
    return {"struct": struct, "dose": write_rtdose(a, root / "a.dcm"),
            "dose_b": write_rtdose(b, root / "b.dcm"), "root": root}


def test_dvh_table_outputs(files: dict[str, Path], tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    out, table, png = tmp_path / "dvh.dcm", tmp_path / "dvh.csv", tmp_path / "dvh.png"
    code = main(["dvh", "--dose", str(files["dose"]), "--struct", str(files["struct"]),
                 "--out", str(out), "--csv", str(table), "--plot", str(png), "--json",
                 "--end-cap", "full"])  # 11 planes 2 mm apart, each a full 2 mm slab
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["end_cap"], report["slab_mm"]) == ("full", pytest.approx(2.0))
    ptv, ring = report["rois"]
    area = 0.5 * 64 * 64 * math.sin(2 * math.pi / 64)
    assert ptv["volume_cm3"] == pytest.approx(area * 22 / 1000, rel=1e-3)
    assert ptv["mean_gy"] == pytest.approx(10.0, abs=1e-3)  # symmetric about the centre
    assert ring["volume_cm3"] < 0.5 * 64 * 225 * math.sin(2 * math.pi / 64) * 22 / 1000
    back = read_rtdose(out)
    assert [d.roi_number for d in back.dvhs] == [1, 2] and back.volume is None
    assert table.read_text().startswith("dose_gy,PTV (cm3),Ring (cm3)")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["dvh", "--dose", str(files["dose"]), "--struct", str(files["struct"]),
                 "--roi", "PTV"]) == 0
    text = capsys.readouterr().out
    assert "PTV" in text and "Ring" not in text and "D95 Gy" in text


def test_dvh_errors(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dvh", "--dose", str(files["dose"]), "--struct", str(files["struct"]),
                 "--roi", "Nope"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Nope" in err
    assert main(["dvh", "--dose", str(files["struct"]), "--struct", str(files["struct"])]) == 1
    assert main(["dvh", "--struct", str(files["struct"])]) == 2


def test_dose_info_sum_requantize(files: dict[str, Path], tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dose", "info", str(files["dose"]), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["shape_kji"] == [21, 21, 21] and info["bits"] == 32
    assert info["summation_type"] == "BEAM"
    total = tmp_path / "plan.dcm"
    assert main(["dose", "sum", str(files["dose"]), str(files["dose_b"]), "-o", str(total),
                 "--grid", "finest", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["summation_type"] == "PLAN"
    summed = read_rtdose(total)
    single = read_rtdose(files["dose"])
    np.testing.assert_allclose(summed.volume.array, 2 * single.volume.array, atol=1e-6)
    assert summed.plans[0].sop_instance_uid == single.plans[0].sop_instance_uid
    small = tmp_path / "dose16.dcm"
    assert main(["dose", "requantize", str(files["dose"]), "-o", str(small), "--bits", "16"]) == 0
    capsys.readouterr()
    requantized = read_rtdose(small)
    assert requantized.bits == 16
    assert np.abs(requantized.volume.array - single.volume.array).max() <= \
        requantized.scaling / 2 * (1 + 1e-9) + 1e-12
    assert main(["dose", "requantize", str(files["dose"]), "-o", str(small), "--bits", "8"]) == 2


def test_dose_info_reads_like_a_report_and_keeps_the_frame_direction(tmp_path, capsys) -> None:
    """A negative Grid Frame Offset Vector runs the frames along -z; info says so."""
    ds = pydicom.dcmread(pydicom_file("rtdose.dcm"))
    n = int(ds.NumberOfFrames)
    ds.GridFrameOffsetVector = [-5.0 * k for k in range(n)]
    path = tmp_path / "down.dcm"
    ds.save_as(path)
    assert main(["dose", "info", str(path)]) == 0
    text = capsys.readouterr().out
    assert "frames 5 mm apart along -z (Grid Frame Offset Vector 0 to -70 mm, step -5)" in text
    assert "None" not in text and "{" not in text and "[" not in text
    assert main(["dose", "info", "--json", str(path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["frame_direction"] == [0.0, 0.0, -1.0]
    assert info["grid_frame_offsets_mm"] == [0.0, -70.0]


# ------------------------------------------------- CSV, plot and output paths (issues 16, 19)
def _csv(path: Path) -> tuple[list[str], np.ndarray]:
    lines = path.read_text().splitlines()
    return lines[0].split(","), np.array([[float(v) for v in line.split(",")]
                                          for line in lines[1:]])


def _dvhs(dose: Path, struct: Path, bin_width: float = 0.01) -> list:
    from rtforge.core.dvh import compute_dvhs
    from rtforge.io.rtstruct import read_rtstruct

    return compute_dvhs(read_rtdose(dose).volume, read_rtstruct(struct).structures,
                        bin_width_gy=bin_width)


def test_dvh_csv_full_precision_every_bin_of_bin_width(files: dict[str, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    table = tmp_path / "dvh.csv"
    args = ["dvh", "--dose", str(files["dose"]), "--struct", str(files["struct"]), "--csv",
            str(table), "--json"]
    assert main([*args, "--bin-width", "0.5"]) == 0
    report = json.loads(capsys.readouterr().out)
    truth = _dvhs(files["dose"], files["struct"], 0.5)
    head, rows = _csv(table)
    assert head == ["dose_gy", "PTV (cm3)", "Ring (cm3)"]
    # every bin of 0.5 Gy, to the maximum dose, and every number reads back exactly
    np.testing.assert_array_equal(rows[:, 0], np.arange(rows.shape[0]) * 0.5)
    assert rows[-1, 0] >= read_rtdose(files["dose"]).volume.array.max() > rows[-2, 0]
    for column, dvh in enumerate(truth, start=1):  # (summation order: a few ulp)
        np.testing.assert_allclose(rows[:, column], dvh.cumulative, rtol=1e-13, atol=0)
    assert report["csv_rows"] == rows.shape[0] == truth[0].edges.shape[0]
    assert main([*args, "--bin-width", "0.5", "--differential"]) == 0
    capsys.readouterr()
    _, rows = _csv(table)
    assert rows.shape[0] == truth[0].edges.shape[0] - 1
    np.testing.assert_allclose(rows[:, 2], truth[1].differential, rtol=1e-13, atol=1e-16)
    # by default, 0.01 Gy bins: a short table keeps every one
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["csv_rows"] == \
        _dvhs(files["dose"], files["struct"])[0].edges.shape[0]


def test_dvh_csv_of_a_brachytherapy_dose_stays_short(files: dict[str, Path], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # a point source at the centre of the PTV: 1/r^2 up to 3200 Gy (320,000 bins of 0.01 Gy)
    grid = Grid((21, 21, 21), origin=(-20.0, -20.0, -20.0), spacing=(2.0, 2.0, 2.0))
    k, j, i = np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij")
    r2 = 4.0 * ((i - 10) ** 2 + (j - 10) ** 2 + (k - 10) ** 2)
    dose = Volume(200.0 * 16.0 / np.maximum(r2, 1.0), grid)
    ss = pydicom.dcmread(files["struct"])
    built = build_dose_grid(dose, summation_type="PLAN", plans=[PlanReference(str(new_uid()))],
                            reference=ss).dataset
    path = write_rtdose(built, tmp_path / "brachy.dcm")
    table = tmp_path / "brachy.csv"
    assert main(["dvh", "--dose", str(path), "--struct", str(files["struct"]), "--csv",
                 str(table), "-q"]) == 0
    capsys.readouterr()
    _, rows = _csv(table)
    truth = _dvhs(path, files["struct"])
    assert truth[0].edges.shape[0] > 300_000
    assert rows.shape[0] <= 5_200  # about 5,000 up to D1 and a few above
    from rtforge.core.dvh import table_edges

    kept = table_edges(truth)
    np.testing.assert_array_equal(rows[:, 0], truth[0].edges[kept])
    np.testing.assert_allclose(rows[:, 1], truth[0].cumulative[kept], rtol=1e-12, atol=0)
    assert rows[-1, 0] == truth[0].edges[-1]


@pytest.mark.parametrize(("flag", "name", "code", "words"), [
    ("--plot", "x.txt", 2, "must end in .png"),
    ("--csv", "x.txt", 2, "must end in .csv"),
    ("--out", "x.png", 2, "must end in .dcm"),
    ("--plot", "missing/dvh.png", 1, "does not exist"),
    ("--csv", "folder.csv", 1, "is a folder"),
])
def test_dvh_checks_every_output_path_before_any_work(files: dict[str, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str],
                                                      flag: str, name: str, code: int,
                                                      words: str) -> None:
    (tmp_path / "folder.csv").mkdir()
    outputs = {"--out": tmp_path / "dvh.dcm", "--csv": tmp_path / "dvh.csv",
               "--plot": tmp_path / "dvh.png"}
    outputs[flag] = tmp_path / name
    argv = ["dvh", "--dose", str(files["dose"]), "--struct", str(files["struct"])]
    for key, value in outputs.items():
        argv += [key, str(value)]
    assert main(argv) == code
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.csv"]  # nothing written
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and words in captured.err and "Traceback" not in \
        captured.err
    assert captured.out == ""


def test_dvh_names_the_class_of_a_wrong_structure_set(files: dict[str, Path],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dvh", "--dose", str(files["dose"]), "--struct", str(files["dose"])]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "not an RT Structure Set but RT Dose Storage (SOP Class 1.2.840.10008.5.1.4.1.1.481.2)" \
        in err


def test_a_malformed_value_is_one_line_without_pydicom_noise(capfd) -> None:
    """pydicom's badVR.dcm: Number of Frames '1A'. One line naming the file; no pydicom
    warning and no traceback on the terminal."""
    import subprocess
    import sys

    path = pydicom_file("badVR.dcm")
    proc = subprocess.run([sys.executable, "-m", "rtforge", "dose", "info", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr == (f"rtforge dose info: {path}: malformed attribute value: invalid "
                           "literal for int() with base 10: '1A'\n")
    rtstruct = pydicom_file("rtstruct.dcm")
    proc = subprocess.run([sys.executable, "-m", "rtforge", "dose", "info", str(rtstruct)],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "not an RT Dose but RT Structure Set Storage" in proc.stderr
    assert proc.stderr.count("\n") == 1
