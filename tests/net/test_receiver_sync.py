"""``rtforge receive --sync object|none`` fed by dcmtk ``storescu``: what arrives, in every mode."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from rtforge.cli import main
from tests.net.peers import (
    DCMTK_ENV,
    LOCALHOST,
    STORESCU,
    Peer,
    dataset_bytes,
    needs,
    received_files,
    start_receiver,
    stop_process,
)

pytestmark = pytest.mark.interop


def _ct_slices(folder: Path, count: int, size: int = 512) -> list[Path]:
    """CT slices of ``size`` x ``size`` int16 (512 KiB each: several write pieces), seeded."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    study, series = generate_uid(), generate_uid()
    paths = []
    for k in range(count):
        ds = Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid()
        ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = "SYNC-TEST", study, series
        ds.Modality, ds.InstanceNumber = "CT", k + 1
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows = ds.Columns = size
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = rng.integers(-1024, 3072, (size, size), dtype=np.int16).tobytes()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"CT{k:02d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


@pytest.mark.parametrize("flags", [("--sync", "object"), ("--sync", "none"), ("--no-fsync",)])
def test_storescu_series_arrives_whole_in_every_mode(tmp_path: Path, storescp: Peer,
                                                     flags: tuple[str, ...]) -> None:
    """Objects of several write pieces each hold exactly what dcmtk storescp +B keeps."""
    needs(STORESCU)
    sources = _ct_slices(tmp_path / "series", 3)
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
