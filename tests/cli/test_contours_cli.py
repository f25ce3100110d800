"""``rtforge contours reduce`` and ``rtforge contours stats``, in process."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread

from rtforge.cli import main
from rtforge.config import ExportConfig
from rtforge.core.contours import Contour, Structure
from rtforge.io.rtstruct import build_rtstruct, read_rtstruct, write_rtstruct
from tests.datafiles import pydicom_file, shared_file

FRAME = "1.2.826.0.1.3680043.8.498.66.1"
DICOMPYLER = shared_file("dicompyler-example/rtss.dcm")


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def written_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_reduce_writes_a_reduced_copy_and_drawings(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out, png = tmp_path / "out", tmp_path / "png"
    code, stdout, _ = run(["contours", "reduce", str(DICOMPYLER), str(out), "--max-points", "100",
                           "--png", str(png), "--json"], capsys)
    assert code == 0
    report = json.loads(stdout)
    assert report["contours"] == 441 and 0 < report["reduced"] < 441
    assert len(report["png"]) == 8 and all(Path(p).stat().st_size > 0 for p in report["png"])
    worst = max(r["hausdorff_mm"] for r in report["reduced_contours"])
    assert report["worst_hausdorff_mm"] == worst
    assert report["previous_approval"] == "APPROVED"
    source, result = read_rtstruct(DICOMPYLER), read_rtstruct(report["output"])
    assert result.sop_instance_uid == report["sop_instance_uid"] != source.sop_instance_uid
    assert result.references == source.references
    assert result.approval_status == "UNAPPROVED"
    assert max(c.n_points for s in result.structures for c in s.contours) <= 100
    for row in report["reduced_contours"]:
        contour = result.structure(row["roi_number"]).contours[row["contour_number"] - 1]
        assert contour.n_points == row["points_after"] <= 100 < row["points_before"]
        assert contour.image_uids == source.structure(row["roi_number"]).contours[
            row["contour_number"] - 1].image_uids


def test_reduce_prints_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = run(["contours", "reduce", str(DICOMPYLER), str(tmp_path), "--tolerance",
                           "0.5", "--method", "rdp", "-q"], capsys)
    assert code == 0
    assert "Hausdorff mm" in stdout and "closed contours reduced" in stdout
    assert "the input was APPROVED" in stdout and "written " in stdout


def test_stats_matches_what_we_wrote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t = np.linspace(0, 2 * np.pi, 90, endpoint=False)
    rings = [np.stack([12 * np.cos(t), 8 * np.sin(t), np.full_like(t, 2.0 * k)], axis=1)
             for k in range(5)]
    structures = [
        Structure(1, "Ellipse", tuple(Contour(r) for r in rings), interpreted_type="ORGAN"),
        Structure(2, "Marker", (Contour([[1.5, 2.5, 4.0]], "POINT"),), interpreted_type="MARKER"),
    ]
    built = build_rtstruct(structures, frame_of_reference_uid=FRAME,
                           config=ExportConfig(uid_root="1.2.826.0.1.3680043.8.498.66."))
    path = write_rtstruct(built.dataset, tmp_path)
    code, stdout, _ = run(["contours", "stats", str(path), "--json"], capsys)
    assert code == 0
    rois = {r["roi_number"]: r for r in json.loads(stdout)["rois"]}
    ds = dcmread(path)
    assert rois[1]["contours"] == 5 and rois[1]["points"] == 5 * 90
    assert rois[2]["contours"] == 1 and rois[2]["points"] == 1
    # The builder's ROI Volume and stats both count as dvh and planning systems do: half
    # end slabs (the 5 planes 8 mm tall), at the set's 2 mm contour spacing.
    report = json.loads(stdout)
    assert (report["slab_mm"], report["end_cap"]) == (2.0, "half")
    assert rois[1]["volume_cm3"] == pytest.approx(built.volumes_cm3[1], rel=1e-6)
    area = 0.5 * 90 * 12 * 8 * math.sin(2 * math.pi / 90)  # each ring: a 90-gon in an ellipse
    assert rois[1]["volume_cm3"] == pytest.approx(4 * 2.0 * area / 1000, rel=1e-4)
    assert rois[1]["roi_volume_cm3"] == pytest.approx(float(ds.StructureSetROISequence[0].ROIVolume))
    assert rois[2]["volume_cm3"] is None and rois[1]["interpreted_type"] == "ORGAN"
    data = path.read_bytes()
    lengths = []
    at = data.find(struct.pack("<HH", 0x3006, 0x0050))
    while at >= 0:
        lengths.append(struct.unpack("<H", data[at + 6:at + 8])[0])
        at = data.find(struct.pack("<HH", 0x3006, 0x0050), at + 8)
    assert rois[1]["largest_contour_data_bytes"] == max(lengths[:5])
    assert rois[2]["largest_contour_data_bytes"] == lengths[5]
    code, stdout, _ = run(["contours", "stats", str(path)], capsys)
    assert code == 0 and "Ellipse" in stdout and "MARKER" in stdout


def test_stats_on_a_reduced_copy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(["contours", "reduce", str(DICOMPYLER), str(tmp_path / "out"), "--max-points", "50",
         "--json"], capsys)
    path = written_files(tmp_path / "out")[0]
    code, stdout, _ = run(["contours", "stats", str(path), "--json"], capsys)
    assert code == 0
    structure_set = read_rtstruct(path)
    for row, s in zip(json.loads(stdout)["rois"], structure_set.structures, strict=True):
        assert (row["contours"], row["points"]) == (len(s.contours), s.n_points)
        assert row["points"] <= 50 * row["contours"]


def _broken_copy(tmp_path: Path, change) -> Path:
    ds = dcmread(pydicom_file("rtstruct.dcm"), force=True)
    change(ds)
    path = tmp_path / "broken.dcm"
    ds.save_as(path, enforce_file_format=False)
    return path


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")
@pytest.mark.parametrize("make, message", [
    (lambda tmp: pydicom_file("CT_small.dcm"), "not an RT Structure Set"),
    (lambda tmp: _broken_copy(tmp, lambda ds: setattr(ds.ROIContourSequence[0],
                                                      "ReferencedROINumber", 9)),
     "does not define"),
    (lambda tmp: _broken_copy(tmp, lambda ds: setattr(
        ds.ROIContourSequence[0].ContourSequence[0], "ContourData", [0, 0, 0, 1, 1, 1])),
     "at least 3"),
    (lambda tmp: _broken_copy(tmp, lambda ds: setattr(
        ds.ROIContourSequence[0].ContourSequence[0], "ContourData",
        ["0", "0", "0", "nan", "1", "1", "2", "0", "0"])), "not finite"),
])
def test_bad_input_fails_cleanly_and_writes_nothing(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str],
                                                    make, message: str) -> None:
    source = make(tmp_path)
    out = tmp_path / "out"
    code, stdout, stderr = run(["contours", "reduce", str(source), str(out), "--max-points", "5",
                                "--png", str(tmp_path / "png")], capsys)
    assert code == 1 and stdout == ""
    assert stderr.count("\n") == 1 and stderr.startswith("rtforge contours reduce: ")
    assert message in stderr
    assert written_files(out) == [] and written_files(tmp_path / "png") == []
    code, _, stderr = run(["contours", "stats", str(source)], capsys)
    assert code == 1 and message in stderr


def test_bad_usage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, stderr = run(["contours", "reduce", str(DICOMPYLER), str(tmp_path), "--method", "x"],
                          capsys)
    assert code == 2 and "invalid choice" in stderr
    assert run(["contours"], capsys)[0] == 2
    code, _, stderr = run(["contours", "reduce", str(DICOMPYLER), str(tmp_path / "o"),
                           "--max-points", "2"], capsys)
    assert code == 1 and "at least 3" in stderr and not (tmp_path / "o").exists()
    code, _, stderr = run(["contours", "reduce", str(DICOMPYLER), str(tmp_path / "o"),
                           "--tolerance", "-1"], capsys)
    assert code == 1 and "tolerance" in stderr and not (tmp_path / "o").exists()
