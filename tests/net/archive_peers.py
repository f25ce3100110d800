"""Peers of the File/Restore tests: a restartable Orthanc archive, a lying archive, a store.

Orthanc keeps its ports and database across :meth:`Archive.kill` and
:meth:`Archive.start`, so a test can stop the archive in the middle of an
operation and bring the same archive back.  Its only move destination is the
restore SCP, whose port is chosen before Orthanc starts.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from rtforge.config import Node
from rtforge.workflows.demo import make_phantom_patient
from tests.net.peers import (
    LOCALHOST,
    ORTHANC,
    ORTHANC_CONFIG,
    free_port,
    needs,
    wait_for_echo,
)

#: AE title and port of rtforge's temporary restore SCP in these tests.
RESTORE_AET = "RTFORGE_RST"


@dataclass
class Archive:
    """Orthanc on fixed free ports under ``work``, restartable.

    ``overwrite=False``: a C-STORE of a SOP Instance UID it holds keeps the
    copy it has (Orthanc's default) and still answers success.
    """

    work: Path
    restore_port: int
    overwrite: bool = True
    port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def node(self) -> Node:
        """The archive's DICOM node."""
        return Node("ORTHANC", LOCALHOST, self.port, timeout=20.0)

    def start(self) -> None:
        """Start Orthanc and wait until it answers C-ECHO."""
        needs(ORTHANC)
        self.work.mkdir(parents=True, exist_ok=True)
        config = self.work / "orthanc.json"
        config.write_text(ORTHANC_CONFIG.format(port=self.port, http_port=self.http_port,
                                                aet="ORTHANC", work=self.work,
                                                dest_aet=RESTORE_AET,
                                                dest_port=self.restore_port)
                          .replace('"OverwriteInstances": true',
                                   f'"OverwriteInstances": {str(self.overwrite).lower()}'))
        self.proc = subprocess.Popen([ORTHANC, "--no-jobs", str(config)], cwd=self.work,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_echo(self.node, self.proc, seconds=30)

    def kill(self) -> None:
        """Kill Orthanc at once (SIGKILL), as a crash or a pulled cable would."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def rest(self, method: str, path: str) -> object:
        """Call Orthanc's REST API on loopback and decode the JSON answer."""
        request = urllib.request.Request(f"http://{LOCALHOST}:{self.http_port}{path}",
                                         method=method)
        with urllib.request.urlopen(request, timeout=10) as answer:
            body = answer.read()
        return json.loads(body) if body else None

    def file(self, orthanc_id: str) -> bytes:
        """The Part 10 file Orthanc holds for one instance (its Orthanc ID)."""
        request = urllib.request.Request(
            f"http://{LOCALHOST}:{self.http_port}/instances/{orthanc_id}/file")
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.read()

    def delete_instance(self, sop_instance_uid: str) -> None:
        """Remove one instance from the archive (by its SOP Instance UID)."""
        for orthanc_id in _lookup(self, sop_instance_uid):
            self.rest("DELETE", f"/instances/{orthanc_id}")


def _lookup(archive: Archive, sop_instance_uid: str) -> list[str]:
    request = urllib.request.Request(f"http://{LOCALHOST}:{archive.http_port}/tools/lookup",
                                     data=sop_instance_uid.encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return [item["ID"] for item in json.loads(answer.read()) if item["Type"] == "Instance"]


def archive_config(archive: Archive, path: Path, **settings: Path) -> Path:
    """Write a configuration naming ``archive`` (node ``archive``) and its restore SCP.

    ``settings`` are more ``[archive]`` keys (``store``, ``catalog``).
    """
    extra = "".join(f'{key} = "{value}"\n' for key, value in settings.items())
    path.write_text(f'[network.nodes.archive]\nae_title = "ORTHANC"\nhost = "{LOCALHOST}"\n'
                    f'port = {archive.port}\n\n[archive]\n{extra}restore_ae_title = '
                    f'"{RESTORE_AET}"\nrestore_port = {archive.restore_port}\n')
    return path


def phantom_store(store: Path, *, size: int = 16, nslices: int = 3) -> list[Path]:
    """A small phantom patient (two CT series) written under ``store``; its files."""
    make_phantom_patient(store, size=size, nslices=nslices)
    return sorted(p for p in store.rglob("*.dcm"))


class LyingArchive:
    """A Query/Retrieve and Storage SCP (pynetdicom) that lies about what it holds.

    It answers C-FIND with every SOP Instance UID of ``known`` (whatever it
    stored) and C-STORE with success, but stores nothing (``lie="nothing"``)
    or a copy with one Pixel Data byte changed (``lie="corrupt"``); C-MOVE
    sends what it stored to the restore SCP at ``restore_port``.

    Parameters
    ----------
    known : dict of str to Dataset
        SOP Instance UID to an identifier with its Study and Series
        Instance UIDs and SOP Class UID.
    """

    def __init__(self, known: dict[str, Dataset], lie: str, restore_port: int) -> None:
        self.known = known
        self.lie = lie
        self.restore_port = restore_port
        self.stored: dict[str, Dataset] = {}
        self.port = free_port()
        ae = AE(ae_title="LIAR")
        ae.supported_contexts = StoragePresentationContexts
        for context in (StudyRootQueryRetrieveInformationModelFind,
                        StudyRootQueryRetrieveInformationModelMove, Verification):
            ae.add_supported_context(context)
        ae.add_requested_context(CTImageStorage)
        ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        self.ae = ae
        self.server = ae.start_server((LOCALHOST, self.port), block=False, evt_handlers=[
            (evt.EVT_C_STORE, self._store), (evt.EVT_C_FIND, self._find),
            (evt.EVT_C_MOVE, self._move)])

    @property
    def node(self) -> Node:
        return Node("LIAR", LOCALHOST, self.port, timeout=10.0)

    def stop(self) -> None:
        self.server.shutdown()

    def _store(self, event: evt.Event) -> int:
        if self.lie == "corrupt":
            ds = event.dataset
            ds.file_meta = event.file_meta
            pixels = bytearray(ds.PixelData)
            pixels[0] ^= 0xFF
            ds.PixelData = bytes(pixels)
            self.stored[str(ds.SOPInstanceUID)] = ds
        return 0x0000

    def _find(self, event: evt.Event) -> Iterator[tuple[int, Dataset | None]]:
        query = event.identifier
        for uid, ident in self.known.items():
            if "SeriesInstanceUID" in query and query.SeriesInstanceUID \
                    and query.SeriesInstanceUID != ident.SeriesInstanceUID:
                continue
            match = Dataset()
            match.QueryRetrieveLevel = "IMAGE"
            match.StudyInstanceUID = ident.StudyInstanceUID
            match.SeriesInstanceUID = ident.SeriesInstanceUID
            match.SOPClassUID = ident.SOPClassUID
            match.SOPInstanceUID = uid
            yield 0xFF00, match
        yield 0x0000, None

    def _move(self, event: evt.Event) -> Iterator[object]:
        yield LOCALHOST, self.restore_port
        study = event.identifier.StudyInstanceUID
        matches = [ds for ds in self.stored.values() if ds.StudyInstanceUID == study]
        yield len(matches)
        for ds in matches:
            yield 0xFF00, ds
