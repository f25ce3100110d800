"""Query/Retrieve SCU against dcmqrscp (strictly hierarchical) and Orthanc, moving to our SCP."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import dcmread

from rtforge.cli import main
from rtforge.config import Node
from rtforge.errors import InvalidInputError, NetworkError
from rtforge.net import QueryLevel, StorageSCP, find, move, return_keys, send
from tests.datafiles import pydicom_file
from tests.net.peers import (
    LOCALHOST,
    SMALL_FILES,
    Peer,
    copy_with_new_uids,
    dataset_bytes,
    received_files,
    run_dcmqrscp,
    run_orthanc,
    scp_node,
    without_padding,
)

pytestmark = pytest.mark.interop


@dataclass
class Archive:
    """A Q/R peer loaded with our test objects, and our SCP as its move destination."""

    peer: Peer
    receiver: StorageSCP
    series: list[Path]  # three CT slices of one series
    others: list[Path]  # CT, MR, RT Plan, RT Dose: one study each

    @property
    def study_uid(self) -> str:
        return str(dcmread(self.series[0], stop_before_pixels=True).StudyInstanceUID)

    @property
    def series_uid(self) -> str:
        return str(dcmread(self.series[0], stop_before_pixels=True).SeriesInstanceUID)


def _archive(tmp_path_factory: pytest.TempPathFactory, run) -> Iterator[Archive]:
    root = tmp_path_factory.mktemp("archive")
    series = copy_with_new_uids(pydicom_file("CT_small.dcm"), root / "series", 3,
                                patient_id="QR-PATIENT")
    others = [pydicom_file(name) for name in SMALL_FILES]
    with StorageSCP(root / "moved", ae_title="RTFORGE_RX", port=0, host=LOCALHOST) as receiver:
        for peer in run(root / "peer", scp_node(receiver)):
            report = send(series + others, peer.node)
            assert report.ok, report.failed
            yield Archive(peer, receiver, series, others)


@pytest.fixture(scope="module")
def dcmqrscp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    yield from _archive(tmp_path_factory, run_dcmqrscp)


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    yield from _archive(tmp_path_factory, run_orthanc)


def _clear(receiver: StorageSCP) -> None:
    for path in received_files(receiver.out_dir):
        path.unlink()


def _wait_for(receiver: StorageSCP, count: int) -> list[Path]:
    deadline = time.monotonic() + 20
    while len(received_files(receiver.out_dir)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return received_files(receiver.out_dir)


def test_return_keys_follow_oncentra_tables() -> None:
    assert return_keys("study", "study")[:3] == ("QueryRetrieveLevel", "RetrieveAETitle",
                                                 "InstanceAvailability")
    assert "NumberOfStudyRelatedInstances" in return_keys("study", "study")
    assert return_keys("study", "image")[3:] == ("SOPClassUID", "SOPInstanceUID",
                                                 "SeriesInstanceUID", "StudyInstanceUID",
                                                 "InstanceNumber")
    assert return_keys("patient", "series")[3] == "PatientID"
    with pytest.raises(InvalidInputError):
        return_keys("study", "patient")


def test_dcmqrscp_hierarchical_find(dcmqrscp: Archive) -> None:
    node = dcmqrscp.peer.node
    studies = find(node, "study", filters={"PatientID": "QR-PATIENT"})
    assert [ds.StudyInstanceUID for ds in studies] == [dcmqrscp.study_uid]
    assert studies[0].PatientID == "QR-PATIENT"
    series = find(node, QueryLevel.SERIES, filters={"StudyInstanceUID": dcmqrscp.study_uid})
    assert [(ds.SeriesInstanceUID, ds.Modality) for ds in series] == [(dcmqrscp.series_uid, "CT")]
    images = find(node, "image", filters={"StudyInstanceUID": dcmqrscp.study_uid,
                                          "SeriesInstanceUID": dcmqrscp.series_uid})
    expected = {dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in dcmqrscp.series}
    assert {ds.SOPInstanceUID for ds in images} == expected
    everyone = find(node, "patient", model="patient")
    assert {ds.PatientID for ds in everyone} >= {"QR-PATIENT", "1CT1", "4MR1"}
    all_studies = find(node, "study")
    assert len(all_studies) == 1 + len(dcmqrscp.others)


def test_dcmqrscp_moves_a_series_to_our_scp(dcmqrscp: Archive) -> None:
    _clear(dcmqrscp.receiver)
    result = move(dcmqrscp.peer.node, "RTFORGE_RX", study_uid=dcmqrscp.study_uid,
                  series_uid=dcmqrscp.series_uid)
    assert (result.status, result.completed, result.failed, result.warning) == (0, 3, 0, 0)
    arrived = _wait_for(dcmqrscp.receiver, 3)
    by_uid = {dcmread(p).SOPInstanceUID: p for p in arrived}
    for source in dcmqrscp.series:
        original = dcmread(source)
        received = dcmread(by_uid[original.SOPInstanceUID])  # dcmqrscp may transcode
        assert received == without_padding(original)


def test_move_to_an_unknown_destination(dcmqrscp: Archive) -> None:
    with pytest.raises(NetworkError) as info:
        move(dcmqrscp.peer.node, "NOBODY", study_uid=dcmqrscp.study_uid)
    assert info.value.status is not None and 0xA800 <= info.value.status <= 0xA8FF


def test_orthanc_find_and_move_study(orthanc: Archive) -> None:
    node = orthanc.peer.node
    images = find(node, "image", filters={"StudyInstanceUID": orthanc.study_uid})
    assert len(images) == 3  # Orthanc also answers without the series UID
    _clear(orthanc.receiver)
    result = move(node, "RTFORGE_RX", study_uid=orthanc.study_uid)
    assert (result.completed, result.failed) == (3, 0)
    arrived = {dcmread(p).SOPInstanceUID: p for p in _wait_for(orthanc.receiver, 3)}
    for source in orthanc.series:  # Explicit VR LE throughout: nothing was transcoded
        uid = dcmread(source).SOPInstanceUID
        assert dataset_bytes(arrived[uid]) == dataset_bytes(source)


def test_cli_find_and_move(orthanc: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    address = f"ORTHANC@{LOCALHOST}:{orthanc.peer.node.port}"
    assert main(["find", address, "--level", "series", "--study-uid", orthanc.study_uid]) == 0
    out = capsys.readouterr().out
    assert "SeriesInstanceUID" in out.splitlines()[0] and orthanc.series_uid in out
    assert out.rstrip().endswith("1 match")
    assert main(["find", address, "--patient-id", "QR-PATIENT", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["StudyInstanceUID"] for row in rows] == [orthanc.study_uid]
    assert main(["find", address, "--study-date", "2024-01-01"]) == 1
    assert "--study-date takes" in capsys.readouterr().err
    _clear(orthanc.receiver)
    assert main(["move", address, "--dest", "RTFORGE_RX", "--series-uid",
                 orthanc.series_uid]) == 0
    assert "3 completed, 0 failed, 0 warning" in capsys.readouterr().out
    assert len(_wait_for(orthanc.receiver, 3)) == 3
    assert main(["move", address, "--dest", "RTFORGE_RX"]) == 2
    assert main(["move", address, "--dest", "NOBODY", "--study-uid", orthanc.study_uid]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and err.splitlines()[-1].startswith("rtforge move: ORTHANC@")


def test_find_against_nobody() -> None:
    from tests.net.peers import free_port

    with pytest.raises(NetworkError, match="cannot connect"):
        find(Node("NOBODY", LOCALHOST, free_port(), timeout=3), "study")


def test_study_query_by_modality_uses_modalities_in_study(
        orthanc: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    # (dcmqrscp keeps no Modalities in Study in its index: it answers every study, as for
    # any key it cannot match.)
    address = f"ORTHANC@{LOCALHOST}:{orthanc.peer.node.port}"
    mr_study = str(dcmread(pydicom_file("MR_small.dcm"), stop_before_pixels=True)
                   .StudyInstanceUID)
    assert main(["find", address, "--level", "study", "--modality", "MR", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    # A series-level Modality key in a study query is not a matching key of the study level:
    # a strict peer ignores or refuses it. Modalities in Study matches the MR study only.
    assert [row["StudyInstanceUID"] for row in rows] == [mr_study]


@pytest.mark.parametrize("archive", ["dcmqrscp", "orthanc"])
def test_move_a_whole_patient(archive: str, request: pytest.FixtureRequest,
                              capsys: pytest.CaptureFixture[str]) -> None:
    peer: Archive = request.getfixturevalue(archive)
    address = f"{peer.peer.node.ae_title}@{LOCALHOST}:{peer.peer.node.port}"
    _clear(peer.receiver)
    assert main(["move", address, "--dest", "RTFORGE_RX", "--model", "patient",
                 "--patient-id", "QR-PATIENT"]) == 0
    assert "3 completed, 0 failed" in capsys.readouterr().out
    arrived = {dcmread(p).SOPInstanceUID for p in _wait_for(peer.receiver, 3)}
    assert arrived == {dcmread(p).SOPInstanceUID for p in peer.series}
    # The Study Root model has no PATIENT level: a usage error, nothing sent.
    assert main(["move", address, "--dest", "RTFORGE_RX", "--patient-id", "QR-PATIENT"]) == 2
    capsys.readouterr()


def test_a_move_that_matches_nothing_says_so(dcmqrscp: Archive,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    # dcmqrscp answers such a move with success and no sub-operations (Orthanc: 0xC000).
    node = dcmqrscp.peer.node
    address = f"{node.ae_title}@{LOCALHOST}:{node.port}"
    assert main(["move", address, "--dest", "RTFORGE_RX", "--study-uid", "1.2.3.999"]) == 1
    err = capsys.readouterr().err
    assert "the move matched nothing: no object was sent" in err and err.count("\n") == 1
