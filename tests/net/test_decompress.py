"""Sending compressed files to dcmqrscp, which accepts only uncompressed syntaxes, as dcmsend does.

Lossless files (JPEG Lossless, RLE) are decompressed and stored with exactly the
decoded pixels; a lossy one (JPEG Baseline) goes only with consent, and is
otherwise listed as not sent while the rest of the transfer goes on.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread

from rtforge.cli import main
from rtforge.config import Node
from rtforge.net import send
from rtforge.net.archive import file_case, restore_case
from rtforge.net.catalog import Catalog
from tests.net.archive_peers import RESTORE_AET
from tests.net.peers import LOCALHOST, Peer, free_port, fresh_copies, run_dcmqrscp

pytestmark = pytest.mark.interop

LOSSLESS = ("SC_rgb_jpeg_gdcm.dcm", "MR_small_RLE.dcm")  # JPEG Lossless SV1, RLE Lossless
LOSSY = "SC_rgb_jpeg_dcmtk.dcm"  # JPEG Baseline


#: The temporary SCP of ``file`` and ``restore``, dcmqrscp's move destination.
RESTORE = Node(RESTORE_AET, LOCALHOST, free_port())


@pytest.fixture
def dcmqrscp(tmp_path: Path) -> Iterator[Peer]:
    yield from run_dcmqrscp(tmp_path / "qr", RESTORE)


def _stored(peer: Peer) -> dict[str, Path]:
    """dcmqrscp's stored files by SOP Instance UID."""
    files = [p for p in (peer.work / "dcmqrscp-db").iterdir() if p.name != "index.dat"]
    return {dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in files}


def test_lossless_files_are_decompressed_exactly(dcmqrscp: Peer, tmp_path: Path) -> None:
    sources = fresh_copies(LOSSLESS, tmp_path / "src")
    report = send(sources, dcmqrscp.node)
    assert report.ok and report.sent == 2 and report.decompressed == sources, report.as_dict()
    assert report.lossy_decompressed == []
    stored = _stored(dcmqrscp)
    for source in sources:
        original = dcmread(source)
        kept = dcmread(stored[original.SOPInstanceUID])
        assert not kept.file_meta.TransferSyntaxUID.is_compressed
        assert kept.PhotometricInterpretation == original.PhotometricInterpretation
        assert kept.SOPClassUID == original.SOPClassUID
        expected = original.pixel_array
        assert kept.pixel_array.dtype == expected.dtype
        np.testing.assert_array_equal(kept.pixel_array, expected, err_msg=source.name)


def test_lossy_file_needs_consent(dcmqrscp: Peer, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    lossless = fresh_copies(LOSSLESS[1:], tmp_path / "src")
    lossy = fresh_copies((LOSSY,), tmp_path / "lossy")
    node = f"{dcmqrscp.node.ae_title}@{LOCALHOST}:{dcmqrscp.node.port}"
    assert main(["send", str(lossy[0]), *map(str, lossless), "--to", node]) == 1
    out, err = capsys.readouterr()
    assert f"not sent: {lossy[0]}: " in out and "--allow-lossy-decompress" in out
    assert "decompressed 1 object(s)" in out
    assert err.count("\n") == 1 and "1 of 2 sent, 1 not sent" in err
    assert len(_stored(dcmqrscp)) == 1  # the lossless one went on

    assert main(["send", str(lossy[0]), "--to", node, "--allow-lossy-decompress"]) == 0
    out, _ = capsys.readouterr()
    assert f"lossy decompressed: {lossy[0]}" in out
    kept = dcmread(_stored(dcmqrscp)[dcmread(lossy[0]).SOPInstanceUID])
    assert not kept.file_meta.TransferSyntaxUID.is_compressed
    assert kept.LossyImageCompression == "01" and kept.PhotometricInterpretation == "RGB"
    assert kept.pixel_array.shape == dcmread(lossy[0]).pixel_array.shape


def _file(catalog: Catalog, patient: str, peer: Peer, **kwargs: object):
    return file_case(catalog, patient, peer.node, scp_ae_title=RESTORE.ae_title,
                     scp_port=RESTORE.port, scp_host=LOCALHOST, **kwargs)


def test_file_to_an_archive_taking_only_uncompressed(dcmqrscp: Peer, tmp_path: Path) -> None:
    """``rtforge file``: lossless files go decompressed, the local files become those copies,
    the archive's are proven identical, and restore brings them back; a lossy one needs
    consent and blocks the deletion without it."""
    folder = tmp_path / "store"
    sources = fresh_copies(LOSSLESS, folder)
    pixels = {}
    for path in sources:  # one patient
        ds = dcmread(path)
        ds.PatientID = "DECOMP"
        ds.save_as(path, enforce_file_format=True)
        pixels[path] = ds.pixel_array
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        assert catalog.import_paths([folder]).added == 2
        report = _file(catalog, "DECOMP", dcmqrscp)
        assert report.ok and report.decompressed == 2 and report.verified == 2, report.failure
        assert report.verified_by == ["retrieve"]
        assert not any(p.exists() for p in sources)
        assert len(_stored(dcmqrscp)) == 2
        restored = restore_case(catalog, "DECOMP", scp_ae_title=RESTORE.ae_title,
                                scp_port=RESTORE.port, scp_host=LOCALHOST)
        assert restored.ok, restored.failure
    for path in sources:
        back = dcmread(path)
        assert not back.file_meta.TransferSyntaxUID.is_compressed
        np.testing.assert_array_equal(back.pixel_array, pixels[path], err_msg=path.name)

    (lossy,) = fresh_copies((LOSSY,), tmp_path / "lossy")
    original = lossy.read_bytes()
    with Catalog(tmp_path / "catalog2.sqlite") as catalog:
        catalog.import_paths([lossy])
        patient = str(dcmread(lossy).PatientID)
        report = _file(catalog, patient, dcmqrscp)
        assert not report.ok and "--allow-lossy-decompress" in str(report.failure)
        assert report.deleted == 0 and lossy.read_bytes() == original
        report = _file(catalog, patient, dcmqrscp, allow_lossy_decompress=True)
        assert report.ok and report.decompressed == 1 and not lossy.exists(), report.failure
