"""Names in three scripts through C-FIND and C-MOVE against dcmqrscp and Orthanc.

Issue 14 item 5: an identifier carries Specific Character Set whenever a value
is not ASCII (ISO_IR 100 where Latin-1 holds it, else ISO_IR 192).  On main,
``Müller*`` was sent without it (dcmqrscp matched nothing) and ``山田*`` was
sent as ``??*`` (every patient matched).

The archives hold one CT per patient: the Latin-1 patient in ISO_IR 100, the
Greek and Japanese ones in ISO_IR 192 (as ``rtforge relink`` writes them, see
tests/cli/test_charset_cli.py), beside an ASCII patient.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import dcmread

from rtforge.cli import main
from rtforge.errors import InvalidInputError
from rtforge.net import StorageSCP, move, send
from tests.datafiles import pydicom_file
from tests.net.peers import (
    LOCALHOST,
    Peer,
    copy_with_new_uids,
    received_files,
    run_dcmqrscp,
    run_orthanc,
    scp_node,
)

pytestmark = pytest.mark.interop

#: Patient ID and Patient's Name of each patient, and whether it needs UTF-8.
PATIENTS = {
    "latin1": ("MÜLLER-01", "Müller^Jörg", False),
    "greek": ("ΠΑΠ-01", "Παπαδόπουλος^Γιώργος", True),
    "japanese": ("ヤマダ-01", "山田^太郎", True),
    "ascii": ("DOE-01", "Doe^John", False),
}


@dataclass
class Loaded:
    """A Q/R peer holding the four patients, and our SCP as its move destination."""

    peer: Peer
    receiver: StorageSCP
    files: dict[str, Path]  # patient key -> its relinked CT

    def address(self) -> str:
        return f"{self.peer.node.ae_title}@{LOCALHOST}:{self.peer.node.port}"


def _objects(root: Path) -> dict[str, Path]:
    """One CT per patient: ISO_IR 100 where Latin-1 holds the name, else ISO_IR 192."""
    files = {}
    for key, (patient_id, name, needs_utf8) in PATIENTS.items():
        [path] = copy_with_new_uids(pydicom_file("CT_small.dcm"), root / "src" / key, 1)
        ds = dcmread(path)
        ds.SpecificCharacterSet = "ISO_IR 192" if needs_utf8 else "ISO_IR 100"
        ds.PatientID, ds.PatientName = patient_id, name
        ds.save_as(path)
        files[key] = path
    return files


def _loaded(tmp_path_factory: pytest.TempPathFactory, run) -> Iterator[Loaded]:  # noqa: ANN001
    root = tmp_path_factory.mktemp("charset")
    files = _objects(root)
    with StorageSCP(root / "moved", ae_title="RTFORGE_RX", port=0, host=LOCALHOST) as receiver:
        for peer in run(root / "peer", scp_node(receiver)):
            report = send(list(files.values()), peer.node)
            assert report.ok, report.failed
            yield Loaded(peer, receiver, files)


@pytest.fixture(scope="module")
def archive(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    """The peer named by the test's indirect parameter, loaded with the four patients."""
    yield from _loaded(tmp_path_factory, {"dcmqrscp": run_dcmqrscp,
                                          "orthanc": run_orthanc}[request.param])


