"""One character-set policy (issue 14 item 5): relink, deid and reslice, as a user runs them.

Latin-1 names round-trip under the default (ISO_IR 100, iPlan table 8-22);
Greek and Japanese ones fail with exit 1, one line naming the attribute and the
value, and nothing written; with ``character_set = "ISO_IR 192"`` configured
they round-trip in UTF-8.  pydicom's "Failed to encode" warning (it then
writes ``?``) never happens.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from rtforge.cli import main
from rtforge.io.validate import dciodvfy_available, validate_file
from tests.io.test_references import make_rt_set, write_set

LATIN1 = "Müller^Jörg"
GREEK = "Παπαδόπουλος^Γιώργος"
JAPANESE = "山田^太郎"


@pytest.fixture
def utf8_config(tmp_path: Path) -> Path:
    path = tmp_path / "utf8.toml"
    path.write_text('[export]\ncharacter_set = "ISO_IR 192"\n', encoding="utf-8")
    return path


@pytest.fixture
def rt_set(tmp_path: Path) -> Path:
    """The six-object RT set (CT, RTSTRUCT, RTPLAN, RTDOSE, RTIMAGE) in ISO_IR 100."""
    objects = make_rt_set()
    for ds in objects:
        ds.SpecificCharacterSet = "ISO_IR 100"
    folder = tmp_path / "in"
    write_set(folder, objects)
    return folder


@pytest.fixture
def no_encoding_warning() -> Iterator[None]:
    """Fail if pydicom warns that it could not encode a value (and wrote '?')."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    failed = [str(w.message) for w in caught if "encode" in str(w.message)]
    assert not failed, failed


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _refused(capsys: pytest.CaptureFixture[str], command: str, keyword: str, value: str,
             source: Path) -> None:
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"rtforge {command}: ") and "\n" not in err, err
    assert str(source) in err, err  # names the input
    assert keyword in err and repr(value) in err and "ISO_IR 100" in err, err
    assert "ISO_IR 192" in err  # the remedy


# ---------------------------------------------------------------------- relink
def test_relink_latin1_name_round_trips_in_iso_ir_100(rt_set: Path, tmp_path: Path,
                                                     no_encoding_warning: None) -> None:
    out = tmp_path / "out"
    assert main(["relink", str(rt_set), str(out), "--patient-id", "P2", "--patient-name",
                 LATIN1, "-q"]) == 0
    written = [pydicom.dcmread(p) for p in _files(out)]
    assert len(written) == 6
    relinked = [ds for ds in written if ds.Modality != "RTDOSE"]
    assert {str(ds.PatientName) for ds in relinked} == {LATIN1}
    assert {ds.SpecificCharacterSet for ds in written} == {"ISO_IR 100"}
    # The bytes are Latin-1, not '?'.
    assert all(LATIN1.encode("latin_1") in p.read_bytes() for p in _files(out)
               if pydicom.dcmread(p).Modality != "RTDOSE")


@pytest.mark.parametrize("name", [GREEK, JAPANESE], ids=["greek", "japanese"])
def test_relink_name_outside_latin1_fails_and_writes_nothing(
        rt_set: Path, tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str],
        no_encoding_warning: None) -> None:
    out = tmp_path / "out"
    assert main(["relink", str(rt_set), str(out), "--patient-id", "P2",
                 "--patient-name", name]) == 1
    _refused(capsys, "relink", "PatientName", name, rt_set)
    assert _files(out) == []


@pytest.mark.parametrize("name", [GREEK, JAPANESE, LATIN1], ids=["greek", "japanese", "latin1"])
def test_relink_with_iso_ir_192_configured_round_trips(
        rt_set: Path, tmp_path: Path, utf8_config: Path, name: str,
        no_encoding_warning: None) -> None:
    out = tmp_path / "out"
    assert main(["relink", str(rt_set), str(out), "--patient-id", "P2", "--patient-name", name,
                 "--config", str(utf8_config), "-q"]) == 0
    written = [pydicom.dcmread(p) for p in _files(out)]
    assert len(written) == 6
    assert {ds.SpecificCharacterSet for ds in written} == {"ISO_IR 192"}  # every object
    assert {str(ds.PatientName) for ds in written if ds.Modality != "RTDOSE"} == {name}
    dose = next(ds for ds in written if ds.Modality == "RTDOSE")
    assert str(dose.PatientName) == "Doe^Jane"  # not re-linked, re-encoded only
    assert any(name.encode("utf_8") in p.read_bytes() for p in _files(out))


# ------------------------------------------------------------------------ deid
def _trial(tmp_path: Path, site_name: str) -> Path:
    path = tmp_path / "trial.toml"
    path.write_text(f'sponsor_name = "S"\nprotocol_id = "P"\nsubject_id = "SUBJ-1"\n'
                    f'site_name = "{site_name}"\n', encoding="utf-8")
    return path


@pytest.mark.parametrize("site", ["Αθήνα Νοσοκομείο", "東京病院"], ids=["greek", "japanese"])
def test_deid_trial_outside_latin1_fails_or_round_trips_with_iso_ir_192(
        rt_set: Path, tmp_path: Path, utf8_config: Path, site: str,
        capsys: pytest.CaptureFixture[str], no_encoding_warning: None) -> None:
    trial = _trial(tmp_path, site)
    out = tmp_path / "out"
    assert main(["deid", str(rt_set), str(out), "--trial", str(trial)]) == 1
    _refused(capsys, "deid", "ClinicalTrialSiteName", site, rt_set)
    assert _files(out) == []
    assert main(["deid", str(rt_set), str(out), "--trial", str(trial), "--config",
                 str(utf8_config), "-q"]) == 0
    written = [pydicom.dcmread(p) for p in _files(out)]
    assert len(written) == 6
    assert {ds.SpecificCharacterSet for ds in written} == {"ISO_IR 192"}
    assert {ds.ClinicalTrialSiteName for ds in written} == {site}


