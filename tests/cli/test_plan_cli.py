"""``rtforge plan info|split``, ``deid`` and ``relink``, in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest

from rtforge.cli import main
from rtforge.io.references import check_references, read_folder
from tests.datafiles import shared_file
from tests.io.test_references import STUDY, make_rt_set, write_set
from tests.io.test_rtplan_builder import build, build_brachy, write_rtplan


@pytest.fixture
def plan_file(tmp_path: Path) -> Path:
    return write_rtplan(build(), tmp_path / "plan", flat=True)


@pytest.fixture
def rt_set(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    write_set(folder, make_rt_set())
    return folder


def test_plan_info(plan_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "info", str(plan_file)]) == 0
    out = capsys.readouterr().out
    assert "'Prostate'" in out and "beam 2 'B2': DYNAMIC PHOTON 6.0 MV" in out
    assert main(["plan", "info", "--json", str(plan_file)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [g["beams"] for g in data["fraction_groups"]] == [[1, 2], [3]]


def test_plan_info_brachy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_rtplan(build_brachy(), tmp_path, flat=True)
    assert main(["plan", "info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "brachytherapy: HDR INTERSTITIAL on microSelectron; sources 1 Ir-192" in out
    assert "application setup 1 'Implant' (OTHER): 2 channels (1: 13.5 s, 2: 4.5 s)" in out


ECLIPSE_PLAN = "slicerrt_eclipse/RP.1.2.246.352.71.5.2088656855.377401.20110920153647.dcm"


def test_plan_info_of_real_plans(capsys: pytest.CaptureFixture[str]) -> None:
    """Monaco plans without file meta are read and said; arcs, FFF, MU and constraints."""
    assert main(["plan", "info", str(shared_file("pymedphys/vmat_example.dcm"))]) == 0
    captured = capsys.readouterr()
    assert "has no Part 10 file meta; read as a bare data set" in captured.err
    assert "arc 90 to 150 CW" in captured.out and "arc 270 to 210 CC" in captured.out
    assert "157.2 MU" in captured.out
    assert main(["plan", "info", str(shared_file("pymedphys/FFF_example.dcm"))]) == 0
    assert "STATIC PHOTON 6.0 MV FFF on 2619" in capsys.readouterr().out
    assert main(["plan", "info", "--json", str(shared_file(ECLIPSE_PLAN))]) == 0
    data = json.loads(capsys.readouterr().out)
    oar = data["prescription"][1]
    assert (oar["type"], oar["constraints"]) == (
        "ORGAN_AT_RISK", {"DeliveryMaximumDose": 46.0, "OrganAtRiskMaximumDose": 46.0})
    # Angles as a physicist reads them: dicompyler's 7.08677e-10 collimator is 0.
    assert main(["plan", "info", "--json", str(shared_file("dicompyler-example/rtplan.dcm"))]) == 0
    beam = json.loads(capsys.readouterr().out)["beams"][0]
    assert (beam["collimator"], beam["couch"], beam["arc"], beam["meterset"]) == (0, 0, None, 97)


def test_plan_split_of_one_fraction_group_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "split"
    assert main(["plan", "split", str(shared_file("dicompyler-example/rtplan.dcm")),
                 "-o", str(out_dir)]) == 0
    assert "1 fraction group; nothing to split, nothing written" in capsys.readouterr().out
    assert not out_dir.exists()


def test_plan_split(plan_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "split"
    assert main(["plan", "split", str(plan_file), "-o", str(out_dir), "--json"]) == 0
    paths = json.loads(capsys.readouterr().out)["plans"]
    plans = [pydicom.dcmread(p) for p in paths]
    assert [p.RTPlanLabel for p in plans] == ["Prostate (1/2)", "Prostate (2/2)"]
    assert plans[0].ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID == plans[1].SOPInstanceUID


def test_deid(rt_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trial = tmp_path / "trial.toml"
    trial.write_text('sponsor_name = "S"\nprotocol_id = "P"\nsubject_id = "SUBJ-1"\n')
    key, mapping = tmp_path / "site.key", tmp_path / "map.csv"
    out = tmp_path / "out"
    assert main(["deid", str(rt_set), str(out), "--trial", str(trial), "--key-file", str(key),
                 "--map-out", str(mapping)]) == 0
    assert "6 objects de-identified" in capsys.readouterr().out
    written = [ds for _, ds in read_folder(out)]
    assert {str(ds.PatientID) for ds in written} == {"SUBJ-1"}
    assert check_references(written).ok
    assert "MRN-123,SUBJ-1" in mapping.read_text()
    again = tmp_path / "again"
    assert main(["deid", str(rt_set), str(again), "--trial", str(trial), "--key-file",
                 str(key), "-q"]) == 0
    names = lambda folder: sorted(p.name for p in folder.rglob("*.dcm"))  # noqa: E731
    assert names(out) == names(again)  # same key, same UIDs


def test_relink(rt_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["relink", str(rt_set), str(out), "--patient-id", "NEW-1", "--sex", "F",
                 "--birth-date", "19700101", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["uid_map"]) == 5 and len(report["rt_dose_not_relinked"]) == 1
    written = {str(ds.Modality): ds for _, ds in read_folder(out)}
    assert written["RTDOSE"].PatientID == "MRN-123" and written["RTPLAN"].PatientID == "NEW-1"
    assert written["RTPLAN"].StudyInstanceUID == report["study_map"][STUDY] \
        == written["CT"].StudyInstanceUID != STUDY
    assert report["warnings"] == [] and capsys.readouterr().err == ""


def test_relink_keep_study_uids_warns(rt_set: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["relink", str(rt_set), str(out), "--patient-id", "NEW-1",
                 "--keep-study-uids"]) == 0
    err = capsys.readouterr().err
    assert f"warning: --keep-study-uids: study {STUDY} now exists under two patients " \
           "(MRN-123 and NEW-1)" in err
    assert {str(ds.StudyInstanceUID) for _, ds in read_folder(out)} == {STUDY}


def test_bad_usage_and_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "info", str(tmp_path / "missing.dcm")]) == 1
    assert "missing.dcm: no such file" in capsys.readouterr().err
    assert main(["relink", str(tmp_path), str(tmp_path / "o"), "--patient-id", "X",
                 "--birth-date", "1970"]) == 1
    assert "birth_date" in capsys.readouterr().err
    assert main(["deid", str(tmp_path), str(tmp_path / "o")]) == 2  # --trial is required
    capsys.readouterr()
    (tmp_path / "t.toml").write_text('sponsor_name = "S"\n')
    assert main(["deid", str(tmp_path), str(tmp_path / "o"), "--trial",
                 str(tmp_path / "t.toml")]) == 1
    assert "incomplete" in capsys.readouterr().err


def test_deid_options_from_the_command_line(rt_set: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    trial = tmp_path / "trial.toml"
    trial.write_text('sponsor_name = "S"\nprotocol_id = "P"\nsubject_id = "SUBJ-1"\n')
    out = tmp_path / "out"
    assert main(["deid", str(rt_set), str(out), "--trial", str(trial), "--keep-descriptors",
                 "--shift-dates", "-365", "-q"]) == 0
    written = [ds for _, ds in read_folder(out)]
    assert all(ds.LongitudinalTemporalInformationModified == "MODIFIED" for ds in written)
    assert all({c.CodeValue for c in ds.DeidentificationMethodCodeSequence}
               == {"113100", "113105", "113107"} for ds in written)
