"""The character-set policy (rtforge.io.charset): what writers and queries may send."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread
from pydicom.uid import CTImageStorage, generate_uid

from rtforge.config import CHARACTER_SETS, ExportConfig
from rtforge.errors import ConformanceError, InvalidInputError
from rtforge.io.charset import (
    CODECS,
    check_dataset,
    conformed,
    output_character_set,
    query_character_set,
)
from rtforge.io.fileset import write_dataset_file
from rtforge.io.media import export_media
from rtforge.io.rtplan import write_rtplan
from rtforge.io.rtstruct import Contour, Structure, build_rtstruct, write_rtstruct
from rtforge.io.validate import dciodvfy_available, validate_file
from tests.datafiles import pydicom_file
from tests.io.test_rtplan_builder import build, source
from tests.net.peers import copy_with_new_uids

GREEK = "Παπαδόπουλος^Γιώργος"
UTF8 = ExportConfig(uid_root="1.2.826.0.1.3680043.8.498.66.", station_name="cs-test",
                    character_set="ISO_IR 192")


def _object(character_set: str | list[str] | None, name: str, meaning: str = "") -> Dataset:
    ds = Dataset()
    if character_set is not None:
        ds.SpecificCharacterSet = character_set
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid()
    ds.PatientName, ds.PatientID = name, "P1"
    item = Dataset()
    item.CodeMeaning = meaning or name.split("^")[0]
    ds.DerivationCodeSequence = [item]
    return ds


def _saved(ds: Dataset, path: Path) -> Dataset:
    """``ds`` written by pydicom (in its own character set) and read back."""
    ds.save_as(path, implicit_vr=False, little_endian=True)
    return dcmread(path, force=True)


def test_default_is_iso_ir_100_and_only_two_sets_are_allowed() -> None:
    assert output_character_set(None) == "ISO_IR 100" == output_character_set(ExportConfig())
    assert output_character_set(UTF8) == "ISO_IR 192"
    with pytest.raises(InvalidInputError, match="character_set must be one of"):
        ExportConfig(character_set="ISO 2022 IR 87")
    assert set(CHARACTER_SETS) <= set(CODECS)  # every set the configuration allows is written


def test_write_refuses_what_pydicom_would_write_as_question_marks(tmp_path: Path) -> None:
    ds = _object("ISO_IR 100", GREEK, meaning="Müller")
    target = tmp_path / "out" / "x.dcm"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pydicom's "Failed to encode" would raise here
        with pytest.raises(InvalidInputError, match=re.escape(f"PatientName: value '{GREEK}'")):
            write_dataset_file(ds, target)
    assert not target.exists()
    ds.PatientName = "Müller^Jörg"
    ds.DerivationCodeSequence[0].CodeMeaning = "Παπαδόπουλος"
    with pytest.raises(InvalidInputError, match="CodeMeaning.*Παπαδόπουλος"):  # in a sequence
        write_dataset_file(ds, target)
    ds.DerivationCodeSequence[0].CodeMeaning = "Müller"
    write_dataset_file(ds, target)
    assert b"M\xfcller^J\xf6rg" in target.read_bytes()


def test_ascii_only_vrs_and_unknown_sets_are_refused() -> None:
    ds = _object("ISO_IR 192", "Doe^Jane")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns when it is set
        ds.Modality = "CTé"
    with pytest.raises(InvalidInputError, match="Modality.*ASCII"):
        check_dataset(ds)
    with pytest.raises(ConformanceError, match="ISO 2022 IR 87"):
        check_dataset(_object(["", "ISO 2022 IR 87"], "Doe^Jane"))


def test_conformed_decodes_with_the_source_set_and_re_encodes(tmp_path: Path) -> None:
    # A Japanese source in ISO 2022 (JIS X 0208), a set rtforge does not write.
    source_ds = _saved(_object(["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎"),
                       tmp_path / "jis.dcm")
    utf8 = conformed(source_ds, "ISO_IR 192")
    assert utf8 is not source_ds and source_ds.SpecificCharacterSet == ["", "ISO 2022 IR 87"]
    back = dcmread(write_dataset_file(utf8, tmp_path / "utf8.dcm"))
    assert back.SpecificCharacterSet == "ISO_IR 192"
    assert str(back.PatientName) == "Yamada^Tarou=山田^太郎"
    assert back.DerivationCodeSequence[0].CodeMeaning == "Yamada"
    assert "山田^太郎".encode() in (tmp_path / "utf8.dcm").read_bytes()
    with pytest.raises(InvalidInputError, match="PatientName.*山田"):
        conformed(source_ds, "ISO_IR 100")
    # UTF-8 to Latin-1 where it fits.
    latin = conformed(_saved(_object("ISO_IR 192", "Müller^Jörg"), tmp_path / "u.dcm"),
                      "ISO_IR 100")
    back = dcmread(write_dataset_file(latin, tmp_path / "latin.dcm"))
    assert (back.SpecificCharacterSet, str(back.PatientName)) == ("ISO_IR 100", "Müller^Jörg")
    # Already in the set, or ASCII without a set: returned as it is.
    same = _object("ISO_IR 100", "Doe^Jane")
    assert conformed(same, "ISO_IR 100") is same
    plain = _object(None, "Doe^Jane")
    assert conformed(plain, "ISO_IR 192") is plain


def test_conformed_refuses_text_the_source_could_not_decode(tmp_path: Path) -> None:
    path = tmp_path / "bad.dcm"
    ds = _object("ISO_IR 192", "Doe^Jane")
    _saved(ds, path)
    data = path.read_bytes().replace(b"Doe^Jane", b"Do\xff^Jane")  # not UTF-8
    path.write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns while decoding; we raise
        with pytest.raises(InvalidInputError, match="PatientName.*could not be decoded"):
            conformed(dcmread(path, force=True), "ISO_IR 192")


def test_builders_write_the_configured_set(tmp_path: Path) -> None:
    greek_source = source()
    greek_source.PatientName = GREEK
    with pytest.raises(InvalidInputError, match=re.escape(f"PatientName: value '{GREEK}'")):
        build(source=greek_source)
    plan = dcmread(write_rtplan(build(source=greek_source, config=UTF8), tmp_path, flat=True))
    assert (plan.SpecificCharacterSet, str(plan.PatientName)) == ("ISO_IR 192", GREEK)
    structure = Structure(1, "Ωμέγα", (Contour([[0.0, 0.0, 0.0]], "POINT"),))
    options = {"frame_of_reference_uid": "1.2.3", "source": greek_source}
    with pytest.raises(InvalidInputError, match="Ωμέγα|Παπαδόπουλος"):
        build_rtstruct([structure], **options)
    ss = build_rtstruct([structure], config=UTF8, **options)
    back = dcmread(write_rtstruct(ss.dataset, tmp_path, flat=True))
    assert back.SpecificCharacterSet == "ISO_IR 192"
    assert back.StructureSetROISequence[0].ROIName == "Ωμέγα"


def _ct_file(folder: Path, character_set: str, name: str) -> Path:
    """A minimal CT Part 10 file in ``character_set`` whose patient is ``name``."""
    [path] = copy_with_new_uids(pydicom_file("CT_small.dcm"), folder, 1, patient_id=folder.name)
    ds = dcmread(path)
    ds.SpecificCharacterSet, ds.PatientName = character_set, name
    ds.save_as(path)
    return path


def test_dicomdir_records_follow_the_policy(tmp_path: Path) -> None:
    latin_in_utf8 = _ct_file(tmp_path / "a", "ISO_IR 192", "Müller^Jörg")
    greek = _ct_file(tmp_path / "b", "ISO_IR 192", GREEK)
    with pytest.raises(InvalidInputError, match=re.escape(f"PatientName: value '{GREEK}'")):
        export_media([latin_in_utf8, greek], tmp_path / "cd", dicomdir=True)
    assert not (tmp_path / "cd").exists()
    report = export_media([latin_in_utf8], tmp_path / "cd1", dicomdir=True)
    records = dcmread(report.dicomdir).DirectoryRecordSequence
    assert {r.SpecificCharacterSet for r in records} == {"ISO_IR 100"}
    assert str(records[0].PatientName) == "Müller^Jörg"
    assert report.files[0].read_bytes() == latin_in_utf8.read_bytes()  # copied as it is
    report = export_media([latin_in_utf8, greek], tmp_path / "cd2", dicomdir=True,
                          character_set="ISO_IR 192")
    records = dcmread(report.dicomdir).DirectoryRecordSequence
    assert {r.SpecificCharacterSet for r in records} == {"ISO_IR 192"}
    assert {str(r.PatientName) for r in records if r.DirectoryRecordType == "PATIENT"} == {
        "Müller^Jörg", GREEK}


@pytest.mark.interop
@pytest.mark.skipif(not dciodvfy_available(), reason="dciodvfy (dicom3tools) not installed")
def test_iso_ir_192_dicomdir_passes_dciodvfy(tmp_path: Path) -> None:
    greek = _ct_file(tmp_path / "b", "ISO_IR 192", GREEK)
    report = export_media([greek], tmp_path / "cd", dicomdir=True, character_set="ISO_IR 192")
    result = validate_file(report.dicomdir)
    assert result.dciodvfy_ran and result.iod == "BasicDirectory", result
    assert (result.errors, result.warnings) == ([], [])


@pytest.mark.parametrize("values, expected", [
    (["DOE^*", "", "1.2.3"], None),
    (["Müller*", "1.2.3"], "ISO_IR 100"),
    (["山田*"], "ISO_IR 192"),
    (["Müller*", "Ωmega"], "ISO_IR 192"),
])
def test_query_character_set(values: list[str], expected: str | None) -> None:
    assert query_character_set(values) == expected
