"""``rtforge dvh`` and ``rtforge contours`` on structure sets written by other systems (issue 19).

The Eclipse structure set comes with the DVH table Eclipse exported for it, whose header holds
each ROI's volume as Eclipse computed it: the truth for the end-cap convention.  No RT Dose of
that plan is available, so the dose grids here are written by the test (a gradient along z, in
the structure set's Frame of Reference).
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydicom import Dataset, dcmread
from pydicom.multival import MultiValue

from rtforge.cli import main
from rtforge.core.contours import polygon_area
from rtforge.core.geometry import Grid, Volume
from rtforge.io.rtdose import PlanReference, build_dose_grid, read_rtdose, write_rtdose
from rtforge.io.rtstruct import read_rtstruct
from rtforge.io.uids import new_uid
from rtforge.io.validate import dciodvfy_available, validate_file
from tests.datafiles import shared_file

ECLIPSE_RS = "slicerrt_eclipse/RS.1.2.246.352.71.4.2088656855.2404649.20110920153449.dcm"
ECLIPSE_DVH_TABLE = "slicerrt_eclipse/EclipseProstate_DvhTable_Eclipse.csv"
SINGLE_PLANE_RS = "rt_utils/tests/mock_data/rt.dcm"


def eclipse_volumes() -> dict[str, float]:
    """ROI name (spaces removed) to the volume (cm3) in the header of Eclipse's DVH table."""
    with shared_file(ECLIPSE_DVH_TABLE).open(newline="") as handle:
        header = next(csv.reader(handle))
    found = (re.fullmatch(r"(.+)_DvhArray Value \(% of ([0-9.]+) cc\)", h) for h in header)
    return {m.group(1): float(m.group(2)) for m in found if m}