def test_deid_latin1_trial_round_trips_in_iso_ir_100(rt_set: Path, tmp_path: Path,
                                                    no_encoding_warning: None) -> None:
    out = tmp_path / "out"
    assert main(["deid", str(rt_set), str(out), "--trial", str(_trial(tmp_path, "Zürich Spital")),
                 "-q"]) == 0
    written = [pydicom.dcmread(p) for p in _files(out)]
    assert {ds.SpecificCharacterSet for ds in written} == {"ISO_IR 100"}
    assert {ds.ClinicalTrialSiteName for ds in written} == {"Zürich Spital"}


# --------------------------------------------------------------------- reslice
def _utf8_source(phantom_patient, folder: Path, name: str) -> Path:
    """A copy of the oblique phantom series re-encoded in ISO_IR 192, named ``name``."""
    shutil.copytree(phantom_patient[0].folder, folder)
    for path in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.PatientName = name
        ds.StudyDescription = f"{name} study"
        ds.save_as(path)
    assert pydicom.dcmread(path).SpecificCharacterSet == "ISO_IR 192"
    return folder


def test_reslice_of_an_iso_ir_192_source_writes_iso_ir_100(phantom_patient, tmp_path: Path,
                                                          no_encoding_warning: None) -> None:
    src = _utf8_source(phantom_patient, tmp_path / "src", LATIN1)
    out = tmp_path / "out"
    assert main(["reslice", str(src), str(out), "-q"]) == 0
    written = [pydicom.dcmread(p, stop_before_pixels=True) for p in _files(out)]
    assert written
    assert {ds.SpecificCharacterSet for ds in written} == {"ISO_IR 100"}  # iPlan table 8-22
    assert {str(ds.PatientName) for ds in written} == {LATIN1}
    assert {ds.StudyDescription for ds in written} == {f"{LATIN1} study"}


@pytest.mark.parametrize("name", [GREEK, JAPANESE], ids=["greek", "japanese"])
def test_reslice_of_a_name_outside_latin1(phantom_patient, tmp_path: Path, utf8_config: Path,
                                          name: str, capsys: pytest.CaptureFixture[str],
                                          no_encoding_warning: None) -> None:
    src = _utf8_source(phantom_patient, tmp_path / "src", name)
    out = tmp_path / "out"
    assert main(["reslice", str(src), str(out)]) == 1
    _refused(capsys, "reslice", "PatientName", name, src)
    assert [p for p in _files(out) if p.suffix == ".dcm"] == []
    assert main(["reslice", str(src), str(out), "--config", str(utf8_config), "-q"]) == 0
    written = [pydicom.dcmread(p, stop_before_pixels=True) for p in _files(out)
               if p.suffix == ".dcm"]
    assert written
    assert {ds.SpecificCharacterSet for ds in written} == {"ISO_IR 192"}
    assert {str(ds.PatientName) for ds in written} == {name}
    assert {ds.StudyDescription for ds in written} == {f"{name} study"}


@pytest.mark.interop
@pytest.mark.skipif(not dciodvfy_available(), reason="dciodvfy (dicom3tools) not installed")
def test_iso_ir_192_output_passes_dciodvfy(phantom_patient, rt_set: Path, tmp_path: Path,
                                           utf8_config: Path) -> None:
    src = _utf8_source(phantom_patient, tmp_path / "src", JAPANESE)
    out = tmp_path / "resliced"
    assert main(["reslice", str(src), str(out), "--config", str(utf8_config), "-q"]) == 0
    relinked = tmp_path / "relinked"
    assert main(["relink", str(rt_set), str(relinked), "--patient-id", "P2", "--patient-name",
                 GREEK, "--config", str(utf8_config), "-q"]) == 0
    ct = [p for p in _files(out) if p.suffix == ".dcm"][0]
    plan = next(p for p in _files(relinked) if pydicom.dcmread(p).Modality == "RTPLAN")
    for path in (ct, plan):
        result = validate_file(path)
        assert result.dciodvfy_ran, result
        assert result.errors == [], (path, result.errors)
        assert pydicom.dcmread(path).SpecificCharacterSet == "ISO_IR 192"


def test_a_source_in_an_unknown_character_set_is_refused_not_guessed(
        phantom_patient, rt_set: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """pydicom reads an unknown Specific Character Set as Latin-1 with a warning only."""
    src = _utf8_source(phantom_patient, tmp_path / "src", LATIN1)
    for path in [*src.glob("*.dcm"), *rt_set.rglob("*.dcm")]:
        path.write_bytes(path.read_bytes().replace(b"ISO_IR 192", b"ISO_IR 999")
                         .replace(b"ISO_IR 100", b"ISO_IR 999"))
    for argv in (["reslice", str(src), str(tmp_path / "o1")],
                 ["relink", str(rt_set), str(tmp_path / "o2"), "--patient-id", "P2"]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's warning while reading
            assert main(argv) == 1
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "SpecificCharacterSet" in err and "ISO_IR 999" in err, err
    assert _files(tmp_path / "o1") == [] and _files(tmp_path / "o2") == []
