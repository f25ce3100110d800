"""``rtforge reslice``, ``demo`` and ``validate`` in-process, as a user calls them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from rtforge.cli import main
from rtforge.core.reslice import default_output_grid, reslice
from rtforge.io.series import read_series
from rtforge.io.validate import dciodvfy_available
from tests.datafiles import shared_file


def _dcm_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.dcm") if ".partial-" not in str(p))


def test_reslice_writes_a_readable_axial_series(phantom_patient, tmp_path, capsys) -> None:
    src = phantom_patient[0].folder
    out = tmp_path / "out"
    assert main(["reslice", str(src), str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["series"][0]
    files = _dcm_files(out)
    assert len(files) == report["files_written"] == report["output_shape"][0]
    back = read_series(out)
    ds = pydicom.dcmread(files[0])
    assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY", "AXIAL"]
    # The output read back equals the in-memory reslice within 1 HU.
    series = read_series(src)
    grid = default_output_grid(series.stack)
    expect = reslice(series.array, series.stack, grid)
    assert back.array.shape == expect.shape
    assert np.max(np.abs(back.array.astype(np.int32) - expect)) <= 1
    assert np.allclose(back.stack.positions[0], grid.origin, atol=1e-3)


def test_reslice_human_report_names_the_tilt(phantom_patient, tmp_path, capsys) -> None:
    assert main(["reslice", str(phantom_patient[1].folder), str(tmp_path / "o")]) == 0
    text = capsys.readouterr().out
    assert "tilt    15.00 deg" in text
    assert "wrote" in text


def test_spacing_and_clamp_flags(phantom_patient, tmp_path, capsys) -> None:
    out = tmp_path / "o"
    assert main(["reslice", str(phantom_patient[0].folder), str(out), "--spacing", "4,4,5",
                 "--clamp", "-1000,1000", "--interp", "nearest", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)["series"][0]
    assert rep["output_spacing"] == [4.0, 4.0, 5.0]
    back = read_series(out)
    assert back.array.max() <= 1000 and back.array.min() >= -1000


@pytest.mark.interop
@pytest.mark.skipif(not dciodvfy_available(), reason="dciodvfy (dicom3tools) not installed")
def test_demo_output_validates(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    assert main(["demo", str(out), "--size", "48", "--slices", "8"]) == 0
    summary = capsys.readouterr().out
    assert "reconverted to axial" in summary
    resliced = _dcm_files(out / "resliced")
    assert len(resliced) > 0
    assert main(["validate", str(out)]) == 0
    text = capsys.readouterr().out
    # Every DICOM file of the demo (both acquisitions too), no warning of any kind (our
    # private block is known, the chest CT carries no empty Laterality), the PNGs skipped.
    dicom = _dcm_files(out)
    pngs = sorted(out.rglob("*.png"))
    assert len(pngs) == 5
    assert (f"{len(dicom)} files, 0 with errors, 0 with warnings, 0 not verified by dciodvfy; "
            f"{len(pngs)} non-DICOM files skipped") in text
    assert "  CT Image Storage: " in text and "  RT Dose Storage: 1 file\n" in text
    assert main(["validate", "--quiet", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith(f"{len(dicom)} files, 0 with")
    # The synthetic plan dose is 16-bit (the Debian dciodvfy aborts on 32-bit
    # Pixel Data), written with the plan and validated with it above.
    dose = pydicom.dcmread(out / "resliced" / "rtdose.dcm")
    assert dose.Modality == "RTDOSE" and dose.BitsAllocated == 16
    assert out / "resliced" / "rtdose.dcm" in resliced
    assert "DVHs (plot" in summary and (out / "dvh.png").stat().st_size > 0


def test_demo_dose_covers_the_ptv(tmp_path, capsys) -> None:
    from rtforge.workflows.demo import PHANTOM_DOSE_GY

    out = tmp_path / "demo"
    assert main(["demo", str(out), "--size", "48", "--slices", "8", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    dose = pydicom.dcmread(report["dose"])
    plan = pydicom.dcmread(report["plan"])
    assert dose.DoseSummationType == "PLAN"
    assert dose.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID == plan.SOPInstanceUID
    assert dose.FrameOfReferenceUID == plan.FrameOfReferenceUID
    assert Path(report["dvh_plot"]).stat().st_size > 0
    rois = {row["roi_name"]: row for row in report["dvhs"]}
    assert set(rois) == set(report["structure_volumes_cm3"])
    ptv = rois["PTV"]
    assert ptv["D95_gy"] == pytest.approx(PHANTOM_DOSE_GY, rel=0.01)
    assert ptv["max_gy"] <= PHANTOM_DOSE_GY * 1.001
    for name, row in rois.items():
        assert row["volume_cm3"] > 0 and row["volume_outside_cm3"] == pytest.approx(0, abs=1e-6)
        assert 0 <= row["min_gy"] <= row["mean_gy"] <= row["max_gy"]
        # The ROI Volume the structure set states is the volume its DVH counts (half end
        # slabs both): a physicist comparing the two finds them equal.
        assert row["volume_cm3"] == pytest.approx(report["structure_volumes_cm3"][name],
                                                  rel=0.005)


def test_validate_reports_a_broken_file(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"not dicom at all")
    assert main(["validate", str(bad)]) == 1
    assert "ERROR" in capsys.readouterr().out


# ------------------------------------------------------------------ bad input
def _copy_series(phantom_patient, tmp_path: Path) -> Path:
    dst = tmp_path / "src"
    shutil.copytree(phantom_patient[0].folder, dst)
    return dst


def _mutate_one(src: Path, fn) -> None:
    f = sorted(src.glob("*.dcm"))[3]
    ds = pydicom.dcmread(f)
    fn(ds)
    ds.save_as(f)


def _bad_cases():
    def mixed(src: Path) -> None:
        _mutate_one(src, lambda ds: setattr(ds, "ImageOrientationPatient",
                                            [1, 0, 0, 0, 1, 0]))

    def duplicate(src: Path) -> None:
        f = sorted(src.glob("*.dcm"))[2]
        ds = pydicom.dcmread(f)
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(src / "dup.dcm")

    def truncated(src: Path) -> None:
        f = sorted(src.glob("*.dcm"))[4]
        data = f.read_bytes()
        f.write_bytes(data[: len(data) // 2])

    def missing_pixels(src: Path) -> None:
        _mutate_one(src, lambda ds: delattr(ds, "PixelData"))

    def empty(src: Path) -> None:
        for f in src.iterdir():
            f.unlink()

    return [mixed, duplicate, truncated, missing_pixels, empty]


@pytest.mark.parametrize("make_bad", _bad_cases(), ids=lambda f: f.__name__)
def test_bad_input_one_line_error_and_nothing_written(make_bad, phantom_patient, tmp_path,
                                                      capsys) -> None:
    src = _copy_series(phantom_patient, tmp_path)
    make_bad(src)
    before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}
    out = tmp_path / "out"
    assert main(["reslice", str(src), str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("rtforge reslice: ") and "\n" not in err
    assert "Traceback" not in err
    assert str(src) in err  # names the file or folder
    assert not out.exists() or not _dcm_files(out)
    # nothing lost: the input is untouched
    assert {p: p.read_bytes() for p in src.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("make_bad", _bad_cases()[:-1], ids=lambda f: f.__name__)
def test_bad_series_beside_a_good_one_in_workers_leaves_nothing(make_bad, phantom_patient,
                                                                tmp_path, capsys) -> None:
    # Two series: they go to two worker processes, and the good one is finished (and
    # then removed: all or nothing) whatever happens to the bad one.
    src = tmp_path / "src"
    shutil.copytree(phantom_patient[0].folder, src / "bad")
    shutil.copytree(phantom_patient[1].folder, src / "good")
    make_bad(src / "bad")
    before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}
    out = tmp_path / "out"
    assert main(["reslice", str(src), str(out), "--workers", "2"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("rtforge reslice: ") and "\n" not in err
    assert "Traceback" not in err and str(src / "bad") in err
    assert not out.exists() or not _dcm_files(out)
    assert {p: p.read_bytes() for p in src.rglob("*") if p.is_file()} == before


def test_reslice_of_several_series_in_workers_equals_one_process(phantom_root, tmp_path,
                                                                 capsys) -> None:
    reports = {}
    for workers in ("1", "2"):
        out = tmp_path / workers
        assert main(["reslice", str(phantom_root), str(out), "--json", "--workers", workers]) == 0
        reports[workers] = json.loads(capsys.readouterr().out)["series"]
    assert len(reports["1"]) == len(reports["2"]) == 2
    for one, two in zip(reports["1"], reports["2"], strict=True):  # same order, same report
        assert {k: v for k, v in one.items() if k not in ("seconds", "output_dir")} == \
            {k: v for k, v in two.items() if k not in ("seconds", "output_dir")}
        a, b = read_series(one["output_dir"]), read_series(two["output_dir"])
        assert np.array_equal(a.array, b.array)
        assert np.allclose(a.stack.positions, b.stack.positions)


@pytest.mark.parametrize("argv", [
    ["reslice"],
    ["reslice", "a", "b", "--spacing", "1,2"],
    ["reslice", "a", "b", "--interp", "cubic"],
    ["nosuchcommand"],
])
def test_bad_usage_exits_2(argv, capsys) -> None:
    assert main(argv) == 2
    assert "error" in capsys.readouterr().err


# ------------------------------------------------------------- gaps and notes
def test_a_missing_part_of_the_series_is_refused_unless_allowed(phantom_patient, tmp_path,
                                                                capsys) -> None:
    src = _copy_series(phantom_patient, tmp_path)
    slices = sorted(src.glob("*.dcm"), key=lambda f: float(pydicom.dcmread(f).SliceLocation)
                    if "SliceLocation" in pydicom.dcmread(f) else
                    float(pydicom.dcmread(f).ImagePositionPatient[2]))
    for f in slices[5:10]:  # five slices missing: a gap of 6 spacings
        f.unlink()
    out = tmp_path / "out"
    assert main(["reslice", str(src), str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "times the median slice spacing" in err
    assert "--allow-gaps" in err and not _dcm_files(out)
    assert main(["reslice", str(src), str(out), "--allow-gaps", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["series"][0]
    assert any("resliced across it (--allow-gaps)" in w for w in report["warnings"])
    # The limit is a setting: with a factor of 8 the same series passes without the flag.
    config = tmp_path / "rtforge.toml"
    config.write_text("[reslice]\nmax_gap_factor = 8\n")
    assert main(["reslice", str(src), str(tmp_path / "out8"), "--config", str(config)]) == 0
    config.write_text("[reslice]\nmax_gap_factor = 0.5\n")
    assert main(["reslice", str(src), str(tmp_path / "bad"), "--config", str(config)]) == 1
    assert "max_gap_factor must be a number above 1" in capsys.readouterr().err


def test_a_note_beside_the_slices_is_ignored_and_said(tmp_path, capsys) -> None:
    """rt-utils' oblique 3-slice series has an info.txt in its folder (as batch, skip it)."""
    src = tmp_path / "oriented"
    shutil.copytree(shared_file("rt_utils/tests/oriented_data"), src)
    assert (src / "info.txt").is_file()
    assert main(["reslice", str(src), str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "ignored 1 non-DICOM file(s): info.txt" in out
    assert len(_dcm_files(tmp_path / "out")) > 0


@pytest.mark.parametrize("command", ["reslice", "batch"])
def test_out_that_is_a_file_is_one_line_and_nothing_written(command, phantom_patient, tmp_path,
                                                            capsys) -> None:
    src = _copy_series(phantom_patient, tmp_path)
    out = tmp_path / "afile"
    out.write_text("keep me")
    assert main([command, str(src), str(out)]) == 1
    err = capsys.readouterr().err
    assert err == f"rtforge {command}: {out}: is a file; OUT must be a folder (created if missing)\n"
    assert out.read_text() == "keep me"


def test_the_worker_server_is_started_ahead_only_for_files_in_several_folders(tmp_path) -> None:
    from rtforge.cli.reslice import _files_in_several_folders

    one = tmp_path / "one" / "patient" / "study" / "series"
    one.mkdir(parents=True)
    for n in range(3):
        (one / f"{n}.dcm").write_bytes(b"")
    (one.parent / ".hidden").mkdir()
    (one.parent / ".hidden" / "x.dcm").write_bytes(b"")  # hidden folders do not count
    assert not _files_in_several_folders(tmp_path / "one")
    other = tmp_path / "one" / "patient" / "study" / "other"
    other.mkdir()
    (other / "0.dcm").write_bytes(b"")
    assert _files_in_several_folders(tmp_path / "one")
    assert _files_in_several_folders(one, most_entries=2)  # too many to look at: assume so