def write_dose_for(struct: Path, root: Path, spacing: float = 4.0) -> Path:
    """An RT Dose covering every contour of ``struct`` (1 Gy + 0.05 Gy/mm along z), written
    with the structure set as its reference (its Frame of Reference is carried over)."""
    ss = read_rtstruct(struct)
    points = np.concatenate([c.points for s in ss.structures for c in s.contours])
    lo, hi = points.min(axis=0) - 2 * spacing, points.max(axis=0) + 2 * spacing
    shape = tuple(int(n) for n in np.ceil((hi - lo) / spacing)[::-1] + 1)
    grid = Grid(shape, origin=tuple(lo), spacing=(spacing,) * 3)
    z = lo[2] + spacing * np.arange(shape[0])
    dose = Volume(np.broadcast_to((1.0 + 0.05 * (z - lo[2]))[:, None, None], shape).copy(), grid)
    built = build_dose_grid(dose, summation_type="PLAN", plans=[PlanReference(str(new_uid()))],
                            reference=ss.dataset)
    return write_rtdose(built.dataset, root / "rtdose.dcm")


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_eclipse_volumes_equal_the_half_slab_convention(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    # dvh --out on a real structure set (no top-level Frame of Reference UID), once per end
    # cap; the half-slab volumes are those Eclipse stored, within its table's rounding
    struct = shared_file(ECLIPSE_RS)
    dose = write_dose_for(struct, tmp_path)
    truth = eclipse_volumes()
    assert len(truth) == 6
    reports = {}
    for cap in ("half", "full", "none"):
        out = tmp_path / f"dvh_{cap}.dcm"
        code, text, err = run(["dvh", "--dose", str(dose), "--struct", str(struct), "--json",
                               "--end-cap", cap, "--out", str(out)], capsys)
        assert code == 0, err
        report = json.loads(text)
        assert report["end_cap"] == cap
        assert report["slab_mm"] == pytest.approx(2.5)
        assert report["slab_source"] == "structure set contour spacing"
        reports[cap] = {r["roi_name"].replace(" ", ""): r for r in report["rois"]}
        back = read_rtdose(out)
        assert back.frame_of_reference_uid == read_rtstruct(struct).frame_of_reference_uid
        assert len(back.dvhs) == len(report["rois"]) == 6
    code, text, err = run(["contours", "stats", str(struct), "--json"], capsys)
    assert code == 0, err
    stats = {r["roi_name"].replace(" ", ""): r["volume_cm3"] for r in json.loads(text)["rois"]}
    for name, volume in truth.items():
        half, full, none = (reports[c][name]["volume_cm3"] for c in ("half", "full", "none"))
        assert abs(half / volume - 1) < 0.015, name
        assert abs(half - volume) < abs(full - volume), name  # every ROI: half is closer
        assert abs(half - volume) < abs(none - volume), name
        assert none < half < full
        # contours stats computes the same volumes (polygon areas, the same slabs)
        assert stats[name] == pytest.approx(half, rel=0.005), name
        # full caps reach further along the z gradient: a lower minimum dose
        assert reports["full"][name]["min_gy"] < reports["half"][name]["min_gy"]
    # the text output says which slab and end cap were used
    code, text, _ = run(["dvh", "--dose", str(dose), "--struct", str(struct), "--roi", "PTV"],
                        capsys)
    assert code == 0 and "slabs of 2.5 mm (structure set contour spacing), half end caps" in text


@pytest.mark.interop
@pytest.mark.skipif(not dciodvfy_available(), reason="dciodvfy (dicom3tools) not installed")
def test_dvh_dose_of_a_real_structure_set_passes_dciodvfy(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    struct = shared_file(ECLIPSE_RS)
    out = tmp_path / "dvh.dcm"
    code, _, err = run(["dvh", "--dose", str(write_dose_for(struct, tmp_path, 8.0)),
                        "--struct", str(struct), "--roi", "PTV", "--out", str(out), "-q"], capsys)
    assert code == 0, err
    result = validate_file(out)
    assert result.dciodvfy_ran and result.errors == []


def _renumbered(tmp_path: Path, old: int, new: int) -> Path:
    """A copy of the Eclipse structure set with ROI ``old`` numbered ``new`` everywhere."""
    ds = dcmread(shared_file(ECLIPSE_RS))
    for seq, key in (("StructureSetROISequence", "ROINumber"),
                     ("ROIContourSequence", "ReferencedROINumber"),
                     ("RTROIObservationsSequence", "ReferencedROINumber")):
        for item in ds[seq].value:
            if int(item[key].value) == old:
                item[key].value = new
    path = tmp_path / "rs_zero.dcm"
    ds.save_as(path)
    return path


def test_roi_number_zero_is_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Oncentra and Elekta number ROIs from 0 (PS3.3 C.8.8.5 asks only uniqueness)
    struct = _renumbered(tmp_path, 1, 0)  # BODY
    dose = write_dose_for(struct, tmp_path, 8.0)
    code, text, err = run(["dvh", "--dose", str(dose), "--struct", str(struct), "--json",
                           "--roi", "PTV", "--roi", "BODY", "--out", str(tmp_path / "d.dcm")],
                          capsys)
    assert code == 0, err
    rows = json.loads(text)["rois"]
    assert [(r["roi_number"], r["roi_name"]) for r in rows] == [(13, "PTV"), (0, "BODY")]
    assert sorted(d.roi_number for d in read_rtdose(tmp_path / "d.dcm").dvhs) == [0, 13]
    code, text, err = run(["contours", "stats", str(struct), "--json"], capsys)
    assert code == 0, err
    assert json.loads(text)["rois"][0]["roi_number"] == 0
    # --images must be the series the structure set references (or in its frame)
    images = tmp_path / "other_ct"
    images.mkdir()
    shutil.copy(shared_file("rt_utils/tests/mock_data/ct_1.dcm"), images / "ct_1.dcm")
    code, _, err = run(["dvh", "--dose", str(dose), "--struct", str(struct), "--roi", "PTV",
                        "--images", str(images)], capsys)
    assert code == 1 and "neither referenced by the structure set" in err
    code, text, err = run(["contours", "reduce", str(struct), str(tmp_path / "out"),
                           "--max-points", "40", "--json"], capsys)
    assert code == 0, err
    assert read_rtstruct(json.loads(text)["output"]).structures[0].number == 0


def test_single_plane_structure_set_needs_slab_mm_or_images(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    # rt-utils' mock structure set: one ROI on one plane, no spacing to take from it
    struct = tmp_path / "rt.dcm"
    shutil.copy(shared_file(SINGLE_PLANE_RS), struct)
    dose = write_dose_for(struct, tmp_path, 2.0)
    code, out, err = run(["dvh", "--dose", str(dose), "--struct", str(struct)], capsys)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "--slab-mm" in err and "rt.dcm" in err
    code, out, err = run(["dvh", "--dose", str(dose), "--struct", str(struct), "--json",
                          "--slab-mm", "2.5"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert (report["slab_mm"], report["slab_source"]) == (2.5, "--slab-mm")
    contours = [c.points for c in read_rtstruct(struct).structures[0].contours]
    z = {round(float(c[0, 2]), 3) for c in contours}
    assert len(z) == 1
    # a square with a hole in it (the second contour lies inside the first): even-odd rule
    outer, hole = contours
    assert np.all((hole[:, :2] > outer[:, :2].min(axis=0)) & (hole[:, :2] < outer[:, :2].max(axis=0)))
    area = abs(polygon_area(outer)) - abs(polygon_area(hole))
    assert report["rois"][0]["volume_cm3"] == pytest.approx(area * 2.5 / 1000, rel=2e-3)
    code, _, err = run(["dvh", "--dose", str(dose), "--struct", str(struct), "--slab-mm", "0"],
                       capsys)
    assert code == 1 and "--slab-mm must be a positive" in err
    # or the slice spacing of the CT series it references (two slices 5 mm apart)
    images = tmp_path / "ct"
    images.mkdir()
    for name in ("ct_1.dcm", "ct_2.dcm"):
        shutil.copy(shared_file(f"rt_utils/tests/mock_data/{name}"), images / name)
    code, out, err = run(["dvh", "--dose", str(dose), "--struct", str(struct), "--json",
                          "--images", str(images)], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["slab_mm"] == pytest.approx(5.0)
    assert report["slab_source"] == f"slice spacing of {images}"
    assert report["rois"][0]["volume_cm3"] == pytest.approx(area * 5.0 / 1000, rel=2e-3)
    code, _, err = run(["dvh", "--dose", str(dose), "--struct", str(struct), "--images",
                        str(images), "--slab-mm", "2"], capsys)
    assert code == 2 and "not allowed with" in err  # one or the other


# ------------------------------------------------------------------ contours reduce
#: What ``contours reduce`` changes at the top level: new instance, dates, approval
#: (UNAPPROVED: the reduced contours need a review), description.
CHANGED = {"SOPInstanceUID", "InstanceCreationDate", "InstanceCreationTime", "StructureSetDate",
           "StructureSetTime", "ApprovalStatus", "StructureSetDescription"}
#: What it may add where the original lacks it: rtforge as Modifying Equipment, and what the
#: IOD requires (a structure set's frame also at the top level; empty Type 2 attributes).
ADDED = {"ContributingEquipmentSequence", "FrameOfReferenceUID", "PositionReferenceIndicator",
         "OperatorsName"}


def attributes(ds: Dataset, prefix: str = "") -> dict[str, tuple[str, object]]:
    """Every attribute, nested ones by their path (``Seq[2].Keyword``), with VR and value."""
    out: dict[str, tuple[str, object]] = {}
    for elem in ds:
        key = prefix + (elem.keyword or str(elem.tag))
        if elem.VR == "SQ":
            out[key] = ("SQ", len(elem.value))
            for n, item in enumerate(elem.value):
                out.update(attributes(item, f"{key}[{n}]."))
        else:
            value = elem.value
            out[key] = (elem.VR, list(value) if isinstance(value, MultiValue) else value)
    return out


@pytest.mark.parametrize("ts", ["explicit", "big"])  # the original is Implicit VR LE
def test_reduce_carries_over_every_attribute(ts: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    source = shared_file(ECLIPSE_RS)
    code, text, err = run(["contours", "reduce", str(source), str(tmp_path / "out"),
                           "--max-points", "60", "--ts", ts, "--json"], capsys)
    assert code == 0, err
    report = json.loads(text)
    before, after = dcmread(source), dcmread(report["output"])
    a, b = attributes(before), attributes(after)
    positions = {int(item.ReferencedROINumber): n
                 for n, item in enumerate(before.ROIContourSequence)}
    reduced = {f"ROIContourSequence[{positions[r['roi_number']]}]."
               f"ContourSequence[{r['contour_number'] - 1}].{keyword}"
               for r in report["reduced_contours"]
               for keyword in ("ContourData", "NumberOfContourPoints")}
    assert report["reduced"] > 100 and len(reduced) == 2 * report["reduced"]
    assert set(a) - set(b) == set()  # nothing dropped
    added = set(b) - set(a)
    assert {k.split("[")[0].split(".")[0] for k in added} <= ADDED | CHANGED
    assert "ContributingEquipmentSequence" in added
    differ = {k for k in set(a) & set(b) if a[k] != b[k]}
    assert differ - CHANGED - reduced == set()
    assert reduced <= differ  # the reduced contours are the ones rewritten
    # what the issue found dropped, by name
    observation = after.RTROIObservationsSequence[0]
    assert observation.RTROIIdentificationCodeSequence[0].CodeValue == "C44.9"
    assert [int(o.ObservationNumber) for o in after.RTROIObservationsSequence] == \
        [int(o.ObservationNumber) for o in before.RTROIObservationsSequence]
    assert after.SeriesInstanceUID == before.SeriesInstanceUID
    assert after.Manufacturer == before.Manufacturer
    equipment = after.ContributingEquipmentSequence[-1]
    assert equipment.Manufacturer == "rtforge"
    assert equipment.PurposeOfReferenceCodeSequence[0].CodeValue == "109103"
    assert after.ApprovalStatus == "UNAPPROVED" and after.SOPInstanceUID != before.SOPInstanceUID


@pytest.mark.interop
@pytest.mark.skipif(not dciodvfy_available(), reason="dciodvfy (dicom3tools) not installed")
def test_reduced_eclipse_structure_set_passes_dciodvfy(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    code, text, err = run(["contours", "reduce", str(shared_file(ECLIPSE_RS)),
                           str(tmp_path / "out"), "--max-points", "60", "--json"], capsys)
    assert code == 0, err
    result = validate_file(Path(json.loads(text)["output"]))
    assert result.dciodvfy_ran and result.iod == "RTStructureSet"
    assert result.errors == []
