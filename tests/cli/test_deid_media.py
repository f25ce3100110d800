"""A de-identified case goes to media (issue 16 item 4): DICOMDIR, dcmtk, dciodvfy; trial files."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.fileset import FileSet

from rtforge.cli import main
from rtforge.io.validate import dciodvfy_available, validate_file
from tests.cli.test_archive_cli import config  # noqa: F401  (config: a fixture)

DCMDUMP = "/usr/bin/dcmdump"
DCMFTEST = "/usr/bin/dcmftest"
TRIAL = 'sponsor_name = "S"\nprotocol_id = "P"\nsubject_id = "SUBJ-0001"\n'
pytestmark = pytest.mark.usefixtures("config")  # an empty configuration: the user's never leaks in


@pytest.mark.interop
@pytest.mark.skipif(not dciodvfy_available(), reason="dciodvfy (dicom3tools) not installed")
def test_deidentified_case_exports_with_a_valid_dicomdir(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    for tool in (DCMDUMP, DCMFTEST):
        if not Path(tool).exists():
            pytest.skip(f"{tool} not installed (Debian package dcmtk)")
    demo, deid, store, cd = (tmp_path / n for n in ("demo", "deid", "store", "cd"))
    trial = tmp_path / "trial.toml"
    trial.write_text(TRIAL)
    assert main(["demo", str(demo), "--size", "32", "--slices", "6", "-q"]) == 0
    capsys.readouterr()
    # the resliced series reference their source images, which are not in the set
    assert main(["deid", str(demo / "resliced"), str(deid), "--trial", str(trial)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "outside the set" in lines[1] and "--verbose" in lines[1], lines
    assert main(["deid", str(demo / "resliced"), str(tmp_path / "again"), "--trial", str(trial),
                 "--verbose"]) == 0
    assert len(capsys.readouterr().out.splitlines()) > 2  # every reference listed
    files = sorted(deid.rglob("*.dcm"))
    for path in files:
        ds = dcmread(path, stop_before_pixels=True)
        assert str(ds.PatientName) == "SUBJ-0001^" and ds.PatientID == "SUBJ-0001"
        assert ds.StudyDate and ds.StudyTime and ds.StudyID
        assert ds.get("SeriesDate", ds.StudyDate) == ds.StudyDate  # one dummy date
    assert main(["store", "import", str(deid), "--store", str(store), "-q"]) == 0
    assert main(["media", "export", "SUBJ-0001", str(cd), "--dicomdir", "--store",
                 str(store), "-q"]) == 0
    fileset = FileSet(dcmread(cd / "DICOMDIR"))
    assert len(fileset) == len(files)
    assert {str(i.SOPInstanceUID) for i in fileset} == \
        {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in files}
    dump = subprocess.run([DCMDUMP, "-q", str(cd / "DICOMDIR")], capture_output=True, text=True,
                          timeout=60)
    assert dump.returncode == 0, dump.stderr
    assert "19000101" in dump.stdout and "SUBJ-0001^" in dump.stdout
    written = [p for p in cd.rglob("*") if p.is_file() and p.name != "DICOMDIR"]
    check = subprocess.run([DCMFTEST, *map(str, written)], capture_output=True, text=True,
                           timeout=60)
    assert check.returncode == 0 and check.stdout.count("yes:") == len(files), check.stdout
    one_per_class: dict[str, Path] = {}
    for path in files:
        one_per_class.setdefault(str(dcmread(path, stop_before_pixels=True).SOPClassUID), path)
    assert len(one_per_class) >= 5  # CT, RT Structure Set, Plan, Dose, Image
    for path in one_per_class.values():
        result = validate_file(path)
        assert result.dciodvfy_ran and result.errors == [], (path, result.errors)


@pytest.mark.parametrize(("text", "says"), [
    ('sponsor_name = "S"\n', "incomplete trial: missing required key(s) protocol_id, subject_id"),
    ('sponsor_name = "S"\nprotocol_id = 7\nsubject_id = "X"\n',
     "protocol_id: protocol_id must be text (a quoted TOML string), got int 7"),
    ('sponsor_name = "S"\nprotocol_id = "P"\nsubject_id = "X"\nsite = "A"\n',
     "unknown key(s) site"),
    ('sponsor_name = "S\n', "not valid TOML"),
    ('trial = 3\n', "trial: 'trial' must be a table"),
    ('sponsor_name = "S"\nprotocol_id = "P"\nsubject_id = " "\n',
     "subject_id: the trial needs a non-empty subject_id"),
])
def test_bad_trial_file_is_one_line_naming_file_and_key(tmp_path: Path, text: str, says: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    trial = tmp_path / "bad.toml"
    trial.write_text(text)
    (tmp_path / "in").mkdir()
    assert main(["deid", str(tmp_path / "in"), str(tmp_path / "out"), "--trial",
                 str(trial)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and str(trial) in err[0] and says in err[0], err
    assert "__init__" not in err[0] and not (tmp_path / "out").exists()