def _find(archive: Loaded, pattern: str, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """``rtforge find NODE --patient-name PATTERN --json``: Patient's Name by Study UID."""
    capsys.readouterr()
    assert main(["find", archive.address(), "--patient-name", pattern, "--json"]) == 0
    return {row["StudyInstanceUID"]: row["PatientName"]
            for row in json.loads(capsys.readouterr().out)}


def _study(archive: Loaded, key: str) -> str:
    return str(dcmread(archive.files[key], stop_before_pixels=True).StudyInstanceUID)


def _moved(archive: Loaded, key: str, model: str = "patient") -> Path:
    """C-MOVE of one patient's study; with the Patient Root model its Patient ID (not
    ASCII) is in the identifier."""
    for path in received_files(archive.receiver.out_dir):
        path.unlink()
    patient_id = PATIENTS[key][0] if model == "patient" else None
    result = move(archive.peer.node, "RTFORGE_RX", model=model, patient_id=patient_id,
                  study_uid=_study(archive, key))
    assert (result.completed, result.failed) == (1, 0)
    deadline = time.monotonic() + 20
    while not received_files(archive.receiver.out_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    [arrived] = received_files(archive.receiver.out_dir)
    return arrived


@pytest.mark.parametrize("archive", ["dcmqrscp", "orthanc"], indirect=True)
def test_latin1_name_is_found_and_moved(archive: Loaded,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert _find(archive, "Müller*", capsys) == {_study(archive, "latin1"): "Müller^Jörg"}
    assert _find(archive, "Doe*", capsys) == {_study(archive, "ascii"): "Doe^John"}
    # dcmqrscp 3.6.7 converts a C-FIND identifier to UTF-8 but compares C-MOVE keys as
    # UTF-8 bytes whatever their Specific Character Set: a Latin-1 Patient ID sent in
    # ISO_IR 100 (as PS3.5 says) moves nothing there, so it is moved by UIDs alone.
    by_patient = archive.peer.node.ae_title == "ORTHANC"
    arrived = dcmread(_moved(archive, "latin1", "patient" if by_patient else "study"))
    assert str(arrived.PatientName) == "Müller^Jörg" and arrived.PatientID == "MÜLLER-01"


@pytest.mark.parametrize("archive", ["orthanc"], indirect=True)
@pytest.mark.parametrize("key, pattern", [("greek", "Παπαδ*"), ("japanese", "山田*")])
def test_utf8_names_are_found_and_moved_on_orthanc(archive: Loaded, key: str, pattern: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Orthanc matches the UTF-8 query exactly (``??*`` matched every patient).  It answers
    in its DefaultEncoding (Latin1 unless configured), so the name in the answer loses
    what Latin-1 lacks: the match is checked by Study Instance UID, the name on the
    moved object."""
    name = PATIENTS[key][1]
    assert list(_find(archive, pattern, capsys)) == [_study(archive, key)]
    arrived = dcmread(_moved(archive, key))
    assert str(arrived.PatientName) == name and arrived.PatientID == PATIENTS[key][0]
    assert arrived.SpecificCharacterSet == "ISO_IR 192"


@pytest.mark.parametrize("archive", ["dcmqrscp"], indirect=True)
@pytest.mark.parametrize("key, pattern", [("greek", "Παπαδ*"), ("japanese", "山田*")])
def test_utf8_names_on_dcmqrscp(archive: Loaded, key: str, pattern: str,
                                capsys: pytest.CaptureFixture[str]) -> None:
    """dcmqrscp (dcmtk 3.6.7) matches the UTF-8 bytes of an ISO_IR 192 query against
    the UTF-8 records it stored, and moves by a UTF-8 Patient ID."""
    name = PATIENTS[key][1]
    assert _find(archive, pattern, capsys) == {_study(archive, key): name}
    arrived = dcmread(_moved(archive, key))
    assert str(arrived.PatientName) == name


@pytest.mark.parametrize("archive", ["orthanc"], indirect=True)
def test_a_non_ascii_uid_is_refused_before_sending(archive: Loaded,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["find", archive.address(), "--study-uid", "1.2.3.ä"]) == 1
        err = capsys.readouterr().err
        assert "StudyInstanceUID" in err and "ASCII" in err
        with pytest.raises(InvalidInputError, match="SeriesInstanceUID.*ASCII"):
            move(archive.peer.node, "RTFORGE_RX", study_uid="1.2.3", series_uid="1.2.3.ü")
    assert not caught, [str(w.message) for w in caught]  # our error is the only sign

