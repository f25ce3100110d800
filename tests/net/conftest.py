"""Fixtures of the network tests (helpers in :mod:`tests.net.peers`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rtforge.net import StorageSCP
from rtforge.net.catalog import Catalog
from tests.datafiles import pydicom_file
from tests.net.archive_peers import phantom_store
from tests.net.peers import LOCALHOST, SMALL_FILES, Peer, run_storescp
from tests.net.tls_pki import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """CA, server and client certificates, and look-alikes of another CA (:mod:`tests.net.tls_pki`)."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def small_files() -> list[Path]:
    """CT, MR, RT Plan and RT Dose from pydicom's test files (Explicit and Implicit VR LE)."""
    return [pydicom_file(name) for name in SMALL_FILES]


@pytest.fixture
def scp(tmp_path: Path) -> Iterator[StorageSCP]:
    """Our Storage SCP, in this process, on a free port, writing under ``tmp_path/rx``."""
    with StorageSCP(tmp_path / "rx", ae_title="RTFORGE_RX", port=0, host=LOCALHOST,
                    acse_timeout=5, network_timeout=10) as server:
        yield server


@pytest.fixture
def storescp(tmp_path: Path) -> Iterator[Peer]:
    """dcmtk storescp accepting every syntax it knows (+xa), writing what it receives bit for
    bit (+B) under ``tmp_path/storescp/in``."""
    yield from run_storescp(tmp_path)


@pytest.fixture
def storescp_big_endian(tmp_path: Path) -> Iterator[Peer]:
    """dcmtk storescp preferring Explicit VR Big Endian among what we propose (+xb)."""
    yield from run_storescp(tmp_path, "+xb")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[Catalog, dict[Path, bytes]]]:
    """A catalogued phantom store (``tmp_path/store``) and the original bytes of its files."""
    files = phantom_store(tmp_path / "store")
    catalog = Catalog(tmp_path / "store" / "catalog.sqlite")
    catalog.import_paths([tmp_path / "store"])
    yield catalog, {p: p.read_bytes() for p in files}
    catalog.close()
