"""``rtforge receive --sync object|none`` fed by dcmtk ``storescu``: what arrives, in every mode."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread

from rtforge.cli import main
from tests.net.peers import (
    DCMTK_ENV,
    LOCALHOST,
    STORESCU,
    Peer,
    ct_slices,
    dataset_bytes,
    needs,
    received_files,
    start_receiver,
    stop_process,
)

pytestmark = pytest.mark.interop


@pytest.mark.parametrize("flags", [("--sync", "object"), ("--sync", "none"), ("--no-fsync",)])
def test_storescu_series_arrives_whole_in_every_mode(tmp_path: Path, storescp: Peer,
                                                     flags: tuple[str, ...]) -> None:
    """Objects of several write pieces each hold exactly what dcmtk storescp +B keeps."""
    needs(STORESCU)
    sources = ct_slices(tmp_path / "series", 3)
    receiver = start_receiver(tmp_path, *flags)
    try:
        for node in (receiver.node, storescp.node):
            subprocess.run([STORESCU, "-aet", "DCMTK", "-aec", node.ae_title, LOCALHOST,
                            str(node.port), *map(str, sources)], env=DCMTK_ENV, check=True,
                           capture_output=True, timeout=60)
        receiver.proc.send_signal(signal.SIGTERM)
        out, err = receiver.proc.communicate(timeout=30)
    finally:
        stop_process(receiver.proc)
    assert receiver.proc.returncode == 0, err
    assert json.loads(out)["stored"] == len(sources)
    ours = {dcmread(p, stop_before_pixels=True).SOPInstanceUID: p
            for p in received_files(receiver.out)}
    theirs = {dcmread(p, stop_before_pixels=True).SOPInstanceUID: p
              for p in (storescp.work / "in").iterdir()}
    assert set(ours) == set(theirs) and len(ours) == len(sources)
    for uid, path in ours.items():
        assert path.parent.name == dcmread(theirs[uid], stop_before_pixels=True).SeriesInstanceUID
        assert dataset_bytes(path) == dataset_bytes(theirs[uid])
    assert not any((receiver.out / ".incoming").iterdir())


def test_sync_and_no_fsync_together_is_bad_usage(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["receive", "--sync", "object", "--no-fsync", "--out", str(tmp_path / "rx")]) == 2
    assert "not allowed with" in capsys.readouterr().err
