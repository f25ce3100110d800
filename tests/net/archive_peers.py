"""Peers of the File/Restore tests: a restartable Orthanc archive, a phantom store.

Orthanc keeps its ports and database across :meth:`Archive.kill` and
:meth:`Archive.start`, so a test can stop the archive in the middle of an
operation and bring the same archive back.  Its only move destination is the
restore SCP, whose port is chosen before Orthanc starts.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from rtforge.config import Node
from rtforge.demo import make_phantom_patient
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
    """Orthanc on fixed free ports under ``work``, restartable."""

    work: Path
    restore_port: int
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
                                                dest_port=self.restore_port))
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

    def delete_instance(self, sop_instance_uid: str) -> None:
        """Remove one instance from the archive (by its SOP Instance UID)."""
        for orthanc_id in _lookup(self, sop_instance_uid):
            self.rest("DELETE", f"/instances/{orthanc_id}")


def _lookup(archive: Archive, sop_instance_uid: str) -> list[str]:
    request = urllib.request.Request(f"http://{LOCALHOST}:{archive.http_port}/tools/lookup",
                                     data=sop_instance_uid.encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return [item["ID"] for item in json.loads(answer.read()) if item["Type"] == "Instance"]


def phantom_store(store: Path, *, size: int = 16, nslices: int = 3) -> list[Path]:
    """A small phantom patient (two CT series) written under ``store``; its files."""
    make_phantom_patient(store, size=size, nslices=nslices)
    return sorted(p for p in store.rglob("*.dcm"))
