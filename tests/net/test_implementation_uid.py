"""One Implementation Class UID and Version Name in rtforge's files, associations and DICOMDIRs."""

from __future__ import annotations

from pathlib import Path

from pydicom import dcmread
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from rtforge import __version__
from rtforge.config import Node
from rtforge.io.fileset import IMPLEMENTATION_CLASS_UID
from rtforge.io.media import DICOMDIR, export_media
from rtforge.net import StorageSCP, find, send
from rtforge.workflows.demo import make_phantom_patient
from tests.net.peers import LOCALHOST, received_files, scp_node

OURS = (IMPLEMENTATION_CLASS_UID, f"RTFORGE_{__version__}"[:16])


def _meta(path: Path) -> tuple[str, str]:
    meta = dcmread(path, stop_before_pixels=True).file_meta
    return str(meta.ImplementationClassUID), str(meta.ImplementationVersionName)


def test_files_dicomdir_and_associations_carry_the_same_uid(tmp_path: Path) -> None:
    make_phantom_patient(tmp_path / "phantom", size=16, nslices=2)
    written = sorted((tmp_path / "phantom").rglob("*.dcm"))
    assert written and {_meta(p) for p in written} == {OURS}  # files
    export_media(written[:2], tmp_path / "cd", dicomdir=True)
    assert _meta(tmp_path / "cd" / DICOMDIR) == OURS  # DICOMDIR

    announced: list[tuple[str, str]] = []

    def on_requested(event: evt.Event) -> None:
        requestor = event.assoc.requestor
        announced.append((str(requestor.implementation_class_uid),
                          str(requestor.implementation_version_name)))

    ae = AE(ae_title="WATCHER")
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax)
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    server = ae.start_server((LOCALHOST, 0), block=False,
                             evt_handlers=[(evt.EVT_REQUESTED, on_requested),
                                           (evt.EVT_C_STORE, lambda event: 0x0000),
                                           (evt.EVT_C_FIND, lambda event: iter(()))])
    try:
        node = Node("WATCHER", LOCALHOST, server.socket.getsockname()[1], timeout=10)
        assert send(written[:1], node).ok  # our own association code
        find(node, "study", filters={"PatientID": "X"})  # through pynetdicom
    finally:
        server.shutdown()
    assert announced == [OURS, OURS]  # associations

    with StorageSCP(tmp_path / "rx", port=0, host=LOCALHOST) as scp:
        assert send(written[:1], scp_node(scp)).ok
    assert [_meta(p) for p in received_files(tmp_path / "rx")] == [OURS]  # received files
