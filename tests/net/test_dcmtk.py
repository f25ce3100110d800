"""Against dcmtk: our echo and send to storescp; dcmtk's echoscu and storescu to our SCP."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRBigEndian

from rtforge.net import StorageSCP, echo, send
from tests.net.peers import (
    COMPRESSED_FILES,
    DCMTK_ENV,
    ECHOSCU,
    LOCALHOST,
    STORESCU,
    TRAILING_PADDING,
    Peer,
    dataset_bytes,
    fresh_copies,
    needs,
    received_files,
    without_padding,
)

pytestmark = pytest.mark.interop


def _by_uid(paths: list[Path]) -> dict[str, Path]:
    return {dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in paths}


def _check_arrivals(sources: list[Path], arrived: list[Path]) -> int:
    """Every source arrived equal; byte-identical where the transfer syntax is unchanged.

    Returns how many arrived byte for byte.
    """
    by_uid = _by_uid(arrived)
    assert len(by_uid) == len(arrived) == len(sources)
    identical = 0
    for source in sources:
        original = dcmread(source)
        received = dcmread(by_uid[original.SOPInstanceUID])
        padded = TRAILING_PADDING in original and TRAILING_PADDING not in received
        assert received == (without_padding(original) if padded else original), source.name
        if received.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID \
                and not padded:
            assert dataset_bytes(by_uid[original.SOPInstanceUID]) == dataset_bytes(source)
            identical += 1
    return identical


def test_echo_and_send_to_storescp(storescp: Peer, small_files: list[Path],
                                   tmp_path: Path) -> None:
    echo(storescp.node)
    sources = small_files + fresh_copies(COMPRESSED_FILES, tmp_path / "compressed")
    report = send(sources, storescp.node)
    assert report.ok and report.sent == len(sources)
    identical = _check_arrivals(sources, sorted((storescp.work / "in").iterdir()))
    assert identical == len(sources) - report.transcoded >= 5  # CT, MR and the compressed


def test_storescp_taking_big_endian_gets_the_same_pixels(storescp_big_endian: Peer,
                                                         small_files: list[Path]) -> None:
    report = send(small_files, storescp_big_endian.node)
    assert report.ok and report.transcoded == len(small_files)
    by_uid = _by_uid(sorted((storescp_big_endian.work / "in").iterdir()))
    for source in small_files:
        original = dcmread(source)
        received = dcmread(by_uid[original.SOPInstanceUID])
        assert received.file_meta.TransferSyntaxUID == ExplicitVRBigEndian
        if "PixelData" in original:
            assert np.array_equal(received.pixel_array, original.pixel_array), source.name
        for elem in original:
            if elem.tag != 0x7FE00010:
                assert received[elem.tag].value == elem.value, (source.name, elem.keyword)


def test_echoscu_and_storescu_to_our_scp(scp: StorageSCP, storescp: Peer,
                                         small_files: list[Path], tmp_path: Path) -> None:
    """storescu re-encodes what it sends: our files must hold exactly what storescp +B keeps."""
    needs(ECHOSCU)
    needs(STORESCU)
    subprocess.run([ECHOSCU, "-aec", scp.ae_title, LOCALHOST, str(scp.port)], env=DCMTK_ENV,
                   check=True, capture_output=True, timeout=30)
    compressed = fresh_copies(COMPRESSED_FILES, tmp_path / "compressed")
    sources = small_files + compressed
    # storescu proposes a compressed syntax only when told which: JPEG 8-bit, lossless, RLE
    for ae_title, port in ((scp.ae_title, scp.port), ("STORESCP", storescp.node.port)):
        for option, files in (("-x=", small_files), ("-xy", compressed[:1]),
                              ("-xs", compressed[1:2]), ("-xr", compressed[2:])):
            subprocess.run([STORESCU, option, "-aet", "DCMTK", "-aec", ae_title, LOCALHOST,
                            str(port), *map(str, files)], env=DCMTK_ENV, check=True,
                           capture_output=True, timeout=60)
    ours = _by_uid(received_files(scp.out_dir))
    theirs = _by_uid(sorted((storescp.work / "in").iterdir()))
    assert set(ours) == set(theirs) and len(ours) == len(sources)
    for uid, path in ours.items():
        assert dataset_bytes(path) == dataset_bytes(theirs[uid])
        assert dcmread(path).file_meta.TransferSyntaxUID == \
            dcmread(theirs[uid]).file_meta.TransferSyntaxUID
        assert dcmread(path).file_meta.SourceApplicationEntityTitle == "DCMTK"
    _check_arrivals(sources, list(ours.values()))
